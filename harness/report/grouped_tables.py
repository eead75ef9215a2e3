"""Tables that compare chosen points across padding protocols, from records only.

* `grouped_points_table` - Infor-Coef Table 2 / Table 3: rows declared in the
  config (`rows: [{label, method, knobs, padding, reference}]`); each row
  takes the points of its method whose knobs match `knobs`, and picks the
  fewest-FLOPs one (protocol `none`) whose validation metric is within
  `tolerance` of its reference's (dense, or another row's chosen point, e.g.
  Infor-Coef-4x against the CoFi-s60 model it starts from). Columns:
  parameters kept, padding, FLOPs speedup under the row's padding and under
  every protocol, metric.
* `padding_claim_table` - per task and method, the chosen point's FLOPs
  speedup under `sequence`, `batch` and `none` side by side with the ratios
  sequence/batch and batch/none, and the median of sequence/batch over all
  the method's points: how much fixed-length padding inflates a speedup.
* `policy_cost_table` - every point's policy cost: the share of its FLOPs
  spent in the policy's own products (scorers, predictors, exit heads) and
  the share of its wall time spent in the policy's modules, at batch 1 (where
  timed) and the largest timed batch.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from harness.errors import HarnessError
from harness.record import PROTOCOLS
from harness.report.point_choice import DENSE, dense_row, fastest_of, fastest_within, knobs_match, same_point
from harness.report.tables import metric_x100
from harness.report.timings import wall_columns

GROUPED_NOTE = (
    "Each row: the fewest-FLOPs point (protocol none) among its method's points matching its knobs whose "
    "validation metric is within {tol} (absolute) of its reference's validation metric (dense, or the row named "
    "in `reference`); met=False: none qualified, the most accurate is shown; operating_point 'no point': none "
    "matches the row's knobs (e.g. a CoFi model more than 0.01 off its target sparsity), its values empty. "
    "speedup = dense FLOPs / point FLOPs under the row's padding; speedup_<protocol> under each protocol. "
    "params = encoder parameters kept (embeddings excluded). value = eval metric x100 under the row's padding."
)
PADDING_NOTE = (
    "Point = the fewest-FLOPs point whose validation metric is within {tol} of dense (protocol none; met=False: "
    "the most accurate). speedup_<protocol> = dense FLOPs / point FLOPs, both under that protocol. "
    "seq_over_batch = speedup_sequence / speedup_batch (> 1: fixed-length padding inflates the speedup); "
    "median_seq_over_batch over all the method's points; dense_pad = dense FLOPs under sequence / under none."
)
POLICY_NOTE = (
    "policy_flops_share = FLOPs of the policy's own products (scorers, predictors, exit heads) / the point's FLOPs, "
    "under protocol {protocol}; policy_time_bs<b> = share of the point's forward time inside the policy's "
    "modules at batch b (forward hooks timing the outermost policy-module calls; empty for policies without modules, "
    "whose selection runs as tensor ops; token gathers and masks outside the modules are not counted, and on a GPU "
    "each hook synchronizes, which inflates the share)."
)


def _speedups(df, rec) -> dict:
    out = {}
    for p in PROTOCOLS:
        r = same_point(df, rec, p)
        out[f"speedup_{p}"] = r["flops_speedup"] if r is not None else math.nan
    return out


def grouped_points_table(df: pd.DataFrame, methods: list[str], spec: dict) -> pd.DataFrame:
    tol = float(spec.get("tolerance", 0.01))
    earlier = {DENSE}
    for r in spec.get("rows", []):
        if r.get("reference", DENSE) not in earlier:
            raise HarnessError(
                f"grouped_points row {r['label']!r} names reference {r['reference']!r}, which is no earlier row",
                f"use the label of a row above it (one of: {', '.join(sorted(earlier))})",
            )
        earlier.add(r["label"])
    rows = []
    none = df[df.protocol == "none"]
    for task in sorted(none["task"].unique()):
        base = dense_row(df, task, "none")
        if base is None:
            continue
        chosen_val = {}
        entries = [{"label": "dense", "method": DENSE}] + [r for r in spec.get("rows", []) if r["method"] != DENSE]
        for entry in entries:
            if entry["method"] not in methods and entry["method"] != DENSE:
                continue
            points = none[(none.task == task) & (none.method == entry["method"])]
            points = points[[knobs_match(r, entry.get("knobs")) for _, r in points.iterrows()]]
            ref_label = entry.get("reference", DENSE)
            if entry["method"] == DENSE or ref_label == DENSE:
                ref_val = base["val_primary_value"]
            elif ref_label not in chosen_val:
                ref_label, ref_val = f"{DENSE} ({ref_label} has no point)", base["val_primary_value"]
            else:
                ref_val = chosen_val[ref_label]
            chosen, met = fastest_of(points, ref_val, tol)
            padding = entry.get("padding", "none")
            if chosen is None:
                # a declared row stays in the table when no point matches it (a CoFi model that missed its
                # target sparsity: off_target), so the gap shows instead of a row quietly missing
                if entry["method"] != DENSE:
                    wanted = ", ".join(f"{k}={v}" for k, v in (entry.get("knobs") or {}).items())
                    rows.append({"task": task, "label": entry["label"], "method": entry["method"],
                                 "operating_point": f"no point{' with ' + wanted if wanted else ''}",
                                 "reference": ref_label, "met": False, "padding": padding})
                continue
            chosen_val.setdefault(entry["label"], chosen["val_primary_value"])
            rec = same_point(df, chosen, padding)
            if rec is None:
                continue
            structure = rec.get("structure") or {}
            rows.append({
                "task": task, "label": entry["label"], "method": entry["method"],
                "operating_point": chosen["operating_point"], "reference": ref_label if entry["method"] != DENSE else "-",
                "met": met, "params": structure.get("encoder_params", math.nan),
                "params_kept": structure.get("kept_fraction", math.nan), "padding": padding,
                "speedup": rec["flops_speedup"], **_speedups(df, chosen),
                "metric": rec["metric"], "value": metric_x100(rec["metric"], rec["primary_value"]),
                "val_value": metric_x100(rec["metric"], chosen["val_primary_value"]),
            })
    out = pd.DataFrame(rows)
    out.attrs["note"] = GROUPED_NOTE.format(tol=tol)
    out.attrs["floatfmt"] = {"params": ".0f", "params_kept": ".3f", "value": ".2f", "val_value": ".2f",
                             **{c: ".2f" for c in out.columns if c.startswith("speedup")}}
    return out


def padding_claim_table(df: pd.DataFrame, methods: list[str], spec: dict) -> pd.DataFrame:
    tol = float(spec.get("tolerance", 0.01))
    rows = []
    none = df[df.protocol == "none"]
    for task in sorted(none["task"].unique()):
        base = dense_row(df, task, "none")
        seq = dense_row(df, task, "sequence")
        if base is None:
            continue
        for m in methods:
            points = none[(none.task == task) & (none.method == m)]
            chosen, met = fastest_within(df, task, m, tol, "none")
            if chosen is None:
                continue
            s = _speedups(df, chosen)
            ratios = []
            for _, r in points.iterrows():
                a, b = same_point(df, r, "sequence"), same_point(df, r, "batch")
                if a is not None and b is not None:
                    ratios.append(a["flops_speedup"] / b["flops_speedup"])
            rows.append({
                "task": task, "method": m, "operating_point": chosen["operating_point"], "met": met, **s,
                "seq_over_batch": s["speedup_sequence"] / s["speedup_batch"],
                "batch_over_none": s["speedup_batch"] / s["speedup_none"],
                "median_seq_over_batch": float(pd.Series(ratios).median()) if ratios else math.nan,
                "n_points": len(points),
                "dense_pad": (seq["baseline_flops_per_example"] / base["baseline_flops_per_example"]
                              if seq is not None else math.nan),
            })
    out = pd.DataFrame(rows)
    out.attrs["note"] = PADDING_NOTE.format(tol=tol)
    out.attrs["floatfmt"] = {c: ".2f" for c in out.columns if c.startswith("speedup")} | {
        "seq_over_batch": ".3f", "batch_over_none": ".3f", "median_seq_over_batch": ".3f", "dense_pad": ".2f"}
    return out


def policy_cost_table(df: pd.DataFrame, methods: list[str], spec: dict) -> pd.DataFrame:
    protocol = spec.get("protocol", "batch")
    sub = df[(df.protocol == protocol) & df.method.isin(methods)]
    rows = []
    for _, r in sub.sort_values(["task", "method", "flops_per_example"], ascending=[True, True, False]).iterrows():
        row = {"task": r["task"], "method": r["method"], "operating_point": r["operating_point"],
               "flops_speedup": r["flops_speedup"],
               "policy_flops_share": r["policy_flops_per_example"] / r["flops_per_example"]}
        by_bs = (r.get("timing") or {}).get("by_batch_size", {}) if isinstance(r.get("timing"), dict) else {}
        for b in sorted(by_bs, key=int):
            share = by_bs[b].get("policy_time_share")
            row |= wall_columns(r, b)
            row[f"policy_time_bs{b}"] = math.nan if share is None else share
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["note"] = POLICY_NOTE.format(protocol=protocol)
    out.attrs["floatfmt"] = {c: ".3f" for c in out.columns if c.startswith("policy")} | {
        c: ".2f" for c in out.columns if c.startswith(("wall", "flops"))}
    return out


def tradeoff_points(df: pd.DataFrame, methods: list[str], spec: dict) -> pd.DataFrame:
    """Points for an accuracy-vs-cost figure: every point of `methods` (those
    matching `knobs.<method>` where given) under `protocol`, with x = FLOPs
    speedup or relative FLOPs (`x: speedup | relative_flops`), and dense.
    `series: {method: knob}` draws one line per value of that knob (e.g.
    Infor-Coef's two CoFi sparsity families) instead of one per method."""
    protocol, filters, series = spec.get("protocol", "batch"), spec.get("knobs") or {}, spec.get("series") or {}
    sub = df[df.protocol == protocol]
    rows = []
    for task in sorted(sub["task"].unique()):
        for m in [DENSE, *methods]:
            for _, r in sub[(sub.task == task) & (sub.method == m)].iterrows():
                if not knobs_match(r, filters.get(m)):
                    continue
                split = series.get(m)
                line = f"{m} ({split}={json.loads(r['knobs_json']).get(split)})" if split else m
                rows.append({"task": task, "method": m, "series": line, "operating_point": r["operating_point"],
                             "protocol": protocol,
                             "metric": r["metric"], "value": metric_x100(r["metric"], r["primary_value"]),
                             "flops_speedup": r["flops_speedup"], "relative_flops": 1.0 / r["flops_speedup"],
                             "params_kept": (r.get("structure") or {}).get("kept_fraction", math.nan)})
    out = pd.DataFrame(rows)
    out.attrs["note"] = (f"Every point under protocol {protocol}; value = eval metric x100; relative_flops = "
                         "point FLOPs / dense FLOPs (ratio of the means over examples).")
    out.attrs["floatfmt"] = {"value": ".2f", "flops_speedup": ".2f", "relative_flops": ".3f", "params_kept": ".3f"}
    out.attrs["x"] = spec.get("x", "speedup")
    out.attrs["shade"] = spec.get("shade")
    return out
