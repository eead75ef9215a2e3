"""LTP's manual-threshold ablation: fixed, linearly rising thresholds.

Kim et al., "Learned Token Pruning for Transformers", KDD 2022, Fig. 4
("manual threshold"): LTP's threshold pruning (`LTPPolicy`, as `ltp`) with
theta_l = theta_final * l / L fixed instead of learned, applied to the
fine-tuned dense model and optionally followed by a short hard-stage
fine-tune. Knob: theta_final (by default multiples of 1/(mean training
length), like LTP's). How this departs from the original:
`LTPManual.deviations`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from harness.plugin import (LTPPolicy, MethodPlugin, MethodSettings, OperatingPoint, format_knob, hard_stage,
                            prepare_threshold_point, register_method, rising_thresholds)


@dataclass(frozen=True)
class Settings(MethodSettings):
    theta_finals: tuple[float, ...] | None = None  # None: theta_final_rels / (mean training length)
    theta_final_rels: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    hard_epochs: float = 0.25
    hard_lr: float | None = None


@register_method("ltp_manual")
class LTPManual(MethodPlugin):
    summary = "LTP ablation: fixed linearly rising thresholds theta_final*l/L on attention received (no learning)"
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "token score averages attention received over heads and the REAL query rows of the tokens present "
        "(the reference averages over all padded rows, tying thresholds to the padded length)",
        "[CLS] is always kept (the reference does not protect it)",
        "pruned tokens are physically removed after the attention sublayer (the reference hard-masks them)",
        "thresholds theta_l = theta_final*l/L with l = 1..L as in the reference README",
        "optional short hard-stage fine-tune (hard_epochs, default 0.25 epoch) instead of the reference's 5 epochs; "
        "best checkpoint on the held-out validation split, the un-fine-tuned start included",
        "theta_final values default to multiples of 1/(mean training length) (theta_final_rels) unless absolute "
        "theta_finals are configured",
    )

    def train_points(self, settings, task) -> dict:
        # absolute theta_finals where configured, else the length-relative ones (resolved in the job)
        if settings.theta_finals is not None:
            return {f"theta_final={format_knob(t)}": i for i, t in enumerate(settings.theta_finals)}
        return {f"theta_final_rel={format_knob(r)}": i for i, r in enumerate(settings.theta_final_rels)}

    def train_point(self, ctx, key: str, index: int) -> tuple[list[dict], dict]:
        s, model = prepare_threshold_point(ctx, [("theta_finals", "theta_final_rels")])
        theta = s.theta_finals[index]  # the point's name is its resolved value
        name = f"theta_final={format_knob(theta)}"
        t0 = time.time()
        model.policy = LTPPolicy(len(model.layers), theta).to(ctx.device)
        model.eval()
        entry = {"name": name, "theta_final": theta, "file": None}
        point: dict = {"theta_final": theta, "thresholds": rising_thresholds(theta, len(model.layers)),
                       "untuned_validation": ctx.validation_summary(model)}
        point["validation"] = point["untuned_validation"]
        if s.hard_epochs > 0:
            point["hard"] = hard_stage(ctx, model, s, name, point["untuned_validation"])
            point["validation"] = point["hard"]["kept_validation"]
            entry["file"] = f"{name}.pt"
            ctx.save_model(model.eval(), entry["file"])
        point["seconds"] = round(time.time() - t0, 2)
        return [entry], point

    def operating_points(self, ctx):
        dense = None
        for entry in ctx.points():
            if entry["file"] is not None:
                model = ctx.load_model(entry["file"])
            else:
                dense = dense if dense is not None else ctx.load_model(method="dense")
                model = copy.deepcopy(dense)
                model.policy = LTPPolicy(len(model.layers), entry["theta_final"]).to(ctx.device)
            yield OperatingPoint(
                entry["name"],
                {"theta_final": entry["theta_final"]},
                model.eval(),
                notes={
                    "thresholds": [float(x) for x in model.policy.thresholds.detach().cpu()],
                    "fine_tuned": entry["file"] is not None,
                    "train_max_length": ctx.settings.train_max_length,
                },
            )

    def demo_model(self, model):
        model.policy = LTPPolicy(len(model.layers), theta_final=0.05)
        return model
