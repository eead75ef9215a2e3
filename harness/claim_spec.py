"""The claim spec: the rule language a claims experiment is written in, and its check.

Why here, and not in `harness.report`: the plan (`harness.run.plan`) checks
every claim's rule before any job runs, so a misspelled measure is one error
at the start rather than a failure after hours of training. `run` sits below
`report` in the layering (data -> model -> measure -> plugin -> run ->
report), so what it checks cannot live in `report`. Like `harness.record`
(the record schema that `run` writes and `report` reads), this module is the
shared vocabulary of both sides: `run` validates a claim with it, and the
report (`harness.report.claim_measures` computes the measures,
`harness.report.claims` gives the verdicts) reads the same names. It imports
neither pandas nor anything of `run` or `report`, so checking a config stays
cheap.

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
* `metric_vs_dense` [method, tolerance=0.01, protocol=none]: the chosen
  point's eval metric minus dense's, in points (a paired bootstrap).

Every measure of a `method` also takes `precision` (fp32, bf16, fp16, int8;
default fp32): that method's records at that precision are read (its point
chosen on its validation metric at that precision), every other method's,
dense's included, at fp32: e.g. LTP in int8 against the full-precision dense
model (LTP Section 4.6).

`protocol_ratio`, the bucket measures and `long_quarter_drop` read the
`fastest_within` point and say when none met the tolerance (the most
accurate point is read then). A claim without `tasks` is tested on every
task that has records of all the methods its rule reads.

This module holds each measure's signature (its arguments, and whether it is
computed per task); `harness.report.claim_measures` holds the computation of
each, under the same names.
"""
from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.record import PRECISION_NAMES, PROTOCOLS

TESTS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "at_least": (">=", operator.ge), "at_most": ("<=", operator.le),
    "above": (">", operator.gt), "below": ("<", operator.lt),
}
BUCKETS = {"short": 0, "middle": 1, "long": 2}  # the fixed length buckets, by their row in the bucket table


@dataclass(frozen=True)
class Measure:
    """A measure's signature: the arguments a rule must and may give it."""
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    per_task: bool = True  # False: computed once, not per task (a benchmark's result)


_SELECT = ("tolerance",)
MEASURES: dict[str, Measure] = {
    "speedup_within": Measure(("method",), (*_SELECT, "protocol", "quantity", "batch_size", "unreached")),
    "speedup_margin": Measure(("method", "baselines"), (*_SELECT, "protocol", "quantity", "batch_size")),
    "metric_gap": Measure(("method", "baseline"), ("protocol", "statistic")),
    "protocol_ratio": Measure(("method",), (*_SELECT, "numerator", "denominator")),
    "bucket_speedup_ratio": Measure(("method", "numerator", "denominator"), (*_SELECT, "min_examples")),
    "bucket_margin": Measure(("method", "baselines"), (*_SELECT, "min_examples")),
    "long_quarter_drop": Measure(("method",), (*_SELECT, "versus")),
    "metric_retained": Measure(("method", "knobs"), ("protocol",)),
    "speedup_at": Measure(("method", "knobs"), ("protocol", "quantity", "batch_size")),
    "selection_cost_ratio": Measure(("length",), ("column",), per_task=False),
    "wall_over_flops": Measure(("method",), ("target", "protocol", "batch_size")),
    "metric_vs_dense": Measure(("method",), (*_SELECT, "protocol")),
}
_CHOICES = {"protocol": PROTOCOLS, "quantity": ("flops", "wall"), "statistic": ("max", "mean"),
            "unreached": ("fails", "inconclusive"), "precision": PRECISION_NAMES}


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
    if "method" in m.required:  # every measure of a method can read it at another precision
        args -= {"precision"}
    unknown, missing = args - set(m.required) - set(m.optional), set(m.required) - args
    if unknown or missing:
        raise HarnessError(f"{where}: measure {name} " + (f"takes no {sorted(unknown)}" if unknown else
                                                          f"needs {sorted(missing)}"),
                           f"its arguments: {', '.join(m.required)} (required), {', '.join(m.optional) or 'none'}")
    for key in ("numerator", "denominator"):  # buckets for the bucket measures, protocols for protocol_ratio
        choices = BUCKETS if name.startswith("bucket") else _CHOICES["protocol"]
        if key in rule and rule[key] not in choices:
            raise HarnessError(f"{where}.{key}: {rule[key]!r}", f"use one of: {', '.join(choices)}")
    for key in ("protocol", "quantity", "statistic", "unreached", "precision"):
        if key in rule and rule[key] not in _CHOICES[key]:
            raise HarnessError(f"{where}.{key}: {rule[key]!r}", f"use one of: {', '.join(_CHOICES[key])}")


def check_claims(spec: dict, where: str) -> None:
    """A claims experiment: ids that do not repeat, and every claim's rule (`check_rule`)."""
    ids = [c["id"] for c in spec.get("claims", [])]
    if len(set(ids)) != len(ids):
        raise HarnessError(f"{where}: claim ids repeat ({sorted({i for i in ids if ids.count(i) > 1})})",
                           "give every claim its own id")
    unknown = sorted(set(spec.get("ids") or []) - set(ids))
    if unknown:
        raise HarnessError(f"{where}.ids names {unknown}, which are not claims (known: {', '.join(ids)})",
                           "name claims by the ids in the claims file")
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


def methods_of(rule: dict) -> list[str]:
    """Every method a rule reads (to list a claim's tasks)."""
    if "all" in rule:
        return list(dict.fromkeys(m for r in rule["all"] for m in methods_of(r)))
    names = [rule.get("method"), rule.get("baseline"), rule.get("versus"), *(rule.get("baselines") or [])]
    return [n for n in names if n]


def per_task(rule: dict) -> bool:
    """Whether a rule is judged per task (False: only task-independent measures)."""
    if "all" in rule:
        return any(per_task(r) for r in rule["all"])
    return MEASURES[rule["measure"]].per_task
