"""Load stored result and length records; the only input to tables and figures.

Tables and figures are rebuilt from JSON records alone (never from models or
datasets), so a report can be regenerated anywhere the `results/` folder is
copied. This module turns the per-run record files into one flat DataFrame and
checks them early against the record schema (`harness.record`): a broken or
outdated record fails here, naming its file and how to regenerate it, rather
than as a confusing KeyError deep inside a plot.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.record import check_record
from harness.storage import atomic_write_text

KEY_COLUMNS: list[str] = ["task", "method", "operating_point", "protocol", "precision"]
REQUIRED_LENGTH_KEYS: tuple[str, ...] = ("task", "hist_bins", "train_lengths", "eval_lengths")
_LEAD_COLUMNS: list[str] = KEY_COLUMNS + ["metric", "primary_value", "val_primary_value"]


# --------------------------------------------------------------------------- I/O helpers


def _read_json(path: Path, kind: str) -> dict[str, Any]:
    """Parse one JSON object, turning any failure into a HarnessError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(
            f"malformed {kind} file {path}: {exc}",
            "delete or regenerate that file by re-running the workflow step that wrote it",
        ) from exc
    if not isinstance(data, dict):
        raise HarnessError(
            f"malformed {kind} file {path}: expected a JSON object, got {type(data).__name__}",
            "delete or regenerate that file by re-running the workflow step that wrote it",
        )
    return data


def _missing_keys(data: dict[str, Any], required: tuple[str, ...], path: Path, kind: str) -> None:
    missing = [k for k in required if k not in data]
    if missing:
        raise HarnessError(
            f"{kind} file {path} lacks required key(s): {', '.join(missing)}",
            "regenerate it with the current workflow (the record schema may have changed)",
        )


def _as_float(value: Any) -> float:
    """Metric values may be null in JSON (e.g. undefined correlation); keep them as NaN."""
    return math.nan if value is None else float(value)


# --------------------------------------------------------------------------- result records


def _flatten_record(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """One record -> one flat row (see load_records for the column rules)."""
    data = check_record(data, path)  # a version-4 record comes back with its interval computed
    metrics, val_metrics, metric = data["metrics"], data["validation_metrics"], data["metric"]

    row: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("metrics", "validation_metrics", "metrics_interval", "knobs", "provenance", "per_example"):
            continue  # per-example arrays stay in the record file: see per_example()
        row[key] = value
    row["operating_point"] = str(data["operating_point"])
    row["knobs_json"] = json.dumps(data.get("knobs") or {}, sort_keys=True)
    for name, value in metrics.items():
        row[f"metric_{name}"] = _as_float(value)
    for name, (low, high) in (data.get("metrics_interval") or {}).items():
        row[f"metric_{name}_low"], row[f"metric_{name}_high"] = _as_float(low), _as_float(high)
    for name, value in val_metrics.items():
        row[f"val_{name}"] = _as_float(value)
    row["primary_value"] = _as_float(metrics[metric])
    row["val_primary_value"] = _as_float(val_metrics.get(metric))
    prov = data.get("provenance") or {}
    row["provenance_git_commit"] = prov.get("git_commit")
    row["provenance_config_hash"] = prov.get("config_hash")
    row["record_path"] = str(path)
    return row


def load_records(results_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Read every `<results_dir>/records/**/*.json` into one DataFrame, one row per file.

    Column rules: `metrics` -> `metric_<name>`, `metrics_interval` -> `metric_<name>_low` /
    `metric_<name>_high` (the record's bootstrap interval), `validation_metrics` -> `val_<name>`,
    `primary_value` / `val_primary_value` hold the primary metric, `knobs` is kept
    as a sorted-key JSON string `knobs_json` (so rows stay hashable and CSV-safe),
    and of `provenance` only `provenance_git_commit` and `provenance_config_hash`
    survive (the rest is bulky and belongs in the record, not the summary).
    `record_path` says which file a row came from. Raises HarnessError when no
    records exist, a file is malformed, or two files claim the same
    (task, method, operating_point, protocol, precision) and training seed. Records of
    several training seeds give one row each (`seed`, `split_seed`);
    `harness.report.seeds.over_seeds` folds them into one row per point.
    """
    records_dir = Path(results_dir) / "records"
    files = sorted(records_dir.rglob("*.json")) if records_dir.is_dir() else []
    if not files:
        raise HarnessError(
            f"no result records were found under {records_dir}",
            "run the workflow first so it writes records/<task>/<method>/seed<s>/<op>/<protocol>[.<precision>].json",
        )
    rows = [_flatten_record(_read_json(f, "result record"), f) for f in files]
    df = pd.DataFrame(rows)
    dup = df.duplicated(KEY_COLUMNS + ["seed"], keep=False)
    if dup.any():
        clash = df.loc[dup, "record_path"].tolist()
        raise HarnessError(
            f"several records share one (task, method, operating_point, protocol, precision, seed): {clash}",
            "remove the stale copies so each run has exactly one record",
        )
    lead = [c for c in _LEAD_COLUMNS if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


def _natural_key(value: Any) -> tuple[Any, ...]:
    """Sort '2' before '10' and 'k=0.5' before 'k=1' (operating points are strings)."""
    parts = re.split(r"(-?\d+(?:\.\d+)?)", str(value))
    return tuple((0, float(p), "") if re.fullmatch(r"-?\d+(?:\.\d+)?", p) else (1, 0.0, p) for p in parts)


def sort_records(df: pd.DataFrame) -> pd.DataFrame:
    """Order rows by task, method, operating_point (natural order), protocol, seed."""
    keys = KEY_COLUMNS + (["seed"] if "seed" in df.columns else [])
    order = sorted(
        range(len(df)),
        key=lambda i: tuple(_natural_key(df.iloc[i][c]) for c in keys),
    )
    return df.iloc[order].reset_index(drop=True)


def write_summary_frame(df: pd.DataFrame, out_csv: str | os.PathLike[str]) -> str:
    """Write an already-loaded records frame as the sorted summary CSV (atomically)."""
    out = sort_records(df).copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, (list, dict))).any():
            out[col] = out[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return atomic_write_text(out_csv, out.to_csv(index=False))


# --------------------------------------------------------------------------- length records


def load_length_records(results_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read `<results_dir>/lengths/*.json` keyed by task; {} when there are none.

    Length records are optional for a report (a run may skip the length
    analysis), so absence is not an error; a malformed file is.
    """
    lengths_dir = Path(results_dir) / "lengths"
    if not lengths_dir.is_dir():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(lengths_dir.glob("*.json")):
        data = _read_json(path, "length record")
        _missing_keys(data, REQUIRED_LENGTH_KEYS, path, "length record")
        task = str(data["task"])
        if task in out:
            raise HarnessError(
                f"two length records for task {task!r} under {lengths_dir}",
                "keep exactly one lengths/<task>.json per task",
            )
        out[task] = data
    return out


def per_example(row_or_path) -> pd.DataFrame:
    """The per-example arrays of one record (a `load_records` row or a path).

    Kept out of the summary frame because they are large; length-bucket
    analyses read them from the record file through this.
    """
    path = Path(row_or_path["record_path"] if not isinstance(row_or_path, (str, os.PathLike)) else row_or_path)
    data = _read_json(path, "result record").get("per_example")
    if not data:
        raise HarnessError(f"result record {path} has no per_example data", "regenerate it with the current workflow")
    columns = {k: v for k, v in data.items() if k != "tokens_per_layer"}
    frame = pd.DataFrame(columns)
    if "tokens_per_layer" in data:
        frame["tokens_per_layer"] = data["tokens_per_layer"]
    return frame
