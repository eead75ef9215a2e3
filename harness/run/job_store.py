"""A job's files: its models, a method's own JSON files, its points manifest, its resume files.

Everything under `<work_dir>/models/<task>/<method>/seed<s>` (and `<work_dir>/resume/...`) is
written atomically, so a job killed midway leaves no half-written file that a rerun would
trust. A method reaches another method's files (the models or points it starts from) by
naming it; the training seed is always the job's own.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.model import checkpoint
from harness.plugin.registry import method_modules, module_of_method
from harness.run.points import POINTS_MANIFEST
from harness.storage import atomic_output, read_json, seed_dir, write_json


class JobStore:
    def __init__(self, work_dir: Path, task: str, method: str, seed: int):
        self.work_dir, self.task, self.method, self.seed = Path(work_dir), task, method, int(seed)
        self._resume_calls = 0
        self._resume_files: list[Path] = []

    # ---- models and a method's files ---------------------------------------------
    def model_dir(self, method: str | None = None) -> Path:
        """This job's model folder, or `method`'s (one it starts from) of the same
        training seed: `<work_dir>/models/<task>/<method>/seed<s>`."""
        return self.work_dir / "models" / self.task / (method or self.method) / seed_dir(self.seed)

    def _missing(self, path: Path, method: str | None, what: str = "") -> HarnessError:
        return HarnessError(f"{what}{path} not found",
                            f"run the workflow's train step for {self.task}/{method or self.method} first")

    def checkpoint_path(self, name: str, method: str | None = None) -> Path:
        """Where the model a method calls `name` lives: "lambda=0.1.pt" (the name manifests keep) or
        "lambda=0.1" is `lambda=0.1.safetensors` in the model folder."""
        if "/" in name or "\\" in name or not name.strip("."):
            raise HarnessError(f"model name {name!r} is not a file name", "name a model like 'lambda=0.1.pt'")
        return self.model_dir(method) / f"{name.removesuffix('.pt').removesuffix('.safetensors')}.safetensors"

    def save_model(self, model, name: str = "model.pt") -> Path:
        """Save atomically into this job's model folder, as safetensors (`harness.model.checkpoint`)."""
        path = self.checkpoint_path(name)
        with atomic_output(path) as tmp:
            checkpoint.save_model(model, tmp, method_modules())
        return path

    def load_model(self, name: str, method: str | None, device: str):
        path = self.checkpoint_path(name, method)
        legacy = self.model_dir(method) / name
        if not path.is_file() and legacy.is_file() and legacy.suffix == ".pt":
            model = self._load_pickle(legacy, device)
        elif not path.is_file():
            raise self._missing(path, method, "trained model ")
        else:
            model = checkpoint.load_model(path, module_of_method, device)
        model.eval()
        return model

    def _load_pickle(self, path: Path, device: str):
        """A model pickled whole by a harness before safetensors: loading it runs whatever code the file
        names, so only on request (`HARNESS_TRUST_PICKLES=1`, for a work folder of your own)."""
        if os.environ.get("HARNESS_TRUST_PICKLES") != "1":
            raise HarnessError(
                f"{path} is a model pickled by an older harness; loading a pickle runs whatever code it names, "
                "and models are now saved as safetensors",
                f"retrain it (delete {path.parent} and rerun the workflow, or snakemake --forcerun train "
                "train_point), or, if you made this work folder yourself, set HARNESS_TRUST_PICKLES=1 to load it")
        warnings.warn(f"loading the pickled model {path} (HARNESS_TRUST_PICKLES=1)", stacklevel=3)
        return torch.load(path, map_location=device, weights_only=False)

    def write_json(self, name: str, obj) -> Path:
        """Write a JSON file (a points manifest, search results) into this job's model folder, atomically."""
        return write_json(self.model_dir() / name, obj)

    def read_json(self, name: str, method: str | None = None):
        """A JSON file written by `write_json` of this job's method (or of `method`)."""
        path = self.model_dir(method) / name
        if not path.is_file():
            raise self._missing(path, method)
        return read_json(path)

    def points(self, method: str | None = None) -> list[dict]:
        """The points manifest of this job's method, or of `method` (one it starts from)."""
        return self.read_json(POINTS_MANIFEST, method)

    def write_points(self, entries: list[dict]) -> Path:
        return self.write_json(POINTS_MANIFEST, entries)

    # ---- resume files ----------------------------------------------------------
    @property
    def resume_dir(self) -> Path:
        """Resume files of this job's fine-tuning calls: `<work_dir>/resume/<task>/<method>/seed<s>`."""
        return self.work_dir / "resume" / self.task / self.method / seed_dir(self.seed)

    def resume_file(self, desc: str) -> Path:
        """The next finetune call's resume file: its number within the job
        (the calls of a retried job come in the same order) and its
        description (which names the point, so point jobs side by side never share one)."""
        n = self._resume_calls
        self._resume_calls = n + 1
        slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", desc).strip("_")
        if len(slug) > 100:  # long descriptions stay apart by a hash of the whole
            slug = f"{slug[:90]}-{hashlib.sha1(desc.encode()).hexdigest()[:8]}"
        path = self.resume_dir / f"{n:02d}-{slug}.pt"
        self._resume_files.append(path)
        return path

    def clear_resume(self) -> None:
        """Remove the resume files of this job's calls (once its outputs are
        written: a finished job leaves no checkpoints behind). Only this job's:
        point jobs of the same method may be running beside it."""
        for path in self._resume_files:
            path.unlink(missing_ok=True)
            for tmp in path.parent.glob(f".{path.name}.*.tmp"):  # a write the kill cut short
                tmp.unlink(missing_ok=True)
