"""Request and response bodies of the REST API: the OpenAPI contract at ``/docs``."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from visage.api.keys import ApiKey
from visage.gallery import Candidate, Enrollment, Identification
from visage.gallery.receipts import ErasureReceipt
from visage.gallery.store_sql import GalleryRecord, PersonRecord, TemplateRecord
from visage.privacy.audit import AuditEntry
from visage.privacy.consent import LEGAL_BASES, ConsentRecord
from visage.types import Face, Verification

Item = TypeVar("Item")


class ErrorOut(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong, for people.")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    offset: int
    limit: int
    total: int | None = Field(None, description="Matching items in all, where cheap to count.")


BasisField = Field(description="Legal basis: " + ", ".join(LEGAL_BASES) + ".")


class GalleryIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    watchlist: bool = False
    legal_basis: str | None = Field(None, description="A legal basis covering everyone in the gallery (one of "
                                    + ", ".join(LEGAL_BASES) + "); without it each person needs a consent record.")
    justification: str | None = Field(None, max_length=4000,
                                      description="Why the gallery-wide basis applies (required with it).")
    retention_days: int | None = Field(None, ge=1, description="Purge templates older than this (none: keep).")
    keep_chips: bool = Field(False, description="Keep each template's face chip (encrypted) so the gallery can be "
                             "re-embedded by a new model without the photos.")


class RetentionIn(BaseModel):
    days: int | None = Field(ge=1, description="Purge templates older than this many days; null: keep them.")


class PurgeOut(BaseModel):
    gallery: str
    reason: str = Field(description="consent_ended or template_age.")
    persons: int
    templates: int
    receipts: list[str] = Field(description="Digests of the erasure receipts (kept in the audit log).")


class RetentionRunOut(BaseModel):
    at: datetime
    purges: list[PurgeOut]


class GalleryOut(BaseModel):
    name: str
    model: str
    dim: int
    watchlist: bool
    created_at: datetime
    legal_basis: str | None
    justification: str | None
    retention_days: int | None
    keep_chips: bool

    @classmethod
    def of(cls, g: GalleryRecord) -> GalleryOut:
        return cls(name=g.name, model=g.model.id, dim=g.dim, watchlist=g.watchlist, created_at=g.created_at,
                   legal_basis=g.legal_basis, justification=g.justification, retention_days=g.retention_days,
                   keep_chips=g.keep_chips)


class ConsentIn(BaseModel):
    basis: str = BasisField
    evidence: str = Field(min_length=1, max_length=1000, description="Where the proof is: a form number, a contract.")
    expires_at: datetime | None = Field(None, description="When the consent ends (ISO 8601; no zone means UTC).")


class ConsentOut(BaseModel):
    basis: str
    evidence: str
    recorded_by: str
    recorded_at: datetime
    expires_at: datetime | None
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    active: bool

    @classmethod
    def of(cls, c: ConsentRecord) -> ConsentOut:
        return cls(**dataclasses.asdict(c), active=c.active())


class PersonOut(BaseModel):
    external_id: str
    display_name: str | None
    metadata: dict[str, Any]
    templates: int
    created_at: datetime
    updated_at: datetime
    consent: ConsentOut | None = Field(description="The newest consent record (none under a gallery-wide basis).")
    matchable: bool = Field(description="False once the consent expired or was withdrawn: the person matches no one.")

    @classmethod
    def of(cls, p: PersonRecord) -> PersonOut:
        return cls(external_id=p.external_id, display_name=p.display_name, metadata=p.metadata,
                   templates=p.templates, created_at=p.created_at, updated_at=p.updated_at,
                   consent=ConsentOut.of(p.consent) if p.consent else None, matchable=p.matchable)


class RemovedTemplateOut(BaseModel):
    id: int
    source_sha256: str = Field(description="SHA-256 of the photo the template came from.")
    sealed_sha256: str = Field(description="SHA-256 of the encrypted embedding that was deleted.")


class ErasureReceiptOut(BaseModel):
    """What an erasure removed. ``digest`` is recorded in the audit log's erase entry (``visage audit receipt``)."""

    gallery: str
    external_id: str
    erased_at: datetime
    templates: list[RemovedTemplateOut]
    consent_records: int
    index_vectors_removed: int
    database_files_purged: bool = Field(description="The freed bytes were pushed out of the database files.")
    linked: dict[str, int] = Field(description="Other records removed with the person, by kind.")
    digest: str = Field(description="SHA-256 of this receipt's canonical JSON (without the digest).")

    @classmethod
    def of(cls, receipt: ErasureReceipt) -> ErasureReceiptOut:
        return cls.model_validate(receipt.as_dict())


class PersonPatch(BaseModel):
    display_name: str | None = Field(None, max_length=400)
    metadata: dict[str, Any] | None = None


