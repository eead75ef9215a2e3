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

Layering (checked by import-linter, `[tool.importlinter]` in pyproject.toml):
errors, config/storage/pareto -> data -> model -> measure -> record -> claim_spec -> train ->
plugin -> methods -> run -> report -> cli, each importing only the layers before it. So every name here is imported
with `harness.plugin`: the fine-tuning loop and evaluation are `harness.train`'s,
below this API, and the workflow's jobs (`harness.run`) sit above it.
"""
from __future__ import annotations

from harness.data.encoding import Encoded
from harness.data.padding import collate
from harness.errors import HarnessError
from harness.measure.flops import count_macs, dense_macs, head_macs, layer_macs_of, scoring_macs
from harness.measure.metrics import primary
from harness.measure.params import attention_params, ffn_params, structure_summary
from harness.model.encoder import BertClassifier
from harness.model.hard_concrete import (BETA, LOG_ALPHA_RANGE, STRETCH, GradientAscent, deterministic_gate,
                                         keep_probability, sample_gate)
from harness.model.exits import EarlyExitPolicy, Student, demo_exits, entropy_uncertainty
from harness.model.policy import EncoderState, Exit, Policy, drop_rows, select_tokens
from harness.model.selection import (attention_received, mean_kept_fraction, rank_tokens, received_sum,
                                     threshold_keep, topk_keep)
from harness.model.skim import SkimPolicy, SkimStep
from harness.model.structure import Gates, clear_gates, demo_pruned, materialize, prune_ffn, prune_heads, prune_hidden
from harness.model.thresholds import LTPPolicy, per_real_row, rising_thresholds, token_scores
from harness.plugin.base import MethodPlugin, OperatingPoint
from harness.plugin.context import JobContext
from harness.plugin.naming import SPARSITY_EPSILON, format_knob, point_identity
from harness.plugin.registry import register_method
from harness.plugin.search import ParetoSearch, spread_points
from harness.plugin.settings import MethodSettings

from harness.plugin.exit_training import (ExitHeadSettings, exit_distillation_loss, label_scale, new_exit_policy,
                                         train_exits, validation_distill_loss)
from harness.plugin.threshold_training import (hard_stage, prepare_threshold_point, relative_to_length,
                                               with_lengths_resolved)
from harness.train.finetune import (TrainConfig, default_loss, distillation_loss, frozen_except, task_loss,
                                    total_steps)
from harness.train.inference import evaluate

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
    "Gates", "materialize", "clear_gates", "prune_heads", "prune_ffn", "prune_hidden", "demo_pruned",
    # hard-concrete gates and the Lagrangian (CoFi's masks, ToP's token gates)
    "STRETCH", "BETA", "LOG_ALPHA_RANGE", "keep_probability", "sample_gate", "deterministic_gate", "GradientAscent",
    # threshold pruning (LTP's policy)
    "LTPPolicy", "per_real_row", "token_scores", "rising_thresholds",
    # early exit (FastBERT's heads)
    "EarlyExitPolicy", "Student", "entropy_uncertainty", "demo_exits",
    # measures
    "count_macs", "dense_macs", "scoring_macs", "layer_macs_of", "head_macs", "attention_params", "ffn_params", "structure_summary", "primary",
    # point names and the search
    "format_knob", "point_identity", "SPARSITY_EPSILON", "ParetoSearch", "spread_points",
    # training and evaluation (harness.train) and the shared training steps of the threshold and exit methods
    "evaluate", "TrainConfig", "default_loss", "distillation_loss", "frozen_except", "task_loss", "total_steps",
    "hard_stage", "prepare_threshold_point", "relative_to_length", "with_lengths_resolved",
    "ExitHeadSettings", "exit_distillation_loss", "label_scale", "new_exit_policy", "train_exits",
    "validation_distill_loss",
]
