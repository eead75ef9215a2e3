"""Static-pruning experiments from records: the validation table and the sparsity curve.

* `ratio_table` - per task, each method's point with the largest value of a
  knob (CoFi's highest target sparsity): its metric as a ratio to dense, FLOPs
  speedup under every protocol and wall-clock speedup at batch 1 and the
  largest timed batch, next to reference numbers from the config (the seed
  slides' bert-base-uncased CoFi at 95% sparsity). Reference tasks the profile
  does not run get a row of their own, so the comparison is never silent.
* `sparsity_curve` - every point of the methods: achieved sparsity (encoder
  parameters removed), metric, FLOPs and wall-clock speedup, per protocol
  (CoFi's main figure: metric vs sparsity and metric vs speedup, dense as a
  horizontal line; one figure per protocol).
"""
from __future__ import annotations

import json
import math

import pandas as pd

from harness.measure.bootstrap import ratio
from harness.report.point_choice import DENSE, dense_row, same_point
from harness.report.tables import metric_x100, paired_comparison, paired_note
from harness.report.timings import wall_columns

RATIO_NOTE = (
    "Point = the method's point with the largest {knob}. ratio = eval metric / dense eval metric (accuracy, or "
    "Matthews correlation for CoLA). speedup_<protocol> = dense FLOPs / point FLOPs under that protocol; "
    "wall_bs<b> = wall-clock speedup over dense at batch b under protocol {wall}, timed side by side in one "
    "process ([low, high] its 95% interval). ref_* = {source}; our backbone: {backbones}."
)
CURVE_NOTE = (
    "sparsity = fraction of the prunable encoder parameters removed (embeddings and LayerNorms excluded), "
    "measured on the materialized model; target = the knob. value = eval metric x100; flops_speedup and "
    "wall_bs<b> (side-by-side wall-clock speedup, where the protocol is timed) against dense."
)


def _knob(row, knob: str):
    return json.loads(row["knobs_json"]).get(knob)




def _ratio_interval(top, base) -> dict[str, float]:
    """ratio_low / ratio_high: the paired bootstrap interval of metric / dense metric."""
    c = paired_comparison([top, base], combine=ratio)
    return {"ratio_low": c.low, "ratio_high": c.high}


def _timed_sizes(df: pd.DataFrame) -> list[str]:
    sizes = {int(b) for t in df["timing"] if isinstance(t, dict) for b in t.get("by_batch_size", {})}
    return [str(b) for b in sorted(sizes)]


def ratio_table(df: pd.DataFrame, methods: list[str], spec: dict) -> pd.DataFrame:
    knob, wall = spec.get("knob", "target_sparsity"), spec.get("wall_protocol", "batch")
    reference = spec.get("reference") or {}
    sizes = _timed_sizes(df)
    sizes = sorted({s for s in (sizes[:1] + sizes[-1:])}, key=int)
    rows = []
    none = df[df.protocol == "none"]
    for task in sorted(none["task"].unique()):
        base = dense_row(df, task, "none")
        if base is None:
            continue
        for method in methods:
            pts = none[(none.task == task) & (none.method == method)]
            pts = pts[[_knob(r, knob) is not None for _, r in pts.iterrows()]]
            if pts.empty:
                continue
            top = pts.loc[max(pts.index, key=lambda i: float(_knob(pts.loc[i], knob)))]
            ref = reference.get(task, {})
            row = {"task": task, "source": "harness", "method": method, "operating_point": top["operating_point"],
                   knob: float(_knob(top, knob)), "sparsity": top["structure"]["sparsity"],
                   "params_kept": top["structure"]["encoder_params"], "metric": base["metric"],
                   "dense": metric_x100(base["metric"], base["primary_value"]),
                   "value": metric_x100(base["metric"], top["primary_value"]),
                   "ratio": top["primary_value"] / base["primary_value"] if base["primary_value"] else math.nan,
                   **_ratio_interval(top, base)}
            for p in ("sequence", "batch", "none"):
                rec = same_point(df, top, p)
                row[f"speedup_{p}"] = rec["flops_speedup"] if rec is not None else math.nan
            rec = same_point(df, top, wall)
            for b in sizes:
                row |= wall_columns(rec, b, interval=True)
            row["ref_ratio"], row["ref_speedup"] = ref.get("ratio", math.nan), ref.get("speedup", math.nan)
            rows.append(row)
    ran = {r["task"] for r in rows}
    for task, ref in reference.items():
        if task not in ran:
            rows.append({"task": task, "source": "reference only (not run by this profile)",
                         "metric": ref.get("metric"), "ref_ratio": ref.get("ratio", math.nan),
                         "ref_speedup": ref.get("speedup", math.nan)})
    out = pd.DataFrame(rows)
    backbones = ", ".join(sorted(df["backbone"].unique()))
    out.attrs["note"] = RATIO_NOTE.format(knob=knob, wall=wall, source=spec.get("reference_source", "reference"),
                                          backbones=backbones)
    bases = [b for b in (dense_row(df, t, "none") for t in sorted(ran)) if b is not None]
    if bases:
        out.attrs["note"] += " [ratio_low, ratio_high] = the ratio's " + paired_note(bases)
    out.attrs["floatfmt"] = {"dense": ".2f", "value": ".2f", "ratio": ".3f", "ratio_low": ".3f", "ratio_high": ".3f",
                             "ref_ratio": ".3f", "sparsity": ".3f",
                             **{c: ".2f" for c in out.columns if c.startswith(("speedup", "wall", "ref_speedup"))}}
    return out


def sparsity_curve(df: pd.DataFrame, methods: list[str], spec: dict) -> pd.DataFrame:
    knob = spec.get("knob", "target_sparsity")
    sizes = _timed_sizes(df)
    rows = []
    for (task, protocol), sub in df.groupby(["task", "protocol"], sort=True):
        base = dense_row(df, task, protocol)
        if base is None:
            continue
        for method in [DENSE, *methods]:
            for _, r in sub[sub.method == method].iterrows():
                row = {"task": task, "protocol": protocol, "method": r["method"],
                       "operating_point": r["operating_point"], "target": _knob(r, knob),
                       "sparsity": r["structure"]["sparsity"], "metric": r["metric"],
                       "value": metric_x100(r["metric"], r["primary_value"]), "flops_speedup": r["flops_speedup"]}
                for b in sizes:
                    row |= wall_columns(r, b)
                rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty or (out["method"] == DENSE).all():
        return pd.DataFrame()  # dense alone: nothing to plot
    out.attrs["note"] = CURVE_NOTE
    out.attrs["floatfmt"] = {"value": ".2f", "sparsity": ".3f",
                             **{c: ".2f" for c in out.columns if c.startswith(("flops", "wall"))}}
    return out