class TemplateOut(BaseModel):
    id: int
    model: str
    source_sha256: str
    box: tuple[float, float, float, float]
    quality: float
    created_at: datetime

    @classmethod
    def of(cls, t: TemplateRecord) -> TemplateOut:
        return cls(id=t.id, model=t.model_id, source_sha256=t.source_sha256, box=t.box, quality=t.quality,
                   created_at=t.created_at)


class RejectionOut(BaseModel):
    image: str
    code: str
    message: str
    reasons: list[str]


class EnrollmentOut(BaseModel):
    person: PersonOut | None
    template_ids: list[int]
    rejected: list[RejectionOut]

    @classmethod
    def of(cls, e: Enrollment) -> EnrollmentOut:
        return cls(person=PersonOut.of(e.person) if e.person else None, template_ids=e.template_ids,
                   rejected=[RejectionOut(image=r.image, code=r.code, message=r.message, reasons=list(r.reasons))
                             for r in e.rejected])


class QualityOut(BaseModel):
    score: float
    reasons: list[str]


class FaceOut(BaseModel):
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded image.")
    score: float = Field(description="Detector confidence.")
    landmarks: list[tuple[float, float]]
    quality: QualityOut
    embedding: list[float] | None = None

    @classmethod
    def of(cls, face: Face, *, with_embedding: bool = False) -> FaceOut:
        x1, y1, x2, y2 = (round(float(v), 2) for v in face.box)
        embedding = [float(v) for v in face.embedding] if with_embedding and face.embedding is not None else None
        return cls(box=(x1, y1, x2, y2), score=round(face.score, 4),
                   landmarks=[(round(float(x), 2), round(float(y), 2)) for x, y in face.landmarks],
                   quality=QualityOut(score=round(face.quality.score, 4), reasons=list(face.quality.reasons)),
                   embedding=embedding)


class FacesOut(BaseModel):
    faces: list[FaceOut]
    model: str | None = Field(None, description="The embedding model (name@sha256 prefix) when embeddings are given.")


class CandidateOut(BaseModel):
    external_id: str
    display_name: str | None
    similarity: float
    same: bool = Field(description="At or above the decision threshold.")

    @classmethod
    def of(cls, c: Candidate) -> CandidateOut:
        return cls(external_id=c.external_id, display_name=c.display_name, similarity=round(c.similarity, 6),
                   same=c.same)


class IdentificationOut(BaseModel):
    face: FaceOut | None
    candidates: list[CandidateOut]
    threshold: float
    operating_point: str
    fmr: float | None = Field(None, description="Per-comparison false-match rate the threshold stands for.")
    clamped: bool = Field(False, description="The gallery is too large for the calibration to reach the FPIR asked.")

    @classmethod
    def of(cls, i: Identification) -> IdentificationOut:
        return cls(face=FaceOut.of(i.face) if i.face else None, candidates=[CandidateOut.of(c) for c in i.candidates],
                   threshold=i.threshold, operating_point=i.operating_point, fmr=i.fmr, clamped=i.clamped)


class IdentifyEmbeddingIn(BaseModel):
    embedding: list[float] = Field(min_length=1, max_length=4096)
    top_k: int | None = Field(None, ge=1, le=100)
    operating_point: str | None = Field(None, max_length=40)
    purpose: str | None = Field(None, max_length=1000)


class VerificationOut(BaseModel):
    same: bool
    similarity: float
    threshold: float
    operating_point: str

    @classmethod
    def of(cls, v: Verification) -> VerificationOut:
        return cls(same=v.same, similarity=round(v.similarity, 6), threshold=v.threshold,
                   operating_point=v.operating_point)


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1)
    gallery: str | None = Field(None, max_length=200)


class KeyOut(BaseModel):
    prefix: str
    name: str
    scopes: list[str]
    gallery: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> KeyOut:
        return cls(prefix=k.prefix, name=k.name, scopes=list(k.scopes), gallery=k.gallery, created_at=k.created_at,
                   revoked_at=k.revoked_at)


class NewKeyOut(KeyOut):
    key: str = Field(description="The full key. Shown this once; only its hash is stored.")


class AuditOut(BaseModel):
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

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(id=e.id, at=e.at, actor=e.actor, action=e.action, gallery=e.gallery, person=e.person,
                   purpose=e.purpose, details=e.details, result_count=e.result_count, outcome=e.outcome)


class AuditVerificationOut(BaseModel):
    ok: bool
    entries: int = Field(description="Entries checked in order, up to the first problem.")
    checkpoints: int = Field(description="Signed checkpoints stored.")
    first_bad_entry: int | None = Field(description="Where the log first departs from what was written.")
    problem: str | None
    unsigned: int = Field(description="Newest entries no checkpoint covers yet.")


class ReportRowOut(BaseModel):
    week: str = Field(description="ISO week (UTC), e.g. 2026-W48.")
    gallery: str | None
    action: str
    purpose: str | None
    actor: str = Field(description="The API key (key:<prefix>) or CLI that acted.")
    operations: int
    matches: int = Field(description="Candidates that passed the decision threshold.")
    failed: int = Field(description="Operations refused or failed (e.g. no purpose for a watchlist).")
