"""The papers' claims as verdicts computed from records (`kind: claims`).

A claim is config, never code: an id, its source (paper, table or figure),
the statement, the paper's number (text), optionally the tasks it is tested
on, and a rule fixed before the run. A rule is one *measure* (a named
computation over the records, parameterised by the methods, knobs and
protocols the config names) and one *test* of its value (`at_least`,
`at_most`, `above`, `below`), or `all: [rule, ...]`, which holds when every
part holds. The core names no method: the measures below are generic.

Per (claim, task) the verdict is `holds`, `does not hold` or `inconclusive`,
with the reason: a measure is inconclusive when what it needs is not in the
records (the method was not run on the task, a length bucket holds too few
examples, the cost ranges of two methods do not overlap, the benchmark did
not run). Values are on the scales the tables use: speedups as ratios,
metrics x100 (so a difference is in points), shares as fractions.

Measures (arguments in brackets, defaults after `=`):

* `speedup_within` [method, tolerance=0.01, protocol=none, quantity=flops,
  batch_size]: the point chosen by `fastest_within` (validation metric within
  `tolerance` of dense, chosen under `none`) and its FLOPs speedup under
  `protocol`, or with `quantity: wall` its wall-clock speedup at
  `batch_size`. No point within tolerance: the claim does not hold. With
  `unreached: inconclusive`, a lower bound on the FLOPs speedup that no
  point reaches at any accuracy is inconclusive (the sweep, or the backbone,
  stops short of what is tested); by default it fails.
* `speedup_margin` [method, baselines, tolerance, protocol]: the method's
  `speedup_within` minus the largest of the baselines'.
* `metric_gap` [method, baseline, protocol=none, statistic=max]: the
  method's eval metric minus the baseline's at equal FLOPs: at each baseline
  point no cheaper than the method's cheapest, the best eval metric of the
  method's points at that cost or below (a step: never an accuracy between
  two points that neither has); the max (or mean) over them. No selection
  is made, so nothing is chosen on eval.
* `protocol_ratio` [method, tolerance, numerator=sequence,
  denominator=batch]: the chosen point's speedup under one protocol over
  another.
* `bucket_speedup_ratio` [method, tolerance, numerator, denominator,
  min_examples=20]: the chosen point's FLOPs speedup on one fixed length
  bucket (short <=35, middle 36-70, long >70 tokens) over another's.
* `bucket_margin` [method, baselines, tolerance, min_examples]: the smallest
  over buckets (with enough examples) of the method's bucket speedup minus
  the baselines' largest.
* `long_quarter_drop` [method, tolerance, versus]: the chosen point's eval
  metric minus dense's on the eval split's longest quarter (> Q3 of length);
  with `versus`, that drop minus the other method's drop.
* `metric_retained` [method, knobs, protocol=none]: the eval metric of the
  method's point matching `knobs` over dense's; `speedup_at` [+ quantity,
  batch_size] the same point's FLOPs (or wall-clock) speedup.
* `selection_cost_ratio` [length, column=ratio_topk_torch_over_threshold]:
  the selection-cost benchmark's top-k time over threshold time at one input
  length, the median over retain ratios (task-independent).
* `wall_over_flops` [method, target=2.0, protocol=none, batch_size]: at the
  point whose FLOPs speedup is nearest `target` (inconclusive if none is
  within 25% of it), the wall-clock speedup over the FLOPs speedup.

`protocol_ratio`, the bucket measures and `long_quarter_drop` read the
`fastest_within` point and say when none met the tolerance (the most
accurate point is read then). A claim without `tasks` is tested on every
task that has records of all the methods its rule reads.
"""
from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.pareto import pareto_front
from harness.report.buckets import FIXED_BUCKETS, bucket_table, quartile_buckets
from harness.report.load import per_example
from harness.report.rules import dense_row, fastest_within, nearest_speedup, same_point

TESTS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "at_least": (">=", operator.ge), "at_most": ("<=", operator.le),
    "above": (">", operator.gt), "below": ("<", operator.lt),
}
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
BUCKETS = {"short": 0, "middle": 1, "long": 2}
NOTE = ("One row per claim and task. ours = the rule's measured value(s) (speedups as ratios, metrics x100 so "
        "differences are points); rule = the test fixed in the config before the run; verdict: holds / does not "
        "hold / inconclusive, with the reason. Points are chosen on the validation split; values are eval-split "
        "values. Everything is computed from the records (harness/report/claims.py).")


