"""LTP: Learned Token Pruning (learned per-layer thresholds).

Kim, Shen, Thorsley, Gholami, Kwon, Hassoun, Keutzer, "Learned Token Pruning
for Transformers", KDD 2022 (arXiv:2107.00910); reference code
github.com/kssteven418/LTP.

After the attention sublayer of layer l, token i's importance is the
attention it receives, averaged over heads and over the real query rows
present: s_l(i) = 1/(H n_l) sum_h sum_q P_h[q, i]. Token i is pruned when
s_l(i) < theta_l, a threshold per layer (no top-k, so the number of kept
tokens adapts to every input); pruned tokens are physically removed before
the FFN of that layer.

Training (`ltp`), one model per lambda, from the fine-tuned dense model:
1. soft stage: thresholds initialised to theta_l = theta_final * l / L and
   learned with the model; in training the soft mask
   m_l(i) = sigmoid((s_l(i) - theta_l) / T) multiplies each token's layer
   output and the loss is task + lambda * mean_l(mean over real tokens of
   m_l). The last checkpoint is kept (accuracy alone would favour the least
   pruned one).
2. hard stage: thresholds frozen, masks binarised (tokens removed exactly as
   at inference), the model fine-tuned; best validation checkpoint, the
   stage's starting point included.

The paper's manual-threshold ablation is `methods/ltp_manual.py`.

Unless absolute values are configured, theta_final and the threshold learning
rate are multiples of 1/(mean training length), the mean score of an average
training input, so one set of defaults prunes comparably on short and long
tasks; the resolved absolute values are the knobs recorded.

How this departs from the original: `LTP.deviations`.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from harness.model.policy import EncoderState, Policy, select_tokens
from harness.model.selection import attention_received, mean_kept_fraction, received_sum, threshold_keep
from harness.plugin import MethodPlugin, MethodSettings, OperatingPoint, register_method


@dataclass(frozen=True)
class Settings(MethodSettings):
    lambdas: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    theta_final: float | None = None  # None: theta_final_rel / (mean training length)
    theta_final_rel: float = 0.25
    temperature: float = 2e-3
    soft_epochs: float = 0.25
    soft_lr: float | None = None  # None: the profile's learning rate
    threshold_lr: float | None = None  # None: threshold_lr_rel / (mean training length)
    threshold_lr_rel: float = 0.108  # 0.004 on MR (mean training length 27)
    soft_cumulative: bool = False
    hard_epochs: float = 0.25
    hard_lr: float | None = None


# ---- scoring -------------------------------------------------------------------
def per_real_row(received: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """Summed attention received -> mean over heads and real query rows."""
    return received / heads / mask.to(received.dtype).sum(1, keepdim=True).clamp(min=1.0)


def token_scores(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LTP's score [b, n]: attention received, mean over heads and real query rows."""
    return per_real_row(received_sum(probs, mask), probs.shape[1], mask)


def relative_to_length(value, mean_length: float):
    """A length-relative setting (or list of them) as absolute values, 3 significant digits."""
    conv = lambda r: float(f"{float(r) / mean_length:.3g}")  # noqa: E731
    return tuple(conv(r) for r in value) if isinstance(value, tuple) else conv(value)


def rising_thresholds(theta_final: float, num_layers: int) -> list[float]:
    """theta_l = theta_final * l / L for l = 1..L (the last layer gets theta_final)."""
    return [float(theta_final) * (i + 1) / num_layers for i in range(num_layers)]


