"""Regenerate the model card threshold of the configured pipeline from an LFW pairs list.

    python -m visage.eval.calibrate --pairs pairsDevTrain.txt --root images [--flip] [--views multi]

Prints the card entry as JSON for ``visage/data/model_cards.json``. Tune on DevTrain only;
report on DevTest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from visage.config import EmbeddingSettings, Settings
from visage.eval.pairs import evaluate_pairs, read_pairs
from visage.model_cards import card_key
from visage.pipeline import FaceAnalyzer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--views", choices=("single", "multi"), default="single")
    args = parser.parse_args()
    settings = Settings(embedding=EmbeddingSettings(flip=args.flip, views=args.views))
    model = FaceAnalyzer(settings).model
    report = evaluate_pairs(read_pairs(args.pairs, args.root), settings)
    entry = {
        card_key(model, args.flip, args.views): {
            "model": model.name,
            "sha256": model.sha256,
            "pipeline": f"{settings.detection.detector} + {settings.embedding.embedder}, views={args.views}, "
            f"flip={args.flip}",
            "operating_points": {"accuracy": round(float(np.mean(report.thresholds)), 4)},
            "calibration": {
                "data": f"LFW-format pairs {args.pairs.name}",
                "method": "mean of the 10 fold thresholds maximising accuracy",
                "accuracy_10fold": round(report.accuracy, 4),
                "auc": round(report.auc, 4),
            },
        }
    }
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
