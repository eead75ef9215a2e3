"""Intervals over the eval examples: each record's metrics, and paired comparisons.

A metric measured on n eval examples is one draw of what the model would
score on another n drawn alike; its spread is estimated by the bootstrap
(`scipy.stats.bootstrap`): resample the examples with replacement, recompute
the metric, and read the interval off the resampled values.

* `metric_interval(task, predictions, labels)` - (low, high) of every metric
  of the task (`harness.measure.metrics.compute_metrics` gives the point).
* `paired_difference(task, metric, preds_a, preds_b, labels)` - a - b with a
  **paired** interval: every resample draws the same example indices for a and
  b, so what the two models have in common (the same hard examples) cancels,
  and the interval is that of the difference, not of two separate metrics.
* `paired_statistic` - the same over any number of records combined by a
  function of their metrics (a ratio, the max of several gaps, a drop minus a
  drop), all on the same resampled examples.

Choices:

* Percentile intervals, not BCa. BCa's acceleration needs a jackknife (n more
  evaluations of every metric, for n = 1,000 more than the resamples
  themselves, which would break the CI suite's budget of ~0.5 s per record),
  and scipy's BCa returns NaN with a warning on a degenerate distribution,
  a frequent case here (a point that prunes nothing has exactly dense's
  predictions, so its difference is 0 in every resample). At the eval sizes
  the harness reports (hundreds of examples and more), percentile and BCa
  intervals of a mean or a difference of means agree to well within their
  own Monte Carlo error; for skewed statistics on a few dozen examples
  (MCC on a tiny eval set) the percentile interval is the less accurate one.
* The metrics are the very functions `compute_metrics` uses
  (`harness.measure.metrics.CLASSIFICATION_METRICS`, numpy, vectorised along
  the resample axis), so the interval and the point cannot disagree.
* Span tasks (SQuAD) resample **questions**: each question's exact match and
  F1 (the maximum over its gold answers, `squad_metrics.question_scores`) are
  computed once, and the resamples average those; v2.0's HasAns / NoAns
  metrics are the means over the resampled questions of their group.
* Deterministic: resample indices come from `numpy.random.default_rng(seed)`,
  so the same seed and the same number of examples draw the same indices in
  every call (every metric of a record, and both sides of a comparison). The
  seed is the config's `split_seed`, never the training seed: records of
  every training seed (same split_seed, same eval examples) draw the same
  resamples, so their intervals and paired comparisons across training seeds
  compare like with like.

Only eval-sampling noise is in these intervals, not training noise: a second
training seed gives another model on the same examples. **Combining with
several training seeds** (the config's `seeds`): for S seeds of the same
method on the same eval examples, pass each seed's predictions as one record
to `paired_statistic` with `combine` the mean over seeds (for a comparison,
the mean over seeds of a's metric minus the mean over seeds of b's); every
resample then draws the same examples for all seeds, which gives the
eval-sampling interval of the seed mean. Training noise is added on top from
the S per-seed values (e.g. the half-width sqrt(h_eval^2 + (t_{S-1} s/sqrt(S))^2)
with s their standard deviation, or a two-level bootstrap that resamples
seeds, then examples); with S = 1 there is no spread over seeds to add, and
the interval must say so.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from harness.data.tasks import TaskSpec, get_task
from harness.errors import HarnessError
from harness.measure.metrics import CLASSIFICATION_METRICS

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
METHOD = "percentile"
_CELLS_PER_BATCH = 4_000_000  # resamples x examples evaluated at once (memory bound for large eval sets)


@dataclass(frozen=True)
class BootstrapSpec:
    """How intervals are drawn; recorded in each record's provenance (`bootstrap`)."""

    resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0
    method: str = METHOD

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, cfg: Mapping) -> "BootstrapSpec":
        ev = cfg.get("eval") or {}
        return cls(resamples=int(ev.get("bootstrap_resamples", DEFAULT_RESAMPLES)),
                   confidence=float(ev.get("bootstrap_confidence", DEFAULT_CONFIDENCE)),
                   seed=int(cfg.get("split_seed", cfg.get("seed", 0))))

    @classmethod
    def from_dict(cls, data: Mapping | None) -> "BootstrapSpec":
        """From a record's `provenance.bootstrap` (defaults where a key is absent)."""
        data = data or {}
        return cls(**{k: data[k] for k in ("resamples", "confidence", "seed", "method") if k in data})


@dataclass(frozen=True)
class Comparison:
    """A compared value (e.g. a - b), its interval and the examples behind it."""

    value: float
    low: float
    high: float
    n: int



_CLASSIFICATION = CLASSIFICATION_METRICS  # one value per resample row


def _group_mean(score, member):
    with np.errstate(invalid="ignore", divide="ignore"):
        return (score * member).sum(-1) / member.sum(-1)  # NaN where the resample holds none of the group


# --------------------------------------------------------------------------- per-example columns


@dataclass(frozen=True)
class _Columns:
    """One record's per-example arrays and, per metric, the function of them."""

    arrays: tuple[np.ndarray, ...]
    metrics: dict[str, Callable[..., np.ndarray]]

    @property
    def n(self) -> int:
        return len(self.arrays[0])


