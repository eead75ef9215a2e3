"""Resume files of fine-tuning calls: a retried cluster job continues instead of restarting.

A job killed at a cluster's time limit would otherwise train every stage again
from its start when it is retried. `finetune(resume=<file>)` (`RunContext.finetune`
gives every call of a job its own file) saves its progress to such a file
every `checkpoint_minutes` (and every `checkpoint_every_steps` steps, for
tests), and at once when SIGTERM arrives (a cluster's time limit: the process
then ends as it would have; `SaveOnSigterm`). A file holds the model, the
optimizer, the schedule, every random generator (torch, CUDA, NumPy's global
one, Python's, the loop's shuffling generator with the current epoch's
permutation and position in it), the step, the validation log and the best
checkpoint so far; parameters trained outside the model (`parameters`,
`extra_groups`: CoFi's masks and multipliers, a distiller's map) and the
Python state of the loss's and score's closures (lists, dicts, NumPy and
Python generators: CoFi's step counter and trail, LAT's sub-model sampler,
FastBERT's loss list) go with them. Writes are atomic. A call finds its file
and goes on from it, with the same batches and random draws as an
uninterrupted run (bitwise on CPU; on a GPU as far as its kernels are
deterministic). When the call ends the file is replaced by its result (the
kept weights, the outside parameters, the closures, the generators and the
log): a retried job's finished calls return at once with exactly that, so its
later stages start from the same weights.

A file counts only for a call with the same description, job config
(`resume_key`), settings, training data and bitwise the same starting weights
(`fingerprint`; else it is ignored and overwritten): a change of config or of
an earlier stage never resumes stale state, a change of code alone does
(delete `<work_dir>/resume` then). Files hold tensors and plain Python values
only (`torch.load(weights_only=True)`). State a loss keeps in attributes of
objects (not in its closure, parameters or buffers) is not saved: such a loss
must rebuild it from the step.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import random
import signal
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from harness.data.encoding import Encoded
from harness.storage import atomic_output

if TYPE_CHECKING:
    from harness.train.finetune import TrainConfig

VERSION = 1
# settings that change when a file is written, not what training computes
NOT_FINGERPRINTED = ("checkpoint_minutes", "checkpoint_every_steps")


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def fingerprint(desc: str, key: str, cfg: TrainConfig, checkpoint: str, model, outside: list, train: Encoded,
                groups: list) -> dict:
    """What a resume file must match: the call's description, the caller's
    key (RunContext: a hash of the job's config), training settings,
    checkpoint policy, optimizer groups, training data, and a hash of the
    starting weights (model and outside parameters)."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in model.state_dict().items():
        h.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        h.update(_tensor_bytes(value))
    for value in outside:
        h.update(f"{tuple(value.shape)}:{value.dtype}".encode())
        h.update(_tensor_bytes(value))
    d = hashlib.blake2b(digest_size=16)
    d.update(np.asarray(train.labels).tobytes())
    for row in train.input_ids:
        d.update(np.asarray(row, dtype=np.int64).tobytes())
    for row in train.token_type_ids:
        d.update(np.asarray(row, dtype=np.int8).tobytes())
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_FINGERPRINTED}
    return {"version": VERSION, "desc": desc, "key": key, "cfg": repr(sorted(settings.items())),
            "checkpoint": checkpoint, "groups": list(groups), "n_train": len(train),
            "weights": h.hexdigest(), "data": d.hexdigest()}


def rng_state() -> dict:
    """The global generators (torch, CUDA, NumPy's, Python's) as tensors and plain values."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": (list(torch.cuda.get_rng_state_all())
                 if torch.cuda.is_available() and torch.cuda.is_initialized() else []),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Put the global generators back where `rng_state` found them."""
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    random.setstate(state["python"])


def _plain(x) -> bool:
    """Only Python scalars, strings and None in lists, tuples and dicts: what
    torch.load(weights_only=True) reads back as it was."""
    if x is None or type(x) in (bool, int, float, str):
        return True
    if type(x) in (list, tuple):
        return all(_plain(v) for v in x)
    if type(x) is dict:
        return all(type(k) in (str, int) and _plain(v) for k, v in x.items())
    return False


