"""The precision axis in the report: LTP Fig. 7 and whether each method's speedup survives lower precision.

Why: a method's fp32 speedup over fp32 dense is not what a deployer sees where the dense model itself
runs faster in bf16 or int8 (`harness.model.precision`). Two experiment kinds read the records of every
precision (the other kinds read fp32 only, or the precision their spec names):

* `bops_tradeoff` (LTP Fig. 7): metric against relative BOPs (bit operations against the fp32 dense
  model on the same examples) for dense and the methods at every precision, under one protocol; each
  point with its bootstrap interval.
* `precision_survival`: per method (dense first), the point timed at every precision (the evaluate job's
  choice: fewest FLOPs within `eval.precision_tolerance` of dense on validation), at each precision: the
  eval metric and its paired-bootstrap difference to fp32 dense, and at each timed batch size the
  wall-clock speedup against dense at the same precision and against the fastest dense (the dense
  precision with the shortest time among those within tolerance of fp32 dense on validation), each with
  its 95% interval and whether it met its target.
"""
from __future__ import annotations

import math
import os

import pandas as pd
from matplotlib import rc_context

from harness.report.figures import STYLE, _new_figure, _save
from harness.report.point_choice import DENSE
from harness.report.style import bases_from, identities
from harness.report.tables import paired_comparison

ORDER = {"fp32": 0, "bf16": 1, "fp16": 1, "int8": 2}
MARKERS = {"fp32": "o", "bf16": "s", "fp16": "s", "int8": "^"}
BOPS_NOTE = ("Metric (x100, the record's 95% bootstrap interval) against relative BOPs: bit operations (MACs x weight "
             "bits x activation bits) over the fp32 dense model's on the same examples (LTP Fig. 7 uses FP16 dense as "
             "its baseline: there, INT8 is a 4x cut; here, against fp32, 16x on the Linear layers). int8 keeps QK^T, "
             "AV and the policies' own products in fp32, counted at 32 x 32 bits.")
SURVIVAL_NOTE = ("Each method's point timed at every precision (fewest FLOPs within the tolerance of dense on "
                 "validation, at fp32). value = eval metric x100 [record's bootstrap]; vs_fp32_dense = its difference "
                 "to fp32 dense in points [paired bootstrap over the same examples]. same_bs<b> = wall-clock speedup "
                 "against dense at the same precision; fastest_bs<b> = against the fastest dense precision whose "
                 "validation metric is within the tolerance of fp32 dense's (fastest_bs<b>_dense names it), both "
                 "measured in the same interleaved rounds, [95% interval of the median], *_reliable False where the "
                 "interval missed its target.")


def _precisions(df: pd.DataFrame) -> list[str]:
    return sorted(set(df["precision"]), key=lambda p: (ORDER.get(p, 9), p))


def bops_tradeoff(df: pd.DataFrame, methods: list[str], spec: dict) -> pd.DataFrame:
    """Rows of LTP Fig. 7: every point of dense and `methods` at every precision, under the spec's protocol."""
    protocol = spec.get("protocol", "none")
    sub = df[(df["protocol"] == protocol) & df["method"].isin([DENSE, *methods])]
    rows = []
    for _, r in sub.iterrows():
        metric = r["metric"]
        rows.append({"task": r["task"], "method": r["method"], "base_method": r.get("base_method", r["method"]),
                     "precision": r["precision"], "operating_point": r["operating_point"], "protocol": protocol,
                     "metric": metric, "value": 100 * r["primary_value"],
                     "value_low": 100 * r.get(f"metric_{metric}_low", math.nan),
                     "value_high": 100 * r.get(f"metric_{metric}_high", math.nan),
                     "relative_bops": r["relative_bops"], "relative_flops": r["relative_flops"]})
    out = pd.DataFrame(rows)
    if not out.empty:
        out = out.sort_values(["task", "method", "precision", "relative_bops"], kind="stable",
                              key=lambda c: c.map(ORDER) if c.name == "precision" else c).reset_index(drop=True)
    out.attrs["note"] = BOPS_NOTE
    return out


