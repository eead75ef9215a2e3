"""Window logits -> one answer per question (SQuAD post-processing).

For each question, over all of its windows: the `n_best` (20) highest start
and end logits of each window are paired; a pair is a candidate when both
tokens lie in the context, the end is not before the start and the span is
at most `max_answer_tokens` (30) tokens long; its score is start + end logit.
The best candidate over the question's windows wins and its characters are
cut from the context through the window's offsets. For SQuAD v2.0 the null
answer scores [CLS]'s start + end logit (the lowest over the windows, as in
the reference code) and wins, predicting "" (no answer), when it beats the
best span (threshold 0).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.data.windows import Windows
from harness.model.encoder import SPAN_MASKED

N_BEST = 20
MAX_ANSWER_TOKENS = 30


@dataclass
class SpanAnswer:
    text: str
    score: float  # start + end logit of the chosen span (-inf when no span was valid)
    null_score: float  # [CLS] start + end (lowest over windows)
    window: int  # the window the span came from (-1: none)


def _window_best(start: np.ndarray, end: np.ndarray, offsets, n_best: int, max_tokens: int):
    """(score, first, last) of the best valid span of one window, or None.
    A position without a state (its token dropped and not restored: logit
    `SPAN_MASKED`) is never part of a span."""
    n = len(offsets)
    start, end = start[:n], end[:n]
    usable = np.array([o is not None for o in offsets]) & (start > SPAN_MASKED / 2) & (end > SPAN_MASKED / 2)
    top_s = np.argsort(-start, kind="stable")[:n_best]
    top_e = np.argsort(-end, kind="stable")[:n_best]
    best = None
    for s in top_s:
        if not usable[s]:
            continue
        for e in top_e:
            if not usable[e] or e < s or e - s + 1 > max_tokens:
                continue
            score = float(start[s] + end[e])
            if best is None or score > best[0]:
                best = (score, int(s), int(e))
    return best


def best_answers(windows: Windows, start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray],
                 version: str, n_best: int = N_BEST, max_answer_tokens: int = MAX_ANSWER_TOKENS) -> list[SpanAnswer]:
    """One `SpanAnswer` per question of `windows`, in question order;
    `start_logits[w]` / `end_logits[w]` are window w's logits (at least its length)."""
    out = [SpanAnswer("", -np.inf, np.inf, -1) for _ in range(windows.n_questions)]
    for w, q in enumerate(windows.question):
        ans, offsets = out[q], windows.offsets[w]
        ans.null_score = min(ans.null_score, float(start_logits[w][0] + end_logits[w][0]))
        found = _window_best(np.asarray(start_logits[w]), np.asarray(end_logits[w]), offsets, n_best,
                             max_answer_tokens)
        if found is not None and found[0] > ans.score:
            score, s, e = found
            context = windows.examples[q].context
            ans.text, ans.score, ans.window = context[offsets[s][0]:offsets[e][1]], score, w
    if version == "2.0":
        for ans in out:
            if ans.null_score > ans.score:
                ans.text = ""
    return out
