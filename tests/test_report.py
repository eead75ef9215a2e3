"""Report layer: records -> summary, tables, length statistics and figures.

Fixture records are written to tmp_path: two tasks (rte: accuracy, stsb:
pearson), the dense baseline under all three protocols and one pruning method
("ltp") at two operating points under two protocols.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.record import SCHEMA_VERSION
from harness.data.lengths import kl_divergence, length_stats
from harness.report.load import load_length_records, load_records, write_summary_frame
from harness.report.build import build_report, planned_outputs
from harness.report.tables import baseline_table, length_table, write_table
from harness.pareto import pareto_front
from harness.report.figures import length_histograms, tradeoff_curves

from .records import record

TASKS = {"rte": "accuracy", "stsb": "pearson"}
DENSE_FLOPS = {"sequence": 11.5e9, "batch": 22.4e9, "none": 9.75e9}
DENSE_LATENCY = {"sequence": 10.5, "batch": 31.25, "none": 8.0}
DENSE_THROUGHPUT = {"sequence": 95.0, "batch": 410.0, "none": 120.0}
DENSE_VALUE = {"rte": 0.6534, "stsb": 0.8812}
LTP_OPS = {"0.01": (0.55, -0.004), "0.05": (0.40, -0.021)}  # op -> (relative flops, metric delta)
N_EVAL = {"rte": 277, "stsb": 1500}


def _record(task: str, method: str, op: str, protocol: str, rel: float, value: float) -> dict[str, Any]:
    metric = TASKS[task]
    base = DENSE_FLOPS[protocol]
    other = "spearman" if metric == "pearson" else "f1"
    rec = record(
        task, method, op, protocol, metric=metric,
        metrics={metric: value, other: value - 0.01},
        validation_metrics={metric: value + 0.002, other: value - 0.008},
        flops=base * rel, baseline_flops=base, n_eval=N_EVAL[task],
        knobs={"threshold": float(op)} if method != "dense" else {},
        latency_ms=DENSE_LATENCY[protocol] * rel, throughput=DENSE_THROUGHPUT[protocol] / rel,
        batch_size=1 if protocol == "sequence" else 32,
    )
    rec["tokens_per_layer"] = [60.0 * rel] * 12
    return rec


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for task in TASKS:
        for protocol in DENSE_FLOPS:
            rec = _record(task, "dense", "default", protocol, 1.0, DENSE_VALUE[task])
            _write(root / "records" / task / "dense" / "default" / f"{protocol}.json", rec)
        for op, (rel, delta) in LTP_OPS.items():
            for protocol in ("sequence", "batch"):
                rec = _record(task, "ltp", op, protocol, rel, DENSE_VALUE[task] + delta)
                _write(root / "records" / task / "ltp" / op / f"{protocol}.json", rec)
    rng = np.random.default_rng(0)
    for task, bins in (("rte", 20), ("stsb", 50)):
        train = rng.poisson(60, 400).astype(int) + 2
        eval_ = rng.poisson(70, 150).astype(int) + 2
        _write(
            root / "lengths" / f"{task}.json",
            {
                "task": task,
                "tokenizer": "bert-base-uncased",
                "hist_bins": bins,
                "train_lengths": train.tolist(),
                "eval_lengths": eval_.tolist(),
                "provenance": {"git_commit": "abc123"},
            },
        )
    return root


# --------------------------------------------------------------------------- records


def test_load_records_rows_and_flattened_columns(results_dir: Path) -> None:
    df = load_records(results_dir)
    assert len(df) == 2 * (3 + 2 * 2)
    for col in ("metric_accuracy", "metric_f1", "val_accuracy", "metric_pearson", "val_spearman",
                "primary_value", "val_primary_value", "knobs_json",
                "provenance_git_commit", "provenance_config_hash"):
        assert col in df.columns, col
    for col in ("metrics", "validation_metrics", "knobs", "provenance"):
        assert col not in df.columns
    row = df[(df.task == "rte") & (df.method == "ltp") & (df.operating_point == "0.05")
             & (df.protocol == "batch")].iloc[0]
    assert row["primary_value"] == pytest.approx(0.6534 - 0.021)
    assert row["val_primary_value"] == pytest.approx(0.6534 - 0.021 + 0.002)
    assert row["metric_f1"] == pytest.approx(0.6534 - 0.021 - 0.01)
    assert json.loads(row["knobs_json"]) == {"threshold": 0.05}
    assert row["provenance_config_hash"] == "cfg42"
    stsb = df[(df.task == "stsb") & (df.method == "dense") & (df.protocol == "none")].iloc[0]
    assert stsb["primary_value"] == pytest.approx(0.8812)
    assert math.isnan(stsb["metric_accuracy"])  # other task's metric is absent, not zero


def test_write_summary_sorted(results_dir: Path, tmp_path: Path) -> None:
    out = write_summary_frame(load_records(results_dir), tmp_path / "summary.csv")  # as build_report writes it
    summary = pd.read_csv(out, dtype={"operating_point": str})
    assert len(summary) == 14
    keys = list(zip(summary.task, summary.method, summary.operating_point, summary.protocol))
    assert keys[:5] == [
        ("rte", "dense", "default", "batch"),
        ("rte", "dense", "default", "none"),
        ("rte", "dense", "default", "sequence"),
        ("rte", "ltp", "0.01", "batch"),
        ("rte", "ltp", "0.01", "sequence"),
    ]
    assert keys[-1] == ("stsb", "ltp", "0.05", "sequence")
    assert json.loads(summary["tokens_per_layer"].iloc[0]) == [60.0] * 12


def test_missing_records_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as err:
        load_records(tmp_path / "nowhere")
    assert "no result records were found" in err.value.problem
    assert str(tmp_path / "nowhere" / "records") in err.value.problem
    assert "run the workflow" in err.value.fix


def test_empty_records_dir_raises(tmp_path: Path) -> None:
    (tmp_path / "records").mkdir()
    with pytest.raises(HarnessError, match="no result records"):
        load_records(tmp_path)


def test_malformed_json_names_file(results_dir: Path) -> None:
    bad = results_dir / "records" / "rte" / "ltp" / "0.01" / "sequence.json"
    bad.write_text('{"method": "ltp", ')
    with pytest.raises(HarnessError) as err:
        load_records(results_dir)
    assert str(bad) in err.value.problem
    assert "malformed" in err.value.problem


def test_record_missing_primary_metric_raises(results_dir: Path) -> None:
    path = results_dir / "records" / "rte" / "dense" / "default" / "batch.json"
    rec = json.loads(path.read_text())
    rec["metric"] = "matthews"
    path.write_text(json.dumps(rec))
    with pytest.raises(HarnessError, match="matthews"):
        load_records(results_dir)


def test_load_length_records(results_dir: Path, tmp_path: Path) -> None:
    lengths = load_length_records(results_dir)
    assert sorted(lengths) == ["rte", "stsb"]
    assert lengths["rte"]["hist_bins"] == 20
    assert load_length_records(tmp_path / "nothing") == {}


# --------------------------------------------------------------------------- tables


def test_baseline_table_values(results_dir: Path) -> None:
    table = baseline_table(load_records(results_dir))
    assert list(table.task) == ["rte", "stsb"]
    rte = table.set_index("task").loc["rte"]
    assert rte["metric"] == "accuracy"
    assert rte["eval_value"] == 65.34
    assert rte["n_eval"] == 277
    for p in DENSE_FLOPS:
        assert rte[f"gflops_{p}"] == pytest.approx(DENSE_FLOPS[p] / 1e9)
        assert rte[f"latency_ms_{p}"] == pytest.approx(DENSE_LATENCY[p])
        assert rte[f"throughput_{p}"] == pytest.approx(DENSE_THROUGHPUT[p])
    stsb = table.set_index("task").loc["stsb"]
    assert stsb["metric"] == "pearson" and stsb["eval_value"] == 88.12
    assert "Pearson" in table.attrs["note"]


def test_write_table_formats(results_dir: Path) -> None:
    table = baseline_table(load_records(results_dir))
    paths = write_table(table, results_dir, "baseline")
    assert [Path(p).name for p in paths] == ["baseline.csv", "baseline.md", "baseline.tex"]
    csv = pd.read_csv(paths[0])
    assert csv["gflops_batch"].tolist() == pytest.approx([22.4, 22.4])
    md = Path(paths[1]).read_text()
    assert "| rte" in md and "65.34" in md and "*Note:*" in md
    tex = Path(paths[2]).read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "gflops\\_sequence" in tex  # underscores escaped
    assert "11.500" in tex
    assert not list((results_dir / "tables").glob(".*.tmp"))


def test_length_stats_hand_built() -> None:
    train = list(range(1, 101))
    same = length_stats({"task": "t", "hist_bins": 20, "train_lengths": train, "eval_lengths": train})
    assert (same["train_q1"], same["train_q2"], same["train_q3"]) == (25.75, 50.5, 75.25)
    assert same["train_p99"] == pytest.approx(99.01)
    assert same["train_mean"] == 50.5
    assert same["kl"] == 0.0
    shifted = length_stats(
        {"task": "t", "hist_bins": 20, "train_lengths": train, "eval_lengths": [x + 50 for x in train]}
    )
    assert (shifted["eval_q1"], shifted["eval_q2"], shifted["eval_q3"]) == (75.75, 100.5, 125.25)
    assert shifted["kl"] > 1.0  # half the train mass lies where eval has only pseudo-counts
    assert math.isfinite(shifted["kl"])


def test_kl_known_value() -> None:
    # 2 bins over [0, 1], counts [2, 2] and [3, 1] plus 1/2 each: p = [.5, .5], q = [.7, .3]
    expected = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)
    assert kl_divergence([0, 0, 1, 1], [0, 0, 0, 1], 2) == pytest.approx(expected, rel=1e-9)


def test_kl_is_stable_for_a_small_eval_set() -> None:
    # one distribution, MRPC's sizes: the estimate stays at the sampling-noise level
    # (epsilon smoothing gave 0.14 on MRPC, whose train/dev quartiles agree to one token)
    rng = np.random.default_rng(0)
    train, eval_ = rng.normal(54, 14, 3300).round(), rng.normal(54, 14, 408).round()
    stats = length_stats({"task": "t", "hist_bins": 20, "train_lengths": train, "eval_lengths": eval_})
    assert stats["kl_floor"] == pytest.approx(19 / 2 * (1 / 3300 + 1 / 408), rel=0.2)
    assert stats["kl"] < 2 * stats["kl_floor"] < 0.06
    # a real shift (SST-2-like: eval twice as long) stands far above the floor
    shifted = length_stats({"task": "t", "hist_bins": 20, "train_lengths": train, "eval_lengths": 2 * eval_})
    assert shifted["kl"] > 20 * shifted["kl_floor"]


def test_length_stats_rejects_bad_bins() -> None:
    with pytest.raises(HarnessError, match="hist_bins"):
        length_stats({"task": "t", "hist_bins": 0, "train_lengths": [1], "eval_lengths": [1]})


def test_length_table(results_dir: Path) -> None:
    lengths = load_length_records(results_dir)
    table = length_table(lengths)
    assert list(table.columns) == ["task", "train_q1", "train_q2", "train_q3", "eval_q1", "eval_q2", "eval_q3",
                                   "kl", "kl_floor", "ltp_kl", "bins", "n_train", "n_eval"]
    rte = table.set_index("task").loc["rte"]
    assert rte["train_q2"] == np.median(lengths["rte"]["train_lengths"])
    assert rte["eval_q3"] == np.percentile(lengths["rte"]["eval_lengths"], 75)
    assert rte["bins"] == 20 and rte["kl"] > 0
    assert rte["ltp_kl"] == 0.0261  # LTP Table 2's RTE value, for comparison


# --------------------------------------------------------------------------- figures and report


def _assert_figure(path: str) -> None:
    data = Path(path).read_bytes()
    assert len(data) > 1000
    magic = b"\x89PNG" if path.endswith(".png") else b"%PDF"
    assert data.startswith(magic)


def test_figures_written(results_dir: Path, tmp_path: Path) -> None:
    figs = tmp_path / "figures"
    paths = length_histograms(load_length_records(results_dir), figs)
    paths += tradeoff_curves(load_records(results_dir), figs, "sequence")
    assert sorted(Path(p).name for p in paths) == [
        "length_histograms.pdf", "length_histograms.png", "tradeoff_sequence.pdf", "tradeoff_sequence.png",
    ]
    for p in paths:
        _assert_figure(p)


def test_tradeoff_unknown_protocol_or_method(results_dir: Path, tmp_path: Path) -> None:
    df = load_records(results_dir)
    with pytest.raises(HarnessError, match="protocol"):
        tradeoff_curves(df[df.protocol != "none"], tmp_path, "none")
    with pytest.raises(HarnessError, match="nosuch"):
        tradeoff_curves(df, tmp_path, "batch", methods=["nosuch"])


def _report_cfg(results_dir: Path, tmp_path: Path, **extra) -> dict:
    return {"results_dir": str(results_dir), "figures_dir": str(tmp_path / "figures"),
            "eval": {"protocols": ["sequence", "batch", "none"]}, **extra}


def test_build_report_writes_exactly_the_planned_outputs(results_dir: Path, tmp_path: Path) -> None:
    cfg = _report_cfg(results_dir, tmp_path, experiments={
        "t1": {"kind": "selected_points", "methods": ["ltp"]},
        "absent": {"kind": "selected_points", "methods": ["fastbert"]},  # not run by this profile: skipped
        "knobs": {"kind": "knob_table", "methods": ["ltp"], "knob": "threshold", "values": [7.0]},  # no data
    })
    paths = build_report(cfg, ["dense", "ltp"])
    assert sorted(paths) == sorted(o.path for o in planned_outputs(cfg, ["dense", "ltp"]))
    names = sorted(Path(p).relative_to(tmp_path).as_posix() for p in paths)
    expected = ["results/summary.csv", "results/results.md", "results/tables/skipped_experiments.txt"]
    expected += [f"results/tables/{t}.{e}" for t in ("dense_floors", "baseline", "unreliable_timings",
                                                      "length_stats", "t1", "knobs")
                 for e in ("csv", "md", "tex")]
    expected += [f"figures/{f}.{e}" for f in ("length_histograms", "tradeoff_sequence",
                                                 "tradeoff_batch", "tradeoff_none") for e in ("png", "pdf")]
    assert names == sorted(expected)
    # the report opens on the dense floors
    assert planned_outputs(cfg, ["dense", "ltp"])[0].path.endswith("results/tables/dense_floors.csv")
    for p in paths:
        if p.endswith((".png", ".pdf")):
            _assert_figure(p)
    assert len(pd.read_csv(results_dir / "summary.csv")) == 14
    assert "absent" in (results_dir / "tables" / "skipped_experiments.txt").read_text()
    assert "no data" in (results_dir / "tables" / "knobs.md").read_text()
    # the results page: every table's Markdown and every figure, as the report wrote them
    page = (results_dir / "results.md").read_text()
    assert page.startswith("# Results: the `unnamed` profile") and "from 14 records" in page
    assert (results_dir / "tables" / "t1.md").read_text().strip() in page
    assert (results_dir / "tables" / "dense_floors.md").read_text().strip() in page
    assert "![tradeoff_none](../figures/tradeoff_none.png)" in page and ".pdf" not in page
    assert page.index("## Dense baseline") < page.index("## t1") and page.count("## Dense baseline") == 1


def test_build_report_needs_the_dense_baseline(results_dir: Path, tmp_path: Path) -> None:
    for f in (results_dir / "records").rglob("dense/**/*.json"):
        f.unlink()
    with pytest.raises(HarnessError, match="dense"):
        build_report(_report_cfg(results_dir, tmp_path), ["dense", "ltp"])
    assert not (results_dir / "summary.csv").exists()


def test_build_report_error_writes_nothing(results_dir: Path, tmp_path: Path) -> None:
    bad = results_dir / "records" / "stsb" / "ltp" / "0.05" / "batch.json"
    bad.write_text("not json")
    with pytest.raises(HarnessError, match=re.escape(str(bad))):
        build_report(_report_cfg(results_dir, tmp_path), ["dense", "ltp"])
    assert not (results_dir / "summary.csv").exists()
    assert not (results_dir / "tables").exists()
    assert not (tmp_path / "figures").exists()


def test_old_schema_record_says_how_to_regenerate(results_dir: Path) -> None:
    path = results_dir / "records" / "rte" / "ltp" / "0.01" / "batch.json"
    rec = json.loads(path.read_text())
    del rec["schema_version"]
    path.write_text(json.dumps(rec))
    with pytest.raises(HarnessError, match=f"schema version 1; this harness reads version {SCHEMA_VERSION}") as e:
        load_records(results_dir)
    assert "--forcerun evaluate" in e.value.fix and str(path) in str(e.value)


def test_pareto_front_joins_undominated_points() -> None:
    # two knob families interleaved in cost: the curve keeps only undominated points
    cost = [0.3, 0.35, 0.45, 0.5, 0.55, 0.7]
    value = [79.5, 75.5, 80.4, 75.5, 81.3, 81.2]
    assert pareto_front(cost, value) == [0, 2, 4]


def test_compare_runs_reports_the_fields_that_differ(results_dir: Path, tmp_path: Path) -> None:
    import shutil

    from harness.report.compare import report

    other = tmp_path / "other"
    shutil.copytree(results_dir, other)
    path = other / "records" / "rte" / "ltp" / "0.01" / "batch.json"
    rec = json.loads(path.read_text())
    rec["timing"] = {"anything": 1}  # measurements may differ between runs
    path.write_text(json.dumps(rec))
    text, same = report(results_dir, other)
    assert same and "14 of 14 records identical" in text
    rec["per_example"]["prediction"][3] = 1 - rec["per_example"]["prediction"][3]
    path.write_text(json.dumps(rec))
    text, same = report(results_dir, other)
    assert not same and ".per_example.prediction" in text and "13 of 14" in text
