"""The video routes: a stream job started over HTTP (an MPEG-TS stream served on loopback), its alerts listed and
streamed as server-sent events, the archive listed and searched, the job stopped, bad requests refused clearly."""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from visage import FaceAnalyzer
from visage.api.auth import Services
from visage.video.sources import VideoStream

from .conftest import BASIS
from .test_api import jpeg, make_client
from .test_video import MovingFace, encode_clip


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stream_url(tmp_path: Path, astronaut_face: np.ndarray) -> Iterator[str]:
    """A person walking past a camera, as an MPEG-TS stream over HTTP (FFmpeg reads it like a live feed)."""
    folder = tmp_path / "www"
    folder.mkdir()
    source = MovingFace(astronaut_face, frames=40, hidden=range(0))
    encode_clip(folder / "walk.ts", source, container_format="mpegts")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/walk.ts"
    server.shutdown()
    server.server_close()


@pytest.fixture
def video_api(tmp_path: Path, analyzer: FaceAnalyzer) -> Iterator[tuple[TestClient, Services, dict[str, str],
                                                                        dict[str, str]]]:
    client, ctx = make_client(tmp_path, analyzer, request_timeout_s=8)
    admin = {"Authorization": f"Bearer {ctx.keys.create('admin', ['admin'])[1]}"}
    desk = {"Authorization": f"Bearer {ctx.keys.create('desk', ['identify'])[1]}"}
    with client:
        yield client, ctx, admin, desk


def test_a_stream_job_alerts_live_and_fills_the_searchable_archive(
        video_api: tuple[TestClient, Services, dict[str, str], dict[str, str]], stream_url: str,
        astronaut: np.ndarray) -> None:
    client, ctx, admin, desk = video_api
    ctx.gallery.create("wanted", watchlist=True, **BASIS)
    ctx.gallery.enroll("wanted", "eileen", [astronaut], display_name="Eileen Collins")

    refused = {
        "invalid_url": client.post("/v1/streams", json={"url": "/etc/passwd"}, headers=admin),
        "purpose_required": client.post("/v1/streams", json={"url": stream_url, "galleries": ["wanted"]},
                                        headers=admin),
        "gallery_not_found": client.post("/v1/streams", json={"url": stream_url, "galleries": ["nope"]},
                                         headers=admin),
        "webhook_secret_missing": client.post("/v1/streams", json={"url": stream_url, "webhooks":
                                                                   ["http://127.0.0.1:9/hook"]}, headers=admin),
    }
    for code, response in refused.items():
        assert response.status_code in (404, 422) and response.json()["code"] == code, response.text
    assert client.post("/v1/streams", json={"url": stream_url}, headers=desk).status_code == 403

    broken = client.post("/v1/streams", json={"url": "http://127.0.0.1:9/camera-off.ts"}, headers=admin)
    assert broken.status_code == 201  # a camera that cannot be reached is retried, and isolated from the others
    started = client.post("/v1/streams", json={"url": stream_url, "galleries": ["wanted"],
                                               "purpose": "trespass order"}, headers=admin)
    assert started.status_code == 201 and started.json()["state"] == "running", started.text
    job = started.json()["id"]
    deadline = time.monotonic() + 90
    while not client.get("/v1/alerts", headers=desk).json():
        assert time.monotonic() < deadline, client.get(f"/v1/streams/{job}", headers=admin).json()
        time.sleep(0.5)
    feed = client.get("/v1/alerts/stream", params={"after": 0}, headers=desk)  # ends before the request timeout
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/event-stream")
    assert "event: alert\nid: 1\n" in feed.text and '"external_id": "eileen"' in feed.text

    stopped = client.delete(f"/v1/streams/{job}", headers=admin)
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    assert stopped.json()["frames"] > 0 and stopped.json()["alerts"] >= 1
    unreachable = client.get(f"/v1/streams/{broken.json()['id']}", headers=admin).json()
    assert unreachable["state"] == "running" and unreachable["frames"] == 0  # still trying, the other one worked
    assert client.delete(f"/v1/streams/{broken.json()['id']}", headers=admin).json()["state"] == "stopped"
    assert [s["state"] for s in client.get("/v1/streams", headers=admin).json()] == ["stopped", "stopped"]
    assert client.get("/v1/streams/99", headers=admin).json()["code"] == "job_not_found"

    listed = client.get("/v1/sightings", params={"gallery": "wanted", "person": "eileen"}, headers=desk).json()
    assert listed["items"] and all(s["external_id"] == "eileen" and s["source"] == stream_url
                                   for s in listed["items"])
    photo = {"image": ("eileen.jpg", jpeg(astronaut), "image/jpeg")}
    found = client.post("/v1/sightings/search", files=photo, data={"purpose": "incident review"}, headers=desk)
    assert found.status_code == 200, found.text
    hits = found.json()["hits"]
    assert len(hits) == len(listed["items"]) and all(h["match_similarity"] >= found.json()["threshold"]
                                                     for h in hits)
    assert [h["started_at"] for h in hits] == sorted((h["started_at"] for h in hits), reverse=True)
    no_purpose = client.post("/v1/sightings/search", files=photo, headers=desk)
    assert no_purpose.status_code == 422
    by_person = client.post("/v1/sightings/search", data={"gallery": "wanted", "person": "eileen",
                                                          "purpose": "incident review"}, headers=desk)
    assert len(by_person.json()["hits"]) == len(hits)
    actions = {e.action for e in ctx.audit.entries(limit=100)[0]}
    assert {"stream.start", "stream.stop", "video.alert", "sightings.search"} <= actions


def test_a_recording_over_http_is_paced_like_a_live_feed_and_replayed_without_hammering(stream_url: str) -> None:
    stream = VideoStream(stream_url, reconnect_max_s=1.0)
    started = time.monotonic()
    frames = []
    for frame in stream.frames():
        frames.append(frame)
        if len(frames) == 45:  # 40 frames, the recording ends, it is opened again
            stream.stop()
    assert len(frames) == 45 and time.monotonic() - started > 3.5  # 40 frames at 10 fps play for about 4 s
    assert [f.index for f in frames] == list(range(45))
    assert all(a.seconds < b.seconds for a, b in itertools.pairwise(frames))
    [gap] = stream.gaps
    assert gap.reason == "the stream ended" and (gap.ended_at - gap.started_at).total_seconds() >= 0.4
    assert stream.reconnects == 1
