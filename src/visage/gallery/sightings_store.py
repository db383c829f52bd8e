"""The video archive's records in SQL: sightings, pseudonymous unknowns, alerts, webhook deliveries, stream gaps.

A sighting is one person passing a camera (see :mod:`visage.video.scanner`). Its fused
embedding is sealed like a template (AES-256-GCM, bound to the sighting's id) so the archive
can be searched later ("where and when did this face appear?") without keeping any footage; a
face thumbnail is kept, sealed too, only when the operator turns it on. A sighting is linked to
the enrolled person it matched (erasing the person removes it: the foreign key cascades) or to
a pseudonymous unknown, so that repeated visits of one stranger are countable without knowing
who they are.

Each embedding model has its own archive revision, bumped by every change to its sightings in
the same transaction, so the in-process vector index over sighting embeddings knows when it is
stale, as gallery indexes do.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from visage.db import Base, Database, as_utc, utcnow
from visage.errors import NotFoundError
from visage.gallery.store_sql import RESEAL_BATCH, GalleryRow, PersonRow, reseal_rows
from visage.privacy.crypto import DataCipher
from visage.types import FloatArray

SightingId = BigInteger().with_variant(Integer, "sqlite")


class SightingArchiveRow(Base):
    __tablename__ = "sighting_archives"

    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


class UnknownRow(Base):
    __tablename__ = "unknowns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(40), unique=True)
    model_id: Mapped[str] = mapped_column(String(200))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sightings: Mapped[int] = mapped_column(Integer, default=0)


class SightingRow(Base):
    __tablename__ = "sightings"

    id: Mapped[int] = mapped_column(SightingId, primary_key=True)
    source: Mapped[str] = mapped_column(String(500), index=True)
    track_id: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(200))
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    frames: Mapped[int] = mapped_column(Integer)
    best_quality: Mapped[float] = mapped_column(Float)
    gallery_id: Mapped[int | None] = mapped_column(ForeignKey("galleries.id", ondelete="SET NULL"), nullable=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), nullable=True,
                                                  index=True)
    similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    unknown_id: Mapped[int | None] = mapped_column(ForeignKey("unknowns.id", ondelete="SET NULL"), nullable=True,
                                                   index=True)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # sealed
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # sealed PNG
    thumbnail_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRow(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(SightingId, primary_key=True)
    source: Mapped[str] = mapped_column(String(500))
    track_id: Mapped[int] = mapped_column(Integer)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    similarity: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    stream_seconds: Mapped[float] = mapped_column(Float)
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertDeliveryRow(Base):
    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(SightingId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(SightingId, ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StreamGapRow(Base):
    __tablename__ = "stream_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class NewSighting:
    """A sighting about to be stored: who it matched (``person_id``) or which unknown, and its unit embedding."""

    source: str
    track_id: int
    start_seconds: float
    end_seconds: float
    started_at: datetime
    ended_at: datetime
    frames: int
    best_quality: float
    embedding: FloatArray | None
    gallery_id: int | None = None
    person_id: int | None = None
    similarity: float | None = None
    unknown_id: int | None = None
    thumbnail: bytes | None = None


@dataclass(frozen=True)
class SightingRecord:
    """A stored sighting as listed: ``external_id`` when it matched someone enrolled, else ``unknown``'s label."""

    id: int
    source: str
    track_id: int
    start_seconds: float
    end_seconds: float
    started_at: datetime
    ended_at: datetime
    frames: int
    best_quality: float
    gallery: str | None
    external_id: str | None
    display_name: str | None
    similarity: float | None
    unknown: str | None
    model_id: str
    has_thumbnail: bool


@dataclass(frozen=True)
class UnknownRecord:
    id: int
    label: str
    first_seen: datetime
    last_seen: datetime
    sightings: int


@dataclass(frozen=True)
class AlertRecord:
    """A watchlist match raised while a track was in view."""

    id: int
    source: str
    track_id: int
    gallery: str
    external_id: str
    display_name: str | None
    similarity: float
    threshold: float
    stream_seconds: float
    raised_at: datetime


@dataclass(frozen=True)
class DeliveryRecord:
    alert_id: int
    url: str
    attempt: int
    status: int | None
    error: str | None
    delivered: bool
    at: datetime


@dataclass(frozen=True)
class GapRecord:
    source: str
    started_at: datetime
    ended_at: datetime
    reason: str


def sighting_context(sighting_id: int, what: str = "embedding") -> bytes:
    """What a sighting's sealed bytes are bound to: a copy on another row does not open."""
    return f"sightings.{what}|id={sighting_id}".encode()


