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

Mixed precision (`TrainConfig.autocast = "bf16"`): every training forward and loss runs under
`torch.autocast` in bfloat16 (matrix products in bf16 with fp32 accumulation, the losses, LayerNorm and
softmax-like reductions autocast keeps in fp32; parameters, gradients and the optimizer in fp32), the
standard mixed-precision recipe for fine-tuning BERT. On a CPU with bf16 matrix units a training step is
1.6-1.7x faster (MiniLM, batch 32, 2 threads, measured 2026-12-07); where the device has none
(`harness.model.precision.unavailable`) it trains in fp32 and the log says why. Validation passes (the
checkpoint choices) run in fp32, as every evaluation does.

`frozen_except` freezes everything but some parameters (and switches dropout
off) for stages that train heads on a fixed backbone.

Resume (`resume=<file>`, which `RunContext.finetune` gives every call of a job
its own of): a job killed at a cluster's time limit continues where it stopped
when it is retried, with the same batches and random draws; what is saved,
when, and which file counts: `harness.train.resume`.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
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
from harness.errors import HarnessError
from harness.measure.metrics import primary
from harness.model.precision import unavailable
from harness.train.inference import evaluate
from harness.train.resume import ResumeFile, SaveOnSigterm, fingerprint, to_python

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
    autocast: str = "none"  # "bf16": training forwards under torch.autocast (module docstring)


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


def autocast_for(cfg: TrainConfig, device) -> tuple[contextlib.AbstractContextManager, str]:
    """(the context every training forward and loss runs in, what it runs: "bf16", "none", or "none (why
    not bf16)")."""
    if cfg.autocast in (None, "none"):
        return contextlib.nullcontext(), "none"
    if cfg.autocast != "bf16":
        raise ValueError(f"unknown train.autocast {cfg.autocast!r} (known: none, bf16)")
    why = unavailable("bf16", device)
    if why is None and str(device).startswith("cuda") and not torch.cuda.is_bf16_supported():
        why = "this GPU has no bfloat16 units (fp16 would need loss scaling)"
    if why:
        return contextlib.nullcontext(), f"none ({why})"
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16), "bf16"


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
    file, saved = None, None
    if resume is not None and (every_s > 0 or every_steps > 0):
        file = ResumeFile(resume, fingerprint(desc, resume_key, cfg, checkpoint, model, outside, train,
                                              [(len(g["params"]), g["lr"], g["weight_decay"])
                                               for g in opt.param_groups]),
                          model, outside, closures)
        saved = file.read()
        if saved is not None and saved["done"]:  # a finished call of a retried job: its result, at once
            file.restore(saved)
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
    amp, log_autocast = autocast_for(cfg, device)
    log: dict = {"validation": [], "steps": total, "checkpoint": checkpoint, "autocast": log_autocast}
    step, epoch, perm, pos = 0, 0, None, 0
    if saved is not None:  # continue where the killed run last saved
        file.restore(saved)  # model, outside parameters, closures, global generators
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        rng.bit_generator.state = saved["shuffle"]
        step, epoch, pos = saved["step"], saved["epoch"], saved["pos"]
        perm = None if saved["perm"] is None else saved["perm"].numpy()
        best, log = saved["best"], saved["log"]
        if saved["best_state"] is not None:
            best_state = {k: v.to(device) for k, v in saved["best_state"].items()}

    def save_progress() -> None:
        nonlocal last_save
        file.write(
            done=False, step=step, epoch=epoch, pos=pos,
            perm=None if perm is None else torch.from_numpy(np.asarray(perm, dtype=np.int64)),
            shuffle=rng.bit_generator.state, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
            best=to_python(best), best_state=best_state, log=to_python(log), start=to_python(start),
        )
        last_save = time.monotonic()

    last_save = time.monotonic()
    with SaveOnSigterm(file is not None) as term:
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
            with amp:
                out = model(*batch.inputs)
                loss = loss_fn(model, out, batch)
            value = loss.item()  # the one read per step (the progress bar shows it)
            if not math.isfinite(value):
                raise HarnessError(f"{desc}: the training loss is {value} at step {step + 1}: training diverged",
                                   "lower the learning rate, or train in fp32 (train.autocast: none) if it ran in "
                                   f"bf16 (this call: {log_autocast})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if checkpoint != "last" and (step % eval_every == 0 or step == total):
                entry = {"step": step, **_scored(score_fn(model))}
                log["validation"].append(entry)
                if best is None or entry["score"] > best["score"]:
                    best, best_state = entry, copy.deepcopy(model.state_dict())
            if file is not None and step < total and (
                    (every_steps and step % every_steps == 0) or (every_s and time.monotonic() - last_save >= every_s)):
                save_progress()
            if term.requested:  # the cluster's time limit: save this step, then end as asked
                save_progress()
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
    if file is not None:  # this call's result, for a retried job to return at once
        log = to_python(log)
        file.write(done=True, log=log)
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
