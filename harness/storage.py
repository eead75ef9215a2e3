"""Files on disk: where results live, and atomic writes.

One JSON record per (method, operating point, task, protocol, training seed) at
`<results_dir>/records/<task>/<method>/seed<s>/<op>/<protocol>.json`, plus one
manifest per (task, method, seed) at `<results_dir>/manifests/<task>/<method>/seed<s>.json`
listing them, written last (the workflow's evaluate output). Models live in
`<work_dir>/models/<task>/<method>/seed<s>/` (`seed_dir`): jobs of different
training seeds share no file. Every write goes
to a temporary file in the same folder and is renamed into place, and a job
writes nothing until all its records are computed, so a failure leaves no
partial result files. Report writers (tables, figures) use the same helpers.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

_SAFE = re.compile(r"^[A-Za-z0-9_.=+-]+$")


def safe_name(name: str) -> str:
    if not _SAFE.match(name):
        raise HarnessError(
            f"operating point name {name!r} is not file-name safe",
            "name points with letters, digits and _ . = + - only (the method plugin chooses the names)",
        )
    return name


def seed_dir(seed: int) -> str:
    """The path segment of one training seed: `seed0`, `seed1`, ..."""
    return f"seed{int(seed)}"


def record_path(results_dir: str | Path, task: str, method: str, op: str, protocol: str, seed: int = 0,
                precision: str = "fp32") -> Path:
    """`<protocol>.json` at full precision (fp32), `<protocol>.<precision>.json` at a lower one."""
    name = protocol if precision == "fp32" else f"{protocol}.{precision}"
    return Path(results_dir) / "records" / task / method / seed_dir(seed) / safe_name(op) / f"{name}.json"


def manifest_path(results_dir: str | Path, task: str, method: str, seed: int = 0) -> Path:
    return Path(results_dir) / "manifests" / task / method / f"{seed_dir(seed)}.json"


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


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temp path beside `path`; on success move it into place with os.replace.

    The temp file lives in the destination folder so os.replace is an atomic
    rename on the same filesystem; if the body raises, the temp file is removed
    and any previous `path` is left untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> str:
    """Write `text` to `path` atomically (UTF-8) and return the path as a string."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return str(path)


def write_json(path: str | Path, obj) -> Path:
    """Write `obj` (numpy values converted, NaN/inf as null) as JSON, atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(_jsonable(obj), f, indent=1, sort_keys=False)
    return Path(path)


def read_json(path: str | Path):
    with open(path) as f:
        return json.load(f)