class Inconclusive(Exception):
    """What the measure needs is not in the records (the message says what)."""


@dataclass(frozen=True)
class Reading:
    value: float  # NaN: the claim's condition cannot be met (e.g. no point within tolerance)
    detail: str
    fails: str = ""  # why NaN means "does not hold"


def _fmt(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


# --------------------------------------------------------------------------- measure helpers


def _chosen(df, task, method, tolerance, select="none"):
    """(row, met) of `fastest_within`, or Inconclusive when nothing is there."""
    if not ((df["task"] == task) & (df["method"] == method)).any():
        raise Inconclusive(f"no records of {method} on {task}")
    if dense_row(df, task, select) is None:
        raise Inconclusive(f"no dense record on {task}")
    row, met = fastest_within(df, task, method, tolerance, select)
    if row is None:
        raise Inconclusive(f"no records of {method} on {task} under {select}")
    return row, met


def _flag(met: bool) -> str:
    return "" if met else " (none within tolerance: the most accurate point)"


def _under(df, row, protocol):
    rec = same_point(df, row, protocol)
    if rec is None:
        raise Inconclusive(f"{row['method']} {row['operating_point']} has no record under {protocol}")
    return rec


def _wall(rec, batch_size) -> float:
    timing = rec.get("timing")
    by_bs = (timing.get("by_batch_size") or {}) if isinstance(timing, dict) else {}
    if not by_bs:
        raise Inconclusive(f"{rec['method']} {rec['operating_point']} was not timed under {rec['protocol']}")
    size = str(batch_size) if batch_size is not None else str(max(int(b) for b in by_bs))
    if size not in by_bs:
        raise Inconclusive(f"{rec['method']} was not timed at batch {size} (timed: {', '.join(sorted(by_bs))})")
    return float(by_bs[size]["speedup"])


def _speedup(df, task, a) -> Reading:
    row, met = _chosen(df, task, a["method"], a.get("tolerance", 0.01))
    tol = a.get("tolerance", 0.01)
    if not met:
        return Reading(math.nan, f"{a['method']}: no point within {tol:g} of dense",
                       f"no point of {a['method']} is within {tol:g} of dense on validation")
    rec = _under(df, row, a.get("protocol", "none"))
    if a.get("quantity", "flops") == "wall":
        value, what = _wall(rec, a.get("batch_size")), "wall-clock"
    else:
        value, what = float(rec["flops_speedup"]), "FLOPs"
        if a.get("unreached") == "inconclusive":
            _reachable(df, task, a, value)
    acc = 100 * (row["primary_value"] - dense_row(df, task, "none")["primary_value"])
    return Reading(value, f"{a['method']} {row['operating_point']}: {what} {value:.2f}x under "
                          f"{a.get('protocol', 'none')}, eval {acc:+.1f} pts vs dense")


def _reachable(df, task, a, value) -> None:
    """With `unreached: inconclusive`: a lower bound on a FLOPs speedup that
    no point of the method reaches at any accuracy was never tested (the
    sweep, or the backbone, e.g. 6 layers for early exit, stops short of it),
    so the claim is inconclusive rather than failed. Default (`fails`): a
    bound out of reach is a failure like any other."""
    bound = a.get("at_least", a.get("above"))
    if bound is None or value >= bound:
        return
    rows = df[(df.task == task) & (df.method == a["method"]) & (df.protocol == a.get("protocol", "none"))]
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
    best = max((o.value for o in others if math.isfinite(o.value)), default=1.0)  # none within: dense, 1x
    return Reading(mine.value - best, "; ".join([mine.detail, *(o.detail for o in others)]))


def _front(df, task, method, protocol):
    rows = df[(df.task == task) & (df.method == method) & (df.protocol == protocol)]
    if rows.empty:
        raise Inconclusive(f"no records of {method} on {task} under {protocol}")
    rows = rows[rows["primary_value"].notna()]
    if rows.empty:
        raise Inconclusive(f"{method} has no metric value on {task}")
    cost = (1.0 / rows["flops_speedup"]).to_numpy()
    value = (100 * rows["primary_value"]).to_numpy()
    keep = pareto_front(list(cost), list(value))
    return cost[keep], value[keep], cost, value


def _m_metric_gap(df, task, a, results_dir) -> Reading:
    protocol = a.get("protocol", "none")
    fc, fv, _, _ = _front(df, task, a["method"], protocol)
    _, _, bc, bv = _front(df, task, a["baseline"], protocol)
    inside = bc >= fc.min()
    if not inside.any():
        raise Inconclusive(f"{a['baseline']}'s relative FLOPs ({_fmt(bc.min())}-{_fmt(bc.max())}) are all below "
                           f"{a['method']}'s cheapest point ({_fmt(fc.min())})")
    # what the method reaches at a cost: the best eval metric of its points at that cost or below (a step, so
    # it is never credited with an accuracy between two of its points that none of them has)
    reached = fv[np.searchsorted(fc, bc[inside], side="right") - 1]
    gaps = reached - bv[inside]
    value = float(gaps.max() if a.get("statistic", "max") == "max" else gaps.mean())
    return Reading(value, f"{a['method']} - {a['baseline']} at {int(inside.sum())} equal-FLOPs points "
                          f"(relative FLOPs {_fmt(bc[inside].min())}-{_fmt(bc[inside].max())}): "
                          f"max {gaps.max():+.2f}, mean {gaps.mean():+.2f} pts")


def _m_protocol_ratio(df, task, a, results_dir) -> Reading:
    row, met = _chosen(df, task, a["method"], a.get("tolerance", 0.01))
    num, den = a.get("numerator", "sequence"), a.get("denominator", "batch")
    top, bottom = float(_under(df, row, num)["flops_speedup"]), float(_under(df, row, den)["flops_speedup"])
    return Reading(top / bottom, f"{a['method']} {row['operating_point']}{_flag(met)}: {num} {top:.2f}x / "
                                 f"{den} {bottom:.2f}x")


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
                                 f"{bottom_name} {bottom:.2f}x")


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
    return Reading(min(margins), f"{a['method']} vs max of {', '.join(a['baselines'])}: " + "; ".join(parts))


