"""Transkimmer: learned token skimming with a predictor before every layer.

Guan, Li, Lin, Zhu, Leng, Guo, "Transkimmer: Transformer Learns to
Layer-wise Skim", ACL 2022 (arXiv:2205.07324); reference code
github.com/ChandlerGuan/Transkimmer.

Before layer l a small predictor (LayerNorm, Linear(d, d), LayerNorm, GELU,
Linear(d, 2)) reads every token's hidden state and decides keep or skim.
[CLS] is always kept. A skimmed token skips every later layer; its hidden
state from the last layer that computed it is what the output sees (for a
span head, the Drop-and-Restore store of `select_tokens`). Decisions
accumulate: a skimmed token never returns.

Training (one model per alpha, from the fine-tuned dense model): the keep
decision is a hard Gumbel-softmax sample (temperature 1, straight-through
gradients); the sample multiplies the previous layer's mask. Nothing is
removed: the attention to a skimmed key is masked out and renormalised
(`state.key_weight`), and a skimmed token's state passes through the layer
unchanged (h <- m * layer(h) + (1 - m) * h), which is what removal computes.
Loss = task loss + alpha * (mean over layers of the fraction of real tokens
kept). The last checkpoint is kept (validation accuracy would favour the
model that skims least).

Inference is deterministic: keep where the keep logit wins (argmax), and the
skimmed tokens are physically removed. The predictor's matrix products,
d^2 + 2d MACs per token it reads, are counted in the FLOPs.

How this departs from the original: `Transkimmer.deviations`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.model.policy import EncoderState, Policy, select_tokens
from harness.model.selection import mean_kept_fraction
from harness.plugin import MethodPlugin, MethodSettings, OperatingPoint, register_method

KEEP = 1  # index of the keep logit


@dataclass(frozen=True)
class Settings(MethodSettings):
    alphas: tuple[float, ...] = (0.1, 0.3, 0.5, 1.0)  # skim-loss weight, one model each
    epochs: float = 1.0
    lr: float | None = None  # None: the profile's learning rate
    predictor_lr: float | None = None  # None: the predictors train with the model at `lr`; else a constant rate
    temperature: float = 1.0  # Gumbel-softmax temperature
    init_keep_bias: float = 5.0  # the predictors' last bias: keep +b, skim -b (keeps every token at the start)

    def __post_init__(self):
        if not self.alphas or any(a < 0 for a in self.alphas):
            raise ValueError(f"alphas must be a non-empty list of weights >= 0, got {self.alphas}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def predictor(hidden: int, keep_bias: float) -> nn.Sequential:
    """Transkimmer's skim predictor: LayerNorm, Linear(d, d), LayerNorm, GELU, Linear(d, 2)."""
    net = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(),
                        nn.Linear(hidden, 2))
    with torch.no_grad():
        for linear in (net[1], net[-1]):  # BERT's initialisation, as the reference
            linear.weight.normal_(0.0, 0.02)
            linear.bias.zero_()
        net[-1].bias[KEEP] = keep_bias
        net[-1].bias[1 - KEEP] = -keep_bias
    return net


def predictor_macs(hidden: int):
    """MACs of one predictor over n tokens (its two Linear layers)."""
    return lambda n: n * (hidden * hidden + 2 * hidden)


