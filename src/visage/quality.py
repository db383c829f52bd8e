"""Face quality: one score in [0, 1] plus the reasons it is low.

Four independent measures, each mapped to a sub-score by a linear ramp around
its configured limit (full marks well inside, 0.5 at the limit, 0 well beyond),
multiplied together so any single defect pulls the score down:

* **size** — eye-centre distance in original pixels (``too_small``);
* **sharpness** — contrast-normalised Laplacian energy of the aligned chip,
  resampled to 112 px so the number means the same for every aligner (``blurred``);
* **pose** — yaw and pitch proxies from the five landmarks after removing roll
  (``strong_yaw``, ``strong_pitch``);
* **exposure** — mean brightness of the chip's centre (``underexposed``, ``overexposed``).

The score gates enrolment and picks video best shots; the reasons tell a person why.
"""

from __future__ import annotations

import cv2
import numpy as np

from visage.config import QualitySettings
from visage.types import FloatArray

_MEASURE_SIZE = 112
_FRONTAL_NOSE_RATIO = 0.49
"""Nose height between eye line and mouth line on a frontal face (ArcFace template)."""


def _ramp_up(value: float, limit: float) -> float:
    """0 at half the limit, 0.5 at the limit, 1 at 1.5x the limit."""
    return float(np.clip((value - 0.5 * limit) / limit, 0.0, 1.0))


def _ramp_down(value: float, limit: float) -> float:
    """1 up to half the limit, 0.5 at the limit, 0 at 1.5x the limit."""
    return float(np.clip(1.0 - (value - 0.5 * limit) / limit, 0.0, 1.0))


def pose_measures(landmarks: np.ndarray) -> tuple[float, float, float]:
    """``(interocular, yaw, pitch)`` from five landmarks; yaw/pitch are dimensionless, 0 = frontal."""
    pts = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = pts[0], pts[1]
    delta = eye_right - eye_left
    interocular = float(np.hypot(*delta))
    if interocular < 1e-6:
        return 0.0, 1.0, 1.0
    cos, sin = delta / interocular
    rotation = np.array([[cos, sin], [-sin, cos]])  # undo roll: eye line becomes horizontal
    mid_eyes = (eye_left + eye_right) / 2
    local = (pts - mid_eyes) @ rotation.T
    nose, mouth_mid = local[2], (local[3] + local[4]) / 2
    yaw = float(nose[0] / interocular)
    eye_to_mouth = mouth_mid[1]
    pitch = float(nose[1] / eye_to_mouth - _FRONTAL_NOSE_RATIO) if eye_to_mouth > 1e-6 else 1.0
    return interocular, yaw, pitch


def chip_measures(chip: np.ndarray) -> tuple[float, float]:
    """``(sharpness, brightness)`` of an aligned chip; brightness in [0, 1]."""
    gray = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (_MEASURE_SIZE, _MEASURE_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    margin = _MEASURE_SIZE // 5
    centre = gray[margin:-margin, margin:-margin]
    laplacian = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)[margin:-margin, margin:-margin]
    contrast = float(centre.std())
    sharpness = float(laplacian.std() / (contrast + 8.0))
    return sharpness, float(centre.mean() / 255.0)


def assess(
    landmarks: FloatArray, chips: np.ndarray, settings: QualitySettings
) -> tuple[FloatArray, tuple[tuple[str, ...], ...], tuple[dict[str, float], ...]]:
    """Quality of each face: ``(scores, reasons, measures)``, one entry per face."""
    scores = np.zeros(len(landmarks), np.float32)
    all_reasons: list[tuple[str, ...]] = []
    all_measures: list[dict[str, float]] = []
    for i, (points, chip) in enumerate(zip(landmarks, chips, strict=True)):
        interocular, yaw, pitch = pose_measures(points)
        sharpness, brightness = chip_measures(chip)
        reasons: list[str] = []
        if interocular < settings.min_interocular:
            reasons.append("too_small")
        if sharpness < settings.min_sharpness:
            reasons.append("blurred")
        if abs(yaw) > settings.max_yaw:
            reasons.append("strong_yaw")
        if abs(pitch) > settings.max_pitch:
            reasons.append("strong_pitch")
        if brightness < settings.min_brightness:
            reasons.append("underexposed")
        if brightness > settings.max_brightness:
            reasons.append("overexposed")
        overshoot = max(settings.min_brightness - brightness, brightness - settings.max_brightness, 0.0)
        exposure = float(np.clip(1.0 - overshoot * 5, 0, 1))
        score = (
            _ramp_up(interocular, settings.min_interocular)
            * _ramp_up(sharpness, settings.min_sharpness)
            * _ramp_down(abs(yaw), settings.max_yaw)
            * _ramp_down(abs(pitch), settings.max_pitch)
            * (exposure if not ({"underexposed", "overexposed"} & set(reasons)) else min(exposure, 0.5))
        )
        scores[i] = score
        all_reasons.append(tuple(reasons))
        all_measures.append(
            {"interocular": interocular, "sharpness": sharpness, "yaw": yaw, "pitch": pitch, "brightness": brightness}
        )
    return scores, tuple(all_reasons), tuple(all_measures)