def _long_drop(df, task, method, tolerance):
    row, met = _chosen(df, task, method, tolerance)
    dense = dense_row(df, task, "none")
    buckets = quartile_buckets(per_example(dense)["length"])[-1:]
    mine, base = bucket_table(row, buckets).iloc[0], bucket_table(dense, buckets).iloc[0]
    if mine["n"] == 0:
        raise Inconclusive(f"{task}'s longest quarter is empty")
    drop = float(mine["value"] - base["value"])
    return drop, (f"{method} {row['operating_point']}{_flag(met)}: {drop:+.1f} pts vs dense on the longest quarter "
                  f"(n={int(mine['n'])})")


def _m_long_quarter_drop(df, task, a, results_dir) -> Reading:
    tol = a.get("tolerance", 0.01)
    drop, detail = _long_drop(df, task, a["method"], tol)
    if not a.get("versus"):
        return Reading(drop, detail)
    other, other_detail = _long_drop(df, task, a["versus"], tol)
    return Reading(drop - other, f"{detail}; {other_detail}")


def _at_knobs(df, task, a):
    protocol = a.get("protocol", "none")
    rows = df[(df.task == task) & (df.method == a["method"]) & (df.protocol == protocol)]
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
    row, dense = _at_knobs(df, task, a)
    value = float(row["primary_value"] / dense["primary_value"])
    return Reading(value, f"{a['method']} {row['operating_point']}: {100 * row['primary_value']:.1f} of dense "
                          f"{100 * dense['primary_value']:.1f} at {row['flops_speedup']:.2f}x")


def _m_speedup_at(df, task, a, results_dir) -> Reading:
    row, _ = _at_knobs(df, task, a)
    if a.get("quantity", "flops") == "wall":
        value, what = _wall(row, a.get("batch_size")), "wall-clock"
    else:
        value, what = float(row["flops_speedup"]), "FLOPs"
    return Reading(value, f"{a['method']} {row['operating_point']}: {what} {value:.2f}x under "
                          f"{a.get('protocol', 'none')}")


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
                          f"{', '.join(f'{r:g}' for r in at['ratio'])}")


def _m_wall_over_flops(df, task, a, results_dir) -> Reading:
    protocol = a.get("protocol", "none")
    if not ((df.task == task) & (df.method == a["method"])).any():
        raise Inconclusive(f"no records of {a['method']} on {task}")
    target = a.get("target", 2.0)
    row = nearest_speedup(df, task, a["method"], target, "none")
    if row is None:
        raise Inconclusive(f"no records of {a['method']} on {task} under none")
    if abs(row["flops_speedup"] - target) > 0.25 * target:
        raise Inconclusive(f"no point of {a['method']} is near {target:g}x (nearest: {row['flops_speedup']:.2f}x)")
    rec = _under(df, row, protocol)
    wall, flops = _wall(rec, a.get("batch_size")), float(rec["flops_speedup"])
    return Reading(wall / flops, f"{a['method']} {row['operating_point']}: wall-clock {wall:.2f}x for FLOPs "
                                 f"{flops:.2f}x under {protocol}")


