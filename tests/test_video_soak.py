"""Bounded resources: half an hour of generated footage leaves memory flat, and a watcher killed with SIGKILL keeps
every sighting whose track had ended (only open tracks are lost) in an intact database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from visage import FaceAnalyzer, Settings
from visage.gallery.api import Gallery
from visage.video.archive import SightingArchive
from visage.video.scanner import VideoScanner
from visage.video.sources import Frame, SourceStats, still
from visage.video.watch import SightingRecorder, WatchJob

from .test_video import encode_clip

FPS = 5.0
SIZE = (192, 144)  # width, height: low resolution keeps a 30-minute stream within a test's time


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Corridor:
    """A camera over a corridor: every 8 s someone walks through for 5 s (a face of about 40 px), then it is empty."""

    live = False
    fps = FPS

    def __init__(self, face: np.ndarray, minutes: float, *, on_frame: object = None) -> None:
        self.name = "corridor"
        self.face = cv2.resize(face, (60, 72), interpolation=cv2.INTER_AREA)
        self.count = int(minutes * 60 * FPS)
        self.stats = SourceStats()
        self.start = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
        self.tick = on_frame

    def frames(self) -> Iterator[Frame]:
        empty = np.full((SIZE[1], SIZE[0], 3), 96, np.uint8)
        for index in range(self.count):
            seconds = index / FPS
            phase = seconds % 8.0
            image = empty
            if phase < 5.0:
                image = empty.copy()
                x = int(10 + phase * 20)
                image[36:108, x:x + 60] = self.face
            self.stats.decoded += 1
            if self.tick is not None:
                self.tick(index)  # type: ignore[operator]
            yield Frame(index, seconds, self.start + timedelta(seconds=seconds), still(image))


def test_half_an_hour_of_footage_keeps_memory_flat(tmp_path: Path, astronaut_face: np.ndarray) -> None:
    analyzer = FaceAnalyzer(Settings(embedding={"views": "single"}))  # as `visage watch` embeds
    minutes = 30.0
    samples: dict[str, float] = {}
    total = int(minutes * 60 * FPS)

    def sample(index: int) -> None:
        if index == total // 5:
            samples["warm"] = rss_mb()  # after the first 6 minutes: caches, index and SQLite pages settled
        elif index == total - 1:
            samples["end"] = rss_mb()

    with Gallery(Settings(data_dir=tmp_path), analyzer=analyzer) as gallery:
        archive = SightingArchive(gallery)
        recorder = SightingRecorder(archive, None, actor="soak")
        job = WatchJob(1, Corridor(astronaut_face, minutes, on_frame=sample),
                       VideoScanner(analyzer, detect_every=3, min_face_px=30), recorder)
        started = time.monotonic()
        status = job.run()
        elapsed = time.monotonic() - started
        sightings = archive.store.sightings(limit=1000)
    assert status.state == "finished" and status.frames == total
    assert len(sightings) == 225  # one per walk-through: 30 min / 8 s
    assert len({s.unknown for s in sightings}) == 1  # the same stranger, every time
    growth = samples["end"] - samples["warm"]
    print(f"RSS {samples['warm']:.1f} MB after 6 minutes of footage, {samples['end']:.1f} MB after 30")
    assert growth < 25, f"memory grew {growth:.1f} MB over 24 minutes of footage"
    assert elapsed < 180  # 30 minutes of footage at least 10x faster than real time


def test_a_killed_watcher_keeps_every_finished_sighting(tmp_path: Path, astronaut_face: np.ndarray) -> None:
    clip = tmp_path / "corridor.ts"
    encode_clip(clip, Corridor(astronaut_face, 10), fps=int(FPS), container_format="mpegts")
    data = tmp_path / "data"
    database = data / "visage.db"
    watcher = subprocess.Popen([sys.executable, "-m", "visage.cli", "watch", str(clip), "--json"],
                               env={**os.environ, "VISAGE_DATA_DIR": str(data)}, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)

    def stored() -> int:
        if not database.exists():
            return 0
        try:
            with sqlite3.connect(database, timeout=10) as connection:
                return int(connection.execute("SELECT count(*) FROM sightings").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0

    deadline = time.monotonic() + 120
    while stored() < 3:
        assert watcher.poll() is None and time.monotonic() < deadline, "the watcher stored no sightings"
        time.sleep(0.2)
    watcher.send_signal(signal.SIGKILL)
    printed, _ = watcher.communicate(timeout=30)
    reported = printed.count('"sighting"')
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = int(connection.execute("SELECT count(*) FROM sightings").fetchone()[0])
    assert kept >= 3 and kept >= reported  # every sighting it announced was committed before
