"""SQuAD's official metrics, in the harness: exact match and token F1.

The metric libraries fetch SQuAD's evaluation script from the hub, which
fails offline, so the official v1.1 / v2.0 scripts' rules are written out
here: answers are normalised (lower case, punctuation and the articles
a/an/the removed, whitespace collapsed), a prediction scores the maximum over
its gold answers, F1 is over bags of normalised tokens. v2.0 adds the
unanswerable questions: their gold is the empty answer (and a gold answer
that normalises to nothing is dropped, as in the v2.0 script), so only an
empty prediction scores on them, and the scores are broken down into
HasAns / NoAns. Scores are fractions in [0, 1] like every other harness
metric (the official scripts print 100x).
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

from harness.errors import HarnessError

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official normalisation: lower, drop punctuation, drop articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str, version: str = "1.1") -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        # v2.0: two empty answers agree; v1.1's script scores any empty side 0
        return float(pred == ref) if version == "2.0" else 0.0
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def gold_texts(answers: Sequence[str], version: str) -> list[str]:
    """The answers a prediction is scored against: v2.0 drops answers that
    normalise to nothing and scores an unanswerable question against ''."""
    if version == "2.0":
        kept = [a for a in answers if normalize_answer(a)]
        return kept or [""]
    return list(answers)


def question_scores(prediction: str, answers: Sequence[str], version: str) -> tuple[float, float]:
    """(exact match, F1) of one prediction: the maximum over its gold answers."""
    golds = gold_texts(answers, version)
    if not golds:
        raise HarnessError("a SQuAD v1.1 question has no gold answer",
                           "every v1.1 question needs at least one answer (v2.0 marks unanswerable ones)")
    return max(exact_match(prediction, g) for g in golds), max(token_f1(prediction, g, version) for g in golds)


def squad_metrics(predictions: Sequence[str], answers: Sequence[Sequence[str]], version: str) -> dict[str, float]:
    """Mean exact match and F1 over questions; for v2.0 also over the answerable
    (HasAns: the question has gold answers, as the official script decides)
    and unanswerable (NoAns) questions; a group without questions has no value
    (NaN, as the official script leaves its keys out)."""
    if len(predictions) != len(answers):
        raise HarnessError(f"{len(predictions)} SQuAD predictions for {len(answers)} questions",
                           "pass one predicted answer text per question")
    if not predictions:
        raise HarnessError("no SQuAD predictions to score", "evaluate on a non-empty evaluation split")
    scored = [question_scores(p, a, version) for p, a in zip(predictions, answers)]
    mean = lambda xs: float(sum(xs) / len(xs)) if xs else math.nan  # noqa: E731
    out = {"exact_match": mean([em for em, _ in scored]), "f1": mean([f1 for _, f1 in scored])}
    if version == "2.0":
        has = [bool(a) for a in answers]
        for name, want in (("has_answer", True), ("no_answer", False)):
            group = [s for s, h in zip(scored, has) if h == want]
            out[f"{name}_exact_match"] = mean([em for em, _ in group])
            out[f"{name}_f1"] = mean([f1 for _, f1 in group])
    return out