_LISTED = (SightingRow.id, SightingRow.source, SightingRow.track_id, SightingRow.start_seconds,
           SightingRow.end_seconds, SightingRow.started_at, SightingRow.ended_at, SightingRow.frames,
           SightingRow.best_quality, GalleryRow.name, PersonRow.external_id, PersonRow.display_name,
           SightingRow.similarity, UnknownRow.label, SightingRow.model_id, SightingRow.thumbnail.is_not(None))

_ALERTED = (AlertRow.id, AlertRow.source, AlertRow.track_id, GalleryRow.name, PersonRow.external_id,
            PersonRow.display_name, AlertRow.similarity, AlertRow.threshold, AlertRow.stream_seconds,
            AlertRow.raised_at)


def _listing(columns: Sequence[Any], table: Any) -> Any:
    """``columns`` of ``table`` with the gallery and person they name (outer joins: unknowns have none)."""
    return (select(*columns).select_from(table)
            .outerjoin(GalleryRow, GalleryRow.id == table.gallery_id)
            .outerjoin(PersonRow, PersonRow.id == table.person_id))


def _sighting_listing() -> Any:
    """Sightings with who they are: the enrolled person, or the unknown's pseudonym."""
    return _listing(_LISTED, SightingRow).outerjoin(UnknownRow, UnknownRow.id == SightingRow.unknown_id)


def _sighting_record(row: Any) -> SightingRecord:
    return SightingRecord(int(row[0]), row[1], row[2], row[3], row[4], as_utc(row[5]), as_utc(row[6]), row[7], row[8],
                          row[9], row[10], row[11], row[12], row[13], row[14], bool(row[15]))


def _alert_record(row: Any) -> AlertRecord:
    return AlertRecord(int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], as_utc(row[9]))


