"""The precision axis in the report, from records alone: the record key gains the precision, the
precision kinds (LTP Fig. 7's BOPs trade-off, the survival table) read every precision while every other
kind reads fp32 (or the precision its spec names), and a claim rule can read its method at a precision
(harness/report/precision_tables.py, harness/report/claim_measures.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.claim_spec import check_claims
from harness.errors import HarnessError
from harness.record import check_record
from harness.report.claims import FAILS, HOLDS, judge
from harness.report.experiments import run_experiments
from harness.report.load import load_records
from harness.report.seeds import over_seeds
from harness.storage import record_path, write_json

from .records import record
from .test_experiments import LABELS, LENGTHS, N

ALL = np.ones(N, bool)


def _write(root, method, op, protocol, rel_flops, correct, val_acc, precision="fp32", bits=32, fastest=None,
           wall=None):
    base = 1e6 * LENGTHS.astype(float)
    flops = base * rel_flops
    preds = np.where(correct, LABELS, 1 - LABELS)
    rec = record("mr", method, op, protocol, metrics={"accuracy": float(np.mean(correct))},
                 validation_metrics={"accuracy": val_acc}, flops=flops.mean(), baseline_flops=base.mean(), n_eval=N,
                 wall=wall or {1: 1.0, 32: 1.0}, precision=precision, bits=bits, fastest=fastest,
                 per_example={"length": LENGTHS, "label": LABELS, "prediction": preds, "flops": flops,
                              "baseline_flops": base, "exit_layer": np.full(N, 2)})
    path = record_path(root, "mr", method, op, protocol, 0, precision)
    write_json(path, rec)
    return path


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    some_wrong = np.arange(N) % 8 != 0  # 35 of 40 right
    for p in ("none", "batch"):
        _write(root, "dense", "dense", p, 1.0, ALL, 0.90, fastest={1: ("fp32", 1.0), 32: ("bf16", 0.5)})
        _write(root, "dense", "dense", p, 1.0, ALL, 0.90, "bf16", 16, fastest={1: ("fp32", 0.8), 32: ("bf16", 1.0)},
               wall={1: 0.8, 32: 1.0})
        _write(root, "dense", "dense", p, 1.0, some_wrong, 0.88, "int8", 8, fastest={1: ("fp32", 0.9), 32: ("bf16", 0.7)},
               wall={1: 0.9, 32: 1.0})
        for precision, bits, correct in (("fp32", 32, ALL), ("bf16", 16, np.arange(N) % 4 != 0),
                                         ("int8", 8, some_wrong)):
            _write(root, "ltp", "a", p, 0.3, correct, 0.80, precision, bits)  # too inaccurate on validation
            _write(root, "ltp", "b", p, 0.5, correct, 0.895, precision, bits,
                   fastest={1: ("fp32", 1.5), 32: ("bf16", 0.9)}, wall={1: 1.5, 32: 1.8})
    return root


def test_records_of_each_precision_are_their_own_rows_and_paths(results):
    df = load_records(results)
    assert sorted(df["precision"].unique()) == ["bf16", "fp32", "int8"]
    assert len(df) == 2 * 3 * 3  # (dense, ltp a, ltp b) x protocols x precisions
    assert (results / "records/mr/ltp/seed0/b/batch.json").is_file()
    assert (results / "records/mr/ltp/seed0/b/batch.int8.json").is_file()
    assert len(over_seeds(df)) == len(df)  # the precision is part of the key


def test_a_version_6_record_is_read_as_fp32_with_bops_from_its_macs(results):
    path = results / "records/mr/ltp/seed0/b/none.json"
    data = json.loads(path.read_text())
    for key in ("precision", "bops_per_example", "baseline_bops_per_example", "relative_bops",
                "wallclock_speedup_vs_fastest_dense", "kernels"):
        del data[key]
    data["schema_version"] = 6
    read = check_record(data, path)
    assert read["precision"] == "fp32" and read["schema_version"] == 7
    assert read["bops_per_example"] == pytest.approx(1024 * data["macs_per_example"])
    assert read["relative_bops"] == pytest.approx(data["relative_flops"])
    bad = {**json.loads(path.read_text()), "precision": "int4"}
    with pytest.raises(HarnessError, match="precision 'int4'"):
        check_record(bad, path)


def test_bops_tradeoff_and_survival_read_every_precision_the_rest_fp32(results, tmp_path):
    every = over_seeds(load_records(results))
    experiments = {"fig7": {"kind": "bops_tradeoff", "methods": ["ltp"], "protocol": "none"},
                   "survival": {"kind": "precision_survival", "methods": ["ltp"], "protocol": "batch"},
                   "table1": {"kind": "selected_points", "methods": ["ltp"], "tolerance": 0.01},
                   "table1_int8": {"kind": "selected_points", "methods": ["ltp"], "tolerance": 0.01,
                                   "precision": "int8"}}
    written = run_experiments(every, experiments, ["dense", "ltp"], results, tmp_path / "figures")
    assert any(p.endswith("fig7.png") for p in written)
    import pandas as pd

    fig7 = pd.read_csv(results / "tables/fig7.csv")
    assert len(fig7) == 3 * 3  # dense, ltp a, ltp b at three precisions, under none
    int8 = fig7[(fig7["method"] == "ltp") & (fig7["precision"] == "int8")]
    assert np.allclose(int8["relative_bops"], int8["relative_flops"] * 64 / 1024)
    survival = pd.read_csv(results / "tables/survival.csv")
    from harness.report.precision_tables import precision_survival

    # a method without records on the task (a task_methods profile) adds no row and breaks nothing
    assert len(precision_survival(every, ["ltp", "absent"], {"protocol": "batch"})) == len(survival)
    # dense and ltp's timed point (b), each at three precisions
    assert list(survival["method"]) == ["dense"] * 3 + ["ltp"] * 3
    assert list(survival["precision"]) == ["fp32", "bf16", "int8"] * 2
    ltp8 = survival[(survival["method"] == "ltp") & (survival["precision"] == "int8")].iloc[0]
    assert ltp8["fastest_bs32"] == pytest.approx(0.9) and ltp8["fastest_bs32_dense"] == "bf16"
    assert ltp8["vs_fp32_dense"] == pytest.approx(-12.5)  # 35 of 40 right against 40 of 40
    assert ltp8["vs_fp32_dense_low"] < -12.5 < ltp8["vs_fp32_dense_high"] + 1e-9
    # every other kind: fp32 unless its spec names a precision
    t1 = pd.read_csv(results / "tables/table1.csv")
    t8 = pd.read_csv(results / "tables/table1_int8.csv")
    # fp32: b is right everywhere (dense fp32 too); at int8 it gets 35 of 40, against dense at int8 (35 of 40)
    assert (t1.loc[0, "value"], t1.loc[0, "dense"], t1.loc[0, "operating_point"]) == (100.0, 100.0, "b")
    assert (t8.loc[0, "value"], t8.loc[0, "dense"]) == (87.5, 87.5)


def test_a_claim_reads_its_method_at_the_rule_precision_against_fp32_dense(results):
    rule = {"measure": "metric_vs_dense", "method": "ltp", "precision": "int8", "tolerance": 0.01,
            "protocol": "none", "at_least": -25.0}
    check_claims({"claims": [{"id": "x", "rule": rule}]}, "test")
    df = over_seeds(load_records(results))
    verdict, ours, _ = judge(df, "mr", rule, results)
    assert verdict == HOLDS and ours.startswith("metric_vs_dense = -12.5") and "in int8" in ours
    assert judge(df, "mr", {**rule, "at_least": -1.0}, results)[0] == FAILS
    # the same rule at fp32: b is as right as dense
    verdict, ours, _ = judge(df, "mr", {**rule, "precision": "fp32", "at_least": -1.0}, results)
    assert verdict == HOLDS and ours.startswith("metric_vs_dense = 0")
    with pytest.raises(HarnessError, match="precision: 'int4'"):
        check_claims({"claims": [{"id": "x", "rule": {**rule, "precision": "int4"}}]}, "test")
