"""The workflow's jobs: lengths, train, evaluate. One direction of flow.

`evaluate_job` runs every operating point a method yields under every
padding protocol: metrics on `eval` (and `validation`, for selection rules),
analytic FLOPs from the traces, the dense baseline's FLOPs on the same
batches, wall-clock timings, and writes one record per (point, protocol).
"""
from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path


from harness.run.context import RunContext
from harness.data.encoding import token_lengths
from harness.run.inference import evaluate
from harness.measure.flops import FLOPS_PER_MAC, dense_macs, trace_macs
from harness.measure.metrics import primary
from harness.data.padding import padded_lengths
from harness.measure.provenance import provenance
from harness.record import lengths_path, manifest_path, read_json, record_path, write_json
from harness.measure.timing import time_model
from harness.run.plan import plugin_for


def lengths_job(cfg: dict, task: str) -> Path:
    ctx = RunContext(cfg, task, "lengths")
    data = ctx.full_data  # uncapped: these are dataset statistics; bad data fails before anything loads
    tok = ctx.tokenizer
    record = {
        "task": task,
        "tokenizer": cfg["backbone"].get("tokenizer") or cfg["backbone"]["model"],
        "hist_bins": ctx.task.hist_bins,
        "seq_len": ctx.task.seq_len,
        "train_lengths": token_lengths(tok, data.train),
        "eval_lengths": token_lengths(tok, data.eval),
        "data_source": data.source,
        "split_note": data.split_note,
        "caps": "none (full train and eval splits)",
        "provenance": provenance(cfg),
    }
    return write_json(lengths_path(cfg["results_dir"], task), record)


def train_job(cfg: dict, task: str, method: str) -> Path:
    ctx = RunContext(cfg, task, method)
    plugin = plugin_for(cfg, method)
    start = time.time()
    log = plugin.train(ctx) or {}
    done = {
        "task": task,
        "method": method,
        "train_seconds": time.time() - start,
        "log": log,
        "n_train": len(ctx.data.train),
        "n_validation": len(ctx.data.validation),
        "provenance": provenance(cfg),
    }
    return write_json(ctx.model_dir() / "done.json", done)


@contextmanager
def timing_lock(cfg: dict):
    """Timing jobs never overlap, even without the workflow's resource limit."""
    path = Path(cfg["work_dir"]) / "timing.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _timings(model, ctx: RunContext, protocol: str) -> dict[int, object]:
    t = ctx.cfg["timing"]
    enc = ctx.encoded("eval")
    sample = enc.subset(range(min(t["n_examples"], len(enc))))
    sizes = sorted(set(t["batch_sizes"]) | {1, ctx.cfg["eval"]["batch_size"]})
    return {
        bs: time_model(model, sample, protocol, ctx.task.seq_len, bs, t["threads"], t["min_run_time"], ctx.device)
        for bs in sizes
    }


def _dense_throughput(cfg: dict, task: str, protocol: str) -> dict | None:
    path = record_path(cfg["results_dir"], task, "dense", "dense", protocol)
    return read_json(path)["throughput_by_batch_size"] if path.is_file() else None


