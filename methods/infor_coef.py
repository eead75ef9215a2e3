"""Infor-Coef: CoFi's static pruning plus learned token downsampling under an
information-bottleneck loss.

Tan, "Infor-Coef: Information Bottleneck-based Dynamic Token Downsampling
for Compact and Efficient language model" (2023);
reference code github.com/twwwwx/Infor-Coef.

Start: a CoFi model (`methods.cofi`, materialized: heads, FFN dims, hidden
dims and whole sublayers sliced away, then fine-tuned with distillation) at
each target sparsity of `sparsities`, the paper's "4x" (CoFi-s60, 40% of the
parameters) and "16x" (CoFi-s95) models. A point's `sparsity` knob is what
its start reached, as CoFi's own (`point_identity`, the core's), with the
start's `target_sparsity` and `off_target` flag beside it.
Before each layer that still computes something, a Transkimmer-shaped
sampler sized to the pruned hidden width (`harness.model.skim.SkimPolicy`)
decides keep or skim for each non-[CLS] token: Gumbel straight-through
masks in training (attention renormalised over the kept keys), argmax and
physical removal at inference, its MACs counted.

Loss (the paper's eq. 18), with p a token's keep probability and h the
sampler's input:
  L = CE + gamma_1 * L_entropy + gamma_2 * L_norm,
  L_entropy = mean over layers and decided tokens of p ln p + (1 - p) ln(1 - p)
              (the negative entropy -H(z) of the derivation's eq. 13/17),
  L_norm    = mean over layers of || diag(p) h ||_F over the tokens still
              present, one norm over the whole batch (`norm_scope: batch`, the
              reference's) or one per sample averaged (`sample`) (the
              reference's unsquared form of eq. 16's 1/2 ||s||^2 for the
              estimate s = diag(pi) h of eq. 15),
with the entropy term from the start and the norm term after a warm-up
(`norm_warmup_epochs`, the reference's 1 of 7 epochs). The norm term is
what skims: without it the sampler learns to keep every token (Table 3).
One model per (target sparsity, gamma_2); the last checkpoint is kept.

Ablations are variants of this plugin (config `variants`): `loss: skim`
trains the sampler with Transkimmer's skim loss instead (Fig. 3),
`entropy_weight: 0` and `norm_weights: [0]` drop one term (Table 3), and
`static: none` puts the sampler on the dense model (dynamic only, Fig. 4);
static only is `cofi` itself.

How this departs from the original: `InforCoef.deviations`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.plugin import (SPARSITY_EPSILON, EncoderState, HarnessError, JobContext, MethodPlugin, MethodSettings,
                            OperatingPoint, SkimPolicy, SkimStep, default_loss, demo_pruned, mean_kept_fraction,
                            point_identity, register_method, total_steps)

EPS = 1e-6
LOSSES = ("ib", "skim")
STATICS = ("cofi", "none")
NORM_SCOPES = ("batch", "sample")


@dataclass(frozen=True)
class Settings(MethodSettings):
    sparsities: tuple[float, ...] = (0.6, 0.95)  # CoFi models to start from (each must be a cofi point)
    norm_weights: tuple[float, ...] = (4.0e-4, 7.0e-4)  # gamma_2, one model each (the reference: 4e-4 .. 7e-4)
    entropy_weight: float = 4.0e-4  # gamma_1 (the reference's)
    loss: str = "ib"  # "ib": entropy + norm terms; "skim": Transkimmer's skim loss (Fig. 3's comparison)
    skim_weights: tuple[float, ...] = (0.3, 0.5)  # alpha of the skim loss, one model each (loss: skim)
    static: str = "cofi"  # "cofi": start from CoFi models; "none": from the dense model (dynamic only)
    epochs: float = 7.0  # the reference's
    norm_warmup_epochs: float = 1.0  # CE + entropy only, then the norm term joins (the reference's 1)
    lr: float | None = None  # None: the profile's learning rate
    predictor_lr: float | None = None  # None: the samplers train with the model at `lr`; else a constant rate
    temperature: float = 1.0
    init_keep_bias: float = 5.0  # the samplers start by keeping every token
    # the norm term: "batch", one Frobenius norm over the whole batch (the reference's); "sample", one per
    # sample, averaged over the batch (about 1/sqrt(batch) of it: gamma_2 means less the bigger the batch)
    norm_scope: str = "batch"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.static not in STATICS:
            raise ValueError(f"static must be one of {', '.join(STATICS)}, got {self.static!r}")
        if self.norm_scope not in NORM_SCOPES:
            raise ValueError(f"norm_scope must be one of {', '.join(NORM_SCOPES)}, got {self.norm_scope!r}")
        weights = self.norm_weights if self.loss == "ib" else self.skim_weights
        if not weights or any(w < 0 for w in weights):
            raise ValueError(f"the {self.loss} loss needs a non-empty list of weights >= 0, got {list(weights)}")
        if self.static == "cofi" and (not self.sparsities or any(not 0 < s < 1 for s in self.sparsities)):
            raise ValueError(f"sparsities must lie strictly between 0 and 1, got {list(self.sparsities)}")
        if self.entropy_weight < 0 or self.epochs <= 0 or self.norm_warmup_epochs < 0 or self.temperature <= 0:
            raise ValueError("entropy_weight and norm_warmup_epochs must be >= 0, epochs and temperature > 0")
        if self.loss == "ib" and any(self.norm_weights) and self.norm_warmup_epochs >= self.epochs:
            raise ValueError(f"norm_warmup_epochs ({self.norm_warmup_epochs:g}) must be below epochs "
                             f"({self.epochs:g}), or the norm term never starts")


# ---- the information-bottleneck terms ---------------------------------------------
def negative_entropy(steps: list[SkimStep]) -> torch.Tensor:
    """Mean over layers of the mean over decided tokens (real, not yet
    skimmed, not [CLS]) of p ln p + (1 - p) ln(1 - p): -H(z) of eq. 13."""
    per_layer = []
    for st in steps:
        p = st.keep_prob.float().clamp(EPS, 1 - EPS)
        neg_h = p * p.log() + (1 - p) * (1 - p).log()
        w = (st.alive * st.decides).detach()
        per_layer.append((neg_h * w).sum() / w.sum().clamp(min=1))
    return torch.stack(per_layer).mean()


def kept_norm(steps: list[SkimStep], scope: str = "batch") -> torch.Tensor:
    """Mean over layers of ||diag(p) h||_F over the tokens still present
    ([CLS], always kept, excluded): the norm of eq. 16's estimate. `scope`
    "batch" takes one norm over the whole [b, n, d] batch tensor, as the
    reference does; "sample" one per sample, averaged over the batch. The
    batch norm of b equal samples is sqrt(b) times the per-sample one, so the
    scope decides what a given gamma_2 means."""
    per_layer = []
    for st in steps:
        w = st.keep_prob * st.alive * st.decides  # [b, n]
        sq = (w.unsqueeze(-1) * st.hidden.float()).pow(2).sum((1, 2))  # [b], in fp32 (bf16 autocast)
        norm = sq.sum().clamp(min=1e-12).sqrt() if scope == "batch" else sq.clamp(min=1e-12).sqrt().mean()
        per_layer.append(norm)
    return torch.stack(per_layer).mean()


class InforCoefPolicy(SkimPolicy):
    """`SkimPolicy` with Infor-Coef's IB loss (or the skim loss for the
    ablation). `norm_on` is switched by the training loop after the warm-up."""

    def __init__(self, num_layers: int, hidden: int, layers, loss: str = "ib", weight: float = 0.0,
                 entropy_weight: float = 0.0, temperature: float = 1.0, keep_bias: float = 5.0, soft: bool = True,
                 norm_scope: str = "batch"):
        super().__init__(num_layers, hidden, temperature, keep_bias, soft, layers)
        if norm_scope not in NORM_SCOPES:
            raise ValueError(f"norm_scope must be one of {', '.join(NORM_SCOPES)}, got {norm_scope!r}")
        self.loss = loss
        self.norm_scope = norm_scope
        self.weight = float(weight)  # gamma_2 (ib) or alpha (skim)
        self.entropy_weight = float(entropy_weight)
        self.norm_on = True

    def extra_loss(self, state: EncoderState) -> torch.Tensor | None:
        steps = self.skim_steps(state)
        if not steps:
            return None
        if self.loss == "skim":
            return self.weight * mean_kept_fraction([(s.mask, s.real) for s in steps]) if self.weight else None
        total = None
        if self.entropy_weight:
            total = self.entropy_weight * negative_entropy(steps)
        if self.norm_on and self.weight:
            norm = self.weight * kept_norm(steps, self.norm_scope)
            total = norm if total is None else total + norm
        return total

    def describe(self) -> dict:
        terms = ({"skim_weight": self.weight} if self.loss == "skim" else
                 {"norm_weight": self.weight, "entropy_weight": self.entropy_weight, "norm_scope": self.norm_scope})
        return {"kind": "infor_coef_sampler", "loss": self.loss, **terms, **super().describe()}


def computing_layers(model) -> list[int]:
    """Layers with attention heads or FFN dims left (a CoFi model may have none in some)."""
    return [i for i, layer in enumerate(model.layers) if layer.num_heads > 0 or layer.ffn_dim > 0]


@register_method("infor_coef")
class InforCoef(MethodPlugin):
    summary = "Infor-Coef: CoFi-pruned models plus a learned token sampler trained with an information-bottleneck loss"
    Settings = Settings
    requires = ("cofi",)
    deviations = (
        "inference takes the argmax of the sampler (deterministic); the reference samples Gumbel noise at "
        "evaluation too",
        "skimmed tokens are physically removed at inference; the reference masks the attention and removes nothing",
        "both terms are taken on p, each sampler's keep probability at its layer (the paper's pi of eq. 13-16); "
        "the reference takes both on its relaxed Gumbel-softmax sample multiplied over the layers so far (its "
        "soft mask), a noisy, cumulative stand-in for pi",
        "the entropy term is p ln p + (1 - p) ln(1 - p) averaged over the decided tokens (real, not yet skimmed, "
        "not [CLS]) and over the sampler layers; the reference's is s ln s + (1 - s) ln(1 - s_0), s_0 the first "
        "batch row's mask (logits[0]) broadcast over the batch inside the second logarithm only, averaged over "
        "every position, [CLS] and padding included, and summed over layers / the layer count",
        "the norm term is by default one Frobenius norm over the whole batch tensor, as the reference's; "
        "norm_scope: sample takes one per sample, averaged over the batch (about 1/sqrt(batch) of it; the "
        "default profile, those extending it and smoke use it, their gamma_2 measured so); either way over the "
        "tokens still present, [CLS] and padding excluded (the reference includes both)",
        "the norm term is ||diag(p) h||_F unsquared (as the reference; the paper's eq. 16-17 has 1/2 ||s||^2_F), "
        "averaged over the sampler layers; p multiplies the straight-through mask of the tokens still present, "
        "and h, the sampler's input, is not detached (as the reference), so the encoder may also lower the term by "
        "shrinking its hidden states",
        "no sampler before a layer CoFi pruned away entirely (it would cost FLOPs and save none)",
        "starts from this harness's CoFi point models, i.e. after CoFi's pruning stage and the distillation "
        "fine-tune of its materialized model (cofi's finetune_epochs; their short budgets: see cofi's "
        "deviations), then trains `epochs` more with cross-entropy plus the IB terms and no distillation, as the "
        "reference's token stage does from released fine-tuned CoFi models: an Infor-Coef point has had all of "
        "its CoFi start's training and its own on top, so claim C7's comparison with `cofi` (static only) is not "
        "at equal training",
        "optional `predictor_lr`: the samplers train at their own constant learning rate (the default profile's "
        "short budget needs it; unset, they train with the model as in the reference)",
        "the last checkpoint is kept; no accuracy-based checkpoint choice",
    )

    def requirements(self, settings) -> tuple[str, ...]:
        return ("cofi",) if settings.static == "cofi" else ("dense",)

    def check(self, name: str, settings, settings_of) -> None:
        if settings.static != "cofi":
            return
        trained = [float(t) for t in settings_of("cofi").sparsities]
        missing = [t for t in settings.sparsities if not any(abs(float(t) - c) < 1e-9 for c in trained)]
        if missing:
            have = ", ".join(f"{c:g}" for c in trained)
            raise HarnessError(
                f"{name} starts from cofi models at sparsity {', '.join(f'{t:g}' for t in missing)}, "
                f"but cofi trains only {have}",
                f"add them to methods_config.cofi.sparsities, or use some of {have} in the sparsities of {name}",
            )

    def starting_model(self, ctx: JobContext, sparsity: float | None) -> tuple[dict, object]:
        """(what the start was, model) for a point from `sparsity` (None: dense)."""
        if sparsity is None:
            return {"start": "dense"}, ctx.load_model(method="dense")
        points = ctx.points("cofi")
        match = [e for e in points if abs(float(e["target_sparsity"]) - sparsity) < 1e-9]
        if not match:
            have = ", ".join(f"{e['target_sparsity']:g}" for e in points)
            raise HarnessError(
                f"{ctx.method} starts from a cofi model at sparsity {sparsity:g}, but cofi trained only {have}",
                f"add {sparsity:g} to methods_config.cofi.sparsities, or use one of {have} in the "
                f"sparsities of {ctx.method}",
            )
        e = match[0]
        info = {"start": "cofi", "cofi_point": e["name"], "achieved_sparsity": e["achieved_sparsity"],
                "sparsity_epsilon": e.get("sparsity_epsilon", SPARSITY_EPSILON)}
        return info, ctx.load_model(e["file"], method="cofi")

    @staticmethod
    def start_knobs(target: float, start: dict) -> dict:
        """The CoFi start's knobs as CoFi's own point has them
        (`point_identity`): `sparsity` is what the start reached
        (its target only within sparsity_epsilon of it), `target_sparsity` the
        target, `off_target` the flag; so a table row or claim selecting by
        `sparsity` gets Infor-Coef and CoFi points at the same sparsity."""
        return point_identity(target, start["achieved_sparsity"], start.get("sparsity_epsilon", SPARSITY_EPSILON))[1]

    def train_points(self, settings, task) -> dict:
        """One model per (starting sparsity, weight)."""
        knob = "norm" if settings.loss == "ib" else "skim"
        weights = settings.norm_weights if settings.loss == "ib" else settings.skim_weights
        starts = [None] if settings.static == "none" else [float(t) for t in settings.sparsities]
        return {(f"{knob}={w:g}" if sp is None else f"sparsity={sp:g}_{knob}={w:g}"): (sp, float(w))
                for sp in starts for w in weights}

    def train_point(self, ctx, name: str, knob) -> tuple[list[dict], dict]:
        sparsity, w = knob
        s = ctx.settings
        cfg = ctx.train_config(epochs=s.epochs, lr=s.lr)
        steps = total_steps(cfg, len(ctx.train_split))
        warm = int(round(steps * min(1.0, s.norm_warmup_epochs / s.epochs)))
        info, base = self.starting_model(ctx, sparsity)
        base = base.to(ctx.device)
        layers = computing_layers(base)
        base_loss, seen = default_loss(ctx.task), [0]

        def loss_fn(m, out, batch):
            seen[0] += 1
            m.policy.norm_on = seen[0] > warm  # the norm term after the warm-up
            return base_loss(m, out, batch)

        _, point_log = ctx.train_policy_point(
            base, lambda: InforCoefPolicy(
                len(base.layers), base.arch().hidden, layers, s.loss, w,
                s.entropy_weight if s.loss == "ib" else 0.0, s.temperature, s.init_keep_bias,
                norm_scope=s.norm_scope),
            name, cfg, s.predictor_lr, loss_fn)
        key = "norm_weight" if s.loss == "ib" else "skim_weight"
        knobs = {key: w} if sparsity is None else {**self.start_knobs(sparsity, info), key: w}
        return [{"name": name, "knobs": knobs, "file": f"{name}.pt", "start": info}], {
            **knobs, "start": info, "lr": cfg.lr, "steps": steps,
            "norm_starts_after_step": warm if s.loss == "ib" else None, **point_log}

    def operating_points(self, ctx):
        for entry in ctx.points():
            knobs, start = dict(entry["knobs"]), entry["start"]
            if start.get("start") == "cofi" and "target_sparsity" not in knobs:
                # a manifest from before the start's achieved sparsity was a knob: `sparsity` was the target
                knobs = {**self.start_knobs(knobs.pop("sparsity"), start), **knobs}
            yield OperatingPoint(entry["name"], knobs, ctx.load_model(entry["file"]).eval(), notes=start)

    def demo_model(self, model):
        # a structurally pruned model as CoFi's are (heads, dims and a whole attention sublayer sliced
        # away) with untrained samplers of a neutral last bias, which skim about half the tokens at each layer
        pruned = demo_pruned(model)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            pruned.policy = InforCoefPolicy(len(pruned.layers), pruned.arch().hidden, computing_layers(pruned),
                                            keep_bias=0.0, soft=False)
        return pruned
