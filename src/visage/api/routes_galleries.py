"""Galleries, the people enrolled in them, and their templates."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile

from visage.api.auth import Services, audited, require, services
from visage.api.errors import ApiError
from visage.api.keys import ApiKey
from visage.api.schemas import (
    ConsentIn,
    EnrollmentOut,
    ErasureReceiptOut,
    GalleryIn,
    GalleryOut,
    Page,
    PersonOut,
    PersonPatch,
    RetentionIn,
    TemplateOut,
)
from visage.api.uploads import expect_json, expect_multipart, read_uploads
from visage.errors import InvalidInputError
from visage.gallery import subject_access
from visage.privacy.consent import Consent

router = APIRouter(prefix="/v1/galleries", tags=["galleries"])
Ctx = Annotated[Services, Depends(services)]
GalleryName = Annotated[str, "the gallery's name"]


def page_bounds(ctx: Services, offset: int, limit: int) -> tuple[int, int]:
    if limit > ctx.settings.service.max_page_size:
        raise InvalidInputError(f"limit {limit} is above the largest page, {ctx.settings.service.max_page_size}",
                                code="page_too_large")
    return offset, limit


@router.get("", response_model=list[GalleryOut])
def list_galleries(ctx: Ctx, key: Annotated[ApiKey, Depends(require("read"))]) -> list[GalleryOut]:
    """The galleries this key can see."""
    return [GalleryOut.of(g) for g in ctx.gallery.galleries() if key.gallery in (None, g.name)]


@router.post("", response_model=GalleryOut, status_code=201, dependencies=[Depends(expect_json)])
def create_gallery(body: GalleryIn, ctx: Ctx, key: Annotated[ApiKey, Depends(require("admin"))]) -> GalleryOut:
    """A new gallery bound to the server's embedding model."""
    details = {"watchlist": body.watchlist, "legal_basis": body.legal_basis, "retention_days": body.retention_days}
    with audited(ctx, key, "gallery.create", gallery=body.name, details=details):
        made = ctx.gallery.create(body.name, watchlist=body.watchlist, legal_basis=body.legal_basis,
                                  justification=body.justification, keep_chips=body.keep_chips)
        if body.retention_days is not None:
            made = ctx.gallery.set_retention(body.name, body.retention_days)
        return GalleryOut.of(made)


@router.put("/{gallery}/retention", response_model=GalleryOut, dependencies=[Depends(expect_json)])
def set_retention(gallery: str, body: RetentionIn, ctx: Ctx,
                  key: Annotated[ApiKey, Depends(require("admin"))]) -> GalleryOut:
    """How long the gallery keeps templates; older ones are purged by the next retention run."""
    with audited(ctx, key, "gallery.retention", gallery=gallery, details={"days": body.days}):
        return GalleryOut.of(ctx.gallery.set_retention(gallery, body.days))


@router.get("/{gallery}", response_model=GalleryOut)
def get_gallery(gallery: str, ctx: Ctx, _: Annotated[ApiKey, Depends(require("read"))]) -> GalleryOut:
    return GalleryOut.of(ctx.gallery.get(gallery))


@router.delete("/{gallery}", status_code=204)
def delete_gallery(gallery: str, ctx: Ctx, key: Annotated[ApiKey, Depends(require("admin"))]) -> Response:
    """Delete a gallery with every person, template and vector in it."""
    with audited(ctx, key, "gallery.delete", gallery=gallery):
        ctx.gallery.delete(gallery)
    return Response(status_code=204)


@router.get("/{gallery}/persons", response_model=Page[PersonOut])
def list_persons(gallery: str, ctx: Ctx, _: Annotated[ApiKey, Depends(require("read"))],
                 offset: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1)] = 50) -> Page[PersonOut]:
    offset, limit = page_bounds(ctx, offset, limit)
    record = ctx.gallery.get(gallery)
    people = ctx.gallery.persons(gallery, offset=offset, limit=limit)
    return Page[PersonOut](items=[PersonOut.of(p) for p in people], offset=offset, limit=limit,
                           total=ctx.gallery.store.person_count(record))


@router.post("/{gallery}/persons", response_model=EnrollmentOut, status_code=201,
             responses={422: {"description": "No image could be enrolled; the body lists why."}},
             dependencies=[Depends(expect_multipart)])
def enroll(
    gallery: str,
    ctx: Ctx,
    key: Annotated[ApiKey, Depends(require("enroll"))],
    external_id: Annotated[str, Form(min_length=1, max_length=200)],
    images: Annotated[list[UploadFile], File(description="One or more photos, one face each.")],
    display_name: Annotated[str | None, Form(max_length=400)] = None,
    metadata: Annotated[str | None, Form(description="A JSON object stored with the person.")] = None,
    face_index: Annotated[int | None, Form(ge=0)] = None,
    consent_basis: Annotated[str | None, Form(description="The person's consent record: its legal basis.")] = None,
    consent_evidence: Annotated[str | None, Form(max_length=1000, description="Where the proof is.")] = None,
    consent_expires_at: Annotated[datetime | None, Form(description="When the consent ends (ISO 8601).")] = None,
) -> EnrollmentOut:
    """Enrol a person (new or existing) from photos: each must hold one face that passes the quality gate.

    Unless the gallery has a legal basis for everyone, a new person needs a consent record
    (``consent_basis`` and ``consent_evidence``, optionally ``consent_expires_at``).
    """
    attributes = parse_metadata(metadata)
    labels, blobs = read_uploads(images)
    details = {"images": len(blobs), "face_index": face_index, "consent": consent_basis}
    with audited(ctx, key, "enroll", gallery=gallery, person=external_id, details=details) as note:
        consent = consent_from(key, consent_basis, consent_evidence, consent_expires_at)
        result = ctx.gallery.enroll(gallery, external_id, blobs, display_name=display_name, metadata=attributes,
                                    face_index=face_index, labels=labels, consent=consent)
        note.result_count = len(result.template_ids)
        note.details["rejected"] = [r.code for r in result.rejected]
        out = EnrollmentOut.of(result)
        if result.person is None:
            raise ApiError(422, "nothing_enrolled", "no image could be enrolled",
                           extra={"rejected": [r.model_dump() for r in out.rejected]})
    return out


