"""Watching footage: tracks named, archived as sightings, watchlist matches raised as alerts; jobs that run streams.

:class:`SightingRecorder` decides what a track becomes. While the track is in view the scanner
probes it (its best shot so far, a few times): a match in a watchlist gallery raises an alert
at once, once per track. When the track ends its fused embedding is named from the chosen
galleries (or made a pseudonymous unknown) and stored in the archive, committed there and then:
a process killed mid-stream loses only the tracks still open.

:class:`WatchJob` runs one source (a file or a live stream) on its own thread;
:class:`WatchJobs` holds several in one process, each isolated (a stream that fails ends its
own job and nothing else).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from visage.errors import NotFoundError, VisageError
from visage.gallery.chips import face_chip
from visage.gallery.sightings_store import AlertRecord, SightingRecord
from visage.privacy.audit import AuditLog
from visage.types import FloatArray
from visage.video.alerts import WebhookSender
from visage.video.archive import Match, SightingArchive
from visage.video.identify import SightingNamer
from visage.video.scanner import Sighting, VideoScanner
from visage.video.sources import Frame, FrameSource, NewestFrames, StreamGap, VideoStream, open_source
from visage.video.tracking import Track

log = logging.getLogger(__name__)


class SightingRecorder:
    """Names, archives and alerts on the tracks of one source. Thread-safe enough for one scanner thread."""

    def __init__(self, archive: SightingArchive, namer: SightingNamer | None, *, actor: str,
                 audit: AuditLog | None = None, webhooks: WebhookSender | None = None,
                 on_alert: Callable[[AlertRecord], None] | None = None, name_in_view: bool = False) -> None:
        self.archive = archive
        self.namer = namer
        self.actor = actor
        self.audit = audit
        self.webhooks = webhooks
        self.on_alert = on_alert
        self.name_in_view = name_in_view  # probe every gallery, not only watchlists (to label an annotated video)
        self.alerted: set[tuple[str, int]] = set()
        self.labels: dict[int, str] = {}  # track id → who it was found to be while in view
        self.sightings = 0
        self.alerts = 0

    def probe(self, source: str, track: Track, seconds: float, wall: datetime, embedding: FloatArray) -> bool:
        """A track still in view: alert on a watchlist match. True once nothing more is to be learnt from it."""
        if self.namer is None or not (self.namer.watches or self.name_in_view):
            return True
        match = self.namer.match(embedding, watchlists_only=not self.name_in_view)
        if match is None:
            return False
        self.labels[track.id] = match.display_name or match.external_id
        if match.watchlist:
            self._alert(source, track.id, match, seconds, wall)
            return True
        return not self.namer.watches

    def finish(self, sighting: Sighting) -> SightingRecord:
        """A track ended: name it (or make it an unknown), archive it, alert if a watchlist matched only now."""
        match: Match | None = None
        if self.namer is not None and sighting.embedding is not None:
            match = self.namer.match(sighting.embedding)
        if match is not None and match.watchlist:
            self._alert(sighting.source, sighting.track_id, match, sighting.end_seconds, sighting.end_wall)
        self.alerted.discard((sighting.source, sighting.track_id))
        self.labels.pop(sighting.track_id, None)
        thumbnail = None
        if self.archive.settings.video.keep_thumbnails and sighting.best_shot is not None:
            shot = sighting.best_shot
            thumbnail = face_chip(shot, (0, 0, shot.shape[1], shot.shape[0]))
        record = self.archive.record(sighting, match, thumbnail=thumbnail)
        self.sightings += 1
        return record

    def _alert(self, source: str, track_id: int, match: Match, seconds: float, wall: datetime) -> None:
        if (source, track_id) in self.alerted:  # one alert per track
            return
        self.alerted.add((source, track_id))
        alert = self.archive.store.add_alert(source, track_id, match.gallery_id, match.person_id, match.similarity,
                                             match.threshold, seconds, wall)
        self.alerts += 1
        if self.audit is not None:
            self.audit.record(self.actor, "video.alert", gallery=match.gallery, person=match.external_id,
                              purpose=self.namer.purpose if self.namer else None, result_count=1,
                              details={"source": source, "track_id": track_id, "alert_id": alert.id,
                                       "similarity": round(match.similarity, 4), "matches": 1})
        if self.webhooks is not None:
            self.webhooks.send(alert)
        if self.on_alert is not None:
            self.on_alert(alert)


@dataclass
class WatchStatus:
    """What a job is doing; ``state``: running, finished (the source ended), stopped, failed (``error`` says why)."""

    id: int
    source: str
    galleries: list[str]
    purpose: str | None
    state: str = "running"
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime | None = None
    frames: int = 0
    analysed: int = 0
    dropped: int = 0
    corrupt: int = 0
    sightings: int = 0
    alerts: int = 0
    reconnects: int = 0
    gaps: int = 0


class WatchJob:
    """One source scanned until it ends or is stopped; sightings archived as their tracks end."""

    def __init__(self, job_id: int, source: FrameSource, scanner: VideoScanner, recorder: SightingRecorder, *,
                 galleries: Sequence[str] = (), purpose: str | None = None,
                 on_sighting: Callable[[SightingRecord], None] | None = None,
                 on_frame: Callable[[Frame, list[int], np.ndarray], None] | None = None) -> None:
        self.source = source
        self.on_frame = on_frame
        self.scanner = scanner
        self.recorder = recorder
        self.on_sighting = on_sighting
        self.status = WatchStatus(job_id, source.name, list(galleries), purpose)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> WatchStatus:
        """Scan on the calling thread until the source ends or :meth:`stop`; open tracks are archived at the end."""
        name = self.source.name

        def probe(track: Track, frame: Frame, embedding: FloatArray) -> bool:
            return self.recorder.probe(name, track, track.last_seconds, frame.wall, embedding)

        def seen(frame: Frame, track_ids: list[int], boxes: np.ndarray) -> None:
            self.status.analysed += 1
            self._refresh()
            if self.on_frame is not None:
                self.on_frame(frame, track_ids, boxes)

        try:
            for sighting in self.scanner.scan(self.source, probe=probe, on_frame=seen):
                record = self.recorder.finish(sighting)
                self.status.sightings = self.recorder.sightings
                if self.on_sighting is not None:
                    self.on_sighting(record)
        except VisageError as exc:
            self.status.state, self.status.error = "failed", exc.message
        except Exception as exc:  # a job's failure is reported, never spread to other jobs
            log.exception("watch job %d (%s) failed", self.status.id, name)
            self.status.state, self.status.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            self.status.state = "stopped" if self._stop.is_set() else "finished"
        finally:
            self._refresh()
            self.status.ended_at = datetime.now(UTC)
            if self.recorder.webhooks is not None:
                self.recorder.webhooks.close()
        return self.status

    def _refresh(self) -> None:
        stats = self.source.stats
        self.status.frames, self.status.corrupt = stats.decoded, stats.corrupt
        self.status.dropped = getattr(self.source, "dropped", 0)
        stream = getattr(self.source, "source", self.source)
        self.status.reconnects = getattr(stream, "reconnects", 0)
        self.status.gaps = len(getattr(stream, "gaps", []))
        self.status.alerts = self.recorder.alerts

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"visage-watch-{self.status.id}", daemon=True)
        self._thread.start()

    def stop(self, *, wait_s: float = 30.0) -> WatchStatus:
        """End the job: the source stops, open tracks are archived, webhooks drain."""
        self._stop.set()
        stopper = getattr(self.source, "stop", None)
        if stopper is not None:
            stopper()
        if self._thread is not None:
            self._thread.join(timeout=wait_s)
        return self.status

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def open_watch(archive: SightingArchive, location: str, *, job_id: int = 1, galleries: Sequence[str] = (),
               purpose: str | None = None, webhooks: Sequence[str] = (), webhook_secret: str | None = None,
               actor: str, audit: AuditLog | None = None, transport: str | None = None,
               detect_every: int | None = None, folder_fps: float | None = None, name_in_view: bool = False,
               on_alert: Callable[[AlertRecord], None] | None = None,
               on_sighting: Callable[[SightingRecord], None] | None = None,
               on_frame: Callable[[Frame, list[int], np.ndarray], None] | None = None) -> WatchJob:
    """A job for a stream URL, video file or image folder, checked (galleries, purpose, webhooks) before it runs."""
    settings = archive.settings.video
    namer = SightingNamer(archive.gallery, galleries, purpose=purpose) if galleries else None
    sender = WebhookSender(archive.store, list(webhooks), webhook_secret or settings.webhook_secret,
                           attempts=settings.webhook_attempts, timeout_s=settings.webhook_timeout_s)
    source: FrameSource
    if "://" in location:
        def gap(found: StreamGap) -> None:
            archive.store.add_gap(location, found.started_at, found.ended_at, found.reason)

        stream = VideoStream(location, transport=transport, max_side=settings.frame_max_side,
                             reconnect_max_s=settings.reconnect_max_s, on_gap=gap)
        source = NewestFrames(stream, max_fps=settings.live_max_fps)
    else:
        source = open_source(location, fps=folder_fps, max_side=settings.frame_max_side)
    recorder = SightingRecorder(archive, namer, actor=actor, audit=audit, webhooks=sender, on_alert=on_alert,
                                name_in_view=name_in_view)
    scanner = VideoScanner.from_settings(archive.gallery.analyzer, settings, detect_every=detect_every)
    return WatchJob(job_id, source, scanner, recorder, galleries=galleries, purpose=purpose,
                    on_sighting=on_sighting, on_frame=on_frame)


class WatchJobs:
    """Several watch jobs in one process (the service's stream jobs), each on its own thread."""

    def __init__(self, archive: SightingArchive) -> None:
        self.archive = archive
        self._jobs: dict[int, WatchJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, location: str, **options: object) -> WatchJob:
        with self._lock:
            job_id = next(self._ids)
        job = open_watch(self.archive, location, job_id=job_id, **options)  # type: ignore[arg-type]
        with self._lock:
            self._jobs[job_id] = job
        job.start()
        return job

    def get(self, job_id: int) -> WatchJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no stream job {job_id}", code="job_not_found")
        return job

    def list(self) -> list[WatchJob]:
        with self._lock:
            return list(self._jobs.values())

    def stop(self, job_id: int) -> WatchStatus:
        return self.get(job_id).stop()

    def stop_all(self) -> None:
        for job in self.list():
            if job.running:
                job.stop()
