"""Runs inside the peer environment (.venv-bench): the naive way to process video with `face_recognition`.

Usage: python peer_face_recognition_video.py FRAMES_DIR OUT.json
Every frame (PNG, in name order): HOG detection with one upsample (the package default) and an
encoding of every face found. Prints nothing; writes seconds spent (decoding the PNGs excluded)
and faces found per frame.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import face_recognition


def main() -> None:
    frames_dir, output = Path(sys.argv[1]), Path(sys.argv[2])
    spent, faces = 0.0, []
    for path in sorted(frames_dir.glob("*.png")):
        image = face_recognition.load_image_file(str(path))
        started = time.perf_counter()
        boxes = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
        face_recognition.face_encodings(image, known_face_locations=boxes)
        spent += time.perf_counter() - started
        faces.append(len(boxes))
    output.write_text(json.dumps({"seconds": spent, "faces": faces}))


if __name__ == "__main__":
    main()
