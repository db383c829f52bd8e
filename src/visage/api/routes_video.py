"""Video: stream jobs (``admin``), the sighting archive and its search, watchlist alerts live (``identify``).

Stream jobs run inside the server process that accepted them (``visage serve --workers 1``, or
``visage watch`` processes beside a multi-worker server: they write to the same archive).
The alert feed reads the database, so it shows every alert whichever process raised it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from visage.api.auth import Services, audited, require, services
from visage.api.errors import ApiError
from visage.api.keys import ApiKey
from visage.api.routes_galleries import page_bounds
from visage.api.schemas import Page
from visage.api.schemas_video import (
    AlertOut,
    SightingHitOut,
    SightingOut,
    SightingSearchOut,
    StreamIn,
    StreamOut,
    UnknownOut,
)
from visage.api.uploads import expect_form, expect_json, read_uploads
from visage.video.alerts import alert_payload

router = APIRouter(prefix="/v1", tags=["video"])
Ctx = Annotated[Services, Depends(services)]
Admin = Annotated[ApiKey, Depends(require("admin"))]
Identify = Annotated[ApiKey, Depends(require("identify"))]
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "srt://")
FEED_POLL_S = 0.5
FEED_HEARTBEAT_S = 5.0
# Each feed response ends after this long (clients reconnect at once, from the last id): a server shutting down
# waits for open responses, and the request timeout must not cut one.
FEED_RESPONSE_S = 10.0


@router.post("/streams", response_model=StreamOut, status_code=201, dependencies=[Depends(expect_json)])
def start_stream(body: StreamIn, ctx: Ctx, key: Admin) -> StreamOut:
    """Start watching a stream: tracks named from the galleries, sightings archived, watchlist alerts raised."""
    if not body.url.startswith(STREAM_SCHEMES):
        raise ApiError(422, "invalid_url", f"a stream URL starts with one of {', '.join(STREAM_SCHEMES)}")
    with audited(ctx, key, "stream.start", gallery=",".join(body.galleries) or None, purpose=body.purpose,
                 details={"source": body.url, "webhooks": len(body.webhooks)}) as note:
        job = ctx.streams.start(body.url, galleries=body.galleries, purpose=body.purpose, webhooks=body.webhooks,
                                actor=key.label, audit=ctx.audit, transport=body.transport)
        note.details["job"] = job.status.id
        return StreamOut.of(job.status)


@router.get("/streams", response_model=list[StreamOut])
def list_streams(ctx: Ctx, _: Admin) -> list[StreamOut]:
    """Stream jobs of this server process, running or ended."""
    return [StreamOut.of(job.status) for job in ctx.streams.list()]


@router.get("/streams/{job_id}", response_model=StreamOut)
def get_stream(job_id: int, ctx: Ctx, _: Admin) -> StreamOut:
    return StreamOut.of(ctx.streams.get(job_id).status)


@router.delete("/streams/{job_id}", response_model=StreamOut)
def stop_stream(job_id: int, ctx: Ctx, key: Admin) -> StreamOut:
    """Stop a stream job: its open tracks are archived and its webhooks drain first."""
    with audited(ctx, key, "stream.stop", details={"job": job_id}):
        return StreamOut.of(ctx.streams.stop(job_id))


@router.get("/sightings", response_model=Page[SightingOut])
def list_sightings(ctx: Ctx, _: Identify, source: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, gallery: str | None = None, person: str | None = None,
                   unknown: str | None = None, offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1)] = 100) -> Page[SightingOut]:
    """Archived sightings, newest first, by source, time, person (with gallery) or unknown."""
    offset, limit = page_bounds(ctx, offset, limit)
    if person is not None and gallery is None:
        raise ApiError(422, "gallery_required", "person needs gallery")
    gallery_id = ctx.gallery.get(gallery).id if gallery else None
    person_id = ctx.gallery.person(gallery, person).id if gallery and person else None
    records = ctx.archive.store.sightings(source=source, since=since, until=until, gallery_id=gallery_id,
                                          person_id=person_id, unknown=unknown, offset=offset, limit=limit)
    return Page[SightingOut](items=[SightingOut.of(r) for r in records], offset=offset, limit=limit)


@router.post("/sightings/search", response_model=SightingSearchOut, dependencies=[Depends(expect_form)])
def search_sightings(ctx: Ctx, key: Identify,
                     purpose: Annotated[str, Form(min_length=1, max_length=1000,
                                                  description="Why the footage is searched (audited).")],
                     image: Annotated[UploadFile | None, File(description="A photo of the face to look for.")]
                     = None,
                     gallery: Annotated[str | None, Form(description="…or an enrolled person: their gallery")] = None,
                     person: Annotated[str | None, Form(description="and external id.")] = None,
                     since: Annotated[datetime | None, Form()] = None,
                     until: Annotated[datetime | None, Form()] = None,
                     limit: Annotated[int, Form(ge=1)] = 100) -> SightingSearchOut:
    """Where and when did this face appear? Sightings of a photo's face or an enrolled person, newest first."""
    limit = page_bounds(ctx, 0, limit)[1]
    if person is not None and not key.allows("identify", gallery):
        raise ApiError(403, "forbidden", f"this key may not use gallery '{gallery}'")
    with audited(ctx, key, "sightings.search", gallery=gallery, person=person, purpose=purpose,
                 details={"by": "image" if image is not None else "person"}) as note:
        photo = read_uploads([image])[1][0] if image is not None else None
        found = ctx.archive.find(image=photo, gallery_name=gallery, external_id=person, purpose=purpose, limit=limit,
                                 since=since, until=until)
        note.result_count = len(found.hits)
        note.details["matches"] = len(found.hits)
    hits = [SightingHitOut(**SightingOut.of(h.sighting).model_dump(), match_similarity=h.similarity)
            for h in found.hits]
    return SightingSearchOut(hits=hits, threshold=found.threshold.value,
                             operating_point=found.threshold.operating_point, searched=found.searched)


