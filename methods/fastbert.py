"""FastBERT: self-distilled early exit with per-layer student classifiers.

Liu, Zhou, Wang, Zhao, Deng, Ju, "FastBERT: a Self-distilling BERT with
Adaptive Inference Time", ACL 2020 (arXiv:2004.02178).

Method. A small student classifier sits after every layer but the last (the
model's own pooler + classifier, the teacher, serves the last layer). Each
student is the paper's: Linear d->k + tanh, a 2-head self-attention of width k,
the [CLS] position, Linear k->k + tanh, Linear k->classes (k = 128). At
inference a row leaves after the first layer whose student is confident:
normalised entropy u = -sum p log p / log N below the `speed` threshold.
Rows that leave are physically removed from the batch (`Exit` ->
`drop_rows`), so the time saved is real; every student that runs is counted
in the FLOPs (as run, and at the row's real token count for protocol `none`).

Training, from the fine-tuned dense model (FastBERT's stage 1 is exactly the
dense fine-tune, so it is reused, not repeated):
stage 2 freezes backbone and teacher and trains the students by
sum_l KL(p_teacher || p_student_l) on the training texts (labels unused).
`speed` is an inference-time knob only: one trained model serves every point.

Regression tasks (STS-B) have no class distribution, so no entropy. The
harness uses the natural stability rule instead: students are distilled by
MSE to the teacher's prediction, and a row leaves after layer l >= 2 when
|y_l - y_(l-1)| / sigma < speed, sigma the training labels' standard
deviation (recorded). This is a harness choice, not the paper's.

The students, the exit rule and the self-distillation are the core's
(`harness.model.exits`, `harness.plugin.exit_training`), shared with Magic
Pyramid; this plugin is the recipe on the dense model and its speed knob.

How this departs from the original: `FastBERT.deviations`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from harness.plugin import (EarlyExitPolicy, ExitHeadSettings, MethodPlugin, OperatingPoint, Student, demo_exits,
                            new_exit_policy, register_method, train_exits)

# Models saved before the exit heads moved to the core pickled them as methods.fastbert.EarlyExitPolicy
# and methods.fastbert.Student: the names stay bound here, so those work folders still load.
PICKLED_AS_FASTBERT = (EarlyExitPolicy, Student)


@dataclass(frozen=True)
class Settings(ExitHeadSettings):
    speeds: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8)  # inference-time thresholds, one point each


# ---- the plugin ---------------------------------------------------------------------
@register_method("fastbert")
class FastBERT(MethodPlugin):
    summary = "FastBERT early exit: self-distilled student classifiers, exit when normalised entropy < speed"
    Settings = Settings
    requires = ("dense",)
    cannot_serve = {
        "span": "early exit has no exit rule for span outputs in FastBERT's paper (its students classify [CLS] and "
                "exit on the entropy of a class distribution); the harness does not invent one, so span tasks "
                "(SQuAD) are not run",
    }
    deviations = (
        "stage 1 is the harness's dense fine-tune (reused, not repeated)",
        "the student's self-attention computes the [CLS] query only (the only output it reads): "
        "identical output, only the FLOPs that must run",
        "stage 2 trains the students for distill_epochs (default 1) at distill_lr (default 1e-3), the frozen "
        "backbone's dropout off, and keeps the "
        "checkpoint with the lowest distillation loss on the held-out validation split",
        "regression tasks: students distilled by MSE to the teacher; exit when the prediction changes by less than "
        "speed x (training label std) since the previous student (a harness rule; FastBERT is classification-only)",
    )

    def train(self, ctx) -> dict:
        s = ctx.settings
        model = ctx.load_model(method="dense").to(ctx.device)
        model.policy = new_exit_policy(ctx, model, s)
        log = {"settings": ctx.settings_log, "distill": train_exits(ctx, model, model.policy, s)}
        ctx.save_model(model.eval())
        return log

    def operating_points(self, ctx):
        model = ctx.load_model()
        for speed in ctx.settings.speeds:
            m = copy.deepcopy(model)
            m.policy.speed = float(speed)
            yield OperatingPoint(f"speed={float(speed):g}", {"speed": float(speed)}, m.eval())

    def demo_model(self, model):
        model.policy = demo_exits(model)
        return model

