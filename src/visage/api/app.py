"""The REST service: ``create_app(settings)`` builds the FastAPI application ``visage serve`` runs.

One process holds one :class:`~visage.gallery.Gallery` (models loaded once, shared by the
worker threads FastAPI runs blocking routes on), the API keys and the audit log, all in the
configured database. OpenAPI at ``/docs`` and ``/openapi.json`` is the contract.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import anyio.to_thread
from fastapi import FastAPI, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from visage import __version__
from visage.api import errors
from visage.api.auth import RateLimiter, Services
from visage.api.errors import error_response
from visage.api.keys import ApiKeys
from visage.api.middleware import BodyLimit, ServiceHeaders
from visage.api.routes_admin import router as admin_router
from visage.api.routes_galleries import router as galleries_router
from visage.api.routes_match import router as match_router
from visage.api.routes_video import router as video_router
from visage.api.schemas import ErrorOut
from visage.api.workers import worker_loads
from visage.config import Settings
from visage.gallery import Gallery
from visage.gallery.retention import RetentionScheduler
from visage.privacy.audit import open_audit_log
from visage.video.archive import SightingArchive
from visage.video.watch import WatchJobs

log = logging.getLogger(__name__)
VERSION_HEADER = "X-Visage-Version"
# The console is plain static files: its own scripts, styles and the photos the user picks (blob: URLs) only.
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
                               "style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": meaning}
    for status, meaning in ((400, "Bad request"), (401, "No valid API key"), (403, "Key lacks scope or gallery"),
                            (404, "Unknown gallery, person, template or key"), (409, "Conflict"),
                            (413, "Upload too large"), (415, "Wrong content type or image format"),
                            (422, "Invalid input"), (429, "Rate limited"), (504, "Timed out"))
}


def build_services(settings: Settings, gallery: Gallery | None = None) -> Services:
    """Uploaded images may not exceed the service's pixel limit, which is tighter than the library's."""
    limited = settings.model_copy(update={"max_pixels": min(settings.max_pixels, settings.service.max_pixels),
                                          "max_file_bytes": min(settings.max_file_bytes,
                                                                settings.service.max_upload_bytes)})
    gallery = gallery or Gallery(limited)
    archive = SightingArchive(gallery)
    return Services(limited, gallery, ApiKeys(gallery.store.db), open_audit_log(gallery.store.db, limited),
                    RateLimiter(settings.service.rate_limit_per_minute), archive, WatchJobs(archive))


def _load_models(ctx: Services) -> None:
    try:
        _ = ctx.gallery.analyzer.model
        # What start-up made lives as long as the process: kept out of garbage collection, whose full
        # passes over it would otherwise add pauses to request latencies.
        gc.freeze()
        ctx.models_ready.set()
    except Exception:  # reported by /ready; the service still answers
        log.exception("the face models could not be loaded")


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    ctx = services or build_services(settings or Settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = ctx.settings.service.threads
        threading.Thread(target=_load_models, args=(ctx,), name="visage-models", daemon=True).start()
        scheduler = None
        interval = ctx.settings.privacy.retention_interval_minutes
        loads = worker_loads()
        if interval > 0 and (loads is None or loads.index == 0):  # one worker applies retention for all
            scheduler = RetentionScheduler(ctx.gallery, ctx.audit, interval * 60)
            scheduler.start()
        yield
        ctx.streams.stop_all()  # open tracks archived, webhooks drained
        if scheduler is not None:
            scheduler.stop()
        ctx.archive.close()
        ctx.gallery.close()

    app = FastAPI(title="Visage", version=__version__, lifespan=lifespan, responses=ERROR_RESPONSES,
                  description="Self-hosted, consent-first face recognition. Authenticate with "
                  "`Authorization: Bearer <API key>`; every error is JSON `{code, message}`.")
    app.state.services = ctx
    errors.install(app)

    app.add_middleware(ServiceHeaders, version_header=(VERSION_HEADER, __version__), console_headers=CONSOLE_HEADERS,
                       timeout_s=ctx.settings.service.request_timeout_s, loads=worker_loads())
    app.add_middleware(BodyLimit, max_bytes=ctx.settings.service.max_upload_bytes)
    for router in (galleries_router, match_router, video_router, admin_router):
        app.include_router(router)

    @app.get("/health", tags=["service"])
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/ready", tags=["service"], responses={503: {"model": ErrorOut}})
    def ready() -> Response:
        """The database answers and the face models are loaded."""
        try:
            with ctx.gallery.store.db.read() as session:
                session.execute(text("SELECT 1"))
        except Exception:
            return error_response(503, "database_unavailable", "the database does not answer")
        if not ctx.models_ready.is_set():
            return error_response(503, "models_loading", "the face models are not loaded yet")
        return Response('{"status":"ready"}', media_type="application/json")

    app.mount("/console", StaticFiles(directory=str(resources.files("visage").joinpath("web")), html=True),
              name="console")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    return app


def create_app_from_environment() -> FastAPI:
    """The app of one worker process when ``visage serve --workers N`` runs several (settings from ``VISAGE_*``)."""
    return create_app(Settings())
