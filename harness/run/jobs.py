"""The workflow's jobs: lengths, train, evaluate, selection cost. One direction of flow.

`evaluate_job` runs every operating point a method yields under every
padding protocol: metrics on `eval` (and `validation`, for selection rules),
analytic FLOPs from the traces against the dense model on the same batches,
wall-clock speedups timed side by side with the dense model in this process,
the same at each lower precision of `eval.precisions` (`harness.run.precisions`),
and writes one record per (point, protocol, precision) only once all are computed.
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
from harness.measure.kernels import observed_on
from harness.measure.timing import (TimingSpec, add_question_times, policy_time_share, steady_allocator,
                                    time_side_by_side)
from harness.model.precision import FULL, at_precision, resolved
from harness.run.context import RunContext
from harness.run.plan import timed_seed
from harness.run.precisions import (TimedPoint, at_precisions, calibration_batches, dense_kernels_at, dense_validation,
                                    first_batch, lower_precisions, time_at_precisions)
from harness.train.inference import evaluate
from harness.run.points import gather_job, point_job, seed_everything
from harness.run.records import build_record, wall_clock
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


def timing_sample(ctx: RunContext):
    """(the eval examples every timing runs on, how many questions they hold): the first
    `timing.n_examples` eval examples; for a span task every window of the first questions whose
    windows fit in `timing.n_examples` (questions: None for other tasks)."""
    n = ctx.cfg["timing"]["n_examples"]
    enc = ctx.encoded("eval")
    if isinstance(enc, Windows):  # whole questions: every window of the first ones, at most n_examples windows
        fits = np.nonzero(np.bincount(enc.question, minlength=enc.n_questions).cumsum() <= n)[0]
        questions = max(1, len(fits))
        return enc.subset(np.nonzero(enc.question < questions)[0]), questions
    return enc.subset(range(min(n, len(enc)))), None


def timing_sizes(ctx: RunContext) -> list[int]:
    """The timed batch sizes: `timing.batch_sizes` and the eval batch (the record's headline speedup)."""
    return sorted(set(ctx.cfg["timing"]["batch_sizes"]) | {ctx.eval_batch_size})


def side_by_side(ctx: RunContext, model, dense, protocol: str, shared: dict | None = None) -> dict[int, dict]:
    """{batch size: timing} of `model` against `dense` on `timing_sample`, under `protocol`, with the
    share of the point's forward time spent in its policy's modules (`policy_time_share`); for a span
    task the time per question besides the time per window. `shared` (one dict per point, across its
    protocols) keeps the batch-1 timing of `batch` or `none` for the other: it is timed once
    (`timed_under` says under which)."""
    t = ctx.cfg["timing"]
    sample, questions = timing_sample(ctx)
    spec = timing_spec(ctx.cfg)
    kernels = {"point": model.attention_kernels(), "dense": dense.attention_kernels()}
    extra = {k: dense_with_kernel(dense, k) for k in t.get("dense_kernels", ["auto"]) if k != "auto"}
    out = {}
    with timing_lock(ctx.cfg):
        for bs in timing_sizes(ctx):
            shareable = bs == 1 and protocol in UNPADDED_AT_ONE and shared is not None
            if shareable and 1 in shared:
                out[bs] = dict(shared[1])
                continue
            out[bs] = time_side_by_side(model, dense, sample, protocol, ctx.task.seq_len, bs, spec, ctx.device).to_dict()
            out[bs]["attention_kernels"] = kernels
            for kernel, other in extra.items():  # the same comparison against dense on the pruners' kernel
                out[bs][f"dense_{kernel}"] = time_side_by_side(model, other, sample, protocol, ctx.task.seq_len, bs,
                                                               spec, ctx.device).to_dict()
            add_question_times(out[bs], len(sample), questions)
            out[bs]["policy_time_share"] = policy_time_share(model, sample, protocol, ctx.task.seq_len, bs,
                                                             spec.threads, ctx.device)
            if shareable:
                out[bs]["timed_under"] = protocol
                shared[1] = out[bs]
    return out


def observed(ctx: RunContext, model, dense, protocol: str, dense_kernels: dict) -> dict:
    """The kernels one untimed pass of the point and of dense ran on the first timing batch
    (`harness.measure.kernels`). Dense's are observed once per job and protocol (`dense_kernels`, keyed by
    (precision, protocol), shared with `harness.run.precisions.time_at_precisions`): every point meets the same dense."""
    one = first_batch(ctx, timing_sample(ctx)[0], protocol)
    return {"point": observed_on(model, one, ctx.device),
            "dense": dense_kernels_at(dense_kernels, FULL, protocol, dense, one, ctx.device)}


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
    for every training seed), at every precision of `eval.precisions` the
    device runs (`harness.run.precisions`), and their manifest."""
    steady = steady_allocator()  # before any model is loaded: timings must not depend on what ran before
    ctx = RunContext(cfg, task, method, seed)
    seed_everything(ctx.seed)
    excluded = ctx.plugin.exclusion(ctx.task)
    if excluded:  # the method cannot serve this task: say why, in the results, instead of failing
        return write_json(manifest_path(cfg["results_dir"], task, method, ctx.seed),
                          {"task": task, "method": method, "seed": ctx.seed, "records": [], "summary": [],
                           "excluded": excluded})
    dense = ctx.load_model(method="dense")  # every cost and speedup is relative to it
    ev = cfg["eval"]
    timed = cfg["timing"].get("protocols", ev["protocols"])
    if not timed_seed(cfg, ctx.seed):
        timed = []  # this training seed's records carry metrics and FLOPs only (timing.seeds)
    prov = provenance(cfg, cfg["timing"]["threads"])
    boot = BootstrapSpec.from_config(cfg)
    prov["bootstrap"] = {**boot.to_dict(), "unit": "question" if ctx.task.is_span else "example",
                         "interval": "metrics_interval: {metric: [low, high]}, each record's eval examples resampled "
                                     "with replacement (harness.measure.bootstrap)"}
    lower, skipped = lower_precisions(cfg, ctx.device)
    if method not in ev.get("precision_methods", [method]):
        lower, skipped = [], {p: f"eval.precision_methods leaves {method} out" for p in lower} | skipped
    prov["precisions"] = {"asked": list(ev.get("precisions", [FULL])), "run": [FULL] + lower, "skipped": skipped}
    precision_protocols = [p for p in (ev.get("precision_protocols") or ev["protocols"]) if p in ev["protocols"]]
    every_point = ev.get("precision_points", "all")
    every_point = every_point == "all" or (isinstance(every_point, list) and method in every_point)
    if not every_point:  # a method whose selected point alone gets lower-precision records: under these protocols
        precision_protocols = [p for p in ev.get("selected_precision_protocols", precision_protocols)
                               if p in precision_protocols]
    timed_precisions = [p for p in cfg["timing"].get("precision_protocols", precision_protocols)
                        if p in timed and p in precision_protocols]
    calibration = calibration_batches(ctx) if lower else []
    chooser, dense_val, dense_at = None, {}, {}
    if lower and precision_protocols:
        dense_at = at_precisions(dense, [FULL] + lower, ctx.device, calibration)  # converted once for the job
        dense_val = dense_validation(ctx, dense_at)
        chooser = TimedPoint(dense_val[FULL], ev.get("precision_tolerance", 0.01))
    records = []
    dense_kernels: dict = {}  # (precision, protocol): what dense ran, observed once per job

    def add(op, model, precision, protocol, val, timings=None, kernels=None, conversion=None):
        run = evaluate(model, ctx.task, ctx.encoded("eval"), protocol, ctx.eval_batch_size, ctx.device)
        record = build_record(ctx, op, run, val, dense.arch(), timings,
                              {**prov, "precision": precision, "precision_conversion": conversion or {"precision": FULL},
                               "steady_allocator": steady, "gpu_peak_memory_bytes": peak_gpu_memory(ctx.device)},
                              precision, kernels, model)
        per = record.per_example
        record.metrics_interval = {k: list(v) for k, v in
                                   metric_interval(ctx.task, per.prediction, per.label, boot).items()}
        records.append(record)

    def add_lower(op, model) -> dict:
        """The point at each lower precision, untimed, under the precision protocols: {precision: converted}."""
        conversions = {}
        for p in lower:
            converted, notes = at_precision(model, p, ctx.device, calibration)
            val = evaluate(converted, ctx.task, ctx.encoded("validation"), "none", ctx.eval_batch_size, ctx.device)
            for protocol in precision_protocols:
                add(op, converted, resolved(p, ctx.device), protocol, val, conversion=notes)
            conversions[p] = converted
        return conversions

    for op in ctx.plugin.operating_points(ctx):
        shared: dict = {}  # this point's batch-1 timing, shared by `batch` and `none` (side_by_side)
        if str(ctx.device).startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        model = op.model.to(ctx.device).eval()
        model.restore_dropped = ctx.settings.restore_dropped  # span heads: Drop-and-Restore or not
        val = evaluate(model, ctx.task, ctx.encoded("validation"), "none", ctx.eval_batch_size, ctx.device)
        for protocol in ev["protocols"]:
            timings = side_by_side(ctx, model, dense, protocol, shared) if protocol in timed else None
            add(op, model, FULL, protocol, val, timings,
                observed(ctx, model, dense, protocol, dense_kernels) if timings else None)
        if chooser is not None:  # the papers' rule, as the report's tables apply it: FLOPs under `none`
            choice = "none" if "none" in ev["protocols"] else ev["protocols"][0]
            cost = next(r.flops_per_example for r in records if r.operating_point == op.name and r.protocol == choice)
            chooser.offer(op, model, cost, primary(ctx.task, val.metrics),
                          add_lower(op, model) if every_point else None)
    if not records:
        raise HarnessError(
            f"method {method} yielded no operating points for {task}",
            f"check the settings of {method} (its knob lists may be empty)",
        )
    if chooser is not None and chooser.best is not None:
        op, model = chooser.best
        point_at = {FULL: model, **(chooser.conversions if every_point else add_lower(op, model))}
        time_every_precision(ctx, op.name, point_at, dense_at, timed_precisions, dense_val, records, dense_kernels)
    paths = [
        write_json(record_path(cfg["results_dir"], task, method, r.operating_point, r.protocol, ctx.seed, r.precision),
                   r.to_dict())
        for r in records
    ]
    summary = [
        {"operating_point": r.operating_point, "protocol": r.protocol, "precision": r.precision,
         "primary": primary(ctx.task, r.metrics)}
        for r in records
    ]
    return write_json(
        manifest_path(cfg["results_dir"], task, method, ctx.seed),
        {"task": task, "method": method, "seed": ctx.seed, "records": [str(p) for p in paths], "summary": summary},
    )


def time_every_precision(ctx: RunContext, name: str, point_at: dict, dense_at: dict, protocols: list[str],
                         dense_val: dict, records: list, dense_kernels: dict) -> None:
    """Time point `name` at every precision of `dense_at` ({precision: dense converted}; `point_at` the
    same for the point, converted once for its records) against dense at every precision under each of `protocols`
    (`harness.run.precisions.time_at_precisions`) and put the timings into its records: a lower-precision
    record gets them as its timing; the fp32 record, timed against fp32 dense already, gains
    `vs_dense_at` and `fastest_dense` per batch size. Every record gets its speedup against the fastest dense."""
    sample, questions = timing_sample(ctx)
    tolerance = ctx.cfg["eval"].get("precision_tolerance", 0.01)
    shared: dict = {}
    for protocol in protocols:
        with timing_lock(ctx.cfg):
            timed = time_at_precisions(ctx, point_at, dense_at, protocol, sample, questions, timing_sizes(ctx),
                                       timing_spec(ctx.cfg), dense_val, tolerance,
                                       shared if protocol in UNPADDED_AT_ONE else None, dense_kernels)
        for p, timings in timed.items():
            rec = next(r for r in records if (r.operating_point, r.protocol, r.precision)
                       == (name, protocol, resolved(p, ctx.device)))
            main = timings.get(ctx.eval_batch_size)
            if p == FULL and rec.timing:
                for bs, t in timings.items():
                    rec.timing["by_batch_size"][str(bs)].update(
                        {k: t[k] for k in ("vs_dense_at", "fastest_dense", "dense_validation", "models_interleaved")})
            else:
                for key, value in wall_clock(timings, ctx.eval_batch_size).items():
                    setattr(rec, key, value)
                rec.kernels = (main or next(iter(timings.values())))["kernels"]
            rec.wallclock_speedup_vs_fastest_dense = main["fastest_dense"]["speedup"] if main else None


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
