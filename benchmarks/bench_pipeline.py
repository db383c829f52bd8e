"""Visage vs the `face_recognition` package on LFW View 1 DevTest, in one run, on the same images.

    make bench          # builds the peer's own environment, then runs this script

Prints images/s and 10-fold pair accuracy of both, side by side, with the ratio; Visage
is measured in its fastest setting (one view, no flip), with flip, and in its default,
most accurate setting (multi-view + flip).
Both use every core: two worker processes each on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from peer import run_peer
from visage.config import EmbeddingSettings, Settings
from visage.eval.metrics import auc, kfold_accuracy
from visage.eval.pairs import evaluate_pairs, read_pairs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-view1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peer-python", required=True, help="Python of the environment with face_recognition.")
    parser.add_argument("--pairs", type=Path, default=DATA / "pairsDevTest.txt")
    parser.add_argument("--root", type=Path, default=DATA / "images")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"LFW View 1 not found at {args.pairs} (../shared/data/lfw-view1)")
    pairs = read_pairs(args.pairs, args.root)
    images = sorted({p for pair in pairs for p in (pair.first, pair.second)})

    rows = []
    variants = (
        ("visage single view, no flip", False, "single"),
        ("visage single view + flip", True, "single"),
        ("visage multi-view + flip (default)", True, "multi"),
    )
    for label, flip, views in variants:
        settings = Settings(embedding=EmbeddingSettings(flip=flip, views=views))
        report = evaluate_pairs(pairs, settings, workers=args.workers)
        rows.append((label, report.accuracy, report.accuracy_std, report.auc, report.misses, report.images_per_second))

    peer_embeddings, peer_misses, peer_seconds = run_peer(args.peer_python, images, args.workers)
    labels = np.array([pair.same for pair in pairs])
    first = np.stack([peer_embeddings[p.first] for p in pairs])
    second = np.stack([peer_embeddings[p.second] for p in pairs])
    distances = np.linalg.norm(first - second, axis=1)  # face_recognition's own metric
    peer_folds = kfold_accuracy(-distances, labels)
    peer_row = ("face_recognition 1.3.0 (HOG)", peer_folds.mean, peer_folds.std, auc(-distances, labels), peer_misses,
                len(images) / peer_seconds)

    print(f"LFW View 1 {args.pairs.name}: {len(pairs)} pairs, {len(images)} images, {args.workers} workers")
    print(f"{'pipeline':36s} {'accuracy':>16s} {'AUC':>8s} {'misses':>7s} {'images/s':>9s} {'speed ratio':>12s}")
    for label, acc, std, area, misses, speed in [*rows, peer_row]:
        print(f"{label:36s} {acc:8.2%} ± {std:5.2%} {area:8.5f} {misses:7d} {speed:9.1f} "
              f"{speed / peer_row[5]:11.2f}x")
    print(json.dumps({"visage": rows, "face_recognition": peer_row}))


if __name__ == "__main__":
    main()
