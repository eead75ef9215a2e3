"""The workflow's jobs: lengths, train, evaluate, selection cost. One direction of flow.

`evaluate_job` runs every operating point a method yields under every
padding protocol: metrics on `eval` (and `validation`, for selection rules),
analytic FLOPs from the traces against the dense model on the same batches,
wall-clock speedups timed side by side with the dense model in this process,
and writes one record per (point, protocol) only once all are computed.
"""
from __future__ import annotations

import copy
import fcntl
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from harness.data.encoding import token_lengths
from harness.data.windows import Windows
from harness.errors import HarnessError
from harness.measure.bootstrap import BootstrapSpec, metric_interval
from harness.measure.metrics import primary
from harness.measure.provenance import provenance
from harness.measure.timing import TimingSpec, policy_time_share, steady_allocator, time_side_by_side
from harness.run.context import RunContext
from harness.train.inference import evaluate
from harness.run.points import gather_job, point_job, seed_everything
from harness.run.records import build_record
from harness.storage import lengths_path, manifest_path, record_path, write_json


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


def train_job(cfg: dict, task: str, method: str, seed: int | None = None) -> Path:
    """Train `method` on `task` with training seed `seed` (None: the config's first)."""
    ctx = RunContext(cfg, task, method, seed)
    seed_everything(ctx.seed)
    start = time.time()
    excluded = ctx.plugin.exclusion(ctx.task)
    if excluded:
        return write_json(ctx.model_dir() / "done.json", {"task": task, "method": method, "seed": ctx.seed,
                                                          "excluded": excluded, "provenance": provenance(cfg)})
    log = ctx.plugin.train(ctx) or {}
    done = {
        "task": task,
        "method": method,
        "seed": ctx.seed,
        "train_seconds": time.time() - start,
        "log": log,
        "n_train": len(ctx.data.train),
        "n_validation": len(ctx.data.validation),
        "provenance": provenance(cfg),
    }
    path = write_json(ctx.model_dir() / "done.json", done)
    ctx.clear_resume()  # its outputs are written: the checkpoints a retry would have resumed from go
    return path


def train_point_job(cfg: dict, task: str, method: str, point: str, seed: int | None = None) -> Path:
    """One of the points a method trains independently (`harness.run.points`)."""
    ctx = RunContext(cfg, task, method, seed)
    path = point_job(ctx, point)
    ctx.clear_resume()
    return path


def gather_points_job(cfg: dict, task: str, method: str, seed: int | None = None) -> Path:
    """A pointwise method's `done.json` from its point jobs' results of one
    training seed (or, where the method cannot serve the task, the reason)."""
    from harness.run.plan import done_path, point_names

    ctx = RunContext(cfg, task, method, seed)
    excluded = ctx.plugin.exclusion(ctx.task)
    if excluded:
        return write_json(ctx.model_dir() / "done.json", {"task": task, "method": method, "seed": ctx.seed,
                                                          "excluded": excluded, "provenance": provenance(cfg)})
    names = point_names(cfg, task, method)
    if not names:
        raise HarnessError(f"{method} trains in one job on {task}, not point by point",
                           f"run `python -m harness train --task {task} --method {method}`")
    return gather_job(cfg, task, method, names, done_path(cfg, task, method, ctx.seed).parent)


@contextmanager
def timing_lock(cfg: dict):
    """Timing jobs on one machine never overlap, even without the workflow's
    resource limit. The lock is per host: on a cluster's shared file system,
    timing jobs on different nodes do not disturb one another and must not queue."""
    path = Path(cfg["work_dir"]) / "locks" / f"timing.{socket.gethostname()}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def timing_spec(cfg: dict) -> TimingSpec:
    t = cfg["timing"]
    keys = ("min_rounds", "max_rounds", "max_seconds", "target", "round_warmups")
    return TimingSpec(threads=t["threads"], **{k: t[k] for k in keys if k in t})


# At batch size 1 no row is ever padded, so `batch` and `none` run the same one-example batches (in
# another order): a point's batch-1 timing under one is its timing under the other
UNPADDED_AT_ONE = ("batch", "none")


def side_by_side(ctx: RunContext, model, dense, protocol: str, shared: dict | None = None) -> dict[int, dict]:
    """{batch size: timing} of `model` against `dense` on the first
    `timing.n_examples` eval examples, under `protocol`, with the share of the
    point's forward time spent in its policy's modules (`policy_time_share`).
    For a span task: every window of the first questions whose windows fit in
    `timing.n_examples`, and the time per question besides the time per window.
    `shared` (one dict per point, across its protocols) keeps the batch-1 timing
    of `batch` or `none` for the other: it is timed once (`timed_under` says under which)."""
    t = ctx.cfg["timing"]
    enc = ctx.encoded("eval")
    questions = None
    if isinstance(enc, Windows):  # whole questions: every window of the first ones, at most n_examples windows
        fits = np.nonzero(np.bincount(enc.question, minlength=enc.n_questions).cumsum() <= t["n_examples"])[0]
        questions = max(1, len(fits))
        sample = enc.subset(np.nonzero(enc.question < questions)[0])
    else:
        sample = enc.subset(range(min(t["n_examples"], len(enc))))
    spec = timing_spec(ctx.cfg)
    sizes = sorted(set(t["batch_sizes"]) | {ctx.eval_batch_size})  # the eval batch: the record's headline speedup
    kernels = {"point": model.attention_kernels(), "dense": dense.attention_kernels()}
    extra = {k: dense_with_kernel(dense, k) for k in t.get("dense_kernels", ["auto"]) if k != "auto"}
    out = {}
    with timing_lock(ctx.cfg):
        for bs in sizes:
            shareable = bs == 1 and protocol in UNPADDED_AT_ONE and shared is not None
            if shareable and 1 in shared:
                out[bs] = dict(shared[1])
                continue
            out[bs] = time_side_by_side(model, dense, sample, protocol, ctx.task.seq_len, bs, spec, ctx.device).to_dict()
            out[bs]["attention_kernels"] = kernels
            for kernel, other in extra.items():  # the same comparison against dense on the pruners' kernel
                out[bs][f"dense_{kernel}"] = time_side_by_side(model, other, sample, protocol, ctx.task.seq_len, bs,
                                                               spec, ctx.device).to_dict()
            if questions is not None:  # a question's time is the sum over its windows
                out[bs]["questions"] = questions
                for who in ("point", "dense"):
                    out[bs][f"{who}_ms_per_question"] = out[bs][f"{who}_latency_ms"] * len(sample) / questions
            out[bs]["policy_time_share"] = policy_time_share(model, sample, protocol, ctx.task.seq_len, bs,
                                                             spec.threads, ctx.device)
            if shareable:
                out[bs]["timed_under"] = protocol
                shared[1] = out[bs]
    return out


