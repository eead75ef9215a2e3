"""`JobContext`: all a method sees of the job it runs in.

Why a protocol: a plugin is handed the job's context (`ctx`) in every hook,
and this is the whole of what it may use: the task, the training seed, the
device, its typed settings, the splits, the dense and its own models, the
fine-tuning loop, the profile's training settings and the points manifests.
`harness.run.context.RunContext` implements it (structurally: it does not
inherit from this class; `tests/test_plugin_api.py` checks that every member
is there with the same parameters), so plugins and the core's shared training
steps type `ctx` as `JobContext`, and the workflow may change how a job is
run without any method noticing.

Another method's trained points are read through `points(method)`, never by
a file name: the manifest's name is the core's (`POINTS_MANIFEST` in
`harness.run.points`), written by the workflow from what `train_point`
returns (`write_points` for a method that trains in one `train` call).
`read_json` / `write_json` are for a method's own further files (LAT's search
results).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from harness.data.encoding import Encoded
    from harness.data.tasks import TaskSpec
    from harness.model.encoder import BertClassifier
    from harness.model.policy import Policy
    from harness.train.finetune import TrainConfig


class JobContext(Protocol):
    """One (task, method, training seed) job, as a method plugin sees it."""

    task: TaskSpec  # the task (name, head, number of labels, sequence length, ...)
    method: str  # the method or variant this job runs (a variant's name, not its plugin's)
    seed: int  # the training seed: initialisation, data order, dropout
    device: str  # where models train and run

    # ---- settings ------------------------------------------------------------------
    @property
    def settings(self) -> Any:
        """The plugin's typed `Settings`, the profile's values on top of the defaults."""

    @property
    def settings_log(self) -> dict:
        """The settings as JSON, for training logs."""

    def train_setting(self, name: str) -> Any:
        """The profile's training setting `train.<name>` (lr, batch_size, ...) as configured:
        what a method setting left at None stands for."""

    def train_config(self, **overrides) -> TrainConfig:
        """The profile's training settings with `overrides` on top (None keeps the profile's)."""

    # ---- data ----------------------------------------------------------------------
    def encoded(self, split: str) -> Encoded:
        """A tokenized split: "train", "validation" (every choice among points is made on it) or "eval"."""

    @property
    def train_split(self) -> Encoded:
        """The training split, length-filtered by the `train_max_length` setting."""

    @property
    def train_split_info(self) -> dict:
        """What the length filter did (and the mean training length), for logs."""

    @property
    def validation_batch_size(self) -> int:
        """Batch size of every validation pass."""

    # ---- models and training ---------------------------------------------------------
    def new_model(self, policy: Policy | None = None) -> BertClassifier:
        """The backbone with a new task head, seeded by the training seed, on the job's device."""

    def load_model(self, name: str = "model.pt", method: str | None = None) -> BertClassifier:
        """A saved model of this job's method, or of `method` (one it starts from), in eval mode."""

    def save_model(self, model, name: str = "model.pt") -> Path:
        """Save `model` atomically into this job's model folder."""

    def finetune(self, model, cfg: TrainConfig | None = None, train: Encoded | None = None, **kw) -> dict:
        """The shared fine-tuning loop on this job's data (`harness.train.finetune.finetune`'s keywords:
        loss_fn, checkpoint, score_fn, start_score, parameters, extra_groups, desc); returns its log."""

    def train_policy_point(self, base, make_policy: Callable[[], Policy], name: str, cfg: TrainConfig,
                           policy_lr: float | None = None, loss_fn=None) -> tuple[object, dict]:
        """A copy of `base` under a new policy fine-tuned (the policy at its own rate) and saved
        under `<name>.pt` (the file is `<name>.safetensors`); the model and its log."""

    def validation_summary(self, model) -> dict:
        """`model` on the validation split: its score, relative FLOPs, tokens per layer."""

    # ---- manifests and a method's own files ------------------------------------------------
    def points(self, method: str | None = None) -> list[dict]:
        """The points manifest of this job's method, or of `method` (one it starts from): the
        entries its `train_point` calls returned, in order."""

    def write_points(self, entries: list[dict]) -> Path:
        """Write this job's points manifest (a method that trains everything in `train`)."""

    def train_every_point(self) -> dict:
        """Train every point of the method's `train_points` here, one after another, each from the
        seed as the workflow's point jobs would, and write the points manifest; returns the log."""

    def read_json(self, name: str, method: str | None = None) -> Any:
        """A JSON file a method wrote with `write_json` (this job's, or `method`'s)."""

    def write_json(self, name: str, obj) -> Path:
        """Write a method's own JSON file (search results) into this job's model folder, atomically."""
