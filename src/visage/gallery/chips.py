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


def face_region(image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray,
                margin: float = MARGIN) -> tuple[np.ndarray, tuple[int, int]]:
    """The face in ``image`` (RGB uint8) with ``margin`` of its size on every side, clipped to the image (a view),
    and the region's top-left corner in the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    left = max(0, int(np.floor(x1 - margin * width)))
    top = max(0, int(np.floor(y1 - margin * height)))
    right = min(image.shape[1], int(np.ceil(x2 + margin * width)))
    bottom = min(image.shape[0], int(np.ceil(y2 + margin * height)))
    return image[top:bottom, left:right], (left, top)


def face_chip(image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray) -> bytes:
    """PNG bytes of the face in ``image`` with its margin, at most :data:`MAX_SIDE` pixels."""
    crop = Image.fromarray(np.ascontiguousarray(face_region(image, box)[0]))
    scale = MAX_SIDE / max(crop.size)
    if scale < 1:
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crop = crop.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    crop.save(buffer, format="PNG")
    return buffer.getvalue()


def nearest_to_centre(boxes: np.ndarray, region: np.ndarray) -> int:
    """Which of ``boxes`` (found again in a region cut around one face) is that face: the one nearest its centre
    (the cut is off-centre only where the photo's edge clipped it)."""
    centres = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2])
    return int(np.argmin(np.hypot(centres[:, 0] - region.shape[1] / 2, centres[:, 1] - region.shape[0] / 2)))
