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

The paper's manual-threshold ablation is `methods/ltp_manual.py`; the policy
(`LTPPolicy`) and the steps the two share (the start from the dense model, the
hard stage) are the core's (`harness.model.thresholds`,
`harness.plugin.threshold_training`), which Magic Pyramid uses too.

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

from harness.plugin import (LTPPolicy, MethodPlugin, MethodSettings, OperatingPoint, format_knob, hard_stage,
                            prepare_threshold_point, register_method)


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
        s, model = prepare_threshold_point(ctx, [("theta_final", "theta_final_rel"),
                                                 ("threshold_lr", "threshold_lr_rel")])
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
        for entry in ctx.points():
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
