"""The system of record: galleries, persons and templates in SQL (SQLite by default, PostgreSQL at scale).

The SQL store is the source of truth; vector indexes are caches rebuilt from it. Every change
to a gallery's templates bumps that gallery's ``revision`` in the same transaction, so an index
that remembers the revision it reflects knows when it is stale. The schema is created and
upgraded by the Alembic migrations in ``visage/migrations`` (see :mod:`visage.db`).

Embeddings are sealed (AES-256-GCM, :mod:`visage.privacy.crypto`) before they reach SQL and
opened when read, each bound to its gallery and person; :meth:`SqlStore.reseal` moves them to
the current data key in small committed batches, without touching the gallery's revision (the
vectors do not change, so indexes stay current and searches go on).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    column,
    delete,
    func,
    select,
    table,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from visage.db import Base, Database, as_utc, utcnow
from visage.errors import ConflictError, NotFoundError, StoreError
from visage.privacy.consent import Consent, ConsentRecord, ConsentRow, check_gallery_basis, epoch, require_active
from visage.privacy.crypto import DataCipher
from visage.types import FloatArray, ModelInfo


class GalleryRow(Base):
    __tablename__ = "galleries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_id: Mapped[str] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(200))
    model_sha256: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    watchlist: Mapped[bool] = mapped_column(Boolean, default=False)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A basis for everyone in the gallery (then no per-person consent record is needed), and why.
    legal_basis: Mapped[str | None] = mapped_column(String(32), nullable=True)
    basis_justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Templates older than this many days are purged by retention (NULL: kept until erasure or consent end).
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Keep each template's face chip (sealed), so a new model can re-embed the gallery without the photos.
    keep_chips: Mapped[bool] = mapped_column(Boolean, default=False)


class PersonRow(Base):
    __tablename__ = "persons"
    __table_args__ = (UniqueConstraint("gallery_id", "external_id", name="uq_person_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(400), nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # When matching stops (epoch seconds): the newest consent record's expiry or withdrawal; NULL: no end.
    matchable_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# 64-bit template ids (hundreds of millions of templates); SQLite only auto-increments "INTEGER PRIMARY KEY".
TemplateId = BigInteger().with_variant(Integer, "sqlite")


class TemplateRow(Base):
    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(TemplateId, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # sealed (see privacy/crypto.py)
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_id: Mapped[str] = mapped_column(String(200))
    source_sha256: Mapped[str] = mapped_column(String(64))
    box: Mapped[list[float]] = mapped_column(JSON)
    quality: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChipRow(Base):
    __tablename__ = "chips"

    template_id: Mapped[int] = mapped_column(TemplateId, ForeignKey("templates.id", ondelete="CASCADE"),
                                             primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class GalleryRecord:
    id: int
    name: str
    model: ModelInfo
    dim: int
    watchlist: bool
    revision: int
    created_at: datetime
    legal_basis: str | None = None
    justification: str | None = None
    retention_days: int | None = None
    keep_chips: bool = False


@dataclass(frozen=True)
class PersonRecord:
    """An enrolled person; ``consent`` is their newest consent record (None under a gallery-wide basis)."""

    id: int
    gallery: str
    external_id: str
    display_name: str | None
    metadata: dict[str, Any]
    templates: int
    created_at: datetime
    updated_at: datetime
    consent: ConsentRecord | None = None
    matchable: bool = True


@dataclass(frozen=True)
class TemplateOwner:
    """Who a template belongs to: what a search needs to name a candidate."""

    person_id: int
    external_id: str
    display_name: str | None
    matchable_until: int | None  # epoch seconds; past it the person no longer matches


@dataclass(frozen=True)
class TemplateRecord:
    id: int
    person_id: int
    model_id: str
    source_sha256: str
    box: tuple[float, float, float, float]
    quality: float
    created_at: datetime


@dataclass(frozen=True)
class NewTemplate:
    """A template about to be stored: one unit embedding, where it came from, and its face chip (PNG) if kept."""

    embedding: FloatArray
    source_sha256: str
    box: tuple[float, float, float, float]
    quality: float
    chip: bytes | None = None


@dataclass(frozen=True)
class RemovedTemplate:
    """A template an erasure removed: its id, the SHA-256 of the photo it came from and of its sealed bytes."""

    id: int
    source_sha256: str
    sealed_sha256: str


@dataclass(frozen=True)
class ErasedPerson:
    person: PersonRecord
    templates: list[RemovedTemplate]
    consent_records: int
    chips: int
    linked: dict[str, int]  # video records removed with the person (sightings, alerts)


# Templates re-sealed per transaction by a key rotation: short write locks, progress kept on interruption.
RESEAL_BATCH = 500


def embedding_context(gallery_id: int, person_id: int) -> bytes:
    """What a template's sealed embedding is bound to: a copy on another person's row does not open."""
    return f"templates.embedding|gallery={gallery_id}|person={person_id}".encode()


def chip_context(person_id: int) -> bytes:
    return f"chips.sealed|person={person_id}".encode()


# How many templates a person has (a person id condition is added where it is used).
_TEMPLATE_COUNT = select(func.count()).select_from(TemplateRow)


def _gallery_record(row: Any) -> GalleryRecord:
    """From an ORM ``GalleryRow`` or a Core row of the galleries table."""
    model = ModelInfo(name=row.model_name, version=row.model_version, sha256=row.model_sha256)
    return GalleryRecord(row.id, row.name, model, row.dim, row.watchlist, row.revision, as_utc(row.created_at),
                         row.legal_basis, row.basis_justification, row.retention_days, row.keep_chips)


def _template_record(row: TemplateRow) -> TemplateRecord:
    x1, y1, x2, y2 = (float(v) for v in row.box)
    return TemplateRecord(row.id, row.person_id, row.model_id, row.source_sha256, (x1, y1, x2, y2), row.quality,
                          as_utc(row.created_at))


def reseal_rows(cipher: DataCipher, session: Session, statement: Any,
                rows: Sequence[tuple[int, bytes, str | None, bytes]]) -> int:
    """Open each ``(row id, context, key id, sealed)`` and seal it again under the current key with ``statement``
    (an UPDATE taking ``row``, ``sealed`` and ``key`` parameters)."""
    changes = []
    for row_id, context, key_id, sealed in rows:
        new_key, resealed = cipher.seal(cipher.open(key_id, sealed, context), context)
        changes.append({"row": row_id, "sealed": resealed, "key": new_key})
    if changes:
        session.connection().execute(statement, changes)
    return len(changes)


class SqlStore:
    """Galleries, persons and templates. Thread-safe: each call uses its own session."""

    def __init__(self, database: Database | str, cipher: DataCipher) -> None:
        self.db = database if isinstance(database, Database) else Database(database)
        self.cipher = cipher
        self._read = self.db.read
        self._write = self.db.write
        # Hot-path statements, built once (SQLAlchemy caches their compiled form).
        self._gallery_by_name = select(GalleryRow.__table__).where(GalleryRow.name == bindparam("name"))
        # Naming search results: plain SQL (no statement compilation), by primary key alone (with a gallery
        # condition SQLite's planner walks the gallery index instead), the ids as one parameter.
        owners = ("SELECT t.id, t.gallery_id, p.id, p.external_id, p.display_name, p.matchable_until FROM templates t "
                  "JOIN persons p ON p.id = t.person_id WHERE t.id ")
        self._owners_sql = owners + ("IN (SELECT value FROM json_each(?))" if self.db.is_sqlite else "= ANY(%s)")

    def close(self) -> None:
        self.db.close()

    # --- galleries -------------------------------------------------------------------------------

    def create_gallery(self, name: str, model: ModelInfo, dim: int, *, watchlist: bool = False,
                       legal_basis: str | None = None, justification: str | None = None,
                       keep_chips: bool = False) -> GalleryRecord:
        """A new gallery; ``legal_basis`` (with its ``justification``) covers everyone in it, else each person
        needs a consent record to be enrolled."""
        legal_basis, justification = check_gallery_basis(legal_basis, justification)
        if not name.strip():
            raise StoreError("a gallery name cannot be empty", code="invalid_name")
        if "/" in name or any(ord(c) < 32 for c in name):
            raise StoreError(f"a gallery name cannot contain '/' or control characters: {name!r}",
                             code="invalid_name")
        try:
            with self._write() as session:
                row = GalleryRow(name=name, model_id=model.id, model_name=model.name, model_version=model.version,
                                 model_sha256=model.sha256, dim=dim, watchlist=watchlist, revision=0,
                                 legal_basis=legal_basis, basis_justification=justification, keep_chips=keep_chips)
                session.add(row)
                session.flush()
                return _gallery_record(row)
        except IntegrityError:
            raise ConflictError(f"a gallery named '{name}' already exists", code="gallery_exists") from None

    def gallery(self, name: str) -> GalleryRecord:
        with self.db.connect() as connection:
            row = connection.execute(self._gallery_by_name, {"name": name}).first()
        if row is None:
            raise NotFoundError(f"no gallery named '{name}'", code="gallery_not_found")
        return _gallery_record(row)

    def galleries(self) -> list[GalleryRecord]:
        with self._read() as session:
            return [_gallery_record(r) for r in session.scalars(select(GalleryRow).order_by(GalleryRow.name))]

    def delete_gallery(self, name: str) -> GalleryRecord:
        gallery = self.gallery(name)
        with self._write() as session:
            session.execute(delete(TemplateRow).where(TemplateRow.gallery_id == gallery.id))
            session.execute(delete(PersonRow).where(PersonRow.gallery_id == gallery.id))
            session.execute(delete(GalleryRow).where(GalleryRow.id == gallery.id))
        return gallery

    def set_retention(self, name: str, days: int | None) -> GalleryRecord:
        """Keep templates ``days`` days (None: until erasure or the end of consent)."""
        if days is not None and days < 1:
            raise StoreError("retention must be at least 1 day", code="invalid_retention")
        gallery = self.gallery(name)
        with self._write() as session:
            session.execute(update(GalleryRow).where(GalleryRow.id == gallery.id).values(retention_days=days))
        return self.gallery(name)

    def set_watchlist(self, name: str, watchlist: bool) -> GalleryRecord:
        gallery = self.gallery(name)
        with self._write() as session:
            session.execute(update(GalleryRow).where(GalleryRow.id == gallery.id).values(watchlist=watchlist))
        return self.gallery(name)

    # --- persons ---------------------------------------------------------------------------------

    def _person_row(self, session: Session, gallery: GalleryRecord, external_id: str) -> PersonRow:
        row = session.scalar(
            select(PersonRow).where(PersonRow.gallery_id == gallery.id, PersonRow.external_id == external_id)
        )
        if row is None:
            raise NotFoundError(f"no person '{external_id}' in gallery '{gallery.name}'", code="person_not_found")
        return row

    def _person_record(self, session: Session, gallery: GalleryRecord, row: PersonRow,
                       templates: int | None = None,
                       consents: dict[int, ConsentRecord] | None = None) -> PersonRecord:
        """``templates`` and newest ``consents`` are read here unless given (lists read them for a whole page)."""
        if templates is None:
            templates = session.scalar(_TEMPLATE_COUNT.where(TemplateRow.person_id == row.id))
        if consents is None:
            consents = self._newest_consents(session, [row.id])
        consent = consents.get(row.id)
        matchable = row.matchable_until is None or row.matchable_until > time.time()
        return PersonRecord(row.id, gallery.name, row.external_id, row.display_name, dict(row.attributes or {}),
                            int(templates or 0), as_utc(row.created_at), as_utc(row.updated_at), consent, matchable)

    @staticmethod
    def _newest_consents(session: Session, person_ids: list[int]) -> dict[int, ConsentRecord]:
        rows = session.scalars(select(ConsentRow).where(ConsentRow.person_id.in_(person_ids)).order_by(ConsentRow.id))
        return {row.person_id: ConsentRecord.of(row) for row in rows}  # the newest wins

    def person(self, gallery: GalleryRecord, external_id: str) -> PersonRecord:
        with self._read() as session:
            return self._person_record(session, gallery, self._person_row(session, gallery, external_id))

    def persons(self, gallery: GalleryRecord, *, offset: int = 0, limit: int = 100) -> list[PersonRecord]:
        with self._read() as session:
            templates = _TEMPLATE_COUNT.where(TemplateRow.person_id == PersonRow.id).scalar_subquery()
            rows = session.execute(select(PersonRow, templates).where(PersonRow.gallery_id == gallery.id)
                                   .order_by(PersonRow.external_id).offset(offset).limit(limit)).all()
            consents = self._newest_consents(session, [row.id for row, _ in rows])
            return [self._person_record(session, gallery, row, count, consents) for row, count in rows]

    def person_count(self, gallery: GalleryRecord) -> int:
        """People enrolled in the gallery (each one a chance of a false match in a 1:N search)."""
        with self._read() as session:
            count = session.scalar(select(func.count()).select_from(PersonRow)
                                   .where(PersonRow.gallery_id == gallery.id))
            return int(count or 0)

    def update_person(self, gallery: GalleryRecord, external_id: str, *, display_name: str | None = None,
                      metadata: dict[str, Any] | None = None) -> PersonRecord:
        with self._write() as session:
            row = self._person_row(session, gallery, external_id)
            if display_name is not None:
                row.display_name = display_name
            if metadata is not None:
                row.attributes = metadata
            row.updated_at = utcnow()
            session.flush()
            return self._person_record(session, gallery, row)

    def enroll(self, gallery: GalleryRecord, external_id: str, templates: Sequence[NewTemplate], *,
               display_name: str | None = None, metadata: dict[str, Any] | None = None,
               create: bool = True, consent: Consent | None = None,
               copy_consents_from: int | None = None) -> tuple[PersonRecord, list[int]]:
        """Add templates to a person (created when ``create`` and missing), all or nothing; bumps the revision.

        Unless the gallery declares a legal basis for everyone, the person needs a consent record:
        ``consent`` (stored with the templates, in the same transaction) or an active one already stored.
        ``copy_consents_from`` (a person id) copies that person's whole consent history first (a model migration).
        """
        consent = consent.checked() if consent is not None else None
        if not external_id.strip():
            raise StoreError("a person's external id cannot be empty", code="invalid_external_id")
        for template in templates:
            if template.embedding.shape != (gallery.dim,) or not np.all(np.isfinite(template.embedding)):
                raise StoreError(f"template embedding must be {gallery.dim} finite floats", code="invalid_embedding")
        with self._write() as session:
            row = session.scalar(
                select(PersonRow).where(PersonRow.gallery_id == gallery.id, PersonRow.external_id == external_id)
            )
            if row is None:
                if not create:
                    raise NotFoundError(f"no person '{external_id}' in gallery '{gallery.name}'",
                                        code="person_not_found")
                row = PersonRow(gallery_id=gallery.id, external_id=external_id, display_name=display_name,
                                attributes=metadata or {})
                session.add(row)
                session.flush()
            else:
                if display_name is not None:
                    row.display_name = display_name
                if metadata is not None:
                    row.attributes = metadata
                row.updated_at = utcnow()
            if copy_consents_from is not None:
                self._copy_consents(session, copy_consents_from, row)
            if consent is not None:
                self._add_consent(session, row, consent)
            elif gallery.legal_basis is None:
                newest = self._newest_consents(session, [row.id]).get(row.id)
                require_active(gallery.name, external_id, newest)
            context = embedding_context(gallery.id, row.id)
            template_rows = []
            for t in templates:
                key_id, sealed = self.cipher.seal(np.asarray(t.embedding, "<f4").tobytes(), context)
                template_rows.append(TemplateRow(
                    gallery_id=gallery.id, person_id=row.id, model_id=gallery.model.id, embedding=sealed,
                    key_id=key_id, source_sha256=t.source_sha256, box=[float(v) for v in t.box],
                    quality=float(t.quality)))
            session.add_all(template_rows)
            if template_rows:
                self._bump(session, gallery)
            session.flush()
            if gallery.keep_chips:
                for template_row, template in zip(template_rows, templates, strict=True):
                    if template.chip is not None:
                        key_id, sealed = self.cipher.seal(template.chip, chip_context(row.id))
                        session.add(ChipRow(template_id=template_row.id, person_id=row.id, sealed=sealed,
                                            key_id=key_id))
                session.flush()
            return self._person_record(session, gallery, row), [t.id for t in template_rows]

    # --- consent ---------------------------------------------------------------------------------

    @staticmethod
    def _add_consent(session: Session, row: PersonRow, consent: Consent) -> None:
        session.add(ConsentRow(person_id=row.id, basis=consent.basis, evidence=consent.evidence,
                               recorded_by=consent.recorded_by, expires_at=consent.expires_at))
        row.matchable_until = epoch(consent.expires_at)

    @staticmethod
    def _copy_consents(session: Session, source_person_id: int, row: PersonRow) -> None:
        source = session.get(PersonRow, source_person_id)
        if source is None:
            raise NotFoundError(f"no person with id {source_person_id}", code="person_not_found")
        for old in session.scalars(select(ConsentRow).where(ConsentRow.person_id == source_person_id)
                                   .order_by(ConsentRow.id)):
            session.add(ConsentRow(person_id=row.id, basis=old.basis, evidence=old.evidence,
                                   recorded_by=old.recorded_by, recorded_at=old.recorded_at, expires_at=old.expires_at,
                                   withdrawn_at=old.withdrawn_at, withdrawn_by=old.withdrawn_by))
        row.matchable_until = source.matchable_until
        session.flush()

    def record_consent(self, gallery: GalleryRecord, external_id: str, consent: Consent) -> PersonRecord:
        """A new consent record for an enrolled person (a renewal): they match again until it ends."""
        consent = consent.checked()
        with self._write() as session:
            row = self._person_row(session, gallery, external_id)
            self._add_consent(session, row, consent)
            row.updated_at = utcnow()
            session.flush()
            return self._person_record(session, gallery, row)

    def withdraw_consent(self, gallery: GalleryRecord, external_id: str, withdrawn_by: str) -> PersonRecord:
        """Date the withdrawal of the person's consent: they stop matching now; retention erases them."""
        with self._write() as session:
            row = self._person_row(session, gallery, external_id)
            newest = session.scalar(select(ConsentRow).where(ConsentRow.person_id == row.id)
                                    .order_by(ConsentRow.id.desc()).limit(1))
            if newest is None or newest.withdrawn_at is not None:
                raise ConflictError(f"'{external_id}' has no consent to withdraw"
                                    + (" (the gallery's legal basis covers them: erase them to stop processing)"
                                       if gallery.legal_basis else ""), code="no_active_consent")
            now = utcnow()
            newest.withdrawn_at, newest.withdrawn_by = now, withdrawn_by
            row.matchable_until = epoch(now)
            row.updated_at = now
            session.flush()
            return self._person_record(session, gallery, row)

    def consent_history(self, gallery: GalleryRecord, external_id: str) -> list[ConsentRecord]:
        """Every consent record of a person, oldest first."""
        with self._read() as session:
            person = self._person_row(session, gallery, external_id)
            rows = session.scalars(select(ConsentRow).where(ConsentRow.person_id == person.id).order_by(ConsentRow.id))
            return [ConsentRecord.of(row) for row in rows]

    def unmatchable_persons(self, *, limit: int = 1000) -> list[tuple[str, str]]:
        """``(gallery, external id)`` of people whose consent ended (expired or withdrawn), for retention."""
        with self._read() as session:
            rows = session.execute(select(GalleryRow.name, PersonRow.external_id)
                                   .join(GalleryRow, GalleryRow.id == PersonRow.gallery_id)
                                   .where(PersonRow.matchable_until <= int(time.time()))
                                   .order_by(PersonRow.id).limit(limit))
            return [(gallery, external_id) for gallery, external_id in rows]

    def erase_person(self, gallery: GalleryRecord, external_id: str) -> ErasedPerson:
        """Delete a person, their templates and consent records; says what went (for the index and the receipt)."""
        with self._write() as session:
            row = self._person_row(session, gallery, external_id)
            record = self._person_record(session, gallery, row)
            templates = [RemovedTemplate(int(t), source, hashlib.sha256(sealed).hexdigest())
                         for t, source, sealed in session.execute(
                             select(TemplateRow.id, TemplateRow.source_sha256, TemplateRow.embedding)
                             .where(TemplateRow.person_id == row.id).order_by(TemplateRow.id))]
            consents = session.scalar(select(func.count()).select_from(ConsentRow)
                                      .where(ConsentRow.person_id == row.id))
            chips = session.scalar(select(func.count()).select_from(ChipRow).where(ChipRow.person_id == row.id))
            linked = self._unlink_video(session, row.id)
            session.execute(delete(ChipRow).where(ChipRow.person_id == row.id))
            session.execute(delete(TemplateRow).where(TemplateRow.person_id == row.id))
            session.execute(delete(ConsentRow).where(ConsentRow.person_id == row.id))
            session.delete(row)
            self._bump(session, gallery)
            return ErasedPerson(record, templates, int(consents or 0), int(chips or 0), linked)

    @staticmethod
    def _unlink_video(session: Session, person_id: int) -> dict[str, int]:
        """Delete the person's sightings and alerts (the video archive's); their archives' revisions move so the
        sighting indexes drop the vectors. Named by table: the archive's module builds on this one."""
        sightings = table("sightings", column("person_id"), column("model_id"))
        alerts = table("alerts", column("person_id"))
        archives = table("sighting_archives", column("model_id"), column("revision"))
        models = [m for (m,) in session.execute(select(sightings.c.model_id).distinct()
                                                .where(sightings.c.person_id == person_id))]
        counted = {"sightings": select(func.count()).select_from(sightings).where(sightings.c.person_id == person_id),
                   "alerts": select(func.count()).select_from(alerts).where(alerts.c.person_id == person_id)}
        linked = {kind: int(session.scalar(query) or 0) for kind, query in counted.items()}
        session.execute(delete(sightings).where(sightings.c.person_id == person_id))
        session.execute(delete(alerts).where(alerts.c.person_id == person_id))
        if models:
            session.execute(update(archives).where(archives.c.model_id.in_(models))
                            .values(revision=archives.c.revision + 1))
        return linked

    # --- templates -------------------------------------------------------------------------------

    def templates(self, gallery: GalleryRecord, external_id: str) -> list[TemplateRecord]:
        with self._read() as session:
            person = self._person_row(session, gallery, external_id)
            rows = session.scalars(select(TemplateRow).where(TemplateRow.person_id == person.id)
                                   .order_by(TemplateRow.id))
            return [_template_record(r) for r in rows]

    def delete_template(self, gallery: GalleryRecord, template_id: int) -> TemplateRecord:
        with self._write() as session:
            row = session.scalar(select(TemplateRow).where(TemplateRow.id == template_id,
                                                           TemplateRow.gallery_id == gallery.id))
            if row is None:
                raise NotFoundError(f"no template {template_id} in gallery '{gallery.name}'",
                                    code="template_not_found")
            record = _template_record(row)
            session.delete(row)
            self._bump(session, gallery)
            return record

    def templates_created_before(self, gallery: GalleryRecord, moment: datetime, *, limit: int = 10_000) -> list[int]:
        """Ids of templates older than ``moment`` (retention)."""
        with self._read() as session:
            return list(session.scalars(select(TemplateRow.id).where(TemplateRow.gallery_id == gallery.id,
                                                                     TemplateRow.created_at < moment)
                                        .order_by(TemplateRow.id).limit(limit)))

    def delete_templates(self, gallery: GalleryRecord, template_ids: Sequence[int]) -> list[str]:
        """Delete templates by id, all in one transaction; returns the external ids of people left with none."""
        ids = [int(i) for i in template_ids]
        with self._write() as session:
            owners = set(session.scalars(select(TemplateRow.person_id).where(TemplateRow.id.in_(ids),
                                                                             TemplateRow.gallery_id == gallery.id)))
            session.execute(delete(TemplateRow).where(TemplateRow.id.in_(ids), TemplateRow.gallery_id == gallery.id))
            self._bump(session, gallery)
            left = _TEMPLATE_COUNT.where(TemplateRow.person_id == PersonRow.id).scalar_subquery()
            return list(session.scalars(select(PersonRow.external_id).where(PersonRow.id.in_(owners), left == 0)))

    def template_people(self, gallery: GalleryRecord, template_ids: Sequence[int]) -> dict[int, TemplateOwner]:
        """Template id → its person, in one query, for ids still present (a search may race with an erase)."""
        ids = [int(i) for i in template_ids]
        with self.db.connect() as connection:
            rows = connection.exec_driver_sql(self._owners_sql, (json.dumps(ids) if self.db.is_sqlite else ids,))
            return {int(t): TemplateOwner(int(p), external_id, name, until)
                    for t, owner_gallery, p, external_id, name, until in rows if owner_gallery == gallery.id}

    def _vectors(self, gallery: GalleryRecord, rows: Sequence[Any]) -> np.ndarray:
        """``(n, dim)`` float32 from ``(person_id, key_id, sealed)`` rows."""
        if not rows:
            return np.zeros((0, gallery.dim), np.float32)
        opened = b"".join(self.cipher.open(key_id, sealed, embedding_context(gallery.id, person_id))
                          for person_id, key_id, sealed in rows)
        return np.frombuffer(opened, "<f4").reshape(len(rows), gallery.dim).astype(np.float32)

    def all_vectors(self, gallery: GalleryRecord, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every template of a gallery as ``(ids, vectors)`` chunks, for rebuilding an index."""
        last = 0
        while True:
            with self._read() as session:
                rows = session.execute(
                    select(TemplateRow.id, TemplateRow.person_id, TemplateRow.key_id, TemplateRow.embedding)
                    .where(TemplateRow.gallery_id == gallery.id, TemplateRow.id > last)
                    .order_by(TemplateRow.id).limit(batch)
                ).all()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], np.int64)
            yield ids, self._vectors(gallery, [r[1:] for r in rows])
            last = int(ids[-1])

    def person_vectors(self, gallery: GalleryRecord, person_id: int) -> np.ndarray:
        """``(n, dim)`` embeddings of one person's templates (for 1:1 verification, straight from SQL)."""
        with self._read() as session:
            rows = session.execute(select(TemplateRow.person_id, TemplateRow.key_id, TemplateRow.embedding)
                                   .where(TemplateRow.person_id == person_id).order_by(TemplateRow.id)).all()
        return self._vectors(gallery, rows)

    # --- keys ------------------------------------------------------------------------------------

    def chips(self, person_id: int) -> dict[int, bytes]:
        """Template id → its face chip (PNG bytes, opened), for the person's templates that kept one."""
        with self._read() as session:
            rows = session.execute(select(ChipRow.template_id, ChipRow.key_id, ChipRow.sealed)
                                   .where(ChipRow.person_id == person_id).order_by(ChipRow.template_id)).all()
        return {int(t): self.cipher.open(key_id, sealed, chip_context(person_id)) for t, key_id, sealed in rows}

    def key_usage(self) -> dict[str | None, int]:
        """Sealed records (embeddings and chips) per data key id (None: stored before encryption at rest)."""
        usage: dict[str | None, int] = {}
        with self._read() as session:
            for column in (TemplateRow.key_id, ChipRow.key_id):
                for key_id, count in session.execute(select(column, func.count()).group_by(column)):
                    usage[key_id] = usage.get(key_id, 0) + int(count)
        return usage

    def reseal(self, batch: int = RESEAL_BATCH) -> int:
        """Re-seal up to ``batch`` records not under the current data key; returns how many (0: all done).

        Each batch commits on its own (a rotation stopped midway resumes where it was); a row
        changed meanwhile (erased) is simply not updated.
        """
        current = self.cipher.current_key_id
        with self._write() as session:
            rows = session.execute(
                select(TemplateRow.id, TemplateRow.gallery_id, TemplateRow.person_id, TemplateRow.key_id,
                       TemplateRow.embedding)
                .where((TemplateRow.key_id != current) | TemplateRow.key_id.is_(None))
                .order_by(TemplateRow.id).limit(batch)
            ).all()
            if rows:
                return reseal_rows(
                    self.cipher, session, update(TemplateRow).where(TemplateRow.id == bindparam("row"))
                    .values(embedding=bindparam("sealed"), key_id=bindparam("key")),
                    [(t, embedding_context(g, p), key_id, sealed) for t, g, p, key_id, sealed in rows])
            chips = session.execute(select(ChipRow.template_id, ChipRow.person_id, ChipRow.key_id, ChipRow.sealed)
                                    .where(ChipRow.key_id != current).order_by(ChipRow.template_id)
                                    .limit(batch)).all()
            return reseal_rows(
                self.cipher, session, update(ChipRow).where(ChipRow.template_id == bindparam("row"))
                .values(sealed=bindparam("sealed"), key_id=bindparam("key")),
                [(t, chip_context(p), key_id, sealed) for t, p, key_id, sealed in chips])

    def revision(self, gallery: GalleryRecord) -> int:
        with self._read() as session:
            value = session.scalar(select(GalleryRow.revision).where(GalleryRow.id == gallery.id))
            if value is None:
                raise NotFoundError(f"no gallery named '{gallery.name}'", code="gallery_not_found")
            return int(value)

    @staticmethod
    def _bump(session: Session, gallery: GalleryRecord) -> None:
        session.execute(update(GalleryRow).where(GalleryRow.id == gallery.id)
                        .values(revision=GalleryRow.revision + 1))
