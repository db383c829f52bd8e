"""Face tracks across frames: detections associated by overlap with where each track is expected to be.

Each track remembers its last box and its motion (box change per frame, smoothed); in a new
frame it is expected at last box + motion × frames elapsed, so a face that walks keeps its
track even when detections are missed for a few frames (an occlusion, a turned head, frames
skipped to keep up with a live stream). Detections and expected boxes are paired greedily by
IoU, highest first, above ``min_iou``; what is left starts new tracks. A track not seen for
more than ``max_gap_s`` seconds of stream time ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from visage.models.nms import iou_matrix

MOTION_SMOOTHING = 0.5  # weight of the newest motion estimate


@dataclass
class Track:
    """A face followed across frames: when it was first and last seen (frame index and stream seconds)."""

    id: int
    first_index: int
    first_seconds: float
    last_index: int
    last_seconds: float
    box: np.ndarray
    motion: np.ndarray = field(default_factory=lambda: np.zeros(4))
    hits: int = 1

    def expected_box(self, index: int) -> np.ndarray:
        return self.box + self.motion * (index - self.last_index)


class Tracker:
    """Associates each frame's face boxes with tracks. Not thread-safe: one per stream."""

    def __init__(self, *, min_iou: float = 0.3, max_gap_s: float = 1.0) -> None:
        self.min_iou = min_iou
        self.max_gap_s = max_gap_s
        self._active: dict[int, Track] = {}
        self._next_id = 1

    @property
    def active(self) -> list[Track]:
        return list(self._active.values())

    def update(self, index: int, seconds: float, boxes: np.ndarray) -> list[int]:
        """The track id of each box of frame ``index`` (at ``seconds`` in the stream), new tracks included."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        tracks = list(self._active.values())
        assigned: list[int | None] = [None] * len(boxes)
        if tracks and len(boxes):
            expected = np.stack([t.expected_box(index) for t in tracks])
            overlap = iou_matrix(expected, boxes)
            taken_tracks: set[int] = set()
            for flat in np.argsort(-overlap, axis=None):
                t, d = divmod(int(flat), len(boxes))
                if overlap[t, d] < self.min_iou:
                    break
                if t in taken_tracks or assigned[d] is not None:
                    continue
                taken_tracks.add(t)
                assigned[d] = tracks[t].id
                self._follow(tracks[t], index, seconds, boxes[d])
        for d, track_id in enumerate(assigned):
            if track_id is None:
                track = Track(self._next_id, index, seconds, index, seconds, boxes[d].copy())
                self._active[track.id] = track
                self._next_id += 1
                assigned[d] = track.id
        return [int(t) for t in assigned if t is not None]

    @staticmethod
    def _follow(track: Track, index: int, seconds: float, box: np.ndarray) -> None:
        elapsed = max(1, index - track.last_index)
        observed = (box - track.box) / elapsed
        track.motion = MOTION_SMOOTHING * observed + (1 - MOTION_SMOOTHING) * track.motion
        track.box = box.copy()
        track.last_index, track.last_seconds = index, seconds
        track.hits += 1

    def finished(self, seconds: float) -> list[Track]:
        """Tracks not seen for more than ``max_gap_s`` before ``seconds``: removed and returned, oldest first."""
        ended = [t for t in self._active.values() if seconds - t.last_seconds > self.max_gap_s]
        for track in ended:
            del self._active[track.id]
        return sorted(ended, key=lambda t: t.first_index)

    def flush(self) -> list[Track]:
        """Every track still open (the stream ended)."""
        ended = sorted(self._active.values(), key=lambda t: t.first_index)
        self._active.clear()
        return ended