def evaluate_job(cfg: dict, task: str, method: str) -> Path:
    ctx = RunContext(cfg, task, method)
    plugin = plugin_for(cfg, method)
    eval_bs = cfg["eval"]["batch_size"]
    enc_eval, enc_val = ctx.encoded("eval"), ctx.encoded("validation")
    lengths = enc_eval.lengths
    base_arch = ctx.new_model().arch()
    timed_protocols = cfg["timing"].get("protocols") or cfg["eval"]["protocols"]
    records = []
    for op in plugin.operating_points(ctx):
        model = op.model.to(ctx.device).eval()
        val = evaluate(model, ctx.task, enc_val, "none", eval_bs, ctx.device)
        for protocol in cfg["eval"]["protocols"]:
            run = evaluate(model, ctx.task, enc_eval, protocol, eval_bs, ctx.device)
            macs = trace_macs(run.trace, protocol)
            widths = padded_lengths(lengths, protocol, ctx.task.seq_len, eval_bs)
            base_macs = dense_macs(widths, base_arch)
            timings, thr, speed = {}, {}, None
            if protocol in timed_protocols:
                with timing_lock(cfg):
                    timings = _timings(model, ctx, protocol)
                thr = {bs: t.throughput for bs, t in timings.items()}
                if method == "dense":
                    speed = {bs: 1.0 for bs in thr}
                else:
                    dense_thr = _dense_throughput(cfg, task, protocol) or {}
                    speed = {bs: thr[bs] / dense_thr[str(bs)] for bs in thr if str(bs) in dense_thr} or None
            one = timings.get(1)
            rec = {
                "method": method,
                "base_method": ctx.base_method,
                "method_config": ctx.method_cfg,
                "operating_point": op.name,
                "knobs": op.knobs,
                "task": task,
                "protocol": protocol,
                "backbone": cfg["backbone"]["name"],
                "seed": ctx.seed,
                "n_eval": len(enc_eval),
                "n_validation": len(enc_val),
                "n_train": len(ctx.data.train),
                "caps": ctx.caps,
                "data_source": ctx.data.source,
                "split_note": ctx.data.split_note,
                "metric": ctx.task.primary_metric,
                "metrics": run.metrics,
                "validation_metrics": val.metrics,
                "flops_per_example": FLOPS_PER_MAC * macs.mean(),
                "macs_per_example": macs.mean(),
                "baseline_flops_per_example": FLOPS_PER_MAC * base_macs.mean(),
                "baseline_macs_per_example": base_macs.mean(),
                "flops_speedup": base_macs.mean() / macs.mean(),
                "tokens_per_layer": run.trace.n_attn.mean(0),
                "ffn_tokens_per_layer": run.trace.n_ffn.mean(0),
                "exit_layer_mean": run.trace.exit_layer.mean(),
                "arch": run.trace.arch.to_dict(),
                "latency_ms_median": one.latency_ms if one else None,
                "latency_ms_iqr": one.latency_iqr_ms if one else None,
                "throughput_examples_per_s": thr.get(eval_bs),
                "throughput_by_batch_size": thr,
                "timing_iqr_s_by_batch_size": {bs: t.iqr_s for bs, t in timings.items()},
                "timing_n_examples": one.n_examples if one else None,
                "batch_size": eval_bs,
                "threads": cfg["timing"]["threads"],
                "wallclock_speedup": speed.get(eval_bs) if speed else None,
                "wallclock_speedup_by_batch_size": speed,
                "deviations": list(plugin.deviations),
                "policy": model.policy.describe(),
                "notes": op.notes,
                "per_example": {
                    "length": lengths,
                    "label": enc_eval.labels,
                    "prediction": run.predictions,
                    "flops": FLOPS_PER_MAC * macs,
                    "baseline_flops": FLOPS_PER_MAC * base_macs,
                    "exit_layer": run.trace.exit_layer,
                    **({"tokens_per_layer": run.trace.n_attn} if protocol == "none" else {}),
                },
                "provenance": provenance(cfg, cfg["timing"]["threads"]),
            }
            records.append(rec)
    if not records:
        raise RuntimeError(f"method {method} yielded no operating points for {task}")
    paths = [
        write_json(record_path(cfg["results_dir"], task, method, r["operating_point"], r["protocol"]), r)
        for r in records
    ]
    summary = [
        {"operating_point": r["operating_point"], "protocol": r["protocol"], "primary": primary(ctx.task, r["metrics"])}
        for r in records
    ]
    return write_json(
        manifest_path(cfg["results_dir"], task, method),
        {"task": task, "method": method, "records": [str(p) for p in paths], "summary": summary},
    )


def selection_cost_job(cfg: dict) -> Path:
    """Top-k vs threshold selection latency, for every selection_cost experiment's settings."""
    from harness.measure.selection_benchmark import measure

    spec = next((e for e in cfg.get("experiments", {}).values() if e["kind"] == "selection_cost"), {})
    kwargs = {k: spec[k] for k in ("lengths", "ratios", "batch") if k in spec}
    with timing_lock(cfg):
        rows = measure(threads=cfg["timing"]["threads"], min_run_time=min(0.2, cfg["timing"]["min_run_time"]), **kwargs)
    return write_json(
        Path(cfg["results_dir"]) / "benchmarks" / "selection_cost.json",
        {"rows": rows, "provenance": provenance(cfg, cfg["timing"]["threads"])},
    )
