"""Calibrate named false-match-rate operating points (``fmr=1e-3`` …) from impostor similarities.

    python -m visage.eval.operating_points --pairs pairsDevTrain.txt --root images [--update model_cards.json]

Impostors are every different-person pair among the images the pairs file names (LFW View 1
DevTrain: 3,443 images, about 5.9 million cross-identity pairs), so thresholds down to
FMR = 1e-5 rest on dozens of impostor scores rather than a handful; the strictest, 1e-6, rests
on about six and is a rough estimate, there so that FPIR targets in galleries of thousands of
people (FMR ~ FPIR / people) are interpolated rather than clamped. The same-person pairs of
the file give the false non-match rate at each threshold. Prints the operating points as
JSON; ``--update`` merges them into a model card file (the one shipped is
``visage/data/model_cards.json``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visage.config import EmbeddingSettings, Settings
from visage.eval.pairs import embed_pair_images, read_pairs, score_pairs
from visage.model_cards import card_key
from visage.pipeline import FaceAnalyzer

FMR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def fmr_name(fmr: float) -> str:
    return f"fmr={fmr:.0e}".replace("e-0", "e-")


def impostor_scores(embeddings: np.ndarray, identities: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows whose identities differ (each pair once)."""
    scores: list[np.ndarray] = []
    for row in range(len(embeddings) - 1):
        similarities = embeddings[row + 1 :] @ embeddings[row]
        scores.append(similarities[identities[row + 1 :] != identities[row]])
    return np.concatenate(scores) if scores else np.zeros(0)


def threshold_at_fmr(impostors: np.ndarray, fmr: float) -> float:
    """Smallest threshold whose false-match rate (share of impostors with similarity >= it) is <= ``fmr``."""
    if len(impostors) == 0:
        raise ValueError("no impostor scores")
    allowed = int(np.floor(fmr * len(impostors)))
    ranked = np.sort(impostors)[::-1]
    if allowed >= len(ranked):
        return float(ranked[-1])
    return float(np.nextafter(np.float32(ranked[allowed]), np.float32(np.inf)))


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    fmr_target: float
    threshold: float
    fmr_measured: float
    fnmr: float


def operating_points(impostors: np.ndarray, genuine: np.ndarray) -> list[OperatingPoint]:
    points = []
    for fmr in FMR_TARGETS:
        threshold = threshold_at_fmr(impostors, fmr)
        points.append(
            OperatingPoint(
                name=fmr_name(fmr),
                fmr_target=fmr,
                threshold=round(threshold, 5),
                fmr_measured=float(np.mean(impostors >= threshold)),
                fnmr=float(np.mean(genuine < threshold)) if len(genuine) else float("nan"),
            )
        )
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--views", choices=("single", "multi"), default="multi")
    parser.add_argument("--update", type=Path, help="Model card JSON file to merge the operating points into.")
    args = parser.parse_args()
    settings = Settings(embedding=EmbeddingSettings(flip=args.flip, views=args.views))
    model = FaceAnalyzer(settings).model
    pairs = read_pairs(args.pairs, args.root)
    by_path, _, _ = embed_pair_images(pairs, settings)
    paths = sorted(by_path)
    embeddings = np.stack([by_path[p] for p in paths]).astype(np.float32)
    identities = np.array([p.parent.name for p in paths])
    impostors = impostor_scores(embeddings, identities)
    scores, labels = score_pairs(pairs, by_path)
    points = operating_points(impostors, scores[labels])
    key = card_key(model, args.flip, args.views)
    summary = {
        "card": key,
        "impostor_pairs": len(impostors),
        "genuine_pairs": int(labels.sum()),
        "data": f"{args.pairs.name}: {len(paths)} images, {len(set(identities))} people",
        "points": [p.__dict__ for p in points],
    }
    print(json.dumps(summary, indent=2))
    if args.update:
        cards = json.loads(args.update.read_text(encoding="utf-8"))
        card = cards.setdefault(key, {"model": model.name, "sha256": model.sha256})
        card.setdefault("operating_points", {}).update({p.name: p.threshold for p in points})
        card["fmr_calibration"] = {k: v for k, v in summary.items() if k != "card"}
        args.update.write_text(json.dumps(cards, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