class SightingStore:
    """Sightings and what hangs on them. Thread-safe: each call uses its own session."""

    def __init__(self, database: Database, cipher: DataCipher) -> None:
        self.db = database
        self.cipher = cipher

    # --- sightings -------------------------------------------------------------------------------

    def add(self, sighting: NewSighting, model_id: str) -> int:
        """Store one sighting (its embedding and thumbnail sealed); returns its id."""
        with self.db.write() as session:
            row = SightingRow(source=sighting.source, track_id=sighting.track_id, model_id=model_id,
                              start_seconds=sighting.start_seconds, end_seconds=sighting.end_seconds,
                              started_at=sighting.started_at, ended_at=sighting.ended_at, frames=sighting.frames,
                              best_quality=sighting.best_quality, gallery_id=sighting.gallery_id,
                              person_id=sighting.person_id, similarity=sighting.similarity,
                              unknown_id=sighting.unknown_id, created_at=utcnow())
            session.add(row)
            session.flush()  # the id binds the sealed bytes
            if sighting.embedding is not None:
                vector = np.asarray(sighting.embedding, np.float32).tobytes()
                row.key_id, row.embedding = self.cipher.seal(vector, sighting_context(row.id))
            if sighting.thumbnail is not None:
                row.thumbnail_key_id, row.thumbnail = self.cipher.seal(sighting.thumbnail,
                                                                       sighting_context(row.id, "thumbnail"))
            if sighting.unknown_id is not None:
                session.execute(update(UnknownRow).where(UnknownRow.id == sighting.unknown_id)
                                .values(sightings=UnknownRow.sightings + 1,
                                        last_seen=func.max(UnknownRow.last_seen, sighting.ended_at)
                                        if self.db.is_sqlite else func.greatest(UnknownRow.last_seen,
                                                                                sighting.ended_at)))
            self._bump(session, [model_id])
            return int(row.id)

    def records(self, ids: Sequence[int]) -> dict[int, SightingRecord]:
        if not ids:
            return {}
        with self.db.read() as session:
            rows = session.execute(_sighting_listing().where(SightingRow.id.in_([int(i) for i in ids])))
            return {int(row[0]): _sighting_record(row) for row in rows}

    def unknown_ids(self, ids: Sequence[int]) -> dict[int, int]:
        """Sighting id → its unknown's id, for those of ``ids`` that are unknowns."""
        if not ids:
            return {}
        with self.db.read() as session:
            rows = session.execute(select(SightingRow.id, SightingRow.unknown_id)
                                   .where(SightingRow.id.in_([int(i) for i in ids]),
                                          SightingRow.unknown_id.is_not(None)))
            return {int(s): int(u) for s, u in rows if u is not None}

    def sightings(self, *, source: str | None = None, since: datetime | None = None, until: datetime | None = None,
                  gallery_id: int | None = None, person_id: int | None = None, unknown: str | None = None,
                  offset: int = 0, limit: int = 100) -> list[SightingRecord]:
        """Sightings newest first, optionally of one source, time range, person or unknown."""
        statement = _sighting_listing()
        if source is not None:
            statement = statement.where(SightingRow.source == source)
        if since is not None:
            statement = statement.where(SightingRow.ended_at >= since)
        if until is not None:
            statement = statement.where(SightingRow.started_at <= until)
        if gallery_id is not None:
            statement = statement.where(SightingRow.gallery_id == gallery_id)
        if person_id is not None:
            statement = statement.where(SightingRow.person_id == person_id)
        if unknown is not None:
            statement = statement.where(UnknownRow.label == unknown)
        statement = statement.order_by(SightingRow.started_at.desc(), SightingRow.id.desc())
        with self.db.read() as session:
            return [_sighting_record(row) for row in session.execute(statement.offset(offset).limit(limit))]

    def thumbnail(self, sighting_id: int) -> bytes:
        with self.db.read() as session:
            row = session.execute(select(SightingRow.thumbnail_key_id, SightingRow.thumbnail)
                                  .where(SightingRow.id == sighting_id)).first()
        if row is None:
            raise NotFoundError(f"no sighting {sighting_id}", code="sighting_not_found")
        key_id, sealed = row
        if sealed is None:
            raise NotFoundError(f"sighting {sighting_id} kept no thumbnail", code="thumbnail_not_found")
        return self.cipher.open(key_id, sealed, sighting_context(sighting_id, "thumbnail"))

    def vectors(self, model_id: str, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, unit vectors)`` of every sighting of ``model_id`` with an embedding, in batches (index rebuilds)."""
        after = 0
        while True:
            with self.db.read() as session:
                rows = session.execute(select(SightingRow.id, SightingRow.key_id, SightingRow.embedding)
                                       .where(SightingRow.model_id == model_id, SightingRow.id > after,
                                              SightingRow.embedding.is_not(None))
                                       .order_by(SightingRow.id).limit(batch)).all()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], np.int64)
            vectors = np.stack([np.frombuffer(self.cipher.open(k, e or b"", sighting_context(i)), np.float32)
                                for i, k, e in rows])
            yield ids, vectors
            after = int(ids[-1])

    def revision(self, model_id: str) -> int:
        with self.db.read() as session:
            value = session.scalar(select(SightingArchiveRow.revision)
                                   .where(SightingArchiveRow.model_id == model_id))
            return int(value or 0)

    @staticmethod
    def _bump(session: Session, model_ids: Sequence[str]) -> None:
        for model_id in set(model_ids):
            changed = session.execute(update(SightingArchiveRow).where(SightingArchiveRow.model_id == model_id)
                                      .values(revision=SightingArchiveRow.revision + 1))
            if not changed.rowcount:  # type: ignore[attr-defined]
                session.add(SightingArchiveRow(model_id=model_id, revision=1))
                session.flush()

    def purge_older(self, *, unknown_before: datetime, matched_before: datetime, limit: int = 5000) -> int:
        """Delete sightings past retention (unknowns and matched ones have their own cutoffs), their unknowns once
        no sighting is left, and alerts as old as matched sightings; returns how many sightings went."""
        stale = or_((SightingRow.person_id.is_(None)) & (SightingRow.ended_at < unknown_before),
                    (SightingRow.person_id.is_not(None)) & (SightingRow.ended_at < matched_before))
        with self.db.write() as session:
            rows = session.execute(select(SightingRow.id, SightingRow.model_id).where(stale)
                                   .order_by(SightingRow.id).limit(limit)).all()
            if rows:
                session.execute(delete(SightingRow).where(SightingRow.id.in_([r[0] for r in rows])))
                self._bump(session, [r[1] for r in rows])
            session.execute(delete(UnknownRow).where(~select(SightingRow.id)
                                                     .where(SightingRow.unknown_id == UnknownRow.id).exists()))
            session.execute(delete(AlertRow).where(AlertRow.raised_at < matched_before))
            return len(rows)

    # --- unknowns --------------------------------------------------------------------------------

    def new_unknown(self, model_id: str, seen: datetime) -> UnknownRecord:
        """A fresh pseudonym for a face nobody enrolled: random, so it says nothing about the person."""
        with self.db.write() as session:
            row = UnknownRow(label=f"unknown-{secrets.token_hex(4)}", model_id=model_id, first_seen=seen,
                             last_seen=seen, sightings=0)
            session.add(row)
            session.flush()
            return UnknownRecord(row.id, row.label, seen, seen, 0)

    def unknowns(self, *, offset: int = 0, limit: int = 100) -> list[UnknownRecord]:
        """Pseudonymous unknowns, most often seen first."""
        with self.db.read() as session:
            rows = session.scalars(select(UnknownRow).order_by(UnknownRow.sightings.desc(), UnknownRow.id)
                                   .offset(offset).limit(limit))
            return [UnknownRecord(r.id, r.label, as_utc(r.first_seen), as_utc(r.last_seen), r.sightings)
                    for r in rows]

    # --- alerts ----------------------------------------------------------------------------------

    def add_alert(self, source: str, track_id: int, gallery_id: int, person_id: int, similarity: float,
                  threshold: float, stream_seconds: float, raised_at: datetime) -> AlertRecord:
        with self.db.write() as session:
            row = AlertRow(source=source, track_id=track_id, gallery_id=gallery_id, person_id=person_id,
                           similarity=similarity, threshold=threshold, stream_seconds=stream_seconds,
                           raised_at=raised_at)
            session.add(row)
            session.flush()
            alert_id = int(row.id)
        return self.alerts(after_id=alert_id - 1, limit=1)[0]

    def alerts(self, after_id: int = 0, *, limit: int = 100, newest_first: bool = False) -> list[AlertRecord]:
        """Alerts with an id above ``after_id`` (what a live feed has not shown yet), oldest first by default."""
        order = AlertRow.id.desc() if newest_first else AlertRow.id
        with self.db.read() as session:
            rows = session.execute(_listing(_ALERTED, AlertRow).where(AlertRow.id > after_id).order_by(order)
                                   .limit(limit))
            return [_alert_record(row) for row in rows]

    def record_delivery(self, alert_id: int, url: str, attempt: int, *, status: int | None, error: str | None,
                        delivered: bool) -> None:
        with self.db.write() as session:
            session.add(AlertDeliveryRow(alert_id=alert_id, url=url, attempt=attempt, status=status, error=error,
                                         delivered=delivered, at=utcnow()))

    def deliveries(self, alert_id: int) -> list[DeliveryRecord]:
        with self.db.read() as session:
            rows = session.scalars(select(AlertDeliveryRow).where(AlertDeliveryRow.alert_id == alert_id)
                                   .order_by(AlertDeliveryRow.id))
            return [DeliveryRecord(r.alert_id, r.url, r.attempt, r.status, r.error, r.delivered, as_utc(r.at))
                    for r in rows]

    # --- stream gaps -----------------------------------------------------------------------------

    def add_gap(self, source: str, started_at: datetime, ended_at: datetime, reason: str) -> None:
        with self.db.write() as session:
            session.add(StreamGapRow(source=source, started_at=started_at, ended_at=ended_at, reason=reason))

    def gaps(self, source: str | None = None, *, limit: int = 100) -> list[GapRecord]:
        statement = select(StreamGapRow).order_by(StreamGapRow.started_at.desc()).limit(limit)
        if source is not None:
            statement = statement.where(StreamGapRow.source == source)
        with self.db.read() as session:
            return [GapRecord(r.source, as_utc(r.started_at), as_utc(r.ended_at), r.reason)
                    for r in session.scalars(statement)]

    # --- keys ------------------------------------------------------------------------------------

    def key_usage(self) -> dict[str | None, int]:
        """Sealed sighting embeddings and thumbnails per data key id."""
        usage: dict[str | None, int] = {}
        with self.db.read() as session:
            for column in (SightingRow.key_id, SightingRow.thumbnail_key_id):
                for key_id, count in session.execute(select(column, func.count()).where(column.is_not(None))
                                                     .group_by(column)):
                    usage[key_id] = usage.get(key_id, 0) + int(count)
        return usage

    def reseal(self, batch: int = RESEAL_BATCH) -> int:
        """Re-seal up to ``batch`` sightings not under the current data key; returns how many (0: all done)."""
        current = self.cipher.current_key_id
        with self.db.write() as session:
            for what, data, key in (("embedding", SightingRow.embedding, SightingRow.key_id),
                                    ("thumbnail", SightingRow.thumbnail, SightingRow.thumbnail_key_id)):
                rows = session.execute(select(SightingRow.id, key, data).where(data.is_not(None), key != current)
                                       .order_by(SightingRow.id).limit(batch)).all()
                if not rows:
                    continue
                statement = (update(SightingRow).where(SightingRow.id == bindparam("row"))
                             .values({data.key: bindparam("sealed"), key.key: bindparam("key")}))
                return reseal_rows(self.cipher, session, statement,
                                   [(i, sighting_context(i, what), k, sealed or b"") for i, k, sealed in rows])
        return 0
