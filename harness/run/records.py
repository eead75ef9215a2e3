"""Building a `ResultRecord` from an evaluated operating point.

Each part of the record comes from the stage of the flow that owns it: the
job's identity and data from the run context, quality from the evaluation
runs, cost from the trace through `harness.measure.flops`, wall clock from
the side-by-side timings (`harness.measure.timing`), provenance from
`harness.measure.provenance`.
"""
from __future__ import annotations

import numpy as np

from harness.data.padding import padded_lengths
from harness.measure.flops import (FLOPS_PER_MAC, bops, dense_macs, policy_macs, relative_flops,
                                   trace_attention_product_macs, trace_macs)
from harness.model.precision import bits
from harness.measure.params import structure_summary
from harness.model.trace import ArchShape
from harness.plugin.base import OperatingPoint
from harness.record import PerExample, ResultRecord
from harness.run.context import RunContext
from harness.train.inference import EvalRun

TIMING_DESIGN = (
    "dense and point interleaved on the same pre-built batches in one process, alternating order per round; "
    "speedup = median over rounds of dense time / point time; interval = order statistics of that median"
)


def identity(ctx: RunContext, op: OperatingPoint, protocol: str, precision: str = "fp32") -> dict:
    return {
        "method": ctx.method,
        "base_method": ctx.base_method,
        "method_config": ctx.given_settings,
        "operating_point": op.name,
        "knobs": op.knobs,
        "task": ctx.task.name,
        "protocol": protocol,
        "precision": precision,
        "backbone": ctx.cfg["backbone"]["name"],
        "split_seed": ctx.split_seed,
        "seed": ctx.seed,
        "n_eval": ctx.n_examples("eval"),
        "n_validation": ctx.n_examples("validation"),
        "n_train": len(ctx.data.train),
        "caps": ctx.caps,
        "data_source": ctx.data.source,
        "split_note": ctx.data.split_note,
    }


def cost(run: EvalRun, macs: np.ndarray, base_macs: np.ndarray, policy: np.ndarray | None = None,
         products: np.ndarray | None = None, precision: str = "fp32") -> dict:
    """Analytic cost of `run` (per-example `macs`, of which `policy` are the
    policy's own and `products` the attention products QK^T and AV) against the
    dense model on the same examples at the widths its protocol computes them
    at; bit operations at `precision` against the fp32 dense model's."""
    policy = policy_macs(run.trace, run.protocol) if policy is None else policy
    products = trace_attention_product_macs(run.trace, run.protocol) if products is None else products
    point_bops = bops(macs, products, policy, bits(precision))
    base_bops = bops(base_macs, np.zeros_like(base_macs), np.zeros_like(base_macs), bits("fp32"))
    return {
        "flops_per_example": FLOPS_PER_MAC * macs.mean(),
        "macs_per_example": macs.mean(),
        "baseline_flops_per_example": FLOPS_PER_MAC * base_macs.mean(),
        "baseline_macs_per_example": base_macs.mean(),
        "flops_speedup": base_macs.mean() / macs.mean(),
        "relative_flops": relative_flops(macs, base_macs),
        "bops_per_example": point_bops.mean(),
        "baseline_bops_per_example": base_bops.mean(),
        "relative_bops": float(point_bops.sum() / base_bops.sum()),
        "policy_flops_per_example": FLOPS_PER_MAC * policy.mean(),
        "tokens_per_layer": run.trace.n_attn.mean(0),
        "ffn_tokens_per_layer": run.trace.n_ffn.mean(0),
        "exit_layer_mean": run.trace.exit_layer.mean(),
        "arch": run.trace.arch.to_dict(),
    }


