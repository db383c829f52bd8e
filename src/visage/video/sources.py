"""Where frames come from: video files (any container FFmpeg reads, via PyAV) and folders of images.

Every source yields :class:`Frame` objects with the frame's position in the stream (``index``,
``seconds`` since the start, from the container's timestamps, not from counting) and the wall
clock it stands for. A frame that cannot be decoded is skipped and counted in
:class:`SourceStats`, never fatal: footage from real cameras has damaged packets. A file that
cannot be opened at all, or has no video stream, is a clear error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from visage.errors import ImageError, InvalidInputError
from visage.io.image import load_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB ``uint8`` (H, W, 3), its index and time in the stream, and the wall clock."""

    index: int
    seconds: float
    wall: datetime
    image: np.ndarray


@dataclass
class SourceStats:
    """What a source met so far: frames decoded, frames it had to skip (corrupt)."""

    decoded: int = 0
    corrupt: int = 0


class FrameSource(Protocol):
    name: str
    fps: float
    stats: SourceStats

    def frames(self) -> Iterator[Frame]:
        """Frames in stream order until the source ends."""
        ...


class VideoFile:
    """A video file; ``start`` is the wall-clock time of its first frame (default: the file's modification time)."""

    def __init__(self, path: str | Path, *, start: datetime | None = None) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise InvalidInputError(f"no video file at {self.path}", code="file_not_found")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InvalidInputError(f"{self.path} holds no video stream", code="no_video_stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else 25.0
                self.frame_count = int(stream.frames or 0)
                self.size = (int(stream.width), int(stream.height))
        except av.error.FFmpegError as exc:
            raise ImageError(f"cannot read {self.path} as a video: {exc}", code="unsupported_video") from None
        modified = datetime.fromtimestamp(self.path.stat().st_mtime, UTC)
        self.start = start or modified
        self.stats = SourceStats()

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps else 0.0

    def frames(self) -> Iterator[Frame]:
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            time_base = float(stream.time_base) if stream.time_base else 1.0 / self.fps
            first_pts: float | None = None
            index = 0
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:  # the container breaks off (a truncated file): end here
                    self.stats.corrupt += 1
                    log.warning("%s: unreadable after frame %d: %s", self.name, index, exc)
                    break
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:  # a damaged packet: skip it, keep going
                    self.stats.corrupt += 1
                    log.debug("%s: skipped a packet that does not decode: %s", self.name, exc)
                    continue
                for frame in decoded:
                    pts = float(frame.pts) if frame.pts is not None else index / self.fps / time_base
                    if first_pts is None:
                        first_pts = pts
                    seconds = max(0.0, (pts - first_pts) * time_base)
                    self.stats.decoded += 1
                    yield Frame(index, seconds, self.start + timedelta(seconds=seconds),
                                frame.to_ndarray(format="rgb24"))
                    index += 1


class ImageFolder:
    """Images of a folder in name order, as frames ``1 / fps`` seconds apart; unreadable images are skipped."""

    def __init__(self, folder: str | Path, *, fps: float = 1.0, start: datetime | None = None) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        if not self.folder.is_dir():
            raise InvalidInputError(f"no folder at {self.folder}", code="file_not_found")
        if fps <= 0:
            raise InvalidInputError("fps must be positive", code="invalid_fps")
        self.fps = fps
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise InvalidInputError(f"{self.folder} holds no images", code="no_images")
        self.start = start or datetime.now(UTC)
        self.stats = SourceStats()

    def frames(self) -> Iterator[Frame]:
        index = 0
        for position, path in enumerate(self.paths):
            try:
                image = load_image(path)
            except (ImageError, OSError) as exc:
                self.stats.corrupt += 1
                log.debug("%s: skipped %s: %s", self.name, path.name, exc)
                continue
            seconds = position / self.fps
            self.stats.decoded += 1
            yield Frame(index, seconds, self.start + timedelta(seconds=seconds), image)
            index += 1


def open_source(location: str | Path, *, fps: float | None = None) -> FrameSource:
    """A folder of images (at ``fps``, default 1) or a video file, by what ``location`` is."""
    path = Path(location)
    if path.is_dir():
        return ImageFolder(path, fps=fps or 1.0)
    return VideoFile(path)
