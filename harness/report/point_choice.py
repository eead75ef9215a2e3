"""Which operating point a table or claim reads: selection rules on result records only.

The papers pick the point they report by a rule; the harness applies the
same rule on the held-out `validation` metric (never on the reported `eval`
metric):

* `fastest_within(df, task, method, tolerance)` - the point with the fewest
  FLOPs whose validation metric is within `tolerance` of the dense
  baseline's validation metric (LTP Table 1, Magic Pyramid Table 2). The
  tolerance is absolute on the metric's own scale: 0.01 = one accuracy point,
  or 0.01 of a correlation. If no point qualifies, the most accurate one is
  returned and flagged.
* `nearest_speedup(df, task, method, target)` - the point whose FLOPs speedup
  is closest to `target` (e.g. 2x for the wall-clock comparison).
"""
from __future__ import annotations

import json

import pandas as pd

from harness.pareto import fewest_within

DENSE = "dense"


def knobs_match(row, wanted: dict | None) -> bool:
    """Whether a record row's knobs hold every `wanted` {knob: value} (numbers compared to 1e-9)."""
    have = json.loads(row["knobs_json"])
    for k, v in (wanted or {}).items():
        if k not in have:
            return False
        a = have[k]
        if isinstance(v, (int, float)) and isinstance(a, (int, float)):
            if abs(float(a) - float(v)) > 1e-9:
                return False
        elif a != v:
            return False
    return True


def only_points(df: pd.DataFrame, knobs: dict | None) -> pd.DataFrame:
    """`df` without the points of a method in `knobs` ({method: {knob: value}}) that do not match its filter."""
    if not knobs or df.empty:
        return df
    keep = [r["method"] not in knobs or knobs_match(r, knobs[r["method"]]) for _, r in df.iterrows()]
    return df[keep]


def method_points(df: pd.DataFrame, task: str, method: str, protocol: str) -> pd.DataFrame:
    return df[(df["task"] == task) & (df["method"] == method) & (df["protocol"] == protocol)]


def dense_row(df: pd.DataFrame, task: str, protocol: str) -> pd.Series | None:
    rows = method_points(df, task, DENSE, protocol)
    return rows.iloc[0] if len(rows) else None


def fastest_within(
    df: pd.DataFrame, task: str, method: str, tolerance: float = 0.01, protocol: str = "none"
) -> tuple[pd.Series | None, bool]:
    """(chosen row, whether it met the tolerance) under `protocol`."""
    points = method_points(df, task, method, protocol)
    base = dense_row(df, task, protocol)
    if base is None:
        return None, False
    return fastest_of(points, base["val_primary_value"], tolerance)


def fastest_of(points: pd.DataFrame, reference: float, tolerance: float = 0.01) -> tuple[pd.Series | None, bool]:
    """The rule of `fastest_within` on given points against a given reference
    validation metric (e.g. the model a method starts from): the fewest-FLOPs
    point within `tolerance` of it, else the most accurate one, flagged."""
    if points.empty:  # (a filter that kept nothing may leave no columns either)
        return None, False
    at, met = fewest_within(list(points["flops_per_example"]), list(points["val_primary_value"]), reference, tolerance)
    return (None, False) if at is None else (points.iloc[at], met)


def nearest_speedup(df: pd.DataFrame, task: str, method: str, target: float = 2.0, protocol: str = "none"):
    points = method_points(df, task, method, protocol)
    if points.empty:
        return None
    return points.loc[(points["flops_speedup"] - target).abs().idxmin()]


def same_point(df: pd.DataFrame, row: pd.Series, protocol: str) -> pd.Series | None:
    """The record of the same (task, method, operating point) under another protocol."""
    rows = df[
        (df["task"] == row["task"])
        & (df["method"] == row["method"])
        & (df["operating_point"] == row["operating_point"])
        & (df["protocol"] == protocol)
    ]
    return rows.iloc[0] if len(rows) else None
