"""The claims' measures: each a query of the records that gives one value.

Why this module: a measure is a computation over records (which point a
selection rule picks, its speedup under a protocol, a length bucket's
metric), the report's business, while its name and arguments are the claim
spec's (`harness.claim_spec`, below `run` so the plan can check a rule before
any job runs; it documents what each measure computes). The verdict (holds,
does not hold, inconclusive) is `harness.report.claims`'s. Kept apart, the
rule language stays free of pandas, and a measure can change how it reads the
records (e.g. with intervals) without touching the spec or the verdict table.

Every measure has the signature `(df, task, rule, results_dir) -> Reading`
and raises `Inconclusive` when what it needs is not in the records. Points
are selected with the report's own rules (`harness.report.point_choice`:
`fastest_within`, `nearest_speedup`, `same_point`, and its filter of one
method's records on a task under a protocol), so a claim reads the same point
the tables show.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.claim_spec import BUCKETS, MEASURES, TESTS
from harness.pareto import pareto_front
from harness.report.buckets import FIXED_BUCKETS, bucket_table, quartile_buckets
from harness.report.load import per_example
from harness.report.point_choice import dense_row, fastest_within, method_points, nearest_speedup, same_point
from harness.report.tables import paired_comparison
from harness.report.timings import MISSING, timed_sizes, wall


class Inconclusive(Exception):
    """What the measure needs is not in the records (the message says what)."""


@dataclass(frozen=True)
class Reading:
    """A measure's value, its interval and what it rests on (the point, its speedup, its metric)."""
    value: float  # NaN: the claim's condition cannot be met (e.g. no point within tolerance)
    detail: str
    fails: str = ""  # why NaN means "does not hold"
    low: float = math.nan  # the value's interval, on its scale; NaN: no interval (see `noise`)
    high: float = math.nan
    n: int | None = None  # the eval examples (or timing rounds) the interval is drawn from
    noise: str = ""  # what the interval holds, and what it leaves out

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
EXACT = "exact: FLOPs are counted, not sampled (the point's choice is not in it)"


