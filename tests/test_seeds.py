"""Two kinds of seed (issue 31, item 1): `split_seed` fixes the data, `seeds` repeats training.

The config and the old `seed` sugar; a run context per training seed (same
splits, other initial weights, its own folders); the plan and the workflow's
dry run with one job per seed; records of two seeds folded into a mean with
an interval over seeds in the tables.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from harness.config import load_config, validate
from harness.errors import HarnessError
from harness.record import SCHEMA_VERSION
from harness.storage import record_path, write_json

from .records import record
from .workflow_run import ROOT, command


def _cfg(tmp_path, *overrides):
    return load_config("smoke", [f"results_dir={tmp_path}/r", f"work_dir={tmp_path}/w", "data_dir=", *overrides])


# --------------------------------------------------------------------------- the config


def test_config_has_a_split_seed_and_a_list_of_training_seeds(tmp_path):
    cfg = _cfg(tmp_path)  # the smoke profile: seed 0, and dense and LTP at a second seed too
    assert (cfg["split_seed"], cfg["seeds"]) == (0, [0]) and "seed" not in cfg
    assert cfg["method_seeds"] == {"dense": [0, 1], "ltp": [0, 1]}
    defaults = validate({k: v for k, v in cfg.items() if k not in ("split_seed", "seeds")})
    assert (defaults["split_seed"], defaults["seeds"]) == (0, [0])  # the schema's defaults
    cfg = _cfg(tmp_path, "split_seed=4", "seeds=[0, 1, 2]")
    assert (cfg["split_seed"], cfg["seeds"]) == (4, [0, 1, 2])
    assert validate(json.loads(json.dumps(cfg))) == cfg  # the resolved config the jobs read validates as it is
    # as Snakemake's --config hands them over: strings
    cfg = validate({**cfg, "seeds": ["0", "3"]})
    assert cfg["seeds"] == [0, 3]
    assert validate({**cfg, "seeds": "[5, 6]"})["seeds"] == [5, 6]
    for bad in ("seeds=[]", "seeds=[1, 1]", "seeds=[-1]", "split_seed=-2"):
        with pytest.raises(HarnessError, match="invalid config value"):
            _cfg(tmp_path, bad)


def test_the_old_seed_means_split_seed_and_one_training_seed(tmp_path):
    old = {k: v for k, v in _cfg(tmp_path).items() if k not in ("split_seed", "seeds")}  # a config of before
    cfg = validate({**old, "seed": 3})
    assert (cfg["split_seed"], cfg["seeds"]) == (3, [3]) and "seed" not in cfg
    with pytest.raises(HarnessError, match="deprecated `seed`") as err:
        validate({**old, "seed": 3, "seeds": [0, 1]})
    assert "split_seed" in err.value.fix
    with pytest.raises(HarnessError, match="deprecated `seed`"):  # the smoke profile sets both new keys
        _cfg(tmp_path, "seed=3")
    with pytest.raises(HarnessError, match="invalid config value at seed"):
        validate({**old, "seed": -1})


# --------------------------------------------------------------------------- a job per training seed


def test_training_seeds_share_the_splits_and_differ_in_initial_weights(tmp_path):
    from harness.run.context import RunContext

    cfg = _cfg(tmp_path, "seeds=[0, 1]")
    a, b, again = RunContext(cfg, "mr", "dense", 0), RunContext(cfg, "mr", "dense", 1), RunContext(cfg, "mr", "dense")
    assert again.seed == 0  # the first of the config's seeds
    for split in ("train", "validation", "eval"):
        ea, eb = getattr(a.data, split), getattr(b.data, split)
        assert ea and [(e.text_a, e.text_b, e.label) for e in ea] == [(e.text_a, e.text_b, e.label) for e in eb], split
    wa, wb, w0 = (c.new_model().state_dict() for c in (a, b, again))
    assert all(torch.equal(wa[k], w0[k]) for k in wa)  # same seed, same weights
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)  # another training seed, other weights
    assert a.train_config().seed == 0 and b.train_config().seed == 1  # data order and dropout
    # nothing on disk is shared: models, the models a method starts from, resume files and their keys
    assert a.model_dir().name == "seed0" and b.model_dir().name == "seed1"
    assert b.model_dir("cofi") == tmp_path / "w" / "models" / "mr" / "cofi" / "seed1"
    assert a.resume_dir != b.resume_dir and a.resume_key != b.resume_key
    # another split_seed is another eval set
    other = RunContext(_cfg(tmp_path, "split_seed=1"), "mr", "dense")
    assert [e.text_a for e in other.data.eval] != [e.text_a for e in a.data.eval]
    with pytest.raises(HarnessError, match="training seed 7 is not one of the config's seeds"):
        RunContext(cfg, "mr", "dense", 7)


def test_the_plan_has_every_train_and_evaluate_job_per_seed_from_the_same_seeds_models(tmp_path):
    from harness.run import plan

    one, two = _cfg(tmp_path, "seeds=[0]", "method_seeds={}"), _cfg(tmp_path, "seeds=[0, 1]", "method_seeds={}")
    m1, m2 = plan.all_manifests(one), plan.all_manifests(two)
    assert len(m2) == 2 * len(m1) and all("/seed0.json" in m for m in m1)
    assert {m.replace("/seed1.json", "/seed0.json") for m in m2} == set(m1)
    needs = plan.required_models(two, "mr", "infor_coef", 1)
    assert any("/cofi/seed1/" in p for p in needs) and all("/seed1/" in p for p in needs)
    assert all("/seed1/" in p for p in plan.evaluate_inputs(two, "mr", "ltp", 1))
    assert all("/seed1/points/" in p for p in plan.point_files(two, "mr", "ltp", 1))


def test_method_seeds_repeat_only_the_named_methods(tmp_path):
    """`method_seeds: {dense: [0, 1, 2]}` (the claims profile's training-noise floor): dense's evaluate jobs
    at three seeds, every other method at the config's seeds only; a job of dense at seed 2 is valid; a
    misspelled method is one clear error."""
    from harness.run import plan
    from harness.run.context import RunContext

    cfg = _cfg(tmp_path, "seeds=[0]", "method_seeds={dense: [0, 1, 2]}")
    manifests = [m.split("/")[-3:] for m in plan.all_manifests(cfg)]  # <task>/<method>/seed<s>.json
    assert sorted(s for t, m, s in manifests if (t, m) == ("mr", "dense")) == ["seed0.json", "seed1.json", "seed2.json"]
    assert {s for t, m, s in manifests if m != "dense"} == {"seed0.json"}
    assert plan.seeds(cfg, "dense") == [0, 1, 2] and plan.seeds(cfg, "ltp") == [0] and plan.all_seeds(cfg) == [0, 1, 2]
    assert RunContext(cfg, "mr", "dense", 2).seed == 2 and RunContext(cfg, "mr", "dense").seed == 0
    with pytest.raises(HarnessError, match="training seed 3 is not one of the config's seeds"):
        RunContext(cfg, "mr", "dense", 3)
    with pytest.raises(HarnessError, match=r"method_seeds names \['dens'\], which is not a method or variant"):
        plan.check_method_seeds({**cfg, "method_seeds": {"dens": [1]}}, plan.resolve_methods(cfg))
    with pytest.raises(HarnessError, match="invalid config value"):
        _cfg(tmp_path, "method_seeds={dense: []}")


def test_timing_seeds_times_only_the_named_training_seeds(smoke_context):
    """`timing.seeds: [0]` (the claims profile, whose dense runs at three seeds for its metrics): seed 0's
    records carry a side-by-side timing, seed 1's a null one; a seed no method runs at is one clear error."""
    import shutil

    from harness.run import plan
    from harness.run.context import RunContext
    from harness.run.jobs import evaluate_job

    ctx = smoke_context("dense", ["seeds=[0, 1]", "eval.protocols=[none]", "timing.protocols=[none]",
                                  "timing.batch_sizes=[8]", "timing.seeds=[0]"])
    shutil.copytree(ctx.model_dir("dense"), RunContext(ctx.cfg, "mr", "dense", 1).model_dir("dense"))
    timed = {}
    for seed in (0, 1):
        manifest = json.loads(evaluate_job(ctx.cfg, "mr", "dense", seed).read_text())
        timed[seed] = [json.loads(Path(p).read_text())["timing"] for p in manifest["records"]]
    assert timed[0] and all(t and "8" in t["by_batch_size"] for t in timed[0])
    assert timed[1] and all(t is None for t in timed[1])
    with pytest.raises(HarnessError, match=r"timing.seeds names training seeds \[4\] that no method runs at"):
        plan.check_method_seeds({**ctx.cfg, "timing": {**ctx.cfg["timing"], "seeds": [0, 4]}},
                                plan.resolve_methods(ctx.cfg))


def _job_counts(tmp_path, *config) -> dict[str, int]:
    p = subprocess.run(command(tmp_path, "-n", "--cores", "1", config=config), cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    table = p.stdout.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_the_workflow_dry_run_doubles_train_and_evaluate_jobs_with_two_seeds(tmp_path):
    # (Snakemake merges --config mappings into the profile's: each method_seeds entry is given)
    one = _job_counts(tmp_path, "seeds=[0]", "method_seeds={dense: [0], ltp: [0]}")
    two = _job_counts(tmp_path, "seeds=[0, 1]")  # the profile's method_seeds: dense and LTP at [0, 1]
    for rule in ("train", "train_point", "gather_points", "evaluate"):
        assert one[rule] > 0 and two[rule] == 2 * one[rule], (rule, one, two)
    assert two["lengths"] == one["lengths"] and two["report"] == one["report"] == 1


# --------------------------------------------------------------------------- records and the report


def test_a_version_5_record_is_read_with_its_seed_as_split_seed(tmp_path):
    from harness.report.load import load_records

    rec = record("mr", "dense", "default", "none", metrics={"accuracy": 0.8}, validation_metrics={"accuracy": 0.8},
                 flops=2.0, baseline_flops=2.0, seed=3)
    del rec["split_seed"]
    rec["schema_version"] = 5
    write_json(record_path(tmp_path, "mr", "dense", "default", "none", 3), rec)
    row = load_records(tmp_path).iloc[0]
    assert (row["split_seed"], row["seed"], row["schema_version"]) == (3, 3, SCHEMA_VERSION)


N = 200


def _write_seed(root, seed: int, dense_rate: float, ltp_rate: float):
    """Dense and one LTP point of one training seed on the same N eval examples."""
    rng = np.random.default_rng(100 + seed)
    labels = np.arange(N) % 2
    for method, op, rate, flops in (("dense", "default", dense_rate, 2.0), ("ltp", "lambda=0.1", ltp_rate, 1.0)):
        correct = np.zeros(N, bool)
        correct[rng.permutation(N)[: round(rate * N)]] = True
        preds = np.where(correct, labels, 1 - labels)
        acc = float(correct.mean())
        rec = record("mr", method, op, "none", metrics={"accuracy": acc}, validation_metrics={"accuracy": acc},
                     flops=flops, baseline_flops=2.0, n_eval=N, seed=seed,
                     per_example={"length": list(range(10, 10 + N)), "label": labels, "prediction": preds,
                                  "flops": [flops] * N, "baseline_flops": [2.0] * N, "exit_layer": [2] * N})
        write_json(record_path(root, "mr", method, op, "none", seed), rec)


def test_records_of_two_seeds_give_the_mean_and_an_interval_over_seeds(tmp_path):
    from harness.report.load import load_records
    from harness.report.paper_tables import selected_points_table
    from harness.report.seeds import over_seeds
    from harness.report.tables import baseline_table

    _write_seed(tmp_path / "one", 0, 0.80, 0.78)
    single = over_seeds(load_records(tmp_path / "one"))
    table_one = selected_points_table(single, ["ltp"], tolerance=1.0, protocols=("none",))
    assert not [c for c in table_one.columns if "seed" in c]  # one seed: the table as before
    assert "n_seeds" not in baseline_table(single).columns
    assert table_one.loc[0, "value"] == 78.0

    for seed, (d, l) in enumerate([(0.80, 0.78), (0.84, 0.72)]):
        _write_seed(tmp_path / "two", seed, d, l)
    records = load_records(tmp_path / "two")
    assert len(records) == 4 and sorted(records["seed"]) == [0, 0, 1, 1] and set(records["split_seed"]) == {0}
    df = over_seeds(records)
    assert len(df) == 2 and set(df["n_seeds"]) == {2}
    t = selected_points_table(df, ["ltp"], tolerance=1.0, protocols=("none",)).iloc[0]
    half = stats.t.ppf(0.975, 1) * np.std([78.0, 72.0], ddof=1) / math.sqrt(2)
    assert t["value"] == pytest.approx(75.0) and t["dense"] == pytest.approx(82.0)
    assert (t["value_seed_low"], t["value_seed_high"]) == pytest.approx((75.0 - half, 75.0 + half), abs=0.01)
    assert t["n_seeds"] == 2 and t["dense_n_seeds"] == 2
    # vs dense: the mean difference, its paired interval over both seeds' records on the same resamples
    assert t["vs_dense"] == pytest.approx(-7.0)
    assert t["vs_dense_low"] < -7.0 < t["vs_dense_high"]
    base = baseline_table(df).iloc[0]
    assert base["eval_value"] == pytest.approx(82.0) and base["n_seeds"] == 2
    assert base["eval_value_seed_low"] < 82.0 < base["eval_value_seed_high"]


def test_two_seeds_whose_eval_examples_differ_cannot_be_paired(tmp_path):
    from harness.report.load import load_records
    from harness.report.paper_tables import selected_points_table
    from harness.report.seeds import over_seeds

    _write_seed(tmp_path, 0, 0.80, 0.78)
    _write_seed(tmp_path, 1, 0.84, 0.72)
    path = record_path(tmp_path, "mr", "ltp", "lambda=0.1", "none", 1)
    rec = json.loads(path.read_text())
    rec["per_example"]["label"] = [1 - y for y in rec["per_example"]["label"]]  # another eval set
    path.write_text(json.dumps(rec))
    with pytest.raises(HarnessError, match="eval examples differ"):
        selected_points_table(over_seeds(load_records(tmp_path)), ["ltp"], tolerance=1.0, protocols=("none",))


def test_the_tradeoff_figure_draws_each_seeds_points_behind_the_mean(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from harness.report.figures import SEED_ALPHA, tradeoff_curves
    from harness.report.load import load_records
    from harness.report.seeds import over_seeds

    for seed, (d, l) in enumerate([(0.80, 0.78), (0.84, 0.72)]):
        _write_seed(tmp_path, seed, d, l)
    records = load_records(tmp_path)
    faint = []
    real = Axes.plot

    def plot(self, *args, **kw):
        if kw.get("alpha") == SEED_ALPHA:
            faint.append(list(args[0]))
        return real(self, *args, **kw)

    monkeypatch.setattr(Axes, "plot", plot)
    tradeoff_curves(over_seeds(records), tmp_path / "f", "none")
    assert not faint  # without the per-seed records: the means alone
    tradeoff_curves(over_seeds(records), tmp_path / "f", "none", per_seed=records)
    assert faint and sorted(faint[0]) == [0.5, 0.5]  # the LTP point of each seed (relative FLOPs 0.5)
