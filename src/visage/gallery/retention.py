"""Retention: data is kept only as long as a reason to keep it lasts.

Two rules, applied by ``visage retention run`` and by a scheduler inside ``visage serve``:

* a person whose consent ended (expired or withdrawn) is erased: they already stopped matching
  the moment it ended (see :mod:`visage.privacy.consent`);
* a gallery with ``retention_days`` loses templates older than that; a person left with none is
  erased;
* sightings (the video archive) of nobody enrolled go after ``video.unknown_retention_hours``
  (72 h), those of enrolled people and alerts after ``video.matched_retention_days`` (30 days).

Every erasure is audited with its receipt's digest, and each rule that removed anything adds
one ``retention.purge`` entry with the counts, so the transparency report shows them. Runs are
idempotent: two at once (two server workers, or the CLI beside the server) erase each person
once and the other finds them gone.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from visage.db import utcnow
from visage.errors import NotFoundError
from visage.gallery.api import Gallery
from visage.gallery.sightings_store import SightingStore
from visage.privacy.audit import AuditLog

log = logging.getLogger(__name__)

RETENTION_ACTOR = "retention"
SIGHTINGS = "(sightings)"  # what the video archive's purges are reported under, in place of a gallery
BATCH = 500


@dataclass(frozen=True)
class Purge:
    """What one rule removed from one gallery; ``receipts`` are the digests of the erasures it made."""

    gallery: str
    reason: str  # consent_ended | template_age | sighting_age
    persons: int
    templates: int  # (sightings, for the sighting_age rule)
    receipts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RetentionRun:
    at: datetime
    purges: list[Purge]

    @property
    def persons(self) -> int:
        return sum(p.persons for p in self.purges)

    @property
    def templates(self) -> int:
        return sum(p.templates for p in self.purges)


class _Tally:
    def __init__(self) -> None:
        self.persons: dict[tuple[str, str], int] = {}
        self.templates: dict[tuple[str, str], int] = {}
        self.receipts: dict[tuple[str, str], list[str]] = {}

    def add(self, gallery: str, reason: str, *, persons: int = 0, templates: int = 0,
            receipt: str | None = None) -> None:
        key = (gallery, reason)
        self.persons[key] = self.persons.get(key, 0) + persons
        self.templates[key] = self.templates.get(key, 0) + templates
        self.receipts.setdefault(key, []).extend([receipt] if receipt else [])

    def purges(self) -> list[Purge]:
        return [Purge(g, r, self.persons[(g, r)], self.templates[(g, r)], self.receipts[(g, r)])
                for g, r in sorted(self.persons)]


def _erase(gallery: Gallery, audit: AuditLog, tally: _Tally, gallery_name: str, external_id: str,
           reason: str) -> None:
    try:
        with audit.operation(RETENTION_ACTOR, "erase", gallery=gallery_name, person=external_id,
                             details={"reason": reason}) as note:
            receipt = gallery.erase(gallery_name, external_id)
            note.result_count = len(receipt.templates)
            note.details["receipt"] = receipt.digest
    except NotFoundError:  # erased meanwhile by someone else: nothing left to do
        return
    tally.add(gallery_name, reason, persons=1, templates=len(receipt.templates), receipt=receipt.digest)


def run_retention(gallery: Gallery, audit: AuditLog, *, now: datetime | None = None) -> RetentionRun:
    """Apply every retention rule once; returns what was removed."""
    moment = now or utcnow()
    tally = _Tally()
    seen: set[tuple[str, str]] = set()
    while True:
        batch = [p for p in gallery.store.unmatchable_persons(limit=BATCH) if p not in seen]
        if not batch:
            break
        for gallery_name, external_id in batch:
            seen.add((gallery_name, external_id))
            _erase(gallery, audit, tally, gallery_name, external_id, "consent_ended")
    for record in gallery.store.galleries():
        if record.retention_days is None:
            continue
        cutoff = moment - timedelta(days=record.retention_days)
        while ids := gallery.store.templates_created_before(record, cutoff, limit=BATCH):
            emptied = gallery.delete_templates(record.name, ids)
            tally.add(record.name, "template_age", templates=len(ids))
            for external_id in emptied:
                _erase(gallery, audit, tally, record.name, external_id, "template_age")
    video = gallery.settings.video
    sightings = SightingStore(gallery.store.db, gallery.store.cipher)
    unknown_before = moment - timedelta(hours=video.unknown_retention_hours)
    matched_before = moment - timedelta(days=video.matched_retention_days)
    while removed := sightings.purge_older(unknown_before=unknown_before, matched_before=matched_before):
        tally.add(SIGHTINGS, "sighting_age", templates=removed)
    purges = tally.purges()
    for purge in purges:
        audit.record(RETENTION_ACTOR, "retention.purge", gallery=purge.gallery, result_count=purge.persons,
                     details={"reason": purge.reason, "persons": purge.persons, "templates": purge.templates})
    return RetentionRun(moment, purges)


class RetentionScheduler:
    """Runs :func:`run_retention` every ``interval_s`` seconds on a daemon thread until stopped."""

    def __init__(self, gallery: Gallery, audit: AuditLog, interval_s: float) -> None:
        self.gallery, self.audit, self.interval_s = gallery, audit, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="visage-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = run_retention(self.gallery, self.audit)
                if done.purges:
                    log.info("retention: %d person(s) and %d template(s) removed", done.persons, done.templates)
            except Exception:  # a failed run must not end the schedule; the next one retries
                log.exception("retention run failed")
            self._stop.wait(self.interval_s)
