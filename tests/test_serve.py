"""`visage serve` and `visage keys` as a user runs them: a real server process on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.server import running_server
from tests.test_cli import visage


def test_first_serve_prints_an_admin_key_once_and_never_logs_keys(tmp_path: Path, astronaut_bytes: bytes) -> None:
    with running_server(tmp_path) as server:
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        response = httpx.post(f"{server.base}/v1/galleries", json={"name": "door"}, headers=admin)
        assert response.status_code == 201 and response.headers["x-visage-version"]
        made = visage("keys", "create", "kiosk", "--scope", "identify", "--gallery", "door", "--json",
                      env_data_dir=tmp_path)
        kiosk = json.loads(made.stdout)["key"]
        found = httpx.post(f"{server.base}/v1/galleries/door/identify", headers={"X-API-Key": kiosk},
                           files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
        assert found.status_code == 200 and found.json()[0]["candidates"] == []
        assert httpx.get(f"{server.base}/v1/audit", headers={"X-API-Key": kiosk}).status_code == 403
        assert "kiosk" in visage("keys", "list", env_data_dir=tmp_path).stdout
        visage("keys", "revoke", kiosk.split("_")[1], env_data_dir=tmp_path)
        assert httpx.get(f"{server.base}/v1/galleries", headers={"X-API-Key": kiosk}).status_code == 401
    assert server.process.returncode == 0  # Ctrl-C ends it cleanly
    log_text = server.log_path.read_text()
    assert log_text.count(server.admin_key) == 1 and kiosk not in log_text  # shown once, never logged
    assert "POST /v1/galleries/door/identify" in log_text  # the access log is there, without keys
    listed = visage("keys", "list", "--json", env_data_dir=tmp_path)
    assert "vsg_" not in listed.stdout and "kiosk" not in listed.stdout  # revoked keys hidden; never secrets
