"""Runs the `face_recognition` peer in its own environment (.venv-bench) on a list of images."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np


def run_peer(peer_python: str, images: list[Path], workers: int) -> tuple[dict[Path, np.ndarray], int, float]:
    """The peer's encoding of each image, its detection-miss count and the seconds it took."""
    with tempfile.TemporaryDirectory() as tmp:
        listing, output = Path(tmp) / "images.txt", Path(tmp) / "peer.npz"
        listing.write_text("\n".join(str(p) for p in images))
        subprocess.run([peer_python, str(Path(__file__).with_name("peer_face_recognition.py")), str(listing),
                        str(output), str(workers)], check=True)
        data = np.load(output)
        embeddings = dict(zip(images, data["embeddings"], strict=True))
        return embeddings, int(data["misses"].sum()), float(data["seconds"])
