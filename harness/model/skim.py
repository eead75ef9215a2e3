"""Learned token skimming: a keep/skim predictor before each layer.

The machinery Transkimmer (Guan et al., ACL 2022) introduced and Infor-Coef
(Tan, 2023) reuses with another loss; a method subclasses `SkimPolicy` and
adds only its loss (`extra_loss`, reading the per-layer `SkimStep`s).

Before layer l a predictor (LayerNorm, Linear(d, d), LayerNorm, GELU,
Linear(d, 2)) reads every token's hidden state and decides keep or skim.
[CLS] is always kept. A skimmed token skips every later layer; its hidden
state from the last layer that computed it is what the output sees (for a
span head, the Drop-and-Restore store of `select_tokens`). Decisions
accumulate: a skimmed token never returns.

Training (`soft`): the keep decision is a hard Gumbel-softmax sample
(straight-through gradients) that multiplies the previous layer's mask.
Nothing is removed: the attention to a skimmed key is masked out and
renormalised (`state.key_weight`), and a skimmed token's state passes the
layer unchanged (h <- m * layer(h) + (1 - m) * h), which is what removal
computes. Each layer's sample, the mask it multiplied, the keep
probabilities and the predictor's input are kept as a `SkimStep` for the
method's loss.

Inference: keep where the keep logit wins (argmax, deterministic) and remove
the skimmed tokens physically. The predictor's matrix products, d^2 + 2d
MACs per token it reads, are counted in the FLOPs.

`layers` limits the predictors to some layers (Infor-Coef on a CoFi model
whose first layers were pruned away entirely: a predictor there would cost
FLOPs and save none).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.model.policy import EncoderState, Policy, select_tokens

KEEP = 1  # index of the keep logit


def predictor(hidden: int, keep_bias: float) -> nn.Sequential:
    """The skim predictor: LayerNorm, Linear(d, d), LayerNorm, GELU, Linear(d, 2),
    BERT's initialisation (std 0.02), last bias keep +b / skim -b."""
    net = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(),
                        nn.Linear(hidden, 2))
    with torch.no_grad():
        for linear in (net[1], net[-1]):
            linear.weight.normal_(0.0, 0.02)
            linear.bias.zero_()
        net[-1].bias[KEEP] = keep_bias
        net[-1].bias[1 - KEEP] = -keep_bias
    return net


def predictor_macs(hidden: int):
    """MACs of one predictor over n tokens (its two Linear layers)."""
    return lambda n: n * (hidden * hidden + 2 * hidden)


@dataclass
class SkimStep:
    """One layer's skim decision in training, for a method's loss."""

    mask: torch.Tensor  # [b, n] tokens kept into this layer (the sample times `alive`)
    alive: torch.Tensor  # [b, n] tokens still present before the decision (real and not yet skimmed)
    real: torch.Tensor  # [b, n] real tokens of the batch
    keep_prob: torch.Tensor  # [b, n] the predictor's keep probability
    hidden: torch.Tensor  # [b, n, d] the predictor's input
    decides: torch.Tensor  # [b, n] positions the predictor decides ([CLS] and padding excluded)


class SkimPolicy(Policy):
    """A predictor before each layer in `layers` (default: all); Gumbel
    straight-through masks in training when `soft`, argmax decisions and
    physical removal otherwise. `extra_loss` is the method's."""

    def __init__(self, num_layers: int, hidden: int, temperature: float = 1.0, keep_bias: float = 5.0,
                 soft: bool = True, layers: Iterable[int] | None = None):
        super().__init__()
        self.hidden = int(hidden)
        self.temperature = float(temperature)
        self.soft = bool(soft)
        chosen = range(num_layers) if layers is None else sorted(set(int(i) for i in layers))
        self.predictors = nn.ModuleDict({str(i): predictor(hidden, keep_bias) for i in chosen})

    @property
    def skim_layers(self) -> list[int]:
        return [int(k) for k in self.predictors]

    def _soft_active(self) -> bool:
        return self.training and self.soft

    def keep_logits(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """keep-minus-skim logit per token [b, n]."""
        logits = self.predictors[str(layer)](hidden)
        return logits[..., KEEP] - logits[..., 1 - KEEP]

    def before_layer(self, layer: int, state: EncoderState) -> None:
        soft = self._soft_active()
        if str(layer) not in self.predictors:
            if soft and "skim_mask" in state.scratch:  # tokens skimmed earlier stay out of this layer too
                state.key_weight = state.scratch["skim_mask"]
                state.scratch["skim_input"] = state.hidden
            return
        first = torch.arange(state.mask.shape[1], device=state.mask.device).unsqueeze(0) == 0
        if soft:
            # the sample and the probabilities in fp32 whatever the forward's precision (under bf16 autocast
            # 1 - 1e-6 rounds to 1, and a loss's log(1 - p) turns into NaN)
            logits = self.predictors[str(layer)](state.hidden).float()
            sample = F.gumbel_softmax(logits, tau=self.temperature, hard=True)[..., KEEP]
            sample = torch.where(first, torch.ones_like(sample), sample)
            real = state.mask.to(sample.dtype)
            prev = state.scratch.get("skim_mask")
            alive = prev if prev is not None else real
            m = sample * alive
            state.scratch["skim_mask"] = m
            state.scratch["skim_input"] = state.hidden
            state.scratch.setdefault("skim_steps", []).append(SkimStep(
                mask=m, alive=alive, real=real, keep_prob=logits.softmax(-1)[..., KEEP], hidden=state.hidden,
                decides=(state.mask & ~first).to(sample.dtype)))
            state.key_weight = m
            return
        state.recorder.add_extra_macs(state.rows, predictor_macs(self.hidden), state.mask)
        keep = (self.keep_logits(layer, state.hidden) > 0) | first
        select_tokens(state, keep)  # which also finds out whether anything goes

    def after_layer(self, layer: int, state: EncoderState):
        h_in = state.scratch.pop("skim_input", None)
        if h_in is not None:
            # a skimmed token leaves the layer as it entered it
            w = state.scratch["skim_mask"].unsqueeze(-1).to(state.hidden.dtype)
            state.hidden = w * state.hidden + (1 - w) * h_in
            state.key_weight = None
        return None

    def skim_steps(self, state: EncoderState) -> list[SkimStep]:
        """This forward's per-layer decisions (empty unless training softly)."""
        return state.scratch.get("skim_steps", []) if self._soft_active() else []

    def describe(self) -> dict:
        return {
            "temperature": self.temperature,
            "predictor": f"LayerNorm, Linear({self.hidden},{self.hidden}), LayerNorm, GELU, Linear({self.hidden},2)",
            "predictor_layers": self.skim_layers,
            "inference": "argmax (deterministic), skimmed tokens removed",
            "cls_kept": True,
        }
