"""Tokenization: examples -> token ids, once, outside any timed region.

Every example is truncated to the task's `seq_len` under every padding
protocol, so protocols differ only in padding and the dense model's
predictions do not depend on the protocol.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.input_ids)

    def subset(self, index) -> "Encoded":
        """Rows `index`, as the same type (a subclass keeps its own fields)."""
        index = list(index)
        return dataclasses.replace(
            self,
            input_ids=[self.input_ids[i] for i in index],
            token_type_ids=[self.token_type_ids[i] for i in index],
            labels=self.labels[index],
        )


def _texts(examples):
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    return a, b


def token_type_ids(tokenizer, out) -> list[list[int]]:
    """The segment ids of a tokenizer call, or all zeros when the tokenizer's
    model takes none (`token_type_ids` not in its `model_input_names`:
    RoBERTa, whose one token type is marked by `</s></s>` between the pair,
    not by segment ids): whatever its post-processor writes there must not
    index a one-row token-type embedding."""
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ["token_type_ids"]):
        return list(out["token_type_ids"])
    return [[0] * len(ids) for ids in out["input_ids"]]


def encode_examples(tokenizer, examples, max_length: int, regression: bool) -> Encoded:
    a, b = _texts(examples)
    if not a:
        return Encoded([], [], np.zeros(0))
    out = tokenizer(a, b, truncation=True, max_length=max_length, return_token_type_ids=True)
    labels = np.array([e.label for e in examples], dtype=np.float32 if regression else np.int64)
    return Encoded(list(out["input_ids"]), token_type_ids(tokenizer, out), labels)


LENGTH_CHUNK = 10_000  # texts tokenized at once by token_lengths


def token_lengths(tokenizer, examples, chunk: int = LENGTH_CHUNK) -> list[int]:
    """Untruncated token counts, [CLS] and [SEP] (RoBERTa: <s> and both </s>) included.

    Tokenized `chunk` texts at a time and only the counts kept: the ids of a
    whole untruncated corpus at once (Yelp's 560,000 reviews) take tens of GB."""
    a, b = _texts(examples)
    out: list[int] = []
    for i in range(0, len(a), chunk):
        ids = tokenizer(a[i:i + chunk], None if b is None else b[i:i + chunk], truncation=False,
                        verbose=False)["input_ids"]
        out += [len(x) for x in ids]
    return out
