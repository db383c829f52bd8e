"""dlib's 5-point shape predictor: landmarks and the 150x150 chip dlib's ResNet expects."""

from __future__ import annotations

import threading

import dlib
import numpy as np

from visage.align import VIEW_SHIFTS, complete_mouth
from visage.models.weights import verified_path
from visage.types import FloatArray

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def to_rectangle(box: np.ndarray, width: int, height: int) -> dlib.rectangle:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    x1, y1 = max(0, min(x1, width - 1)), max(0, min(y1, height - 1))
    return dlib.rectangle(x1, y1, max(x1 + 1, min(x2, width)), max(y1 + 1, min(y2, height)))


class DlibFivePoint:
    """Wraps ``shape_predictor_5_face_landmarks.dat``. dlib objects are not re-entrant: calls are locked."""

    def __init__(self) -> None:
        path, self.model = verified_path("dlib_shape_predictor_5")
        self._predictor = dlib.shape_predictor(str(path))
        self._lock = threading.Lock()

    def shapes(self, image: np.ndarray, boxes: FloatArray) -> list[dlib.full_object_detection]:
        height, width = image.shape[:2]
        with self._lock:
            return [self._predictor(image, to_rectangle(box, width, height)) for box in boxes]

    @staticmethod
    def standard_landmarks(shape: dlib.full_object_detection) -> FloatArray:
        """dlib's points (two corners per eye, nose base) → the library's 5-point order.

        Mouth corners are estimated from the template geometry (dlib's model has none).
        """
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float32)
        eye_a, eye_b = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
        left, right = (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)
        return complete_mouth(np.stack([left, right, pts[4]]))


def hog_style_boxes(landmarks: FloatArray) -> FloatArray:
    """Square boxes placed the way dlib's HOG detector frames a face, computed from five landmarks.

    dlib's 5-point predictor was trained on HOG detector boxes; other detectors frame
    faces differently (CenterFace's boxes are taller). Regressed on 297 LFW faces found
    by both detectors: side = 0.456 * eye distance + 1.942 * eye-to-mouth distance,
    centre 0.077 / 0.067 eye distances left of / above the eyes-mouth midpoint.
    """
    pts = np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2)
    eyes = (pts[:, 0] + pts[:, 1]) / 2
    mouth = (pts[:, 3] + pts[:, 4]) / 2
    interocular = np.linalg.norm(pts[:, 1] - pts[:, 0], axis=1)
    eye_mouth = np.linalg.norm(mouth - eyes, axis=1)
    side = 0.456 * interocular + 1.942 * eye_mouth
    centre = (eyes + mouth) / 2 - np.stack([0.077 * interocular, 0.067 * interocular], axis=1)
    half = side[:, None] / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


class DlibChipAligner:
    """Box → 5-point shape → dlib's own chip extraction (150x150, padding 0.25).

    Using dlib's chip geometry keeps chips identical to what the ResNet was trained on;
    ``box_source="landmarks"`` feeds the predictor boxes framed like the ones it was trained on.
    With ``views="multi"`` each face is also cut from the other box source and at four
    positions shifted by :data:`visage.align.VIEW_SHIFT` of the chip side, ten chips in all (view 0 is
    the canonical chip); averaging their embeddings evens out landmark noise.
    """

    chip_size = CHIP_SIZE

    def __init__(
        self,
        five_point: DlibFivePoint | None = None,
        padding: float = CHIP_PADDING,
        box_source: str = "detector",
        views: str = "single",
    ) -> None:
        self.five_point = five_point or DlibFivePoint()
        self.padding = padding
        self.box_source = box_source
        self.views = views

    def align(self, image: np.ndarray, boxes: FloatArray, landmarks: FloatArray) -> np.ndarray:
        return self.align_views(image, boxes, landmarks)[:, 0]

    def align_views(self, image: np.ndarray, boxes: FloatArray, landmarks: FloatArray) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, 1, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        framed = hog_style_boxes(landmarks)
        sources = [framed, boxes] if self.box_source == "landmarks" else [boxes, framed]
        if self.views == "single":
            sources = sources[:1]
        shifts = VIEW_SHIFTS if self.views == "multi" else VIEW_SHIFTS[:1]
        per_source = [self.five_point.shapes(image, source) for source in sources]
        details = [
            shifted_chip(dlib.get_face_chip_details(shapes[face], CHIP_SIZE, self.padding), dx, dy)
            for face in range(len(boxes))
            for shapes in per_source
            for dx, dy in shifts
        ]
        chips = dlib.extract_image_chips(image, details)
        views = len(sources) * len(shifts)
        return np.stack([np.asarray(c, dtype=np.uint8) for c in chips]).reshape(
            len(boxes), views, CHIP_SIZE, CHIP_SIZE, 3
        )


def shifted_chip(details: dlib.chip_details, dx: float, dy: float) -> dlib.chip_details:
    """The same chip moved by ``dx``/``dy`` of its side (rotation and size kept)."""
    if dx == 0 and dy == 0:
        return details
    rect = details.rect
    side_x, side_y = rect.right() - rect.left(), rect.bottom() - rect.top()
    moved = dlib.drectangle(rect.left() + dx * side_x, rect.top() + dy * side_y,
                            rect.right() + dx * side_x, rect.bottom() + dy * side_y)
    return dlib.chip_details(moved, dlib.chip_dims(details.rows, details.cols), details.angle)