def dense_with_kernel(dense, kernel: str):
    """`dense` running attention with `kernel` ("eager": the explicit softmax the
    attention-score pruners run), sharing its weights."""
    other = copy.copy(dense)  # a shallow copy: the same submodules and parameters
    other.attention_kernel = kernel
    return other


def peak_gpu_memory(device: str) -> int | None:
    """Peak bytes allocated on the GPU since the last reset (None on a CPU)."""
    return torch.cuda.max_memory_allocated() if str(device).startswith("cuda") else None


def evaluate_job(cfg: dict, task: str, method: str, seed: int | None = None) -> Path:
    """Records of `method`'s points trained with training seed `seed` (None:
    the config's first), on the eval split of `split_seed` (the same examples
    for every training seed), and their manifest."""
    steady = steady_allocator()  # before any model is loaded: timings must not depend on what ran before
    ctx = RunContext(cfg, task, method, seed)
    seed_everything(ctx.seed)
    excluded = ctx.plugin.exclusion(ctx.task)
    if excluded:  # the method cannot serve this task: say why, in the results, instead of failing
        return write_json(manifest_path(cfg["results_dir"], task, method, ctx.seed),
                          {"task": task, "method": method, "seed": ctx.seed, "records": [], "summary": [],
                           "excluded": excluded})
    dense = ctx.load_model(method="dense")  # every cost and speedup is relative to it
    timed = cfg["timing"].get("protocols", cfg["eval"]["protocols"])
    if ctx.seed not in cfg["timing"].get("seeds", [ctx.seed]):
        timed = []  # this training seed's records carry metrics and FLOPs only (timing.seeds)
    prov = provenance(cfg, cfg["timing"]["threads"])
    boot = BootstrapSpec.from_config(cfg)
    prov["bootstrap"] = {**boot.to_dict(), "unit": "question" if ctx.task.is_span else "example",
                         "interval": "metrics_interval: {metric: [low, high]}, each record's eval examples resampled "
                                     "with replacement (harness.measure.bootstrap)"}
    records = []
    for op in ctx.plugin.operating_points(ctx):
        shared: dict = {}  # this point's batch-1 timing, shared by `batch` and `none` (side_by_side)
        if str(ctx.device).startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        model = op.model.to(ctx.device).eval()
        model.restore_dropped = ctx.settings.restore_dropped  # span heads: Drop-and-Restore or not
        val = evaluate(model, ctx.task, ctx.encoded("validation"), "none", ctx.eval_batch_size, ctx.device)
        for protocol in cfg["eval"]["protocols"]:
            run = evaluate(model, ctx.task, ctx.encoded("eval"), protocol, ctx.eval_batch_size, ctx.device)
            timings = side_by_side(ctx, model, dense, protocol, shared) if protocol in timed else None
            record = build_record(ctx, op, run, val, dense.arch(), timings,
                                  {**prov, "steady_allocator": steady,
                                   "gpu_peak_memory_bytes": peak_gpu_memory(ctx.device)})
            per = record.per_example
            record.metrics_interval = {k: list(v) for k, v in
                                       metric_interval(ctx.task, per.prediction, per.label, boot).items()}
            records.append(record)
    if not records:
        raise HarnessError(
            f"method {method} yielded no operating points for {task}",
            f"check the settings of {method} (its knob lists may be empty)",
        )
    paths = [
        write_json(record_path(cfg["results_dir"], task, method, r.operating_point, r.protocol, ctx.seed), r.to_dict())
        for r in records
    ]
    summary = [
        {"operating_point": r.operating_point, "protocol": r.protocol, "primary": primary(ctx.task, r.metrics)}
        for r in records
    ]
    return write_json(
        manifest_path(cfg["results_dir"], task, method, ctx.seed),
        {"task": task, "method": method, "seed": ctx.seed, "records": [str(p) for p in paths], "summary": summary},
    )


def selection_cost_job(cfg: dict) -> Path:
    """Top-k vs threshold selection latency, for the selection_cost experiment's settings."""
    from harness.measure.selection_benchmark import measure

    spec = next((e for e in cfg.get("experiments", {}).values() if e["kind"] == "selection_cost"), {})
    kwargs = {k: spec[k] for k in ("lengths", "ratios", "batch") if k in spec}
    steady_allocator()
    with timing_lock(cfg):
        rows = measure(threads=cfg["timing"]["threads"], **kwargs)
    return write_json(
        Path(cfg["results_dir"]) / "benchmarks" / "selection_cost.json",
        {"rows": rows, "provenance": provenance(cfg, cfg["timing"]["threads"])},
    )
