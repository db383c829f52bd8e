"""The audit trail: who searched for whom, enrolled or erased whom, and changed which key.

Entries are append-only rows in the main database, each chained to the one before by
SHA-256 (``entry_hash`` covers the entry's fields and the previous ``entry_hash``), so an
altered, inserted or deleted row breaks the chain from that point on. Images are never
recorded: only what was asked (parameters, ids) and how many candidates came back.

Appending must link to the true previous entry. An append reads the newest entry and inserts
the next one with an explicit ``id`` (newest + 1) in one transaction: the primary key makes
two appends of the same id impossible, so when another process (or server worker) appended
in between, the INSERT fails and the append is retried. Two statements, no lock held across
processes, on SQLite and PostgreSQL alike; threads of one process take turns.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from visage.db import Base, Database, as_utc, utcnow
from visage.errors import StoreError

GENESIS = "0" * 64
# Appends that lose the race for an id retry; this many losses in a row means something is wrong.
APPEND_ATTEMPTS = 50


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    gallery: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    person: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    purpose: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    gallery: str | None
    person: str | None
    purpose: str | None
    details: dict[str, Any]
    result_count: int | None
    outcome: str
    prev_hash: str
    entry_hash: str


def entry_digest(prev_hash: str, row: AuditRow | AuditEntry) -> str:
    """SHA-256 over the previous hash and the entry's fields in a canonical JSON form."""
    fields = {
        "id": row.id, "at": as_utc(row.at).astimezone(UTC).isoformat(), "actor": row.actor, "action": row.action,
        "gallery": row.gallery, "person": row.person, "purpose": row.purpose, "details": row.details,
        "result_count": row.result_count, "outcome": row.outcome,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _columns(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in AuditEntry.__dataclass_fields__}


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(row.id, as_utc(row.at), row.actor, row.action, row.gallery, row.person, row.purpose,
                      dict(row.details or {}), row.result_count, row.outcome, row.prev_hash, row.entry_hash)


class AuditLog:
    """Append and read the audit trail. Thread-safe."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self._lock = threading.Lock()  # appends from this process's threads never race each other
        self._last = select(AuditRow.id, AuditRow.entry_hash).order_by(AuditRow.id.desc()).limit(1)
        self._insert = insert(AuditRow)

    def record(
        self,
        actor: str,
        action: str,
        *,
        gallery: str | None = None,
        person: str | None = None,
        purpose: str | None = None,
        details: dict[str, Any] | None = None,
        result_count: int | None = None,
        outcome: str = "ok",
    ) -> AuditEntry:
        with self._lock:
            for _ in range(APPEND_ATTEMPTS):
                try:
                    with self.db.begin() as connection:
                        last = connection.execute(self._last).first()
                        last_id, last_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS)
                        draft = AuditEntry(last_id + 1, utcnow(), actor, action, gallery, person, purpose,
                                           dict(details or {}), result_count, outcome, last_hash, "")
                        entry = replace(draft, entry_hash=entry_digest(last_hash, draft))
                        connection.execute(self._insert, _columns(entry))
                    return entry
                except IntegrityError:  # another process appended between our read and our insert: read again
                    continue
        raise StoreError(f"could not append to the audit log after {APPEND_ATTEMPTS} attempts (heavy contention)",
                         code="audit_contention")

    def entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        gallery: str | None = None,
        person: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[AuditEntry], int]:
        """Matching entries, newest first, and how many match in all."""
        conditions = [column == value for column, value in ((AuditRow.actor, actor), (AuditRow.action, action),
                                                            (AuditRow.gallery, gallery), (AuditRow.person, person))
                      if value is not None]
        if since is not None:
            conditions.append(AuditRow.at >= since)
        if until is not None:
            conditions.append(AuditRow.at < until)
        with self.db.read() as session:
            total = session.scalar(select(func.count()).select_from(AuditRow).where(*conditions))
            rows = session.scalars(select(AuditRow).where(*conditions).order_by(AuditRow.id.desc())
                                   .offset(offset).limit(limit))
            return [_entry(r) for r in rows], int(total or 0)
