"""Administration: API keys and the audit trail (``admin`` scope)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from visage.api.auth import Services, audited, require, services
from visage.api.keys import ApiKey
from visage.api.routes_galleries import page_bounds
from visage.api.schemas import (
    AuditOut,
    AuditVerificationOut,
    KeyIn,
    KeyOut,
    NewKeyOut,
    Page,
    PurgeOut,
    ReportRowOut,
    RetentionRunOut,
)
from visage.api.uploads import expect_json
from visage.gallery.retention import run_retention
from visage.privacy.report import transparency_report

router = APIRouter(prefix="/v1", tags=["admin"])
Ctx = Annotated[Services, Depends(services)]
Admin = Annotated[ApiKey, Depends(require("admin"))]


@router.get("/keys", response_model=list[KeyOut])
def list_keys(ctx: Ctx, _: Admin, include_revoked: bool = False) -> list[KeyOut]:
    return [KeyOut.of(k) for k in ctx.keys.list(include_revoked=include_revoked)]


@router.post("/keys", response_model=NewKeyOut, status_code=201, dependencies=[Depends(expect_json)])
def create_key(body: KeyIn, ctx: Ctx, key: Admin) -> NewKeyOut:
    """A new key; the response holds its full text, which is shown this once."""
    with audited(ctx, key, "key.create", gallery=body.gallery,
                 details={"name": body.name, "scopes": sorted(body.scopes)}) as note:
        record, text = ctx.keys.create(body.name, body.scopes, gallery=body.gallery)
        note.details["prefix"] = record.prefix
        return NewKeyOut(**KeyOut.of(record).model_dump(), key=text)


@router.delete("/keys/{prefix}", response_model=KeyOut)
def revoke_key(prefix: str, ctx: Ctx, key: Admin) -> KeyOut:
    with audited(ctx, key, "key.revoke", details={"prefix": prefix}):
        return KeyOut.of(ctx.keys.revoke(prefix))


@router.get("/audit", response_model=Page[AuditOut])
def audit(
    ctx: Ctx,
    _: Admin,
    actor: str | None = None,
    action: str | None = None,
    gallery: str | None = None,
    person: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> Page[AuditOut]:
    """Audit entries, newest first, filtered by who, what, where and when."""
    offset, limit = page_bounds(ctx, offset, limit)
    entries, total = ctx.audit.entries(actor=actor, action=action, gallery=gallery, person=person, since=since,
                                       until=until, offset=offset, limit=limit)
    return Page[AuditOut](items=[AuditOut.of(e) for e in entries], offset=offset, limit=limit, total=total)


@router.get("/audit/verify", response_model=AuditVerificationOut)
def verify_audit(ctx: Ctx, key: Admin) -> AuditVerificationOut:
    """Check the hash chain and every signed checkpoint; ``ok`` is false at the first departure found."""
    with audited(ctx, key, "audit.verify") as note:
        found = ctx.audit.verify()
        note.details.update(ok=found.ok, first_bad_entry=found.first_bad_entry)
        return AuditVerificationOut(**dataclasses.asdict(found))


@router.get("/report", response_model=list[ReportRowOut])
def report(ctx: Ctx, _: Admin, since: datetime | None = None, until: datetime | None = None) -> list[ReportRowOut]:
    """Transparency report: operations and matches per ISO week, gallery, action, purpose and key."""
    return [ReportRowOut(**dataclasses.asdict(row)) for row in transparency_report(ctx.audit, since=since, until=until)]


@router.post("/retention/run", response_model=RetentionRunOut)
def run_retention_now(ctx: Ctx, key: Annotated[ApiKey, Depends(require("admin"))]) -> RetentionRunOut:
    """Apply the retention rules now (the service also does so every privacy.retention_interval_minutes)."""
    with audited(ctx, key, "retention.run") as note:
        done = run_retention(ctx.gallery, ctx.audit)
        note.result_count = done.persons
    return RetentionRunOut(at=done.at, purges=[PurgeOut(**dataclasses.asdict(p)) for p in done.purges])
