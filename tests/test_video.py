"""Video sources (files, image folders, damaged input) and face tracking across frames."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from visage import FaceAnalyzer
from visage.errors import ImageError, InvalidInputError
from visage.models.nms import iou_matrix
from visage.video.scanner import BEST_SHOTS, VideoScanner
from visage.video.sources import Frame, ImageFolder, SourceStats, VideoFile, open_source, still
from visage.video.tracking import Tracker

from .conftest import shared_path


def encode_clip(path: Path, source: object, *, fps: int = 10, container_format: str | None = None,
                options: dict[str, str] | None = None) -> tuple[int, int]:
    """Encode a synthetic source's frames as H.264 (cropped to even sizes); returns the (width, height) written."""
    frames = list(source.frames())  # type: ignore[attr-defined]
    height, width = frames[0].image.shape[0] // 2 * 2, frames[0].image.shape[1] // 2 * 2
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            image = np.ascontiguousarray(frame.image[:height, :width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return width, height


def write_video(path: Path, frames: int, fps: int = 10, size: tuple[int, int] = (64, 48)) -> None:
    """A small H.264 file whose frame i is filled with grey level 4·i (to check order)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size[1], size[0], 3), 4 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_video_file_yields_every_frame_in_order_with_stream_times(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, 30)
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    source = VideoFile(path, start=start)
    assert source.fps == 10 and source.size == (64, 48)
    frames = list(source.frames())
    assert [f.index for f in frames] == list(range(30))
    assert np.allclose([f.seconds for f in frames], np.arange(30) / 10, atol=1e-6)
    assert frames[-1].wall == datetime(2026, 11, 24, 9, 0, 2, 900000, tzinfo=UTC)
    levels = [float(f.image.mean()) for f in frames]
    assert levels == sorted(levels) and frames[0].image.shape == (48, 64, 3)
    assert source.stats.decoded == 30 and source.stats.corrupt == 0


def test_bad_video_input_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as missing:
        VideoFile(tmp_path / "nothing.mp4")
    assert missing.value.code == "file_not_found"
    (tmp_path / "junk.mp4").write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(ImageError) as junk:
        VideoFile(tmp_path / "junk.mp4")
    assert junk.value.code == "unsupported_video" and "junk.mp4" in junk.value.message
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ImageError):
        VideoFile(tmp_path / "empty.mp4")


def test_a_damaged_video_never_stops_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, 60, size=(128, 96))
    data = bytearray(path.read_bytes())
    stretch = len(data) // 3  # inside the coded frames (the index, "moov", is written at the end)
    data[stretch:stretch + 300] = bytes(300)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    source = VideoFile(damaged)
    frames = list(source.frames())  # never raises
    assert 0 < len(frames) <= 60 and source.stats.decoded == len(frames)


def test_a_video_cut_off_midway_gives_the_frames_before_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"  # a streaming container: readable without its end
    write_video(path, 60, size=(128, 96))
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    source = VideoFile(cut)
    frames = list(source.frames())
    assert 0 < len(frames) < 60 and [f.index for f in frames] == list(range(len(frames)))


def test_an_image_folder_is_a_source_and_unreadable_images_are_skipped(tmp_path: Path,
                                                                       astronaut_bytes: bytes) -> None:
    for name in ("a.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(astronaut_bytes)
    (tmp_path / "b.jpg").write_bytes(astronaut_bytes[:500])  # truncated
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(tmp_path, fps=2)
    assert isinstance(source, ImageFolder)
    frames = list(source.frames())
    assert [f.index for f in frames] == [0, 1] and [f.seconds for f in frames] == [0.0, 1.0]
    assert source.stats.corrupt == 1 and source.stats.decoded == 2
    with pytest.raises(InvalidInputError) as empty:
        ImageFolder(tmp_path / "nowhere")
    assert empty.value.code == "file_not_found"


def test_the_shared_stage_clip_decodes_at_its_frame_rate() -> None:
    source = VideoFile(shared_path("video", "short_hamilton_clip.mp4"))
    assert abs(source.fps - 29.97) < 0.01 and source.size == (640, 360)
    frames = list(source.frames())
    assert len(frames) == source.frame_count == 275 and source.stats.corrupt == 0
    assert abs(frames[-1].seconds - 274 / 29.97) < 0.01


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]])
    expected = np.array([[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]])
    assert np.allclose(iou_matrix(a, b), expected)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_tracks_survive_crossing_and_short_misses_and_end_after_the_gap() -> None:
    tracker = Tracker(min_iou=0.3, max_gap_s=0.5)
    fps = 10
    ids: dict[str, set[int]] = {"left": set(), "right": set()}
    for i in range(40):
        seconds = i / fps
        walker_left = np.array([10 + 6 * i, 50, 50 + 6 * i, 90], float)  # walks right
        walker_right = np.array([250 - 6 * i, 52, 290 - 6 * i, 92], float)  # walks left, crossing the other
        boxes, names = [], []
        if not 15 <= i < 18:  # the left walker is missed for three frames (0.3 s)
            boxes.append(walker_left)
            names.append("left")
        boxes.append(walker_right)
        names.append("right")
        for name, track_id in zip(names, tracker.update(i, seconds, np.array(boxes)), strict=True):
            ids[name].add(track_id)
        assert tracker.finished(seconds) == []
    assert len(ids["left"]) == 1 and len(ids["right"]) == 1 and ids["left"] != ids["right"]
    # Nobody for longer than the gap: both tracks end, with their first and last sightings.
    ended = tracker.finished(39 / fps + 0.6)
    assert [t.id for t in ended] == sorted(ids["left"] | ids["right"])
    left = next(t for t in ended if t.id in ids["left"])
    assert (left.first_index, left.last_index, left.hits) == (0, 39, 37)
    assert tracker.update(50, 5.0, np.array([[10, 50, 50, 90]]))[0] not in ids["left"] | ids["right"]
    assert [t.first_index for t in tracker.flush()] == [50] and tracker.active == []


class MovingFace:
    """A synthetic source: the astronaut's face walking across a grey stage, absent for a few frames."""

    fps = 10.0
    live = False

    def __init__(self, face: np.ndarray, frames: int = 24, hidden: range = range(10, 13), *,
                 name: str = "synthetic", start: datetime = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)) -> None:
        self.face, self.count, self.hidden = face, frames, hidden
        self.name, self.start = name, start
        self.stats = SourceStats()

    def frames(self) -> Iterator[Frame]:
        start = self.start
        height, width = self.face.shape[:2]
        for i in range(self.count):
            stage = np.full((height + 80, width + 8 * self.count + 80, 3), 128, np.uint8)
            if i not in self.hidden:
                stage[40:40 + height, 40 + 8 * i:40 + 8 * i + width] = self.face
            self.stats.decoded += 1
            yield Frame(i, i / self.fps, start + timedelta(seconds=i / self.fps), still(stage))


def test_a_face_walking_past_becomes_one_sighting(analyzer: FaceAnalyzer, astronaut_face: np.ndarray) -> None:
    seen_ids: list[list[int]] = []
    scanner = VideoScanner(analyzer, detect_every=2, max_gap_s=1.0)
    [sighting] = list(scanner.scan(MovingFace(astronaut_face), on_frame=lambda f, ids, boxes: seen_ids.append(ids)))
    assert len(seen_ids) == 12 and {tuple(ids) for ids in seen_ids if ids} == {(1,)}  # one track through the gap
    assert sighting.track_id == 1 and sighting.start_seconds == 0.0 and sighting.end_seconds == 2.2
    assert sighting.frames == 10 and sighting.start_wall < sighting.end_wall  # 12 analysed frames, 2 hidden
    assert sighting.best_quality > 0.5 and sighting.best_frame % 2 == 0 and BEST_SHOTS == 3
    assert sighting.embedding is not None and abs(float(np.linalg.norm(sighting.embedding)) - 1) < 1e-5
    reference = analyzer.analyze(astronaut_face, faces="largest").embeddings[0]
    assert float(sighting.embedding @ reference) > 0.95


def test_the_stage_clip_gives_sightings_with_embeddings(analyzer: FaceAnalyzer) -> None:
    source = VideoFile(shared_path("video", "short_hamilton_clip.mp4"))
    sightings = list(VideoScanner(analyzer, detect_every=3).scan(source))
    assert len(sightings) >= 5
    assert all(s.embedding is not None and s.frames >= 2 and s.start_seconds <= s.end_seconds for s in sightings)
    assert all(0 <= s.best_box[0] < s.best_box[2] <= 640 and 0 <= s.best_box[1] < s.best_box[3] <= 360
               for s in sightings)
    assert max(s.end_seconds - s.start_seconds for s in sightings) > 5  # someone stays on stage for most of the clip


def test_video_scan_cli_names_who_walked_past(tmp_path: Path, astronaut: np.ndarray,
                                              astronaut_face: np.ndarray) -> None:
    import json

    from .test_cli import visage

    clip = tmp_path / "walk.mp4"
    source = MovingFace(astronaut_face, frames=30, hidden=range(12, 14))
    width, height = encode_clip(clip, source)
    data = tmp_path / "data"
    photo = tmp_path / "eileen.jpg"
    Image.fromarray(astronaut).save(photo)
    visage("gallery", "create", "crew", "--basis", "contract", "--justification", "crew badge photos",
           env_data_dir=data)
    visage("enroll", "crew", "eileen", str(photo), "--name", "Eileen Collins", env_data_dir=data)
    report, annotated = tmp_path / "sightings.json", tmp_path / "annotated.mp4"
    printed = visage("video", "scan", str(clip), "--gallery", "crew", "--report", str(report), "--out",
                     str(annotated), env_data_dir=data)
    document = json.loads(report.read_text())
    [sighting] = document["sightings"]
    assert document["frames"] == 30 and document["corrupt_frames"] == 0
    assert sighting["external_id"] == "eileen" and sighting["similarity"] > 0.9 and sighting["start_seconds"] == 0.0
    assert "eileen" in printed.stdout and "1 sighting(s) in 30 frames" in printed.stderr
    drawn = list(VideoFile(annotated).frames())
    assert len(drawn) == 10 and drawn[-1].seconds == pytest.approx(2.7, abs=0.05)  # every 3rd frame, real time
    original = list(source.frames())[15].image[:height, :width].astype(int)
    changed = np.abs(drawn[5].image.astype(int) - original).max(axis=2) > 60
    assert 200 < changed.sum() < changed.size / 4  # a box and its label drawn over the frame, the rest unchanged

    listed = json.loads(visage("sightings", "list", "--json", env_data_dir=data).stdout)
    assert [s["external_id"] for s in listed["sightings"]] == ["eileen"]
    found = json.loads(visage("sightings", "search", str(photo), "--purpose", "test", "--json",
                              env_data_dir=data).stdout)
    assert [h["id"] for h in found["hits"]] == [listed["sightings"][0]["id"]]
    refused = visage("sightings", "search", str(photo), check=False, env_data_dir=data)
    assert refused.returncode == 2 and "purpose_required" in refused.stderr
    neither = visage("sightings", "search", "--purpose", "test", check=False, env_data_dir=data)
    assert neither.returncode == 2 and "invalid_query" in neither.stderr and "Traceback" not in neither.stderr
    missing = visage("video", "scan", str(tmp_path / "none.mp4"), check=False, env_data_dir=data)
    assert missing.returncode == 2 and "file_not_found" in missing.stderr and "Traceback" not in missing.stderr
    audit = visage("report", "--json", env_data_dir=data).stdout
    assert '"video.scan"' in audit  # the gallery search is audited
