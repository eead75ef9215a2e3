"""The fine-tuning loop every method trains with, and its checkpoint policies.

AdamW with a linear warm-up/decay schedule, seeded shuffling, a tqdm progress
bar, validation on the held-out `validation` split after each epoch (and every
`eval_every` steps if set). Methods add stages by calling `finetune` with
their own loss (`loss_fn(model, out, batch)`: the batch carries its inputs and
labels, so a loss can run the model again, e.g. LAT's sub-models), parameter
groups and checkpoint policy:

* `best`          - the best validation score (the task's primary metric,
                    or `score_fn`), the first best on ties;
* `last`          - the final weights, no validation pass (stages whose
                    validation accuracy would favour the least pruned
                    checkpoint, e.g. LTP's soft stage, PoWER-BERT's soft
                    extraction);
* `best_or_start` - `best`, but the starting weights are kept when they score
                    strictly higher than every trained checkpoint.

`frozen_except` freezes everything but some parameters (and switches dropout
off) for stages that train heads on a fixed backbone.

Resume (`resume=<file>`, which `RunContext.finetune` gives every call of a job
its own of): a job killed at a cluster's time limit continues where it stopped
when it is retried. Every `checkpoint_minutes` (and every
`checkpoint_every_steps` steps, for tests), and at once when SIGTERM arrives
(a cluster's time limit: the process then ends as it would have), the loop
atomically writes the model, the optimizer, the schedule, every random
generator (torch, CUDA, NumPy's global one, Python's, the loop's shuffling
generator with the current epoch's permutation and position in it), the step,
the validation log and the best checkpoint so far; parameters trained outside
the model (`parameters`, `extra_groups`: CoFi's masks and multipliers, a
distiller's map) and the Python state of the loss's and score's closures
(lists, dicts, NumPy and Python generators: CoFi's step counter and trail,
LAT's sub-model sampler, FastBERT's loss list) go with them. A call finds its
file and goes on from it, with the same batches and random draws as an
uninterrupted run (bitwise on CPU; on a GPU as far as its kernels are
deterministic). When the call ends the file is replaced by its result (the
kept weights, the outside parameters, the closures, the generators and the
log): a retried job's finished calls return at once with exactly that, so its
later stages start from the same weights. A file counts only for a call with
the same description, job config (`resume_key`), settings, training data and
bitwise the same starting weights (else it is ignored and overwritten): a
change of config or of an earlier stage never resumes stale state, a change of
code alone does (delete `<work_dir>/resume` then). Files hold tensors and
plain Python values only (`torch.load(weights_only=True)`). State a loss keeps
in attributes of objects (not in its closure, parameters or buffers) is not
saved: such a loss must rebuild it from the step.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from harness.data.encoding import Encoded
from harness.data.padding import collate
from harness.data.tasks import TaskSpec
from harness.measure.metrics import primary
from harness.run.inference import evaluate
from harness.storage import atomic_output

Checkpoint = Literal["best", "last", "best_or_start"]


@dataclass
class TrainConfig:
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    eval_every: int = 0  # steps; 0 = once per epoch
    grad_clip: float = 1.0
    seed: int = 0
    validation_batch_size: int = 64
    # resume checkpoints (only for a call given a `resume` file): every this many
    # minutes of training, and every this many steps (tests); both 0/None = off
    checkpoint_minutes: float | None = 30.0
    checkpoint_every_steps: int = 0
    # test/shape-check use: stop every fine-tuning call after this many optimizer
    # steps (its schedule, and the ramps that count `total_steps`, end there); None = off
    max_steps: int | None = None


_NOT_FINGERPRINTED = ("checkpoint_minutes", "checkpoint_every_steps")


@dataclass
class TrainBatch:
    """One training batch: model inputs and labels, on the training device."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor

    @property
    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.input_ids, self.attention_mask, self.token_type_ids


LossFn = Callable[[nn.Module, object, TrainBatch], torch.Tensor]
# a validation score, or a dict with a "score" and anything else worth logging
ScoreFn = Callable[[nn.Module], "float | dict"]


