"""The training steps the threshold pruners share (`ltp`, `ltp_manual`).

Why in the core: LTP and its manual-threshold ablation start a point the same
way (the fine-tuned dense model, with the length-relative settings made
absolute) and end it with the same hard stage (pruning active, best
validation checkpoint, the starting point included). One definition here
keeps the two recipes from drifting apart; the policy they train is
`harness.model.thresholds.LTPPolicy`.

The settings these steps read are the threshold methods' own names:
`hard_epochs`, `hard_lr` and, where present, `soft_lr` (a learning rate left
at None becomes the profile's).
"""
from __future__ import annotations

import dataclasses

from harness.plugin.context import JobContext


def relative_to_length(value, mean_length: float):
    """A length-relative setting (or list of them) as absolute values, 3 significant digits."""
    conv = lambda r: float(f"{float(r) / mean_length:.3g}")  # noqa: E731
    return tuple(conv(r) for r in value) if isinstance(value, tuple) else conv(value)


def with_lengths_resolved(ctx: JobContext, s, pairs):
    """Settings with the length-relative values [(absolute, relative)] made absolute
    (an absolute value, when configured, wins) and learning rates left at None
    set to the profile's."""
    mean_length = ctx.train_split_info["mean_train_length"]
    changes = {a: relative_to_length(getattr(s, r), mean_length) for a, r in pairs if getattr(s, a) is None}
    for lr in ("soft_lr", "hard_lr"):
        if hasattr(s, lr) and getattr(s, lr) is None:
            changes[lr] = float(ctx.train_setting("lr"))
    return dataclasses.replace(s, **changes)


def prepare_threshold_point(ctx: JobContext, pairs):
    """The start of an ltp / ltp_manual point: settings with the length-relative
    values `pairs` resolved, and the fine-tuned dense model."""
    s = with_lengths_resolved(ctx, ctx.settings, pairs)
    return s, ctx.load_model(method="dense").to(ctx.device)


def hard_stage(ctx: JobContext, model, s, name: str, start: dict) -> dict:
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