def bops_figure(table: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    """LTP Fig. 7: metric vs relative BOPs (log scale), one panel per task; a method's colour, one marker
    per precision, a line through a method's points at one precision, the bootstrap interval as bars."""
    tasks = list(dict.fromkeys(table["task"]))
    looks = identities(table["method"], bases_from(table))
    with rc_context(STYLE):
        fig, axes = _new_figure(len(tasks), (5.0, 4.0))
        for ax, task in zip(axes, tasks):
            sub = table[table["task"] == task]
            for (method, precision), pts in sub.groupby(["method", "precision"], sort=False):
                pts = pts.sort_values("relative_bops")
                look = looks[method]
                yerr = [(pts["value"] - pts["value_low"]).clip(lower=0), (pts["value_high"] - pts["value"]).clip(lower=0)]
                ax.errorbar(pts["relative_bops"], pts["value"], yerr=yerr, capsize=2, elinewidth=0.8,
                            label=f"{method} ({precision})",
                            **look.line(marker=MARKERS.get(precision, "o"),
                                        linestyle="-" if len(pts) > 1 else "none"))
            ax.set_xscale("log")
            ax.set_xlabel("relative BOPs (× fp32 dense)")
            ax.set_ylabel(f"{sub['metric'].iloc[0]} (×100)")
            ax.set_title(f"{task} ({sub['protocol'].iloc[0]} padding)")
            ax.legend(fontsize=7)
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def _timed(row) -> dict | None:
    """{batch size: timing} of a record timed at every precision (its timings carry `fastest_dense`)."""
    timing = row.get("timing")
    if not isinstance(timing, dict):
        return None
    by = timing.get("by_batch_size") or {}
    if not by or not all("fastest_dense" in t for t in by.values()):
        return None
    return {int(b): t for b, t in by.items()}


def precision_survival(df: pd.DataFrame, methods: list[str], spec: dict) -> pd.DataFrame:
    """One row per (task, method, precision) at the method's point timed at every precision (one per
    training seed: seeds that chose different points give a row each)."""
    protocol = spec.get("protocol", "batch")
    sub = df[df["protocol"] == protocol]
    rows = []
    for task in sorted(sub["task"].unique()):
        at_task = sub[sub["task"] == task]
        dense32 = at_task[(at_task["method"] == DENSE) & (at_task["precision"] == "fp32")]
        for method in [DENSE, *methods]:
            mine = at_task[at_task["method"] == method]
            timed = mine[pd.Series([_timed(r) is not None for _, r in mine.iterrows()], index=mine.index, dtype=bool)]
            for point in dict.fromkeys(timed["operating_point"]):
                at_point = mine[mine["operating_point"] == point]
                for _, r in at_point.sort_values("precision", key=lambda c: c.map(ORDER)).iterrows():
                    rows.append(_survival_row(task, method, protocol, r, dense32.iloc[0] if len(dense32) else None))
    out = pd.DataFrame(rows)
    out.attrs["note"] = SURVIVAL_NOTE
    return out


def _survival_row(task: str, method: str, protocol: str, r, dense32) -> dict:
    metric = r["metric"]
    row = {"task": task, "method": method, "operating_point": r["operating_point"], "precision": r["precision"],
           "protocol": protocol, "metric": metric, "value": 100 * r["primary_value"],
           "value_low": 100 * r.get(f"metric_{metric}_low", math.nan),
           "value_high": 100 * r.get(f"metric_{metric}_high", math.nan),
           "flops_speedup": r["flops_speedup"], "relative_bops": r["relative_bops"]}
    if dense32 is not None:
        c = paired_comparison([r, dense32])
        row |= {"vs_fp32_dense": 100 * c.value, "vs_fp32_dense_low": 100 * c.low, "vs_fp32_dense_high": 100 * c.high}
    for bs, t in sorted((_timed(r) or {}).items()):
        same = t.get("vs_dense_at", {}).get(r["precision"]) or {
            "speedup": t["speedup"], "speedup_low": t.get("speedup_low"), "speedup_high": t.get("speedup_high"),
            "reliable": t.get("reliable")}
        fast = t["fastest_dense"]
        for name, s in (("same", same), ("fastest", fast)):
            row |= {f"{name}_bs{bs}": s["speedup"], f"{name}_bs{bs}_low": s.get("speedup_low"),
                    f"{name}_bs{bs}_high": s.get("speedup_high"), f"{name}_bs{bs}_reliable": s.get("reliable")}
        row[f"fastest_bs{bs}_dense"] = fast["precision"]
        row[f"point_ms_bs{bs}"] = t.get("point_latency_ms")
    return row
