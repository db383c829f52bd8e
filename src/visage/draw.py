"""Draw faces (boxes, landmarks, quality) on an image for people to look at."""

from __future__ import annotations

import cv2
import numpy as np

from visage.types import Faces

_GOOD = (46, 204, 113)
_POOR = (231, 76, 60)
_LANDMARK = (52, 152, 219)


def draw_faces(image: np.ndarray, faces: Faces, *, min_quality: float = 0.5) -> np.ndarray:
    """A copy of ``image`` (RGB) with each face's box, five landmarks and quality score."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for face in faces:
        colour = _GOOD if face.quality.score >= min_quality else _POOR
        x1, y1, x2, y2 = (round(float(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        for x, y in face.landmarks:
            cv2.circle(canvas, (round(float(x)), round(float(y))), thickness + 1, _LANDMARK, -1, cv2.LINE_AA)
        draw_label(canvas, f"q {face.quality.score:.2f}", (x1, y1), colour, thickness)
    return canvas


def draw_label(canvas: np.ndarray, label: str, corner: tuple[int, int], colour: tuple[int, int, int],
               thickness: int, *, scale: float = 0.4) -> None:
    """White text on a ``colour`` band just above ``corner`` (a box's top-left), in place."""
    x1, y1 = corner
    size = scale * thickness
    (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, size, thickness)
    top = max(y1 - h - 4, 0)
    cv2.rectangle(canvas, (x1, top), (x1 + w + 4, top + h + 4), colour, -1)
    cv2.putText(canvas, label, (x1 + 2, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255), thickness,
                cv2.LINE_AA)
