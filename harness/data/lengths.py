"""Train/eval sequence-length statistics (reproduces LTP's Table 2).

Kim et al. (KDD 2022, "Learned Token Pruning") motivate length-aware pruning
by showing that train and eval length distributions differ per task: Table 2
reports train and eval length quartiles and KL(train || eval) between length
histograms, with 20 bins for RTE/MRPC/STS-B and 50 for the rest. The bin
count travels in each length record (`hist_bins`) so the figure and the table
use exactly the same histogram.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.errors import HarnessError

KL_EPSILON: float = 1e-10


def _lengths(record: dict[str, Any], key: str) -> np.ndarray:
    values = np.asarray(record.get(key, []), dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise HarnessError(
            f"length record for task {record.get('task')!r} has no {key}",
            "re-run the length-analysis step of the workflow for that task",
        )
    return values


def _bins(record: dict[str, Any]) -> int:
    bins = record.get("hist_bins")
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise HarnessError(
            f"length record for task {record.get('task')!r} has hist_bins={bins!r}; expected a positive integer",
            "fix the length record (LTP uses 20 bins for RTE/MRPC/STS-B, 50 for the rest)",
        )
    return bins


def histogram_edges(train: Sequence[float], eval_: Sequence[float], bins: int) -> np.ndarray:
    """`bins` equal-width bin edges over the common range [min, max] of both sets.

    A degenerate range (every length equal) is widened by one token so the
    histogram is still defined.
    """
    lo = float(min(np.min(train), np.min(eval_)))
    hi = float(max(np.max(train), np.max(eval_)))
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, bins + 1)


def kl_divergence(train: Sequence[float], eval_: Sequence[float], bins: int) -> float:
    """KL(train || eval) in nats between the two length histograms.

    Both histograms use the same `bins` equal-width bins over the common range.
    Smoothing: KL_EPSILON (1e-10) is added to every bin's probability and each
    histogram is renormalised, so a bin that is empty in `eval` but not in
    `train` gives a large finite value instead of infinity. Identical inputs
    give exactly 0.
    """
    edges = histogram_edges(train, eval_, bins)
    p, _ = np.histogram(train, bins=edges)
    q, _ = np.histogram(eval_, bins=edges)
    p = p / p.sum() + KL_EPSILON
    q = q / q.sum() + KL_EPSILON
    p /= p.sum()
    q /= q.sum()
    return float(np.sum(p * np.log(p / q)))


def _describe(values: np.ndarray, prefix: str) -> dict[str, float]:
    """Quartiles (numpy's default linear interpolation), 99th percentile and mean."""
    q1, q2, q3, p99 = np.percentile(values, [25, 50, 75, 99])
    return {
        f"{prefix}_q1": float(q1),
        f"{prefix}_q2": float(q2),
        f"{prefix}_q3": float(q3),
        f"{prefix}_p99": float(p99),
        f"{prefix}_mean": float(np.mean(values)),
    }


def length_stats(record: dict[str, Any]) -> dict[str, Any]:
    """Statistics of one length record, as in LTP Table 2.

    Returns task, tokenizer, bins, n_train, n_eval; for each of train/eval the
    quartiles `<set>_q1`, `<set>_q2` (median), `<set>_q3`, the 99th percentile
    `<set>_p99` and `<set>_mean` (percentiles use numpy's linear
    interpolation); and `kl` = KL(train || eval) in nats over `hist_bins`
    equal-width bins on the common [min, max] range, with add-epsilon
    smoothing (1e-10 added to each bin's probability, then renormalised).
    """
    train = _lengths(record, "train_lengths")
    eval_ = _lengths(record, "eval_lengths")
    bins = _bins(record)
    stats: dict[str, Any] = {
        "task": record.get("task"),
        "tokenizer": record.get("tokenizer"),
        "bins": bins,
        "n_train": int(train.size),
        "n_eval": int(eval_.size),
    }
    stats.update(_describe(train, "train"))
    stats.update(_describe(eval_, "eval"))
    stats["kl"] = kl_divergence(train, eval_, bins)
    return stats
