"""The plugin API: the one harness module a method file in `methods/` imports.

    from harness.plugin import MethodPlugin, MethodSettings, OperatingPoint, register_method

Everything a method needs of the core is re-exported here, and nothing else
of `harness` is imported by a method (`tests/test_plugin_api.py` fails on any
other `harness.*` import, and on any import of another method, under
`methods/`). What two methods share lives in the core and is offered here:
LTP's threshold policy and training steps (`ltp`, `ltp_manual`,
`magic_pyramid`), FastBERT's exit heads and their self-distillation
(`fastbert`, `magic_pyramid`), the point naming of CoFi and LTP
(`cofi`, `infor_coef`; `ltp`, `ltp_manual`, `magic_pyramid`). A method sees
its job only through `JobContext` (another method's trained points included:
`ctx.points(method)`).

The names below `data`, `model`, `measure` and `plugin` are imported here
when `harness.plugin` is. The run-level ones (`evaluate`, the fine-tuning
losses and `frozen_except`, the shared training steps of the threshold and
exit methods) are imported on first use, by the module-level `__getattr__`:
`harness.run` imports `harness.plugin` (the registry, the settings), so an
import of `harness.run` here would be a cycle, and the layering is
data, model, measure -> plugin -> run -> report.
"""
from __future__ import annotations

import importlib

from harness.data.encoding import Encoded
from harness.data.padding import collate
from harness.errors import HarnessError
from harness.measure.flops import count_macs, dense_macs, scoring_macs
from harness.measure.metrics import primary
from harness.measure.params import attention_params, ffn_params, structure_summary
from harness.model.encoder import BertClassifier
from harness.model.exits import EarlyExitPolicy, Student, demo_exits, entropy_uncertainty
from harness.model.policy import EncoderState, Exit, Policy, drop_rows, select_tokens
from harness.model.selection import (attention_received, mean_kept_fraction, rank_tokens, received_sum,
                                     threshold_keep, topk_keep)
from harness.model.skim import SkimPolicy, SkimStep
from harness.model.structure import Gates, clear_gates, demo_pruned, materialize, prune_heads
from harness.model.thresholds import LTPPolicy, per_real_row, rising_thresholds, token_scores
from harness.plugin.base import MethodPlugin, OperatingPoint
from harness.plugin.context import JobContext
from harness.plugin.naming import SPARSITY_EPSILON, format_knob, point_identity
from harness.plugin.registry import register_method
from harness.plugin.search import ParetoSearch, spread_points
from harness.plugin.settings import MethodSettings

# name -> the run-level module it comes from (imported on first use, see above)
_LAZY = {
    "evaluate": "harness.run.inference",
    "TrainConfig": "harness.run.finetune",
    "default_loss": "harness.run.finetune",
    "distillation_loss": "harness.run.finetune",
    "frozen_except": "harness.run.finetune",
    "task_loss": "harness.run.finetune",
    "total_steps": "harness.run.finetune",
    "hard_stage": "harness.run.threshold_training",
    "prepare_threshold_point": "harness.run.threshold_training",
    "relative_to_length": "harness.run.threshold_training",
    "with_lengths_resolved": "harness.run.threshold_training",
    "ExitHeadSettings": "harness.run.exit_training",
    "exit_distillation_loss": "harness.run.exit_training",
    "label_scale": "harness.run.exit_training",
    "new_exit_policy": "harness.run.exit_training",
    "train_exits": "harness.run.exit_training",
    "validation_distill_loss": "harness.run.exit_training",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    # the plugin and its job
    "MethodPlugin", "MethodSettings", "OperatingPoint", "register_method", "JobContext", "HarnessError",
    # data
    "Encoded", "collate",
    # policies and their state
    "Policy", "EncoderState", "Exit", "select_tokens", "drop_rows", "BertClassifier",
    # selection kernels
    "attention_received", "received_sum", "rank_tokens", "topk_keep", "threshold_keep", "mean_kept_fraction",
    # learned skimming
    "SkimPolicy", "SkimStep",
    # structural pruning
    "Gates", "materialize", "clear_gates", "prune_heads", "demo_pruned",
    # threshold pruning (LTP's policy)
    "LTPPolicy", "per_real_row", "token_scores", "rising_thresholds",
    # early exit (FastBERT's heads)
    "EarlyExitPolicy", "Student", "entropy_uncertainty", "demo_exits",
    # measures
    "count_macs", "dense_macs", "scoring_macs", "attention_params", "ffn_params", "structure_summary", "primary",
    # point names and the search
    "format_knob", "point_identity", "SPARSITY_EPSILON", "ParetoSearch", "spread_points",
    # run-level, imported on first use
    *_LAZY,
]
