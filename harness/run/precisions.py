"""The evaluate job's precision axis (`eval.precisions`): lower-precision records and their timings.

Why a deployer needs it: on hardware with bf16 or int8 units the dense model itself runs faster at a
lower precision, so a method's fp32-against-fp32 speedup is not what they would see. For every point
(or, with `eval.precision_points: selected`, the timed one only) and every lower precision the device
runs, the job evaluates the point converted by `harness.model.precision` (metrics, tokens, FLOPs, BOPs:
one record each). One point per method and training seed, the one with the fewest FLOPs whose fp32
validation metric is within `eval.precision_tolerance` of dense's (`harness.pareto.fewest_within`, the
papers' rule, on validation), is then timed at every precision in the same interleaved rounds as the
dense model at every precision (`harness.measure.timing.time_interleaved`), which gives each of its
records two speedups: against dense at the same precision, and against the **fastest dense**: the
dense precision with the shortest median time among those whose validation metric is within the
tolerance of fp32 dense's.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np

from harness.data.padding import make_batches
from harness.measure.kernels import observed_on
from harness.measure.metrics import primary
from harness.measure.timing import add_question_times, time_interleaved
from harness.model.precision import FULL, at_precision, resolved, unavailable
from harness.pareto import fewest_within
from harness.train.inference import evaluate


def lower_precisions(cfg: dict, device) -> tuple[list[str], dict[str, str]]:
    """(the lower precisions asked for that `device` runs, {precision: why not} for the others)."""
    runnable, skipped = [], {}
    for p in cfg["eval"].get("precisions", [FULL]):
        if p == FULL:
            continue
        why = unavailable(p, device)
        if why:
            skipped[p] = why
        else:
            runnable.append(p)
    return runnable, skipped


def calibration_batches(ctx) -> list:
    """The first `eval.calibration_examples` validation examples, batched as evaluated (int8's scales)."""
    enc = ctx.encoded("validation")
    n = min(int(ctx.cfg["eval"].get("calibration_examples", 256)), len(enc))
    sub = enc.subset(range(n))
    return [b.to(ctx.device) for b in make_batches(sub, "batch", ctx.task.seq_len, ctx.eval_batch_size)]


class TimedPoint:
    """The point a method times at every precision, chosen as its points are evaluated (one pass: the
    rule is a total order, so the best of the points so far and a new one is one of the two). Keeps a
    copy of the best point's model: a method may yield every point from one model it re-configures."""

    def __init__(self, reference: float, tolerance: float):
        self.reference, self.tolerance = reference, tolerance
        self.costs: list[float] = []
        self.values: list[float] = []
        self.best = None  # (operating point, copy of its model)
        self.conversions: dict = {}  # the best point at the lower precisions, where offered with them
        self.met = False

    def offer(self, op, model, cost: float, value: float, conversions: dict | None = None) -> None:
        """`conversions`: {precision: `model` converted to it}, kept with the best point (they are not
        re-converted for its timing: int8's calibration is the slow part)."""
        self.costs.append(float(cost))
        self.values.append(math.nan if value is None else float(value))
        at, met = fewest_within(self.costs, self.values, self.reference, self.tolerance)
        if at == len(self.costs) - 1:
            kept = copy.deepcopy(model)
            self.best, self.met = (dataclasses.replace(op, model=kept), kept), met
            self.conversions = dict(conversions or {})


def _summary(pair) -> dict:
    lo, hi = pair.interval
    return {"speedup": pair.speedup, "speedup_low": lo, "speedup_high": hi, "reliable": pair.reliable,
            "dense_latency_ms": 1000.0 * float(np.median(pair.dense_s)) / pair.n_examples}


def fastest_dense(timing, dense_validation: dict[str, float], tolerance: float) -> str:
    """The dense precision with the shortest median time among those whose validation metric is within
    `tolerance` of fp32 dense's (fp32 itself always qualifies)."""
    floor = dense_validation[FULL] - tolerance
    eligible = [q for q, v in dense_validation.items() if q == FULL or (v is not None and v >= floor)]
    return min(eligible, key=lambda q: (timing.median_seconds(f"dense@{q}"), q != FULL))


def at_precisions(model, precisions: list[str], device, calibration) -> dict:
    """{precision: `model` at it} (`harness.model.precision.at_precision`; fp32 is `model` itself)."""
    return {p: at_precision(model, p, device, calibration)[0] for p in precisions}


def first_batch(ctx, sample, protocol: str):
    """The first batch the timings run under `protocol`, on the job's device (what kernels are observed on)."""
    return make_batches(sample, protocol, ctx.task.seq_len, ctx.eval_batch_size)[0].to(ctx.device)


def dense_kernels_at(cache: dict, precision: str, protocol: str, dense, batch, device) -> dict:
    """What `dense` (at `precision`) ran on `batch` under `protocol`, observed once per evaluate job: every
    point meets the same dense, so `cache` ({(precision, protocol): kernels}) keeps it across points and calls."""
    if (precision, protocol) not in cache:
        cache[(precision, protocol)] = observed_on(dense, batch, device)
    return cache[(precision, protocol)]


def time_at_precisions(ctx, point_at: dict, dense_at: dict, protocol: str, sample, questions, sizes, spec,
                       dense_validation: dict[str, float], tolerance: float,
                       shared: dict | None = None, dense_kernels: dict | None = None) -> dict[str, dict]:
    """{precision: {batch size: timing}} of the point at every precision of `dense_at` ({precision: dense at
    it}, fp32 first; `point_at` the same for the point), each timed in the same interleaved rounds as dense
    at every precision, under `protocol`. `dense_kernels` ({(precision, protocol): kernels}) keeps what
    dense ran across calls: it is observed once per job. Each
    timing is the pair (point, dense) at the same precision (`PairedTiming.to_dict`) plus `vs_dense_at`
    (the point against dense at every precision), `fastest_dense` (the precision and the speedup against
    it), `dense_validation` and `kernels` ({"point", "dense"}: `harness.measure.kernels`). `shared` keeps
    batch 1 for the other of `batch` and `none` (no row is padded at batch 1). `questions`: for a span
    task, how many questions `sample`'s windows hold (times per question besides per window)."""
    def named(q: str) -> str:
        return resolved(q, ctx.device)

    precisions = list(dense_at)
    models = {}
    for p in precisions:
        models[f"point@{p}"], models[f"dense@{p}"] = point_at[p], dense_at[p]
    one = first_batch(ctx, sample, protocol)
    dense_kernels = {} if dense_kernels is None else dense_kernels
    kernels = {p: {"point": observed_on(point_at[p], one, ctx.device),
                   "dense": dense_kernels_at(dense_kernels, p, protocol, dense_at[p], one, ctx.device)}
               for p in precisions}
    out: dict[str, dict] = {p: {} for p in precisions}
    pairs = [(f"point@{p}", f"dense@{q}") for p in precisions for q in precisions]
    for bs in sizes:
        if bs == 1 and shared is not None and 1 in shared:
            for p in precisions:
                out[p][1] = dict(shared[1][p])
            continue
        timing = time_interleaved(models, sample, protocol, ctx.task.seq_len, bs, spec, ctx.device, pairs)
        fastest = fastest_dense(timing, dense_validation, tolerance)
        for p in precisions:  # keyed by the precision that ran (fp16 where a GPU has no bf16), as records are
            entry = timing.pair(f"point@{p}", f"dense@{p}").to_dict()
            entry["vs_dense_at"] = {named(q): _summary(timing.pair(f"point@{p}", f"dense@{q}")) for q in precisions}
            entry["fastest_dense"] = {"precision": named(fastest), **entry["vs_dense_at"][named(fastest)]}
            entry["dense_validation"] = {named(q): v for q, v in dense_validation.items()}
            entry["models_interleaved"] = list(models)
            entry["kernels"] = kernels[p]
            out[p][bs] = add_question_times(entry, len(sample), questions)
        if bs == 1 and shared is not None:
            shared[1] = {p: out[p][1] for p in precisions}
            for p in precisions:
                out[p][1]["timed_under"] = protocol
    return out


def dense_validation(ctx, dense_at: dict) -> dict[str, float]:
    """Dense's validation metric at every precision of `dense_at` (protocol `none`, as every record's
    validation)."""
    return {p: primary(ctx.task, evaluate(model, ctx.task, ctx.encoded("validation"), "none", ctx.eval_batch_size,
                                          ctx.device).metrics) for p, model in dense_at.items()}