@dataclass(frozen=True)
class Measure:
    fn: Callable[..., Reading]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    per_task: bool = True


_SELECT = ("tolerance",)
MEASURES: dict[str, Measure] = {
    "speedup_within": Measure(_m_speedup_within, ("method",), (*_SELECT, "protocol", "quantity", "batch_size",
                                                                "unreached")),
    "speedup_margin": Measure(_m_speedup_margin, ("method", "baselines"), (*_SELECT, "protocol", "quantity",
                                                                            "batch_size")),
    "metric_gap": Measure(_m_metric_gap, ("method", "baseline"), ("protocol", "statistic")),
    "protocol_ratio": Measure(_m_protocol_ratio, ("method",), (*_SELECT, "numerator", "denominator")),
    "bucket_speedup_ratio": Measure(_m_bucket_speedup_ratio, ("method", "numerator", "denominator"),
                                    (*_SELECT, "min_examples")),
    "bucket_margin": Measure(_m_bucket_margin, ("method", "baselines"), (*_SELECT, "min_examples")),
    "long_quarter_drop": Measure(_m_long_quarter_drop, ("method",), (*_SELECT, "versus")),
    "metric_retained": Measure(_m_metric_retained, ("method", "knobs"), ("protocol",)),
    "speedup_at": Measure(_m_speedup_at, ("method", "knobs"), ("protocol", "quantity", "batch_size")),
    "selection_cost_ratio": Measure(_m_selection_cost_ratio, ("length",), ("column",), per_task=False),
    "wall_over_flops": Measure(_m_wall_over_flops, ("method",), ("target", "protocol", "batch_size")),
}
_CHOICES = {"protocol": ("sequence", "batch", "none"), "numerator": None, "denominator": None,
            "quantity": ("flops", "wall"), "statistic": ("max", "mean"), "unreached": ("fails", "inconclusive")}


# --------------------------------------------------------------------------- checking and text


def check_rule(rule: dict, where: str) -> None:
    """A rule's measure, arguments and test; a misspelled one is one error."""
    if not isinstance(rule, dict):
        raise HarnessError(f"{where} is not a mapping", "write a rule as {measure: ..., <test>: number}")
    if "all" in rule:
        extra = set(rule) - {"all"}
        if extra or not isinstance(rule["all"], list) or not rule["all"]:
            raise HarnessError(f"{where}: `all` takes a non-empty list of rules and nothing beside it",
                               f"move {sorted(extra)} into the rules of the list" if extra else "list the rules")
        for i, part in enumerate(rule["all"]):
            check_rule(part, f"{where}.all[{i}]")
        return
    name = rule.get("measure")
    if name not in MEASURES:
        raise HarnessError(f"{where}: unknown measure {name!r}", f"use one of: {', '.join(MEASURES)}")
    m = MEASURES[name]
    tests = [t for t in TESTS if t in rule]
    if len(tests) != 1:
        raise HarnessError(f"{where}: a rule has exactly one test, found {tests or 'none'}",
                           f"add one of: {', '.join(TESTS)} (a number)")
    args = set(rule) - {"measure", *TESTS}
    unknown, missing = args - set(m.required) - set(m.optional), set(m.required) - args
    if unknown or missing:
        raise HarnessError(f"{where}: measure {name} " + (f"takes no {sorted(unknown)}" if unknown else
                                                          f"needs {sorted(missing)}"),
                           f"its arguments: {', '.join(m.required)} (required), {', '.join(m.optional) or 'none'}")
    for key in ("numerator", "denominator"):
        choices = BUCKETS if name.startswith("bucket") else _CHOICES["protocol"]
        if key in rule and rule[key] not in choices:
            raise HarnessError(f"{where}.{key}: {rule[key]!r}", f"use one of: {', '.join(choices)}")
    for key in ("protocol", "quantity", "statistic", "unreached"):
        if key in rule and rule[key] not in _CHOICES[key]:
            raise HarnessError(f"{where}.{key}: {rule[key]!r}", f"use one of: {', '.join(_CHOICES[key])}")


