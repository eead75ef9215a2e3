"""The smoke profile on SQuAD v1.1: a tiny SQuAD-format file the test writes,
every method, records per question, the exclusions, the SQuAD tables. (v2.0's
path through evaluation is tested in tests/test_squad.py; timing runs under
`none` only here, to keep CI short.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.measure.squad_metrics import squad_metrics
from harness.plugin.registry import get_method, method_names
from harness.record import check_record

from .squad_files import tiny_squad, write_squad_dir
from .workflow_run import snakemake

TASKS = ("squad",)


@pytest.fixture(scope="module")
def squad_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("squad_smoke")
    data = out / "data"
    write_squad_dir(data, "1.1")
    # one training seed: the smoke workflow covers two (tests/test_workflow.py)
    snakemake(out, config=("tasks=[squad]", "optional_tasks=[]", "seeds=[0]", f"data_dir={data}",
                           "timing={protocols: [none], batch_sizes: [1]}"))
    return out


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "results" / "records").rglob("*.json"))]


def _excluded(name: str) -> bool:
    return "span" in get_method(name).cannot_serve


def test_every_span_capable_method_has_records_and_the_others_say_why(squad_smoke):
    recs = _records(squad_smoke)
    for task in TASKS:
        for method in [*method_names(), "lat_no_restore"]:
            base = "lat" if method == "lat_no_restore" else method
            protocols = {r["protocol"] for r in recs if r["task"] == task and r["method"] == method}
            manifest = json.loads((squad_smoke / "results" / "manifests" / task / method / "seed0.json").read_text())
            if _excluded(base):
                assert not protocols and manifest["records"] == [] and "span" in manifest["excluded"], method
            else:
                assert protocols == {"sequence", "batch", "none"}, (task, method)
    for r in recs:
        check_record(r, r["operating_point"])


def test_records_are_per_question_with_the_official_metrics(squad_smoke):
    recs = [r for r in _records(squad_smoke) if r["task"] in TASKS]
    assert {r["task"] for r in recs} == set(TASKS)
    for r in recs:
        per = r["per_example"]
        assert r["n_eval"] == len(per["prediction"]) == len(per["label"]) == 8  # questions (task_caps)
        assert "carved by article" in r["split_note"]
        version = "2.0" if r["task"] == "squad_v2" else "1.1"
        assert squad_metrics(per["prediction"], per["label"], version) == pytest.approx(r["metrics"])
        assert r["flops_per_example"] == pytest.approx(np.mean(per["flops"]))
        if r["task"] == "squad_v2":
            assert {"has_answer_f1", "no_answer_f1"} <= set(r["metrics"])
    # a question's dense FLOPs under `sequence` = its windows x one 384-token window
    dense = next(r for r in recs if r["method"] == "dense" and r["protocol"] == "sequence" and r["task"] == "squad")
    flops = np.asarray(dense["per_example"]["flops"])
    one_window = flops.min()
    windows = flops / one_window
    assert np.allclose(windows, windows.round()) and windows.max() >= 2  # the long paragraphs span windows
    # timings are per window, with the time per question beside them
    timed = [r for r in recs if r["timing"]]
    assert timed and all("point_ms_per_question" in t for r in timed for t in r["timing"]["by_batch_size"].values())


def test_lat_without_restore_cannot_answer_with_dropped_tokens(squad_smoke):
    recs = {(r["method"], r["operating_point"]): r for r in _records(squad_smoke)
            if r["task"] == "squad" and r["protocol"] == "none" and r["method"] in ("lat", "lat_no_restore")}
    assert {m for m, _ in recs} == {"lat", "lat_no_restore"}
    # the same trained models (same seed): identical FLOPs, only the head's view of dropped tokens differs
    for (m, op), r in recs.items():
        if m == "lat_no_restore":
            assert r["flops_per_example"] <= recs[("lat", op)]["flops_per_example"]


def test_squad_tables_and_figures(squad_smoke):
    tables, figures = squad_smoke / "results" / "tables", squad_smoke / "figures"
    t1 = pd.read_csv(tables / "squad_table1.csv")
    assert {"exact_match", "dense_exact_match", "speedup_none", "speedup_batch", "speedup_sequence"} <= set(t1.columns)
    assert set(t1["task"]) == set(TASKS) and "fastbert" not in set(t1["method"])
    restore = pd.read_csv(tables / "squad_restore.csv")
    assert {"lat", "lat_no_restore"} <= set(restore["method"])
    for name in ("squad_fig5", "squad_restore"):
        assert (figures / f"{name}.png").stat().st_size > 1000, name
    fig5 = pd.read_csv(tables / "squad_fig5.csv")
    assert set(fig5["task"]) == {"squad"} and {"ltp", "lat", "power_bert", "cofi"} <= set(fig5["method"])


def test_tiny_file_has_long_paragraphs():
    doc = tiny_squad()
    lengths = [len(p["context"].split()) for a in doc["data"] for p in a["paragraphs"]]
    assert max(lengths) >= 500 and min(lengths) < 100
