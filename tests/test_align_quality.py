from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from visage.align import ARCFACE_TEMPLATE_112, complete_mouth, landmarks_in_box, similarity_transform
from visage.config import QualitySettings
from visage.quality import assess, pose_measures


@settings(max_examples=50, deadline=None)
@given(
    angle=st.floats(-np.pi, np.pi),
    scale=st.floats(0.2, 5.0),
    tx=st.floats(-500, 500),
    ty=st.floats(-500, 500),
)
def test_similarity_transform_recovers_a_known_transform(angle: float, scale: float, tx: float, ty: float) -> None:
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    dst = src @ rotation.T + [tx, ty]
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(src @ matrix[:, :2].T + matrix[:, 2], dst, atol=1e-6 * max(1.0, scale * 100))


def test_complete_mouth_matches_template() -> None:
    shifted = ARCFACE_TEMPLATE_112 * 2 + 10
    np.testing.assert_allclose(complete_mouth(shifted[:3]), shifted, atol=1e-3)


def test_landmarks_in_box_are_inside_it() -> None:
    marks = landmarks_in_box(np.array([[100, 50, 200, 170]], np.float32))[0]
    assert (marks[:, 0] > 100).all() and (marks[:, 0] < 200).all()
    assert (marks[:, 1] > 50).all() and (marks[:, 1] < 170).all()
    assert marks[0, 0] < marks[1, 0] and marks[2, 1] < marks[3, 1]


def test_pose_frontal_versus_turned() -> None:
    _, yaw, pitch = pose_measures(ARCFACE_TEMPLATE_112)
    assert abs(yaw) < 0.05 and abs(pitch) < 0.05
    turned = ARCFACE_TEMPLATE_112.copy()
    turned[2, 0] = turned[1, 0] - 2  # nose almost under the right eye: a strong yaw
    assert pose_measures(turned)[1] > 0.4
    # Roll alone must not count as yaw.
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    _, rolled_yaw, rolled_pitch = pose_measures(ARCFACE_TEMPLATE_112 @ rotation.T)
    assert abs(rolled_yaw) < 0.05 and abs(rolled_pitch) < 0.05


def _chip(astronaut_face: np.ndarray) -> np.ndarray:
    return cv2.resize(astronaut_face, (112, 112))


def test_quality_reasons(astronaut_face: np.ndarray) -> None:
    config = QualitySettings()
    chip = _chip(astronaut_face)
    big = ARCFACE_TEMPLATE_112 * 2
    scores, reasons, _ = assess(big[None], chip[None], config)
    assert reasons[0] == () and scores[0] > 0.8

    blurred = cv2.GaussianBlur(chip, (0, 0), 4)
    dark = (chip * 0.1).astype(np.uint8)
    bright = np.clip(chip.astype(int) + 200, 0, 255).astype(np.uint8)
    small = ARCFACE_TEMPLATE_112 * 0.3
    turned = big.copy()
    turned[2, 0] = turned[1, 0]
    scores, reasons, measures = assess(
        np.stack([big, big, big, small, turned]), np.stack([blurred, dark, bright, chip, chip]), config
    )
    assert "blurred" in reasons[0]
    assert "underexposed" in reasons[1]
    assert "overexposed" in reasons[2]
    assert "too_small" in reasons[3]
    assert "strong_yaw" in reasons[4]
    assert (scores < 0.6).all()
    assert measures[0]["sharpness"] < measures[1]["sharpness"] or "blurred" not in reasons[1]
