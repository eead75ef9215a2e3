"""Seeded train / validation / eval splits and caps.

Every choice of checkpoint or operating point is made on `validation`, never
on the reported `eval` split. Where the official data has train and an
evaluation set, validation is a seeded slice of train; where only one labelled
split exists, all three are carved from it and the note says so. Caps take a
seeded subsample. NumPy's RandomState stream is frozen, so splits are stable
across NumPy versions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data.tasks import TaskSpec

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


# --------------------------------------------------------------------------- splits


def _perm(n: int, seed: int) -> np.ndarray:
    # RandomState's stream is frozen by NumPy, so splits stay stable across versions.
    return np.random.RandomState(seed).permutation(n)


def _take(examples: list[Example], idx: np.ndarray) -> list[Example]:
    return [examples[i] for i in np.sort(idx)]  # keep file order within a split


def hold_out(train: list[Example], eval_: list[Example], seed: int, fraction: float,
              eval_desc: str) -> tuple[list[Example], list[Example], list[Example], str]:
    perm = _perm(len(train), seed)
    n_val = int(round(fraction * len(train)))
    tr, va = _take(train, perm[n_val:]), _take(train, perm[:n_val])
    note = (f"train = official train minus a seeded {fraction:.0%} held-out validation "
            f"(seed {seed}): {len(tr):,} train / {len(va):,} validation; "
            f"eval = {eval_desc} ({len(eval_):,})")
    return tr, va, eval_, note


def carve(examples: list[Example], seed: int, fraction: float,
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



def cap(items: list, limit: int | None, seed: int) -> list:
    """A seeded subsample of at most `limit` items, in their original order."""
    if limit is None or len(items) <= limit:
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]