def consent_from(key: ApiKey, basis: str | None, evidence: str | None, expires_at: datetime | None) -> Consent | None:
    """A consent record from form fields (recorded by the calling key), None when none was given."""
    if basis is None and evidence is None and expires_at is None:
        return None
    if not basis or not evidence:
        raise InvalidInputError("a consent record needs both consent_basis and consent_evidence",
                                code="consent_incomplete")
    return Consent(basis, evidence, key.label, expires_at)


def parse_metadata(text: str | None) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"metadata is not valid JSON: {exc.msg}", code="invalid_metadata") from None
    if not isinstance(value, dict):
        raise InvalidInputError("metadata must be a JSON object", code="invalid_metadata")
    return value


@router.get("/{gallery}/persons/{external_id:path}/templates", response_model=list[TemplateOut])
def list_templates(gallery: str, external_id: str, ctx: Ctx,
                   _: Annotated[ApiKey, Depends(require("read"))]) -> list[TemplateOut]:
    return [TemplateOut.of(t) for t in ctx.gallery.templates(gallery, external_id)]


@router.delete("/{gallery}/templates/{template_id}", response_model=TemplateOut)
def delete_template(gallery: str, template_id: int, ctx: Ctx,
                    key: Annotated[ApiKey, Depends(require("enroll"))]) -> TemplateOut:
    with audited(ctx, key, "template.delete", gallery=gallery, details={"template_id": template_id}):
        return TemplateOut.of(ctx.gallery.delete_template(gallery, template_id))


@router.post("/{gallery}/persons/{external_id:path}/consent", response_model=PersonOut,
             dependencies=[Depends(expect_json)])
def record_consent(gallery: str, external_id: str, body: ConsentIn, ctx: Ctx,
                   key: Annotated[ApiKey, Depends(require("enroll"))]) -> PersonOut:
    """Record a new consent (a renewal): the person matches again until it ends."""
    with audited(ctx, key, "consent.record", gallery=gallery, person=external_id,
                 details={"basis": body.basis, "expires_at": body.expires_at.isoformat() if body.expires_at else None}):
        consent = Consent(body.basis, body.evidence, key.label, body.expires_at)
        return PersonOut.of(ctx.gallery.record_consent(gallery, external_id, consent))


@router.delete("/{gallery}/persons/{external_id:path}/consent", response_model=PersonOut)
def withdraw_consent(gallery: str, external_id: str, ctx: Ctx,
                     key: Annotated[ApiKey, Depends(require("enroll"))]) -> PersonOut:
    """The person withdrew consent: they stop matching at once, and retention erases them."""
    with audited(ctx, key, "consent.withdraw", gallery=gallery, person=external_id):
        return PersonOut.of(ctx.gallery.withdraw_consent(gallery, external_id, key.label))


@router.get("/{gallery}/persons/{external_id:path}/export", response_class=Response,
            responses={200: {"content": {"application/zip": {}},
                             "description": "person.json, audit.json and README.txt in one zip."}})
def export_person(gallery: str, external_id: str, ctx: Ctx,
                  key: Annotated[ApiKey, Depends(require("admin"))]) -> Response:
    """Everything stored about a person (a data-subject access request): record, consents, templates, audit."""
    with audited(ctx, key, "person.export", gallery=gallery, person=external_id):
        archive = subject_access.export_person(ctx.gallery, ctx.audit, gallery, external_id)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in external_id)[:80] or "person"
    return Response(archive, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="visage-{name}.zip"'})


# Person ids are data and may hold "/": these routes match the rest of the path, so they come last.
@router.get("/{gallery}/persons/{external_id:path}", response_model=PersonOut)
def get_person(gallery: str, external_id: str, ctx: Ctx,
               _: Annotated[ApiKey, Depends(require("read"))]) -> PersonOut:
    return PersonOut.of(ctx.gallery.person(gallery, external_id))


@router.patch("/{gallery}/persons/{external_id:path}", response_model=PersonOut,
              dependencies=[Depends(expect_json)])
def update_person(gallery: str, external_id: str, body: PersonPatch, ctx: Ctx,
                  key: Annotated[ApiKey, Depends(require("enroll"))]) -> PersonOut:
    with audited(ctx, key, "person.update", gallery=gallery, person=external_id,
                 details={"fields": sorted(body.model_fields_set)}):
        return PersonOut.of(ctx.gallery.update_person(gallery, external_id, display_name=body.display_name,
                                                      metadata=body.metadata))


@router.delete("/{gallery}/persons/{external_id:path}", response_model=ErasureReceiptOut)
def erase_person(gallery: str, external_id: str, ctx: Ctx,
                 key: Annotated[ApiKey, Depends(require("enroll"))]) -> ErasureReceiptOut:
    """Erase a person: rows, consent records and vectors are gone; their photos no longer match anyone.

    The receipt lists what was removed; its digest is kept in the audit log.
    """
    with audited(ctx, key, "erase", gallery=gallery, person=external_id) as note:
        receipt = ctx.gallery.erase(gallery, external_id)
        note.result_count = len(receipt.templates)
        note.details["receipt"] = receipt.digest
        return ErasureReceiptOut.of(receipt)
