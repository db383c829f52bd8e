"""Video throughput and tracking quality on the shared stage clip: Visage's scan vs the naive `face_recognition` loop.

    make bench-env && .venv/bin/python benchmarks/bench_video.py [--every N] [--views single] [--clip PATH]

Visage: `VideoScanner` with the shipped video settings (detection with quality on every N-th
frame, shrunk to the smallest face followed; tracking; three best shots per track embedded),
decoding included, models warm. The same clip upscaled to 1920×1080 by FFmpeg (Debian's
`ffmpeg`) is timed too. Peer: every frame through `face_recognition` (HOG detection, then an
encoding of every face), PNG decoding excluded, in its own environment (.venv-bench).

Identity switches (no ground truth ships with the clip, so they are measured by face): after
the timed run, every other analysed frame is analysed again in full (detection + embedding) and
each track's box matched to its face there; a track's consecutive samples of usable quality
that are not the same person at fmr=1e-3 count as one switch (a track that jumped from one
person to another). Untimed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from visage import FaceAnalyzer, Settings
from visage.config import VideoSettings
from visage.models.nms import iou_matrix
from visage.video.scanner import VideoScanner
from visage.video.sources import Frame, VideoFile

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "short_hamilton_clip.mp4"
PEER = Path(__file__).with_name("peer_face_recognition_video.py")
SAMPLE_EVERY = 2  # analysed frames between identity samples
MIN_SAMPLE_QUALITY = 0.5


def timed_scan(analyzer: FaceAnalyzer, clip: Path, every: int, *, samples: list[tuple[Frame, list[int], np.ndarray]]
               | None = None) -> tuple[float, int, VideoFile]:
    """Seconds and sightings of one scan; ``samples`` collects every SAMPLE_EVERY-th analysed frame with its tracks."""
    source = VideoFile(clip, max_side=VideoSettings().frame_max_side)
    analysed = 0

    def keep(frame: Frame, track_ids: list[int], boxes: np.ndarray) -> None:
        nonlocal analysed
        if samples is not None and analysed % SAMPLE_EVERY == 0 and track_ids:
            samples.append((frame, list(track_ids), boxes.copy()))
        analysed += 1

    started = time.perf_counter()
    scanner = VideoScanner.from_settings(analyzer, VideoSettings(), detect_every=every)
    sightings = list(scanner.scan(source, on_frame=keep))
    return time.perf_counter() - started, len(sightings), source


def identity_switches(analyzer: FaceAnalyzer, samples: list[tuple[Frame, list[int], np.ndarray]]) -> tuple[int, int]:
    """Switches (consecutive usable samples of a track that are different people) and samples compared."""
    threshold = analyzer.decision_threshold("fmr=1e-3").value
    per_track: dict[int, list[np.ndarray]] = defaultdict(list)
    for frame, track_ids, boxes in samples:
        faces = analyzer.analyze(frame.image)
        if len(faces) == 0 or faces.embeddings is None:
            continue
        overlap = iou_matrix(boxes.astype(np.float64), faces.boxes.astype(np.float64))
        for row, track_id in enumerate(track_ids):
            column = int(np.argmax(overlap[row]))
            if overlap[row, column] >= 0.5 and faces.quality[column] >= MIN_SAMPLE_QUALITY:
                per_track[track_id].append(faces.embeddings[column])
    switches = compared = 0
    for embeddings in per_track.values():
        for before, after in itertools.pairwise(embeddings):
            compared += 1
            switches += float(before @ after) < threshold
    return switches, compared


def peer_seconds(clip: Path, peer_python: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        for frame in VideoFile(clip).frames():
            Image.fromarray(frame.image).save(Path(tmp) / f"{frame.index:06d}.png")
        result = Path(tmp) / "peer.json"
        subprocess.run([peer_python, str(PEER), tmp, str(result)], check=True)
        peer = json.loads(result.read_text())
    return float(peer["seconds"]), int(sum(peer["faces"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--every", type=int, default=VideoSettings().detect_every)
    parser.add_argument("--views", default="single")
    parser.add_argument("--peer-python", default=str(Path(__file__).resolve().parents[1] / ".venv-bench/bin/python"))
    args = parser.parse_args()

    analyzer = FaceAnalyzer(Settings(embedding={"views": args.views}))
    analyzer.analyze(next(iter(VideoFile(args.clip).frames())).image)  # models loaded and warm before timing
    samples: list[tuple[Frame, list[int], np.ndarray]] = []
    visage_s, sightings, source = timed_scan(analyzer, args.clip, args.every, samples=samples)
    duration = source.duration_s
    rows = [(f"Visage scan, {source.size[0]}x{source.size[1]} (detection every {args.every} frames, {args.views} view)",
             visage_s, f"{sightings} sightings")]
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.which("ffmpeg"):
            upscaled = Path(tmp) / "clip-1080p.mp4"
            subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(args.clip), "-vf", "scale=1920:1080",
                            "-c:v", "libx264", "-preset", "fast", "-crf", "18", str(upscaled)], check=True)
            big_s, big_sightings, big = timed_scan(analyzer, upscaled, args.every)
            rows.append((f"Visage scan, 1920x1080 upscale (tracked at {big.size[0]}x{big.size[1]})", big_s,
                         f"{big_sightings} sightings"))
    switches, compared = identity_switches(analyzer, samples)
    peer_s, peer_faces = peer_seconds(args.clip, args.peer_python)
    rows.append(("face_recognition, every frame (HOG + encodings)", peer_s, f"{peer_faces} face-frames"))

    print(f"clip: {args.clip.name}, {source.frame_count} frames, {duration:.2f} s at {source.fps:.2f} fps")
    print(f"{'system':62s} {'seconds':>8s} {'x real time':>12s} {'found':>18s}")
    for name, seconds, found in rows:
        print(f"{name:62s} {seconds:8.2f} {duration / seconds:12.2f} {found:>18s}")
    print(f"speed ratio Visage / face_recognition (640x360): {peer_s / visage_s:.1f}x")
    print(f"identity switches: {switches} in {compared} consecutive same-track samples "
          f"(limit frames/30 = {source.frame_count / 30:.0f})")


if __name__ == "__main__":
    main()
