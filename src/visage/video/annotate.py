"""An annotated copy of footage: each analysed frame with its faces' boxes, track ids and names, as H.264 MP4.

Only the analysed frames are written (every ``detect_every``-th of a file), at the rate they
stand for, so the copy plays in real time and shows exactly what the tracker saw.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from visage.draw import draw_label
from visage.errors import InvalidInputError
from visage.video.sources import Frame

_PALETTE = [(46, 204, 113), (52, 152, 219), (155, 89, 182), (241, 196, 15), (230, 126, 34), (231, 76, 60)]


def draw_tracks(image: np.ndarray, track_ids: list[int], boxes: np.ndarray, labels: dict[int, str]) -> np.ndarray:
    """A copy of ``image`` (RGB) with each box, its track id and, when known, who it is."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for track_id, box in zip(track_ids, boxes, strict=True):
        colour = _PALETTE[track_id % len(_PALETTE)]
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        label = f"#{track_id}" + (f" {labels[track_id]}" if track_id in labels else "")
        draw_label(canvas, label, (x1, y1), colour, thickness, scale=0.45)
    return canvas


class AnnotatedVideo:
    """Writes annotated frames to ``path`` (H.264 in MP4, or what the suffix's container takes)."""

    def __init__(self, path: Path, fps: float) -> None:
        if path.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise InvalidInputError(f"{path}: write the annotated video as .mp4, .mkv or .mov", code="invalid_output")
        try:
            self.container: Any = av.open(str(path), mode="w")
        except (av.error.FFmpegError, OSError) as exc:
            raise InvalidInputError(f"cannot write {path}: {exc}", code="file_unwritable") from None
        self.rate = Fraction(fps).limit_denominator(1001)
        self.stream: Any = None

    def write(self, frame: Frame, track_ids: list[int], boxes: np.ndarray, labels: dict[int, str]) -> None:
        image = draw_tracks(frame.image, track_ids, boxes, labels)
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = image.shape[1] // 2 * 2, image.shape[0] // 2 * 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.codec_context.time_base = Fraction(1, 1000)
        image = np.ascontiguousarray(image[: self.stream.height, : self.stream.width])
        video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        video_frame.pts = round(frame.seconds * 1000)
        video_frame.time_base = Fraction(1, 1000)
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
