"""A job's data: the task's splits, capped and tokenized once.

The splits and caps follow the config's `split_seed` only, so every training seed of a
method sees the same examples (and the bootstrap resamples the same eval set). Tokenized
splits are kept per job: a method that reads the validation split several times encodes it
once. Nothing here knows about methods or files of a run (`JobStore`), or about training
(`RunContext`, which composes both).
"""
from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np

from harness.data.encoding import Encoded, encode_examples
from harness.data.sources import load_task
from harness.data.splits import TaskData, cap
from harness.data.tasks import TaskSpec
from harness.data.windows import Windows, encode_windows
from harness.errors import HarnessError
from harness.model.backbone import Backbone, resolve_backbone, resolve_tokenizer

SPLITS = ("train", "validation", "eval")
_CAP_KEYS = {"train": "max_train_examples", "validation": "max_validation_examples", "eval": "max_eval_examples"}


class JobData:
    def __init__(self, cfg: dict, task: TaskSpec):
        self.cfg = cfg
        self.task = task
        self.split_seed: int = int(cfg["split_seed"])
        self._encoded: dict[str, Encoded] = {}

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