@router.get("/unknowns", response_model=list[UnknownOut])
def list_unknowns(ctx: Ctx, _: Identify, offset: Annotated[int, Query(ge=0)] = 0,
                  limit: Annotated[int, Query(ge=1)] = 100) -> list[UnknownOut]:
    """Pseudonymous unknowns (faces nobody enrolled), most often seen first."""
    offset, limit = page_bounds(ctx, offset, limit)
    return [UnknownOut.of(u) for u in ctx.archive.store.unknowns(offset=offset, limit=limit)]


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(ctx: Ctx, _: Identify, limit: Annotated[int, Query(ge=1)] = 100) -> list[AlertOut]:
    """Watchlist alerts, newest first."""
    limit = page_bounds(ctx, 0, limit)[1]
    return [AlertOut.of(a) for a in ctx.archive.store.alerts(limit=limit, newest_first=True)]


@router.get("/alerts/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}})
async def alert_feed(request: Request, ctx: Ctx, _: Identify,
                     last_event_id: Annotated[str | None, Header()] = None,
                     after: Annotated[int | None, Query(ge=0, description="Send alerts after this id.")] = None
                     ) -> StreamingResponse:
    """Watchlist alerts as server-sent events (``event: alert``, ``id``: the alert id), as they are raised.

    Without ``after`` (or a ``Last-Event-ID`` header from a reconnecting client) only new alerts
    are sent. Each response ends after about 10 seconds; clients reconnect (an ``EventSource``
    does so by itself, sending ``Last-Event-ID``) and miss nothing.
    """
    if after is None and last_event_id and last_event_id.isdigit():
        after = int(last_event_id)
    if after is None:
        newest = await anyio.to_thread.run_sync(lambda: ctx.archive.store.alerts(limit=1, newest_first=True))
        after = newest[0].id if newest else 0
    lasts = max(1.0, min(FEED_RESPONSE_S, ctx.settings.service.request_timeout_s - 5))

    async def events(after: int) -> AsyncIterator[str]:
        ends = time.monotonic() + lasts
        beat = time.monotonic()
        yield "retry: 1000\n\n"
        while time.monotonic() < ends and not await request.is_disconnected():
            fresh = await anyio.to_thread.run_sync(ctx.archive.store.alerts, after)
            for alert in fresh:
                after = alert.id
                yield f"event: alert\nid: {alert.id}\ndata: {json.dumps(alert_payload(alert))}\n\n"
            if time.monotonic() - beat > FEED_HEARTBEAT_S:
                beat = time.monotonic()
                yield ": still here\n\n"
            await asyncio.sleep(FEED_POLL_S)

    return StreamingResponse(events(after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
