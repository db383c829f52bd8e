"""Verification on LFW-format pair lists (``visage eval pairs``).

The pairs file starts with a header line (count, or ``folds count``), then
``Name n1 n2`` for same-person pairs and ``Name1 n1 Name2 n2`` for different
people; images live at ``ROOT/Name/Name_0001.jpg``. The central face of each
image is used; when none is detected the central region stands in and the
image is counted as a detection miss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visage.config import Settings
from visage.errors import DatasetError
from visage.eval.metrics import auc, kfold_accuracy, roc_curve, tar_at_far
from visage.pipeline import FileResult, analyze_files

FAR_TARGETS = (1e-2, 1e-3)


@dataclass(frozen=True)
class Pair:
    first: Path
    second: Path
    same: bool


def lfw_path(root: Path, name: str, number: str) -> Path:
    return root / name / f"{name}_{int(number):04d}.jpg"


def read_pairs(pairs_file: Path, root: Path) -> list[Pair]:
    """Parse an LFW pairs file; every referenced image must exist."""
    try:
        lines = Path(pairs_file).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read pairs file {pairs_file}: {exc.strerror}") from None
    pairs: list[Pair] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or (number == 1 and all(f.isdigit() for f in fields)):
            continue
        try:
            if len(fields) == 3:
                pairs.append(Pair(lfw_path(root, fields[0], fields[1]), lfw_path(root, fields[0], fields[2]), True))
            elif len(fields) == 4:
                pairs.append(Pair(lfw_path(root, fields[0], fields[1]), lfw_path(root, fields[2], fields[3]), False))
            else:
                raise ValueError(f"expected 3 or 4 fields, got {len(fields)}")
        except ValueError as exc:
            raise DatasetError(f"{pairs_file}:{number}: malformed pair line {line!r} ({exc})") from None
    if not pairs:
        raise DatasetError(f"{pairs_file}: no pairs found")
    missing = sorted({str(p) for pair in pairs for p in (pair.first, pair.second) if not p.is_file()})
    if missing:
        raise DatasetError(f"{len(missing)} images named in {pairs_file} are missing under {root}, e.g. {missing[0]}")
    return pairs


@dataclass
class PairsReport:
    accuracy: float
    accuracy_std: float
    auc: float
    tar_at_far: dict[str, float]
    misses: int
    images: int
    pairs: int
    images_per_second: float
    seconds: float
    model: str
    thresholds: list[float] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "auc": self.auc,
            "tar_at_far": self.tar_at_far,
            "misses": self.misses,
            "images_per_second": self.images_per_second,
            "images": self.images,
            "pairs": self.pairs,
            "seconds": self.seconds,
            "model": self.model,
            "mean_threshold": float(np.mean(self.thresholds)) if self.thresholds else None,
        }


def embed_pair_images(
    pairs: list[Pair],
    settings: Settings,
    *,
    workers: int = 0,
    on_result: Callable[[FileResult], None] | None = None,
) -> tuple[dict[Path, np.ndarray], int, str]:
    """Embedding of the central face of every distinct image, the miss count and the model id."""
    images = sorted({p for pair in pairs for p in (pair.first, pair.second)})
    embeddings: dict[Path, np.ndarray] = {}
    misses = 0
    model = ""
    for result in analyze_files(images, settings, workers=workers, faces="central", fallback_to_centre=True,
                                on_result=on_result):
        faces = result.faces
        if result.error is not None or faces is None or faces.embeddings is None:
            raise DatasetError(f"{result.path}: {result.error}")
        misses += "no_face_detected" in faces.quality_reasons[0]
        embeddings[result.path] = faces.embeddings[0]
        model = faces.model.id if faces.model else model
    return embeddings, misses, model


def score_pairs(pairs: list[Pair], embeddings: dict[Path, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    first = np.stack([embeddings[p.first] for p in pairs])
    second = np.stack([embeddings[p.second] for p in pairs])
    scores = np.einsum("ij,ij->i", first, second).astype(np.float64)
    return scores, np.array([p.same for p in pairs])


def evaluate_pairs(
    pairs: list[Pair],
    settings: Settings | None = None,
    *,
    workers: int = 0,
    on_result: Callable[[FileResult], None] | None = None,
) -> PairsReport:
    settings = settings or Settings()
    started = time.perf_counter()
    embeddings, misses, model = embed_pair_images(pairs, settings, workers=workers, on_result=on_result)
    seconds = time.perf_counter() - started
    scores, labels = score_pairs(pairs, embeddings)
    folds = kfold_accuracy(scores, labels)
    return PairsReport(
        accuracy=folds.mean,
        accuracy_std=folds.std,
        auc=auc(scores, labels),
        tar_at_far={f"{far:g}": tar_at_far(scores, labels, far) for far in FAR_TARGETS},
        misses=misses,
        images=len(embeddings),
        pairs=len(pairs),
        images_per_second=len(embeddings) / seconds if seconds > 0 else 0.0,
        seconds=seconds,
        model=model,
        thresholds=folds.thresholds,
        scores=scores,
        labels=labels,
    )


def plot_roc(report: PairsReport, path: Path) -> None:
    """ROC curve (log FAR axis) as an image file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    far, tar, _ = roc_curve(report.scores, report.labels)
    figure, axis = plt.subplots(figsize=(5, 4), dpi=120)
    axis.plot(np.maximum(far, 1e-4), tar, label=f"{report.model}\nacc {report.accuracy:.2%}, AUC {report.auc:.4f}")
    axis.set_xscale("log")
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate")
    axis.set_ylim(0.8, 1.001)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