class SkimPolicy(Policy):
    """A predictor per layer; soft (Gumbel, straight-through) masks in training
    when `soft`, argmax decisions and physical removal otherwise."""

    def __init__(self, num_layers: int, hidden: int, alpha: float = 0.0, temperature: float = 1.0,
                 keep_bias: float = 5.0, soft: bool = True):
        super().__init__()
        self.hidden = int(hidden)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.soft = bool(soft)
        self.predictors = nn.ModuleList(predictor(hidden, keep_bias) for _ in range(num_layers))

    def _soft_active(self) -> bool:
        return self.training and self.soft

    def keep_logits(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """keep-minus-skim logit per token [b, n]."""
        logits = self.predictors[layer](hidden)
        return logits[..., KEEP] - logits[..., 1 - KEEP]

    def before_layer(self, layer: int, state: EncoderState) -> None:
        first = torch.arange(state.mask.shape[1], device=state.mask.device).unsqueeze(0) == 0
        if self._soft_active():
            logits = self.predictors[layer](state.hidden)
            sample = F.gumbel_softmax(logits, tau=self.temperature, hard=True)[..., KEEP]
            sample = torch.where(first, torch.ones_like(sample), sample)
            prev = state.scratch.get("skim_mask")
            m = sample * (prev if prev is not None else state.mask.to(sample.dtype))
            state.scratch["skim_mask"] = m
            state.scratch["skim_input"] = state.hidden
            state.scratch.setdefault("skim_masks", []).append((m, state.mask.to(m.dtype)))
            state.key_weight = m
            return
        state.recorder.add_extra_macs(state.rows, predictor_macs(self.hidden), state.mask)
        keep = (self.keep_logits(layer, state.hidden) > 0) | first
        keep = keep & state.mask
        if bool((keep == state.mask).all()):
            return
        select_tokens(state, keep)

    def after_layer(self, layer: int, state: EncoderState):
        h_in = state.scratch.pop("skim_input", None)
        if h_in is not None:
            # a skimmed token leaves the layer as it entered it
            w = state.scratch["skim_mask"].unsqueeze(-1).to(state.hidden.dtype)
            state.hidden = w * state.hidden + (1 - w) * h_in
            state.key_weight = None
        return None

    def extra_loss(self, state: EncoderState) -> torch.Tensor | None:
        masks = state.scratch.get("skim_masks")
        if not self._soft_active() or not masks or self.alpha == 0.0:
            return None
        return self.alpha * mean_kept_fraction(masks)  # the skim loss, padding excluded

    def describe(self) -> dict:
        return {
            "kind": "transkimmer_predictor",
            "alpha": self.alpha,
            "temperature": self.temperature,
            "predictor": f"LayerNorm, Linear({self.hidden},{self.hidden}), LayerNorm, GELU, Linear({self.hidden},2)",
            "inference": "argmax (deterministic), skimmed tokens removed",
            "cls_kept": True,
        }


@register_method("transkimmer")
class Transkimmer(MethodPlugin):
    summary = "Transkimmer: a learned keep/skim predictor before each layer (Gumbel in training, argmax at inference)"
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "inference takes the argmax of the predictor (deterministic); the reference samples Gumbel noise at "
        "evaluation too",
        "skimmed tokens are physically removed at inference; the reference multiplies the attention "
        "probabilities by the mask and removes nothing",
        "in training the attention to skimmed keys is masked and renormalised (the reference multiplies the "
        "probabilities after the softmax without renormalising), so training computes what removal computes",
        "the skim loss counts real tokens only (the reference counts padding positions too)",
        "starts from the fine-tuned dense model and trains `epochs` (default 1) per alpha; the reference "
        "fine-tunes the pretrained model for 3 epochs with the skim loss",
        "the last checkpoint is kept (as the reference); no accuracy-based checkpoint choice",
        "optional `predictor_lr`: the predictors train at their own constant learning rate (the default "
        "profile's short budget needs it; unset, they train with the model as in the reference)",
    )

    def train(self, ctx) -> dict:
        s = ctx.settings
        dense = ctx.load_model(method="dense").to(ctx.device)
        cfg = ctx.train_config(epochs=s.epochs, lr=s.lr)
        log = {"settings": {**ctx.settings_log, "lr": cfg.lr}, **ctx.train_split_info,
               "dense_validation": ctx.validation_summary(dense), "points": {}}
        hidden = dense.arch().hidden
        manifest = []
        for alpha in s.alphas:
            name = f"alpha={alpha:g}"
            t0 = time.time()
            model = copy.deepcopy(dense)
            with torch.random.fork_rng():  # the predictors' init depends on the seed alone
                torch.manual_seed(ctx.seed)
                policy = SkimPolicy(len(dense.layers), hidden, alpha, s.temperature, s.init_keep_bias)
            model.policy = policy.to(ctx.device)
            groups = None if s.predictor_lr is None else [
                {"params": list(model.policy.parameters()), "lr": float(s.predictor_lr)}]
            train_log = ctx.finetune(model, cfg=cfg, checkpoint="last",
                                     extra_groups=groups, desc=f"{ctx.task.name}/{ctx.method} {name}")
            model.eval()
            ctx.save_model(model, f"{name}.pt")
            manifest.append({"name": name, "alpha": alpha, "file": f"{name}.pt"})
            log["points"][name] = {"alpha": alpha, "steps": train_log["steps"],
                                   "validation": ctx.validation_summary(model),
                                   "seconds": round(time.time() - t0, 2)}
        ctx.write_json("points.json", manifest)
        return log

    def operating_points(self, ctx):
        for entry in ctx.read_json("points.json"):
            yield OperatingPoint(entry["name"], {"alpha": entry["alpha"]}, ctx.load_model(entry["file"]).eval())

    def demo_model(self, model):
        # untrained predictors with a neutral last bias skim about half the tokens at each layer
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model.policy = SkimPolicy(len(model.layers), model.arch().hidden, keep_bias=0.0, soft=False)
        return model
