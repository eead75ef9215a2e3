"""The harness encoder equals transformers.BertModel and its hooks behave."""
from __future__ import annotations

import torch

from harness.model.encoder import BertClassifier, BertShape, load_hf_bert_weights
from harness.model.policy import Policy, select_tokens
from harness.model.structure import prune_ffn, prune_heads, prune_hidden

from .conftest import random_batch


def _harness_from_hf(hf) -> BertClassifier:
    m = BertClassifier(BertShape.from_dict(hf.config.to_dict()), 2)
    assert load_hf_bert_weights(m, hf.state_dict()) == []
    return m.eval()


def test_matches_bertmodel_to_1e5(minilm):
    ours = _harness_from_hf(minilm)
    ids, mask = random_batch(4, 40, vocab=30000, lengths=[40, 31, 7, 19])
    with torch.no_grad():
        ref = minilm(ids, attention_mask=mask)
        state = ours.encode(ids, mask)
        pooled = torch.tanh(ours.pooler(state.hidden[:, 0]))
    real = mask.bool()
    assert (ref.last_hidden_state - state.hidden)[real].abs().max().item() < 1e-5
    assert (ref.pooler_output - pooled).abs().max().item() < 1e-5


class _ProbsEverywhere(Policy):
    def needs_attention_probs(self, layer):
        return True


def test_eager_and_sdpa_paths_agree(tiny_model):
    ids, mask = random_batch(3, 12, lengths=[12, 5, 9])
    with torch.no_grad():
        a = tiny_model(ids, mask).logits
        tiny_model.policy = _ProbsEverywhere()
        b = tiny_model(ids, mask).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_padding_does_not_change_outputs(tiny_model):
    ids, mask = random_batch(1, 9)
    pad_ids = torch.cat([ids, torch.zeros(1, 7, dtype=torch.long)], 1)
    pad_mask = torch.cat([mask, torch.zeros(1, 7, dtype=torch.long)], 1)
    with torch.no_grad():
        assert torch.allclose(tiny_model(ids, mask).logits, tiny_model(pad_ids, pad_mask).logits, atol=1e-5)


def test_head_and_ffn_slicing_equal_zero_gates(tiny_model):
    ids, mask = random_batch(2, 10, lengths=[10, 6])
    layer = tiny_model.layers[1]
    layer.head_gate = torch.tensor([1.0, 0.0, 1.0, 0.0])
    layer.ffn_gate = (torch.arange(64) % 3 != 0).float()
    with torch.no_grad():
        gated = tiny_model(ids, mask).logits
        prune_heads(layer, [0, 2])
        prune_ffn(layer, [i for i in range(64) if i % 3 != 0])
        sliced = tiny_model(ids, mask)
    assert torch.allclose(gated, sliced.logits, atol=1e-5)
    assert sliced.trace.arch.heads == (4, 2, 4)
    assert sliced.trace.arch.ffn[1] == 42


def test_removed_sublayers_and_hidden_slicing_shapes(tiny_model):
    prune_heads(tiny_model.layers[0], [])
    prune_ffn(tiny_model.layers[2], [])
    prune_hidden(tiny_model, list(range(0, 32, 2)))
    ids, mask = random_batch(2, 8)
    with torch.no_grad():
        out = tiny_model(ids, mask)
    arch = out.trace.arch
    assert arch.hidden == 16 and arch.heads[0] == 0 and arch.ffn[2] == 0
    assert out.logits.shape == (2, 3) and torch.isfinite(out.logits).all()


class _KeepFirst(Policy):
    """Keeps the first `k` real tokens after layer 0's attention."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def after_attention(self, layer, state):
        if layer == 0:
            pos = torch.arange(state.mask.shape[1]).unsqueeze(0)
            select_tokens(state, pos < self.k)


def test_token_removal_is_physical_and_traced(tiny_model):
    ids, mask = random_batch(2, 12, lengths=[12, 3])
    tiny_model.policy = _KeepFirst(5)
    with torch.no_grad():
        out = tiny_model(ids, mask, restore=True)
    t = out.trace
    assert t.n_attn[:, 0].tolist() == [12, 3]
    assert t.n_ffn[:, 0].tolist() == [5, 3] and t.w_ffn[:, 0].tolist() == [5, 5]
    assert t.n_attn[:, 1].tolist() == [5, 3]
    # Drop-and-Restore: every original position of row 0 has a state again
    assert out.hidden.shape == (2, 12, 32)
    assert (out.hidden[0].abs().sum(-1) > 0).all()
