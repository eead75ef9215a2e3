"""Claims are decided by their config rule from records alone (rules: harness/claim_spec.py; measures:
harness/report/claim_measures.py; verdicts: harness/report/claims.py)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from harness.claim_spec import check_claims, rule_text
from harness.config import load_config
from harness.errors import HarnessError
from harness.report.claims import FAILS, HOLDS, INCONCLUSIVE, claims_table, judge
from harness.report.experiments import run_experiments
from harness.report.load import load_records
from harness.storage import write_json

from .test_experiments import LENGTHS, N, _record

ALL = np.ones(N, bool)
LONG_WRONG = LENGTHS <= np.percentile(LENGTHS, 75)  # wrong on the longest quarter (10 of 40)


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for p, pad in (("none", 1.0), ("batch", 1.0), ("sequence", 0.8)):
        _record(root, "dense", "dense", p, 1.0, ALL, 0.90)
        # ltp: 0.3 too inaccurate on validation; 0.5 within 1 point (speedup 2 under none, 2.5 under sequence)
        _record(root, "ltp", "a", p, 0.3, ALL, 0.80, {"lambda": 1.0}, {1: 1.5, 32: 2.4})
        _record(root, "ltp", "b", p, 0.5 * pad, ALL, 0.895, {"lambda": 0.1}, {1: 1.2, 32: 1.8})
        # a top-k baseline: 75% of examples right at relative FLOPs 0.4
        _record(root, "topk", "k", p, 0.4, np.arange(N) % 4 != 0, 0.85, {"ratio": 0.4})
        _record(root, "short_ok", "s", p, 0.6, ALL, 0.9)
        _record(root, "short_bad", "t", p, 0.6, LONG_WRONG, 0.9)
        _record(root, "never", "n", p, 0.5, ALL, 0.5)
    return root


def _judge(root, rule, task="mr"):
    check_claims({"claims": [{"id": "x", "rule": rule}]}, "test")
    return judge(load_records(root), task, rule, root)


def test_speedup_within_thresholds_decide_and_change_the_verdict(results):
    rule = {"measure": "speedup_within", "method": "ltp", "tolerance": 0.01, "protocol": "none"}
    verdict, ours, reason = _judge(results, {**rule, "at_least": 1.9})
    # validation chose b (2x); on eval a (3.33x) is as right as dense, so the speedup at 1 point spans [2, 3.33]
    assert verdict == HOLDS and ours.startswith("speedup_within = 2 [2, 3.33], n=40 (ltp b:")
    assert reason == "one training seed: training noise is not in the interval"
    # the same records, stricter rules: the verdict follows the config, not the models
    verdict, ours, reason = _judge(results, {**rule, "at_least": 2.1})
    assert verdict == INCONCLUSIVE and reason.startswith("within noise: 2 [2, 3.33] straddles >= 2.1")
    verdict, ours, reason = _judge(results, {**rule, "at_least": 3.4})
    assert verdict == FAILS and reason.startswith("the whole interval [2, 3.33] is not >= 3.4")
    # a bound no point reaches at any accuracy (ltp's fastest is 3.33x) fails, or, where the rule says so,
    # was not tested
    assert _judge(results, {**rule, "at_least": 4})[0] == FAILS
    verdict, ours, reason = _judge(results, {**rule, "at_least": 4, "unreached": "inconclusive"})
    assert verdict == INCONCLUSIVE and reason.startswith("no point of ltp reaches 4x at any accuracy (its fastest: 3.33x")
    # under sequence the chosen point (chosen under none) is 0.5 * 0.8 of dense: 2.5x
    assert _judge(results, {**rule, "protocol": "sequence", "above": 2.4})[0] == HOLDS
    # wall-clock at batch 32: 1.8 with the timing's interval [1.71, 1.89]; a batch size never timed
    assert _judge(results, {**rule, "quantity": "wall", "batch_size": 32, "at_least": 1.7})[0] == HOLDS
    verdict, ours, reason = _judge(results, {**rule, "quantity": "wall", "batch_size": 32, "at_least": 1.8})
    assert verdict == INCONCLUSIVE and "[1.71, 1.89], n=7" in ours and "7 interleaved rounds" in ours
    assert _judge(results, {**rule, "quantity": "wall", "batch_size": 32, "at_least": 1.9})[0] == FAILS
    verdict, _, reason = _judge(results, {**rule, "quantity": "wall", "batch_size": 8, "at_least": 1})
    assert verdict == INCONCLUSIVE and "not timed at batch 8" in reason


def test_no_point_within_tolerance_does_not_hold_and_no_records_is_inconclusive(results):
    verdict, _, reason = _judge(results, {"measure": "speedup_within", "method": "never", "at_least": 1})
    assert verdict == FAILS and reason == "no point of never is within 0.01 of dense on validation"
    verdict, ours, reason = _judge(results, {"measure": "speedup_within", "method": "absent", "at_least": 1})
    assert (verdict, ours, reason) == (INCONCLUSIVE, "n/a", "no records of absent on mr")


def _right(n_correct):
    return np.arange(N) < n_correct


def test_metric_gap_reads_what_the_method_reaches_at_each_baseline_cost(tmp_path):
    root = tmp_path / "results"
    _record(root, "dense", "dense", "none", 1.0, ALL, 0.9)
    # the method: 70% at relative FLOPs 0.3, 90% at 0.6, and a dominated 60% at 0.5
    for op, cost, right in (("c1", 0.3, 28), ("c2", 0.6, 36), ("c3", 0.5, 24)):
        _record(root, "curve", op, "none", cost, _right(right), 0.9)
    # the baseline: 0.2 (cheaper than the method's cheapest: not compared), 65% at 0.45, 80% at 0.8
    for op, cost, right in (("b0", 0.2, 40), ("b1", 0.45, 26), ("b2", 0.8, 32)):
        _record(root, "base", op, "none", cost, _right(right), 0.9)
    rule = {"measure": "metric_gap", "method": "curve", "baseline": "base"}
    # at 0.45 the method reaches 70 (its 0.3 point; a line to 0.6 would say 80): +5; at 0.8 it reaches 90: +10
    # on 40 eval examples the paired bootstrap of the max is [2.5, 20]: a rule at 10 is within noise
    verdict, ours, reason = _judge(root, {**rule, "at_least": 10})
    assert ours.startswith("metric_gap = 10 [2.5, 20], n=40 (") and "paired bootstrap over 40 eval examples" in ours
    assert verdict == INCONCLUSIVE and "at 2 equal-FLOPs points" in ours and "max +10.00, mean +7.50" in ours
    assert reason.startswith("within noise: 10 [2.5, 20] straddles >= 10")
    assert _judge(root, {**rule, "at_least": 2})[0] == HOLDS
    verdict, ours, _ = _judge(root, {**rule, "statistic": "mean", "at_least": 14})  # the mean: [2.5, 13.8]
    assert verdict == FAILS and ours.startswith("metric_gap = 7.5 [2.5, 13.8]")
    # every baseline point cheaper than the method's cheapest: nothing to compare
    verdict, _, reason = _judge(root, {"measure": "metric_gap", "method": "base", "baseline": "curve", "above": 0})
    assert verdict == HOLDS  # base's 0.2 point (100%) beats every curve point
    _record(root, "cheap", "x", "none", 0.1, ALL, 0.9)
    verdict, _, reason = _judge(root, {**rule, "baseline": "cheap", "above": 0})
    assert verdict == INCONCLUSIVE and "are all below curve's cheapest point (0.3)" in reason


def test_dense_seeds_set_a_training_noise_floor_that_can_turn_a_verdict_inconclusive(tmp_path):
    """With three dense seeds (same splits), their spread stands for every method's training noise: a
    metric gap whose bootstrap interval alone clears the bound becomes `within noise` once the floor
    1.96 x sd x sqrt(1/n_method + 1/n_dense) is added; with one dense seed the verdict says that
    training noise is not in the interval."""
    from harness.report.claim_measures import Z95
    from harness.report.seeds import over_seeds

    root = tmp_path / "results"
    base = np.arange(N) < 36  # dense: 90% right
    _record(root, "dense", "dense", "none", 1.0, base, 0.9)
    _record(root, "curve", "c", "none", 0.5, ALL, 0.9)  # 100% at half the FLOPs
    _record(root, "flat", "f", "none", 0.5, base, 0.9)  # dense's predictions at half the FLOPs
    rule = {"measure": "metric_gap", "method": "curve", "baseline": "flat", "above": 0}
    check_claims({"claims": [{"id": "x", "rule": rule}]}, "test")
    verdict, ours, reason = judge(over_seeds(load_records(root)), "mr", rule, root)
    assert verdict == HOLDS and ours.startswith("metric_gap = 10 [2.5, 20], n=40")  # 4 examples differ, all one way
    assert reason == "one training seed: training noise is not in the interval"
    # dense at seeds 1 and 2: 33 and 39 of 40 right, so dense's sd over seeds is 7.5 points
    _record(root, "dense", "dense", "none", 1.0, np.arange(N) < 33, 0.9, seed=1)
    _record(root, "dense", "dense", "none", 1.0, np.arange(N) < 39, 0.9, seed=2)
    df = over_seeds(load_records(root))
    dense = df[df["method"] == "dense"].iloc[0]
    assert dense["n_seeds"] == 3 and 100 * dense["primary_value_sd"] == pytest.approx(7.5)
    verdict, ours, reason = judge(df, "mr", rule, root)
    half = Z95 * 7.5 * np.sqrt(1 / 1 + 1 / 1)  # curve and flat: one seed each
    low = 10 - np.hypot(10 - 2.5, half)
    assert verdict == INCONCLUSIVE and reason.startswith(f"within noise: 10 [{low:.3g}, ")
    assert f"training noise from dense's 3 seeds (sd 7.50 pts, assumed for every method) widens it by {half:.1f} pts" in ours
    assert "one training seed" not in reason


def test_the_other_measures_on_known_records(results):
    # ltp b: 0.4 of dense under sequence, 0.5 under batch and none; wall 1.8 at batch 32; short_ok 0.6 everywhere
    ratio = {"measure": "protocol_ratio", "method": "ltp", "numerator": "sequence", "denominator": "batch"}
    verdict, ours, _ = _judge(results, {**ratio, "at_least": 1.25})
    assert verdict == HOLDS and "sequence 2.50x / batch 2.00x" in ours
    margin = {"measure": "speedup_margin", "method": "ltp", "baselines": ["short_ok", "never"]}
    verdict, ours, _ = _judge(results, {**margin, "above": 0.33})
    assert verdict == HOLDS and ours.startswith("speedup_margin = 0.333")
    # ltp's 2x spans [2, 3.33] (its 3.33x point is as right as dense on eval), short_ok's 1.67x is sure
    verdict, ours, _ = _judge(results, {**margin, "above": 0.34})
    assert verdict == INCONCLUSIVE and ours.startswith("speedup_margin = 0.333 [0.333, 1.67]")
    assert _judge(results, {**margin, "above": 1.7})[0] == FAILS
    wall = {"measure": "wall_over_flops", "method": "ltp", "batch_size": 32}
    verdict, ours, _ = _judge(results, {**wall, "at_least": 0.85})  # 0.9, the timing's [0.855, 0.945]
    assert verdict == HOLDS and "wall-clock 1.80x for FLOPs 2.00x" in ours
    assert _judge(results, {**wall, "at_least": 0.9})[0] == INCONCLUSIVE
    assert _judge(results, {**wall, "at_least": 0.95})[0] == FAILS
    verdict, _, reason = _judge(results, {**wall, "target": 5.0, "at_least": 0.9})
    assert verdict == INCONCLUSIVE and reason == "no point of ltp is near 5x (nearest: 3.33x)"
    kept = {"measure": "metric_retained", "method": "topk", "knobs": {"ratio": 0.4}}
    verdict, ours, _ = _judge(results, {**kept, "at_least": 0.75})  # 30 of 40 right, dense 40: 0.75, n=40
    assert verdict == INCONCLUSIVE and ours.startswith("metric_retained = 0.75 [0.6")
    assert _judge(results, {**kept, "at_least": 0.55})[0] == HOLDS
    assert _judge(results, {**kept, "above": 0.9})[0] == FAILS
    verdict, _, reason = _judge(results, {**kept, "knobs": {"ratio": 0.5}, "at_least": 0})
    assert verdict == INCONCLUSIVE and reason == "topk has no point with {'ratio': 0.5} on mr"
    at = {"measure": "speedup_at", "method": "ltp", "knobs": {"lambda": 0.1}}
    assert _judge(results, {**at, "at_least": 2.0})[0] == HOLDS
    assert _judge(results, {**at, "quantity": "wall", "batch_size": 32, "at_least": 1.7})[0] == HOLDS
    assert _judge(results, {**at, "quantity": "wall", "batch_size": 32, "above": 1.8})[0] == INCONCLUSIVE
    assert _judge(results, {**at, "quantity": "wall", "batch_size": 32, "above": 1.9})[0] == FAILS
    verdict, ours, _ = _judge(results, {**at, "at_least": 2.0})
    assert verdict == HOLDS and "exact: FLOPs are counted" in ours  # a FLOPs speedup has no interval
    buckets = {"measure": "bucket_margin", "method": "ltp", "baselines": ["short_ok"], "min_examples": 10}
    verdict, ours, _ = _judge(results, {**buckets, "above": 0.33})
    assert verdict == HOLDS and "short (<=35): 2.00x vs 1.67x; middle (36-70): 2.00x vs 1.67x" in ours
    verdict, _, reason = _judge(results, {**buckets, "min_examples": 30, "above": 0})
    assert verdict == INCONCLUSIVE and reason == "no length bucket of mr holds 30 eval examples"


def test_long_quarter_drop_against_dense_and_versus_another_method(results):
    assert _judge(results, {"measure": "long_quarter_drop", "method": "short_ok", "at_least": -1})[0] == HOLDS
    verdict, ours, reason = _judge(results, {"measure": "long_quarter_drop", "method": "short_bad", "at_least": -1})
    assert verdict == FAILS and "-100.0 pts vs dense on the longest quarter (n=10)" in ours
    rule = {"measure": "long_quarter_drop", "method": "short_ok", "versus": "short_bad", "above": 99}
    assert _judge(results, rule)[0] == HOLDS


def test_length_buckets_without_long_inputs_are_inconclusive(results):
    # the synthetic eval lengths are 10..49: nothing above 70 tokens
    rule = {"measure": "bucket_speedup_ratio", "method": "ltp", "numerator": "long", "denominator": "short",
            "above": 1}
    verdict, _, reason = _judge(results, rule)
    assert verdict == INCONCLUSIVE and reason.startswith("needs inputs in the long (>70) bucket: mr has 0")
    # middle (36-70) holds 14 examples: with min_examples 10 the ratio is read (same relative FLOPs: 1.0)
    rule = {**{k: v for k, v in rule.items() if k != "above"}, "numerator": "middle", "min_examples": 10,
            "at_least": 0.999}
    verdict, ours, _ = _judge(results, rule)
    assert verdict == HOLDS and "middle (36-70) 2.00x / short (<=35) 2.00x" in ours
    assert _judge(results, {**rule, "at_least": 1.001})[0] == FAILS


def test_all_of_rules_fail_on_any_failure_and_are_inconclusive_otherwise(results):
    ok = {"measure": "speedup_within", "method": "ltp", "at_least": 1.5}
    bad = {"measure": "speedup_within", "method": "ltp", "at_least": 3.5}
    unknown = {"measure": "speedup_within", "method": "absent", "at_least": 1}
    assert _judge(results, {"all": [ok, ok]})[0] == HOLDS
    verdict, ours, reason = _judge(results, {"all": [ok, bad, unknown]})
    assert verdict == FAILS and reason.startswith("part 2: the whole interval [2, 3.33] is not >= 3.5; ")
    assert "part 3: no records" in reason
    assert ours.count(" | ") == 2
    assert _judge(results, {"all": [ok, unknown]})[0] == INCONCLUSIVE


def test_selection_cost_ratio_reads_the_benchmark(results):
    rule = {"measure": "selection_cost_ratio", "length": 128, "at_least": 3}
    assert _judge(results, rule, None)[0] == INCONCLUSIVE
    rows = [{"length": 128, "ratio": r, "ratio_topk_torch_over_threshold": v} for r, v in ((0.1, 2.0), (0.5, 4.0),
                                                                                          (0.3, 3.5))]
    write_json(results / "benchmarks" / "selection_cost.json", {"rows": rows})
    verdict, ours, _ = _judge(results, rule, None)
    assert verdict == HOLDS and "median 3.50" in ours


def test_claims_table_one_row_per_claim_and_task_through_the_report(results, tmp_path):
    spec = {"kind": "claims", "claims": [
        {"id": "A", "source": "Paper, Table 1", "statement": "fast", "paper": "2x",
         "rule": {"measure": "speedup_within", "method": "ltp", "at_least": 1.9}},
        {"id": "B", "source": "Paper, Fig. 1", "statement": "elsewhere", "paper": "3x", "tasks": ["mr", "qnli"],
         "rule": {"measure": "speedup_within", "method": "ltp", "at_least": 1.9}},
        {"id": "C", "source": "Paper, Fig. 2", "statement": "unrun", "paper": "4x",
         "rule": {"measure": "speedup_within", "method": "absent", "at_least": 1.9}},
    ]}
    table = claims_table(load_records(results), spec, results)
    assert table[["claim", "task", "verdict"]].values.tolist() == [
        ["A", "mr", HOLDS], ["B", "mr", HOLDS], ["B", "qnli", INCONCLUSIVE], ["C", "(none)", INCONCLUSIVE]]
    assert table["rule"].iloc[0] == "speedup_within(method=ltp) >= 1.9"
    assert table["reason"].iloc[2] == "no records on qnli"
    paths = run_experiments(load_records(results), {"claims": spec}, ["ltp"], results, tmp_path / "figures")
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["claims.csv", "claims.md", "claims.tex"]
    assert "| A " in (results / "tables" / "claims.md").read_text()


@pytest.mark.parametrize("rule, message", [
    ({"measure": "speedup_whithin", "method": "ltp", "at_least": 1}, "unknown measure 'speedup_whithin'"),
    ({"measure": "speedup_within", "method": "ltp", "tolerence": 0.01, "at_least": 1}, "takes no ['tolerence']"),
    ({"measure": "speedup_within", "at_least": 1}, "needs ['method']"),
    ({"measure": "speedup_within", "method": "ltp", "at_least": 1, "below": 3}, "exactly one test"),
    ({"measure": "speedup_within", "method": "ltp"}, "exactly one test, found none"),
    ({"measure": "speedup_within", "method": "ltp", "protocol": "padded", "at_least": 1}, "protocol: 'padded'"),
    ({"all": [], "at_least": 1}, "`all` takes a non-empty list"),
])
def test_a_misspelled_rule_is_one_clear_error(rule, message):
    with pytest.raises(HarnessError, match=None) as e:
        check_claims({"claims": [{"id": "C1", "rule": rule}]}, "experiments.claims")
    assert message in str(e.value) and "experiments.claims.claims[C1].rule" in str(e.value)


def test_profiles_read_the_papers_claims_from_one_file():
    for profile in ("default", "smoke"):
        claims = load_config(profile)["experiments"]["claims"]["claims"]
        assert [c["id"] for c in claims] == [f"C{i}" for i in range(1, 17)]
        check_claims({"claims": claims}, profile)
    assert rule_text(claims[0]["rule"]) == ("speedup_within(method=ltp, tolerance=0.01, protocol=none, "
                                          "unreached=inconclusive) >= 1.9")
    with pytest.raises(HarnessError, match="does not exist"):
        load_config("smoke", ["experiments.claims.claims=claims/missing.yaml"])


def test_task_methods_run_each_task_with_only_the_methods_its_claims_read():
    from harness.run.plan import all_manifests, check_task_methods, resolve_methods, runs_on

    cfg = load_config("smoke", ["tasks=[mr, sst2]", "task_methods={sst2: [infor_coef]}"])
    runs = {tuple(p.split("/")[-3:-1]) for p in all_manifests(cfg)}  # manifests/<task>/<method>/seed<s>.json
    # on sst2 only infor_coef, with dense and cofi (it starts from CoFi); on mr every method
    assert {m for t, m in runs if t == "sst2"} == {"dense", "cofi", "infor_coef"}
    everywhere = {**cfg, "task_methods": {}}
    assert {m for t, m in runs if t == "mr"} == {m for m in resolve_methods(cfg) if runs_on(everywhere, "mr", m)}
    assert "ltp" in {m for t, m in runs if t == "mr"}
    with pytest.raises(HarnessError, match="task_methods names 'qnlii', which is not a task"):
        check_task_methods({**cfg, "task_methods": {"qnlii": ["ltp"]}}, ["mr", "sst2"], resolve_methods(cfg))
    check_task_methods({**cfg, "task_methods": {"qnli": ["ltp"]}}, ["mr", "sst2"], resolve_methods(cfg))  # not run
    with pytest.raises(HarnessError, match=r"task_methods.sst2 names \['ltpp'\], which is not a method or variant"):
        check_task_methods({**cfg, "task_methods": {"sst2": ["ltpp"]}}, ["mr", "sst2"], resolve_methods(cfg))


def test_the_claims_profile_runs_every_claims_method_on_its_tasks():
    """Each claim's methods run on the tasks it names (so no claim is inconclusive for want of a run)."""
    from harness.claim_spec import methods_of, per_task
    from harness.run.plan import runs_on

    cfg = load_config("claims")
    for claim in cfg["experiments"]["claims"]["claims"]:
        if not per_task(claim["rule"]):
            continue
        for task in claim.get("tasks", ["mr"]):
            assert task in cfg["tasks"], (claim["id"], task)
            for method in methods_of(claim["rule"]):
                assert runs_on(cfg, task, method), (claim["id"], task, method)


