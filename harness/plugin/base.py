"""What a method plugin implements.

A plugin trains its model(s) for one task (`train`, or one `train_point` per
point, saving with `ctx.save_model`) and then yields its operating points
(`operating_points`): each a named point on its accuracy/FLOPs curve with the
knob values and a model ready to run (its policy configured, pruned parts
physically removed). The core evaluates every point under every padding
protocol, counts FLOPs from traces, times it side by side with the dense
model, and writes the result records. Any choice among points must be made on
`ctx.encoded("validation")`, never on the eval split.

A plugin holds only its method: its `Settings` (typed, with defaults), its
policy, its training recipe and its knob -> operating points map. It imports
nothing of the harness but the API, `harness.plugin` (`harness/plugin/__init__.py`
lists what it offers), and never another method: what methods share is in the
core and offered there (LTP's threshold policy and training steps, FastBERT's
exit heads and their self-distillation, the point naming of CoFi and LTP), as
is the shared machinery (the selection kernels, skimming, structural slicing,
the FLOPs helpers, the fine-tuning losses, `frozen_except`, the search). Of
its job a plugin sees the `JobContext` (`harness/plugin/context.py`) it is
handed as `ctx`: the task and seed, its settings, the splits
(`ctx.train_split`, length-filtered), the models it starts from
(`ctx.load_model(method=...)`), `ctx.finetune` (checkpoint policies, a loss
that receives the batch), `ctx.train_setting` (the profile's training
settings), another method's trained points (`ctx.points(method)`) and atomic
stores (`ctx.save_model`, `ctx.write_json` / `ctx.read_json`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from harness.plugin.context import JobContext
from harness.plugin.settings import MethodSettings

if TYPE_CHECKING:
    from harness.model.encoder import BertClassifier


@dataclass
class OperatingPoint:
    name: str  # unique within (task, method), file-name safe
    knobs: dict
    model: "BertClassifier"
    notes: dict = field(default_factory=dict)  # search results, learned values, ...


class MethodPlugin:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # the method's settings (a dataclass of typed fields with defaults)
    Settings: ClassVar[type] = MethodSettings
    # methods whose trained models this one starts from (e.g. the fine-tuned dense model)
    requires: ClassVar[tuple[str, ...]] = ()
    # the one place for fidelity notes: how this reimplementation departs from the
    # original method and code; stored in every record and printed by
    # `python -m harness list --deviations`
    deviations: ClassVar[tuple[str, ...]] = ()
    # task heads this method cannot serve, with the reason ({"span": "..."}): the
    # workflow then trains and evaluates nothing for such a task and writes the reason
    # into the job's done.json and results manifest instead of failing
    cannot_serve: ClassVar[dict[str, str]] = {}

    def exclusion(self, task) -> str | None:
        """Why this method does not run on `task` (a TaskSpec), or None."""
        return self.cannot_serve.get(task.head)

    def requirements(self, settings) -> tuple[str, ...]:
        """The methods a job with these `settings` starts from (default:
        `requires`); a plugin whose settings choose its starting model (e.g.
        Infor-Coef's dynamic-only ablation, from dense instead of CoFi)
        overrides it, so the workflow trains only what the job reads."""
        return tuple(self.requires)

    def check(self, name: str, settings, settings_of) -> None:
        """Raise `HarnessError` for a config this method cannot run, before
        anything runs: `name` is the method or variant, `settings_of(method)`
        gives another method's settings under the same config (e.g. whether
        the CoFi sparsities Infor-Coef starts from are trained). Default: none."""

    def train_points(self, settings, task) -> dict[str, object]:
        """The points this method trains independently of one another (one
        model per lambda, per sparsity), for `settings` on `task` (a TaskSpec):
        {name: knob}, `name` file-name safe and known before any data loads,
        `knob` whatever `train_point` needs. The workflow then runs one job per
        point (side by side on a cluster), each from the seed alone, and
        joins their results (`harness.run.points`). Default: none; `train`
        trains everything in one job (e.g. one model searched afterwards)."""
        return {}

    def train_point(self, ctx: JobContext, name: str, knob) -> tuple[list[dict], dict]:
        """Train one point of `train_points` and save its model(s) with
        `ctx.save_model`; returns its entries of the points manifest (which
        `operating_points` reads back with `ctx.points()`) and its JSON-able log."""
        raise NotImplementedError

    def train(self, ctx: JobContext) -> dict:
        """Train and save with `ctx.save_model`; returns a JSON-able training log.
        Default, for a method with `train_points`: every point in this process,
        each from the seed, as the workflow's point jobs train them
        (`ctx.train_every_point()`)."""
        if self.train_points(ctx.settings, ctx.task):
            return ctx.train_every_point()
        raise NotImplementedError

    def operating_points(self, ctx: JobContext) -> Iterable[OperatingPoint]:
        raise NotImplementedError

    def demo_model(self, model: "BertClassifier") -> "BertClassifier":
        """`model` (any small BertClassifier) set up to run this method's
        inference path with untrained but active settings, so it really
        prunes / exits. The generic tests run it to check the analytic FLOPs
        against FlopCounterMode; no training happens. A method that starts
        from another's kind of model builds that start with the core's demo
        helpers (`demo_pruned`, `demo_exits`), not another plugin's `demo_model`."""
        return model
