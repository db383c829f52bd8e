"""The sighting archive: sightings stored and searched by face, pseudonymous unknowns, watchlist alerts and their
signed webhook deliveries, erasure and retention of video data."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from visage import FaceAnalyzer, Settings
from visage.config import GallerySettings, VideoSettings
from visage.errors import InvalidInputError
from visage.gallery.api import Gallery
from visage.gallery.retention import run_retention
from visage.gallery.rotation import rotate_data_key
from visage.gallery.sightings_store import SightingRecord
from visage.privacy.audit import open_audit_log
from visage.video.alerts import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, verify_signature
from visage.video.archive import SightingArchive
from visage.video.identify import SightingNamer
from visage.video.scanner import VideoScanner
from visage.video.watch import SightingRecorder, WatchJob, WatchStatus

from .conftest import BASIS
from .test_video import MovingFace

MORNING = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
SECRET = "webhook-test-secret"


@pytest.fixture
def archive(tmp_path: Path, backend: dict[str, str], analyzer: FaceAnalyzer) -> Iterator[SightingArchive]:
    settings = Settings(data_dir=tmp_path, gallery=GallerySettings(**backend))
    gallery = Gallery(settings, analyzer=analyzer)
    yield SightingArchive(gallery)
    gallery.close()


def watch(archive: SightingArchive, source: Any, *, galleries: list[str] | None = None, purpose: str | None = None,
          webhooks: WebhookSender | None = None) -> tuple[WatchStatus, list[SightingRecord]]:
    records: list[SightingRecord] = []
    namer = SightingNamer(archive.gallery, galleries, purpose=purpose) if galleries else None
    audit = open_audit_log(archive.gallery.store.db, archive.settings)
    recorder = SightingRecorder(archive, namer, actor="test", audit=audit, webhooks=webhooks)
    job = WatchJob(1, source, VideoScanner(archive.gallery.analyzer, detect_every=2), recorder,
                   on_sighting=records.append)
    return job.run(), records


def test_footage_processed_before_enrolment_is_found_by_the_person_later(
        archive: SightingArchive, astronaut: np.ndarray, astronaut_face: np.ndarray) -> None:
    status, [first] = watch(archive, MovingFace(astronaut_face, name="door", start=MORNING))
    assert status.state == "finished" and first.unknown is not None and first.external_id is None
    _, [second] = watch(archive, MovingFace(astronaut_face, name="lobby", start=MORNING + timedelta(hours=2)))
    assert second.unknown == first.unknown  # the same stranger came back: the pseudonym is reused
    [stranger] = archive.store.unknowns()
    assert stranger.label == first.unknown and stranger.sightings == 2

    gallery = archive.gallery
    gallery.create("crew", **BASIS)
    gallery.enroll("crew", "eileen", [astronaut], display_name="Eileen Collins")  # enrolled after the footage
    found = archive.search_person("crew", "eileen", purpose="incident review")
    assert [h.sighting.source for h in found.hits] == ["lobby", "door"]  # every sighting, newest first
    assert all(h.similarity >= found.threshold.value for h in found.hits) and found.searched == 2
    by_photo = archive.search_image(astronaut, purpose="incident review", since=MORNING + timedelta(hours=1))
    assert [h.sighting.source for h in by_photo.hits] == ["lobby"]
    nobody = np.random.default_rng(3).normal(size=(1, gallery.analyzer.embedder.dim))
    assert archive.search(nobody / np.linalg.norm(nobody), purpose="incident review").hits == []
    with pytest.raises(InvalidInputError) as refused:
        archive.search_person("crew", "eileen", purpose=" ")
    assert refused.value.code == "purpose_required"

    _, [named] = watch(archive, MovingFace(astronaut_face, name="door", start=MORNING + timedelta(hours=5)),
                       galleries=["crew"])
    assert named.external_id == "eileen" and named.unknown is None and named.similarity is not None
    assert len(archive.search_person("crew", "eileen", purpose="incident review").hits) == 3
    person = gallery.person("crew", "eileen")
    assert [r.id for r in archive.store.sightings(person_id=person.id)] == [named.id]

    receipt = gallery.erase("crew", "eileen")
    assert receipt.linked["sightings"] == 1 and receipt.linked["alerts"] == 0
    left = archive.search_image(astronaut, purpose="incident review")
    assert {h.sighting.id for h in left.hits} == {first.id, second.id}  # the erased person's sighting is gone

    audit = open_audit_log(gallery.store.db, gallery.settings)
    run_retention(gallery, audit, now=MORNING + timedelta(hours=60))  # unknowns are kept 72 h
    assert len(archive.store.sightings()) == 2
    done = run_retention(gallery, audit, now=MORNING + timedelta(hours=80))
    assert [p.templates for p in done.purges if p.reason == "sighting_age"] == [2]
    assert archive.store.sightings() == [] and archive.store.unknowns() == []
    assert archive.search_image(astronaut, purpose="incident review").hits == []


class Receiver:
    """A local webhook endpoint that refuses the first delivery (HTTP 500) and records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(500 if len(receiver.requests) == 1 else 204)
                self.end_headers()
                if len(receiver.requests) > 1:
                    receiver.arrived.set()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/visage"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_watchlist_match_alerts_once_per_track_with_a_signed_retried_webhook(
        archive: SightingArchive, astronaut: np.ndarray, astronaut_face: np.ndarray) -> None:
    gallery = archive.gallery
    gallery.create("wanted", watchlist=True, **BASIS)
    gallery.enroll("wanted", "eileen", [astronaut])
    with pytest.raises(InvalidInputError) as no_purpose:
        SightingNamer(gallery, ["wanted"])
    assert no_purpose.value.code == "purpose_required"
    with pytest.raises(InvalidInputError) as unsigned:
        WebhookSender(archive.store, ["http://127.0.0.1:9/hook"], None)
    assert unsigned.value.code == "webhook_secret_missing"

    receiver = Receiver()
    try:
        sender = WebhookSender(archive.store, [receiver.url], SECRET, first_backoff_s=0.05)
        status, [sighting] = watch(archive, MovingFace(astronaut_face, frames=40, hidden=range(0)),
                                   galleries=["wanted"], purpose="trespass order", webhooks=sender)
        assert receiver.arrived.wait(10)
    finally:
        receiver.close()
    assert status.alerts == 1 and sighting.external_id == "eileen"  # probed while in view and at the end: one alert
    [alert] = archive.store.alerts()
    assert alert.external_id == "eileen" and alert.track_id == sighting.track_id
    assert alert.stream_seconds < sighting.end_seconds  # raised while the face was still in view
    failed, delivered = archive.store.deliveries(alert.id)
    assert (failed.attempt, failed.status, failed.delivered) == (1, 500, False)
    assert (delivered.attempt, delivered.status, delivered.delivered) == (2, 204, True)
    headers, body = receiver.requests[-1]
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify_signature(SECRET, headers[TIMESTAMP_HEADER], body.replace(b"eileen", b"someone"),
                                headers[SIGNATURE_HEADER])
    assert not verify_signature("another-secret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER],
                                now=float(headers[TIMESTAMP_HEADER]) + 3600)  # a replay an hour later
    payload = json.loads(body)
    assert payload["type"] == "watchlist.match" and payload["external_id"] == "eileen"
    assert payload["alert_id"] == alert.id and payload["similarity"] >= payload["threshold"]
    [entry], _ = open_audit_log(gallery.store.db, gallery.settings).entries(action="video.alert")
    assert entry.person == "eileen" and entry.purpose == "trespass order"  # who was matched, and why they looked
    receipt = gallery.erase("wanted", "eileen")
    assert receipt.linked == {"face_chips": 0, "sightings": 1, "alerts": 1}
    assert archive.store.alerts() == []


def test_thumbnails_are_kept_sealed_only_when_turned_on(tmp_path: Path, analyzer: FaceAnalyzer,
                                                        astronaut_face: np.ndarray) -> None:
    for keep in (False, True):
        settings = Settings(data_dir=tmp_path / str(keep), video=VideoSettings(keep_thumbnails=keep))
        with Gallery(settings, analyzer=analyzer) as gallery:
            archive = SightingArchive(gallery)
            _, [record] = watch(archive, MovingFace(astronaut_face))
            assert record.has_thumbnail is keep
            if keep:
                thumbnail = Image.open(io.BytesIO(archive.store.thumbnail(record.id)))
                assert thumbnail.format == "PNG" and min(thumbnail.size) > 100
                raw = (tmp_path / str(keep) / "visage.db").read_bytes()
                assert b"\x89PNG" not in raw  # sealed, not stored as a plain image
            before = archive.store.key_usage()
            rotation = rotate_data_key(gallery)
            assert rotation.resealed == sum(before.values()) and rotation.behind == 0
            assert set(archive.store.key_usage()) == {rotation.key_id}
            assert len(archive.search_image(MovingFace(astronaut_face).face, purpose="test").hits) == 1