def check_claims(spec: dict, where: str) -> None:
    ids = [c["id"] for c in spec.get("claims", [])]
    if len(set(ids)) != len(ids):
        raise HarnessError(f"{where}: claim ids repeat ({sorted({i for i in ids if ids.count(i) > 1})})",
                           "give every claim its own id")
    for c in spec.get("claims", []):
        check_rule(c["rule"], f"{where}.claims[{c['id']}].rule")


def rule_text(rule: dict) -> str:
    """The rule as one line, e.g. `speedup_within(method=ltp, tolerance=0.01) >= 1.9`."""
    if "all" in rule:
        return " AND ".join(f"[{rule_text(r)}]" for r in rule["all"])
    test = next(t for t in TESTS if t in rule)
    args = ", ".join(f"{k}={_arg(v)}" for k, v in rule.items() if k not in ("measure", *TESTS))
    return f"{rule['measure']}({args}) {TESTS[test][0]} {rule[test]:g}"


def _arg(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {x}" for k, x in v.items()) + "}"
    return f"{v:g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- verdicts


def methods_of(rule: dict) -> list[str]:
    """Every method a rule reads (to list a claim's tasks)."""
    if "all" in rule:
        return list(dict.fromkeys(m for r in rule["all"] for m in methods_of(r)))
    names = [rule.get("method"), rule.get("baseline"), rule.get("versus"), *(rule.get("baselines") or [])]
    return [n for n in names if n]


def per_task(rule: dict) -> bool:
    if "all" in rule:
        return any(per_task(r) for r in rule["all"])
    return MEASURES[rule["measure"]].per_task


def judge(df: pd.DataFrame, task: str | None, rule: dict, results_dir) -> tuple[str, str, str]:
    """(verdict, ours, reason) of one rule on one task."""
    if "all" in rule:
        parts = [judge(df, task, r, results_dir) for r in rule["all"]]
        verdicts = [p[0] for p in parts]
        ours = " | ".join(p[1] for p in parts)
        if FAILS in verdicts:
            verdict = FAILS
        elif INCONCLUSIVE in verdicts:
            verdict = INCONCLUSIVE
        else:
            verdict = HOLDS
        reason = "; ".join(f"part {i + 1}: {p[2]}" for i, p in enumerate(parts) if p[0] != HOLDS and p[2])
        return verdict, ours, reason
    test = next(t for t in TESTS if t in rule)
    symbol, compare = TESTS[test]
    try:
        reading = MEASURES[rule["measure"]].fn(df, task, rule, results_dir)
    except Inconclusive as why:
        return INCONCLUSIVE, "n/a", str(why)
    ours = f"{rule['measure']} = {_fmt(reading.value)} ({reading.detail})"
    if not math.isfinite(reading.value):
        return FAILS, ours, reading.fails or "no value"
    if compare(reading.value, rule[test]):
        return HOLDS, ours, ""
    return FAILS, ours, f"{_fmt(reading.value)} is not {symbol} {rule[test]:g}"


def claims_table(df: pd.DataFrame, spec: dict, results_dir) -> pd.DataFrame:
    """One row per (claim, task): see the module doc."""
    rows = []
    for claim in spec.get("claims", []):
        rule = claim["rule"]
        if not per_task(rule):
            tasks = ["(any)"]
        elif claim.get("tasks"):
            tasks = list(claim["tasks"])
        else:  # every task with records of all its methods
            having = [set(df[df["method"] == m]["task"]) for m in methods_of(rule)]
            tasks = sorted(set.intersection(*having)) if having else []
            tasks = tasks or ["(none)"]
        for task in tasks:
            if task == "(none)":
                verdict, ours, reason = (INCONCLUSIVE, "n/a",
                                         f"no task has records of all of {', '.join(methods_of(rule))}")
            elif per_task(rule) and not (df["task"] == task).any():
                verdict, ours, reason = INCONCLUSIVE, "n/a", f"no records on {task}"
            else:
                verdict, ours, reason = judge(df, None if task == "(any)" else task, rule, results_dir)
            rows.append({"claim": claim["id"], "source": claim["source"], "statement": claim["statement"],
                         "paper": claim["paper"], "task": task, "ours": ours, "rule": rule_text(rule),
                         "verdict": verdict, "reason": reason})
    out = pd.DataFrame(rows, columns=["claim", "source", "statement", "paper", "task", "ours", "rule", "verdict",
                                      "reason"])
    out.attrs["note"] = NOTE
    return out
