from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from visage.eval.metrics import auc, best_threshold, fold_ids, kfold_accuracy, tar_at_far


def test_perfect_separation() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 1, 1, 1], bool)
    assert 0.3 < best_threshold(scores, labels) < 0.8
    assert auc(scores, labels) == 1.0
    assert tar_at_far(scores, labels, 0.0) == 1.0


def test_reversed_scores_have_zero_auc() -> None:
    scores = np.array([0.9, 0.8, 0.1, 0.2])
    labels = np.array([0, 0, 1, 1], bool)
    assert auc(scores, labels) == 0.0
    assert tar_at_far(scores, labels, 0.0) == 0.0


def test_tar_at_far_counts_false_accepts() -> None:
    # 10 impostors, one of which outranks half the genuine pairs.
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.3] + [0.75] + [0.1] * 9)
    labels = np.array([1] * 5 + [0] * 10, bool)
    assert tar_at_far(scores, labels, 0.0) == 0.4
    assert tar_at_far(scores, labels, 0.1) == 1.0


def test_threshold_never_splits_tied_scores() -> None:
    scores = np.zeros(20)
    labels = np.array([False] * 19 + [True])
    threshold = best_threshold(scores, labels)
    assert np.mean((scores >= threshold) == labels) == 0.95  # reject all, not accept all


def test_folds_are_stratified_and_consecutive() -> None:
    labels = np.array([True] * 50 + [False] * 50)
    ids = fold_ids(labels, 10)
    assert list(ids[:5]) == [0] * 5 and list(ids[50:55]) == [0] * 5
    assert all((ids[labels] == k).sum() == 5 and (ids[~labels] == k).sum() == 5 for k in range(10))


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=20, max_size=200))
def test_kfold_accuracy_is_a_valid_rate(rows: list[tuple[float, bool]]) -> None:
    scores = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows])
    result = kfold_accuracy(scores, labels, folds=5)
    assert 0.0 <= result.mean <= 1.0
    assert 0.0 <= auc(scores, labels) <= 1.0
    best = best_threshold(scores, labels)
    best_accuracy = np.mean((scores >= best) == labels)
    assert best_accuracy >= max(labels.mean(), 1 - labels.mean()) - 1e-9