def fmt(x: float) -> str:
    """A measured value as the table shows it (`n/a` when there is none)."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


# --------------------------------------------------------------------------- helpers


def _ran(df, task, method) -> bool:
    """Whether `method` has any record on `task` (under any protocol)."""
    return bool(((df["task"] == task) & (df["method"] == method)).any())


def _chosen(df, task, method, tolerance, select="none"):
    """(row, met) of `fastest_within`, or Inconclusive when nothing is there."""
    if not _ran(df, task, method):
        raise Inconclusive(f"no records of {method} on {task}")
    if dense_row(df, task, select) is None:
        raise Inconclusive(f"no dense record on {task}")
    row, met = fastest_within(df, task, method, tolerance, select)
    if row is None:
        raise Inconclusive(f"no records of {method} on {task} under {select}")
    return row, met


def _interval(c) -> str:
    """A paired bootstrap interval in points (x100), as the detail text shows it."""
    return f"[{100 * c.low:+.1f}, {100 * c.high:+.1f}]"


def _seeds(row) -> int:
    n = row.get("n_seeds", 1) if hasattr(row, "get") else 1
    return int(n) if n is not None and not (isinstance(n, float) and math.isnan(n)) else 1


def training_floor(df, task, rows) -> tuple[float, str]:
    """(half-width as a fraction, what it is) of the training noise added to a comparison of `rows`'
    metrics. Measured on dense alone: with several dense seeds on the task (same splits), their sample
    standard deviation sd stands for every method's (an assumption, stated in the table), and a
    comparison of rows holding n_1, n_2, ... seeds each gets 1.96 x sd x sqrt(1/n_1 + 1/n_2 + ...).
    With one dense seed there is nothing to measure it with: 0, and the text says the interval leaves
    training noise out."""
    dense = dense_row(df, task, "none") if task is not None else None
    n_dense = _seeds(dense) if dense is not None else 1
    sd = float(dense.get("primary_value_sd", math.nan)) if dense is not None else math.nan
    if n_dense < 2 or not math.isfinite(sd):
        return 0.0, "one training seed: training noise is not in the interval"
    half = Z95 * sd * math.sqrt(sum(1.0 / _seeds(r) for r in rows))
    return half, (f"training noise from dense's {n_dense} seeds (sd {100 * sd:.2f} pts, assumed for every "
                  f"method) widens it by {100 * half:.1f} pts")


def widened(value: float, low: float, high: float, half: float) -> tuple[float, float]:
    """An interval around `value` with an independent +-half added in quadrature to each side."""
    return value - math.hypot(value - low, half), value + math.hypot(high - value, half)


def _metric_reading(df, task, value, c, rows, detail, scale=100.0, n=None, extra="") -> Reading:
    """A metric comparison (value on `scale`; `c` its paired bootstrap as fractions) as a Reading whose
    interval adds the training floor."""
    half, what = training_floor(df, task, rows)
    low, high = widened(value, scale * c.low, scale * c.high, scale * half)
    noise = f"paired bootstrap over {n or c.n} eval examples; {what}{extra}"
    return Reading(value, detail, low=low, high=high, n=n or c.n, noise=noise)


def _flag(met: bool) -> str:
    return "" if met else " (none within tolerance: the most accurate point)"


def _under(df, row, protocol):
    rec = same_point(df, row, protocol)
    if rec is None:
        raise Inconclusive(f"{row['method']} {row['operating_point']} has no record under {protocol}")
    return rec


def _wall_reading(rec, batch_size, scale=1.0) -> tuple[float, float, float, int, str]:
    """(speedup, low, high, rounds, noise) of a timed point at `batch_size` (default: its largest), read by
    `harness.report.timings.wall` (the timing's own interval of its median ratio over interleaved rounds),
    each divided by `scale`. Inconclusive where the point was not timed there or its timing missed its target."""
    sizes = timed_sizes(rec)
    if not sizes:
        raise Inconclusive(f"{rec['method']} {rec['operating_point']} was not timed under {rec['protocol']}")
    size = str(batch_size) if batch_size is not None else str(max(sizes))
    w = wall(rec, size)
    if w is MISSING:
        raise Inconclusive(f"{rec['method']} was not timed at batch {size} "
                           f"(timed: {', '.join(sorted(str(b) for b in sizes))})")
    if w.reliable is False:
        raise Inconclusive(f"{rec['method']} {rec['operating_point']}'s timing at batch {size} under {rec['protocol']} "
                           f"missed its target ({w.speedup:.2f}x [{w.low:.2f}, {w.high:.2f}]): re-time it on a quiet "
                           "machine (results/tables/unreliable_timings)")
    return (w.speedup / scale, w.low / scale, w.high / scale, w.rounds,
            f"the timing's interval of the median speedup over {w.rounds} interleaved rounds (batch {size})")


def _tolerance_interval(df, task, method, tolerance, protocol, value) -> tuple[float, float, str]:
    """The FLOPs speedup at a tolerance, as an interval: from the fastest point whose eval metric is
    within `tolerance` of dense over its whole paired interval (with the training floor), to the fastest
    whose interval reaches within it (dense itself, 1x, is always within). The validation choice's own
    value is kept inside. How far "within 1 point" can be told from "within 2" on these examples."""
    dense = dense_row(df, task, "none")
    sure, maybe = [1.0], [1.0]
    what = ""
    for _, row in method_points(df, task, method, "none").iterrows():
        if not math.isfinite(row["primary_value"]):
            continue
        c = paired_comparison([row, dense])
        half, what = training_floor(df, task, [row, dense])
        gap = row["primary_value"] - dense["primary_value"]
        low, high = widened(gap, c.low, c.high, half)
        rec = row if protocol == "none" else same_point(df, row, protocol)
        if rec is None:
            continue
        speed = float(rec["flops_speedup"])
        if low >= -tolerance:
            sure.append(speed)
        if high >= -tolerance:
            maybe.append(speed)
    return (min(max(sure), value), max(max(maybe), value),
            f"the FLOPs speedup of points surely / possibly within {tolerance:g} of dense on eval (paired "
            f"bootstrap{'; ' + what if what else ''})")


def _speedup(df, task, a) -> Reading:
    row, met = _chosen(df, task, a["method"], a.get("tolerance", 0.01))
    tol = a.get("tolerance", 0.01)
    if not met:
        return Reading(math.nan, f"{a['method']}: no point within {tol:g} of dense",
                       f"no point of {a['method']} is within {tol:g} of dense on validation")
    protocol = a.get("protocol", "none")
    rec = _under(df, row, protocol)
    if a.get("quantity", "flops") == "wall":
        value, low, high, n, noise = _wall_reading(rec, a.get("batch_size"))
        what = "wall-clock"
    else:
        value, what, n = float(rec["flops_speedup"]), "FLOPs", int(row["n_eval"])
        if a.get("unreached") == "inconclusive":
            _reachable(df, task, a, value)
        low, high, noise = _tolerance_interval(df, task, a["method"], tol, protocol, value)
    dense = dense_row(df, task, "none")
    acc = 100 * (row["primary_value"] - dense["primary_value"])
    return Reading(value, f"{a['method']} {row['operating_point']}: {what} {value:.2f}x under "
                          f"{protocol}, eval {acc:+.1f} pts vs dense "
                          f"{_interval(paired_comparison([row, dense]))}", low=low, high=high, n=n, noise=noise)


def _reachable(df, task, a, value) -> None:
    """With `unreached: inconclusive`: a lower bound on a FLOPs speedup that
    no point of the method reaches at any accuracy was never tested (the
    sweep, or the backbone, e.g. 6 layers for early exit, stops short of it),
    so the claim is inconclusive rather than failed. Default (`fails`): a
    bound out of reach is a failure like any other."""
    bound = a.get("at_least", a.get("above"))
    if bound is None or value >= bound:
        return
    rows = method_points(df, task, a["method"], a.get("protocol", "none"))
    fastest = float(rows["flops_speedup"].max())
    if fastest < bound:
        raise Inconclusive(f"no point of {a['method']} reaches {bound:g}x at any accuracy (its fastest: "
                           f"{fastest:.2f}x under {a.get('protocol', 'none')}), so the claim was not tested")


def _m_speedup_within(df, task, a, results_dir) -> Reading:
    return _speedup(df, task, a)


def _m_speedup_margin(df, task, a, results_dir) -> Reading:
    plain = {k: v for k, v in a.items() if k not in TESTS}  # the margin's test is not a speedup bound
    mine = _speedup(df, task, plain)
    others = [_speedup(df, task, {**plain, "method": b}) for b in a["baselines"]]
    if not math.isfinite(mine.value):
        return Reading(math.nan, mine.detail, mine.fails)
    finite = [o for o in others if math.isfinite(o.value)]
    best = max((o.value for o in finite), default=1.0)  # none within: dense, 1x
    ends = lambda r: (r.low, r.high) if r.has_interval else (r.value, r.value)  # noqa: E731
    best_low = max((ends(o)[0] for o in finite), default=1.0)
    best_high = max((ends(o)[1] for o in finite), default=1.0)
    low, high = ends(mine)[0] - best_high, ends(mine)[1] - best_low
    return Reading(mine.value - best, "; ".join([mine.detail, *(o.detail for o in others)]), low=low, high=high,
                   n=mine.n, noise=f"each side's interval ({mine.noise}), combined at their extremes")


def _front(df, task, method, protocol):
    rows = method_points(df, task, method, protocol)
    if rows.empty:
        raise Inconclusive(f"no records of {method} on {task} under {protocol}")
    rows = rows[rows["primary_value"].notna()]
    if rows.empty:
        raise Inconclusive(f"{method} has no metric value on {task}")
    cost = (1.0 / rows["flops_speedup"]).to_numpy()
    value = (100 * rows["primary_value"]).to_numpy()
    keep = pareto_front(list(cost), list(value))
    return cost[keep], value[keep], cost, value, rows.iloc[list(keep)], rows


def _m_metric_gap(df, task, a, results_dir) -> Reading:
    protocol = a.get("protocol", "none")
    fc, fv, _, _, front, _ = _front(df, task, a["method"], protocol)
    _, _, bc, bv, _, base_rows = _front(df, task, a["baseline"], protocol)
    inside = bc >= fc.min()
    if not inside.any():
        raise Inconclusive(f"{a['baseline']}'s relative FLOPs ({fmt(bc.min())}-{fmt(bc.max())}) are all below "
                           f"{a['method']}'s cheapest point ({fmt(fc.min())})")
    # what the method reaches at a cost: the best eval metric of its points at that cost or below (a step, so
    # it is never credited with an accuracy between two of its points that none of them has)
    at = np.searchsorted(fc, bc[inside], side="right") - 1
    reached = fv[at]
    gaps = reached - bv[inside]
    statistic = a.get("statistic", "max")
    value = float(gaps.max() if statistic == "max" else gaps.mean())
    # the same statistic over resampled eval examples, each gap's two points fixed at the ones chosen above
    mine = [front.iloc[i] for i in at]
    theirs = [base_rows.iloc[i] for i in np.nonzero(inside)[0]]
    k = len(mine)

    def combine(*metrics):
        g = np.stack([metrics[i] - metrics[k + i] for i in range(k)])
        return g.max(0) if statistic == "max" else g.mean(0)

    c = paired_comparison(mine + theirs, combine=combine)
    return _metric_reading(df, task, value, c, [mine[0], theirs[0]],
                           f"{a['method']} - {a['baseline']} at {int(inside.sum())} equal-FLOPs points "
                           f"(relative FLOPs {fmt(bc[inside].min())}-{fmt(bc[inside].max())}): "
                           f"max {gaps.max():+.2f}, mean {gaps.mean():+.2f} pts; the {statistic} is the value")


def _m_protocol_ratio(df, task, a, results_dir) -> Reading:
    row, met = _chosen(df, task, a["method"], a.get("tolerance", 0.01))
    num, den = a.get("numerator", "sequence"), a.get("denominator", "batch")
    top, bottom = float(_under(df, row, num)["flops_speedup"]), float(_under(df, row, den)["flops_speedup"])
    return Reading(top / bottom, f"{a['method']} {row['operating_point']}{_flag(met)}: {num} {top:.2f}x / "
                                 f"{den} {bottom:.2f}x", n=int(row["n_eval"]), noise=EXACT)


def _buckets(df, task, a):
    row, met = _chosen(df, task, a["method"], a.get("tolerance", 0.01))
    return row, met, bucket_table(row, FIXED_BUCKETS)


def _bucket(table, name, minimum, task):
    b = table.iloc[BUCKETS[name]]
    if b["n"] < minimum:
        raise Inconclusive(f"needs inputs in the {b['bucket']} bucket: {task} has {int(b['n'])} "
                           f"of the {minimum} eval examples asked")
    return float(b["speedup"]), b["bucket"]


def _m_bucket_speedup_ratio(df, task, a, results_dir) -> Reading:
    row, met, table = _buckets(df, task, a)
    minimum = a.get("min_examples", 20)
    top, top_name = _bucket(table, a["numerator"], minimum, task)
    bottom, bottom_name = _bucket(table, a["denominator"], minimum, task)
    return Reading(top / bottom, f"{a['method']} {row['operating_point']}{_flag(met)}: {top_name} {top:.2f}x / "
                                 f"{bottom_name} {bottom:.2f}x", n=int(row["n_eval"]), noise=EXACT)


def _m_bucket_margin(df, task, a, results_dir) -> Reading:
    minimum = a.get("min_examples", 20)
    tables = {m: _buckets(df, task, {**a, "method": m})[2] for m in [a["method"], *a["baselines"]]}
    margins, parts = [], []
    for name in BUCKETS:
        try:
            mine, label = _bucket(tables[a["method"]], name, minimum, task)
        except Inconclusive:
            continue
        best = max(_bucket(tables[b], name, 0, task)[0] for b in a["baselines"])
        margins.append(mine - best)
        parts.append(f"{label}: {mine:.2f}x vs {best:.2f}x")
    if not margins:
        raise Inconclusive(f"no length bucket of {task} holds {minimum} eval examples")
    return Reading(min(margins), f"{a['method']} vs max of {', '.join(a['baselines'])}: " + "; ".join(parts),
                   noise=EXACT)


def _long_drop(df, task, method, tolerance):
    row, met = _chosen(df, task, method, tolerance)
    dense = dense_row(df, task, "none")
    buckets = quartile_buckets(per_example(dense)["length"])[-1:]
    mine, base = bucket_table(row, buckets).iloc[0], bucket_table(dense, buckets).iloc[0]
    if mine["n"] == 0:
        raise Inconclusive(f"{task}'s longest quarter is empty")
    drop = float(mine["value"] - base["value"])
    bucket = tuple(float(x) for x in buckets[0][1:])
    c = paired_comparison([row, dense], buckets=bucket)
    return drop, (f"{method} {row['operating_point']}{_flag(met)}: {drop:+.1f} pts vs dense on the longest quarter "
                  f"(n={int(mine['n'])}) {_interval(c)}"), row, dense, bucket, c


def _m_long_quarter_drop(df, task, a, results_dir) -> Reading:
    tol = a.get("tolerance", 0.01)
    drop, detail, row, dense, bucket, c = _long_drop(df, task, a["method"], tol)
    if not a.get("versus"):
        return _metric_reading(df, task, drop, c, [row, dense], detail, extra=" (the longest quarter)")
    other, other_detail, other_row, _, _, _ = _long_drop(df, task, a["versus"], tol)
    # (a - dense) - (b - dense) on the same resampled long examples
    c = paired_comparison([row, other_row, dense], combine=lambda m, o, d: (m - d) - (o - d), buckets=bucket)
    return _metric_reading(df, task, drop - other, c, [row, other_row],
                           f"{detail}; {other_detail}; the difference is the value", extra=" (the longest quarter)")


def _at_knobs(df, task, a):
    protocol = a.get("protocol", "none")
    rows = method_points(df, task, a["method"], protocol)
    if rows.empty:
        raise Inconclusive(f"no records of {a['method']} on {task}")
    want = a["knobs"]
    match = rows[[all(_close(json.loads(k).get(n), v) for n, v in want.items()) for k in rows["knobs_json"]]]
    if match.empty:
        raise Inconclusive(f"{a['method']} has no point with {want} on {task}")
    dense = dense_row(df, task, protocol)
    if dense is None:
        raise Inconclusive(f"no dense record on {task}")
    return match.iloc[0], dense


def _close(have, want) -> bool:
    try:
        return have is not None and abs(float(have) - float(want)) < 1e-9
    except (TypeError, ValueError):
        return have == want


def _m_metric_retained(df, task, a, results_dir) -> Reading:
    from harness.measure.bootstrap import ratio

    row, dense = _at_knobs(df, task, a)
    value = float(row["primary_value"] / dense["primary_value"])
    c = paired_comparison([row, dense], combine=ratio)
    half, what = training_floor(df, task, [row, dense])
    base = abs(float(dense["primary_value"]))
    low, high = widened(value, c.low, c.high, half / base if base > 0 else 0.0)
    return Reading(value, f"{a['method']} {row['operating_point']}: {100 * row['primary_value']:.1f} of dense "
                          f"{100 * dense['primary_value']:.1f} at {row['flops_speedup']:.2f}x", low=low, high=high,
                   n=c.n, noise=f"paired bootstrap of the ratio over {c.n} eval examples; {what}")


def _m_speedup_at(df, task, a, results_dir) -> Reading:
    row, _ = _at_knobs(df, task, a)
    detail = lambda what, v: (f"{a['method']} {row['operating_point']}: {what} {v:.2f}x under "  # noqa: E731
                              f"{a.get('protocol', 'none')}")
    if a.get("quantity", "flops") == "wall":
        value, low, high, n, noise = _wall_reading(row, a.get("batch_size"))
        return Reading(value, detail("wall-clock", value), low=low, high=high, n=n, noise=noise)
    value = float(row["flops_speedup"])
    return Reading(value, detail("FLOPs", value), n=int(row["n_eval"]), noise=EXACT)


def _m_selection_cost_ratio(df, task, a, results_dir) -> Reading:
    path = Path(results_dir) / "benchmarks" / "selection_cost.json"
    if not path.is_file():
        raise Inconclusive("the selection-cost benchmark has not run")
    rows = pd.DataFrame(json.loads(path.read_text())["rows"])
    column = a.get("column", "ratio_topk_torch_over_threshold")
    if column not in rows.columns:
        raise Inconclusive(f"the benchmark has no column {column!r}")
    at = rows[rows["length"] == a["length"]]
    if at.empty:
        raise Inconclusive(f"the benchmark has no length {a['length']} (has {sorted(rows['length'].unique())})")
    value = float(at[column].median())
    return Reading(value, f"n={a['length']}: {column} median {value:.2f} over ratios "
                          f"{', '.join(f'{r:g}' for r in at['ratio'])}",
                   noise="no interval: the benchmark keeps medians of torch.utils.benchmark runs only")


def _m_wall_over_flops(df, task, a, results_dir) -> Reading:
    protocol = a.get("protocol", "none")
    if not _ran(df, task, a["method"]):
        raise Inconclusive(f"no records of {a['method']} on {task}")
    target = a.get("target", 2.0)
    row = nearest_speedup(df, task, a["method"], target, "none")
    if row is None:
        raise Inconclusive(f"no records of {a['method']} on {task} under none")
    if abs(row["flops_speedup"] - target) > 0.25 * target:
        raise Inconclusive(f"no point of {a['method']} is near {target:g}x (nearest: {row['flops_speedup']:.2f}x)")
    rec = _under(df, row, protocol)
    flops = float(rec["flops_speedup"])
    value, low, high, n, noise = _wall_reading(rec, a.get("batch_size"), scale=flops)
    return Reading(value, f"{a['method']} {row['operating_point']}: wall-clock {value * flops:.2f}x for FLOPs "
                          f"{flops:.2f}x under {protocol}", low=low, high=high, n=n, noise=noise + " (FLOPs exact)")


def _m_metric_vs_dense(df, task, a, results_dir) -> Reading:
    protocol = a.get("protocol", "none")
    row, met = _chosen(df, task, a["method"], a.get("tolerance", 0.01), protocol)
    dense = dense_row(df, task, protocol)
    value = 100 * float(row["primary_value"] - dense["primary_value"])
    c = paired_comparison([row, dense])
    precision = row.get("precision", "fp32")
    bops = row.get("relative_bops")
    at = f", relative BOPs {float(bops):.3f}" if bops is not None and math.isfinite(float(bops)) else ""
    return _metric_reading(df, task, value, c, [row, dense],
                           f"{a['method']} {row['operating_point']}{_flag(met)} in {precision}: "
                           f"{100 * row['primary_value']:.1f} vs dense {100 * dense['primary_value']:.1f} (fp32) "
                           f"at {row['flops_speedup']:.2f}x FLOPs{at} under {protocol}")


COMPUTE: dict[str, Callable[..., Reading]] = {
    "speedup_within": _m_speedup_within, "speedup_margin": _m_speedup_margin, "metric_gap": _m_metric_gap,
    "protocol_ratio": _m_protocol_ratio, "bucket_speedup_ratio": _m_bucket_speedup_ratio,
    "bucket_margin": _m_bucket_margin, "long_quarter_drop": _m_long_quarter_drop,
    "metric_retained": _m_metric_retained, "speedup_at": _m_speedup_at,
    "selection_cost_ratio": _m_selection_cost_ratio, "wall_over_flops": _m_wall_over_flops,
    "metric_vs_dense": _m_metric_vs_dense,
}
assert COMPUTE.keys() == MEASURES.keys(), "every measure of the spec is computed here, and no other"


def read(df: pd.DataFrame, task: str | None, rule: dict, results_dir) -> Reading:
    """The value of one (checked, single) rule's measure on `task` (None: a task-independent measure), on
    the fp32 records, or with the rule's `precision`, its method's records at that precision."""
    return COMPUTE[rule["measure"]](at_precision(df, rule.get("method"), rule.get("precision", "fp32")), task, rule,
                                    results_dir)


def at_precision(df: pd.DataFrame, method: str | None, precision: str) -> pd.DataFrame:
    """The records a rule reads: `method`'s at `precision`, every other method's at fp32."""
    if "precision" not in df.columns:
        return df
    mine = (df["method"] == method) if method else pd.Series(False, index=df.index)
    return df[(mine & (df["precision"] == precision)) | (~mine & (df["precision"] == "fp32"))]
