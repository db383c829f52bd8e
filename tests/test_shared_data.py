"""Accuracy on the real data in ../shared/data (skipped, with the reason, when it is absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from visage import FaceAnalyzer, Settings
from visage.config import DetectionSettings
from visage.eval.detection import evaluate_detection, match_detections
from visage.eval.pairs import evaluate_pairs, read_pairs
from visage.models.detect_centerface import CenterFaceDetector

from .conftest import shared_path


def test_match_detections_is_one_to_one() -> None:
    import numpy as np

    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    found = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    assert match_detections(truth, found, 0.4) == (1, 2)


def test_centerface_on_annotated_photos(analyzer: FaceAnalyzer) -> None:
    xml = shared_path("detection", "training.xml")
    report = evaluate_detection(CenterFaceDetector(DetectionSettings()), analyzer, xml)
    assert report.ground_truth == 18
    assert report.found >= 17, report
    assert report.false_positives <= 1, report


def test_pairs_parser_and_small_eval(tmp_path: Path) -> None:
    root = shared_path("lfw-view1")
    lines = (root / "pairsDevTest.txt").read_text().splitlines()
    subset = tmp_path / "pairs.txt"
    subset.write_text("\n".join(["20", *lines[1:21], *lines[501:521]]) + "\n")
    pairs = read_pairs(subset, root / "images")
    assert len(pairs) == 40 and sum(p.same for p in pairs) == 20
    report = evaluate_pairs(pairs, Settings(), workers=2)
    assert report.accuracy >= 0.9 and report.auc >= 0.95
    bad = tmp_path / "bad.txt"
    bad.write_text("1\nOnly_Two_Fields 1\n")
    from visage.errors import DatasetError

    with pytest.raises(DatasetError, match="malformed"):
        read_pairs(bad, root / "images")


@pytest.mark.slow
def test_eval_pairs_cli_on_devtest(tmp_path: Path) -> None:
    root = shared_path("lfw-view1")
    plot = tmp_path / "roc.png"
    result = subprocess.run(
        [sys.executable, "-m", "visage.cli", "eval", "pairs", "--pairs", str(root / "pairsDevTest.txt"),
         "--root", str(root / "images"), "--json", "--plot", str(plot)],
        capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"accuracy", "accuracy_std", "auc", "tar_at_far", "misses", "images_per_second"}
    # Default pipeline (multi-view + flip, chosen on DevTrain) measured 99.1 % with no misses; the bar is 98.9 %.
    assert report["accuracy"] >= 0.989, report
    assert report["tar_at_far"]["0.001"] >= 0.93, report
    assert report["misses"] <= 2 and report["auc"] >= 0.995
    assert plot.stat().st_size > 5_000


def test_onnx_resnet_matches_dlib_on_200_lfw_faces(analyzer: FaceAnalyzer) -> None:
    """Issue 7's parity bar: cosine >= 0.9999 between dlib and the converted network on every face."""
    import numpy as np

    from visage.models.embed_dlib_resnet import DlibResNetEmbedder
    from visage.models.embed_dlib_resnet_onnx import OnnxDlibResNetEmbedder

    images = sorted(shared_path("lfw-view1", "images").glob("*/*.jpg"))[::24][:200]
    assert len(images) == 200
    fast = analyzer.embedder
    assert isinstance(fast, OnnxDlibResNetEmbedder)
    chips = []
    for path in images:
        image = analyzer.load(path)
        faces = analyzer.analyze(image, embed=False, faces="central", fallback_to_centre=True)
        chips.append(fast.aligner.align(image, faces.boxes, faces.landmarks)[0])
    batch = np.stack(chips)
    reference = DlibResNetEmbedder().embed(batch)
    cosine = (reference * fast.embed(batch)).sum(axis=1)
    assert cosine.min() >= 0.9999, np.sort(cosine)[:5]
