"""Task metrics computed one way for every method.

Methods are compared on quality as well as speed, so all of them must be
scored by the same code: accuracy and F1 (positive class 1) as fractions in
[0, 1], Matthews correlation for CoLA, Pearson/Spearman for STS-B, SQuAD's exact
match and token F1 (`squad_metrics`) for span tasks.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from harness.errors import HarnessError
from harness.data.tasks import TaskSpec


# The metrics are numpy only: every train job scores its validation split, and importing sklearn and
# scipy.stats for that cost about 1.5 s of each job's start-up (tests/test_data.py checks them against
# sklearn and scipy). Each takes arrays with the examples on the last axis and returns one value per row,
# so harness.measure.bootstrap scores all its resamples at once with the same functions.


def accuracy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (p == y).mean(-1)


def f1(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """F1 of the positive class 1; 0 where it is undefined (sklearn's zero_division=0)."""
    tp = ((p == 1) & (y == 1)).sum(-1)
    fp = ((p == 1) & (y != 1)).sum(-1)
    fn = ((p != 1) & (y == 1)).sum(-1)
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def matthews(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Matthews correlation, multiclass (sklearn's formula from the confusion counts); 0 where undefined."""
    n = p.shape[-1]
    classes = np.union1d(np.unique(p), np.unique(y))
    correct = (p == y).sum(-1).astype(float)
    t = np.stack([(y == k).sum(-1) for k in classes]).astype(float)
    q = np.stack([(p == k).sum(-1) for k in classes]).astype(float)
    cov_tp = correct * n - (t * q).sum(0)
    cov_pp = n * n - (q * q).sum(0)
    cov_tt = n * n - (t * t).sum(0)
    den = np.sqrt(cov_tt * cov_pp)
    return np.where(den > 0, cov_tp / np.where(den > 0, den, 1.0), 0.0)


def pearson(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r; a constant side has no defined correlation: 0 instead of NaN."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    dp, dy = p - p.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    den = np.sqrt((dp * dp).sum(-1) * (dy * dy).sum(-1))
    constant = (np.ptp(p, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    ok = ~constant & (den > 0)
    return np.where(ok, (dp * dy).sum(-1) / np.where(ok, den, 1.0), 0.0)


def average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties given their mean rank (scipy's `rankdata`, method "average")."""
    a = np.asarray(a, float)
    n = a.shape[-1]
    order = np.argsort(a, axis=-1, kind="stable")
    ordered = np.take_along_axis(a, order, -1)
    starts = np.ones(a.shape, bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends = np.ones(a.shape, bool)
    ends[..., :-1] = starts[..., 1:]
    pos = np.broadcast_to(np.arange(1, n + 1, dtype=float), a.shape)
    first = np.maximum.accumulate(np.where(starts, pos, 0.0), -1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, pos, n + 1.0), -1), -1), -1)
    ranks = np.empty(a.shape)
    np.put_along_axis(ranks, order, (first + last) / 2, -1)
    return ranks


def spearman(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho: Pearson's r of the average ranks (0 where a side is constant)."""
    return pearson(average_ranks(p), average_ranks(y))


# name -> function of (predictions, labels) for sentence tasks
CLASSIFICATION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews": matthews,
    "pearson": pearson,
    "spearman": spearman,
}
_METRICS = CLASSIFICATION_METRICS

# span tasks (SQuAD): harness.measure.squad_metrics
SPAN_METRIC_NAMES: tuple[str, ...] = ("f1", "exact_match", "has_answer_f1", "has_answer_exact_match",
                                      "no_answer_f1", "no_answer_exact_match")
METRIC_NAMES: tuple[str, ...] = tuple(dict.fromkeys((*_METRICS, *SPAN_METRIC_NAMES)))


def compute_metrics(task: TaskSpec, predictions, labels) -> dict[str, float]:
    """Every metric of `task`: class ids (classification), floats (regression),
    or answer texts against each question's gold answers (span tasks)."""
    if task.is_span:
        from harness.measure.squad_metrics import squad_metrics

        gold = [[a.text if hasattr(a, "text") else str(a) for a in answers] for answers in labels]
        scores = squad_metrics([str(p) for p in predictions], gold, task.version)
        return {name: scores[name] for name in task.metrics}
    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if preds.shape != gold.shape or preds.ndim != 1:
        raise HarnessError(
            f"{task.name}: predictions shape {preds.shape} does not match labels shape "
            f"{gold.shape} (need two 1-D arrays of equal length)",
            "pass one prediction per evaluation example (argmax class id, or the score "
            "for regression)",
        )
    if preds.size == 0:
        raise HarnessError(f"{task.name}: no predictions to score",
                           "evaluate on a non-empty evaluation split")
    if task.is_regression:
        preds, gold = preds.astype(float), gold.astype(float)
    else:
        preds, gold = preds.astype(int), gold.astype(int)
    out: dict[str, float] = {}
    for name in task.metrics:
        if name not in _METRICS:
            raise HarnessError(f"{task.name}: unknown metric {name!r}",
                               f"use metrics from: {', '.join(_METRICS)}")
        out[name] = float(_METRICS[name](preds, gold))
    return out


def primary(task: TaskSpec, metrics: dict[str, float]) -> float:
    """The task's headline number from a compute_metrics result."""
    if task.primary_metric not in metrics:
        raise HarnessError(
            f"{task.name}: primary metric {task.primary_metric!r} missing from "
            f"{sorted(metrics)}",
            "pass the dict returned by compute_metrics for this task",
        )
    return float(metrics[task.primary_metric])
