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

KL_PSEUDOCOUNT: float = 0.5  # added to every bin's count (Krichevsky-Trofimov / Jeffreys)


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


def _histograms(train, eval_, bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = histogram_edges(train, eval_, bins)
    return np.histogram(train, bins=edges)[0], np.histogram(eval_, bins=edges)[0]


def kl_divergence(train: Sequence[float], eval_: Sequence[float], bins: int) -> float:
    """KL(train || eval) in nats between the two length histograms.

    Both histograms use the same `bins` equal-width bins over the common
    range. Estimator: add-1/2 (Krichevsky-Trofimov) pseudo-counts in every bin
    of both histograms before normalising, so a bin that is empty in a small
    eval set costs about as much as its sampling noise says, not the
    log(1e-10) an epsilon gives (with epsilon smoothing, MRPC's 408 dev
    examples give 0.14 although its train and dev quartiles agree to one
    token). Identical inputs give exactly 0.
    """
    p, q = _histograms(train, eval_, bins)
    p = (p + KL_PSEUDOCOUNT) / (p.sum() + KL_PSEUDOCOUNT * bins)
    q = (q + KL_PSEUDOCOUNT) / (q.sum() + KL_PSEUDOCOUNT * bins)
    return float(np.sum(p * np.log(p / q)))


def kl_noise_floor(train: Sequence[float], eval_: Sequence[float], bins: int) -> float:
    """What the plug-in KL gives for two samples of ONE distribution of these
    sizes, to first order: (B - 1)/2 x (1/n_train + 1/n_eval), B the bins with
    any mass. A KL near or below it says the sets are indistinguishable."""
    p, q = _histograms(train, eval_, bins)
    used = int(np.count_nonzero(p + q))
    return (used - 1) / 2 * (1.0 / len(train) + 1.0 / len(eval_))


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
    interpolation); `kl` = KL(train || eval) in nats over `hist_bins`
    equal-width bins on the common [min, max] range (add-1/2 pseudo-counts,
    see `kl_divergence`) and `kl_floor`, its sampling-noise level.
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
    stats["kl_floor"] = kl_noise_floor(train, eval_, bins)
    return stats
