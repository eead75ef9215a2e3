"""Synthetic result records for report tests, built through the record schema."""
from __future__ import annotations

import numpy as np

from harness.record import PerExample, ResultRecord


def timing(speedups: dict, point_per_s: float = 100.0, n: int = 64) -> dict:
    """A record's `timing` field: {batch size: speedup} measured side by side."""
    by_bs = {}
    for bs, s in speedups.items():
        point_s = n / point_per_s
        by_bs[str(bs)] = {
            "batch_size": int(bs), "n_examples": n, "threads": 1, "rounds": 7, "passes_per_round": 1,
            "point_examples_per_s": point_per_s, "dense_examples_per_s": point_per_s / s,
            "point_latency_ms": 1000 * point_s / n, "dense_latency_ms": 1000 * point_s * s / n,
            "speedup": s, "speedup_low": 0.95 * s, "speedup_high": 1.05 * s, "confidence": 0.95,
            "point_s": [point_s] * 7, "dense_s": [point_s * s] * 7,
        }
    return {"threads": 1, "n_examples": n, "design": "synthetic", "by_batch_size": by_bs}


def record(task: str, method: str, op: str, protocol: str, *, metric: str = "accuracy", metrics: dict,
           validation_metrics: dict, flops: float, baseline_flops: float, n_eval: int = 4, knobs: dict | None = None,
           wall: dict | None = None, per_example: dict | None = None, latency_ms: float | None = None,
           throughput: float | None = None, batch_size: int = 32, provenance: dict | None = None,
           sparsity: float = 0.0, metrics_interval: dict | None = None, seed: int = 0, precision: str = "fp32",
           bits: int = 32, fastest: dict | None = None) -> dict:
    """A complete, valid record; `per_example` defaults to `n_eval` trivial rows;
    `metrics_interval` to +-0.02 around each metric (None stays None); BOPs at `bits` x `bits`;
    `fastest` ({batch size: (precision, speedup)}) marks the point as timed at every precision."""
    n = n_eval
    per = per_example or {"length": [10] * n, "label": [0] * n, "prediction": [0] * n, "flops": [flops] * n,
                          "baseline_flops": [baseline_flops] * n, "exit_layer": [2] * n}
    t = timing(wall) if wall else None
    for bs, (name, speedup) in (fastest or {}).items():
        entry = {"precision": name, "speedup": speedup, "speedup_low": 0.9 * speedup, "speedup_high": 1.1 * speedup,
                 "reliable": True}
        t["by_batch_size"][str(bs)]["fastest_dense"] = entry
        t["by_batch_size"][str(bs)]["vs_dense_at"] = {precision: {**entry, "speedup": t["by_batch_size"][str(bs)]
                                                                  ["speedup"]}, name: entry}
    if latency_ms is None and t and "1" in t["by_batch_size"]:
        latency_ms = t["by_batch_size"]["1"]["point_latency_ms"]
    per = {k: (v if k == "tokens_per_layer" else np.asarray(v).tolist()) for k, v in per.items()}
    return ResultRecord(
        method=method, base_method=method, method_config={}, operating_point=op, knobs=knobs or {}, task=task,
        protocol=protocol, precision=precision, backbone="bert-base-uncased", split_seed=0, seed=seed, n_eval=n, n_validation=n, n_train=10 * n,
        caps={}, data_source="glue", split_note="GLUE dev as eval; 10% of train as validation",
        metric=metric, metrics=metrics, validation_metrics=validation_metrics,
        flops_per_example=flops, macs_per_example=flops / 2, baseline_flops_per_example=baseline_flops,
        baseline_macs_per_example=baseline_flops / 2, flops_speedup=baseline_flops / flops,
        relative_flops=flops / baseline_flops, bops_per_example=flops / 2 * bits * bits,
        baseline_bops_per_example=baseline_flops / 2 * 1024,
        relative_bops=flops * bits * bits / (baseline_flops * 1024), policy_flops_per_example=0.0, tokens_per_layer=[30.0, 20.0], ffn_tokens_per_layer=[30.0, 20.0],
        exit_layer_mean=2.0, arch={}, batch_size=batch_size, timing=t,
        structure={"encoder_params": round(1000 * (1 - sparsity)), "dense_encoder_params": 1000,
                   "kept_fraction": 1 - sparsity, "sparsity": sparsity, "hidden": 8, "heads_per_layer": [2, 2],
                   "ffn_dims_per_layer": [16, 16]},
        latency_ms_median=latency_ms, throughput_examples_per_s=throughput,
        wallclock_speedup=wall.get(batch_size) if wall else None,
        wallclock_speedup_vs_fastest_dense=fastest[batch_size][1] if fastest and batch_size in fastest else None,
        kernels=None,
        deviations=[], policy={}, notes={}, per_example=PerExample(**per),
        metrics_interval=metrics_interval if metrics_interval is not None else
        {k: [None, None] if v is None else [v - 0.02, v + 0.02] for k, v in metrics.items()},
        provenance=provenance or {"git_commit": "abc123", "config_hash": "cfg42"},
    ).to_dict()
