"""Training one operating point at a time: the unit a cluster runs side by side.

A plugin whose points are trained independently (one model per lambda, per
sparsity, per alpha) names them in `train_points(settings, task)` and trains
one in `train_point(ctx, name, knob)`. The workflow then runs one `train_point`
job per name and training seed, each in its own process from
`seed_everything(seed)` (so a point depends on the seed alone, never on which
points ran before it or where), and
a `gather_points` step that joins their results into the method's
`points.json` (read by `operating_points`) and `done.json` (what evaluate waits
for). Gathering reads only the point files: it loads no data and no model.

`train_all_points` runs the same units in one process, in order, each from the
same seed: what `MethodPlugin.train` does for such a plugin (tests, notebooks),
with the same models as the workflow's point jobs.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from harness.errors import HarnessError
from harness.measure.provenance import provenance
from harness.storage import read_json, safe_name, write_json

POINTS_MANIFEST = "points.json"  # the one name of a method's points manifest (`RunContext.points`)


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch generators from the job's training seed: a job then
    creates and trains everything (e.g. exit heads made before the fine-tuning
    loop seeds itself) the same way in every process; torch otherwise starts
    each process from a random seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():  # deterministic GPU kernels where torch has them (CPU ones already are)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def point_file(model_dir: Path, name: str) -> Path:
    """Where a point job writes its result (model files go beside it)."""
    return Path(model_dir) / "points" / f"{safe_name(name)}.json"


def knob_of(plugin, settings, task, name: str):
    points = plugin.train_points(settings, task)
    if name not in points:
        raise HarnessError(
            f"{plugin.name} has no training point {name!r} for {task.name}",
            f"use one of: {', '.join(points) or '(none: it trains in one job)'}",
        )
    return points[name]


def train_one(ctx, name: str) -> dict:
    """Train point `name` of the context's method from the seed alone; its
    result (manifest entries, log, the data it saw), not yet written."""
    knob = knob_of(ctx.plugin, ctx.settings, ctx.task, name)
    seed_everything(ctx.seed)
    t0 = time.time()
    entries, log = ctx.plugin.train_point(ctx, name, knob)
    return {
        "task": ctx.task.name,
        "method": ctx.method,
        "seed": ctx.seed,
        "point": name,
        "entries": list(entries),
        "log": log,
        "seconds": round(time.time() - t0, 2),
        "settings": ctx.settings_log,
        "train_split": ctx.train_split_info,
        "n_train": len(ctx.data.train),
        "n_validation": len(ctx.data.validation),
    }


def point_job(ctx, name: str) -> Path:
    """The workflow's `train_point` job: one point, its result written last."""
    result = train_one(ctx, name)
    return write_json(point_file(ctx.model_dir(), name), {**result, "provenance": provenance(ctx.cfg)})


def gather(results: list[dict]) -> tuple[list[dict], dict]:
    """The points manifest (every point's entries, in the plugin's order) and
    the training log of a method trained point by point, keyed by point job
    (whose name may differ from the operating points it yields: LTP-manual's
    relative thresholds resolve to absolute ones once the data is read)."""
    first = results[0]
    log = {"settings": first["settings"], **first["train_split"],
           "points": {r["point"]: {**r["log"], "seconds_point": r["seconds"],
                                   "operating_points": [e["name"] for e in r["entries"]]} for r in results}}
    return [e for r in results for e in r["entries"]], log


def gather_job(cfg: dict, task: str, method: str, names: list[str], model_dir: Path) -> Path:
    """The workflow's `gather_points` step: `points.json`, then `done.json`."""
    missing = [n for n in names if not point_file(model_dir, n).is_file()]
    if missing:
        raise HarnessError(f"{task}/{method}: points {', '.join(missing)} are not trained",
                           "run the workflow (its train_point jobs write them)")
    results = [read_json(point_file(model_dir, n)) for n in names]
    manifest, log = gather(results)
    write_json(Path(model_dir) / POINTS_MANIFEST, manifest)
    return write_json(Path(model_dir) / "done.json", {
        "task": task, "method": method, "seed": results[0].get("seed"),
        "train_seconds": round(sum(r["seconds"] for r in results), 2),
        "trained_as": "one job per point", "log": log,
        "n_train": results[0]["n_train"], "n_validation": results[0]["n_validation"],
        "provenance": provenance(cfg),
    })


def train_all_points(ctx) -> dict:
    """Every point in this process, in order, each from the seed: the points
    manifest written and the gathered log returned."""
    names = list(ctx.plugin.train_points(ctx.settings, ctx.task))
    if not names:
        raise HarnessError(f"{ctx.method} declares no training points for {ctx.task.name}",
                           f"check the knob lists in the settings of {ctx.method}")
    manifest, log = gather([train_one(ctx, n) for n in names])
    ctx.write_points(manifest)
    return log