def total_steps(cfg: TrainConfig, n_examples: int) -> int:
    """Optimizer steps `finetune` takes on `n_examples` (for schedules a loss keeps itself),
    at most `cfg.max_steps`."""
    steps = max(1, int(round(cfg.epochs * max(1, math.ceil(n_examples / cfg.batch_size)))))
    return min(steps, int(cfg.max_steps)) if cfg.max_steps else steps


def task_loss(task: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (classification), MSE (regression), or for span tasks the
    mean of the cross-entropies of the start and the end token over positions."""
    if task.is_span:
        labels = labels.long()
        return (F.cross_entropy(logits[..., 0], labels[:, 0]) + F.cross_entropy(logits[..., 1], labels[:, 1])) / 2
    if task.is_regression:
        return F.mse_loss(logits[:, 0], labels.float())
    return F.cross_entropy(logits, labels.long())


def distillation_loss(task: TaskSpec, student: torch.Tensor, teacher: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """Student logits against a teacher's: MSE for regression (a softmax over
    one output carries nothing), otherwise KL(teacher || student) of the
    softened distributions times T^2; over classes, or for span tasks over
    positions, for the start and the end distribution alike."""
    if task.is_regression:
        return F.mse_loss(student[:, 0], teacher[:, 0])
    T = float(temperature)
    if task.is_span:  # [B, n, 2] -> [2B, n]: start and end distributions over positions
        student, teacher = student.transpose(1, 2).flatten(0, 1), teacher.transpose(1, 2).flatten(0, 1)
    return F.kl_div(F.log_softmax(student / T, -1), F.softmax(teacher / T, -1), reduction="batchmean") * T * T


def default_loss(task: TaskSpec) -> LossFn:
    """The task loss plus the policy's own regulariser."""

    def loss(model, out, batch: TrainBatch):
        value = task_loss(task, out.logits, batch.labels)
        extra = model.policy.extra_loss(out.state)
        return value if extra is None else value + extra

    return loss


def _scored(value) -> dict:
    entry = dict(value) if isinstance(value, dict) else {"score": value}
    score = float(entry["score"])
    entry["score"] = -math.inf if math.isnan(score) else score
    return entry


