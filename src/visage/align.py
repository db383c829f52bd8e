"""Geometry shared by aligners and quality: similarity transforms and the 5-point template.

The ArcFace template is the standard 112x112 placement of the five landmarks
used by ArcFace-family ONNX models (InsightFace's convention); matching it is
what makes a user-supplied ArcFace model work without retraining.
"""

from __future__ import annotations

import cv2
import numpy as np

from visage.types import FloatArray

ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``src`` points onto ``dst`` (Umeyama).

    Returns a ``2x3`` matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / len(src)
    scale = (singular * d).sum() / src_var if src_var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


# Multi-view test-time augmentation: each face is also cut 3 % of the chip side left, right, up and down.
# Chosen on LFW View 1 DevTrain among scale, shift and rotation perturbations (see docs/architecture.md).
VIEW_SHIFT = 0.03
VIEW_SHIFTS = ((0.0, 0.0), (VIEW_SHIFT, 0.0), (-VIEW_SHIFT, 0.0), (0.0, VIEW_SHIFT), (0.0, -VIEW_SHIFT))


def warp_chips(image: np.ndarray, landmarks: FloatArray, template: np.ndarray, size: int) -> np.ndarray:
    """Cut one ``size x size`` chip per face by mapping its landmarks onto ``template``."""
    chips = np.empty((len(landmarks), size, size, 3), dtype=np.uint8)
    for i, points in enumerate(landmarks):
        matrix = similarity_transform(points, template)
        chips[i] = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return chips


def landmarks_in_box(boxes: FloatArray) -> FloatArray:
    """Typical landmark positions for upright frontal faces filling ``boxes``.

    Used when only a box is known (e.g. the centre-region fallback in evaluation).
    Positions are the ArcFace template expressed relative to a face box.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    # The ArcFace template spans roughly x 24..88, y 24..112 of a 112 chip for a typical detector box.
    rel = (ARCFACE_TEMPLATE_112 - np.array([20.0, 20.0], np.float32)) / np.array([72.0, 92.0], np.float32)
    widths = (boxes[:, 2] - boxes[:, 0])[:, None, None]
    heights = (boxes[:, 3] - boxes[:, 1])[:, None, None]
    origin = boxes[:, None, :2]
    return (origin + rel[None] * np.concatenate([widths, heights], axis=2)).astype(np.float32)


def complete_mouth(eyes_and_nose: np.ndarray) -> FloatArray:
    """Estimate the two mouth corners from eye centres and nose via the template geometry.

    For landmark sources that give only eyes and nose (dlib's 5-point predictor).
    """
    points = np.asarray(eyes_and_nose, dtype=np.float64).reshape(3, 2)
    matrix = similarity_transform(ARCFACE_TEMPLATE_112[:3], points)
    mouth = ARCFACE_TEMPLATE_112[3:].astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return np.vstack([points, mouth]).astype(np.float32)
