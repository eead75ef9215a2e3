"""FastBERT: self-distilled early exit with per-layer student classifiers.

Liu, Zhou, Wang, Zhao, Deng, Ju, "FastBERT: a Self-distilling BERT with
Adaptive Inference Time", ACL 2020 (arXiv:2004.02178).

Method. A small student classifier sits after every layer but the last (the
model's own pooler + classifier, the teacher, serves the last layer). Each
student is the paper's: Linear d->k + tanh, a 2-head self-attention of width k,
the [CLS] position, Linear k->k + tanh, Linear k->classes (k = 128). At
inference a row leaves after the first layer whose student is confident:
normalised entropy u = -sum p log p / log N below the `speed` threshold.
Rows that leave are physically removed from the batch (`Exit` ->
`drop_rows`), so the time saved is real; every student that runs is counted
in the FLOPs (as run, and at the row's real token count for protocol `none`).

Training, from the fine-tuned dense model (FastBERT's stage 1 is exactly the
dense fine-tune, so it is reused, not repeated):
stage 2 freezes backbone and teacher and trains the students by
sum_l KL(p_teacher || p_student_l) on the training texts (labels unused).
`speed` is an inference-time knob only: one trained model serves every point.

Regression tasks (STS-B) have no class distribution, so no entropy. The
harness uses the natural stability rule instead: students are distilled by
MSE to the teacher's prediction, and a row leaves after layer l >= 2 when
|y_l - y_(l-1)| / sigma < speed, sigma the training labels' standard
deviation (recorded). This is a harness choice, not the paper's.

How this departs from the original: `FastBERT.deviations`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.data.encoding import Encoded
from harness.data.padding import collate
from harness.model.policy import EncoderState, Exit, Policy
from harness.plugin import MethodPlugin, MethodSettings, OperatingPoint, register_method
from harness.run.finetune import frozen_except


@dataclass(frozen=True)
class ExitHeadSettings(MethodSettings):
    """The students and their self-distillation (shared with Magic Pyramid)."""

    student_width: int = 128
    student_heads: int = 2
    distill_epochs: float = 1.0
    distill_lr: float = 1.0e-3


@dataclass(frozen=True)
class Settings(ExitHeadSettings):
    speeds: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8)  # inference-time thresholds, one point each


# ---- the student classifier ----------------------------------------------------
class Student(nn.Module):
    """FastBERT's exit classifier, reading the layer's hidden states."""

    def __init__(self, hidden: int, num_labels: int, width: int = 128, heads: int = 2):
        super().__init__()
        if width % heads:
            raise ValueError(f"student width {width} is not divisible by its {heads} heads")
        self.width, self.heads = width, heads
        self.proj = nn.Linear(hidden, width)
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.dense = nn.Linear(width, width)
        self.classifier = nn.Linear(width, num_labels)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = hidden.shape
        h, dh = self.heads, self.width // self.heads
        x = torch.tanh(self.proj(hidden))  # [b, n, k]
        q = self.query(x[:, 0]).view(b, h, 1, dh)
        k = self.key(x).view(b, n, h, dh).transpose(1, 2)
        v = self.value(x).view(b, n, h, dh).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)  # [b, h, 1, n]
        scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        ctx = torch.matmul(scores.softmax(-1), v).reshape(b, self.width)
        return self.classifier(torch.tanh(self.dense(ctx)))

    def macs(self, tokens: torch.Tensor | float) -> torch.Tensor | float:
        """MACs for a row of `tokens` tokens (the matrix products above)."""
        d, k = self.proj.in_features, self.width
        per_token = d * k + 2 * k * k + 2 * k  # proj, K, V, QK^T and AV of the [CLS] query
        fixed = 2 * k * k + k * self.classifier.out_features  # Q of [CLS], dense, classifier
        return tokens * per_token + fixed


def entropy_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """FastBERT's u = -sum p log p / log N, in [0, 1]."""
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])


# ---- the policy ----------------------------------------------------------------
class EarlyExitPolicy(Policy):
    """Students after layers 0..L-2; rows leave when their student is confident.

    `speed=None` never exits and runs no student (the teacher alone). With
    `collect` set, every student runs on every row and its logits are kept in
    `state.scratch["student_logits"]` (distillation); nobody exits.
    """

    def __init__(
        self,
        hidden: int,
        num_labels: int,
        num_layers: int,
        width: int = 128,
        heads: int = 2,
        regression: bool = False,
        label_scale: float = 1.0,
    ):
        super().__init__()
        self.students = nn.ModuleList(Student(hidden, num_labels, width, heads) for _ in range(num_layers - 1))
        self.regression = bool(regression)
        self.label_scale = float(label_scale)
        self.speed: float | None = None
        self.inclusive = False  # leave when u < speed (FastBERT) or u <= speed (Magic Pyramid's tau)
        self.collect = False

    def uncertainty(self, layer: int, logits: torch.Tensor, state: EncoderState) -> torch.Tensor:
        if not self.regression:
            return entropy_uncertainty(logits)
        # stability rule: change of the prediction since the previous student
        prev = state.scratch.get("exit_prev")
        if prev is None:
            prev = logits.new_full((int(state.recorder.batch),), float("nan"))
        now = logits[:, 0].detach()
        u = (now - prev[state.rows]).abs() / self.label_scale
        state.scratch["exit_prev"] = prev.index_copy(0, state.rows, now)
        return torch.nan_to_num(u, nan=float("inf"))

    def exit_decision(self, layer: int, state: EncoderState) -> Exit | None:
        """The early-exit step alone (shared with policies that also prune tokens)."""
        if layer >= len(self.students):
            return None
        if self.collect:
            state.scratch.setdefault("student_logits", []).append(self.students[layer](state.hidden, state.mask))
            return None
        if self.speed is None:
            return None
        student = self.students[layer]
        logits = student(state.hidden, state.mask)
        state.recorder.add_extra_macs(state.rows, student.macs, state.mask)
        u = self.uncertainty(layer, logits, state)
        leave = u <= self.speed if self.inclusive else u < self.speed
        return Exit(leave, logits)

    def after_layer(self, layer: int, state: EncoderState) -> Exit | None:
        return self.exit_decision(layer, state)

    def describe(self) -> dict:
        s = self.students[0] if len(self.students) else None
        return {
            "kind": "early_exit",
            "speed": self.speed,
            "exit_rule": "u <= speed" if self.inclusive else "u < speed",
            "exit_layers": len(self.students),
            "student": None if s is None else {"width": s.width, "heads": s.heads},
            "confidence": "prediction change / label std (regression)" if self.regression
            else "normalised entropy",
            "label_scale": self.label_scale if self.regression else None,
        }


