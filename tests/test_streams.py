"""A real RTSP stream on loopback (rtsp-server-perl fed by FFmpeg, as a camera would be): `visage watch` tracks the
faces, delivers a watchlist match to a local webhook with a valid signature, survives the camera dropping and coming
back (the gap recorded), and ends cleanly on Ctrl-C with its sightings archived."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from visage import FaceAnalyzer, Settings
from visage.gallery.api import Gallery
from visage.video.alerts import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

from .conftest import BASIS
from .test_archive import SECRET, Receiver
from .test_video import MovingFace, encode_clip


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all held open until all are chosen (one at a time, the same port can come back)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def tools() -> None:
    missing = [t for t in ("ffmpeg", "rtsp-server-perl") if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {missing} (.ci/run does)")
        pytest.skip(f"needs {missing}: apt-get install -y ffmpeg rtsp-server-perl")


def camera_clip(path: Path, face: np.ndarray) -> None:
    """A person walking past, leaving, coming back: 6 s at 10 fps, a keyframe every second (as cameras send)."""
    source = MovingFace(face, frames=60, hidden=range(28, 40))
    encode_clip(path, source, options={"g": "10", "bf": "0"})


class Camera:
    """An IP camera on loopback: rtsp-server-perl fed by an FFmpeg push; it can drop off the network and come back."""

    def __init__(self, clip: Path) -> None:
        self.clip = clip
        self.client_port, self.source_port = free_ports(2)
        self.url = f"rtsp://127.0.0.1:{self.client_port}/live"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.processes.append(subprocess.Popen(
            ["rtsp-server-perl", "-c", str(self.client_port), "-s", str(self.source_port),
             "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while True:  # the server may still be starting: push until a reader can open the stream
            push = subprocess.Popen(
                ["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip), "-an",
                 "-c:v", "copy", "-f", "rtsp", f"rtsp://127.0.0.1:{self.source_port}/live"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.processes.append(push)
            time.sleep(1.0)
            if push.poll() is None and self.readable():
                return
            push.kill()
            push.wait()
            self.processes.remove(push)
            if time.monotonic() > deadline:
                raise AssertionError("the FFmpeg push into rtsp-server-perl did not start")

    def readable(self) -> bool:
        try:
            with av.open(self.url, options={"rtsp_transport": "udp", "timeout": "5000000"}, timeout=5):
                return True
        except (av.error.FFmpegError, OSError):
            return False

    def drop(self) -> None:
        """The camera goes away (power cut, network down): server and push killed."""
        for process in self.processes:
            process.kill()
            process.wait()
        self.processes.clear()


@pytest.fixture
def camera(tmp_path: Path, astronaut_face: np.ndarray) -> Iterator[Camera]:
    tools()
    clip = tmp_path / "camera.mp4"
    camera_clip(clip, astronaut_face)
    running = Camera(clip)
    try:
        running.start()
        yield running
    finally:
        running.drop()


def test_watch_an_rtsp_camera_alert_a_webhook_survive_a_drop_and_stop_cleanly(
        camera: Camera, tmp_path: Path, analyzer: FaceAnalyzer, astronaut: np.ndarray,
        private_data_dir: Path) -> None:
    data = tmp_path / "data"
    # The session's converted embedding model, as a second start on the same machine would find it.
    shutil.copytree(private_data_dir / "models", data / "models")
    with Gallery(Settings(data_dir=data), analyzer=analyzer) as gallery:
        gallery.create("wanted", watchlist=True, **BASIS)
        gallery.enroll("wanted", "eileen", [astronaut])
    receiver = Receiver()
    env = {**os.environ, "VISAGE_DATA_DIR": str(data), "VISAGE_VIDEO__WEBHOOK_SECRET": SECRET,
           "VISAGE_VIDEO__RECONNECT_MAX_S": "1", "COLUMNS": "200"}
    printed, logged = tmp_path / "watch.out", tmp_path / "watch.err"
    with printed.open("w") as stdout, logged.open("w") as stderr:  # files, not pipes: a full pipe would block it
        watcher = subprocess.Popen(
            [sys.executable, "-m", "visage.cli", "watch", camera.url, "--gallery", "wanted", "--purpose",
             "trespass order", "--webhook", receiver.url, "--transport", "udp", "--json"],
            stdout=stdout, stderr=stderr, text=True, env=env)
    database = data / "visage.db"

    def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the watcher said:\n"
                                     f"{printed.read_text()[-2000:]}\n{logged.read_text()[-4000:]}")
            time.sleep(0.2)

    def count(sql: str) -> int:
        if not database.exists():
            return 0
        with sqlite3.connect(database, timeout=10) as connection:
            return int(connection.execute(sql).fetchone()[0])

    try:
        wait_for(lambda: len(receiver.requests) >= 2 or watcher.poll() is not None, 150, "the webhook alert")
        assert watcher.poll() is None, logged.read_text()
        camera.drop()  # the camera drops…
        time.sleep(3)
        camera.start()  # …and comes back
        wait_for(lambda: count("SELECT count(*) FROM stream_gaps") >= 1, 60, "the stream to recover")
        wait_for(lambda: count("SELECT count(*) FROM sightings") >= 1, 30, "a sighting after the recovery")
    finally:
        receiver.close()
        watcher.send_signal(signal.SIGINT)  # Ctrl-C: open tracks archived, clean exit
        watcher.wait(timeout=60)
    stdout, stderr = printed.read_text(), logged.read_text()
    assert watcher.returncode == 0, stderr
    headers, body = receiver.requests[-1]
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert b'"external_id":"eileen"' in body
    assert '"alert"' in stdout and '"sighting"' in stdout
    assert "stopped:" in stderr and "reconnection(s)" in stderr and "Traceback" not in stderr
    assert count("SELECT count(*) FROM alerts") >= 1
    assert count("SELECT count(*) FROM sightings WHERE person_id IS NOT NULL") >= 1
    with sqlite3.connect(database) as connection:
        reason, = connection.execute("SELECT reason FROM stream_gaps").fetchone()
    assert reason  # why the stream was lost is recorded with the gap
