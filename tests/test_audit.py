"""The audit log stays one unbroken hash chain, even with many writers at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import select

from visage.db import Database
from visage.privacy.audit import GENESIS, AuditLog, AuditRow, entry_digest


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