# ---- self-distillation -------------------------------------------------------------
def distillation_loss(teacher: torch.Tensor, students: list[torch.Tensor], regression: bool) -> torch.Tensor:
    """sum_l KL(p_teacher || p_student_l) (MSE to the teacher for regression)."""
    teacher = teacher.detach()
    if regression:
        return sum(F.mse_loss(s[:, 0], teacher[:, 0]) for s in students)
    p = teacher.log_softmax(-1)
    return sum(F.kl_div(s.log_softmax(-1), p, log_target=True, reduction="batchmean") for s in students)


@torch.no_grad()
def validation_distill_loss(model, exits: EarlyExitPolicy, enc: Encoded, batch_size: int, device) -> float:
    was, was_collecting = model.training, exits.collect
    model.eval()
    exits.collect = True
    total, n = 0.0, 0
    try:
        for s in range(0, len(enc), batch_size):
            batch = collate(enc, np.arange(s, min(len(enc), s + batch_size))).to(device)
            out = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            loss = distillation_loss(out.logits, out.state.scratch["student_logits"], exits.regression)
            total += float(loss) * len(batch.index)
            n += len(batch.index)
    finally:
        exits.collect = was_collecting
        model.train(was)
    return total / max(n, 1)


def train_exits(ctx, model, exits: EarlyExitPolicy, s, desc: str = "") -> dict:
    """FastBERT stage 2 on `model` in place: backbone, teacher and any other
    policy parameters frozen (dropout off: the teacher's targets are its
    eval-time predictions); only `exits.students` learn. Keeps the checkpoint
    with the lowest validation distillation loss."""
    t0 = time.time()
    val = ctx.encoded("validation")
    losses: list[float] = []

    def loss_fn(m, out, batch):  # labels unused: self-distillation
        return distillation_loss(out.logits, out.state.scratch["student_logits"], exits.regression)

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


def label_scale(ctx) -> float:
    labels = np.asarray(ctx.encoded("train").labels, dtype=np.float64)
    return float(labels.std()) or 1.0


def new_exit_policy(ctx, model, s) -> EarlyExitPolicy:
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


# ---- the plugin ---------------------------------------------------------------------
@register_method("fastbert")
class FastBERT(MethodPlugin):
    summary = "FastBERT early exit: self-distilled student classifiers, exit when normalised entropy < speed"
    Settings = Settings
    requires = ("dense",)
    cannot_serve = {
        "span": "early exit has no exit rule for span outputs in FastBERT's paper (its students classify [CLS] and "
                "exit on the entropy of a class distribution); the harness does not invent one, so span tasks "
                "(SQuAD) are not run",
    }
    deviations = (
        "stage 1 is the harness's dense fine-tune (reused, not repeated)",
        "the student's self-attention computes the [CLS] query only (the only output it reads): "
        "identical output, only the FLOPs that must run",
        "stage 2 trains the students for distill_epochs (default 1) at distill_lr (default 1e-3), the frozen "
        "backbone's dropout off, and keeps the "
        "checkpoint with the lowest distillation loss on the held-out validation split",
        "regression tasks: students distilled by MSE to the teacher; exit when the prediction changes by less than "
        "speed x (training label std) since the previous student (a harness rule; FastBERT is classification-only)",
    )

    def train(self, ctx) -> dict:
        s = ctx.settings
        model = ctx.load_model(method="dense").to(ctx.device)
        model.policy = new_exit_policy(ctx, model, s)
        log = {"settings": ctx.settings_log, "distill": train_exits(ctx, model, model.policy, s)}
        ctx.save_model(model.eval())
        return log

    def operating_points(self, ctx):
        model = ctx.load_model()
        for speed in ctx.settings.speeds:
            m = copy.deepcopy(model)
            m.policy.speed = float(speed)
            yield OperatingPoint(f"speed={float(speed):g}", {"speed": float(speed)}, m.eval())

    def demo_model(self, model):
        model.policy = demo_exits(model)
        return model


def demo_exits(model) -> EarlyExitPolicy:
    """Untrained exit heads with spread-out confidences: large random output
    weights make the earlier students' entropies spread over (0, 1), so at
    speed 0.9 some rows leave early; the last student's tiny weights keep it
    unsure, so the rest run to the end."""
    exits = EarlyExitPolicy(model.arch().hidden, model.num_labels, len(model.layers), 16, 2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i, st in enumerate(exits.students):
            scale = 0.01 if i == len(exits.students) - 1 else 3.0
            st.classifier.weight.copy_(torch.randn(st.classifier.weight.shape, generator=gen) * scale)
    exits.speed = 0.9
    return exits
