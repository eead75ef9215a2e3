"""Magic Pyramid: LTP token pruning plus FastBERT-style early exit.

He, Yu, Zhou, Ren, Chen, "Magic Pyramid: Accelerating Inference with Early
Exiting and Token Pruning", 2021 (arXiv:2111.00230); no public code.

Method. Tokens are pruned by LTP's learned per-layer thresholds (the `ltp`
method's `LTPPolicy`) and rows leave early through FastBERT's student
classifiers (the `fastbert` method's `EarlyExitPolicy`; both policies and the
exit heads' training are the core's) when their normalised entropy u_l <= tau. Both
reductions compound: a long input loses tokens layer by layer, an easy one
stops early.

Stages: fine-tune (the dense model), LTP soft stage, LTP hard stage - these
are exactly the `ltp` plugin's stages, so Magic Pyramid starts from the `ltp`
models (one per lambda) rather than repeating them - then the exit heads are
trained by self-distillation from the pruned model's own final classifier with
hard pruning active, backbone, classifier and thresholds frozen.

The paper leaves the exit heads' inputs, training and rule open; the
harness's assumptions are `MagicPyramid.deviations`. `lambdas` picks which of
the `ltp` models get exit heads; `taus` are inference-time thresholds.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from harness.plugin import (EarlyExitPolicy, EncoderState, Exit, ExitHeadSettings, HarnessError, JobContext, LTPPolicy,
                            MethodPlugin, OperatingPoint, Policy, demo_exits, format_knob, new_exit_policy,
                            register_method, train_exits)


@dataclass(frozen=True)
class Settings(ExitHeadSettings):
    lambdas: tuple[float, ...] = (0.1, 0.3)  # which ltp models get exit heads
    taus: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8)


class PrunedExitPolicy(Policy):
    """LTP's threshold pruning after attention, then the exit decision after the layer."""

    def __init__(self, ltp: LTPPolicy, exits: EarlyExitPolicy):
        super().__init__()
        self.ltp = ltp
        self.exits = exits

    def needs_attention_probs(self, layer: int) -> bool:
        return self.ltp.needs_attention_probs(layer)

    def after_attention(self, layer: int, state: EncoderState) -> None:
        self.ltp.after_attention(layer, state)

    def after_layer(self, layer: int, state: EncoderState) -> Exit | None:
        self.ltp.after_layer(layer, state)
        return self.exits.exit_decision(layer, state)

    def describe(self) -> dict:
        return {"kind": "ltp+early_exit", "ltp": self.ltp.describe(), "exits": self.exits.describe()}


@register_method("magic_pyramid")
class MagicPyramid(MethodPlugin):
    summary = "Magic Pyramid: LTP token pruning plus FastBERT exits on the pruned model (knobs lambda, tau)"
    Settings = Settings
    requires = ("ltp",)
    cannot_serve = {
        "span": "its FastBERT exits classify [CLS] and exit on a class distribution's entropy; Magic Pyramid's "
                "paper gives no exit rule for span outputs, so span tasks (SQuAD) are not run",
    }
    deviations = (
        "starts from the ltp plugin's hard-stage models (fine-tune, LTP soft, LTP hard are its stages)",
        "exit heads read the hidden states of the tokens kept after that layer's pruning ([CLS] always kept)",
        "exit heads are FastBERT's students, self-distilled from the pruned model's final classifier with hard "
        "pruning active, backbone/classifier/thresholds frozen; lowest validation distillation loss kept",
        "exit when u <= tau (inclusive); regression: prediction change / label std <= tau",
        "the student's attention computes the [CLS] query only (identical output, fewer FLOPs)",
    )

    @staticmethod
    def _ltp_entries(ctx: JobContext, lambdas) -> list[dict]:
        entries = ctx.points("ltp")
        by_lambda = {float(e["lambda"]): e for e in entries}
        missing = [lam for lam in lambdas if float(lam) not in by_lambda]
        if missing:
            raise HarnessError(
                f"magic_pyramid lambdas {missing} have no trained ltp model for {ctx.task.name} "
                f"(ltp has {sorted(by_lambda)})",
                "set methods_config.magic_pyramid.lambdas to values in methods_config.ltp.lambdas",
            )
        return [by_lambda[float(lam)] for lam in lambdas]

    def train_points(self, settings, task) -> dict:
        return {f"lambda={format_knob(lam)}": float(lam) for lam in settings.lambdas}

    def train_point(self, ctx, name: str, lam: float) -> tuple[list[dict], dict]:
        s = ctx.settings
        (entry,) = self._ltp_entries(ctx, [lam])
        model = ctx.load_model(entry["file"], method="ltp").to(ctx.device)
        ltp = model.policy
        ltp.freeze()
        exits = new_exit_policy(ctx, model, s)
        exits.inclusive = True
        model.policy = PrunedExitPolicy(ltp, exits)
        log = train_exits(ctx, model, exits, s, desc=f"{ctx.task.name}/magic_pyramid exits {entry['name']}")
        ctx.save_model(model.eval(), entry["file"])
        return [entry], log

    def operating_points(self, ctx):
        for entry in ctx.points():
            model = ctx.load_model(entry["file"])
            for tau in ctx.settings.taus:
                m = copy.deepcopy(model)
                m.policy.exits.speed = float(tau)
                yield OperatingPoint(
                    f"{entry['name']}_tau={float(tau):g}",
                    {"lambda": entry["lambda"], "tau": float(tau), "theta_final": entry["theta_final"]},
                    m.eval(),
                    notes={"thresholds": [float(x) for x in m.policy.ltp.thresholds.detach().cpu()]},
                )

    def demo_model(self, model):
        exits = demo_exits(model)
        exits.inclusive = True
        model.policy = PrunedExitPolicy(LTPPolicy(len(model.layers), theta_final=0.05), exits)
        return model

