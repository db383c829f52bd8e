"""Where frames come from: video files (any container FFmpeg reads, via PyAV), live streams (RTSP, HTTP, …)
and folders of images.

Every source yields :class:`Frame` objects with the frame's position in the stream (``index``,
``seconds`` since the start: the container's timestamps for files, the clock for live streams)
and the wall clock it stands for. A frame that cannot be decoded is skipped and counted in
:class:`SourceStats`, never fatal: footage from real cameras has damaged packets. A file that
cannot be opened at all, or has no video stream, is a clear error; a stream that cannot be
reached or drops is retried with backoff, and the gap is recorded. :class:`NewestFrames` reads a
live stream on its own thread so that slow analysis drops frames instead of falling behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from visage.errors import ImageError, InvalidInputError
from visage.io.image import load_image

log = logging.getLogger(__name__)

STABLE_CONNECTION_S = 10.0  # a stream connection that lasted this long is reopened without waiting
MAX_PACING_S = 1.0  # a frame further than this from its timestamp's time is a jump in timestamps, not a pause
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index and time in the stream, the wall clock, and its pixels.

    ``image`` (RGB ``uint8``, (H, W, 3)) is converted from the decoder's format on first use:
    frames a scan skips never pay for the conversion.
    """

    index: int
    seconds: float
    wall: datetime
    pixels: Callable[[], np.ndarray]

    @cached_property
    def image(self) -> np.ndarray:
        return self.pixels()


def still(image: np.ndarray) -> Callable[[], np.ndarray]:
    """Pixels already in memory, as a :class:`Frame` takes them."""
    return lambda: image


@dataclass
class SourceStats:
    """What a source met so far: frames decoded, frames it had to skip (corrupt)."""

    decoded: int = 0
    corrupt: int = 0


