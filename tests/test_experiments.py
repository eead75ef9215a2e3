"""The config-driven experiments build the papers' tables/figures from records."""
from __future__ import annotations


import numpy as np
import pytest

from harness.errors import HarnessError

from harness.report.experiments import planned, run_experiments
from harness.report.load import load_records
from harness.storage import record_path, write_json

from .records import record
from harness.report.point_choice import fastest_within

N = 40
LENGTHS = np.arange(10, 10 + N)  # eval lengths 10..49
LABELS = np.arange(N) % 2


def _record(root, method, op, protocol, rel_flops, correct, val_acc, knobs=None, wall=None, sparsity=0.0, seed=0):
    """A synthetic record: `correct` is a boolean mask over the N examples (of training seed `seed`)."""
    base = 1e6 * LENGTHS.astype(float)
    flops = base * rel_flops
    preds = np.where(correct, LABELS, 1 - LABELS)
    rec = record("mr", method, op, protocol, metrics={"accuracy": float(np.mean(correct))},
                 validation_metrics={"accuracy": val_acc}, flops=flops.mean(), baseline_flops=base.mean(), n_eval=N,
                 knobs=knobs, wall=wall or {1: 1.0, 32: 1.0}, sparsity=sparsity,
                 per_example={"length": LENGTHS, "label": LABELS, "prediction": preds, "flops": flops,
                              "baseline_flops": base, "exit_layer": np.full(N, 2),
                              "tokens_per_layer": np.stack([LENGTHS, LENGTHS // 2], 1).tolist()}, seed=seed)
    write_json(record_path(root, "mr", method, op, protocol, seed), rec)


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    allc = np.ones(N, bool)
    for p in ("none", "batch"):
        _record(root, "dense", "dense", p, 1.0, allc, 0.90)
        # ltp: a cheap point that is too inaccurate on validation, and an acceptable one
        _record(root, "ltp", "a", p, 0.3, allc, 0.80, {"lambda": 1.0}, {1: 1.5, 32: 2.4})
        _record(root, "ltp", "b", p, 0.5, allc, 0.895, {"lambda": 0.1}, {1: 1.2, 32: 1.8})
        # robustness variants: wrong on long examples
        long_wrong = LENGTHS <= np.percentile(LENGTHS, 75)
        _record(root, "ltp_short", "p1", p, 0.6, allc, 0.9)
        _record(root, "lat_short", "q1", p, 0.4, long_wrong, 0.9)
        _record(root, "lat_short", "q2", p, 0.62, long_wrong, 0.9)
    return root


def test_selection_rule_uses_validation(results):
    df = load_records(results)
    row, met = fastest_within(df, "mr", "ltp", 0.01)
    assert met and row["operating_point"] == "b"  # "a" is cheaper but 10 points worse on validation
    row, met = fastest_within(df, "mr", "ltp", 0.0)
    assert not met and row["operating_point"] == "b"


def test_experiments_write_tables_and_figures(results, tmp_path):
    import pandas as pd

    df = load_records(results)
    figures = tmp_path / "figures"
    experiments = {
        "t1": {"kind": "selected_points", "methods": ["ltp"], "tolerance": 0.01},
        "wall": {"kind": "wallclock", "methods": ["all"], "target": 2.0},
        "robust": {"kind": "robustness", "methods": ["ltp_short", "lat_short"]},
        "traj": {"kind": "trajectories", "methods": ["ltp"], "n_examples": 5},
        "buckets": {"kind": "bucket_speedup", "methods": ["ltp"]},
        "knobs": {"kind": "knob_table", "methods": ["ltp"], "knob": "lambda", "values": [0.1, 1.0]},
        # a knob under several names: the first one a point has is used
        "aliases": {"kind": "knob_table", "methods": ["ltp"], "knob": ["tau", "lambda"], "values": [0.1]},
        "absent": {"kind": "selected_points", "methods": ["fastbert"]},
        "cost": {"kind": "selection_cost"},
    }
    methods = ["dense", "ltp", "ltp_short", "lat_short"]
    written = run_experiments(df, experiments, methods, results, figures)
    assert "absent" not in planned(experiments, methods)  # the profile runs no fastbert: skipped
    assert not (results / "tables" / "absent.csv").exists()
    # the benchmark has not run: its table and figure say so instead of missing
    assert "no data" in (results / "tables" / "cost.md").read_text() and (figures / "cost.png").is_file()
    t1 = pd.read_csv(results / "tables" / "t1.csv")
    assert t1.loc[0, "operating_point"] == "b" and t1.loc[0, "speedup_none"] == pytest.approx(2.0)
    wall = pd.read_csv(results / "tables" / "wall.csv")
    ltp_none = wall[(wall.method == "ltp") & (wall.protocol == "none")].iloc[0]
    assert ltp_none["operating_point"] == "b" and ltp_none["ratio"] == pytest.approx(1.8 / 2.0)
    assert ltp_none["wall_bs32_low"] < ltp_none["wall_bs32"] < ltp_none["wall_bs32_high"]
    robust = pd.read_csv(results / "tables" / "robust.csv")
    # lat_short's point closest to ltp_short's <=Q2 relative FLOPs (0.6) is q2 (0.62)
    assert set(robust[robust.method == "lat_short"]["operating_point"]) == {"q2"}
    lat = robust[robust.method == "lat_short"].set_index("bucket")
    assert lat.loc["<=Q2", "value"] == pytest.approx(100.0) and lat.loc[">Q3", "value"] == pytest.approx(0.0)
    buckets = pd.read_csv(results / "tables" / "buckets.csv").set_index("bucket")
    assert buckets["n"].tolist() == [26, 14, 0]  # lengths 10..35, 36..49, none above 70
    assert buckets["speedup"].iloc[:2].round(6).tolist() == [2.0, 2.0] and np.isnan(buckets["speedup"].iloc[2])
    knobs = pd.read_csv(results / "tables" / "knobs.csv")
    assert sorted(knobs["lambda"]) == [0.1, 1.0]
    aliases = pd.read_csv(results / "tables" / "aliases.csv")
    assert aliases["tau"].tolist() == [0.1] and aliases["operating_point"].tolist() == knobs.sort_values("lambda")[
        "operating_point"].tolist()[:1]
    for name in ("wall", "robust", "traj", "buckets"):
        assert (figures / f"{name}.png").stat().st_size > 1000
    tables = [str(results / "tables" / f"{n}.{e}") for n in ("t1", "wall", "robust", "buckets", "knobs", "aliases",
                                                             "cost") for e in ("csv", "md", "tex")]
    figs = [str(figures / f"{n}.{e}") for n in ("wall", "robust", "traj", "buckets", "cost") for e in ("png", "pdf")]
    assert sorted(written) == sorted(tables + figs)


def test_structured_pruning_experiments(tmp_path):
    """The validation table takes the highest-sparsity point and puts the
    reference next to it (and rows for reference tasks not run); the sparsity
    curve has one figure per protocol, with the achieved sparsity."""
    import pandas as pd

    root, figures = tmp_path / "results", tmp_path / "figures"
    allc = np.ones(N, bool)
    most = LENGTHS < 30  # 20 of 40 right
    for p in ("sequence", "batch", "none"):
        _record(root, "dense", "dense", p, 1.0, allc, 0.9)
        _record(root, "cofi", "sparsity=0.5", p, 0.5, allc, 0.9, {"target_sparsity": 0.5}, {1: 1.8, 32: 1.9},
                sparsity=0.52)
        _record(root, "cofi", "sparsity=0.95", p, 0.1, most, 0.7, {"target_sparsity": 0.95}, {1: 6.0, 32: 8.0},
                sparsity=0.94)
    df = load_records(root)
    experiments = {
        "val": {"kind": "ratio_table", "methods": ["cofi"], "knob": "target_sparsity", "wall_protocol": "batch",
                "reference_source": "slides", "reference": {"mr": {"ratio": 0.9, "speedup": 10.0},
                                                            "sst2": {"ratio": 0.904, "speedup": 10.4}}},
        "curve": {"kind": "sparsity_curve", "methods": ["cofi"]},
    }
    written = run_experiments(df, experiments, ["dense", "cofi"], root, figures, ("sequence", "batch", "none"))
    val = pd.read_csv(root / "tables" / "val.csv")
    ours = val[val.source == "harness"].iloc[0]
    assert ours["operating_point"] == "sparsity=0.95" and ours["ratio"] == pytest.approx(0.5)
    assert ours["speedup_none"] == pytest.approx(10.0) and ours["wall_bs32"] == pytest.approx(8.0)
    assert ours["wall_bs1"] == pytest.approx(6.0) and ours["ref_ratio"] == pytest.approx(0.9)
    assert ours["sparsity"] == pytest.approx(0.94)
    assert val[val.task == "sst2"]["source"].iloc[0].startswith("reference only")
    curve = pd.read_csv(root / "tables" / "curve.csv")
    assert len(curve) == 9 and sorted(curve[curve.method == "cofi"]["sparsity"].unique()) == [0.52, 0.94]
    for p in ("sequence", "batch", "none"):
        assert str(figures / f"curve_{p}.png") in written


def test_infor_coef_experiments(tmp_path):
    """Table 2 rows pick within their reference row (Infor-Coef against the
    CoFi model it starts from), the padding claim divides sequence by batch
    speedups, the policy cost reads the policy's FLOPs and time share, and
    the trade-off figures filter points by knobs."""
    import pandas as pd

    from harness.storage import read_json

    root, figures = tmp_path / "results", tmp_path / "figures"
    allc = np.ones(N, bool)
    rel = {  # (method, point): ({protocol: relative FLOPs}, validation accuracy, knobs)
        ("dense", "dense"): ({"sequence": 1.0, "batch": 1.0, "none": 1.0}, 0.90, None),
        ("cofi", "sparsity=0.6"): ({"sequence": 0.5, "batch": 0.5, "none": 0.5}, 0.85, {"target_sparsity": 0.6}),
        ("infor_coef", "light"): ({"sequence": 0.2, "batch": 0.42, "none": 0.4}, 0.845,
                                  {"sparsity": 0.6, "norm_weight": 0.003}),
        ("infor_coef", "strong"): ({"sequence": 0.1, "batch": 0.22, "none": 0.2}, 0.80,
                                   {"sparsity": 0.6, "norm_weight": 0.01}),
        ("infor_coef_skim", "a"): ({"sequence": 0.3, "batch": 0.45, "none": 0.44}, 0.83,
                                   {"sparsity": 0.6, "skim_weight": 0.1}),
        ("transkimmer", "alpha=0.1"): ({"sequence": 0.5, "batch": 0.8, "none": 0.78}, 0.895, {"alpha": 0.1}),
    }
    for (method, op), (flops, val, knobs) in rel.items():
        for p, r in flops.items():
            _record(root, method, op, p, r, allc, val, knobs, {1: 1.0 / r, 32: 1.2 / r},
                    sparsity=0.6 if method.startswith(("cofi", "infor")) else 0.0)
            path = record_path(root, "mr", method, op, p)
            rec = read_json(path)
            if method in ("infor_coef", "transkimmer"):
                share = 0.25 if method == "infor_coef" else 0.05
                rec["policy_flops_per_example"] = share * rec["flops_per_example"]
                rec["timing"]["by_batch_size"]["1"]["policy_time_share"] = 0.3
            write_json(path, rec)
    df = load_records(root)
    experiments = {
        "t2": {"kind": "grouped_points", "tolerance": 0.01, "rows": [
            {"label": "Transkimmer", "method": "transkimmer", "padding": "batch"},
            {"label": "CoFi-s60", "method": "cofi", "knobs": {"target_sparsity": 0.6}},
            {"label": "IC-4x", "method": "infor_coef", "knobs": {"sparsity": 0.6}, "padding": "batch",
             "reference": "CoFi-s60"},
            {"label": "IC-4x", "method": "infor_coef", "knobs": {"sparsity": 0.6}, "padding": "sequence",
             "reference": "CoFi-s60"},
            # rows no point matches (a model that missed its target) stay, empty, and say so
            {"label": "CoFi-s95", "method": "cofi", "knobs": {"target_sparsity": 0.95}},
            {"label": "IC-16x", "method": "infor_coef", "knobs": {"sparsity": 0.95}, "reference": "CoFi-s95"}]},
        "pad": {"kind": "padding_claim", "methods": ["transkimmer", "infor_coef"], "tolerance": 0.06},
        "cost": {"kind": "policy_cost", "methods": ["infor_coef", "transkimmer"], "protocol": "batch"},
        "fig3": {"kind": "method_tradeoff", "methods": ["infor_coef", "infor_coef_skim"], "protocol": "batch",
                 "knobs": {"infor_coef": {"norm_weight": 0.01}}, "shade": [2, 4]},
        "fig4": {"kind": "method_tradeoff", "methods": ["cofi", "infor_coef"], "x": "relative_flops",
                 "series": {"infor_coef": "norm_weight"}},
    }
    methods = sorted({m for m, _ in rel})
    assert set(planned(experiments, methods)) == set(experiments)
    written = run_experiments(df, experiments, methods, root, figures, ("sequence", "batch", "none"))
    t2 = pd.read_csv(root / "tables" / "t2.csv").set_index(["label", "padding"])
    assert list(t2.index.get_level_values(0)) == ["dense", "Transkimmer", "CoFi-s60", "IC-4x", "IC-4x", "CoFi-s95",
                                                  "IC-16x"]
    missing = t2.loc[("CoFi-s95", "none")]
    assert missing["operating_point"] == "no point with target_sparsity=0.95" and not missing["met"]
    assert np.isnan(missing["speedup"]) and np.isnan(missing["value"])
    assert t2.loc[("IC-16x", "none")]["reference"] == "dense (CoFi-s95 has no point)"
    cofi, ic = t2.loc[("CoFi-s60", "none")], t2.loc[("IC-4x", "batch")]
    assert not cofi["met"] and cofi["reference"] == "dense"  # 5 points below dense on validation
    # within 1 point of CoFi-s60's 0.85: the light point (the strong one is cheaper but 5 points worse)
    assert ic["met"] and ic["operating_point"] == "light" and ic["reference"] == "CoFi-s60"
    assert ic["speedup"] == pytest.approx(1 / 0.42) and ic["params_kept"] == pytest.approx(0.4)
    assert t2.loc[("IC-4x", "sequence")]["speedup"] == pytest.approx(5.0)
    pad = pd.read_csv(root / "tables" / "pad.csv").set_index("method")
    assert pad.loc["infor_coef", "operating_point"] == "light"  # within 0.06 of dense's 0.90
    assert pad.loc["infor_coef", "seq_over_batch"] == pytest.approx(0.42 / 0.2)
    assert pad.loc["infor_coef", "batch_over_none"] == pytest.approx(0.4 / 0.42)
    assert pad.loc["infor_coef", "median_seq_over_batch"] == pytest.approx((2.1 + 2.2) / 2)
    cost = pd.read_csv(root / "tables" / "cost.csv").set_index(["method", "operating_point"])
    assert cost.loc[("infor_coef", "light"), "policy_flops_share"] == pytest.approx(0.25)
    assert cost.loc[("infor_coef", "light"), "policy_time_bs1"] == pytest.approx(0.3)
    assert cost.loc[("transkimmer", "alpha=0.1"), "policy_flops_share"] == pytest.approx(0.05)
    assert np.isnan(cost.loc[("transkimmer", "alpha=0.1"), "policy_time_bs32"])  # not measured: NaN, not 0
    fig3 = pd.read_csv(root / "tables" / "fig3.csv")
    assert set(fig3.operating_point) == {"dense", "strong", "a"} and set(fig3.protocol) == {"batch"}
    fig4 = pd.read_csv(root / "tables" / "fig4.csv")
    assert fig4[fig4.operating_point == "strong"]["relative_flops"].iloc[0] == pytest.approx(0.22)  # batch
    # one line per value of the series knob; methods without one are one line each
    assert set(fig4.series) == {"dense", "cofi", "infor_coef (norm_weight=0.003)", "infor_coef (norm_weight=0.01)"}
    for stem in ("fig3", "fig4"):
        assert str(figures / f"{stem}.png") in written
    # a reference that names no earlier row is a config error, not a silent fallback to dense
    bad = {"t": {"kind": "grouped_points", "rows": [{"label": "X", "method": "infor_coef", "reference": "CoFi-s06"}]}}
    with pytest.raises(HarnessError, match="CoFi-s06"):
        run_experiments(df, bad, methods, root, figures, ("sequence", "batch", "none"))
