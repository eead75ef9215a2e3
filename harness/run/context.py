"""RunContext: one (task, method, training seed) job, as a method plugin sees it.

It implements `harness.plugin.context.JobContext`, the only part of it a
plugin touches, by composing three pieces with one job each:
`JobData` (`harness.run.job_data`: the splits, capped by `split_seed` and
tokenized once), `JobStore` (`harness.run.job_store`: models, a method's own
files, the points manifest, resume files) and, here, the method's typed
settings and the training recipe (the profile's training settings, the
length-filtered training split, fine-tuning with resume files, the validation
summary, a policy point fine-tuned from a base model).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from harness.data.encoding import Encoded
from harness.data.splits import TaskData
from harness.data.tasks import TaskSpec, get_task
from harness.errors import HarnessError
from harness.measure.flops import dense_macs, relative_flops, trace_macs
from harness.measure.metrics import primary
from harness.model.backbone import Backbone
from harness.model.policy import Policy
from harness.plugin.settings import EVAL_MEDIAN, as_dict, parse_settings
from harness.run.job_data import JobData
from harness.run.job_store import JobStore
from harness.run.plan import all_seeds, base_method, method_values, plugin_for
from harness.run.points import train_all_points
from harness.storage import seed_dir
from harness.train.finetune import TrainConfig, finetune
from harness.train.inference import evaluate


class RunContext:
    def __init__(self, cfg: dict, task: str, method: str, seed: int | None = None):
        self.cfg = cfg
        self.task: TaskSpec = get_task(task)
        self.method = method
        # the data: splits and caps (and the bootstrap, harness.measure.bootstrap), whatever the training seed
        self.split_seed: int = int(cfg["split_seed"])
        seeds = all_seeds(cfg)  # the config's seeds and every method_seeds entry
        # the training seed: initialisation, data order, dropout; its models live in their own folders
        self.seed: int = int(cfg["seeds"][0]) if seed is None else int(seed)
        if self.seed not in seeds:
            raise HarnessError(f"training seed {self.seed} is not one of the config's seeds {seeds}",
                               f"add it to the config's seeds (e.g. --config seeds='{sorted(seeds + [self.seed])}')"
                               " or pass one of them")
        # checked where a model is built or loaded (`model_device`), not here: jobs that only
        # read data or JSON (lengths, gather_points) run on machines without a GPU
        self.device: str = cfg.get("device", "cpu")
        self.work_dir = Path(cfg["work_dir"])
        self.inputs = JobData(cfg, self.task)
        self.store = JobStore(self.work_dir, self.task.name, method, self.seed)

    # ---- data (JobData) -------------------------------------------------------
    @property
    def full_data(self) -> TaskData:
        """The task's splits before the config's caps (for dataset statistics)."""
        return self.inputs.full_data

    @property
    def data(self) -> TaskData:
        """The splits with the config's caps applied (subsamples seeded by split_seed)."""
        return self.inputs.data

    @property
    def caps(self) -> dict:
        return self.inputs.caps

    @property
    def backbone(self) -> Backbone:
        return self.inputs.backbone

    @property
    def tokenizer(self):
        return self.inputs.tokenizer

    def encoded(self, split: str) -> Encoded:
        return self.inputs.encoded(split)

    def n_examples(self, split: str) -> int:
        return self.inputs.n_examples(split)

    def eval_median_length(self) -> int:
        return self.inputs.eval_median_length()

    @cached_property
    def train_split(self) -> Encoded:
        """The training split without examples longer than the method's
        `train_max_length` (all of it when unset); see `train_split_info`."""
        enc = self.encoded("train")
        limit = self.settings.train_max_length
        if limit is None:
            return enc
        keep = np.nonzero(enc.lengths <= int(limit))[0]
        if len(keep) == 0:
            raise HarnessError(
                f"train_max_length={limit} leaves no training example of {self.task.name} for {self.method}",
                f"raise train_max_length in the config of {self.method} "
                f"(the shortest example has {int(enc.lengths.min())} tokens)",
            )
        return enc.subset(keep)

    @property
    def train_split_info(self) -> dict:
        """What the length filter did, for training logs."""
        limit = self.settings.train_max_length
        return {
            "train_max_length": None if limit is None else int(limit),
            "n_train_available": len(self.encoded("train")),
            "n_train_used": len(self.train_split),
            "mean_train_length": float(self.train_split.lengths.mean()),
        }

    # ---- the method and its settings -------------------------------------------
    @property
    def variant(self) -> dict | None:
        return self.cfg.get("variants", {}).get(self.method)

    @property
    def base_method(self) -> str:
        """The registered plugin this job runs (a variant's `method`, else itself)."""
        return base_method(self.cfg, self.method)

    @property
    def plugin(self):
        return plugin_for(self.cfg, self.method)

    @property
    def method_cfg(self) -> dict:
        """methods_config of the plugin, with a variant's `config` on top
        (`eval_median` resolved to the eval split's median length)."""
        out = method_values(self.cfg, self.method)
        return {k: (self.eval_median_length() if v == EVAL_MEDIAN else v) for k, v in out.items()}

    @cached_property
    def settings(self):
        """The plugin's typed `Settings`: its defaults with this job's method_cfg on top."""
        where = f"variants.{self.method}.config" if self.variant else f"methods_config.{self.base_method}"
        return parse_settings(self.plugin.Settings, self.method_cfg, where)

    @property
    def given_settings(self) -> dict:
        """The settings the config gave this job (defaults not repeated), as the
        plugin's Settings typed them: a nested `--config` value arrives as a
        string, and records must not carry "1" for 1."""
        return {k: v for k, v in as_dict(self.settings).items() if k in self.method_cfg}

    @property
    def settings_log(self) -> dict:
        """The settings as JSON, for training logs."""
        return as_dict(self.settings)

    @property
    def validation_batch_size(self) -> int:
        """Batch size of every validation pass (checkpoint and operating-point choices)."""
        return int(self.cfg["train"].get("validation_batch_size", 64))

    @property
    def eval_batch_size(self) -> int:
        return int(self.cfg["eval"]["batch_size"])

    def validation_summary(self, model) -> dict:
        """`model` on the held-out validation split under protocol `none`: the
        task's primary metric ("score", what checkpoint and operating-point
        choices compare), FLOPs relative to the dense model on the same
        examples, mean real tokens entering each layer's FFN, and the mean
        length. One pass, for every method that logs or selects by it."""
        enc = self.encoded("validation")
        run = evaluate(model, self.task, enc, "none", self.validation_batch_size, self.device)
        return {
            "score": primary(self.task, run.metrics),
            "relative_flops": relative_flops(trace_macs(run.trace, "none"), dense_macs(enc.lengths, run.trace.arch)),
            "tokens_per_layer": [round(float(x), 3) for x in run.trace.n_ffn.mean(0)],
            "mean_length": float(enc.lengths.mean()),
        }

    # ---- models --------------------------------------------------------------
    @property
    def model_device(self) -> str:
        """The device models go to; a clear error where the config asks for a
        GPU this machine does not have."""
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise HarnessError(
                f"the config asks for device {self.device} but no GPU is visible to this job",
                "set device: cpu, or give the job a GPU (profiles/slurm-gpu asks for one per train/evaluate job)",
            )
        return self.device

    def new_model(self, policy: Policy | None = None):
        model = self.backbone.new_classifier(self.task.num_labels, self.seed, self.task.head)
        if policy is not None:
            model.policy = policy
        return model.to(self.model_device)

    def train_setting(self, name: str):
        """The profile's training setting `train.<name>` (lr, batch_size, ...) as
        configured: what a method setting left at None stands for."""
        train = self.cfg["train"]
        if name not in train:
            raise HarnessError(f"the config has no training setting train.{name}",
                               f"set train.{name} in the profile (config/schema.yaml lists them)")
        return train[name]

    def train_config(self, **overrides) -> TrainConfig:
        """The profile's training settings with `overrides` on top; an override
        of None keeps the profile's value (a method setting left unset)."""
        t = self.cfg["train"]
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        base = {k: v for k, v in t.items() if k in names}
        base["seed"] = self.seed
        base.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig(**base)

    def finetune(self, model, cfg: TrainConfig | None = None, train: Encoded | None = None, **kw) -> dict:
        """`harness.train.finetune.finetune` on this job's data: the length-filtered
        training split unless `train` is given, validation on `validation`.
        Each call of the job gets its own resume file (`resume_file`), so a
        retried job skips its finished calls and continues the one it was
        killed in (`train.checkpoint_minutes`)."""
        desc = kw.pop("desc", f"{self.task.name}/{self.method}")
        return finetune(
            model,
            self.task,
            train if train is not None else self.train_split,
            self.encoded("validation"),
            cfg or self.train_config(),
            device=self.device,
            desc=desc,
            resume=kw.pop("resume", None) or self.resume_file(desc),
            resume_key=self.resume_key,
            **kw,
        )

    @cached_property
    def resume_key(self) -> str:
        """A hash of the job's config (but for the checkpoint interval): a resume
        file written under other settings (a method's, the data caps, the
        backbone, the training seed) never counts."""
        from harness.config import config_hash

        cfg = copy.deepcopy(self.cfg)
        for k in ("checkpoint_minutes", "checkpoint_every_steps"):
            cfg.get("train", {}).pop(k, None)
        return f"{self.task.name}/{self.method}/{seed_dir(self.seed)}/{config_hash(cfg)}"

    @property
    def resume_dir(self) -> Path:
        return self.store.resume_dir

    def resume_file(self, desc: str) -> Path:
        return self.store.resume_file(desc)

    def clear_resume(self) -> None:
        self.store.clear_resume()

    def train_policy_point(self, base, make_policy, name: str, cfg: TrainConfig, policy_lr: float | None = None,
                           loss_fn=None) -> tuple[object, dict]:
        """A copy of `base` under the policy `make_policy()` builds (its initial
        weights drawn from the seed alone, whatever ran before), fine-tuned
        with the policy's parameters at their own constant `policy_lr` (None:
        the schedule's), keeping the last weights; saved under `<name>.pt` (`<name>.safetensors`).
        Returns the model and its log (steps, validation summary, seconds)."""
        t0 = time.time()
        model = copy.deepcopy(base)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            policy = make_policy()
        model.policy = policy.to(self.device)
        groups = None if policy_lr is None else [{"params": list(model.policy.parameters()), "lr": float(policy_lr)}]
        log = self.finetune(model, cfg=cfg, loss_fn=loss_fn, checkpoint="last", extra_groups=groups,
                            desc=f"{self.task.name}/{self.method} {name}")
        model.eval()
        self.save_model(model, f"{name}.pt")
        return model, {"steps": log["steps"], "validation": self.validation_summary(model),
                       "seconds": round(time.time() - t0, 2)}

    # ---- files (JobStore) ------------------------------------------------------
    def model_dir(self, method: str | None = None) -> Path:
        return self.store.model_dir(method)

    def save_model(self, model, name: str = "model.pt") -> Path:
        return self.store.save_model(model, name)

    def load_model(self, name: str = "model.pt", method: str | None = None):
        return self.store.load_model(name, method, self.model_device)

    def write_json(self, name: str, obj) -> Path:
        return self.store.write_json(name, obj)

    def read_json(self, name: str, method: str | None = None):
        return self.store.read_json(name, method)

    def points(self, method: str | None = None) -> list[dict]:
        return self.store.points(method)

    def write_points(self, entries: list[dict]) -> Path:
        return self.store.write_points(entries)

    def train_every_point(self) -> dict:
        """Every point of the method's `train_points`, here in one process (`train_all_points`)."""
        return train_all_points(self)
