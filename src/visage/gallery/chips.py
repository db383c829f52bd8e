"""Face chips: the face with a margin of context, kept (sealed) by galleries that opt in.

A new embedding model usually wants its own alignment (dlib's 150-pixel chip, ArcFace's
112-pixel one), so what is kept is not one model's aligned chip but the face box widened by
:data:`MARGIN` of its size on every side, at most :data:`MAX_SIDE` pixels, lossless (PNG): any
model's detector and aligner find the face in it again. That is far less than the photo (no
background, no other people) and it is encrypted like the templates.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MARGIN = 0.6  # of the box's side, on each side
MAX_SIDE = 320


def face_chip(image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray) -> bytes:
    """PNG bytes of the face in ``image`` (RGB uint8) with its margin, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    left = max(0, int(np.floor(x1 - MARGIN * width)))
    top = max(0, int(np.floor(y1 - MARGIN * height)))
    right = min(image.shape[1], int(np.ceil(x2 + MARGIN * width)))
    bottom = min(image.shape[0], int(np.ceil(y2 + MARGIN * height)))
    crop = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    scale = MAX_SIDE / max(crop.size)
    if scale < 1:
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crop = crop.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    crop.save(buffer, format="PNG")
    return buffer.getvalue()


def chip_centre(chip: np.ndarray) -> tuple[float, float]:
    """Where the kept face is: the chip was cut around it (off-centre only where the photo's edge clipped it)."""
    return chip.shape[1] / 2, chip.shape[0] / 2