class FrameSource(Protocol):
    name: str
    stats: SourceStats
    live: bool  # a stream: frames come at their own pace and are dropped when analysis falls behind

    @property
    def fps(self) -> float:
        """Frames per second of the footage (of a stream: once connected)."""
        ...

    def frames(self) -> Iterator[Frame]:
        """Frames in stream order until the source ends."""
        ...


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` shrunk so the longer side is at most ``max_side`` (even sizes, as codecs like them)."""
    longest = max(width, height)
    if not max_side or longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _pixels(frame: av.VideoFrame, size: tuple[int, int]) -> Callable[[], np.ndarray]:
    """The frame as RGB at ``size``, converted (and scaled, in one pass) only when asked for."""
    width, height = size
    if (width, height) == (frame.width, frame.height):
        return partial(frame.to_ndarray, format="rgb24")
    return partial(frame.to_ndarray, format="rgb24", width=width, height=height)


def _decoded(name: str, container: Any, stats: SourceStats) -> Iterator[av.VideoFrame]:
    """Every frame of the container's first video stream; a damaged packet is skipped and counted, a container
    that breaks off ends the frames (both logged, neither raised)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:  # the container breaks off (a truncated file): end here
            stats.corrupt += 1
            log.warning("%s: unreadable after frame %d: %s", name, stats.decoded, exc)
            return
        try:
            decoded = packet.decode()
        except av.error.FFmpegError as exc:  # a damaged packet: skip it, keep going
            stats.corrupt += 1
            log.debug("%s: skipped a packet that does not decode: %s", name, exc)
            continue
        for frame in decoded:
            stats.decoded += 1
            yield frame


class VideoFile:
    """A video file; ``start`` is the wall-clock time of its first frame (default: the file's modification time).

    Frames larger than ``max_side`` are scaled down as they are converted (tracking 1080p footage
    at 1280×720 costs less than half as much, and faces big enough to recognise stay so).
    """

    live = False

    def __init__(self, path: str | Path, *, start: datetime | None = None, max_side: int | None = None) -> None:
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
                self.size = scaled_size(int(stream.width), int(stream.height), max_side)
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
            time_base = float(stream.time_base) if stream.time_base else 1.0 / self.fps
            first_pts: float | None = None
            for index, frame in enumerate(_decoded(self.name, container, self.stats)):
                pts = float(frame.pts) if frame.pts is not None else index / self.fps / time_base
                if first_pts is None:
                    first_pts = pts
                seconds = max(0.0, (pts - first_pts) * time_base)
                yield Frame(index, seconds, self.start + timedelta(seconds=seconds), _pixels(frame, self.size))


@dataclass(frozen=True)
class StreamGap:
    """A time a live stream gave no frames (it dropped, or could not be reached), and why."""

    started_at: datetime
    ended_at: datetime
    reason: str


class VideoStream:
    """A live stream (``rtsp://``, ``http(s)://``, … anything FFmpeg opens) that reconnects when it drops.

    A stream that ends, errs or stays silent past ``read_timeout_s`` is opened again, waiting
    0.5 s, then twice as long after each failed attempt up to ``reconnect_max_s``; the time
    without frames is a :class:`StreamGap`, kept in ``gaps`` and passed to ``on_gap``. Stream
    time (``Frame.seconds``) is wall time since :meth:`frames` began, so it stays monotonic
    across reconnections (the camera's own timestamps restart). ``stop()`` (from any thread)
    ends :meth:`frames` within a read timeout.
    """

    live = True

    def __init__(self, url: str, *, transport: str | None = None, max_side: int | None = None,
                 reconnect_max_s: float = 10.0, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0,
                 on_gap: Callable[[StreamGap], None] | None = None) -> None:
        if "://" not in url:
            raise InvalidInputError(f"'{url}' is not a stream URL (rtsp://, http://, …)", code="invalid_url")
        self.url = url
        self.name = url
        self.fps = 0.0  # known once connected
        self.max_side = max_side
        # FFmpeg's own socket timeout (µs): without it an RTSP-over-UDP reader waits far longer than the read
        # timeout for packets that stopped coming.
        self.options = {"timeout": str(int(read_timeout_s * 1_000_000))}
        if transport:
            self.options["rtsp_transport"] = transport
        self.reconnect_max_s = reconnect_max_s
        self.timeouts = (open_timeout_s, read_timeout_s)
        self.on_gap = on_gap
        self.stats = SourceStats()
        self.gaps: list[StreamGap] = []
        self.reconnects = 0
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def frames(self) -> Iterator[Frame]:
        began = time.monotonic()
        started = datetime.now(UTC)
        index = 0
        wait = 0.5
        lost_at: datetime | None = None
        reason = ""
        while not self._stop.is_set():
            try:
                container = av.open(self.url, options=self.options, timeout=self.timeouts)
            except (av.error.FFmpegError, OSError) as exc:
                lost_at = lost_at or datetime.now(UTC)
                reason = reason or f"cannot open: {exc}"
                log.warning("%s: cannot open (%s); retrying in %.1f s", self.name, exc, wait)
                self._stop.wait(wait)
                wait = min(wait * 2, self.reconnect_max_s)
                continue
            opened = time.monotonic()
            with container:
                if not container.streams.video:
                    raise InvalidInputError(f"{self.url} carries no video stream", code="no_video_stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else self.fps or 25.0
                size = scaled_size(int(stream.width or 0), int(stream.height or 0), self.max_side)
                time_base = float(stream.time_base) if stream.time_base else 0.0
                first_pts: int | None = None
                paced_from = opened
                try:
                    for frame in _decoded(self.name, container, self.stats):
                        if lost_at is not None:  # frames again: the gap is over
                            self._gap(lost_at, reason)
                            lost_at, reason = None, ""
                        if size[0] == 0:
                            size = scaled_size(frame.width, frame.height, self.max_side)
                        if frame.pts is not None and time_base:
                            # A recording served over HTTP arrives faster than it plays: pace it by its own
                            # timestamps (FFmpeg's -re), so it is watched like a live feed. A camera is paced already.
                            if first_pts is None:
                                first_pts, paced_from = frame.pts, time.monotonic()
                            ahead = (frame.pts - first_pts) * time_base - (time.monotonic() - paced_from)
                            if ahead > MAX_PACING_S or ahead < -MAX_PACING_S:  # a jump in timestamps: new baseline
                                first_pts, paced_from = frame.pts, time.monotonic()
                            elif ahead > 0 and self._stop.wait(ahead):
                                return
                        seconds = time.monotonic() - began
                        yield Frame(index, seconds, started + timedelta(seconds=seconds), _pixels(frame, size))
                        index += 1
                        if self._stop.is_set():
                            return
                    reason = "the stream ended"
                except (av.error.FFmpegError, OSError) as exc:
                    reason = f"the stream broke off: {exc}"
            if not self._stop.is_set():
                lost_at = lost_at or datetime.now(UTC)
                self.reconnects += 1
                if time.monotonic() - opened >= STABLE_CONNECTION_S:  # it had been up a while: try again at once
                    wait = 0.5
                    log.warning("%s: %s; reconnecting", self.name, reason)
                else:  # a source that keeps ending at once is not hammered
                    log.warning("%s: %s; reconnecting in %.1f s", self.name, reason, wait)
                    self._stop.wait(wait)
                    wait = min(wait * 2, self.reconnect_max_s)
        if lost_at is not None:
            self._gap(lost_at, reason or "stopped while disconnected")

    def _gap(self, lost_at: datetime, reason: str) -> None:
        gap = StreamGap(lost_at, datetime.now(UTC), reason)
        self.gaps.append(gap)
        if self.on_gap is not None:
            self.on_gap(gap)


class NewestFrames:
    """A live source read on its own thread, handing out only the newest frame: analysis that falls behind skips
    frames (counted in ``dropped``) instead of queueing them, so it never lags the stream by more than one frame.

    ``max_fps`` caps how often a frame is handed out (spare CPU stays free for other streams).
    """

    def __init__(self, source: VideoStream, *, max_fps: float | None = None) -> None:
        self.source = source
        self.name = source.name
        self.live = True
        self.stats = source.stats
        self.min_interval = 1.0 / max_fps if max_fps else 0.0
        self.dropped = 0
        self._newest: Frame | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._ready = threading.Condition()

    @property
    def fps(self) -> float:
        return self.source.fps

    def stop(self) -> None:
        self.source.stop()

    def _read(self) -> None:
        try:
            for frame in self.source.frames():
                with self._ready:
                    if self._newest is not None:
                        self.dropped += 1
                    self._newest = frame
                    self._ready.notify()
        except BaseException as exc:  # handed to the consumer, which raises it
            self._error = exc
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify()

    def frames(self) -> Iterator[Frame]:
        reader = threading.Thread(target=self._read, name=f"visage-read-{self.name}", daemon=True)
        reader.start()
        handed = 0.0
        try:
            while True:
                pause = handed + self.min_interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                with self._ready:
                    while self._newest is None and not self._ended:
                        self._ready.wait(0.5)
                    frame, self._newest = self._newest, None
                    if frame is None:  # ended with nothing left
                        break
                handed = time.monotonic()
                yield frame
        finally:
            self.source.stop()
            reader.join(timeout=30)
        if self._error is not None:
            raise self._error


class ImageFolder:
    """Images of a folder in name order, as frames ``1 / fps`` seconds apart; unreadable images are skipped."""

    live = False

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
            yield Frame(index, seconds, self.start + timedelta(seconds=seconds), still(image))
            index += 1


def is_stream(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


def open_source(location: str | Path, *, fps: float | None = None, max_side: int | None = None) -> FrameSource:
    """A folder of images (at ``fps``, default 1), a video file or a stream URL, by what ``location`` is."""
    if is_stream(location):
        return VideoStream(str(location), max_side=max_side)
    path = Path(location)
    if path.is_dir():
        return ImageFolder(path, fps=fps or 1.0)
    return VideoFile(path, max_side=max_side)
