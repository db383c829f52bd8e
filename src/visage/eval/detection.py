"""Detection accuracy against dlib's ``training.xml`` box annotations."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visage.errors import DatasetError
from visage.models.base import Detector
from visage.models.nms import iou_matrix
from visage.pipeline import FaceAnalyzer


def read_dlib_boxes(xml_file: Path) -> dict[Path, np.ndarray]:
    """``{image path: (N, 4) x1, y1, x2, y2 boxes}`` from a dlib imglab XML file."""
    try:
        root = ElementTree.parse(xml_file).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise DatasetError(f"cannot read {xml_file}: {exc}") from None
    annotations: dict[Path, np.ndarray] = {}
    for image in root.iter("image"):
        boxes = [
            [float(b.get("left", 0)), float(b.get("top", 0)),
             float(b.get("left", 0)) + float(b.get("width", 0)), float(b.get("top", 0)) + float(b.get("height", 0))]
            for b in image.iter("box")
            if b.get("ignore") != "1"
        ]
        annotations[xml_file.parent / image.get("file", "")] = np.array(boxes, np.float32).reshape(-1, 4)
    return annotations


@dataclass(frozen=True)
class DetectionReport:
    ground_truth: int
    found: int
    false_positives: int


def match_detections(truth: np.ndarray, found: np.ndarray, iou_threshold: float) -> tuple[int, int]:
    """Greedy one-to-one matching by IoU: ``(true positives, false positives)``."""
    if len(found) == 0:
        return 0, 0
    if len(truth) == 0:
        return 0, len(found)
    overlaps = iou_matrix(truth, found)
    matched = 0
    while overlaps.size and overlaps.max() >= iou_threshold:
        i, j = np.unravel_index(int(overlaps.argmax()), overlaps.shape)
        matched += 1
        overlaps[i, :] = -1
        overlaps[:, j] = -1
    return matched, len(found) - matched


def evaluate_detection(detector: Detector, analyzer: FaceAnalyzer, xml_file: Path, iou: float = 0.4) -> DetectionReport:
    total = found = false_positives = 0
    for path, truth in read_dlib_boxes(xml_file).items():
        detections = detector.detect(analyzer.load(path))
        tp, fp = match_detections(truth, detections.boxes, iou)
        total += len(truth)
        found += tp
        false_positives += fp
    return DetectionReport(total, found, false_positives)
