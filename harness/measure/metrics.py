"""Task metrics computed one way for every method.

Methods are compared on quality as well as speed, so all of them must be
scored by the same code: accuracy and F1 (positive class 1) as fractions in
[0, 1], Matthews correlation for CoLA, Pearson/Spearman for STS-B, SQuAD's exact
match and token F1 (`squad_metrics`) for span tasks.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from harness.errors import HarnessError
from harness.data.tasks import TaskSpec


def _correlation(fn: Callable, predictions: np.ndarray, labels: np.ndarray) -> float:
    # A constant input has no defined correlation; report 0 instead of NaN.
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    value = float(fn(predictions, labels)[0])
    return 0.0 if math.isnan(value) else value


# scipy and sklearn are imported where a metric runs, not with this module: every job imports it, and
# the two cost about 1.5 s of each job's start-up
def _accuracy(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score
    return float(accuracy_score(y, p))


def _f1(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import f1_score
    return float(f1_score(y, p, pos_label=1, average="binary", zero_division=0))


def _matthews(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef
    return float(matthews_corrcoef(y, p))


def _pearson(p: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import pearsonr
    return _correlation(pearsonr, p, y)


def _spearman(p: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr
    return _correlation(spearmanr, p, y)


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews": _matthews,
    "pearson": _pearson,
    "spearman": _spearman,
}

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
        out[name] = _METRICS[name](preds, gold)
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
