"""The papers' comparison tables, from the records frame only.

* `selected_points_table` - LTP Table 1 / Magic Pyramid Table 2: per task the
  dense baseline and each method's point chosen by `fastest_within` on the
  validation metric under protocol `none`, then that same point's GFLOPs and
  FLOPs speedup under every protocol (to show how padding inflates speedups).
* `wallclock_table` - LTP Fig. 6: for each method's point nearest a FLOPs
  speedup target, the measured throughput speedup over dense per batch size
  and protocol, next to the FLOPs speedup, and their ratio.
"""
from __future__ import annotations

import math

import pandas as pd

from harness.record import PROTOCOLS
from harness.report.point_choice import dense_row, fastest_within, nearest_speedup, only_points, same_point
from harness.report.seeds import SEED_NOTE, several_seeds
from harness.report.tables import metric_x100, paired_note, seed_columns, vs_dense_columns
from harness.report.timings import wall_columns

SELECT_NOTE = (
    "Each method's point is the fewest-FLOPs point whose validation metric is within {tol} (absolute, "
    "metric scale) of the dense validation metric, chosen under protocol none; met=False marks tasks where "
    "no point qualified (the most accurate point is shown). Metrics are eval-split values x100. "
    "GFLOPs per example and speedup = dense FLOPs / method FLOPs under each protocol."
)
WALLCLOCK_NOTE = (
    "Point = the method's point whose FLOPs speedup under protocol none is nearest {target}x. "
    "wall_bs<b> = wall-clock speedup over the dense model at batch size b under the protocol, timed side by side "
    "in one process on the same batches (median over interleaved rounds; [low, high] = its 95% interval); "
    "ratio = wall-clock speedup at the largest batch size / FLOPs speedup under that protocol. precision = the "
    "records' (the experiment's `precision`, default fp32; dense at the same precision); fastest_bs<b> = where the "
    "point was also timed at every precision, its speedup over the fastest dense precision within tolerance "
    "(fastest_bs<b>_dense names it)."
)


def selected_points_table(
    df: pd.DataFrame, methods: list[str], tolerance: float = 0.01, protocols=PROTOCOLS, extra_metrics=(),
    knobs: dict | None = None,
) -> pd.DataFrame:
    """See the module doc; `knobs` ({method: {knob: value}}) chooses among only the matching points of a
    method (Magic Pyramid Table 2's DistilBERT column: the student of one shape); `extra_metrics` (e.g. SQuAD's exact_match) adds
    the dense and the chosen point's eval value of each (x100) as columns.
    From an `over_seeds` frame with several training seeds, dense and value
    are means over seeds, each followed by its t interval over seeds
    (`dense_seed_low/high`, `value_seed_low/high`) and the seeds behind it
    (`dense_n_seeds`, `n_seeds`); vs_dense's paired interval then compares the
    seed means on the same resampled examples. One seed: no extra columns."""
    several = several_seeds(df)
    df = only_points(df, knobs)
    rows = []
    for task in sorted(df["task"].unique()):
        base = dense_row(df, task, "none")
        if base is None:
            continue
        for method in methods:
            chosen, met = fastest_within(df, task, method, tolerance, "none")
            if chosen is None:
                continue
            row = {
                "task": task,
                "metric": base["metric"],
                "dense": metric_x100(base["metric"], base["primary_value"]),
                **(seed_columns(base, "dense") if several else {}),
                "method": method,
                "value": metric_x100(base["metric"], chosen["primary_value"]),
                **(seed_columns(chosen, "value", base["metric"]) if several else {}),
                **vs_dense_columns(chosen, base),
                "operating_point": chosen["operating_point"],
                "met": met,
            }
            for name in extra_metrics:
                row[f"dense_{name}"] = metric_x100(name, base.get(f"metric_{name}", math.nan))
                row[name] = metric_x100(name, chosen.get(f"metric_{name}", math.nan))
            for p in protocols:
                rec = same_point(df, chosen, p)
                d = dense_row(df, task, p)
                row[f"dense_gflops_{p}"] = d["flops_per_example"] / 1e9 if d is not None else math.nan
                row[f"gflops_{p}"] = rec["flops_per_example"] / 1e9 if rec is not None else math.nan
                row[f"speedup_{p}"] = rec["flops_speedup"] if rec is not None else math.nan
            rows.append(row)
    out = pd.DataFrame(rows)
    bases = [r for r in (dense_row(df, t, "none") for t in sorted(df["task"].unique())) if r is not None]
    out.attrs["note"] = SELECT_NOTE.format(tol=tolerance) + (
        " vs_dense = value - dense (points); [vs_dense_low, vs_dense_high] = its " + paired_note(bases)) + (
        " " + SEED_NOTE if several else "")
    out.attrs["floatfmt"] = {"dense": ".2f", "value": ".2f", **{c: ".2f" for c in out.columns if "_seed_" in c}, **{c: ".2f" for c in out.columns if c.startswith("vs_")},
                             **{c: ".3f" for c in out.columns if "gflops" in c},
                             **{c: ".2f" for n in extra_metrics for c in (n, f"dense_{n}")},
                             **{c: ".2f" for c in out.columns if c.startswith("speedup")}}
    return out


def wallclock_table(df: pd.DataFrame, methods: list[str], target: float = 2.0, protocols=("batch", "none")):
    rows = []
    for task in sorted(df["task"].unique()):
        for method in methods:
            point = nearest_speedup(df, task, method, target, "none")
            if point is None:
                continue
            for p in protocols:
                rec = same_point(df, point, p)
                if rec is None or not rec.get("timing"):
                    continue
                by_bs = rec["timing"]["by_batch_size"]
                row = {"task": task, "method": method, "operating_point": point["operating_point"], "protocol": p,
                       "precision": rec.get("precision", "fp32"), "flops_speedup": rec["flops_speedup"]}
                sizes = sorted(int(b) for b in by_bs)
                for b in sizes:
                    row |= wall_columns(rec, b, interval=True)
                    fastest = by_bs[str(b)].get("fastest_dense")  # a point also timed at every precision
                    if fastest:
                        row[f"fastest_bs{b}"] = fastest["speedup"]
                        row[f"fastest_bs{b}_dense"] = fastest["precision"]
                row["ratio"] = row[f"wall_bs{sizes[-1]}"] / rec["flops_speedup"] if sizes else math.nan
                rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["note"] = WALLCLOCK_NOTE.format(target=target)
    out.attrs["floatfmt"] = {c: ".2f" for c in out.columns if c.startswith(("wall", "flops", "ratio"))}
    return out
