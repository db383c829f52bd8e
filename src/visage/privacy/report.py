"""The transparency report: who searched which gallery, for what purpose, how often, with how many matches.

Built from the audit log alone (the log is the record of what happened), week by week
(ISO weeks, UTC), per gallery, action, purpose and key. Matches are the candidates that
passed the decision threshold, as the service recorded them; failed attempts are counted
apart, by outcome.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select

from visage.db import as_utc
from visage.privacy.audit import AuditLog, AuditRow

# The operations the report is about: searches, enrolments, consent, erasures, exports, retention and key changes,
# not reads.
REPORTED = ("identify", "verify", "compare", "embed", "enroll", "erase", "person.update", "template.delete",
            "gallery.create", "gallery.delete", "gallery.retention", "gallery.migrate", "key.create", "key.revoke",
            "consent.record", "consent.withdraw", "person.export", "retention.purge", "data_key.rotate",
            "video.scan", "video.watch", "video.alert", "sightings.search", "stream.start", "stream.stop")


@dataclass(frozen=True)
class ReportRow:
    week: str  # ISO week, e.g. 2026-W48
    gallery: str | None
    action: str
    purpose: str | None
    actor: str
    operations: int
    matches: int
    failed: int


def transparency_report(log: AuditLog, *, since: datetime | None = None, until: datetime | None = None,
                        batch: int = 10_000) -> list[ReportRow]:
    """Rows sorted by week, gallery, action, purpose and key."""
    operations: Counter[tuple[str, str | None, str, str | None, str]] = Counter()
    matches: Counter[tuple[str, str | None, str, str | None, str]] = Counter()
    failed: Counter[tuple[str, str | None, str, str | None, str]] = Counter()
    conditions: list[ColumnElement[bool]] = [AuditRow.action.in_(REPORTED)]
    if since is not None:
        conditions.append(AuditRow.at >= since)
    if until is not None:
        conditions.append(AuditRow.at < until)
    last = 0
    while True:
        with log.db.read() as session:
            rows = session.execute(select(AuditRow.id, AuditRow.at, AuditRow.gallery, AuditRow.action, AuditRow.purpose,
                                          AuditRow.actor, AuditRow.outcome, AuditRow.details)
                                   .where(AuditRow.id > last, *conditions).order_by(AuditRow.id).limit(batch)).all()
        if not rows:
            break
        for entry_id, at, gallery, action, purpose, actor, outcome, details in rows:
            year, week, _ = as_utc(at).isocalendar()
            key = (f"{year}-W{week:02d}", gallery, action, purpose, actor)
            operations[key] += 1
            matches[key] += int((details or {}).get("matches", 0) or 0)
            failed[key] += outcome != "ok"
            last = entry_id
    return [ReportRow(*key, operations[key], matches[key], failed[key])
            for key in sorted(operations, key=lambda k: tuple("" if v is None else v for v in k))]
