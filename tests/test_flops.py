"""The analytic FLOPs counter agrees with FlopCounterMode on real runs (0.1%)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness.measure.flop_reference import count_flops
from harness.measure.flops import dense_macs, trace_flops, trace_macs
from harness.model.policy import Exit, Policy, select_tokens
from harness.model.structure import prune_ffn, prune_heads

from .conftest import random_batch

TOL = 1e-3


def _agree(model, ids, mask, protocol):
    with torch.no_grad():
        measured = count_flops(lambda: model(ids, mask))
        out = model(ids, mask)
    analytic = trace_flops(out.trace, protocol).sum()
    assert abs(analytic - measured) / measured < TOL, (analytic, measured)
    return out


@pytest.mark.parametrize("length", [4, 17, 64, 128])
def test_dense_single_example(tiny_model, length):
    ids, mask = random_batch(1, length)
    out = _agree(tiny_model, ids, mask, "none")
    arch = out.trace.arch
    assert trace_macs(out.trace, "none")[0] == pytest.approx(dense_macs(np.array([length]), arch)[0])


def test_dense_padded_batch_counts_physical_width(tiny_model):
    ids, mask = random_batch(4, 30, lengths=[30, 12, 5, 21])
    out = _agree(tiny_model, ids, mask, "batch")
    # under `none` each example counts only its own tokens
    none = trace_macs(out.trace, "none")
    assert none[2] < none[1] < none[3] < none[0]


def test_dense_on_minilm_shape(minilm):
    from harness.model.encoder import BertClassifier, BertShape, load_hf_bert_weights

    m = BertClassifier(BertShape.from_dict(minilm.config.to_dict()), 2)
    load_hf_bert_weights(m, minilm.state_dict())
    m.eval()
    ids, mask = random_batch(1, 64, vocab=30000)
    _agree(m, ids, mask, "none")


class DropAndExit(Policy):
    """Test policy: halves the tokens after each attention sublayer (keeping
    [CLS]) and lets rows with at most `exit_below` tokens left exit after layer 1."""

    def __init__(self, hidden: int, labels: int, exit_below: int = 5):
        super().__init__()
        self.exit_below = exit_below
        self.exit_head = nn.Linear(hidden, labels)

    def needs_attention_probs(self, layer):
        return True

    def after_attention(self, layer, state):
        # attention received from real query rows only, so padding cannot change the choice
        score = (state.attn_probs * state.mask[:, None, :, None]).sum((1, 2))
        score = score.masked_fill(~state.mask, -1)
        score[:, 0] = float("inf")
        k = (state.lengths + 1) // 2
        rank = score.argsort(1, descending=True).argsort(1)
        select_tokens(state, rank < k.unsqueeze(1))

    def after_layer(self, layer, state):
        if layer != 1:
            return None
        logits = self.exit_head(state.hidden[:, 0])
        state.recorder.add_extra_macs(state.rows, self.exit_head.in_features * self.exit_head.out_features)
        return Exit(state.lengths <= self.exit_below, logits)


@pytest.mark.parametrize("lengths", [[23], [40, 9, 31, 16, 2]])
def test_pruned_and_exiting_run(tiny_model, lengths):
    tiny_model.policy = DropAndExit(32, 3)
    ids, mask = random_batch(len(lengths), max(lengths), lengths=lengths)
    protocol = "none" if len(lengths) == 1 else "batch"
    out = _agree(tiny_model, ids, mask, protocol)
    t = out.trace
    assert (t.n_ffn[:, 0] < t.n_attn[:, 0]).any()
    if len(lengths) > 1:
        # after two halvings: 40->10, 9->3, 31->8, 16->4, 2->1 tokens
        assert t.exit_layer.tolist() == [3, 2, 3, 2, 2]
        assert t.final_head.tolist() == [True, False, True, False, False]


def test_pruned_single_rows_match_real_counts(tiny_model):
    """`none` accounting from a batch equals running each example alone."""
    tiny_model.policy = DropAndExit(32, 3)
    lengths = [40, 9, 31]
    ids, mask = random_batch(3, 40, lengths=lengths)
    with torch.no_grad():
        batch = tiny_model(ids, mask).trace
    for i, n in enumerate(lengths):
        with torch.no_grad():
            alone = tiny_model(ids[i : i + 1, :n], mask[i : i + 1, :n]).trace
        assert alone.n_attn[0].tolist() == batch.n_attn[i].tolist()
        assert alone.n_ffn[0].tolist() == batch.n_ffn[i].tolist()
        assert trace_macs(alone, "none")[0] == pytest.approx(trace_macs(batch, "none")[i])
        assert trace_macs(alone, "none")[0] <= trace_macs(batch, "batch")[i]


def test_structurally_pruned_model(tiny_model):
    prune_heads(tiny_model.layers[0], [1, 3])
    prune_heads(tiny_model.layers[1], [])
    prune_ffn(tiny_model.layers[2], list(range(10)))
    ids, mask = random_batch(1, 25)
    _agree(tiny_model, ids, mask, "none")


def test_dense_eager_matches_fvcore(tiny_model):
    """fvcore (MAC = 1, adds LayerNorm, cannot see SDPA) as a second reference on the eager path."""
    from fvcore.nn import FlopCountAnalysis

    class Probs(Policy):
        def needs_attention_probs(self, layer):
            return True

    class Logits(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            return self.m(ids, mask).logits

    tiny_model.policy = Probs()
    ids, mask = random_batch(1, 20)
    analysis = FlopCountAnalysis(Logits(tiny_model), (ids, mask))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    fv_macs = analysis.total() - by_op.get("layer_norm", 0)
    with torch.no_grad():
        ours = trace_macs(tiny_model(ids, mask).trace, "none")[0]
    assert by_op["matmul"] > 0 and fv_macs == pytest.approx(ours, rel=1e-3)


class Drop(DropAndExit):
    """DropAndExit without the exit: a token pruner a span head can follow."""

    def after_layer(self, layer, state):
        return None


@pytest.mark.parametrize("restore", [True, False])
def test_span_head_counts_every_position_it_reads(tiny_span_model, restore):
    lengths = [40, 9, 31]
    ids, mask = random_batch(3, 40, lengths=lengths)
    out = _agree(tiny_span_model, ids, mask, "batch")  # dense: the head on all 40 positions of each row
    assert out.logits.shape == (3, 40, 2)
    assert out.trace.head_tokens.tolist() == lengths and out.trace.head_width.tolist() == [40] * 3
    dense = trace_macs(out.trace, "none")
    assert dense == pytest.approx(dense_macs(np.array(lengths), out.trace.arch))
    tiny_span_model.policy, tiny_span_model.restore_dropped = Drop(32, 2), restore
    out = _agree(tiny_span_model, ids, mask, "batch")
    t = out.trace
    assert (t.n_ffn[:, -1] < t.n_attn[:, 0]).all()  # tokens were dropped
    real = t.head_tokens.tolist()
    if restore:  # every real token has a state again (dropped ones their last), and only those
        assert real == lengths
        assert (out.logits[..., 0] > -1e3).sum(1).tolist() == lengths
    else:  # only the tokens that survived can be answers
        assert real == t.n_ffn[:, -1].tolist()
        assert (out.logits[..., 0] > -1e3).sum(1).tolist() == real


def test_span_head_drop_and_restore_writes_back_last_states(tiny_span_model):
    from harness.model.encoder import restore_tokens

    tiny_span_model.policy = Drop(32, 2)
    ids, mask = random_batch(1, 16)
    with torch.no_grad():
        state = tiny_span_model.encode(ids, mask, restore=True)
        hidden, valid = restore_tokens(state, 16, with_valid=True)
    assert valid.all() and len(state.dropped) == 3  # one drop per layer
    for d in state.dropped:  # each dropped token keeps the state stored when dropped
        assert d.gone.any()
        r = d.rows.unsqueeze(1).expand_as(d.positions)
        assert torch.equal(hidden[r[d.gone], d.positions[d.gone]], d.states[d.gone])
    # dropped after layer 0's attention: the state it entered layer 0 with (LAT keeps the last whole layer's
    # output, never a half-computed layer)
    d = state.dropped[0]
    r = d.rows.unsqueeze(1).expand_as(d.positions)
    with torch.no_grad():
        emb = tiny_span_model.embeddings(ids, torch.zeros_like(ids))
    assert torch.allclose(d.states[d.gone], emb[r[d.gone], d.positions[d.gone]])
    assert torch.equal(hidden[0, state.positions[0]], state.hidden[0])
