"""Checkpoint and resume of the fine-tuning loop (harness/train/finetune.py):
a run killed mid-training and started again from its resume file ends with
exactly the weights, log and closure state of an uninterrupted run; a
finished call returns its stored result without training; stale files are
ignored; RunContext gives each finetune call of a job its own file and
removes them when the job is done."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import harness.train.finetune as ft
from harness.data.encoding import Encoded
from harness.data.tasks import get_task
from harness.model.encoder import BertClassifier, init_weights
from harness.train.finetune import TrainConfig, default_loss, finetune

from .conftest import tiny_shape

TASK = get_task("mr")


class Killed(RuntimeError):
    pass


def _data(n: int, seed: int) -> Encoded:
    rng = np.random.default_rng(seed)
    ids = [[101, *rng.integers(5, 200, int(rng.integers(4, 12))).tolist(), 102] for _ in range(n)]
    return Encoded(ids, [[0] * len(x) for x in ids], rng.integers(0, 2, n).astype(np.int64))


TRAIN, VALIDATION = _data(22, 1), _data(10, 2)


def _model():
    torch.manual_seed(0)
    m = BertClassifier(tiny_shape(), num_labels=2)  # dropout on: the resumed run must draw the same masks
    init_weights(m)
    return m


def _cfg(**kw) -> TrainConfig:
    # 22 examples at batch 4: 6 steps an epoch (the last batch short), 2.5 epochs = 15 steps
    base = dict(epochs=2.5, lr=1e-3, batch_size=4, eval_every=4, checkpoint_minutes=0, checkpoint_every_steps=1)
    base.update(kw)
    return TrainConfig(**base)


class Job:
    """One run of a 'job': the model, an outside parameter trained in an extra
    group, and a loss whose closure keeps a step counter, a trail and a NumPy
    generator (as CoFi's and LAT's losses do)."""

    def __init__(self):
        self.model = _model()
        self.extra = torch.nn.Parameter(torch.zeros(3))
        self.trail = {"step": 0, "noise": []}
        trail, gen, extra, base = self.trail, np.random.default_rng(7), self.extra, default_loss(TASK)

        def loss_fn(model, out, batch):
            trail["step"] += 1
            noise = float(gen.normal())
            trail["noise"].append(round(noise, 6))
            return base(model, out, batch) * (1 + 0.01 * noise) + (extra - trail["step"] / 10).pow(2).sum()

        self.loss_fn = loss_fn

    def run(self, cfg: TrainConfig, resume=None, checkpoint="best") -> dict:
        return finetune(self.model, TASK, TRAIN, VALIDATION, cfg, loss_fn=self.loss_fn, checkpoint=checkpoint,
                        extra_groups=[{"params": [self.extra], "lr": 0.05}], resume=resume, score_fn=_score)


def _score(model) -> float:
    """A validation score that moves with every weight: the log of validation
    entries then tells whether the weights at each evaluation were the same."""
    with torch.no_grad():
        return float(sum(p.double().sum() for p in model.parameters()))


def _kill_after(monkeypatch, steps: int) -> None:
    """The batch of step `steps + 1` raises (as if the job were killed then)."""
    calls = {"n": 0}
    real = ft.collate

    def collate(*a, **kw):
        calls["n"] += 1
        if calls["n"] > steps:
            raise Killed(f"killed before step {calls['n']}")
        return real(*a, **kw)

    monkeypatch.setattr(ft, "collate", collate)


def _same(a: Job, b: Job) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert torch.equal(a.extra, b.extra)
    assert a.trail == b.trail


@pytest.mark.parametrize("policy,every,kill", [("best", 1, 7), ("best", 4, 10), ("best_or_start", 3, 13),
                                               ("last", 5, 5)])
def test_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch, policy, every, kill):
    cfg = _cfg(checkpoint_every_steps=every)
    reference = Job()
    ref_log = reference.run(cfg, checkpoint=policy)
    assert ref_log["steps"] == 15

    path = tmp_path / "resume" / "00-stage.pt"
    killed = Job()
    with monkeypatch.context() as m:
        _kill_after(m, kill)
        with pytest.raises(Killed):
            killed.run(cfg, resume=path, checkpoint=policy)
    saved = torch.load(path, weights_only=True)
    assert not saved["done"] and saved["step"] == kill - kill % every  # the last checkpoint before the kill

    # the retried job: everything built afresh, the same way; training goes on from the file
    retried = Job()
    seen = {"n": 0}
    real = ft.collate

    def counting(*a, **kw):
        seen["n"] += 1
        return real(*a, **kw)

    with monkeypatch.context() as m:
        m.setattr(ft, "collate", counting)
        log = retried.run(cfg, resume=path, checkpoint=policy)
    assert seen["n"] == 15 - saved["step"]  # only the steps after the checkpoint were trained
    _same(retried, reference)
    assert log == ref_log
    assert torch.load(path, weights_only=True)["done"]


def test_sigterm_saves_the_step_then_ends_as_asked(tmp_path, monkeypatch):
    """A cluster's time limit sends SIGTERM: the step under way ends, the state
    is saved, then the signal takes its course (here a handler that raises);
    the retry goes on from that very step."""
    import os
    import signal

    cfg = _cfg(checkpoint_every_steps=0, checkpoint_minutes=30)  # no periodic save in so short a run
    reference = Job()
    ref_log = reference.run(cfg)

    def before(signum, frame):
        raise Killed("SIGTERM")

    old = signal.signal(signal.SIGTERM, before)
    try:
        calls = {"n": 0}
        real = ft.collate

        def collate(*a, **kw):
            calls["n"] += 1
            if calls["n"] == 9:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(*a, **kw)

        path = tmp_path / "00-stage.pt"
        with monkeypatch.context() as m:
            m.setattr(ft, "collate", collate)
            with pytest.raises(Killed):
                Job().run(cfg, resume=path)
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, old)
    assert torch.load(path, weights_only=True)["step"] == 9  # the step under way was finished and saved
    retried = Job()
    assert retried.run(cfg, resume=path) == ref_log
    _same(retried, reference)


def test_finished_call_returns_its_result_without_training(tmp_path, monkeypatch):
    cfg = _cfg(checkpoint_every_steps=0, checkpoint_minutes=30)  # no progress file in so short a run, only the result
    path = tmp_path / "00-stage.pt"
    first = Job()
    log = first.run(cfg, resume=path)
    after_first = torch.get_rng_state()
    assert torch.load(path, weights_only=True)["done"]

    torch.manual_seed(123)  # whatever the generators hold, the skipped call leaves them as training did
    again = Job()
    with monkeypatch.context() as m:
        _kill_after(m, 0)  # any training step would raise
        assert again.run(cfg, resume=path) == log
    _same(again, first)
    assert torch.equal(torch.get_rng_state(), after_first)
    assert not again.model.training


def test_stale_file_is_ignored(tmp_path, monkeypatch):
    cfg = _cfg()
    path = tmp_path / "00-stage.pt"
    with monkeypatch.context() as m:
        _kill_after(m, 6)
        with pytest.raises(Killed):
            Job().run(cfg, resume=path)
    reference = Job()
    ref_log = reference.run(_cfg(lr=5e-4))

    other = Job()  # other settings: the file does not count, training starts over
    with pytest.warns(UserWarning, match="other settings"):
        log = other.run(_cfg(lr=5e-4), resume=path)
    _same(other, reference)
    assert log == ref_log

    moved = Job()  # other starting weights: the same
    with torch.no_grad():
        next(moved.model.parameters()).add_(1e-3)
    with pytest.warns(UserWarning, match="starting weights"):
        moved.run(_cfg(lr=5e-4), resume=path)


def test_checkpointing_off_writes_nothing(tmp_path):
    path = tmp_path / "00-stage.pt"
    Job().run(_cfg(checkpoint_every_steps=0, checkpoint_minutes=0), resume=path)
    Job().run(_cfg(checkpoint_every_steps=0, checkpoint_minutes=None), resume=path)
    assert not path.exists()


def test_run_context_gives_each_call_its_file_and_clears_them(tmp_path, monkeypatch):
    from harness.config import load_config
    from harness.run.context import RunContext

    cfg = load_config("smoke", [f"results_dir={tmp_path}/r", f"work_dir={tmp_path}/w", "data_dir="])
    assert cfg["train"]["checkpoint_minutes"] == 30  # the schema's default
    ctx = RunContext(cfg, "mr", "dense")
    seen = []
    monkeypatch.setattr("harness.run.context.finetune", lambda *a, **kw: seen.append(kw["resume"]) or {})
    monkeypatch.setattr(RunContext, "train_split", TRAIN)
    monkeypatch.setattr(RunContext, "encoded", lambda self, split: VALIDATION)
    ctx.finetune(None, cfg=_cfg())
    ctx.finetune(None, cfg=_cfg(), desc="mr/x soft a=0.5")
    ctx.finetune(None, cfg=_cfg(), desc="mr/x soft a=0.5")
    assert [p.name for p in seen] == ["00-mr_dense.pt", "01-mr_x_soft_a=0.5.pt", "02-mr_x_soft_a=0.5.pt"]
    assert all(p.parent == tmp_path / "w" / "resume" / "mr" / "dense" / "seed0" for p in seen)
    for p in seen[:2]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    cut = seen[0].parent / f".{seen[0].name}.abc123.tmp"  # a write the kill cut short
    cut.write_bytes(b"x")
    other = seen[0].parent / "00-mr_dense_other_point.pt"  # another job's, beside it
    other.write_bytes(b"x")
    ctx.clear_resume()
    assert not any(p.exists() for p in seen) and not cut.exists()
    assert other.exists()


def _without_times(x):
    if isinstance(x, dict):
        return {k: _without_times(v) for k, v in x.items() if "seconds" not in k and k != "provenance"}
    if isinstance(x, list):
        return [_without_times(v) for v in x]
    return x


def test_retried_cofi_point_job_skips_its_pruning_and_resumes_its_finetuning(tmp_path, monkeypatch,
                                                                             _smoke_dense_dir):
    """A real two-stage job (CoFi: pruning with masks, multipliers and a
    distiller outside the model and a step counter in its loss's closure, then
    fine-tuning the materialized model under best_or_start), killed in its
    second stage and retried, ends as the uninterrupted job did; its resume
    files are gone once it is done."""
    import json
    import shutil

    from harness.config import load_config
    from harness.run.jobs import train_point_job

    def cfg_in(root):
        cfg = load_config("smoke", [f"results_dir={root}/r", f"work_dir={root}/w", "data_dir=",
                                    "train.checkpoint_every_steps=1"])
        shutil.copytree(_smoke_dense_dir, root / "w" / "models" / "mr" / "dense" / "seed0", dirs_exist_ok=True)
        return cfg

    point = "sparsity=0.6"  # one of the smoke profile's CoFi points
    calls = {"n": 0, "limit": None}
    real = ft.collate

    def collate(*a, **kw):
        calls["n"] += 1
        if calls["limit"] is not None and calls["n"] > calls["limit"]:
            raise Killed("time limit")
        return real(*a, **kw)

    monkeypatch.setattr(ft, "collate", collate)
    reference = train_point_job(cfg_in(tmp_path / "a"), "mr", "cofi", point)
    total = calls["n"]  # training steps of both stages
    assert total > 4

    cfg = cfg_in(tmp_path / "b")
    calls["n"], calls["limit"] = 0, total - 2  # killed two steps before the end: in the fine-tuning stage
    with pytest.raises(Killed):
        train_point_job(cfg, "mr", "cofi", point)
    resume = tmp_path / "b" / "w" / "resume" / "mr" / "cofi" / "seed0"
    states = {p.name: torch.load(p, weights_only=True) for p in resume.iterdir()}
    assert [s["done"] for _, s in sorted(states.items())] == [True, False]  # prune done, finetune under way

    calls["n"], calls["limit"] = 0, None
    retried = train_point_job(cfg, "mr", "cofi", point)
    assert calls["n"] == 2  # the pruning skipped, the fine-tuning continued from its last step
    assert not list(resume.iterdir())  # the job is done: no checkpoint is left behind

    a, b = json.loads(reference.read_text()), json.loads(retried.read_text())
    assert a["entries"] and a["log"]["prune"]["trail"]["sparsity"]
    assert _without_times(a) == _without_times(b)
    for entry in a["entries"]:
        stem = Path(entry["file"]).stem  # the checkpoint a method's "<name>.pt" is saved as
        ma = load_file(reference.parent.parent / f"{stem}.safetensors")
        mb = load_file(retried.parent.parent / f"{stem}.safetensors")
        assert ma.keys() == mb.keys()
        for k in ma:
            assert torch.equal(ma[k], mb[k]), k


def test_sigterm_with_the_default_handler_ends_the_process_after_saving(tmp_path):
    """As on a cluster: nothing handles SIGTERM, so the process ends by it,
    after the step under way is saved."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "00-stage.pt"
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import harness.train.finetune as ft
from tests.test_resume import Job, _cfg
real, calls = ft.collate, [0]
def collate(*a, **kw):
    calls[0] += 1
    if calls[0] == 5:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*a, **kw)
ft.collate = collate
Job().run(_cfg(checkpoint_every_steps=0, checkpoint_minutes=30), resume={str(path)!r})
print("not ended")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGTERM, run.stderr[-2000:]
    assert "not ended" not in run.stdout
    assert torch.load(path, weights_only=True)["step"] == 5