# ---- the policy ------------------------------------------------------------------
class LTPPolicy(Policy):
    """Per-layer threshold token pruning after the attention sublayer.

    Thresholds are theta = base + lr_scale * delta (delta learned in the soft
    stage). In training with `soft` set, tokens are not removed: the soft mask
    multiplies each token's layer output and `extra_loss` adds lambda times the
    mean mask. Otherwise (hard-stage training, inference) tokens below the
    threshold are physically removed.
    """

    def __init__(self, num_layers: int, theta_final: float, temperature: float = 2e-3, lam: float = 0.0,
                 soft: bool = False, lr_scale: float = 1.0, learnable: bool = False, cumulative: bool = False):
        super().__init__()
        self.num_layers = int(num_layers)
        self.theta_final = float(theta_final)
        self.temperature = float(temperature)
        self.lam = float(lam)
        self.soft = bool(soft)
        self.lr_scale = float(lr_scale)
        self.cumulative = bool(cumulative)
        self.learned = bool(learnable)  # thresholds learned (ltp) or fixed (ltp_manual)
        self.register_buffer("base", torch.tensor(rising_thresholds(theta_final, num_layers), dtype=torch.float32))
        self.delta = nn.Parameter(torch.zeros(self.num_layers), requires_grad=learnable)

    @property
    def thresholds(self) -> torch.Tensor:
        return self.base + self.lr_scale * self.delta

    def freeze(self) -> None:
        """Fold the learned offsets into the base, stop learning thresholds, switch to hard masks."""
        with torch.no_grad():
            self.base.copy_(self.thresholds)
            self.delta.zero_()
        self.delta.requires_grad_(False)
        self.soft = False

    def _soft_active(self) -> bool:
        return self.training and self.soft

    def needs_attention_probs(self, layer: int) -> bool:
        if self._soft_active():
            return True
        # s >= 0, so a threshold <= 0 can prune nothing: keep the fast attention path
        return self.host_thresholds()[layer] > 0

    def host_thresholds(self) -> list[float]:
        """The thresholds as Python floats, read back once per change (not per layer)."""
        return self.host_copy("thresholds", (self.base, self.delta), lambda: self.thresholds.detach().tolist())

    def after_attention(self, layer: int, state: EncoderState) -> None:
        if state.attn_probs is None:
            return
        theta = self.thresholds[layer]
        scores = per_real_row(attention_received(state), state.attn_probs.shape[1], state.mask)
        if self._soft_active():
            m = torch.sigmoid((scores - theta) / self.temperature)
            first = torch.arange(m.shape[1], device=m.device).unsqueeze(0) == 0
            m = torch.where(first, torch.ones_like(m), m) * state.mask.to(m.dtype)
            if self.cumulative and "ltp_prev" in state.scratch:
                m = m * state.scratch["ltp_prev"]
            state.scratch["ltp_prev"] = m
            state.scratch["ltp_mask"] = m
            state.scratch.setdefault("ltp_masks", []).append((m, state.mask))
            return
        # a Python threshold: no device read; select_tokens checks whether anything goes
        keep = threshold_keep(scores.detach(), state.mask, self.host_thresholds()[layer])
        select_tokens(state, keep)

    def after_layer(self, layer: int, state: EncoderState):
        m = state.scratch.pop("ltp_mask", None)
        if m is not None:
            state.hidden = state.hidden * m.unsqueeze(-1).to(state.hidden.dtype)
        return None

    def mask_mean(self, state: EncoderState) -> torch.Tensor | None:
        """Mean over layers of the mean soft mask over real tokens (token-weighted)."""
        masks = state.scratch.get("ltp_masks")
        if not masks:
            return None
        return mean_kept_fraction(masks)

    def extra_loss(self, state: EncoderState) -> torch.Tensor | None:
        if not self._soft_active() or self.lam == 0.0:
            return None
        mean = self.mask_mean(state)
        return None if mean is None else self.lam * mean

    def describe(self) -> dict:
        return {
            "kind": "ltp_threshold",
            "thresholds_learned": self.learned,
            "thresholds": [round(float(t), 8) for t in self.thresholds.detach().cpu()],
            "theta_final_init": self.theta_final,
            "temperature": self.temperature,
            "lambda": self.lam,
            "score": "attention received, mean over heads and real query rows of the tokens present",
            "cls_kept": True,
            "soft_cumulative": self.cumulative,
        }


# ---- shared training steps ---------------------------------------------------------
def format_knob(x: float) -> str:
    return f"{float(x):g}"


def with_lengths_resolved(ctx, s, pairs):
    """Settings with the length-relative values [(absolute, relative)] made absolute
    (an absolute value, when configured, wins) and learning rates left at None
    set to the profile's."""
    mean_length = ctx.train_split_info["mean_train_length"]
    changes = {a: relative_to_length(getattr(s, r), mean_length) for a, r in pairs if getattr(s, a) is None}
    for lr in ("soft_lr", "hard_lr"):
        if hasattr(s, lr) and getattr(s, lr) is None:
            changes[lr] = float(ctx.cfg["train"]["lr"])
    return dataclasses.replace(s, **changes)


def prepare(ctx, pairs):
    """The start of an ltp / ltp_manual point: settings with the length-relative
    values `pairs` resolved, and the fine-tuned dense model."""
    s = with_lengths_resolved(ctx, ctx.settings, pairs)
    return s, ctx.load_model(method="dense").to(ctx.device)


