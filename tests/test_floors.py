"""Dense baselines must clear a floor (issue 31, item 4): a constant predictor's score or the stated
`dense_floors`, by the lower end of dense's interval; below it, every claim on the task is inconclusive."""
from __future__ import annotations

import numpy as np
import pytest

from harness.claim_spec import check_claims
from harness.config import load_config
from harness.report.claims import HOLDS, INCONCLUSIVE, claims_table
from harness.report.floors import constant_score, dense_floor, floors_table
from harness.report.load import load_records
from harness.report.seeds import over_seeds

from .test_experiments import LABELS, N, _record


def test_constant_predictors_score_what_their_metric_gives_them():
    y = np.array([1] * 30 + [0] * 10)
    assert constant_score("mr", "accuracy", y) == (0.75, "majority class 1")
    assert constant_score("mrpc", "f1", y)[0] == pytest.approx(2 * 0.75 / 1.75)  # positive everywhere
    assert constant_score("cola", "matthews", y)[0] == 0.0
    assert constant_score("stsb", "pearson", np.arange(5.0))[0] == 0.0
    assert constant_score("squad", "f1", [["a"], ["b"]])[0] == 0.0
    assert constant_score("squad_v2", "f1", [["a"], [], [], ["b"]]) == (0.5, "no answer everywhere")


def _records(root, dense_right: int):
    """Dense right on the first `dense_right` of N examples; ltp at half the FLOPs right on all."""
    for p in ("none", "batch"):
        _record(root, "dense", "dense", p, 1.0, np.arange(N) < dense_right, 0.9)
        _record(root, "ltp", "b", p, 0.5, np.arange(N) < dense_right, 0.9, {"lambda": 0.1}, {1: 1.2, 32: 1.8})


def test_a_dense_model_below_its_floor_makes_every_claim_on_the_task_inconclusive(tmp_path):
    majority = float(max(np.mean(LABELS == 0), np.mean(LABELS == 1)))
    spec = {"claims": [{"id": "A", "source": "s", "statement": "fast", "paper": "2x",
                        "rule": {"measure": "speedup_within", "method": "ltp", "at_least": 1.5}}]}
    check_claims(spec, "test")
    good, bad = tmp_path / "good", tmp_path / "bad"
    _records(good, N)  # every example right: the lower bound is 100
    _records(bad, int(round(majority * N)))  # no better than the majority class
    for root, clears in ((good, True), (bad, False)):
        df = over_seeds(load_records(root))
        f = dense_floor(df, "mr", {})
        assert f["constant"] == pytest.approx(majority) and f["floor"] == f["constant"] and f["clears"] is clears
        table = claims_table(df, spec, root)
        row = table.iloc[0]
        if clears:
            assert row["verdict"] == HOLDS
        else:
            assert row["verdict"] == INCONCLUSIVE and row["ours"] == "n/a"
            assert row["reason"].startswith("dense baseline below its floor: accuracy ")
            assert "a constant predictor: majority class" in row["reason"]
    # a stated floor above what dense reaches: inconclusive too, and the table says where it came from
    df = over_seeds(load_records(good))
    assert dense_floor(df, "mr", {"dense_floors": {"mr": 1.0}})["clears"] is False
    row = claims_table(df, {**spec, "dense_floors": {"mr": 1.0}}, good).iloc[0]
    assert row["verdict"] == INCONCLUSIVE and "(stated in dense_floors)" in row["reason"]
    table = floors_table(df, {"dense_floors": {"mr": 0.5}})
    assert list(table["task"]) == ["mr"] and table.iloc[0]["stated"] == 50.0 and bool(table.iloc[0]["clears"])


def test_a_profile_judges_only_the_claims_it_names_by_id(tmp_path):
    """`ids` in the claims experiment (claims_glue judges C1 alone): the other claims get no row, where
    they would read `inconclusive` about tasks the profile never ran; an unknown id is refused."""
    from harness.errors import HarnessError

    claim = {"source": "s", "statement": "fast", "paper": "2x",
             "rule": {"measure": "speedup_within", "method": "ltp", "at_least": 1.5}}
    spec = {"claims": [{"id": "A", **claim}, {"id": "B", **claim}]}
    _records(tmp_path, N)
    df = over_seeds(load_records(tmp_path))
    assert list(claims_table(df, spec, tmp_path)["claim"]) == ["A", "B"]
    check_claims({**spec, "ids": ["B"]}, "test")
    assert list(claims_table(df, {**spec, "ids": ["B"]}, tmp_path)["claim"]) == ["B"]
    with pytest.raises(HarnessError, match=r"ids names \['Z'\], which are not claims"):
        check_claims({**spec, "ids": ["Z"]}, "test")


def test_the_schema_states_floors_for_the_metrics_a_constant_says_nothing_about():
    cfg = load_config("default", [])
    assert {"cola", "stsb", "squad"} <= set(cfg["dense_floors"])
    assert all(0 < v < 1 for v in cfg["dense_floors"].values())


def test_the_hugging_face_reference_is_compared_with_dense_over_its_seeds(tmp_path):
    """Each reference fine-tune's JSON (results/reference/<task>/seed<s>.json) beside dense: agreement when the
    references' mean lies within dense's seed spread (a t prediction interval); none with one dense seed."""
    from scipy import stats

    from harness.storage import write_json

    root = tmp_path / "results"
    for seed, right in ((0, 36), (1, 33), (2, 39)):  # dense at 90, 82.5, 97.5: sd 7.5 points
        _record(root, "dense", "dense", "none", 1.0, np.arange(N) < right, 0.9, seed=seed)
    df = over_seeds(load_records(root))
    cfg = {"results_dir": str(root)}
    assert floors_table(df, cfg).iloc[0]["reference_seeds"] == 0  # no reference ran
    write_json(root / "reference" / "mr" / "seed0.json", {"kind": "hf_reference", "metrics": {"accuracy": 0.85}})
    row = floors_table(df, cfg).iloc[0]
    half = stats.t.ppf(0.975, 2) * 7.5 * np.sqrt(1 / 3 + 1)
    assert row["dense_seeds"] == 3 and row["reference"] == pytest.approx(85.0) and row["reference_seeds"] == 1
    assert row["agreement_half_width"] == pytest.approx(half) and bool(row["agrees"]) is True
    write_json(root / "reference" / "mr" / "seed0.json", {"kind": "hf_reference", "metrics": {"accuracy": 0.2}})
    assert bool(floors_table(df, cfg).iloc[0]["agrees"]) is False  # 70 points below dense: something is broken
    one = over_seeds(load_records(root)[lambda d: d["seed"] == 0])
    assert floors_table(one, cfg).iloc[0]["agrees"] is None


def test_reference_seeds_add_a_reference_job_per_task_and_seed(tmp_path):
    from harness.run.plan import reference_outputs

    cfg = load_config("smoke", [f"results_dir={tmp_path}/r", f"work_dir={tmp_path}/w", "data_dir=",
                                "reference_seeds=[0, 1]"])
    from harness.run.plan import resolve_tasks

    tasks = resolve_tasks(cfg)  # mr, and stsb where a data directory is set
    assert reference_outputs(cfg) == [f"{tmp_path}/r/reference/{t}/seed{s}.json" for t in tasks for s in (0, 1)]
    assert reference_outputs({**cfg, "reference_seeds": []}) == []
