"""The smoke profile runs the whole DAG; records, tables and figures follow.

Also: a second run does nothing, the `figures` target rebuilds tables and
figures from records alone, and the `paper` profile passes a dry run.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from harness.plugin.registry import method_names
from harness.record import check_record

from .workflow_run import ROOT, records, snakemake


def _smoke_cfg():
    from harness.config import load_config
    return load_config("smoke", [])


def test_every_method_and_protocol_hasrecords(smoke):
    """Every method the profile runs on a task (all of them on MR, `task_methods` on STS-B), under every
    protocol, at each of its training seeds (two for dense and LTP); each record valid and with its provenance."""
    from harness.run.plan import runs_on, seeds

    cfg = _smoke_cfg()
    recs = records(smoke)
    tasks = {r["task"] for r in recs}
    assert "mr" in tasks and seeds(cfg, "dense") == seeds(cfg, "ltp") == [0, 1] and cfg["seeds"] == [0]
    for task in tasks:
        expected = {m for m in method_names() if runs_on(cfg, task, m)}
        assert {r["method"] for r in recs if r["task"] == task} >= expected, task
        for method in {r["method"] for r in recs if r["task"] == task}:
            assert {r["seed"] for r in recs if r["task"] == task and r["method"] == method} == set(seeds(cfg, method))
            for seed in seeds(cfg, method):
                protocols = {r["protocol"] for r in recs
                             if r["task"] == task and r["method"] == method and r["seed"] == seed}
                assert protocols == {"sequence", "batch", "none"}, (task, method, seed)
    if "stsb" in tasks:  # task_methods keeps STS-B to one method per family
        assert {r["method"] for r in recs if r["task"] == "stsb"} == {"dense", "ltp", "cofi", "fastbert"}
    for r in recs:
        check_record(r, f"{r['task']}/{r['method']}/{r['operating_point']}/{r['protocol']}")  # the schema
        assert r["flops_per_example"] == pytest.approx(2 * r["macs_per_example"])
        prov = r["provenance"]
        assert {"git_commit", "git_dirty", "packages", "hardware", "threads", "config_hash", "split_seed",
                "seeds"} <= set(prov)
        assert r["split_seed"] == 0 and r["seed"] in (0, 1)
        low, high = r["metrics_interval"][cfg_primary(r)]  # each record's bootstrap interval over its eval examples
        assert low <= r["metrics"][cfg_primary(r)] <= high


def cfg_primary(r: dict) -> str:
    from harness.data.tasks import get_task
    return get_task(r["task"]).primary_metric


def test_two_seeds_give_a_mean_and_an_interval_over_seeds(smoke):
    """The smoke run's two training seeds (same splits, other weights): the baseline table gives each
    method's mean over both with its t interval and n_seeds 2; the points table the same per point, and
    its paired interval against dense."""
    import pandas as pd

    base = pd.read_csv(smoke / "results" / "tables" / "baseline.csv")
    assert not base.empty and (base["n_seeds"] == 2).all(), base
    both = base.dropna(subset=["eval_value_seed_low", "eval_value_seed_high"])
    assert len(both) == len(base)
    assert ((both["eval_value_seed_low"] <= both["eval_value"] + 1e-9)
            & (both["eval_value"] <= both["eval_value_seed_high"] + 1e-9)).all()
    recs = records(smoke)
    dense = {r["seed"]: r["metrics"]["accuracy"] for r in recs
             if (r["task"], r["method"], r["protocol"]) == ("mr", "dense", "none")}
    assert set(dense) == {0, 1}
    row = base[base["task"] == "mr"]  # one row per task: dense, whose predictions every protocol shares
    assert len(row) == 1 and row["eval_value"].iloc[0] == pytest.approx(100 * (dense[0] + dense[1]) / 2, abs=0.01)
    points = pd.read_csv(smoke / "results" / "tables" / "selected_points.csv")
    assert {"vs_dense", "vs_dense_low", "vs_dense_high", "n_seeds"} <= set(points.columns)
    assert points["n_seeds"].max() == 2


def test_train_and_evaluate_jobs_record_their_peak_memory(smoke):
    logs = {p.stem for p in (smoke / "work" / "logs").glob("*.log") if p.stem.startswith(("train_", "evaluate_"))}
    bench = {p.stem: p for p in (smoke / "work" / "benchmarks").glob("*.tsv")}
    assert logs and logs == set(bench)  # one benchmark file per train / evaluate job
    for name, path in bench.items():
        row = next(csv.DictReader(path.open(), delimiter="\t"))
        assert float(row["max_rss"]) > 10, name  # MB (sampled): a Python process with torch loaded
        peak = re.findall(r"^peak resident memory: (\d+) MiB$", (smoke / "work" / "logs" / f"{name}.log").read_text(), re.M)
        assert len(peak) == 1 and int(peak[0]) > 100, name  # exact high-water mark, torch alone is more


def test_finished_jobs_leave_no_resume_files(smoke):
    """Training jobs checkpoint their fine-tuning calls (train.checkpoint_minutes) and
    remove the files once their outputs are written: a finished run holds none."""
    assert [p for p in (smoke / "work" / "resume").rglob("*") if p.is_file()] == []


def test_dense_protocols_change_flops_not_predictions(smoke):
    recs = [r for r in records(smoke) if r["method"] == "dense"]
    for task in {r["task"] for r in recs}:
        by = {r["protocol"]: r for r in recs if r["task"] == task}
        assert by["sequence"]["per_example"]["prediction"] == pytest.approx(by["none"]["per_example"]["prediction"], abs=1e-4)
        assert by["batch"]["metrics"] == pytest.approx(by["none"]["metrics"], abs=1e-6)
        f = {p: by[p]["flops_per_example"] for p in by}
        assert f["sequence"] >= f["batch"] >= f["none"] > 0
        for r in by.values():
            assert r["flops_per_example"] == pytest.approx(r["baseline_flops_per_example"])
            assert r["flops_speedup"] == pytest.approx(1.0)


def test_speedups_are_measured_side_by_side(smoke):
    """Every timed record holds both models' timings, round by round; the
    speedup is their median ratio with an interval around it. The dense model
    against itself is measured too (an A/A check of the measurement), not set to 1."""
    timed = [r for r in records(smoke) if r["timing"]]
    assert timed and {r["protocol"] for r in timed} == {"sequence", "batch", "none"}
    for r in timed:
        for bs, t in r["timing"]["by_batch_size"].items():
            ratios = np.asarray(t["dense_s"]) / np.asarray(t["point_s"])
            assert t["speedup"] == pytest.approx(float(np.median(ratios)))
            assert t["speedup_low"] <= t["speedup"] <= t["speedup_high"] and t["rounds"] == len(ratios) >= 3
        assert r["wallclock_speedup"] == r["timing"]["by_batch_size"][str(r["batch_size"])]["speedup"]
    dense = [r for r in timed if r["method"] == "dense"]
    assert dense and all(0.5 < r["wallclock_speedup"] < 2.0 for r in dense)
    # at batch size 1 `batch` and `none` run the same unpadded batches: timed once per point, under the first
    # of the two in eval.protocols
    from harness.config import load_config

    first = next(p for p in load_config("smoke")["eval"]["protocols"] if p in ("batch", "none"))
    pairs = {}
    for r in timed:
        if r["protocol"] in ("batch", "none"):
            pairs.setdefault((r["task"], r["method"], r["seed"], r["operating_point"]), {})[r["protocol"]] = r
    pairs = [p for p in pairs.values() if len(p) == 2]
    assert pairs
    for p in pairs:
        one = {k: p[k]["timing"]["by_batch_size"]["1"] for k in p}
        assert one["batch"]["timed_under"] == one["none"]["timed_under"] == first
        assert one["batch"]["point_s"] == one["none"]["point_s"] and one["batch"]["dense_s"] == one["none"]["dense_s"]


def test_tables_and_figures_exist(smoke):
    results, figures = smoke / "results", smoke / "figures"
    assert (results / "summary.csv").stat().st_size > 0
    for name in ("baseline", "length_stats"):
        for ext in ("csv", "md", "tex"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0
    for ext in ("png", "pdf"):
        assert (figures / f"length_histograms.{ext}").stat().st_size > 1000
    # the experiments the smoke profile declares (LTP and Magic Pyramid tables and figures)
    for name in ("ltp_table1", "selected_points", "ltp_table3_robustness", "wallclock", "mp_table2",
                 "mp_table3_speed", "mp_fig1_buckets", "ltp_fig_a1_selection_cost"):
        assert (results / "tables" / f"{name}.csv").stat().st_size > 0, name
    for name in ("ltp_table3_robustness", "wallclock", "mp_fig1_buckets", "ltp_fig_a2_trajectories"):
        assert (figures / f"{name}.png").stat().st_size > 1000, name


def test_second_run_does_nothing(smoke):
    p = snakemake(smoke)
    assert "Nothing to be done" in p.stdout + p.stderr
    # a config change alone (here: one more experiment setting) retrains nothing
    p = snakemake(smoke, "-n", config=("experiments={wallclock: {kind: wallclock, target: 1.5}}",))
    assert "rule train" not in p.stdout + p.stderr and "rule evaluate" not in p.stdout + p.stderr


def test_figures_target_uses_records_only(smoke):
    table = smoke / "results" / "tables" / "baseline.md"
    table.unlink()
    p = snakemake(smoke, "figures")
    log = p.stdout + p.stderr
    assert table.is_file()
    assert "rule train" not in log and "rule evaluate" not in log


def test_html_report(smoke, tmp_path):
    """`snakemake --report` bundles every declared table and figure into one offline HTML file."""
    html = tmp_path / "report.html"
    snakemake(smoke, "--report", str(html))
    text = html.read_text(errors="replace")
    assert html.stat().st_size > 100_000
    for name in ("baseline", "wallclock", "mp_table2", "tradeoff_none", "length_histograms", "Dense baseline"):
        assert name in text, name


def test_profile_holds_with_config_overrides(tmp_path):
    """`--profile profiles/smoke --config ...` runs the smoke profile, not the default one."""
    p = subprocess.run(["snakemake", "-n", "--nolock", "--profile", "profiles/smoke", "--config", "methods=[dense]",
                        f"work_dir={tmp_path}/w", f"results_dir={tmp_path}/r", f"figures_dir={tmp_path}/f"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    assert cfg["profile"] == "smoke" and cfg["backbone"]["model"] == "random" and cfg["methods"] == ["dense"]
    assert "method=fastbert" not in p.stdout and "method=dense" in p.stdout


def test_lint_is_clean():
    """Snakemake's linter finds nothing but its conda/container recommendation."""
    p = subprocess.run(["snakemake", "--lint", "--config", f"work_dir={ROOT}/work/lint"], cwd=ROOT,
                       capture_output=True, text=True)
    shutil.rmtree(ROOT / "work" / "lint", ignore_errors=True)
    found = [line.strip() for line in (p.stdout + p.stderr).splitlines() if line.strip().startswith("* ")]
    assert found and all(f.startswith("* Specify a conda environment or container") for f in found), found


def test_paper_profile_dry_run():
    p = subprocess.run(["snakemake", "--profile", "profiles/paper", "-n", "--nolock"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "rule train" in p.stdout and "bert-base-uncased" not in p.stderr