def hard_stage(ctx, model, s, name: str, start: dict) -> dict:
    """Fine-tune with the pruning active and keep the best validation checkpoint,
    the starting point (whose `ctx.validation_summary` is `start`) included."""
    log = ctx.finetune(
        model,
        cfg=ctx.train_config(epochs=s.hard_epochs, lr=s.hard_lr),
        score_fn=ctx.validation_summary,
        checkpoint="best_or_start",
        start_score=start,
        desc=f"{ctx.task.name}/{ctx.method} hard {name}",
    )
    return {k: log[k] for k in ("steps", "start_validation", "best_validation", "kept", "kept_validation")}


# ---- LTP ---------------------------------------------------------------------------
@register_method("ltp")
class LTP(MethodPlugin):
    summary = "LTP learned token pruning: per-layer learned thresholds on attention received (soft then hard stage)"
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "token score averages attention received over heads and the REAL query rows of the tokens present "
        "(the reference averages over all padded rows, tying thresholds to the padded length)",
        "scores use the softmax output before attention dropout "
        "(the reference uses post-dropout probabilities in training)",
        "[CLS] is always kept (the reference does not protect it)",
        "pruned tokens are physically removed after the attention sublayer at inference and in the hard stage "
        "(the reference hard-masks them in the attention mask)",
        "initial thresholds theta_l = theta_final*l/L with l = 1..L as in the reference README "
        "(the reference code's 0-indexed layers give the first layer a zero threshold)",
        "the thresholds' own learning rate is realised by the Adam-invariant reparameterisation "
        "theta = theta_0 + (threshold_lr/lr)*delta under one optimiser and schedule "
        "(the reference uses a second optimiser)",
        "soft stage keeps its last checkpoint; hard stage keeps the best checkpoint on the held-out validation split "
        "(its starting point included)",
        "theta_final and the threshold learning rate default to multiples of 1/(mean training length) "
        "(theta_final_rel, threshold_lr_rel) unless absolute values are configured; the reference uses an absolute "
        "theta_final of 0.01 on padded-length scores",
        "short stage budgets by default (soft_epochs, hard_epochs = 0.25 epoch each) instead of the reference's "
        "1-10 soft and 5 hard epochs",
        "train_max_length (robustness variants) filters both stages; the dense model they start from is the "
        "shared one",
    )

    def train_points(self, settings, task) -> dict:
        return {f"lambda={format_knob(lam)}": lam for lam in settings.lambdas}

    def train_point(self, ctx, name: str, lam) -> tuple[list[dict], dict]:
        s, model = prepare(ctx, [("theta_final", "theta_final_rel"), ("threshold_lr", "threshold_lr_rel")])
        t0 = time.time()
        model.policy = LTPPolicy(len(model.layers), s.theta_final, s.temperature, lam=lam, soft=True,
                                 lr_scale=s.threshold_lr / s.soft_lr, learnable=True,
                                 cumulative=s.soft_cumulative).to(ctx.device)
        init = [float(x) for x in model.policy.thresholds.detach().cpu()]
        soft_log = ctx.finetune(model, cfg=ctx.train_config(epochs=s.soft_epochs, lr=s.soft_lr),
                                checkpoint="last", desc=f"{ctx.task.name}/ltp soft {name}")
        model.policy.freeze()
        model.eval()
        soft_val = ctx.validation_summary(model)
        t_soft = time.time() - t0
        hard = hard_stage(ctx, model, s, name, soft_val) if s.hard_epochs > 0 else None
        ctx.save_model(model.eval(), f"{name}.pt")
        entry = {"name": name, "lambda": lam, "theta_final": s.theta_final, "temperature": s.temperature,
                 "file": f"{name}.pt"}
        return [entry], {
            "lambda": lam,
            "resolved_settings": dataclasses.asdict(s),
            "thresholds_init": init,
            "thresholds_learned": [float(x) for x in model.policy.thresholds.cpu()],
            "soft_steps": soft_log["steps"],
            "soft_validation": soft_val,
            "hard": hard,
            "validation": hard["kept_validation"] if hard else soft_val,
            "seconds_soft": round(t_soft, 2),
            "seconds_total": round(time.time() - t0, 2),
        }

    def operating_points(self, ctx):
        for entry in ctx.read_json("points.json"):
            model = ctx.load_model(entry["file"]).eval()
            yield OperatingPoint(
                entry["name"],
                {k: entry[k] for k in ("lambda", "theta_final", "temperature")},
                model,
                notes={
                    "thresholds": [float(x) for x in model.policy.thresholds.detach().cpu()],
                    "train_max_length": ctx.settings.train_max_length,
                },
            )

    def demo_model(self, model):
        # rising thresholds that prune near-uniform attention of a random model:
        # at the last layer anything below 0.05 (i.e. inputs with > 20 tokens left) goes
        model.policy = LTPPolicy(len(model.layers), theta_final=0.05)
        return model
