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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from visage.config import Settings
from visage.db import Base, Database, as_utc, utcnow
from visage.errors import StoreError
from visage.privacy.signing import AuditSigner

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


class CheckpointRow(Base):
    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entry_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), index=True)
    entry_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class Checkpoint:
    id: int
    at: datetime
    entry_id: int
    entry_hash: str
    key_id: str


@dataclass
class AuditNote:
    """Filled in by an audited operation: how many results went back, and anything else worth recording."""

    result_count: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditVerification:
    """What ``verify`` found: ``ok`` when the chain and every checkpoint hold.

    ``first_bad_entry`` is the id where the log first departs from what was written (None when
    only a checkpoint's signature is wrong); ``unsigned`` counts the newest entries no checkpoint
    covers yet (they could have been cut off without a trace).
    """

    ok: bool
    entries: int
    checkpoints: int
    first_bad_entry: int | None
    problem: str | None
    unsigned: int


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

    def __init__(self, database: Database, signer: AuditSigner | None = None, *, checkpoint_every: int = 1000) -> None:
        self.db = database
        self.signer, self.checkpoint_every = signer, checkpoint_every
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
                except IntegrityError:  # another process appended between our read and our insert: read again
                    continue
                if self.signer is not None and entry.id % self.checkpoint_every == 0:
                    self.checkpoint()
                return entry
        raise StoreError(f"could not append to the audit log after {APPEND_ATTEMPTS} attempts (heavy contention)",
                         code="audit_contention")

    @contextmanager
    def operation(self, actor: str, action: str, *, gallery: str | None = None, person: str | None = None,
                  purpose: str | None = None, details: dict[str, Any] | None = None) -> Iterator[AuditNote]:
        """Record the operation run inside, whether it succeeds (``ok``) or fails (its error's code).

        The caller fills the yielded note: how many results went back, anything worth adding.
        """
        note = AuditNote(details=dict(details or {}))
        outcome = "ok"
        try:
            yield note
        except Exception as exc:
            outcome = str(getattr(exc, "code", None) or type(exc).__name__)
            raise
        finally:
            self.record(actor, action, gallery=gallery, person=person, purpose=purpose, details=note.details,
                        result_count=note.result_count, outcome=outcome)

    def checkpoint(self) -> Checkpoint | None:
        """Sign the newest entry (None when the log is empty); needs a signer."""
        if self.signer is None:
            raise StoreError("no audit signing key is configured", code="no_signing_key")
        with self.db.begin() as connection:
            last = connection.execute(self._last).first()
            if last is None:
                return None
            at = utcnow()
            mac = self.signer.mac(int(last[0]), str(last[1]), at)
            row_id = connection.execute(insert(CheckpointRow).values(
                at=at, entry_id=int(last[0]), entry_hash=str(last[1]), key_id=self.signer.key_id, mac=mac,
            )).inserted_primary_key
        return Checkpoint(int(row_id[0]) if row_id else 0, at, int(last[0]), str(last[1]), self.signer.key_id)

    def verify(self, batch: int = 5000) -> AuditVerification:
        """Walk the whole chain, then check every checkpoint: the first departure is reported.

        Caught: an edited entry (its hash no longer matches), a deleted or inserted one (ids
        stop being consecutive, or an entry no longer links to its predecessor), reordered
        entries (links break), a chain rewritten with fresh hashes (signed checkpoints disagree)
        and a cut-off tail (the log ends before its newest checkpoint).
        """
        expected, previous, entries = 1, GENESIS, 0
        problem: tuple[int | None, str] | None = None
        last_seen = 0
        while problem is None:
            with self.db.read() as session:
                rows = list(session.scalars(select(AuditRow).where(AuditRow.id >= expected)
                                            .order_by(AuditRow.id).limit(batch)))
            if not rows:
                break
            for row in rows:
                if row.id != expected:
                    problem = (row.id, f"entries are missing before entry {row.id} (expected entry {expected})")
                elif row.prev_hash != previous:
                    problem = (row.id, f"entry {row.id} does not link to the entry before it "
                                       "(an entry was removed, inserted or moved)")
                elif entry_digest(row.prev_hash, row) != row.entry_hash:
                    problem = (row.id, f"entry {row.id} was altered after it was written")
                if problem is not None:
                    break
                previous, expected, entries, last_seen = row.entry_hash, row.id + 1, entries + 1, row.id
        with self.db.read() as session:
            if problem is None:  # nothing may follow a broken id sequence unnoticed
                stray = session.scalar(select(func.min(AuditRow.id)).where(AuditRow.id < 1))
                if stray is not None:
                    problem = (int(stray), f"entry {stray} has an id before the first entry")
            checkpoints = list(session.scalars(select(CheckpointRow).order_by(CheckpointRow.id)))
            signed_up_to = 0
            for checkpoint in checkpoints if problem is None else []:
                signed_up_to = max(signed_up_to, checkpoint.entry_id)
                found = session.scalar(select(AuditRow.entry_hash).where(AuditRow.id == checkpoint.entry_id))
                if self.signer is not None and checkpoint.key_id == self.signer.key_id and \
                        not self.signer.verify(checkpoint.entry_id, checkpoint.entry_hash, as_utc(checkpoint.at),
                                               checkpoint.mac):
                    problem = (None, f"checkpoint {checkpoint.id} does not carry a valid signature (forged or altered)")
                elif found is None:
                    problem = (last_seen + 1, f"entries up to {checkpoint.entry_id} were signed by checkpoint "
                                              f"{checkpoint.id} but the log ends at entry {last_seen} (cut off)")
                elif found != checkpoint.entry_hash:
                    problem = (checkpoint.entry_id, f"entry {checkpoint.entry_id} differs from what checkpoint "
                                                    f"{checkpoint.id} signed (the chain was rewritten)")
                if problem is not None:
                    break
        unverifiable = [c.id for c in checkpoints if self.signer is None or c.key_id != self.signer.key_id]
        if problem is None and unverifiable:
            problem = (None, f"{len(unverifiable)} checkpoint(s) were signed with another key and cannot be checked")
        return AuditVerification(problem is None, entries, len(checkpoints), problem[0] if problem else None,
                                 problem[1] if problem else None, max(0, last_seen - signed_up_to))

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


def open_audit_log(database: Database, settings: Settings) -> AuditLog:
    """The audit log of ``database``, signing checkpoints with the configured key (created if missing)."""
    key_file = settings.privacy.audit_key_file or settings.data_dir / "keys" / "audit-hmac.key"
    return AuditLog(database, AuditSigner.load(key_file), checkpoint_every=settings.privacy.audit_checkpoint_every)
