"""The library's gallery API: enrol people, verify (1:1), identify (1:N), erase.

One :class:`Gallery` object manages every named gallery in a database. The SQL store is the
source of truth; each gallery's vector index is a cache, rebuilt from SQL when it is missing
or when its revision differs from the gallery's (another process wrote, or this one crashed
before saving). Writes go to SQL first, in one transaction, then to the index.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visage.config import Settings
from visage.db import sqlite_url, utcnow
from visage.errors import ConflictError, EmbeddingError, InvalidInputError, NoFaceError, NotFoundError, VisageError
from visage.gallery.chips import face_chip
from visage.gallery.index import VectorIndex
from visage.gallery.index_faiss import FaissIndex
from visage.gallery.receipts import ErasureReceipt
from visage.gallery.store_sql import (
    GalleryRecord,
    NewTemplate,
    PersonRecord,
    SqlStore,
    TemplateRecord,
)
from visage.io.image import ImageSource
from visage.model_cards import Threshold
from visage.pipeline import FaceAnalyzer
from visage.privacy.consent import Consent, require_active
from visage.privacy.crypto import DataCipher
from visage.privacy.data_keys import open_key_provider
from visage.types import Face, FloatArray, Verification

# How many template hits are fetched per requested candidate, so that people with several
# templates do not crowd others out of the top k.
TEMPLATES_PER_CANDIDATE = 8
# The in-process index is checkpointed at most this often; SQL stays the durable copy.
SAVE_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class Rejection:
    """An image that did not enrol, and why."""

    image: str
    code: str
    message: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Enrollment:
    """Result of enrolling images: the person (None when no image was accepted), new template ids, rejections."""

    person: PersonRecord | None
    template_ids: list[int]
    rejected: list[Rejection]


@dataclass(frozen=True)
class Candidate:
    external_id: str
    display_name: str | None
    similarity: float
    same: bool


@dataclass(frozen=True)
class Identification:
    """The candidates for one face, best first, with the threshold that decided ``same``.

    ``fmr`` is the per-comparison false-match rate the threshold stands for; with an FPIR
    operating point it is the FPIR divided by the gallery's people, and ``clamped`` says the
    gallery is too large for the calibration to reach it (the FPIR is then above target).
    """

    face: Face | None
    candidates: list[Candidate]
    threshold: float
    operating_point: str
    fmr: float | None = None
    clamped: bool = False


@dataclass
class _IndexSlot:
    index: VectorIndex
    lock: threading.RLock = field(default_factory=threading.RLock)
    saved_at: float = 0.0


def source_label(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


def source_sha256(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(source)).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest()


def unit_vector(gallery: GalleryRecord, embedding: np.ndarray) -> FloatArray:
    """``embedding`` as a unit float32 vector of the gallery's size, or a clear error."""
    vector = np.asarray(embedding, dtype=np.float64).ravel()
    if vector.shape != (gallery.dim,):
        raise EmbeddingError(f"gallery '{gallery.name}' holds {gallery.dim}-d embeddings, got {vector.size} values",
                             code="wrong_dimension")
    norm = float(np.linalg.norm(vector)) if np.all(np.isfinite(vector)) else float("nan")
    if not np.isfinite(norm) or norm == 0:
        raise EmbeddingError("the embedding must be finite and non-zero", code="invalid_embedding")
    return (vector / norm).astype(np.float32)


def open_index(settings: Settings, dim: int, name: str, cipher: DataCipher, context: bytes) -> VectorIndex:
    """The configured kind of vector index named ``name``: a sealed FAISS file under ``data_dir/index/<name>``
    (bound to ``context``), or the Milvus collection ``visage_<name>``."""
    chosen = settings.gallery
    if chosen.index == "milvus":
        from visage.gallery.index_milvus import MilvusIndex

        uri = chosen.milvus_uri or str(settings.data_dir / "milvus.db")
        return MilvusIndex(dim, uri, f"visage_{name.replace('-', '_')}")
    return FaissIndex(dim, settings.data_dir / "index" / name / "faiss.index", hnsw_threshold=chosen.hnsw_threshold,
                      cipher=cipher, context=context)