def test_claims_glue_runs_ltp_table_1s_cola_row_on_its_whole_training_set():
    """CoLA's C1 row: LTP and dense (three seeds), the uncapped training set, C1 alone judged."""
    from harness.run.plan import all_manifests, runs_on

    cfg = load_config("claims_glue")
    assert cfg["tasks"] == ["cola"] and cfg["experiments"]["claims"]["ids"] == ["C1"]
    check_claims(cfg["experiments"]["claims"], "claims_glue")
    runs = {tuple(p.split("/")[-3:]) for p in all_manifests(cfg)}
    for task in cfg["tasks"]:
        assert cfg["train"]["task_caps"][task]["max_train_examples"] is None
        assert runs_on(cfg, task, "ltp") and not runs_on(cfg, task, "spatten")
        assert {s for t, m, s in runs if (t, m) == (task, "dense")} == {"seed0.json", "seed1.json", "seed2.json"}


def test_the_plan_checks_claims_without_the_report():
    """The claim spec sits below run/ (data -> model -> measure -> plugin -> run -> report): checking the
    claims profile's rules, as the plan does before any job, imports no report module and not pandas."""
    code = ("import sys; from harness.config import load_config; from harness.run.plan import check_experiments; "
            "check_experiments(load_config('claims')); "
            "print(sorted(m for m in sys.modules if m.startswith(('harness.report', 'pandas'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
