"""Who is calling, may they, and how often: API-key authentication, scopes, rate limits, auditing.

Routes declare what they need with ``Depends(require("identify"))``; a route under
``/galleries/{gallery}`` is also checked against the key's gallery restriction. No key (or
an unknown or revoked one) is 401, a key without the scope or for another gallery is 403,
a key over its request budget is 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from visage.api.errors import ApiError
from visage.api.keys import ApiKey, ApiKeys
from visage.config import Settings
from visage.gallery import Gallery
from visage.privacy.audit import AuditLog, AuditNote
from visage.video.archive import SightingArchive
from visage.video.watch import WatchJobs


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously, bursts up to the same."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill_per_second)
            if tokens >= 1:
                self._buckets[who] = (tokens - 1, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1 - tokens) / self.refill_per_second


@dataclass
class Services:
    """What the routes work with; one per app."""

    settings: Settings
    gallery: Gallery
    keys: ApiKeys
    audit: AuditLog
    limiter: RateLimiter
    archive: SightingArchive
    streams: WatchJobs
    models_ready: threading.Event = field(default_factory=threading.Event)


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def require(scope: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency: the caller's key, which must hold ``scope`` (and reach the path's gallery).

    It runs on the event loop (a thread hand-off would cost more than the check): keys are
    cached, so it reads SQL at most once per key every ``KEY_CACHE_SECONDS``.
    """

    async def dependency(request: Request) -> ApiKey:
        ctx: Services = request.app.state.services
        text = presented_key(request)
        if not text:
            raise ApiError(401, "unauthorized", "an API key is required (Authorization: Bearer <key>)",
                           {"WWW-Authenticate": "Bearer"})
        key = ctx.keys.authenticate(text)
        if key is None:
            raise ApiError(401, "unauthorized", "the API key is unknown or revoked", {"WWW-Authenticate": "Bearer"})
        wait = ctx.limiter.take(key.prefix)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"too many requests for this key; retry in {wait:.1f} s",
                           {"Retry-After": str(max(1, math.ceil(wait)))})
        gallery = request.path_params.get("gallery")
        if not key.allows(scope, gallery):
            reason = (f"this key may not use gallery '{gallery}'" if scope in key.scopes or "admin" in key.scopes
                      else f"this key lacks the '{scope}' scope")
            raise ApiError(403, "forbidden", reason)
        request.state.key = key
        return key

    return dependency


@contextmanager
def audited(ctx: Services, key: ApiKey, action: str, *, gallery: str | None = None, person: str | None = None,
            purpose: str | None = None, details: dict[str, Any] | None = None) -> Iterator[AuditNote]:
    """Record the operation in the audit log under the calling key, whether it succeeds or fails."""
    with ctx.audit.operation(key.label, action, gallery=gallery, person=person, purpose=purpose,
                             details=details) as note:
        yield note
