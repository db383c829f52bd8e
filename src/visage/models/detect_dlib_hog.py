"""dlib's HOG + linear SVM frontal face detector: no weights file, light, frontal faces only.

Kept as the classic baseline (it is what ``face_recognition`` uses by default) and
as a fallback that needs nothing but dlib. Landmarks come from the 5-point predictor.
"""

from __future__ import annotations

import math
import threading

import cv2
import dlib
import numpy as np

from visage.config import DetectionSettings
from visage.models.base import Detections
from visage.models.landmarks_dlib import DlibFivePoint
from visage.models.nms import nms
from visage.types import ModelInfo

HOG_WINDOW_PX = 80
"""dlib's HOG detector scans an 80x80 window: smaller faces need upsampling."""


class DlibHogDetector:
    def __init__(self, settings: DetectionSettings | None = None, five_point: DlibFivePoint | None = None) -> None:
        self.settings = settings or DetectionSettings()
        self._detector = dlib.get_frontal_face_detector()
        self._five_point = five_point or DlibFivePoint()
        self._lock = threading.Lock()
        version = dlib.__version__
        self.model = ModelInfo(name="dlib_hog", version=f"dlib=={version}", sha256=f"builtin-dlib-{version}")

    def detect(self, image: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        scale = min(1.0, self.settings.max_side / max(height, width))
        small = image if scale == 1.0 else cv2.resize(
            image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
        )
        smallest = self.settings.min_face_size * scale
        upsample = max(0, min(2, math.ceil(math.log2(HOG_WINDOW_PX / smallest)))) if smallest < HOG_WINDOW_PX else 0
        with self._lock:
            rects, margins, _ = self._detector.run(small, upsample, 0.0)
        if not rects:
            return Detections.empty()
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32) / scale
        # The SVM margin is unbounded; a logistic maps margin 0 to 0.5, the default threshold.
        scores = (1.0 / (1.0 + np.exp(-np.asarray(margins, np.float64)))).astype(np.float32)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = np.flatnonzero((scores >= self.settings.score_threshold) & (sides >= self.settings.min_face_size))
        if keep.size == 0:
            return Detections.empty()
        keep = keep[nms(boxes[keep], scores[keep], self.settings.nms_iou)]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        shapes = self._five_point.shapes(image, boxes[keep])
        landmarks = np.stack([DlibFivePoint.standard_landmarks(s) for s in shapes])
        return Detections(boxes[keep], scores[keep], landmarks)
