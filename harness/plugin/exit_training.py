"""Self-distillation of early-exit heads (FastBERT's stage 2), for any method with exits.

Why in the core: `fastbert` trains its students on the frozen dense model and
`magic_pyramid` trains the same students on LTP's frozen pruned models; the
settings (`ExitHeadSettings`), the new heads (`new_exit_policy`) and the
training (`train_exits`) are one definition here. The heads and the exit rule
are `harness.model.exits`.

Training: backbone, teacher and any other policy parameters frozen (dropout
off: the teacher's targets are its eval-time predictions); only the students
learn, by sum_l KL(p_teacher || p_student_l) on the training texts (labels
unused; MSE to the teacher's prediction for regression). The checkpoint with
the lowest validation distillation loss is kept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.encoding import Encoded
from harness.data.padding import collate
from harness.model.exits import EarlyExitPolicy
from harness.plugin.context import JobContext
from harness.plugin.settings import MethodSettings
from harness.train.finetune import frozen_except


@dataclass(frozen=True)
class ExitHeadSettings(MethodSettings):
    """The students and their self-distillation (FastBERT's and Magic Pyramid's settings extend it)."""

    student_width: int = 128
    student_heads: int = 2
    distill_epochs: float = 1.0
    distill_lr: float = 1.0e-3


def exit_distillation_loss(teacher: torch.Tensor, students: list[torch.Tensor], regression: bool) -> torch.Tensor:
    """sum_l KL(p_teacher || p_student_l) (MSE to the teacher for regression)."""
    teacher = teacher.detach()
    if regression:
        return sum(F.mse_loss(s[:, 0], teacher[:, 0]) for s in students)
    p = teacher.log_softmax(-1)
    return sum(F.kl_div(s.log_softmax(-1), p, log_target=True, reduction="batchmean") for s in students)


@torch.no_grad()
def validation_distill_loss(model, exits: EarlyExitPolicy, enc: Encoded, batch_size: int, device) -> float:
    """The mean distillation loss over `enc` (the validation split), the model in eval mode."""
    was, was_collecting = model.training, exits.collect
    model.eval()
    exits.collect = True
    total, n = 0.0, 0
    try:
        for s in range(0, len(enc), batch_size):
            batch = collate(enc, np.arange(s, min(len(enc), s + batch_size))).to(device)
            out = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            loss = exit_distillation_loss(out.logits, out.state.scratch["student_logits"], exits.regression)
            total += float(loss) * len(batch.index)
            n += len(batch.index)
    finally:
        exits.collect = was_collecting
        model.train(was)
    return total / max(n, 1)


def train_exits(ctx: JobContext, model, exits: EarlyExitPolicy, s, desc: str = "") -> dict:
    """FastBERT stage 2 on `model` in place: backbone, teacher and any other
    policy parameters frozen (dropout off: the teacher's targets are its
    eval-time predictions); only `exits.students` learn. Keeps the checkpoint
    with the lowest validation distillation loss."""
    t0 = time.time()
    val = ctx.encoded("validation")
    losses: list[float] = []

    def loss_fn(m, out, batch):  # labels unused: self-distillation
        return exit_distillation_loss(out.logits, out.state.scratch["student_logits"], exits.regression)

    def score_fn(m) -> float:
        losses.append(validation_distill_loss(m, exits, val, ctx.validation_batch_size, ctx.device))
        return -losses[-1]

    exits.collect = True
    try:
        with frozen_except(model, exits.students.parameters()) as students:
            log = ctx.finetune(
                model,
                cfg=ctx.train_config(epochs=s.distill_epochs, lr=s.distill_lr),
                loss_fn=loss_fn,
                parameters=students,
                score_fn=score_fn,
                desc=desc or f"{ctx.task.name}/{ctx.method} exits",
            )
    finally:
        exits.collect = False
    model.eval()
    return {
        "steps": log["steps"],
        "validation_distill_loss": losses,
        "best_validation_distill_loss": -log["best_validation"],
        "seconds": round(time.time() - t0, 2),
    }


def label_scale(ctx: JobContext) -> float:
    """The training labels' standard deviation (1 where it is 0): a regression exit's unit."""
    labels = np.asarray(ctx.encoded("train").labels, dtype=np.float64)
    return float(labels.std()) or 1.0


def new_exit_policy(ctx: JobContext, model, s) -> EarlyExitPolicy:
    """Untrained exit heads for `model` under the `ExitHeadSettings` `s`, on the job's device."""
    reg = ctx.task.is_regression
    return EarlyExitPolicy(
        model.arch().hidden,
        model.num_labels,
        len(model.layers),
        s.student_width,
        s.student_heads,
        regression=reg,
        label_scale=label_scale(ctx) if reg else 1.0,
    ).to(ctx.device)
