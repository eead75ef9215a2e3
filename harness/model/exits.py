"""Early exit: FastBERT's student classifiers and the exit rule.

Why in the core: two methods exit early through the same heads. `fastbert`
puts them on the fine-tuned dense model, `magic_pyramid` on LTP's pruned
models (under its own policy, which calls `EarlyExitPolicy.exit_decision`
after the pruning). The students, the confidence rule and the demo heads the
generic tests run are one definition here; the self-distillation that trains
them is `harness.plugin.exit_training`.

A student sits after every layer but the last (the model's own pooler +
classifier, the teacher, serves the last layer): Linear d->k + tanh, a
2-head self-attention of width k whose [CLS] query alone is computed,
Linear k->k + tanh, Linear k->classes. A row leaves after the first layer
whose student is confident: normalised entropy u = -sum p log p / log N below
`speed` (or at most `speed`, `inclusive`); regression rows leave when the
prediction changes by less than `speed` x the training labels' standard
deviation since the previous student. Rows that leave are physically removed
from the batch (`Exit` -> `drop_rows`), and every student that runs is counted
in the FLOPs.

Models saved before this module existed pickled these classes as
`methods.fastbert.EarlyExitPolicy` and `methods.fastbert.Student`;
`methods/fastbert.py` still binds both names, so their work folders load
unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from harness.model.policy import EncoderState, Exit, Policy


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
        mixed = torch.matmul(scores.softmax(-1), v).reshape(b, self.width)
        return self.classifier(torch.tanh(self.dense(mixed)))

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
