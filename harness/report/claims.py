"""The claims table: per (claim, task) a verdict from the records (`kind: claims`).

Why this module: it is the one place a claim's value becomes a verdict and a
row. The rule language and its check live in `harness.claim_spec` (read by
the plan before any job runs, so below `run`; it also says what each measure
computes); the measures that read the records live in
`harness.report.claim_measures`. This module decides: a rule
`holds` when its measure's value passes the rule's test, `does not hold`
when it does not (or no value can meet it), and is `inconclusive` when what
the measure needs is not in the records, with the reason. A measure with an interval (a paired
bootstrap over the eval examples, widened by the training noise dense's seeds show; a timing's interval;
the FLOPs speedups of points surely / possibly within a tolerance) is judged on its ends: `holds` when
the whole interval passes, `does not hold` when none of it does, otherwise `inconclusive` "within noise",
with the interval; `all: [...]`
fails if any part fails, else is inconclusive if any part is. `claims_table`
lists a claim on the tasks it names, or on every task with records of all
the methods its rule reads.
"""
from __future__ import annotations

import math

import pandas as pd

from harness.claim_spec import TESTS, methods_of, per_task, rule_text
from harness.report.claim_measures import Inconclusive, fmt, read
from harness.report.floors import below_floor

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
NOTE = ("One row per claim and task. ours = the rule's measured value(s) (speedups as ratios, metrics x100 so "
        "differences are points), its 95% interval [low, high], the n behind it and what the interval holds; rule = "
        "the test fixed in the config before the run; verdict: holds (the whole interval passes) / does not hold "
        "(none of it does) / inconclusive (within noise, or something missing), with the reason. Metric intervals "
        "are paired bootstraps over the eval examples; with several dense seeds, dense's spread over seeds is "
        "assumed for every method and added (training noise); with one, the reason says training noise is not in "
        "the interval. FLOPs are counted (no interval); a FLOPs speedup at a tolerance spans the points surely to "
        "possibly within it. Points are chosen on the validation split; values are eval-split values. Everything "
        "is computed from the records (harness/report/claims.py).")


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
        reading = read(df, task, rule, results_dir)
    except Inconclusive as why:
        return INCONCLUSIVE, "n/a", str(why)
    bound = rule[test]
    if not math.isfinite(reading.value):
        return FAILS, f"{rule['measure']} = n/a ({reading.detail})", reading.fails or "no value"
    span = f" [{fmt(reading.low)}, {fmt(reading.high)}]" if reading.has_interval else ""
    n = f", n={reading.n}" if reading.n else ""
    ours = f"{rule['measure']} = {fmt(reading.value)}{span}{n} ({reading.detail}; {reading.noise})"
    if reading.has_interval:
        # the tests are thresholds, so the interval's two ends decide: both pass, neither, or it straddles
        ends = [compare(reading.low, bound), compare(reading.high, bound)]
        if all(ends):
            return HOLDS, ours, _seed_caveat(reading)
        if not any(ends):
            return FAILS, ours, f"the whole interval{span} is not {symbol} {bound:g}" + _seed_caveat(reading, "; ")
        return INCONCLUSIVE, ours, (f"within noise: {fmt(reading.value)}{span} straddles {symbol} {bound:g}"
                                    + _seed_caveat(reading, "; "))
    if compare(reading.value, bound):
        return HOLDS, ours, ""
    return FAILS, ours, f"{fmt(reading.value)} is not {symbol} {bound:g}"


def _seed_caveat(reading, sep: str = "") -> str:
    """The verdict's own warning when training noise could not be measured."""
    return sep + "one training seed: training noise is not in the interval" if "one training seed" in reading.noise else ""


def claims_table(df: pd.DataFrame, spec: dict, results_dir) -> pd.DataFrame:
    """One row per (claim, task): see the module doc. `df` holds every precision: a rule reads its
    method's at its `precision` and everything else at fp32 (`claim_measures.read`); floors read fp32 dense."""
    every = df
    df = df[df["precision"] == "fp32"] if "precision" in df.columns else df
    rows = []
    only = spec.get("ids")
    for claim in spec.get("claims", []):
        if only is not None and claim["id"] not in only:
            continue
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
            elif per_task(rule) and (floor := below_floor(df, task, {"dense_floors": spec.get("dense_floors")})):
                verdict, ours, reason = INCONCLUSIVE, "n/a", floor
            else:
                verdict, ours, reason = judge(every, None if task == "(any)" else task, rule, results_dir)
            rows.append({"claim": claim["id"], "source": claim["source"], "statement": claim["statement"],
                         "paper": claim["paper"], "task": task, "ours": ours, "rule": rule_text(rule),
                         "verdict": verdict, "reason": reason})
    out = pd.DataFrame(rows, columns=["claim", "source", "statement", "paper", "task", "ours", "rule", "verdict",
                                      "reason"])
    out.attrs["note"] = NOTE
    return out
