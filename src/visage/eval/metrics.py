"""Verification metrics on similarity scores: k-fold accuracy, ROC, AUC, TAR at fixed FAR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy of ``score >= t`` (midpoint between neighbouring scores)."""
    order = np.argsort(scores)
    s, y = scores[order], labels[order].astype(bool)
    # Accept everything at or above index i: correct = negatives below i + positives from i.
    negatives_below = np.concatenate([[0], np.cumsum(~y)])
    positives_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    correct = negatives_below + positives_from
    # A threshold cannot fall between equal scores: only cut where the score changes.
    correct[1:-1][s[1:] == s[:-1]] = -1
    i = int(np.argmax(correct))
    if i == 0:
        return float(s[0] - 1e-6)
    if i == len(s):
        return float(s[-1] + 1e-6)
    return float((s[i - 1] + s[i]) / 2)


def fold_ids(labels: np.ndarray, folds: int) -> np.ndarray:
    """Consecutive folds, stratified: the i-th positive and i-th negative chunks form fold i (LFW style)."""
    ids = np.empty(len(labels), dtype=np.int64)
    for value in (True, False):
        rows = np.flatnonzero(labels.astype(bool) == value)
        ids[rows] = np.arange(len(rows)) * folds // max(len(rows), 1)
    return ids


@dataclass(frozen=True)
class FoldAccuracy:
    mean: float
    std: float
    thresholds: list[float]


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: int = 10) -> FoldAccuracy:
    """Accuracy of each fold with the threshold chosen on the other folds."""
    ids = fold_ids(labels, folds)
    accuracies, thresholds = [], []
    for k in range(folds):
        test = ids == k
        threshold = best_threshold(scores[~test], labels[~test])
        accuracies.append(float(np.mean((scores[test] >= threshold) == labels[test].astype(bool))))
        thresholds.append(threshold)
    return FoldAccuracy(float(np.mean(accuracies)), float(np.std(accuracies)), thresholds)


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, tar, thresholds)`` over every distinct score, from strictest to loosest."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    distinct = np.flatnonzero(np.diff(s)) if len(s) > 1 else np.array([], dtype=np.int64)
    cut = np.concatenate([distinct, [len(s) - 1]])
    tp = np.cumsum(y)[cut]
    fp = np.cumsum(~y)[cut]
    tar = np.concatenate([[0.0], tp / max(int(y.sum()), 1)])
    far = np.concatenate([[0.0], fp / max(int((~y).sum()), 1)])
    return far, tar, np.concatenate([[np.inf], s[cut]])


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    far, tar, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tar, far))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far_target: float) -> float:
    """Highest true-accept rate whose false-accept rate does not exceed ``far_target``."""
    far, tar, _ = roc_curve(scores, labels)
    allowed = far <= far_target + 1e-12
    return float(tar[allowed].max()) if allowed.any() else 0.0