def identification(face: Face | None, candidates: list[Candidate], threshold: Threshold) -> Identification:
    return Identification(face, candidates, threshold.value, threshold.operating_point, threshold.fmr,
                          threshold.clamped)


class Gallery:
    """Galleries of enrolled people in one database, with their vector indexes. Thread-safe."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        analyzer: FaceAnalyzer | None = None,
        store: SqlStore | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._analyzer = analyzer
        self._analyzer_lock = threading.Lock()
        if store is None:
            url = self.settings.gallery.database_url or sqlite_url(self.settings.data_dir)
            store = SqlStore(url, DataCipher(open_key_provider(self.settings)))
        self.store = store
        self._slots: dict[int, _IndexSlot] = {}
        self._people: dict[int, tuple[int, int]] = {}  # gallery id -> (revision, people)
        self._slots_lock = threading.Lock()

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face analyzer, loaded on first use: listing or erasing records needs no models."""
        with self._analyzer_lock:
            if self._analyzer is None:
                self._analyzer = FaceAnalyzer(self.settings)
            return self._analyzer

    def close(self) -> None:
        """Checkpoint every index and release the database."""
        for slot in list(self._slots.values()):
            with slot.lock:
                slot.index.save()
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- galleries -------------------------------------------------------------------------------

    def create(self, name: str, *, watchlist: bool = False, legal_basis: str | None = None,
               justification: str | None = None, keep_chips: bool = False) -> GalleryRecord:
        """A new gallery bound to this analyzer's embedding model.

        ``legal_basis`` (one of :data:`~visage.privacy.consent.LEGAL_BASES`, with a written
        ``justification``) covers everyone in the gallery; without it each person enrolled needs
        a consent record. ``keep_chips`` keeps each template's face chip, sealed, so that
        :func:`~visage.gallery.model_migration.migrate_gallery` can re-embed it with a new model.
        """
        return self.store.create_gallery(name, self.analyzer.model, self.analyzer.embedder.dim, watchlist=watchlist,
                                         legal_basis=legal_basis, justification=justification, keep_chips=keep_chips)

    def get(self, name: str) -> GalleryRecord:
        return self.store.gallery(name)

    def galleries(self) -> list[GalleryRecord]:
        return self.store.galleries()

    def delete(self, name: str) -> GalleryRecord:
        gallery = self.store.gallery(name)
        self._slot(gallery).index.reset()  # vectors go with the gallery, whatever the backend
        gallery = self.store.delete_gallery(name)
        with self._slots_lock:
            self._slots.pop(gallery.id, None)
        shutil.rmtree(self._index_dir(gallery), ignore_errors=True)
        return gallery

    def _bound(self, name: str) -> GalleryRecord:
        gallery = self.store.gallery(name)
        if gallery.model.id != self.analyzer.model.id:
            raise ConflictError(
                f"gallery '{name}' holds templates of model {gallery.model.id}; this analyzer embeds with "
                f"{self.analyzer.model.id}, whose vectors cannot be compared with them",
                code="model_mismatch",
            )
        return gallery

    # --- index maintenance -----------------------------------------------------------------------

    def _index_dir(self, gallery: GalleryRecord) -> Path:
        return self.settings.data_dir / "index" / f"gallery-{gallery.id}"

    def _slot(self, gallery: GalleryRecord) -> _IndexSlot:
        with self._slots_lock:
            slot = self._slots.get(gallery.id)
            if slot is None:
                slot = self._slots[gallery.id] = _IndexSlot(self._open_index(gallery))
            return slot

    def _open_index(self, gallery: GalleryRecord) -> VectorIndex:
        return open_index(self.settings, gallery.dim, f"gallery-{gallery.id}", self.store.cipher,
                          f"faiss-index|gallery={gallery.id}".encode())

    def _fresh(self, gallery: GalleryRecord) -> _IndexSlot:
        """The gallery's index, rebuilt from SQL first if it does not reflect the current revision."""
        slot = self._slot(gallery)
        with slot.lock:
            # The record was just read, so an index at its revision is current without asking SQL again.
            if slot.index.revision != gallery.revision and slot.index.revision != self.store.revision(gallery):
                self._rebuild(gallery, slot)
        return slot

    def _rebuild(self, gallery: GalleryRecord, slot: _IndexSlot) -> None:
        while True:
            revision = self.store.revision(gallery)
            slot.index.reset()
            for ids, vectors in self.store.all_vectors(gallery):
                slot.index.add(ids, vectors)
            if self.store.revision(gallery) == revision:  # nobody wrote meanwhile
                slot.index.revision = revision
                break
        self._save(slot, force=True)

    def _after_write(self, gallery: GalleryRecord, slot: _IndexSlot, add: tuple[np.ndarray, np.ndarray] | None,
                     remove: np.ndarray | None, revision_before: int) -> None:
        """Apply our own committed change; if anyone else also wrote, rebuild instead."""
        if self.store.revision(gallery) != revision_before + 1 or slot.index.revision != revision_before:
            self._rebuild(gallery, slot)
            return
        if remove is not None:
            slot.index.remove(remove)
        if add is not None:
            slot.index.add(*add)
        slot.index.revision = revision_before + 1
        self._save(slot)

    def resave_indexes(self) -> int:
        """Write every gallery's index file again (under the current data key); returns how many."""
        saved = 0
        for gallery in self.store.galleries():
            slot = self._fresh(gallery)
            with slot.lock:
                self._save(slot, force=True)
            saved += 1
        return saved

    @staticmethod
    def _save(slot: _IndexSlot, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - slot.saved_at >= SAVE_INTERVAL_SECONDS:
            slot.index.save()
            slot.saved_at = now

    # --- enrolment -------------------------------------------------------------------------------

    def _template_from(self, source: ImageSource, face_index: int | None, label: str,
                       keep_chip: bool) -> NewTemplate | Rejection:
        try:
            image = self.analyzer.load(source)
            faces = self.analyzer.analyze(image)
            digest = source_sha256(source)
        except VisageError as exc:
            return Rejection(label, exc.code, exc.message)
        except OSError as exc:
            return Rejection(label, "file_unreadable", f"cannot read {label}: {exc.strerror}")
        if len(faces) == 0:
            return Rejection(label, "no_face", "no face found")
        if face_index is None and len(faces) > 1:
            return Rejection(label, "several_faces",
                             f"{len(faces)} faces found; choose one with face_index (0..{len(faces) - 1})")
        chosen = face_index or 0
        if not 0 <= chosen < len(faces):
            return Rejection(label, "face_index_out_of_range", f"face_index {chosen} but {len(faces)} face(s) found")
        face = faces[chosen]
        gate = self.settings.gallery.min_quality
        if face.quality.score < gate:
            return Rejection(label, "low_quality", f"quality {face.quality.score:.2f} is below the gate {gate:.2f}",
                             face.quality.reasons)
        assert face.embedding is not None
        x1, y1, x2, y2 = (float(v) for v in face.box)
        chip = face_chip(image, face.box) if keep_chip else None
        return NewTemplate(face.embedding, digest, (x1, y1, x2, y2), face.quality.score, chip)

    def enroll(
        self,
        gallery_name: str,
        external_id: str,
        images: Sequence[ImageSource],
        *,
        display_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        face_index: int | None = None,
        labels: Sequence[str] | None = None,
        consent: Consent | None = None,
    ) -> Enrollment:
        """Add a template per acceptable image (one face passing the quality gate); the others are reported.

        ``labels`` name the images in rejections (e.g. upload file names); by default, their paths.
        ``consent`` is the person's consent record, required unless the gallery has a legal basis
        for everyone or the person already has an active one (checked before any image is analysed).
        """
        gallery = self._bound(gallery_name)
        consent = self._consent_for(gallery, external_id, consent)
        if labels is not None and len(labels) != len(images):
            raise InvalidInputError(f"{len(labels)} labels for {len(images)} images", code="labels_mismatch")
        accepted: list[NewTemplate] = []
        rejected: list[Rejection] = []
        for position, source in enumerate(images):
            label = labels[position] if labels is not None else source_label(source)
            outcome = self._template_from(source, face_index, label, gallery.keep_chips)
            if isinstance(outcome, NewTemplate):
                accepted.append(outcome)
            else:
                rejected.append(outcome)
        if not accepted:
            return Enrollment(None, [], rejected)
        person, ids = self._store_templates(gallery, external_id, accepted, display_name, metadata, consent)
        return Enrollment(person, ids, rejected)

    def enroll_templates(
        self,
        gallery_name: str,
        external_id: str,
        templates: Sequence[NewTemplate],
        *,
        display_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        consent: Consent | None = None,
        copy_consents_from: int | None = None,
    ) -> Enrollment:
        """Enrol embeddings computed elsewhere (an import, or an evaluation that picks faces itself).

        The caller vouches that they come from the gallery's model; their size is checked and
        they are normalised here. No quality gate applies: ``quality`` is stored as given.
        ``copy_consents_from`` (a person id in another gallery) carries that person's consent
        history over instead of ``consent`` (a model migration).
        """
        gallery = self._bound(gallery_name)
        if not templates:
            raise EmbeddingError("no templates to enrol", code="no_templates")
        checked = [NewTemplate(unit_vector(gallery, t.embedding), t.source_sha256, t.box, t.quality, t.chip)
                   for t in templates]
        if copy_consents_from is None:
            consent = self._consent_for(gallery, external_id, consent)
        person, ids = self._store_templates(gallery, external_id, checked, display_name, metadata, consent,
                                            copy_consents_from)
        return Enrollment(person, ids, [])

    def _consent_for(self, gallery: GalleryRecord, external_id: str, consent: Consent | None) -> Consent | None:
        """Fail fast (before any image is analysed) when the enrolment could not be stored for want of consent;
        the store checks again in its transaction."""
        if consent is not None:
            return consent.checked()
        if gallery.legal_basis is None:
            try:
                current = self.store.person(gallery, external_id).consent
            except NotFoundError:
                current = None
            require_active(gallery.name, external_id, current)
        return None

    def _store_templates(self, gallery: GalleryRecord, external_id: str, templates: Sequence[NewTemplate],
                         display_name: str | None, metadata: dict[str, Any] | None, consent: Consent | None,
                         copy_consents_from: int | None = None) -> tuple[PersonRecord, list[int]]:
        slot = self._fresh(gallery)
        with slot.lock:
            before = self.store.revision(gallery)
            person, ids = self.store.enroll(gallery, external_id, templates, display_name=display_name,
                                            metadata=metadata, consent=consent,
                                            copy_consents_from=copy_consents_from)
            vectors = np.stack([t.embedding for t in templates]).astype(np.float32)
            self._after_write(gallery, slot, (np.array(ids, np.int64), vectors), None, before)
        return person, ids

    # --- people and templates --------------------------------------------------------------------

    def person(self, gallery_name: str, external_id: str) -> PersonRecord:
        return self.store.person(self.store.gallery(gallery_name), external_id)

    def persons(self, gallery_name: str, *, offset: int = 0, limit: int = 100) -> list[PersonRecord]:
        return self.store.persons(self.store.gallery(gallery_name), offset=offset, limit=limit)

    def update_person(self, gallery_name: str, external_id: str, *, display_name: str | None = None,
                      metadata: dict[str, Any] | None = None) -> PersonRecord:
        return self.store.update_person(self.store.gallery(gallery_name), external_id, display_name=display_name,
                                        metadata=metadata)

    def record_consent(self, gallery_name: str, external_id: str, consent: Consent) -> PersonRecord:
        """A new consent record (a renewal): the person matches again until it ends."""
        return self.store.record_consent(self.store.gallery(gallery_name), external_id, consent)

    def withdraw_consent(self, gallery_name: str, external_id: str, withdrawn_by: str) -> PersonRecord:
        """The person withdrew consent: they stop matching now and retention erases them."""
        return self.store.withdraw_consent(self.store.gallery(gallery_name), external_id, withdrawn_by)

    def templates(self, gallery_name: str, external_id: str) -> list[TemplateRecord]:
        return self.store.templates(self.store.gallery(gallery_name), external_id)

    def delete_template(self, gallery_name: str, template_id: int) -> TemplateRecord:
        gallery = self.store.gallery(gallery_name)
        slot = self._fresh(gallery)
        with slot.lock:
            before = self.store.revision(gallery)
            record = self.store.delete_template(gallery, template_id)
            self._after_write(gallery, slot, None, np.array([template_id], np.int64), before)
        return record

    def delete_templates(self, gallery_name: str, template_ids: Sequence[int]) -> list[str]:
        """Delete many templates at once (retention); returns the external ids of people left with none."""
        gallery = self.store.gallery(gallery_name)
        slot = self._fresh(gallery)
        with slot.lock:
            before = self.store.revision(gallery)
            emptied = self.store.delete_templates(gallery, template_ids)
            self._after_write(gallery, slot, None, np.array(template_ids, np.int64), before)
            self._save(slot, force=True)
        return emptied

    def set_retention(self, gallery_name: str, days: int | None) -> GalleryRecord:
        """Purge the gallery's templates once they are ``days`` old (None: keep them)."""
        return self.store.set_retention(gallery_name, days)

    def erase(self, gallery_name: str, external_id: str) -> ErasureReceipt:
        """Remove a person: SQL rows, consent records and index vectors; the freed bytes leave the files.

        Returns the receipt (what was removed, with hashes); their photos no longer match anyone.
        """
        gallery = self.store.gallery(gallery_name)
        slot = self._fresh(gallery)
        with slot.lock:
            before = self.store.revision(gallery)
            erased = self.store.erase_person(gallery, external_id)
            ids = np.array([t.id for t in erased.templates], np.int64)
            self._after_write(gallery, slot, None, ids, before)
            self._save(slot, force=True)  # erased vectors must not survive in the index file either
        purged = self.store.db.purge_freed_data()
        return ErasureReceipt(gallery.name, external_id, utcnow(), erased.templates, erased.consent_records,
                              len(ids), purged, {"face_chips": erased.chips, **erased.linked})

    # --- matching --------------------------------------------------------------------------------

    def _verify_threshold(self, operating_point: str | None) -> Threshold:
        return self.analyzer.decision_threshold(operating_point or self.settings.gallery.operating_point)

    def _identify_threshold(self, gallery: GalleryRecord, operating_point: str | None) -> Threshold:
        """An FPIR target depends on how many people a search can falsely match: counted per revision."""
        revision = gallery.revision
        with self._slots_lock:
            cached = self._people.get(gallery.id)
        if cached is None or cached[0] != revision:
            cached = (revision, self.store.person_count(gallery))
            with self._slots_lock:
                self._people[gallery.id] = cached
        return self.analyzer.decision_threshold(operating_point or self.settings.gallery.identify_operating_point,
                                                candidates=cached[1])

    def _candidates(self, gallery: GalleryRecord, queries: FloatArray, top_k: int,
                    threshold: float) -> list[list[Candidate]]:
        """Per query, the top-k people best first, each scored from their templates' similarities."""
        slot = self._fresh(gallery)
        with slot.lock:
            similarities, ids = slot.index.search(queries, top_k * TEMPLATES_PER_CANDIDATE)
        now = time.time()
        # People whose consent ended are skipped (retention erases them later).
        owners = {template: owner for template, owner in
                  self.store.template_people(gallery, [int(i) for i in np.unique(ids) if i >= 0]).items()
                  if owner.matchable_until is None or owner.matchable_until > now}
        named = {owner.person_id: owner for owner in owners.values()}
        results = []
        for row_similarities, row_ids in zip(similarities, ids, strict=True):
            per_person: dict[int, list[float]] = defaultdict(list)
            for value, template_id in zip(row_similarities, row_ids, strict=True):
                if template_id >= 0 and int(template_id) in owners:
                    per_person[owners[int(template_id)].person_id].append(float(value))
            scored = sorted(((self._score(values), person) for person, values in per_person.items()),
                            key=lambda item: (-item[0], item[1]))
            results.append([Candidate(named[person].external_id, named[person].display_name, score,
                                      score >= threshold) for score, person in scored[:top_k]])
        return results

    def _score(self, similarities: list[float]) -> float:
        best = sorted(similarities, reverse=True)
        if self.settings.gallery.scoring == "mean_best2" and len(best) >= 2:
            return (best[0] + best[1]) / 2
        return best[0]

    def _check_purpose(self, gallery: GalleryRecord, purpose: str | None) -> None:
        """Searching a watchlist (or any gallery, with ``privacy.require_purpose``) needs a stated purpose."""
        if (gallery.watchlist or self.settings.privacy.require_purpose) and not (purpose or "").strip():
            why = "is a watchlist" if gallery.watchlist else "is searched only for a stated purpose (privacy settings)"
            raise InvalidInputError(f"gallery '{gallery.name}' {why}: say why this search is made (purpose)",
                                    code="purpose_required")

    def identify(self, gallery_name: str, image: ImageSource, *, top_k: int | None = None,
                 operating_point: str | None = None, purpose: str | None = None) -> list[Identification]:
        """Every face in the image with its top-k enrolled candidates.

        ``purpose`` says why the search is made; watchlist galleries refuse a search without one.
        """
        gallery = self._bound(gallery_name)
        self._check_purpose(gallery, purpose)
        threshold = self._identify_threshold(gallery, operating_point)
        faces = self.analyzer.analyze(image)
        if len(faces) == 0 or faces.embeddings is None:
            return []
        per_face = self._candidates(gallery, faces.embeddings, top_k or self.settings.gallery.top_k, threshold.value)
        return [identification(faces[i], c, threshold) for i, c in enumerate(per_face)]

    def identify_embedding(self, gallery_name: str, embedding: np.ndarray, *, top_k: int | None = None,
                           operating_point: str | None = None, purpose: str | None = None) -> Identification:
        """Candidates for a raw embedding made by the gallery's model (normalised here); ``purpose`` as for identify."""
        gallery = self._bound(gallery_name)
        self._check_purpose(gallery, purpose)
        query = unit_vector(gallery, embedding)[None]
        threshold = self._identify_threshold(gallery, operating_point)
        candidates = self._candidates(gallery, query, top_k or self.settings.gallery.top_k, threshold.value)[0]
        return identification(None, candidates, threshold)

    def verify(self, gallery_name: str, external_id: str, image: ImageSource, *,
               operating_point: str | None = None) -> Verification:
        """1:1: is the largest face of ``image`` this enrolled person?"""
        gallery = self._bound(gallery_name)
        person = self._matchable_person(gallery, external_id)
        threshold = self._verify_threshold(operating_point)
        faces = self.analyzer.analyze(image, faces="largest")
        if len(faces) == 0 or faces.embeddings is None:
            raise NoFaceError("no face found in the image")
        similarities = self._person_template_similarities(gallery, person, faces.embeddings[0])
        score = self._score(similarities)
        return Verification(same=score >= threshold.value, similarity=score, threshold=threshold.value,
                            operating_point=threshold.operating_point)

    def verify_embedding(self, gallery_name: str, external_id: str, embedding: np.ndarray, *,
                         operating_point: str | None = None) -> Verification:
        """1:1 for a raw embedding made by the gallery's model (normalised here)."""
        gallery = self._bound(gallery_name)
        person = self._matchable_person(gallery, external_id)
        threshold = self._verify_threshold(operating_point)
        score = self._score(self._person_template_similarities(gallery, person, unit_vector(gallery, embedding)))
        return Verification(same=score >= threshold.value, similarity=score, threshold=threshold.value,
                            operating_point=threshold.operating_point)

    def _matchable_person(self, gallery: GalleryRecord, external_id: str) -> PersonRecord:
        person = self.store.person(gallery, external_id)
        if not person.matchable:
            ended = person.consent.ends_at.isoformat() if person.consent and person.consent.ends_at else "earlier"
            raise ConflictError(f"the consent of '{external_id}' ended ({ended}): their templates no longer match",
                                code="consent_ended")
        return person

    def _person_template_similarities(self, gallery: GalleryRecord, person: PersonRecord,
                                      query: FloatArray) -> list[float]:
        vectors = self.store.person_vectors(gallery, person.id)
        return [float(v) for v in vectors @ query]