def to_python(x):
    """`x` with NumPy scalars and arrays as Python values (for a log kept in a resume file)."""
    if isinstance(x, dict):
        return {k: to_python(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(to_python(v) for v in x)
    if isinstance(x, list):
        return [to_python(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_python(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def _closure_cells(fns: dict) -> list[tuple[str, object]]:
    """(path, object) of the mutable state in the closures of `fns` (and of the
    functions they close over): lists and dicts of plain values, NumPy and
    Python generators. Paths are variable names, the same in every run."""
    out, seen = [], set()

    def walk(fn, prefix: str) -> None:
        code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
        if code is None or not cells or id(fn) in seen:
            return
        seen.add(id(fn))
        for name, cell in zip(code.co_freevars, cells):
            try:
                value = cell.cell_contents
            except ValueError:  # not yet assigned
                continue
            path = f"{prefix}.{name}"
            if callable(value) and hasattr(value, "__code__"):
                walk(value, path)
            elif id(value) not in seen and (isinstance(value, (np.random.Generator, random.Random))
                                            or (type(value) in (list, dict) and _plain(value))):
                seen.add(id(value))
                out.append((path, value))

    for prefix, fn in fns.items():
        if fn is not None:
            walk(fn, prefix)
    return out


def closure_state(fns: dict) -> dict:
    """The closures' mutable state (`_closure_cells`) by path, copied."""
    state = {}
    for path, value in _closure_cells(fns):
        if isinstance(value, np.random.Generator):
            state[path] = {"numpy_generator": value.bit_generator.state}
        elif isinstance(value, random.Random):
            state[path] = {"python_random": value.getstate()}
        else:
            state[path] = {"data": copy.deepcopy(value)}
    return state


def restore_closures(fns: dict, state: dict) -> None:
    """Put `closure_state`'s values back into the same objects of `fns`' closures."""
    for path, value in _closure_cells(fns):
        if path not in state:
            continue
        saved = state[path]
        if isinstance(value, np.random.Generator):
            value.bit_generator.state = saved["numpy_generator"]
        elif isinstance(value, random.Random):
            value.setstate(saved["python_random"])
        elif type(value) is list:
            value[:] = copy.deepcopy(saved["data"])
        else:
            value.clear()
            value.update(copy.deepcopy(saved["data"]))


def _fits(model, state: dict) -> bool:
    own = model.state_dict()
    return own.keys() == state.keys() and all(own[k].shape == state[k].shape for k in own)


class ResumeFile:
    """One fine-tuning call's resume file, with what every save holds beside
    the loop's own state: the fingerprint, the model, the outside parameters,
    the closures' state and the global generators."""

    def __init__(self, path: str | Path, fingerprint: dict, model, outside: list, closures: dict):
        self.path, self.fingerprint = Path(path), fingerprint
        self.model, self.outside, self.closures = model, outside, closures

    def read(self) -> dict | None:
        """The saved state if the file belongs to this call (its fingerprint, the
        model's shapes), else None (with a warning where there was a file)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged file only costs the restart
            return self._ignored(f"is unreadable ({e})")
        if state.get("fingerprint") != self.fingerprint:
            return self._ignored("belongs to other settings, data or starting weights")
        if not _fits(self.model, state["model"]):  # a stage that changed the model's structure
            return self._ignored("holds weights of another shape")
        return state

    def _ignored(self, why: str) -> None:
        warnings.warn(f"resume file {self.path} {why}; training this stage from its start")
        return None

    def restore(self, state: dict) -> None:
        """Load the model, the outside parameters, the closures and the global generators from `state`."""
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            for p, value in zip(self.outside, state["outside"]):
                p.copy_(value)
        restore_closures(self.closures, state["closures"])
        set_rng_state(state["rng"])

    def write(self, done: bool, **state) -> None:
        """Atomically save `state` (the loop's progress, or with `done` its result)
        with the fingerprint, model, outside parameters, closures and generators."""
        with atomic_output(self.path) as tmp:
            torch.save({"fingerprint": self.fingerprint, "done": done, **state,
                        "model": self.model.state_dict(), "outside": [p.detach() for p in self.outside],
                        "closures": closure_state(self.closures), "rng": rng_state()}, tmp)


class SaveOnSigterm:
    """While a call trains with a resume file: SIGTERM (a cluster's time limit,
    a requeue, a workflow stopping its jobs) lets the step end and the state be
    saved, then takes its course (the default ends the process; a Python
    handler that was installed before gets it). Main thread only; not where
    SIGTERM is ignored."""

    def __init__(self, active: bool):
        self.requested = False
        self.old = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        self.active = active and (self.old is signal.SIG_DFL or callable(self.old))

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> SaveOnSigterm:
        if self.active:
            signal.signal(signal.SIGTERM, self._handler)
        return self

    def deliver(self) -> None:
        self.requested = False
        if callable(self.old):  # e.g. one that raises: it propagates from here
            self.old(signal.SIGTERM, None)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the process ends here

    def __exit__(self, *exc) -> None:
        if self.active:  # one that arrives after the last step is delivered once the result is saved
            signal.signal(signal.SIGTERM, self.old)
