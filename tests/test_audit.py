"""The audit log stays one unbroken hash chain, even with many writers at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from visage.config import Settings
from visage.db import Database
from visage.errors import InvalidInputError, StoreError
from visage.privacy.audit import GENESIS, AuditEntry, AuditLog, AuditRow, entry_digest, open_audit_log
from visage.privacy.signing import AuditSigner


def test_concurrent_appends_form_one_chain(database_url: str) -> None:
    """Three logs on their own connections stand for three server workers; each is shared by two threads."""
    databases = [Database(database_url) for _ in range(3)]
    logs = [AuditLog(database) for database in databases]
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            for i in range(15):
                logs[number % 3].record(f"key:{number}", "identify", gallery="g", person=f"p{i}",
                                        details={"i": i, "who": number}, result_count=i,
                                        purpose="test \u00e9\u00e8 \"quoted\"")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with databases[0].read() as session:
        rows = list(session.scalars(select(AuditRow).order_by(AuditRow.id)))
    assert len(rows) == 90
    previous = GENESIS
    for row in rows:  # re-read from the database: the stored fields still hash to the stored value
        assert row.prev_hash == previous
        assert row.entry_hash == entry_digest(previous, row)
        previous = row.entry_hash
    entries, total = logs[1].entries(actor="key:3", limit=5)
    assert total == 15 and len(entries) == 5 and entries[0].id > entries[-1].id  # newest first
    for database in databases:
        database.close()


def tamper_edit(connection: Connection) -> None:
    connection.execute(text("UPDATE audit_log SET details = :d WHERE id = 3"), {"d": '{"who": "someone else"}'})


def tamper_delete(connection: Connection) -> None:
    connection.execute(text("DELETE FROM audit_log WHERE id = 4"))


def tamper_reorder(connection: Connection) -> None:
    """Entries 6 and 7 trade places, hashes and all (only the ids stay)."""
    columns = "at, actor, action, gallery, person, purpose, details, result_count, outcome, prev_hash, entry_hash"
    six, seven = (connection.execute(text(f"SELECT {columns} FROM audit_log WHERE id = {i}")).one() for i in (6, 7))
    for target, values in ((6, seven), (7, six)):
        assignments = ", ".join(f"{name.strip()} = :v{i}" for i, name in enumerate(columns.split(",")))
        connection.execute(text(f"UPDATE audit_log SET {assignments} WHERE id = {target}"),
                           {f"v{i}": json.dumps(value) if isinstance(value, dict) else value
                            for i, value in enumerate(values)})


def tamper_insert(connection: Connection) -> None:
    """A forged entry at position 8, with a correct hash of its own; later entries shift up by one."""
    for moved in connection.execute(text("SELECT id FROM audit_log WHERE id >= 8 ORDER BY id DESC")).scalars():
        connection.execute(text("UPDATE audit_log SET id = id + 1 WHERE id = :i"), {"i": moved})
    previous = connection.execute(text("SELECT entry_hash FROM audit_log WHERE id = 7")).scalar_one()
    forged = AuditEntry(8, datetime(2026, 1, 1, tzinfo=UTC), "key:forger", "erase", "g", "p0", None, {}, 1, "ok",
                        previous, "")
    row = {**forged.__dict__, "details": json.dumps({}), "entry_hash": entry_digest(previous, forged)}
    connection.execute(text("INSERT INTO audit_log (id, at, actor, action, gallery, person, purpose, details, "
                            "result_count, outcome, prev_hash, entry_hash) VALUES (:id, :at, :actor, :action, "
                            ":gallery, :person, :purpose, :details, :result_count, :outcome, :prev_hash, "
                            ":entry_hash)"), row)


def tamper_rewrite_chain(connection: Connection) -> None:
    """Entry 2 edited and every hash after it recomputed: the chain itself is consistent again."""
    connection.execute(text("UPDATE audit_log SET person = 'nobody' WHERE id = 2"))
    previous = connection.execute(text("SELECT entry_hash FROM audit_log WHERE id = 1")).scalar_one()
    for entry_id in connection.execute(text("SELECT id FROM audit_log WHERE id >= 2 ORDER BY id")).scalars():
        session = Session(bind=connection)
        row = session.get(AuditRow, entry_id)
        assert row is not None
        fresh = entry_digest(previous, row)
        connection.execute(text("UPDATE audit_log SET prev_hash = :p, entry_hash = :h WHERE id = :i"),
                           {"p": previous, "h": fresh, "i": entry_id})
        session.close()
        previous = fresh


def tamper_truncate(connection: Connection) -> None:
    connection.execute(text("DELETE FROM audit_log WHERE id > 8"))


def tamper_checkpoint(connection: Connection) -> None:
    connection.execute(text("UPDATE audit_checkpoints SET entry_id = 7, entry_hash = "
                            "(SELECT entry_hash FROM audit_log WHERE id = 7) WHERE entry_id = 5"))


@pytest.mark.parametrize(("tamper", "first_bad", "words"), [
    (tamper_edit, 3, "altered"), (tamper_delete, 5, "missing"), (tamper_reorder, 6, "does not link"),
    (tamper_insert, 9, "does not link"), (tamper_rewrite_chain, 5, "rewritten"), (tamper_truncate, 9, "cut off"),
    (tamper_checkpoint, None, "signature"),
])
def test_verify_catches_every_kind_of_tampering(database_url: str, tamper: Callable[[Connection], None],
                                                 first_bad: int | None, words: str) -> None:
    database = Database(database_url)
    log = AuditLog(database, AuditSigner(b"k" * 32), checkpoint_every=5)
    for i in range(12):
        log.record(f"key:{i % 3}", "identify", gallery="g", person=f"p{i}", details={"i": i}, result_count=i)
    clean = log.verify()
    assert clean.ok and clean.entries == 12 and clean.checkpoints == 2 and clean.unsigned == 2, clean
    with database.engine.begin() as connection:
        tamper(connection)
    found = log.verify()
    assert not found.ok and found.first_bad_entry == first_bad and words in (found.problem or ""), found
    other_key = AuditLog(database, AuditSigner(b"q" * 32)).verify()
    assert not other_key.ok  # a verifier with the wrong key never reports a clean log
    database.close()


def test_audit_cli_verifies_and_signs(tmp_path: Path) -> None:
    from tests.test_cli import visage

    database = Database(f"sqlite:///{tmp_path / 'visage.db'}")
    log = open_audit_log(database, Settings(data_dir=tmp_path))
    for i in range(3):
        log.record("key:x", "identify", details={"i": i})
    database.close()
    assert (tmp_path / "keys" / "audit-hmac.key").stat().st_mode & 0o077 == 0  # the signing key is private
    signed = visage("audit", "checkpoint", env_data_dir=tmp_path)
    assert "entries up to 3" in signed.stdout
    intact = visage("audit", "verify", "--json", env_data_dir=tmp_path)
    assert json.loads(intact.stdout)["ok"] is True
    report = json.loads(visage("report", "--json", env_data_dir=tmp_path).stdout)
    assert [(r["action"], r["actor"], r["operations"], r["matches"]) for r in report] == [("identify", "key:x", 3, 0)]
    assert json.loads(visage("report", "--json", "--since", "2999-01-01", env_data_dir=tmp_path).stdout) == []
    with Database(f"sqlite:///{tmp_path / 'visage.db'}").engine.begin() as connection:
        tamper_edit_second(connection)
    broken = visage("audit", "verify", env_data_dir=tmp_path, check=False)
    assert broken.returncode == 1 and "TAMPERED (entry 2)" in broken.stderr


def tamper_edit_second(connection: Connection) -> None:
    connection.execute(text("UPDATE audit_log SET actor = 'key:other' WHERE id = 2"))


def test_the_signing_key_is_created_once_and_a_bad_one_is_named(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "audit.key"
    first, second = AuditSigner.load(key_file), AuditSigner.load(key_file)
    assert first.key_id == second.key_id and key_file.stat().st_mode & 0o077 == 0
    assert list(key_file.parent.iterdir()) == [key_file]  # no temporary file left behind
    key_file.write_text("not a key")
    with pytest.raises(InvalidInputError, match="not hex"):
        AuditSigner.load(key_file)
    with pytest.raises(StoreError, match="cannot read or create") as unreadable:
        AuditSigner.load(tmp_path / "keys" / "audit.key" / "inside-a-file")
    assert unreadable.value.code == "key_file_unreadable"
