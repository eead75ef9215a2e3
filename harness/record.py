"""Result records on disk: paths, atomic writes, manifests.

One JSON record per (method, operating point, task, protocol) at
`<results_dir>/records/<task>/<method>/<op>/<protocol>.json`, plus one
manifest per (task, method) at `<results_dir>/manifests/<task>/<method>.json`
listing them, written last (the workflow's evaluate output). Every write goes to a
temporary file in the same folder and is renamed into place, and a job writes
nothing until all its records are computed, so a failure leaves no partial
result files.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

_SAFE = re.compile(r"^[A-Za-z0-9_.=+-]+$")


def safe_name(name: str) -> str:
    if not _SAFE.match(name):
        raise ValueError(f"operating point name {name!r} must be file-name safe ([A-Za-z0-9_.=+-])")
    return name


def record_path(results_dir: str | Path, task: str, method: str, op: str, protocol: str) -> Path:
    return Path(results_dir) / "records" / task / method / safe_name(op) / f"{protocol}.json"


def manifest_path(results_dir: str | Path, task: str, method: str) -> Path:
    return Path(results_dir) / "manifests" / task / f"{method}.json"


def lengths_path(results_dir: str | Path, task: str) -> Path:
    return Path(results_dir) / "lengths" / f"{task}.json"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(path: str | Path, obj) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(obj), f, indent=1, sort_keys=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_json(path: str | Path):
    with open(path) as f:
        return json.load(f)
