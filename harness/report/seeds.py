"""Records of several training seeds as one row per point: the mean and its interval.

`load_records` keeps one row per record file, so one per training seed (the
config's `seeds`; all of them share `split_seed`, hence their eval examples).
`over_seeds` folds those rows into one per (task, method, operating point,
protocol, precision), the unit every table and figure compares:

* every float column (metrics, validation metrics, FLOPs, speedups, latencies,
  the records' bootstrap bounds) is the **mean over the seeds** that reached the
  point; text, dict and list columns (timing details, per-example data through
  `record_path`) are the lowest seed's;
* `n_seeds` (how many seeds reached the point; a point one seed's search did
  not yield has fewer), `seeds` ("0,1,2"), `record_paths` (every seed's record,
  in seed order: paired bootstraps use them all, see
  `harness.report.tables.paired_comparison`);
* `primary_value_sd` (sample standard deviation over seeds) and
  `primary_value_seed_low` / `primary_value_seed_high`: the **t-based
  interval of the mean over seeds**, mean +- t_{n-1, (1+c)/2} sd / sqrt(n) with
  c = `SEED_CONFIDENCE` (0.95). It holds training noise only (the seeds' models
  on the same eval examples), not eval-sampling noise; NaN with one seed.

With one seed every value is the record's own, so single-seed tables are unchanged.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

SEED_CONFIDENCE = 0.95
SEED_NOTE = (
    "With several training seeds (same splits): each value is the mean over the seeds that reached the point; "
    "[*_seed_low, *_seed_high] = mean +- t(n-1, 0.975) x sd / sqrt(n) over the n_seeds seeds' values (training noise "
    "only); paired intervals resample the same eval examples for every seed's record and compare the seed means."
)
_KEY = ["task", "method", "operating_point", "protocol", "precision"]
_KEPT_INTS = ("seed", "split_seed", "n_eval", "n_validation", "n_train", "batch_size", "schema_version")


def t_interval(values, confidence: float = SEED_CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of `values` with the t-based interval of their mean (NaN bounds below 2 values)."""
    x = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def several_seeds(df: pd.DataFrame) -> bool:
    """Whether any row of an `over_seeds` frame folds more than one seed."""
    return "n_seeds" in df.columns and len(df) > 0 and int(df["n_seeds"].max()) > 1


def over_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, method, operating point, protocol, precision): see the module doc."""
    if df.empty:
        return df.assign(n_seeds=pd.Series(dtype=int))
    seed = df["seed"] if "seed" in df.columns else pd.Series(0, index=df.index)
    df = df.assign(_seed=seed.fillna(0).astype(int)).sort_values("_seed", kind="stable")
    floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c]) and c not in _KEPT_INTS]
    rows = []
    for _, group in df.groupby(_KEY, sort=False, dropna=False):
        row = group.iloc[0].to_dict()
        n = len(group)
        if n > 1:
            for c in floats:
                vals = group[c].to_numpy(dtype=float)
                row[c] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
        _, low, high = t_interval(group["primary_value"].tolist())
        row.update(n_seeds=n, seeds=",".join(str(s) for s in group["_seed"]),
                   record_paths=tuple(group["record_path"]) if "record_path" in group else (),
                   primary_value_sd=float(group["primary_value"].std(ddof=1)) if n > 1 else math.nan,
                   primary_value_seed_low=low, primary_value_seed_high=high)
        rows.append(row)
    out = pd.DataFrame(rows).drop(columns="_seed")
    order = [c for c in df.columns if c in out.columns]
    return out[order + [c for c in out.columns if c not in order]]
