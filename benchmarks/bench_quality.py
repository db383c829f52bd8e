"""Does the quality score predict recognition errors? Error-versus-reject on LFW View 1 pairs.

    .venv/bin/python benchmarks/bench_quality.py

For each split (DevTrain, where the enrolment gate ``gallery.min_quality`` is chosen; DevTest,
where it is reported) every image's central face is embedded and scored for quality; a pair's
quality is the lower of its two. For a range of gates, pairs below the gate are set aside, and
the table shows how many images the gate rejects and the error rates at the shipped operating
point (``fmr=1e-3``) among the pairs kept and among those set aside. A useful score makes the
set-aside pairs markedly worse than the kept ones, and FNMR fall as the gate rises.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from visage.config import Settings
from visage.eval.pairs import embed_pair_images, read_pairs, score_pairs
from visage.pipeline import FaceAnalyzer, FileResult

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-view1"
GATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def error_rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float, int, int]:
    """(FNMR, FMR, genuine count, impostor count); NaN where there are no pairs of a kind."""
    genuine, impostor = scores[labels], scores[~labels]
    fnmr = float((genuine < threshold).mean()) if genuine.size else float("nan")
    fmr = float((impostor >= threshold).mean()) if impostor.size else float("nan")
    return fnmr, fmr, int(genuine.size), int(impostor.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DATA)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    splits = {"DevTrain": args.root / "pairsDevTrain.txt", "DevTest": args.root / "pairsDevTest.txt"}
    if not all(path.is_file() for path in splits.values()):
        sys.exit(f"LFW View 1 not found under {args.root} (../shared/data/lfw-view1)")
    threshold = FaceAnalyzer(Settings()).threshold("fmr=1e-3")
    report: dict[str, list[dict[str, float]]] = {}
    for split, pairs_file in splits.items():
        pairs = read_pairs(pairs_file, args.root / "images")
        quality: dict[Path, float] = {}

        def remember(result: FileResult, into: dict[Path, float] = quality) -> None:
            if result.faces is not None:
                into[result.path] = float(result.faces.quality[0])

        embeddings, _, _ = embed_pair_images(pairs, Settings(), workers=args.workers, on_result=remember)
        scores, labels = score_pairs(pairs, embeddings)
        pair_quality = np.array([min(quality[p.first], quality[p.second]) for p in pairs])
        image_quality = np.array(list(quality.values()))
        print(f"\n{split}: {len(pairs)} pairs, {image_quality.size} images, fmr=1e-3 threshold {threshold:.5f}; "
              f"image quality quartiles {np.percentile(image_quality, [25, 50, 75]).round(3).tolist()}")
        print(f"{'gate':>5s} {'images rejected':>16s} {'pairs kept':>11s} {'FNMR kept':>10s} {'FMR kept':>9s} "
              f"{'FNMR set aside':>15s} {'FMR set aside':>14s}")
        rows = report.setdefault(split, [])
        for gate in GATES:
            kept = pair_quality >= gate
            fnmr, fmr, genuine, impostor = error_rates(scores[kept], labels[kept], threshold)
            aside_fnmr, aside_fmr, _, _ = error_rates(scores[~kept], labels[~kept], threshold)
            rejected = float((image_quality < gate).mean())
            rows.append({"gate": gate, "images_rejected": rejected, "pairs_kept": int(kept.sum()), "fnmr_kept": fnmr,
                         "fmr_kept": fmr, "fnmr_set_aside": aside_fnmr, "fmr_set_aside": aside_fmr})
            print(f"{gate:5.2f} {rejected:16.2%} {int(kept.sum()):11d} {fnmr:10.2%} {fmr:9.2%} "
                  f"{aside_fnmr:15.2%} {aside_fmr:14.2%}   ({genuine} genuine, {impostor} impostor kept)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
