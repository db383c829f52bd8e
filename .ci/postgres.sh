#!/usr/bin/env bash
# Installs (Debian's package) and starts a PostgreSQL server on loopback for the gallery tests,
# with a superuser role the tests use to create one throw-away database per test.
# Prints only the connection URL on stdout (the caller captures it): every tool's chatter
# (e.g. pg_ctlcluster's "Removed stale pid file.") goes to stderr.
set -euo pipefail

start_server() {
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    local version
    version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
    if ! pg_lsclusters -h | grep -q "^${version} main"; then
        pg_createcluster "${version}" main >/dev/null
    fi
    pg_ctlcluster "${version}" main start || true  # already running is fine
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 1
    done
    su postgres -c "psql -q -v ON_ERROR_STOP=1 -c \"DO \\\$\\\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'visage_test') THEN
        CREATE ROLE visage_test LOGIN SUPERUSER PASSWORD 'visage_test';
      END IF; END \\\$\\\$;\""
}

start_server >&2
echo "postgresql+psycopg://visage_test:visage_test@127.0.0.1:5432/postgres"
