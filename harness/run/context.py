"""Everything a method plugin needs for one (task, method) job.

Data (with the config's caps applied by a seeded subsample), tokenized
splits, the backbone, the training settings, and where to save models. A
plugin touches the workflow only through this object.
"""
from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from harness.model.backbone import Backbone, resolve_backbone, resolve_tokenizer
from harness.data.sources import load_task
from harness.data.splits import TaskData, cap
from harness.data.encoding import Encoded, encode_examples
from harness.errors import HarnessError
from harness.model.policy import Policy
from harness.data.tasks import TaskSpec, get_task
from harness.run.finetune import TrainConfig, finetune

SPLITS = ("train", "validation", "eval")
_CAP_KEYS = {"train": "max_train_examples", "validation": "max_validation_examples", "eval": "max_eval_examples"}


class RunContext:
    def __init__(self, cfg: dict, task: str, method: str):
        self.cfg = cfg
        self.task: TaskSpec = get_task(task)
        self.method = method
        self.seed: int = cfg["seed"]
        self.device: str = cfg.get("device", "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise HarnessError("the config asks for device cuda but no GPU is visible", "set device: cpu")
        self.work_dir = Path(cfg["work_dir"])

    # ---- data ----------------------------------------------------------------
    @cached_property
    def full_data(self) -> TaskData:
        """The task's splits before the config's caps (for dataset statistics)."""
        return load_task(
            self.task.name,
            self.cfg.get("data_dir"),
            seed=self.seed,
            validation_fraction=self.cfg["train"].get("validation_fraction", 0.1),
            allow_hub=self.cfg.get("allow_hub", False),
        )

    @cached_property
    def data(self) -> TaskData:
        """The splits with the config's caps applied (seeded subsamples)."""
        t, raw = self.cfg["train"], self.full_data
        capped = {s: cap(getattr(raw, s), t.get(_CAP_KEYS[s]), self.seed + i) for i, s in enumerate(SPLITS)}
        return dataclasses.replace(raw, **capped)

    @property
    def caps(self) -> dict:
        t = self.cfg["train"]
        return {s: t.get(_CAP_KEYS[s]) for s in SPLITS}

    @cached_property
    def backbone(self) -> Backbone:
        return resolve_backbone(self.cfg["backbone"], self.cfg.get("data_dir"))

    @cached_property
    def tokenizer(self):
        """The backbone's tokenizer, without loading its weights if they are not needed yet."""
        if "backbone" in self.__dict__:
            return self.backbone.tokenizer
        return resolve_tokenizer(self.cfg["backbone"], self.cfg.get("data_dir"))

    @cached_property
    def _encoded(self) -> dict[str, Encoded]:
        return {}

    def encoded(self, split: str) -> Encoded:
        if split not in SPLITS:
            raise ValueError(split)
        if split not in self._encoded:
            self._encoded[split] = encode_examples(
                self.tokenizer, getattr(self.data, split), self.task.seq_len, self.task.is_regression
            )
        return self._encoded[split]

    # ---- models --------------------------------------------------------------
    @property
    def variant(self) -> dict | None:
        return self.cfg.get("variants", {}).get(self.method)

    @property
    def base_method(self) -> str:
        """The registered plugin this job runs (a variant's `method`, else itself)."""
        return self.variant["method"] if self.variant else self.method

    @property
    def method_cfg(self) -> dict:
        """methods_config of the plugin, with a variant's `config` on top."""
        out = dict(self.cfg.get("methods_config", {}).get(self.base_method, {}))
        if self.variant:
            out.update(self.variant.get("config") or {})
        return {k: (self.eval_median_length() if v == "eval_median" else v) for k, v in out.items()}

    def method_settings(self, defaults: dict) -> dict:
        """A plugin's `defaults` with this job's method_cfg on top."""
        return {**defaults, **self.method_cfg}

    def eval_median_length(self) -> int:
        """Median token length of the eval split (after truncation)."""
        return int(np.median(self.encoded("eval").lengths))

    def new_model(self, policy: Policy | None = None):
        model = self.backbone.new_classifier(self.task.num_labels, self.seed)
        if policy is not None:
            model.policy = policy
        return model.to(self.device)

    def train_config(self, **overrides) -> TrainConfig:
        t = self.cfg["train"]
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        base = {k: v for k, v in t.items() if k in names}
        base["seed"] = self.seed
        base.update(overrides)
        return TrainConfig(**base)

    def finetune(self, model, cfg: TrainConfig | None = None, train: Encoded | None = None, **kw) -> dict:
        return finetune(
            model,
            self.task,
            train if train is not None else self.encoded("train"),
            self.encoded("validation"),
            cfg or self.train_config(),
            device=self.device,
            desc=kw.pop("desc", f"{self.task.name}/{self.method}"),
            **kw,
        )

    def model_dir(self, method: str | None = None) -> Path:
        return self.work_dir / "models" / self.task.name / (method or self.method)

    def save_model(self, model, name: str = "model.pt") -> Path:
        path = self.model_dir() / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model, tmp)
        tmp.replace(path)
        return path

    def load_model(self, name: str = "model.pt", method: str | None = None):
        path = self.model_dir(method) / name
        if not path.is_file():
            raise HarnessError(
                f"trained model {path} not found",
                f"run the workflow's train step for {self.task.name}/{method or self.method} first",
            )
        model = torch.load(path, map_location=self.device, weights_only=False)
        model.eval()
        return model
