"""The three padding protocols the papers disagree on.

* `sequence` - every example padded to the task's fixed length (PoWER-BERT's
               protocol), dataset order;
* `batch`    - padded to the longest example of its batch, dataset order;
* `none`     - true length: FLOPs count each example's own tokens. For
               batched *execution* (timing at batch > 1, evaluation speed),
               examples are sorted by length and batched so padding is
               minimal; results are returned in dataset order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.data.encoding import Encoded
from harness.errors import HarnessError

PROTOCOLS = ("sequence", "batch", "none")


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    index: np.ndarray  # positions of these rows in the Encoded set

    def to(self, device) -> "Batch":
        return Batch(
            self.input_ids.to(device), self.attention_mask.to(device), self.token_type_ids.to(device), self.index
        )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def collate(enc: Encoded, index: np.ndarray, width: int | None = None, pad_id: int = 0) -> Batch:
    rows = [enc.input_ids[i] for i in index]
    width = width or max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, i in enumerate(index):
        n = len(enc.input_ids[i])
        ids[j, :n] = torch.tensor(enc.input_ids[i])
        types[j, :n] = torch.tensor(enc.token_type_ids[i])
        mask[j, :n] = 1
    return Batch(ids, mask, types, np.asarray(index))


def order(enc: Encoded, protocol: str) -> np.ndarray:
    if protocol not in PROTOCOLS:
        raise HarnessError(f"unknown padding protocol {protocol!r}", f"use one of {', '.join(PROTOCOLS)}")
    if protocol == "none":
        return np.argsort(enc.lengths, kind="stable")
    return np.arange(len(enc))


def make_batches(enc: Encoded, protocol: str, seq_len: int, batch_size: int) -> list[Batch]:
    idx = order(enc, protocol)
    width = seq_len if protocol == "sequence" else None
    return [collate(enc, idx[s : s + batch_size], width) for s in range(0, len(idx), batch_size)]


def padded_lengths(lengths: np.ndarray, protocol: str, seq_len: int, batch_size: int) -> np.ndarray:
    """Per-example row width each protocol computes the dense model at."""
    lengths = np.asarray(lengths)
    if protocol == "sequence":
        return np.full_like(lengths, seq_len)
    if protocol == "none":
        return lengths.copy()
    if protocol == "batch":
        out = np.empty_like(lengths)
        for s in range(0, len(lengths), batch_size):
            out[s : s + batch_size] = lengths[s : s + batch_size].max()
        return out
    raise HarnessError(f"unknown padding protocol {protocol!r}", f"use one of {', '.join(PROTOCOLS)}")