def wall_clock(timings: dict[int, dict] | None, eval_batch_size: int) -> dict:
    """The record's timing fields from {batch size: PairedTiming.to_dict()}."""
    if not timings:
        return {"timing": None, "latency_ms_median": None, "throughput_examples_per_s": None,
                "wallclock_speedup": None, "wallclock_speedup_vs_fastest_dense": None}
    one, main, first = timings.get(1), timings.get(eval_batch_size), next(iter(timings.values()))
    timing = {"threads": first["threads"], "n_examples": first["n_examples"], "design": TIMING_DESIGN,
              "by_batch_size": {str(b): t for b, t in sorted(timings.items())}}
    # a span task: latency and throughput per question (the sum over its windows), not per window
    span = "point_ms_per_question" in first
    if span:
        timing["questions"] = first["questions"]
    latency = (lambda t: t["point_ms_per_question"]) if span else (lambda t: t["point_latency_ms"])
    return {
        "timing": timing,
        "latency_ms_median": latency(one) if one else None,
        "throughput_examples_per_s": 1000.0 / latency(main) if span and main else
        (main["point_examples_per_s"] if main else None),
        "wallclock_speedup": main["speedup"] if main else None,
        "wallclock_speedup_vs_fastest_dense": main["fastest_dense"]["speedup"] if main and "fastest_dense" in main
        else None,
    }


def per_question(values: np.ndarray, question: np.ndarray | None, n_questions: int) -> np.ndarray:
    """Per-window values summed per question ([W] or [W, k]); unchanged when
    `question` is None (one row per example)."""
    values = np.asarray(values)
    if question is None:
        return values
    out = np.zeros((n_questions, *values.shape[1:]), dtype=np.result_type(values.dtype, np.int64))
    np.add.at(out, question, values)
    return out


def build_record(ctx: RunContext, op: OperatingPoint, run: EvalRun, validation: EvalRun, dense_arch: ArchShape,
                 timings: dict[int, dict] | None, provenance: dict, precision: str = "fp32",
                 kernels: dict | None = None, model=None) -> ResultRecord:
    """One record of `op` at `precision` (`model`, default `op.model`, is what `run` and `validation`
    ran: its policy is the one described); for a span task every per-example figure is per question
    (FLOPs and tokens summed over its windows, its gold answer texts and the
    predicted text), while token-per-layer means are per window."""
    enc = ctx.encoded("eval")
    q, nq = run.question, ctx.n_examples("eval")
    widths = padded_lengths(enc.lengths, run.protocol, ctx.task.seq_len, ctx.eval_batch_size)
    macs = per_question(trace_macs(run.trace, run.protocol), q, nq)
    base_macs = per_question(dense_macs(widths, dense_arch), q, nq)
    labels = [[a.text for a in ex.answers] for ex in enc.examples] if q is not None else enc.labels
    exits = run.trace.exit_layer
    if q is not None:  # the deepest layer any of its windows reached
        exits = np.zeros(nq, dtype=np.int64)
        np.maximum.at(exits, q, run.trace.exit_layer)
    return ResultRecord(
        **identity(ctx, op, run.protocol, precision),
        metric=ctx.task.primary_metric,
        metrics=run.metrics,
        validation_metrics=validation.metrics,
        **cost(run, macs, base_macs, per_question(policy_macs(run.trace, run.protocol), q, nq),
               per_question(trace_attention_product_macs(run.trace, run.protocol), q, nq), precision),
        structure=structure_summary(run.trace.arch, dense_arch),
        batch_size=ctx.eval_batch_size,
        **wall_clock(timings, ctx.eval_batch_size),
        kernels=kernels,
        deviations=list(ctx.plugin.deviations),
        policy=(op.model if model is None else model).policy.describe(),
        notes=op.notes,
        per_example=PerExample(
            length=per_question(enc.lengths, q, nq),
            label=labels,
            prediction=run.predictions,
            flops=FLOPS_PER_MAC * macs,
            baseline_flops=FLOPS_PER_MAC * base_macs,
            exit_layer=exits,
            tokens_per_layer=per_question(run.trace.n_attn, q, nq) if run.protocol == "none" else None,
        ),
        provenance=provenance,
    )
