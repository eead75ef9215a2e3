"""The unpruned baseline: fine-tune backbone + task head, nothing removed.

Every other method's FLOPs and wall-clock speedups are relative to this one,
and most start from its fine-tuned weights (`requires = ("dense",)`).
"""
from __future__ import annotations

from harness.plugin import MethodPlugin, OperatingPoint, register_method


@register_method("dense")
class Dense(MethodPlugin):
    summary = "unpruned BERT fine-tuned on the task (the baseline)"

    def train(self, ctx) -> dict:
        model = ctx.new_model()
        log = ctx.finetune(model)
        ctx.save_model(model)
        return log

    def operating_points(self, ctx):
        yield OperatingPoint("dense", {}, ctx.load_model())
