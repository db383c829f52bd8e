"""Footage → sightings: faces detected on frames, followed as tracks, each track reduced to one sighting.

Detection (with quality, no embedding) runs on every ``detect_every``-th frame, on a copy of
the frame shrunk as far as still finds the smallest face worth following (``min_face_px``);
the tracker carries identities across the frames in between and across missed detections. Per track only
the :data:`BEST_SHOTS` best-quality faces are kept, each as a small region of its frame (the
face with a margin), so memory does not grow with the track's length. When a track ends, those
shots are embedded (aligned by the landmarks the detector gave for them, so nothing is
detected twice) and their unit embeddings averaged into one: a :class:`Sighting`. Embedding a
few faces per person instead of every face on every frame is what makes the scan faster than
real time. The best shots are cut from the full frame, so the shrinking costs no embedding detail.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from visage.config import VideoSettings
from visage.gallery.chips import face_region
from visage.pipeline import FaceAnalyzer
from visage.types import FloatArray
from visage.video.sources import Frame, FrameSource
from visage.video.tracking import Track, Tracker

BEST_SHOTS = 3
# A track still in view is embedded (its best shot so far) when its detections reach these counts, so a
# watchlist match raises its alert while the person is there, not when they have left.
PROBE_HITS = frozenset({3, 6, 12, 24, 48, 96})


@dataclass(frozen=True)
class Sighting:
    """One person passing the camera: when (stream seconds and wall clock), how long, how well seen.

    ``embedding`` is the unit average of the best shots' embeddings (None when none of them could
    be embedded); ``best_box`` is where the best shot was, in its frame.
    """

    source: str
    track_id: int
    start_seconds: float
    end_seconds: float
    start_wall: datetime
    end_wall: datetime
    frames: int
    best_quality: float
    best_frame: int
    best_box: tuple[float, float, float, float]
    embedding: FloatArray | None
    best_shot: np.ndarray | None = field(default=None, repr=False, compare=False)  # RGB region around the best face


@dataclass
class _Shots:
    """A track's best faces so far: a min-heap of (quality, frame index, region, the face's box and 5 landmarks
    in the region)."""

    heap: list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    start_wall: datetime | None = None
    end_wall: datetime | None = None
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # in its frame

    def best(self) -> tuple[float, int, np.ndarray, np.ndarray, np.ndarray]:
        return max(self.heap, key=lambda entry: entry[0])

    def offer(self, quality: float, frame: Frame, box: np.ndarray, landmarks: np.ndarray) -> None:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not self.heap or quality > max(q for q, *_ in self.heap):
            self.best_box = (x1, y1, x2, y2)
        if len(self.heap) == BEST_SHOTS and quality <= self.heap[0][0]:
            return
        view, (left, top) = face_region(frame.image, box)
        region = np.ascontiguousarray(view)  # a copy: the frame itself is not kept
        offset = np.array([left, top], np.float32)
        entry = (quality, frame.index, region, np.array([x1 - left, y1 - top, x2 - left, y2 - top], np.float32),
                 np.asarray(landmarks, np.float32) - offset)
        if len(self.heap) < BEST_SHOTS:
            heapq.heappush(self.heap, entry)
        else:
            heapq.heapreplace(self.heap, entry)


class VideoScanner:
    """Turns a frame source into sightings with one analyzer. Not thread-safe: one scanner per stream."""

    def __init__(self, analyzer: FaceAnalyzer, *, detect_every: int = 3, max_gap_s: float = 1.0,
                 min_frames: int = 2, min_face_px: float | None = None, detect_max_side: int | None = None) -> None:
        """``min_face_px``: the smallest face (box side, frame pixels) worth following; the detector then runs on
        the frame shrunk as far as still finds such faces. ``detect_max_side``: shrink further to at most this."""
        self.analyzer = analyzer
        self.detect_every = max(1, detect_every)
        self.max_gap_s = max_gap_s
        self.min_frames = min_frames
        self.min_face_px = min_face_px
        self.detect_max_side = detect_max_side

    @classmethod
    def from_settings(cls, analyzer: FaceAnalyzer, video: VideoSettings, *,
                      detect_every: int | None = None) -> VideoScanner:
        """A scanner with the configured stride, track gap, minimum track length and face size."""
        return cls(analyzer, detect_every=detect_every or video.detect_every, max_gap_s=video.max_gap_s,
                   min_frames=video.min_frames, min_face_px=video.min_face_px, detect_max_side=video.detect_max_side)

    def detection_scale(self, height: int, width: int) -> float:
        """How much a frame is shrunk for detection: the detector's own ``min_face_size`` then stands for
        ``min_face_px`` frame pixels (its reliable size), within ``detect_max_side``."""
        scale = 1.0
        if self.min_face_px:
            scale = min(scale, self.analyzer.settings.detection.min_face_size / self.min_face_px)
        if self.detect_max_side:
            scale = min(scale, self.detect_max_side / max(height, width))
        return scale

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, landmarks (frame pixels) and quality of the faces in a frame, detected on a shrunk copy."""
        height, width = image.shape[:2]
        scale = self.detection_scale(height, width)
        if scale < 0.98:
            image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
        else:
            scale = 1.0
        faces = self.analyzer.analyze(image, embed=False)
        return faces.boxes / scale, faces.landmarks / scale, faces.quality

    def scan(self, source: FrameSource, *,
             on_frame: Callable[[Frame, list[int], np.ndarray], None] | None = None,
             probe: Callable[[Track, Frame, FloatArray], bool] | None = None) -> Iterator[Sighting]:
        """Sightings as their tracks end (then the rest when the source ends).

        ``on_frame(frame, track ids, boxes)`` sees every analysed frame (to draw an annotated copy
        or show progress). ``probe(track, frame, embedding)`` is given the best shot so far of a
        track still in view, a few times as it grows (:data:`PROBE_HITS`), until it returns True.
        A live source is analysed on every frame it hands out (it drops what analysis cannot
        keep up with); a file on every ``detect_every``-th.
        """
        tracker = Tracker(max_gap_s=self.max_gap_s)
        shots: dict[int, _Shots] = {}
        settled: set[int] = set()
        stride = 1 if source.live else self.detect_every
        for frame in source.frames():
            if frame.index % stride:
                continue
            boxes, landmarks, quality = self._detect(frame.image)
            track_ids = tracker.update(frame.index, frame.seconds, boxes)
            for position, track_id in enumerate(track_ids):
                kept = shots.setdefault(track_id, _Shots(start_wall=frame.wall))
                kept.end_wall = frame.wall
                kept.offer(float(quality[position]), frame, boxes[position], landmarks[position])
            if probe is not None:
                for track in tracker.active:
                    if track.last_index == frame.index and track.hits in PROBE_HITS and track.id not in settled:
                        embedding = self._embed(shots[track.id].best())
                        if embedding is not None and probe(track, frame, embedding):
                            settled.add(track.id)
            if on_frame is not None:
                on_frame(frame, track_ids, boxes)
            for track in tracker.finished(frame.seconds):
                settled.discard(track.id)
                sighting = self._sighting(source.name, track, shots.pop(track.id))
                if sighting is not None:
                    yield sighting
        for track in tracker.flush():
            sighting = self._sighting(source.name, track, shots.pop(track.id))
            if sighting is not None:
                yield sighting

    def _embed(self, shot: tuple[float, int, np.ndarray, np.ndarray, np.ndarray]) -> FloatArray | None:
        _, _, region, box, landmarks = shot
        # The detector's own landmarks align the face: no second detection is needed.
        faces = self.analyzer.analyze_regions(region, box[None], landmarks=landmarks[None])
        return None if faces.embeddings is None else faces.embeddings[0]

    def _sighting(self, source: str, track: Track, kept: _Shots) -> Sighting | None:
        if track.hits < self.min_frames:  # a face seen once is more likely a false detection than a person
            return None
        best_quality, best_frame, best_region, *_ = kept.best()
        embeddings = [e for e in (self._embed(shot) for shot in kept.heap) if e is not None]
        fused = None
        if embeddings:
            mean = np.mean(embeddings, axis=0)
            fused = (mean / np.linalg.norm(mean)).astype(np.float32)
        assert kept.start_wall is not None and kept.end_wall is not None
        return Sighting(source, track.id, track.first_seconds, track.last_seconds, kept.start_wall, kept.end_wall,
                        track.hits, best_quality, best_frame, kept.best_box, fused, best_region)
