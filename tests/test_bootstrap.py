"""Bootstrap intervals over the eval examples (harness.measure.bootstrap) and their use in records and tables."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import bootstrap as scipy_bootstrap

from harness.data.tasks import get_task
from harness.errors import HarnessError
from harness.measure.bootstrap import BootstrapSpec, metric_interval, paired_difference, paired_statistic
from harness.measure.metrics import compute_metrics
from harness.measure import bootstrap as B

from .records import record


def _classified(n: int, rate: float, seed: int = 0, classes: int = 2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    wrong = rng.random(n) > rate
    p = np.where(wrong, (y + rng.integers(1, classes, n)) % classes, y)
    return p, y


def _width(iv) -> float:
    return iv[1] - iv[0]


# --------------------------------------------------------------------------- the metrics, vectorised


@pytest.mark.parametrize("task,classes", [("mr", 2), ("mrpc", 2), ("cola", 2), ("mnli", 3), ("stsb", 0)])
def test_resampled_metrics_score_each_resample_as_compute_metrics_would(task, classes):
    """The bootstrap scores all resamples at once with compute_metrics' own functions: each row of a
    resampled batch gets the number compute_metrics gives that resample on its own."""
    t = get_task(task)
    rng = np.random.default_rng(1)
    if classes:
        p, y = _classified(120, 0.7, 1, classes)
    else:
        y = rng.random(120) * 5
        p = np.round(y + rng.normal(0, 1, 120))
    cols = B._columns(t, p, y)
    idx = rng.integers(0, 120, (6, 120))
    batched = {m: fn(*(a[idx] for a in cols.arrays)) for m, fn in cols.metrics.items()}
    for row in range(6):
        want = compute_metrics(t, p[idx[row]], y[idx[row]])
        assert {m: float(v[row]) for m, v in batched.items()} == pytest.approx(want, abs=1e-12)


# --------------------------------------------------------------------------- metric_interval


@pytest.mark.parametrize("task", ["mr", "mrpc", "cola", "stsb"])
def test_interval_contains_the_point_estimate(task):
    t = get_task(task)
    if t.is_regression:
        rng = np.random.default_rng(1)
        y = rng.random(400) * 5
        p = y + rng.normal(0, 1.5, 400)
    else:
        p, y = _classified(400, 0.8, 1)
    point = compute_metrics(t, p, y)
    iv = metric_interval(t, p, y)
    assert set(iv) == set(point)
    for name, (low, high) in iv.items():
        assert low < point[name] < high, (name, low, point[name], high)


def test_deterministic_under_the_same_seed_and_not_across_seeds():
    p, y = _classified(500, 0.8)
    a = metric_interval("mr", p, y, BootstrapSpec(seed=3))
    assert metric_interval("mr", p, y, BootstrapSpec(seed=3)) == a
    assert metric_interval("mr", p, y, BootstrapSpec(seed=4)) != a
    pa, pb = _classified(500, 0.8, 1)[0], _classified(500, 0.7, 2)[0]
    d = paired_difference("mr", "accuracy", pa, pb, y, BootstrapSpec(seed=3))
    assert paired_difference("mr", "accuracy", pa, pb, y, BootstrapSpec(seed=3)) == d


def test_narrower_with_more_examples():
    small = metric_interval("mr", *_classified(200, 0.8))["accuracy"]
    large = metric_interval("mr", *_classified(5000, 0.8))["accuracy"]
    assert _width(large) < 0.5 * _width(small)  # ~1/sqrt(25) = 0.2 of it


def test_confidence_widens_the_interval():
    p, y = _classified(500, 0.8)
    assert _width(metric_interval("mr", p, y, BootstrapSpec(confidence=0.99))["accuracy"]) > \
        _width(metric_interval("mr", p, y, BootstrapSpec(confidence=0.8))["accuracy"])


# --------------------------------------------------------------------------- paired comparisons


def test_paired_interval_of_a_method_against_itself_is_zero():
    p, y = _classified(300, 0.8)
    d = paired_difference("mr", "accuracy", p, p, y)
    assert (d.value, d.low, d.high, d.n) == (0.0, 0.0, 0.0, 300)
    d = paired_difference("cola", "matthews", p, p.copy(), y)
    assert (d.value, d.low, d.high) == (0.0, 0.0, 0.0)


def test_paired_difference_is_the_difference_of_the_metrics():
    p, y = _classified(400, 0.8)
    q = _classified(400, 0.7, 5)[0]
    d = paired_difference("mrpc", "f1", p, q, y)
    want = compute_metrics(get_task("mrpc"), p, y)["f1"] - compute_metrics(get_task("mrpc"), q, y)["f1"]
    assert d.value == pytest.approx(want)
    assert d.low < d.value < d.high


def test_paired_is_narrower_than_unpaired_on_correlated_predictions():
    """b is a with 4% of its answers flipped: the two share their hard examples,
    which a paired interval cancels and an unpaired one (each resampled on its own) does not."""
    p, y = _classified(1000, 0.8)
    rng = np.random.default_rng(9)
    flip = rng.random(1000) < 0.04
    q = np.where(flip, 1 - p, p)
    paired = paired_difference("mr", "accuracy", p, q, y)
    right_a, right_b = (p == y).astype(float), (q == y).astype(float)
    unpaired = scipy_bootstrap((right_a, right_b), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis),
                               n_resamples=1000, paired=False, vectorized=True, method="percentile",
                               rng=np.random.default_rng(0)).confidence_interval
    assert paired.low <= paired.value <= paired.high
    assert paired.high - paired.low < 0.5 * (unpaired.high - unpaired.low)


def test_paired_statistic_combines_several_records_on_the_same_resamples():
    p, y = _classified(300, 0.8)
    q = _classified(300, 0.7, 4)[0]
    # (a - b) + (b - a) is 0 in every resample only if both terms saw the same examples
    c = paired_statistic("mr", "accuracy", [p, q], y, lambda a, b: (a - b) + (b - a))
    assert (c.low, c.high) == (0.0, 0.0)
    with pytest.raises(HarnessError, match="does not match labels"):
        paired_statistic("mr", "accuracy", [p, q[:-1]], y, lambda a, b: a - b)


# --------------------------------------------------------------------------- span tasks: questions


def _squad(n: int, seed: int = 0):
    """n questions, each with 1-3 gold answers; a prediction is a gold answer or a wrong text."""
    rng = np.random.default_rng(seed)
    labels = [[f"answer {i} variant {k}" for k in range(rng.integers(1, 4))] for i in range(n)]
    right = rng.random(n) < 0.6
    preds = [lab[0] if r else "nothing" for lab, r in zip(labels, right)]  # no token in common: F1 0
    return preds, labels, right


def test_span_task_resamples_questions():
    """Each question counts once however many gold answers it has: the SQuAD
    interval is exactly the interval of its per-question 0/1 scores resampled
    as examples (the same indices: same seed, same count)."""
    preds, labels, right = _squad(300)
    iv = metric_interval("squad", preds, labels)
    as_examples = metric_interval("mr", right.astype(int), np.ones(300, int))["accuracy"]
    assert iv["f1"] == pytest.approx(as_examples) and iv["exact_match"] == pytest.approx(as_examples)
    point = compute_metrics(get_task("squad"), preds, labels)
    assert iv["f1"][0] < point["f1"] < iv["f1"][1]


def test_squad_v2_groups_and_paired_difference():
    preds, labels, _ = _squad(200)
    labels = [lab if i % 4 else [] for i, lab in enumerate(labels)]  # every 4th unanswerable
    preds = [p if i % 8 else "" for i, p in enumerate(preds)]
    t = get_task("squad_v2")
    iv = metric_interval(t, preds, labels)
    point = compute_metrics(t, preds, labels)
    assert set(iv) == set(point)
    for name, (low, high) in iv.items():
        assert low <= point[name] <= high, name
    d = paired_difference(t, "has_answer_f1", preds, preds, labels)
    assert (d.low, d.high) == (0.0, 0.0)


def test_bootstrap_cost_at_a_thousand_examples():
    """What every evaluate job pays per record (the CI suite runs ~100 jobs): under 0.5 s at n = 1,000
    on an idle core; the bound here is loose for a loaded CI machine."""
    p, y = _classified(1000, 0.8)
    preds, labels, _ = _squad(1000)
    for task, args in (("mrpc", (p, y)), ("squad", (preds, labels))):
        began = time.perf_counter()
        metric_interval(task, *args)
        assert time.perf_counter() - began < 3.0, task


# --------------------------------------------------------------------------- records and tables


def test_a_record_built_by_the_smoke_path_has_metrics_interval(smoke_context):
    from harness.report.load import load_records
    from harness.run.jobs import evaluate_job

    ctx = smoke_context("dense", ["eval.protocols=[none]", "timing.protocols=[]"])
    evaluate_job(ctx.cfg, "mr", "dense")
    files = sorted((Path(ctx.cfg["results_dir"]) / "records").rglob("*.json"))
    assert files
    for f in files:
        rec = json.loads(f.read_text())
        assert set(rec["metrics_interval"]) == set(rec["metrics"])
        for name, (low, high) in rec["metrics_interval"].items():
            assert low <= rec["metrics"][name] <= high
        per = rec["per_example"]
        assert rec["metrics_interval"] == {k: list(v) for k, v in metric_interval(
            "mr", per["prediction"], per["label"], BootstrapSpec(seed=ctx.cfg["split_seed"])).items()}
        assert rec["provenance"]["bootstrap"]["resamples"] == 1000
        assert rec["provenance"]["bootstrap"]["confidence"] == 0.95
    df = load_records(ctx.cfg["results_dir"])
    assert (df["metric_accuracy_low"] <= df["metric_accuracy"]).all()


def _write(root, rec):
    path = root / "records" / rec["task"] / rec["method"] / rec["operating_point"] / f"{rec['protocol']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def _pair(root, n=400, dense_labels=None):
    p, y = _classified(n, 0.85, 0)
    q = np.where(np.random.default_rng(1).random(n) < 0.1, 1 - p, p)
    lengths = list(range(10, 10 + n))
    t = get_task("mr")
    for method, preds, labels, flops in (("dense", p, dense_labels if dense_labels is not None else y, 2.0),
                                         ("ltp", q, y, 1.0)):
        acc = compute_metrics(t, preds, y)["accuracy"]
        _write(root, record("mr", method, "p", "none", metrics={"accuracy": acc}, validation_metrics={"accuracy": acc},
                            flops=flops, baseline_flops=2.0, n_eval=n,
                            per_example={"length": lengths, "label": labels, "prediction": preds,
                                         "flops": [flops] * n, "baseline_flops": [2.0] * n, "exit_layer": [2] * n}))
    return p, q, y


def test_selected_points_table_shows_the_paired_interval_against_dense(tmp_path):
    from harness.report.load import load_records
    from harness.report.paper_tables import selected_points_table

    p, q, y = _pair(tmp_path)
    table = selected_points_table(load_records(tmp_path), ["ltp"], tolerance=1.0, protocols=("none",))
    row = table.iloc[0]
    d = paired_difference("mr", "accuracy", q, p, y)
    assert row["vs_dense"] == pytest.approx(row["value"] - row["dense"])
    assert (row["vs_dense_low"], row["vs_dense_high"]) == pytest.approx((100 * d.low, 100 * d.high))
    assert row["vs_dense_low"] <= row["vs_dense"] <= row["vs_dense_high"]
    assert "paired bootstrap" in table.attrs["note"]


def test_pairing_records_of_different_examples_is_refused(tmp_path):
    from harness.report.load import load_records
    from harness.report.paper_tables import selected_points_table

    _, _, y = _pair(tmp_path, dense_labels=_classified(400, 0.85, 7)[1])
    with pytest.raises(HarnessError, match="eval examples differ"):
        selected_points_table(load_records(tmp_path), ["ltp"], tolerance=1.0, protocols=("none",))


def test_a_schema_version_4_record_is_read_with_its_interval_computed(tmp_path):
    from harness.report.load import load_records

    p, q, y = _pair(tmp_path)
    path = next((tmp_path / "records" / "mr" / "ltp").rglob("*.json"))
    old = json.loads(path.read_text())
    del old["metrics_interval"], old["split_seed"]
    old["schema_version"] = 4
    path.write_text(json.dumps(old))
    df = load_records(tmp_path).set_index("method")
    low, high = metric_interval("mr", q, y)["accuracy"]
    assert (df.loc["ltp", "metric_accuracy_low"], df.loc["ltp", "metric_accuracy_high"]) == pytest.approx((low, high))