# ---- resume files ------------------------------------------------------------------
_RESUME_VERSION = 1


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _fingerprint(desc: str, key: str, cfg: TrainConfig, checkpoint: str, model, outside: list, train: Encoded,
                 groups: list) -> dict:
    """What a resume file must match: the call's description, the caller's
    key (RunContext: a hash of the job's config), training settings,
    checkpoint policy, optimizer groups, training data, and a hash of the
    starting weights (model and outside parameters)."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in model.state_dict().items():
        h.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        h.update(_tensor_bytes(value))
    for value in outside:
        h.update(f"{tuple(value.shape)}:{value.dtype}".encode())
        h.update(_tensor_bytes(value))
    d = hashlib.blake2b(digest_size=16)
    d.update(np.asarray(train.labels).tobytes())
    for row in train.input_ids:
        d.update(np.asarray(row, dtype=np.int64).tobytes())
    for row in train.token_type_ids:
        d.update(np.asarray(row, dtype=np.int8).tobytes())
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_FINGERPRINTED}
    return {"version": _RESUME_VERSION, "desc": desc, "key": key, "cfg": repr(sorted(settings.items())),
            "checkpoint": checkpoint, "groups": list(groups), "n_train": len(train),
            "weights": h.hexdigest(), "data": d.hexdigest()}


def _rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": (list(torch.cuda.get_rng_state_all())
                 if torch.cuda.is_available() and torch.cuda.is_initialized() else []),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    random.setstate(state["python"])


def _plain(x) -> bool:
    """Only Python scalars, strings and None in lists, tuples and dicts: what
    torch.load(weights_only=True) reads back as it was."""
    if x is None or type(x) in (bool, int, float, str):
        return True
    if type(x) in (list, tuple):
        return all(_plain(v) for v in x)
    if type(x) is dict:
        return all(type(k) in (str, int) and _plain(v) for k, v in x.items())
    return False


def _py(x):
    """`x` with NumPy scalars and arrays as Python values (for a log kept in a resume file)."""
    if isinstance(x, dict):
        return {k: _py(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_py(v) for v in x)
    if isinstance(x, list):
        return [_py(v) for v in x]
    if isinstance(x, np.ndarray):
        return _py(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def _closure_cells(fns: dict) -> list[tuple[str, object]]:
    """(path, object) of the mutable state in the closures of `fns` (and of the
    functions they close over): lists and dicts of plain values, NumPy and
    Python generators. Paths are variable names, the same in every run."""
    out, seen = [], set()

    def walk(fn, prefix: str) -> None:
        code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
        if code is None or not cells or id(fn) in seen:
            return
        seen.add(id(fn))
        for name, cell in zip(code.co_freevars, cells):
            try:
                value = cell.cell_contents
            except ValueError:  # not yet assigned
                continue
            path = f"{prefix}.{name}"
            if callable(value) and hasattr(value, "__code__"):
                walk(value, path)
            elif id(value) not in seen and (isinstance(value, (np.random.Generator, random.Random))
                                            or (type(value) in (list, dict) and _plain(value))):
                seen.add(id(value))
                out.append((path, value))

    for prefix, fn in fns.items():
        if fn is not None:
            walk(fn, prefix)
    return out


def _closure_state(fns: dict) -> dict:
    state = {}
    for path, value in _closure_cells(fns):
        if isinstance(value, np.random.Generator):
            state[path] = {"numpy_generator": value.bit_generator.state}
        elif isinstance(value, random.Random):
            state[path] = {"python_random": value.getstate()}
        else:
            state[path] = {"data": copy.deepcopy(value)}
    return state


def _restore_closures(fns: dict, state: dict) -> None:
    for path, value in _closure_cells(fns):
        if path not in state:
            continue
        saved = state[path]
        if isinstance(value, np.random.Generator):
            value.bit_generator.state = saved["numpy_generator"]
        elif isinstance(value, random.Random):
            value.setstate(saved["python_random"])
        elif type(value) is list:
            value[:] = copy.deepcopy(saved["data"])
        else:
            value.clear()
            value.update(copy.deepcopy(saved["data"]))


def _read_resume(path: Path, fingerprint: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file only costs the restart
        warnings.warn(f"resume file {path} is unreadable ({e}); training this stage from its start")
        return None
    if state.get("fingerprint") != fingerprint:
        warnings.warn(f"resume file {path} belongs to other settings, data or starting weights; "
                      "training this stage from its start")
        return None
    return state


class _SaveOnSigterm:
    """While a call trains with a resume file: SIGTERM (a cluster's time limit,
    a requeue, a workflow stopping its jobs) lets the step end and the state be
    saved, then takes its course (the default ends the process; a Python
    handler that was installed before gets it). Main thread only; not where
    SIGTERM is ignored."""

    def __init__(self, active: bool):
        self.requested = False
        self.old = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        self.active = active and (self.old is signal.SIG_DFL or callable(self.old))

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> "_SaveOnSigterm":
        if self.active:
            signal.signal(signal.SIGTERM, self._handler)
        return self

    def deliver(self) -> None:
        self.requested = False
        if callable(self.old):  # e.g. one that raises: it propagates from here
            self.old(signal.SIGTERM, None)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the process ends here

    def __exit__(self, *exc) -> None:
        if self.active:  # one that arrives after the last step is delivered once the result is saved
            signal.signal(signal.SIGTERM, self.old)


def _fits(model, state: dict) -> bool:
    own = model.state_dict()
    return own.keys() == state.keys() and all(own[k].shape == state[k].shape for k in own)


def _write_resume(path: Path, state: dict) -> None:
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def finetune(
    model,
    task: TaskSpec,
    train: Encoded,
    validation: Encoded,
    cfg: TrainConfig,
    loss_fn: LossFn | None = None,
    parameters=None,
    desc: str = "train",
    device: str = "cpu",
    score_fn: ScoreFn | None = None,
    checkpoint: Checkpoint = "best",
    start_score: float | dict | None = None,
    extra_groups: list[dict] | None = None,
    resume: str | Path | None = None,
    resume_key: str = "",
) -> dict:
    """Train `model` in place and leave it at the checkpoint the policy keeps.

    Returns a log: steps, the validation entries ({"step", "score", ...}),
    `best_validation` (the kept checkpoint's score; NaN counts as -inf) and,
    under `best_or_start`, `start_validation` and `kept` ("start" or "trained").
    `start_score` (under `best_or_start`) saves the validation pass of the
    starting weights when the caller has already measured it.
    `extra_groups` ([{"params": [...], "lr": x}]) are trained alongside at their
    own constant learning rate, without weight decay or clipping (CoFi's masks
    and Lagrange multipliers).
    `resume`: this call's resume file (module docstring); used when
    `cfg.checkpoint_minutes` or `cfg.checkpoint_every_steps` is set. A file
    written under another `resume_key` (what else the caller's result depends
    on: RunContext passes a hash of the job's config) does not count."""
    if checkpoint not in ("best", "last", "best_or_start"):
        raise ValueError(f"unknown checkpoint policy {checkpoint!r}")
    user_loss, user_score = loss_fn, score_fn
    loss_fn = loss_fn or default_loss(task)
    score_fn = score_fn or (
        lambda m: primary(task, evaluate(m, task, validation, "none", cfg.validation_batch_size, device).metrics)
    )
    in_extra = {id(p) for g in (extra_groups or []) for p in g["params"]}
    params = [p for p in (parameters if parameters is not None else model.parameters())
              if p.requires_grad and id(p) not in in_extra]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    extra = [{"params": [p for p in g["params"] if p.requires_grad], "lr": float(g["lr"]), "weight_decay": 0.0}
             for g in (extra_groups or [])]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}, *extra],
        lr=cfg.lr,
    )
    # parameters the optimizer trains that the model's state_dict does not hold
    in_model = {id(p) for p in model.parameters()}
    outside = [p for g in opt.param_groups for p in g["params"] if id(p) not in in_model]
    closures = {"loss": user_loss, "score": user_score}
    every_s = float(cfg.checkpoint_minutes or 0) * 60
    every_steps = int(cfg.checkpoint_every_steps or 0)
    resume = Path(resume) if resume is not None and (every_s > 0 or every_steps > 0) else None
    saved = None
    if resume is not None:
        fingerprint = _fingerprint(desc, resume_key, cfg, checkpoint, model, outside, train,
                                   [(len(g["params"]), g["lr"], g["weight_decay"]) for g in opt.param_groups])
        saved = _read_resume(resume, fingerprint)
        if saved is not None and not _fits(model, saved["model"]):  # a stage that changed the model's structure
            warnings.warn(f"resume file {resume} holds weights of another shape; training this stage from its start")
            saved = None
        if saved is not None and saved["done"]:  # a finished call of a retried job: its result, at once
            model.load_state_dict(saved["model"])
            with torch.no_grad():
                for p, value in zip(outside, saved["outside"]):
                    p.copy_(value)
            _restore_closures(closures, saved["closures"])
            _set_rng_state(saved["rng"])
            model.eval()
            return saved["log"]

    start = None
    if checkpoint == "best_or_start":
        start_state = copy.deepcopy(model.state_dict())
        if saved is not None:
            start = saved["start"]
        else:
            start = _scored(start_score if start_score is not None else score_fn(model))
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
    total = total_steps(cfg, len(train))
    warm = int(cfg.warmup_ratio * total)
    def schedule(s):
        return (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, [schedule, schedule] + [lambda s: 1.0] * len(extra))
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    eval_every = cfg.eval_every or steps_per_epoch
    best, best_state = None, None
    log: dict = {"validation": [], "steps": total, "checkpoint": checkpoint}
    step, epoch, perm, pos = 0, 0, None, 0
    if saved is not None:  # continue where the killed run last saved
        model.load_state_dict(saved["model"])
        with torch.no_grad():
            for p, value in zip(outside, saved["outside"]):
                p.copy_(value)
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        rng.bit_generator.state = saved["shuffle"]
        step, epoch, pos = saved["step"], saved["epoch"], saved["pos"]
        perm = None if saved["perm"] is None else saved["perm"].numpy()
        best, log = saved["best"], saved["log"]
        if saved["best_state"] is not None:
            best_state = {k: v.to(device) for k, v in saved["best_state"].items()}
        _restore_closures(closures, saved["closures"])
        _set_rng_state(saved["rng"])

    def save_progress() -> None:
        _write_resume(resume, {
            "fingerprint": fingerprint, "done": False, "step": step, "epoch": epoch, "pos": pos,
            "perm": None if perm is None else torch.from_numpy(np.asarray(perm, dtype=np.int64)),
            "shuffle": rng.bit_generator.state, "model": model.state_dict(),
            "outside": [p.detach() for p in outside], "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "best": _py(best), "best_state": best_state, "log": _py(log), "start": _py(start),
            "closures": _closure_state(closures), "rng": _rng_state(),
        })

    last_save = time.monotonic()
    with _SaveOnSigterm(resume is not None) as term:
        bar = tqdm(total=total, initial=step, desc=desc, leave=False, mininterval=2.0)
        while step < total:
            if perm is None or pos >= len(perm):  # a new epoch: a fresh permutation
                perm, pos, epoch = rng.permutation(len(train)), 0, epoch + 1
            idx = perm[pos : pos + cfg.batch_size]
            pos += cfg.batch_size
            model.train()
            b = collate(train, idx).to(device)
            batch = TrainBatch(b.input_ids, b.attention_mask, b.token_type_ids,
                               torch.as_tensor(train.labels[b.index]).to(device))
            out = model(*batch.inputs)
            loss = loss_fn(model, out, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if checkpoint != "last" and (step % eval_every == 0 or step == total):
                entry = {"step": step, **_scored(score_fn(model))}
                log["validation"].append(entry)
                if best is None or entry["score"] > best["score"]:
                    best, best_state = entry, copy.deepcopy(model.state_dict())
            if resume is not None and step < total and (
                    (every_steps and step % every_steps == 0) or (every_s and time.monotonic() - last_save >= every_s)):
                save_progress()
                last_save = time.monotonic()
            if term.requested:  # the cluster's time limit: save this step, then end as asked
                save_progress()
                last_save = time.monotonic()
                term.deliver()
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    if start is not None:
        log["start_validation"] = start["score"]
        if best is None or start["score"] > best["score"]:
            model.load_state_dict(start_state)
            best, log["kept"] = {"step": 0, **start}, "start"
        else:
            log["kept"] = "trained"
    model.eval()
    log["best_validation"] = best["score"] if best is not None else None
    log["kept_validation"] = best
    if resume is not None:  # this call's result, for a retried job to return at once
        log = _py(log)
        _write_resume(resume, {"fingerprint": fingerprint, "done": True, "model": model.state_dict(),
                               "outside": [p.detach() for p in outside], "log": log,
                               "closures": _closure_state(closures), "rng": _rng_state()})
    if term.requested:  # SIGTERM after the last step: now that the result is saved
        term.deliver()
    return log


@contextlib.contextmanager
def frozen_except(model: nn.Module, trainable, dropout: bool = False) -> Iterator[list[nn.Parameter]]:
    """Freeze every parameter of `model` but `trainable` (and, unless
    `dropout`, switch dropout off, attention dropout included) for the block;
    everything is restored afterwards. Yields the trainable parameters."""
    params = list(trainable)
    keep = {id(p) for p in params}
    was = [(p, p.requires_grad) for p in model.parameters()]
    drops = [(m, m.p) for m in model.modules() if isinstance(m, nn.Dropout)]
    attn = [(m, m.attn_dropout_p) for m in model.modules() if hasattr(m, "attn_dropout_p")]
    for p, _ in was:
        p.requires_grad_(id(p) in keep)
    for p in params:
        p.requires_grad_(True)
    if not dropout:
        for m, _ in drops:
            m.p = 0.0
        for m, _ in attn:
            m.attn_dropout_p = 0.0
    try:
        yield params
    finally:
        for p, flag in was:
            p.requires_grad_(flag)
        for m, p_drop in drops:
            m.p = p_drop
        for m, p_drop in attn:
            m.attn_dropout_p = p_drop
