"""Runs inside the peer environment (.venv-bench): embeds images with the `face_recognition` package.

Usage: python peer_face_recognition.py LIST.txt OUT.npz WORKERS
HOG detector with one upsample (the package default), 5-point landmarks, dlib ResNet encodings.
When no face is found, the central region is used (as Visage does) and counted as a miss.
"""

from __future__ import annotations

import sys
import time
from multiprocessing import Pool

import face_recognition
import numpy as np


def encode(path: str) -> tuple[np.ndarray, bool]:
    image = face_recognition.load_image_file(path)
    height, width = image.shape[:2]
    boxes = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
    missed = not boxes
    if missed:
        side = int(0.44 * min(height, width))
        top, left = (height - side) // 2, (width - side) // 2
        boxes = [(top, left + side, top + side, left)]
    else:  # the face containing the centre, else the largest
        cy, cx = height / 2, width / 2
        inside = [b for b in boxes if b[3] <= cx <= b[1] and b[0] <= cy <= b[2]]
        boxes = [max(inside or boxes, key=lambda b: (b[1] - b[3]) * (b[2] - b[0]))]
    encoding = face_recognition.face_encodings(image, known_face_locations=boxes, model="small")[0]
    return np.asarray(encoding, np.float32), missed


def main() -> None:
    list_file, output, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(list_file, encoding="utf-8") as listing:
        paths = [line for line in listing.read().split("\n") if line]
    started = time.perf_counter()
    with Pool(workers) as pool:
        results = pool.map(encode, paths, chunksize=8)
    seconds = time.perf_counter() - started
    np.savez(output, embeddings=np.stack([r[0] for r in results]), misses=np.array([r[1] for r in results]),
             seconds=np.array(seconds))


if __name__ == "__main__":
    main()
