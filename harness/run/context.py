"""Everything a method plugin needs for one (task, method) job: the toolkit.

Data (split and capped by the config's `split_seed`: the same examples for
every training seed), the job's training seed (`seed`, one of the config's
`seeds`: initialisation, data order, dropout), tokenized splits, the length-filtered training split, the backbone, the method's typed
settings, the fine-tuning loop, and atomic stores for models and a method's
own files (points manifests, search results). A plugin touches the workflow
only through this object, and only through the members of
`harness.plugin.context.JobContext`, which `RunContext` implements (the rest
is the workflow's).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from harness.data.encoding import Encoded, encode_examples
from harness.data.windows import Windows, encode_windows
from harness.data.sources import load_task
from harness.data.splits import TaskData, cap
from harness.data.tasks import TaskSpec, get_task
from harness.errors import HarnessError
from harness.measure.flops import dense_macs, relative_flops, trace_macs
from harness.measure.metrics import primary
from harness.model.backbone import Backbone, resolve_backbone, resolve_tokenizer
from harness.model.policy import Policy
from harness.plugin.settings import EVAL_MEDIAN, as_dict, parse_settings
from harness.storage import atomic_output, read_json, seed_dir, write_json
from harness.run.finetune import TrainConfig, finetune
from harness.run.inference import evaluate
from harness.run.plan import all_seeds, base_method, method_values, plugin_for
from harness.run.points import POINTS_MANIFEST

SPLITS = ("train", "validation", "eval")
_CAP_KEYS = {"train": "max_train_examples", "validation": "max_validation_examples", "eval": "max_eval_examples"}


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

    # ---- data ----------------------------------------------------------------
    @cached_property
    def full_data(self) -> TaskData:
        """The task's splits before the config's caps (for dataset statistics)."""
        return load_task(
            self.task.name,
            self.cfg.get("data_dir"),
            seed=self.split_seed,
            validation_fraction=self.cfg["train"].get("validation_fraction", 0.1),
            allow_hub=self.cfg.get("allow_hub", False),
        )

    @cached_property
    def data(self) -> TaskData:
        """The splits with the config's caps applied (subsamples seeded by split_seed)."""
        raw, caps = self.full_data, self.caps
        capped = {s: cap(getattr(raw, s), caps[s], self.split_seed + i) for i, s in enumerate(SPLITS)}
        return dataclasses.replace(raw, **capped)

    @property
    def caps(self) -> dict:
        """Examples kept per split (None = all): `train.max_*_examples`, or this
        task's entry of `train.task_caps` (e.g. fewer SQuAD questions, whose
        windows cost several times an MR snippet)."""
        t = self.cfg["train"]
        own = (t.get("task_caps") or {}).get(self.task.name, {})
        return {s: own.get(_CAP_KEYS[s], t.get(_CAP_KEYS[s])) for s in SPLITS}

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
            raise HarnessError(f"unknown split {split!r}", f"use one of: {', '.join(SPLITS)}")
        if split not in self._encoded:
            examples = getattr(self.data, split)
            if self.task.is_span:  # one row per 384-token window of a question (harness.data.windows)
                self._encoded[split] = encode_windows(self.tokenizer, examples, self.task.seq_len)
            else:
                self._encoded[split] = encode_examples(self.tokenizer, examples, self.task.seq_len,
                                                       self.task.is_regression)
        return self._encoded[split]

    def n_examples(self, split: str) -> int:
        """Examples of a split as reported: questions for a span task (whose
        encoded rows are windows), else rows."""
        enc = self.encoded(split)
        return enc.n_questions if isinstance(enc, Windows) else len(enc)

    def eval_median_length(self) -> int:
        """Median token length of the eval split (after truncation)."""
        return int(np.median(self.encoded("eval").lengths))

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
        """`harness.run.finetune.finetune` on this job's data: the length-filtered
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
        """Resume files of this job's fine-tuning calls: `<work_dir>/resume/<task>/<method>/seed<s>`."""
        return self.work_dir / "resume" / self.task.name / self.method / seed_dir(self.seed)

    def resume_file(self, desc: str) -> Path:
        """The next finetune call's resume file: its number within the job
        (the calls of a retried job come in the same order) and its
        description (which names the point, so point jobs side by side never share one)."""
        import re

        n = self.__dict__.get("_resume_calls", 0)
        self._resume_calls = n + 1
        slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", desc).strip("_")
        if len(slug) > 100:  # long descriptions stay apart by a hash of the whole
            import hashlib

            slug = f"{slug[:90]}-{hashlib.sha1(desc.encode()).hexdigest()[:8]}"
        path = self.resume_dir / f"{n:02d}-{slug}.pt"
        self.__dict__.setdefault("_resume_files", []).append(path)
        return path

    def clear_resume(self) -> None:
        """Remove the resume files of this job's calls (once its outputs are
        written: a finished job leaves no checkpoints behind). Only this job's:
        point jobs of the same method may be running beside it."""
        for path in self.__dict__.get("_resume_files", []):
            path.unlink(missing_ok=True)
            for tmp in path.parent.glob(f".{path.name}.*.tmp"):  # a write the kill cut short
                tmp.unlink(missing_ok=True)

    def train_policy_point(self, base, make_policy, name: str, cfg: TrainConfig, policy_lr: float | None = None,
                           loss_fn=None) -> tuple[object, dict]:
        """A copy of `base` under the policy `make_policy()` builds (its initial
        weights drawn from the seed alone, whatever ran before), fine-tuned
        with the policy's parameters at their own constant `policy_lr` (None:
        the schedule's), keeping the last weights; saved as `<name>.pt`.
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

    def model_dir(self, method: str | None = None) -> Path:
        """This job's model folder, or `method`'s (one it starts from) of the same
        training seed: `<work_dir>/models/<task>/<method>/seed<s>`."""
        return self.work_dir / "models" / self.task.name / (method or self.method) / seed_dir(self.seed)

    def save_model(self, model, name: str = "model.pt") -> Path:
        """Save atomically into this job's model folder."""
        path = self.model_dir() / name
        with atomic_output(path) as tmp:
            torch.save(model, tmp)
        return path

    def load_model(self, name: str = "model.pt", method: str | None = None):
        path = self.model_dir(method) / name
        if not path.is_file():
            raise HarnessError(
                f"trained model {path} not found",
                f"run the workflow's train step for {self.task.name}/{method or self.method} first",
            )
        model = torch.load(path, map_location=self.model_device, weights_only=False)
        model.eval()
        return model

    # ---- a method's own files ---------------------------------------------------
    def write_json(self, name: str, obj) -> Path:
        """Write a JSON file (a points manifest, search results) into this job's
        model folder, atomically."""
        return write_json(self.model_dir() / name, obj)

    def read_json(self, name: str, method: str | None = None):
        """A JSON file written by `write_json` of this job's method (or of
        `method`, whose models this one starts from)."""
        path = self.model_dir(method) / name
        if not path.is_file():
            raise HarnessError(
                f"{path} not found", f"run the workflow's train step for {self.task.name}/{method or self.method} first"
            )
        return read_json(path)

    def points(self, method: str | None = None) -> list[dict]:
        """The points manifest of this job's method, or of `method` (one it
        starts from): the entries its `train_point` calls returned, in order,
        as the workflow's gather step (or `train_all_points`) wrote them."""
        return self.read_json(POINTS_MANIFEST, method)

    def write_points(self, entries: list[dict]) -> Path:
        """Write this job's points manifest, atomically."""
        return self.write_json(POINTS_MANIFEST, entries)
