"""Transkimmer: learned token skimming with a predictor before every layer.

Guan, Li, Lin, Zhu, Leng, Guo, "Transkimmer: Transformer Learns to
Layer-wise Skim", ACL 2022 (arXiv:2205.07324); reference code
github.com/ChandlerGuan/Transkimmer.

The predictor, its Gumbel straight-through masks in training and its argmax
decisions with physical removal at inference are the core's
(`harness.model.skim.SkimPolicy`); this plugin adds the skim loss and the
recipe. One model per alpha, from the fine-tuned dense model:
loss = task loss + alpha * (mean over layers of the fraction of real tokens
kept). The last checkpoint is kept (validation accuracy would favour the
model that skims least).

How this departs from the original: `Transkimmer.deviations`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.plugin import (EncoderState, MethodPlugin, MethodSettings, OperatingPoint, SkimPolicy, mean_kept_fraction,
                            register_method)


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


class TranskimmerPolicy(SkimPolicy):
    """`SkimPolicy` with Transkimmer's skim loss: alpha x the mean kept fraction."""

    def __init__(self, num_layers: int, hidden: int, alpha: float = 0.0, temperature: float = 1.0,
                 keep_bias: float = 5.0, soft: bool = True):
        super().__init__(num_layers, hidden, temperature, keep_bias, soft)
        self.alpha = float(alpha)

    def extra_loss(self, state: EncoderState) -> torch.Tensor | None:
        steps = self.skim_steps(state)
        if not steps or self.alpha == 0.0:
            return None
        return self.alpha * mean_kept_fraction([(s.mask, s.real) for s in steps])  # padding excluded

    def describe(self) -> dict:
        return {"kind": "transkimmer_predictor", "alpha": self.alpha, **super().describe()}


@register_method("transkimmer")
class Transkimmer(MethodPlugin):
    summary = "Transkimmer: a learned keep/skim predictor before each layer (Gumbel in training, argmax at inference)"
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "inference takes the argmax of the predictor (deterministic); the reference samples Gumbel noise at "
        "evaluation too",
        "skimmed tokens are physically removed at inference at any batch size; the reference's later code removes "
        "them for a batch of one only and otherwise keeps computing them, masked out of the attention by its masked "
        "softmax (renormalised over the kept keys, as the harness's training; its first published version "
        "multiplied the attention probabilities by the mask after the softmax, without renormalising)",
        "the skim loss counts real tokens only (the reference counts padding positions too)",
        "starts from the fine-tuned dense model and trains `epochs` (default 1) per alpha; the reference "
        "fine-tunes the pretrained model for 3 epochs with the skim loss",
        "the last checkpoint is kept (as the reference); no accuracy-based checkpoint choice",
        "optional `predictor_lr`: the predictors train at their own constant learning rate (the default "
        "profile's short budget needs it; unset, they train with the model as in the reference)",
    )

    def train_points(self, settings, task) -> dict:
        return {f"alpha={alpha:g}": alpha for alpha in settings.alphas}

    def train_point(self, ctx, name: str, alpha) -> tuple[list[dict], dict]:
        s = ctx.settings
        dense = ctx.load_model(method="dense").to(ctx.device)
        cfg = ctx.train_config(epochs=s.epochs, lr=s.lr)
        hidden = dense.arch().hidden
        _, point_log = ctx.train_policy_point(
            dense, lambda: TranskimmerPolicy(len(dense.layers), hidden, alpha, s.temperature, s.init_keep_bias),
            name, cfg, s.predictor_lr)
        return [{"name": name, "alpha": alpha, "file": f"{name}.pt"}], {"alpha": alpha, "lr": cfg.lr, **point_log}

    def operating_points(self, ctx):
        for entry in ctx.points():
            yield OperatingPoint(entry["name"], {"alpha": entry["alpha"]}, ctx.load_model(entry["file"]).eval())

    def demo_model(self, model):
        # untrained predictors with a neutral last bias skim about half the tokens at each layer
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model.policy = TranskimmerPolicy(len(model.layers), model.arch().hidden, keep_bias=0.0, soft=False)
        return model
