"""Video throughput on the shared stage clip: Visage's scan vs the naive `face_recognition` loop, same frames.

    make bench-env && .venv/bin/python benchmarks/bench_video.py [--every 3] [--views single] [--clip PATH]

Visage: `VideoScanner` (detection with quality on every N-th frame, tracking, three best shots
embedded per track), decoding included. Peer: every frame through `face_recognition` (HOG
detection, then an encoding of every face), PNG decoding excluded, in its own environment
(.venv-bench). Prints seconds, multiple of real time, faces/sightings found, and the ratio.
Identity switches need annotated tracks and are not measured yet.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from PIL import Image

from visage import FaceAnalyzer, Settings
from visage.video.scanner import VideoScanner
from visage.video.sources import VideoFile

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "short_hamilton_clip.mp4"
PEER = Path(__file__).with_name("peer_face_recognition_video.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--views", default="single")
    parser.add_argument("--peer-python", default=str(Path(__file__).resolve().parents[1] / ".venv-bench/bin/python"))
    args = parser.parse_args()

    source = VideoFile(args.clip)
    analyzer = FaceAnalyzer(Settings(embedding={"views": args.views}))
    analyzer.analyze(next(iter(source.frames())).image)  # models loaded and warm before timing
    started = time.perf_counter()
    sightings = list(VideoScanner(analyzer, detect_every=args.every).scan(source))
    visage_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        for frame in VideoFile(args.clip).frames():
            Image.fromarray(frame.image).save(Path(tmp) / f"{frame.index:06d}.png")
        result = Path(tmp) / "peer.json"
        subprocess.run([args.peer_python, str(PEER), tmp, str(result)], check=True)
        peer = json.loads(result.read_text())

    duration = source.duration_s
    print(f"clip: {args.clip.name}, {source.size[0]}x{source.size[1]}, {source.frame_count} frames, "
          f"{duration:.2f} s at {source.fps:.2f} fps")
    print(f"{'system':52s} {'seconds':>8s} {'x real time':>12s} {'found':>22s}")
    print(f"{f'Visage scan (every {args.every}th frame, {args.views} view)':52s} {visage_s:8.2f} "
          f"{duration / visage_s:12.2f} {len(sightings):>12d} sightings")
    print(f"{'face_recognition, every frame (HOG + encodings)':52s} {peer['seconds']:8.2f} "
          f"{duration / peer['seconds']:12.2f} {sum(peer['faces']):>11d} face-frames")
    print(f"speed ratio Visage / face_recognition: {peer['seconds'] / visage_s:.1f}x")


if __name__ == "__main__":
    main()
