"""SQuAD questions -> overlapping 384-token windows the encoder reads.

The windowing users expect from BERT's SQuAD code (and Hugging Face's
`run_qa.py`): the question, truncated to 64 tokens, then as much of the
context as fits in 384 tokens ([CLS] question [SEP] context [SEP]; RoBERTa:
<s> question </s></s> context </s>, all from the tokenizer); a context
that does not fit continues in further windows that overlap the previous one
by 128 tokens (`stride`, the overlap, as in `run_qa.py`'s `doc_stride`).
Only the context is ever truncated. Every window keeps, per token, the
character span it covers in the context (None outside the context), so a
predicted token span maps back to context text, and the question it belongs
to. For training, each window is labelled with the answer's first and last
token, or [CLS] (0, 0) where the answer is not inside it (and for an
unanswerable question).

`Windows` is an `Encoded` (one row per window), so padding protocols,
batching and timing treat windows like any other examples; per-question
results (predictions, FLOPs and time = the sum over a question's windows)
are gathered by `question` in `harness.train.spans`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from harness.data.encoding import Encoded, token_type_ids
from harness.data.squad import QAExample
from harness.errors import HarnessError

MAX_LENGTH = 384
STRIDE = 128  # overlap between consecutive windows of one context
MAX_QUESTION_TOKENS = 64


@dataclass
class Windows(Encoded):
    """Encoded windows; `labels` [W, 2] are the (start, end) token of the answer in each window."""

    question: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [W] question index
    offsets: list[list[tuple[int, int] | None]] = field(default_factory=list)  # per token: context chars
    examples: list[QAExample] = field(default_factory=list)  # the questions, in order

    @property
    def n_questions(self) -> int:
        return len(self.examples)

    def subset(self, index) -> "Windows":
        """Windows `index`; the questions they belong to stay as they are."""
        index = list(index)
        return dataclasses.replace(super().subset(index), question=self.question[index],
                                   offsets=[self.offsets[i] for i in index])


def _fast(tokenizer):
    if not getattr(tokenizer, "is_fast", False):
        raise HarnessError(
            f"span tasks need a fast tokenizer (character offsets), got {type(tokenizer).__name__}",
            "use a backbone whose tokenizer has a tokenizer.json, or backbone.tokenizer: vocab:<vocab.txt>",
        )
    return tokenizer


def truncate_question(tokenizer, question: str, limit: int = MAX_QUESTION_TOKENS) -> str:
    """The question cut after its `limit`-th token (at that token's last character)."""
    out = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = out["offset_mapping"]
    if len(offsets) <= limit:
        return question
    return question[: offsets[limit - 1][1]]


def _answer_tokens(offsets: list[tuple[int, int] | None], answer_start: int, answer_end: int) -> tuple[int, int]:
    """(first, last) token of the window covering [answer_start, answer_end)
    characters, or (0, 0) when the window does not hold the whole answer."""
    ctx = [i for i, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > answer_start or offsets[ctx[-1]][1] < answer_end:
        return 0, 0
    first = next(i for i in ctx if offsets[i][1] > answer_start)
    last = next(i for i in reversed(ctx) if offsets[i][0] < answer_end)
    return first, max(first, last)


def encode_windows(tokenizer, examples: list[QAExample], max_length: int = MAX_LENGTH, stride: int = STRIDE,
                   max_question_tokens: int = MAX_QUESTION_TOKENS) -> Windows:
    """Every question's windows, in question order (see the module doc)."""
    tok = _fast(tokenizer)
    if not examples:
        return Windows([], [], np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64), [], [])
    questions = [truncate_question(tok, ex.question, max_question_tokens) for ex in examples]
    out = tok(
        questions,
        [ex.context for ex in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        padding=False,
    )
    owner = np.asarray(out["overflow_to_sample_mapping"], dtype=np.int64)
    offsets: list[list[tuple[int, int] | None]] = []
    labels = np.zeros((len(owner), 2), dtype=np.int64)
    for w, q in enumerate(owner):
        seq = out.sequence_ids(w)
        offs = [tuple(o) if s == 1 else None for o, s in zip(out["offset_mapping"][w], seq)]
        offsets.append(offs)
        ex = examples[q]
        if ex.answers:  # train on the first gold answer, as the reference code does
            a = ex.answers[0]
            labels[w] = _answer_tokens(offs, a.start, a.start + len(a.text))
    return Windows(list(out["input_ids"]), token_type_ids(tok, out), labels, owner, offsets, list(examples))