def _task(task) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def _columns(task: TaskSpec, predictions, labels) -> _Columns:
    if task.is_span:
        from harness.measure.squad_metrics import question_scores

        if len(predictions) != len(labels):
            raise HarnessError(f"{len(predictions)} SQuAD predictions for {len(labels)} questions",
                               "pass one predicted answer text per question")
        gold = [[a.text if hasattr(a, "text") else str(a) for a in answers] for answers in labels]
        scored = np.array([question_scores(str(p), g, task.version) for p, g in zip(predictions, gold)],
                          dtype=float).reshape(-1, 2)
        em, f1 = scored[:, 0], scored[:, 1]
        has = np.array([bool(g) for g in gold], dtype=float)
        # arrays: (exact match, F1, every question, answerable ones, unanswerable ones), one row per question
        fns = {"exact_match": lambda em, f1, one, has, no: _group_mean(em, one),
               "f1": lambda em, f1, one, has, no: _group_mean(f1, one),
               "has_answer_exact_match": lambda em, f1, one, has, no: _group_mean(em, has),
               "has_answer_f1": lambda em, f1, one, has, no: _group_mean(f1, has),
               "no_answer_exact_match": lambda em, f1, one, has, no: _group_mean(em, no),
               "no_answer_f1": lambda em, f1, one, has, no: _group_mean(f1, no)}
        return _Columns((em, f1, np.ones_like(em), has, 1.0 - has), {name: fns[name] for name in task.metrics})
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.shape != y.shape or p.ndim != 1:
        raise HarnessError(f"{task.name}: predictions shape {p.shape} does not match labels shape {y.shape}",
                           "pass one prediction per evaluation example")
    p, y = (p.astype(float), y.astype(float)) if task.is_regression else (p.astype(int), y.astype(int))
    unknown = [m for m in task.metrics if m not in _CLASSIFICATION]
    if unknown:
        raise HarnessError(f"{task.name}: no bootstrap for metric(s) {unknown}",
                           f"use metrics from: {', '.join(_CLASSIFICATION)}")
    return _Columns((p, y), {m: _CLASSIFICATION[m] for m in task.metrics})


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Callable, spec: BootstrapSpec) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) arrays of a vector-valued `statistic(*resampled data)`, resampling examples jointly."""
    from scipy.stats import bootstrap

    n = len(data[0])
    res = bootstrap(data, lambda *a, axis=-1: statistic(*a), n_resamples=spec.resamples, paired=True,
                    vectorized=True, method=spec.method, confidence_level=spec.confidence,
                    batch=max(1, _CELLS_PER_BATCH // max(n, 1)), rng=np.random.default_rng(spec.seed))
    return np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)


# --------------------------------------------------------------------------- public


def metric_interval(task, predictions, labels, spec: BootstrapSpec | None = None) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)} for every metric of `task` (fractions, as `compute_metrics`),
    from the same resampled examples (questions, for a span task); NaN with fewer than 2 examples."""
    task, spec = _task(task), spec or BootstrapSpec()
    cols = _columns(task, predictions, labels)
    names = list(cols.metrics)
    if cols.n < 2:
        return {m: (math.nan, math.nan) for m in names}
    low, high = _bootstrap(cols.arrays, lambda *a: np.stack([cols.metrics[m](*a) for m in names]), spec)
    return {m: (float(lo), float(hi)) for m, lo, hi in zip(names, low, high)}


def paired_statistic(task, metric: str, predictions: Sequence[Sequence], labels,
                     combine: Callable[..., np.ndarray], spec: BootstrapSpec | None = None) -> Comparison:
    """`combine(metric of predictions[0], metric of predictions[1], ...)` with its
    interval, every record's metric computed on the same resampled examples
    (`combine` gets arrays, one value per resample, and must work elementwise)."""
    task, spec = _task(task), spec or BootstrapSpec()
    if metric not in task.metrics:
        raise HarnessError(f"{task.name} has no metric {metric!r}", f"use one of: {', '.join(task.metrics)}")
    cols = [_columns(task, p, labels) for p in predictions]
    sizes = {c.n for c in cols}
    if len(sizes) != 1:
        raise HarnessError(f"{task.name}: the compared predictions cover {sorted(sizes)} examples",
                           "compare records evaluated on the same examples")
    width = len(cols[0].arrays)
    data = tuple(a for c in cols for a in c.arrays)
    fn = cols[0].metrics[metric]

    def statistic(*arrays):
        return np.asarray(combine(*(fn(*arrays[i * width:(i + 1) * width]) for i in range(len(cols)))), dtype=float)

    value = float(statistic(*data))
    n = cols[0].n
    if n < 2:
        return Comparison(value, math.nan, math.nan, n)
    low, high = _bootstrap(data, statistic, spec)
    return Comparison(value, float(low[0]), float(high[0]), n)


def paired_difference(task, metric: str, preds_a, preds_b, labels, spec: BootstrapSpec | None = None) -> Comparison:
    """metric(a) - metric(b) on the same examples, with the paired interval
    (the same resampled example indices for a and b); 95% by default."""
    return paired_statistic(task, metric, [preds_a, preds_b], labels, lambda a, b: a - b, spec)


def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b per resample, NaN where b is 0: the `combine` of a paired ratio (`paired_statistic`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)
