"""The same seed and thread count give the same trained weights and the same
records, for every registered method, whatever ran in the process before.

Each method is trained and evaluated twice on the smoke profile's tiny model;
before each run the global random generators are left in a different state
(as a fresh process leaves them: torch seeds itself at random), so a method
that draws random numbers outside the seeded fine-tuning loop shows up here.
"""
from __future__ import annotations

import json
import random

import numpy as np
import torch
from safetensors.torch import load_file

from harness.config import load_config
from harness.plugin.registry import get_method, method_names
from harness.run.jobs import evaluate_job, train_job


def _in_dependency_order(names: list[str]) -> list[str]:
    done: list[str] = []

    def visit(n: str) -> None:
        for req in get_method(n).requires:
            visit(req)
        if n not in done:
            done.append(n)

    for n in names:
        visit(n)
    return done


def _run(root, scramble: int) -> dict:
    cfg = load_config("smoke", [f"results_dir={root}/r", f"figures_dir={root}/f", f"work_dir={root}/w", "data_dir=",
                                "eval.protocols=[batch, none]", "timing.protocols=[]"])
    out = {}
    for method in _in_dependency_order(method_names()):
        random.seed(scramble)
        np.random.seed(scramble)
        torch.manual_seed(scramble)
        train_job(cfg, "mr", method)
        evaluate_job(cfg, "mr", method)
        models = {p.name: load_file(p)  # every tensor a checkpoint holds (parameters, buffers, tensor attributes)
                  for p in sorted((root / "w" / "models" / "mr" / method / "seed0").glob("*.safetensors"))}
        records = {}
        for p in sorted((root / "r" / "records" / "mr" / method).rglob("*.json")):
            rec = json.loads(p.read_text())
            rec.pop("provenance")  # holds the time of the run
            records[str(p.relative_to(root / "r"))] = rec
        out[method] = (models, records)
    return out


def test_every_method_trains_and_evaluates_reproducibly(tmp_path):
    first, second = _run(tmp_path / "a", scramble=1), _run(tmp_path / "b", scramble=2)
    assert set(first) == set(method_names())
    for method in first:
        models_a, records_a = first[method]
        models_b, records_b = second[method]
        assert models_a and models_a.keys() == models_b.keys(), method
        for name in models_a:
            for key, value in models_a[name].items():
                assert torch.equal(value, models_b[name][key]), (method, name, key)
        assert records_a and records_a == records_b, method
