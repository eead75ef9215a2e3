"""PoWER-BERT: progressive word-vector elimination (Goyal et al., ICML 2020).

Goyal, Choudhury, Raje, Chakaravarthy, Sabharwal, Verma, "PoWER-BERT:
Accelerating BERT Inference via Progressive Word-vector Elimination", ICML 2020.

After the attention sublayer of every layer l (before the FFN) each token's
significance is the attention it receives (`harness.model.selection`). The
layer keeps [CLS] plus the top-(k_l - 1) other tokens, in their original
order, and physically removes the rest, so the FFN and all later layers run
on k_l tokens.

Training starts from the fine-tuned dense model, one model per lambda:

1. soft extraction (configuration search): a retention weight r_{l,j} in [0, 1]
   per layer l and per rank position j over the task's padded length
   (`ctx.task.seq_len`, the `sequence` protocol, as in the paper). The token
   of significance rank j at layer l is multiplied by r_{l,j}; [CLS] is rank 0
   with weight fixed to 1. Loss = task + lambda * sum_l l * sum_j r_{l,j}
   (the layer-index-weighted L1 of the paper). The retention weights have
   their own learning rate (`retention_lr`, the paper's LR_SOFT_EXTRACT) and
   are projected back into [0, 1] before every forward. The stage keeps its
   final state.
2. counts k_l = round(sum_j r_{l,j}) ([CLS] included, at least 1), forced
   non-increasing across layers.
3. retraining with hard extraction at those counts; best checkpoint on the
   held-out validation split.

An example with no more than k_l real tokens keeps all of them. Knob: lambda
(one operating point per lambda, `lambda=<value>`); the learned counts are in
the point's knobs and notes. How this departs from the original:
`PowerBert.deviations`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from harness.plugin import (EncoderState, JobContext, MethodPlugin, MethodSettings, OperatingPoint, Policy,
                            attention_received, evaluate, primary, rank_tokens, register_method, select_tokens,
                            topk_keep)

Lambdas = tuple[float, ...]


@dataclass(frozen=True)
class Settings(MethodSettings):
    # one model per lambda; larger lambda = fewer tokens. A list, or a mapping
    # task name -> list with an optional "default" entry.
    lambdas: Lambdas | dict[str, Lambdas] = (1.0e-5, 1.0e-4, 3.0e-4, 1.0e-3)
    # stage lengths in optimizer steps (the retention weights move at most about
    # retention_lr per step under Adam, so steps, not epochs, set how far they can go)
    soft_steps: int = 16  # configuration search (soft extraction)
    soft_lr: float = 5.0e-5  # encoder/head learning rate in the soft stage (paper: LR_BERT)
    retention_lr: float = 0.2  # retention weights' learning rate (paper: LR_SOFT_EXTRACT)
    hard_steps: int = 16  # retraining with hard extraction
    hard_lr: float = 5.0e-5
    rounding: Literal["round", "floor"] = "round"  # k_l = round(mass) ("floor" = the original code's int())
    exclude_self: bool = False  # True: drop the diagonal A[i, i] from the score (original code)
    eval_before_retrain: bool = False  # log the validation score of the hard model before retraining

    def lambdas_for(self, task: str) -> Lambdas:
        lams = self.lambdas
        if isinstance(lams, dict):
            lams = lams.get(task, lams.get("default", Settings.lambdas))
        return tuple(float(x) for x in lams)


def significance(state: EncoderState, exclude_self: bool = False) -> torch.Tensor:
    """Attention each token receives, summed over heads and REAL query rows [b, n].

    Padded keys get -inf (never ranked above a real token); [CLS] is not
    treated specially here.
    """
    probs = state.attn_probs.detach()  # [b, H, n, n]; padded keys are already 0
    score = attention_received(state, probs)
    if exclude_self:
        diag = probs.diagonal(dim1=-2, dim2=-1).sum(1)  # [b, n]
        score = score - diag * state.mask.to(probs.dtype)
    return score.masked_fill(~state.mask, -math.inf)


def counts_from_mass(mass, rounding: str = "round") -> list[int]:
    """Per-layer counts from the retention mass: rounded, >= 1, non-increasing."""
    out: list[int] = []
    for m in mass:
        m = float(m)
        k = int(math.floor(m)) if rounding == "floor" else int(math.floor(m + 0.5))
        k = max(1, k)
        if out:
            k = min(k, out[-1])
        out.append(k)
    return out


class PowerBertPolicy(Policy):
    """Soft extraction while training the configuration search, hard top-k
    extraction otherwise (and always at inference)."""

    def __init__(
        self,
        num_layers: int,
        seq_len: int,
        counts: list[int] | None = None,
        lam: float = 0.0,
        soft: bool = False,
        lr_scale: float = 1.0,
        exclude_self: bool = False,
    ):
        super().__init__()
        self.num_layers = num_layers
        self.seq_len = seq_len
        self.lam = float(lam)
        self.soft = soft
        self.exclude_self = exclude_self
        # r = lr_scale * raw in value, dr/draw = 1: Adam moves r lr_scale times
        # faster than the encoder while gradients keep their natural size
        self.lr_scale = float(lr_scale)
        self.retention_raw = nn.Parameter(torch.full((num_layers, seq_len - 1), 1.0 / self.lr_scale))
        counts = counts if counts is not None else [seq_len] * num_layers
        self.register_buffer("counts", torch.tensor(counts, dtype=torch.long))

    # ---- retention weights -------------------------------------------------
    def project(self) -> None:
        """Clip the retention weights into [0, 1] (the original's constraint)."""
        with torch.no_grad():
            self.retention_raw.clamp_(0.0, 1.0 / self.lr_scale)

    def retention(self) -> torch.Tensor:
        """r [L, seq_len - 1] for ranks 1.. (rank 0, [CLS], is fixed to 1)."""
        raw = self.retention_raw
        return raw + (self.lr_scale - 1.0) * raw.detach()

    def mass(self) -> list[float]:
        """sum_j r_{l,j} per layer, [CLS] (weight 1) included."""
        r = self.retention().detach().clamp(0.0, 1.0)
        return (1.0 + r.sum(1)).tolist()

    def learned_counts(self, rounding: str = "round") -> list[int]:
        return counts_from_mass(self.mass(), rounding)

    def set_counts(self, counts: list[int]) -> None:
        self.counts = torch.tensor(counts, dtype=torch.long, device=self.counts.device)

    # ---- hooks ---------------------------------------------------------------
    def needs_attention_probs(self, layer: int) -> bool:  # noqa: ARG002
        return True

    def after_attention(self, layer: int, state: EncoderState) -> None:
        score = significance(state, self.exclude_self)
        if self.soft and self.training:
            self._soft(layer, state, rank_tokens(score, state.mask))
        else:
            # [CLS] + top-(k-1); shorter examples keep all real tokens (padding never kept)
            counts = self.host_copy("counts", (self.counts,), self.counts.tolist)
            select_tokens(state, topk_keep(score, state.mask, counts[layer]))

    def _soft(self, layer: int, state: EncoderState, ranks: torch.Tensor) -> None:
        if layer == 0:
            self.project()
        r = self.retention()[layer].clamp(0.0, 1.0)
        n = ranks.shape[1]
        w = torch.cat([r.new_ones(1), r])
        if n > w.shape[0]:  # longer than the protocol's length: no weight, dropped
            w = torch.cat([w, w.new_zeros(n - w.shape[0])])
        weight = w[ranks]  # [b, n]
        weight = torch.where(state.mask, weight, torch.ones_like(weight))
        state.hidden = state.hidden * weight.unsqueeze(-1)

    def extra_loss(self, state: EncoderState) -> torch.Tensor | None:  # noqa: ARG002
        if not (self.soft and self.training) or self.lam == 0.0:
            return None
        r = self.retention()
        layer_index = torch.arange(1, self.num_layers + 1, device=r.device, dtype=r.dtype)
        return self.lam * (layer_index * r.sum(1)).sum()

    def describe(self) -> dict:
        return {
            "lambda": self.lam,
            "counts": [int(k) for k in self.counts.tolist()],
            "seq_len": self.seq_len,
            "exclude_self": self.exclude_self,
        }


def _lambda_name(lam: float) -> str:
    return f"lambda={lam:g}"


@register_method("power_bert")
class PowerBert(MethodPlugin):
    summary = (
        "PoWER-BERT: drop the least-attended tokens after each attention sublayer, "
        "per-layer counts learned by soft extraction with a layer-weighted L1 penalty"
    )
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "significance sums attention over the real query rows only (the original also sums padded "
        "query rows), so the selection does not depend on padding",
        "significance includes a token's attention to itself, as in the paper's formula (the original "
        "code subtracts the diagonal; option exclude_self)",
        "[CLS] is protected in the soft stage too (rank 0, weight fixed to 1; the original learns its weight)",
        "per-layer counts are round(sum of retention weights) (the original truncates with int()); "
        "forced non-increasing and at least 1 as in the original",
        "an example with at most k_l real tokens keeps all of them: padding never counts as a kept token "
        "(the original pads to the fixed length and its top-k may keep padding), under every protocol",
        "tokens are physically removed at inference (gather), and in the hard retraining stage",
        "retention weights get their own learning rate through a value-scaled parameter (r = s * raw with "
        "dr/draw = 1) under the shared AdamW schedule, projected into [0, 1] before every soft forward",
        "the soft stage trains with batch padding; rank positions still span the task's fixed sequence "
        "length (padding ranks last and its weights only feel the L1 penalty)",
        "stage lengths are set in optimizer steps (soft_steps, hard_steps), far fewer than the original's "
        "3-5 epochs, to fit the CPU budget; the soft stage runs without gradient clipping as the original",
        "retraining keeps the best checkpoint on the held-out validation split (the original uses the dev set)",
    )

    @staticmethod
    def _epochs(ctx: JobContext, steps: int) -> float:
        """Epochs that make `finetune` run exactly `steps` optimizer steps."""
        per_epoch = max(1, math.ceil(len(ctx.train_split) / ctx.train_config().batch_size))
        return max(1, int(steps)) / per_epoch

    # ---- training ---------------------------------------------------------
    def train_points(self, settings, task) -> dict:
        return {_lambda_name(lam): lam for lam in settings.lambdas_for(task.name)}

    def train_point(self, ctx, name: str, lam) -> tuple[list[dict], dict]:
        s = ctx.settings
        model = ctx.load_model(method="dense")  # this point's own copy: each point loads dense afresh
        num_layers = len(model.layers)
        seq_len = ctx.task.seq_len
        t0 = time.time()
        policy = PowerBertPolicy(
            num_layers,
            seq_len,
            lam=lam,
            soft=True,
            lr_scale=s.retention_lr / s.soft_lr,
            exclude_self=s.exclude_self,
        ).to(ctx.device)
        model.policy = policy
        # (1) soft extraction: no checkpoint selection, the final state is kept
        soft_log = ctx.finetune(
            model,
            cfg=ctx.train_config(epochs=self._epochs(ctx, s.soft_steps), lr=s.soft_lr, grad_clip=0.0),
            checkpoint="last",
            desc=f"{ctx.task.name}/power_bert {name} soft",
        )
        policy.project()
        mass = policy.mass()
        t1 = time.time()
        # (2) counts
        counts = policy.learned_counts(s.rounding)
        policy.set_counts(counts)
        policy.soft = False
        policy.retention_raw.requires_grad_(False)
        before = None
        if s.eval_before_retrain:
            run = evaluate(model, ctx.task, ctx.encoded("validation"), "none", ctx.validation_batch_size,
                           ctx.device)
            before = primary(ctx.task, run.metrics)
        # (3) retrain with hard extraction
        hard_log = ctx.finetune(
            model,
            cfg=ctx.train_config(epochs=self._epochs(ctx, s.hard_steps), lr=s.hard_lr),
            desc=f"{ctx.task.name}/power_bert {name} hard",
        )
        model.eval()
        ctx.save_model(model, f"{name}.pt")
        t2 = time.time()
        return [{"name": name, "lambda": lam, "file": f"{name}.pt"}], {
            "lambda": lam,
            "soft_mass": [round(m, 3) for m in mass],
            "counts": counts,
            "soft_steps": soft_log["steps"],
            "retrain_steps": hard_log["steps"],
            "validation_hard_before_retrain": before,
            "validation_after_retrain": hard_log["best_validation"],
            "retrain": hard_log["validation"],
            "seconds_soft": round(t1 - t0, 1),
            "seconds_retrain": round(t2 - t1, 1),
        }

    def operating_points(self, ctx):
        for entry in ctx.points():
            name, lam = entry["name"], entry["lambda"]
            model = ctx.load_model(entry["file"])
            policy = model.policy
            policy.soft = False
            model.eval()
            counts = [int(k) for k in policy.counts.tolist()]
            yield OperatingPoint(
                name,
                {"lambda": lam, "counts": counts},
                model,
                notes={
                    "counts": counts,
                    "soft_mass": [round(m, 3) for m in policy.mass()],
                    "rank_positions": policy.seq_len,
                    "rounding": ctx.settings.rounding,
                    "padding": "examples with <= k_l real tokens keep all of them; padding never counts as kept",
                    "significance": "attention received, summed over heads and real query rows"
                    + ("; self-attention excluded" if policy.exclude_self else ""),
                },
            )

    def demo_model(self, model):
        n_layers = len(model.layers)
        seq_len = 64
        counts = [max(2, round(48 * (1 - (i + 1) / (n_layers + 1)))) for i in range(n_layers)]
        model.policy = PowerBertPolicy(n_layers, seq_len, counts=counts)
        return model
