"""PoWER-BERT plugin: significance, soft/hard extraction, counts, end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.plugin import rank_tokens
from methods.power_bert import PowerBertPolicy, counts_from_mass, significance

from .conftest import hand_state, random_batch


def _state(probs: torch.Tensor, mask: torch.Tensor) -> object:
    return hand_state(probs, mask, hidden=torch.ones(*mask.shape, 4))


def _probs(b, h, n, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, h, n, n, generator=g)
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    scores = scores.masked_fill(~mask[:, None, None, :], -1e9)
    probs = scores.softmax(-1)
    return probs, mask


def test_significance_uses_real_query_rows_only():
    probs, mask = _probs(1, 3, 9, [6])
    garbage = probs.clone()
    garbage[:, :, 6:, :] = 5.0  # padded query rows must not count
    s = significance(_state(garbage, mask))
    expected = probs[0, :, :6, :6].sum((0, 1))
    assert torch.allclose(s[0, :6], expected)
    assert torch.isinf(s[0, 6:]).all() and (s[0, 6:] < 0).all()
    # same scores as the unpadded example alone
    alone = significance(_state(probs[:, :, :6, :6].contiguous(), mask[:, :6]))
    assert torch.allclose(alone[0], s[0, :6])


def test_exclude_self_drops_diagonal():
    probs, mask = _probs(1, 2, 5, [5])
    s = significance(_state(probs, mask))
    s_x = significance(_state(probs, mask), exclude_self=True)
    diag = probs[0].diagonal(dim1=-2, dim2=-1).sum(0)
    assert torch.allclose(s - s_x, diag[None])


def _designed_probs(n, favourites, length=None):
    """Every real query attends mostly to `favourites` (in decreasing weight)."""
    length = length or n
    probs = torch.full((1, 1, n, n), 0.0)
    base = torch.full((length,), 0.01)
    for i, f in enumerate(favourites):
        base[f] = 1.0 - 0.1 * i
    base = base / base.sum()
    probs[0, 0, :, :length] = base
    mask = torch.arange(n)[None, :] < length
    return probs, mask


def test_hard_keeps_cls_plus_top_in_original_order():
    probs, mask = _designed_probs(10, [7, 2, 5, 9])
    st = _state(probs, mask)
    pol = PowerBertPolicy(2, 16, counts=[4, 2]).eval()
    pol.after_attention(0, st)
    # [CLS] + the 3 most attended (7, 2, 5), in original order
    assert st.positions[0].tolist() == [0, 2, 5, 7]
    assert st.hidden.shape[1] == 4


def test_hard_short_example_keeps_all_real_tokens_and_no_padding():
    probs, mask = _designed_probs(10, [3], length=4)
    probs2, _ = _designed_probs(10, [7, 2, 5, 9])
    st = _state(torch.cat([probs, probs2]), torch.cat([mask, torch.ones(1, 10, dtype=torch.bool)]))
    pol = PowerBertPolicy(2, 16, counts=[6, 2]).eval()
    pol.after_attention(0, st)
    assert st.mask.sum(1).tolist() == [4, 6]  # 4 real tokens (< k = 6): all kept, no padding
    assert st.positions[0, :4].tolist() == [0, 1, 2, 3]
    assert st.hidden.shape[1] == 6


def test_ranks_cls_first_padding_last():
    probs, mask = _designed_probs(8, [5, 1], length=6)
    state = _state(probs, mask)
    r = rank_tokens(significance(state), state.mask)[0]  # what the policy ranks by
    assert r[0] == 0 and r[5] == 1 and r[1] == 2
    assert sorted(r[6:].tolist()) == [6, 7]


def test_soft_weights_follow_ranks():
    probs, mask = _designed_probs(8, [5, 1, 3], length=6)
    st = _state(probs, mask)
    pol = PowerBertPolicy(2, 8, soft=True, lr_scale=10.0).train()
    with torch.no_grad():
        pol.retention_raw[0] = torch.tensor([0.9, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0]) / 10.0
    pol.after_attention(0, st)
    h = st.hidden[0, :, 0]
    state = _state(probs, mask)
    ranks = rank_tokens(significance(state), state.mask)[0]
    assert float(h[0]) == 1.0  # [CLS] weight fixed to 1
    assert [float(h[i]) for i in (5, 1, 3)] == pytest.approx([0.9, 0.5, 0.25])
    others = [i for i in range(6) if int(ranks[i]) >= 4]
    assert all(h[i] == 0.0 for i in others)
    assert (h[6:] == 1.0).all()  # padding untouched (it never feeds real tokens)
    assert st.hidden.shape[1] == 8  # nothing removed in the soft stage


def test_soft_projection_penalty_and_gradient_scale():
    pol = PowerBertPolicy(3, 6, lam=0.01, soft=True, lr_scale=100.0).train()
    with torch.no_grad():
        pol.retention_raw.fill_(0.02)  # r = 2 > 1: must be clipped back to 1
        pol.retention_raw[1, 0] = -0.01  # r < 0: clipped to 0
    probs, mask = _designed_probs(6, [2])
    pol.after_attention(0, _state(probs, mask))
    r = pol.retention().detach()
    assert r.max() <= 1.0 and r.min() >= 0.0 and float(r[1, 0]) == 0.0 and float(r[0, 0]) == pytest.approx(1.0)
    loss = pol.extra_loss(None)
    expected = 0.01 * sum((i + 1) * float(r[i].sum()) for i in range(3))
    assert float(loss) == pytest.approx(expected)
    loss.backward()
    # natural-size gradient lambda * l per weight (the learning rate is scaled, not the gradient)
    g = pol.retention_raw.grad
    for i in range(3):
        assert torch.allclose(g[i], torch.full_like(g[i], 0.01 * (i + 1)))
    assert pol.eval().extra_loss(None) is None


def test_counts_rounded_non_increasing_at_least_one():
    assert counts_from_mass([5.4, 5.6, 7.2, 2.5, 0.2]) == [5, 5, 5, 3, 1]
    assert counts_from_mass([5.4, 5.6, 7.2, 2.5, 0.2], "floor") == [5, 5, 5, 2, 1]
    pol = PowerBertPolicy(2, 5, lr_scale=4.0)
    with torch.no_grad():
        pol.retention_raw[0] = torch.tensor([1.0, 0.5, 0.0, 0.0]) / 4.0
        pol.retention_raw[1] = torch.tensor([1.0, 1.0, 1.0, 0.6]) / 4.0
    assert pol.mass() == pytest.approx([2.5, 4.6])
    assert pol.learned_counts() == [3, 3]


def test_hard_counts_per_row(tiny_model):
    """Per-layer counts cap each row at its own length; padding independence is
    checked for every method in tests/test_methods.py."""
    tiny_model.policy = PowerBertPolicy(3, 64, counts=[20, 9, 4])
    tiny_model.eval()
    ids, mask = random_batch(4, 48, lengths=[40, 9, 31, 16], seed=5)
    with torch.no_grad():
        batch = tiny_model(ids, mask)
    assert batch.trace.n_ffn.tolist() == [[20, 9, 4], [9, 9, 4], [20, 9, 4], [16, 9, 4]]
    assert batch.trace.w_ffn[:, 0].tolist() == [20] * 4


def test_train_and_operating_points_end_to_end(smoke_context):
    from harness.measure.flops import trace_flops
    from harness.train.inference import evaluate
    from harness.plugin.registry import get_method

    ctx = smoke_context(
        "power_bert",
        [
            "train.max_train_examples=16",
            "train.max_validation_examples=8",
            "methods_config={power_bert: {lambdas: [0.0, 0.01, 0.1, 1.0], retention_lr: 1.0, soft_steps: 2, hard_steps: 1}}",
        ],
    )
    plugin = get_method("power_bert")
    log = plugin.train(ctx)
    points = list(plugin.operating_points(ctx))
    assert [p.name for p in points] == ["lambda=0", "lambda=0.01", "lambda=0.1", "lambda=1"]
    val = ctx.encoded("validation")
    flops = []
    for p in points:
        counts = p.knobs["counts"]
        assert counts == log["points"][p.name]["counts"] == p.notes["counts"]
        assert all(a >= b >= 1 for a, b in zip(counts, counts[1:]))
        assert not p.model.training and not p.model.policy.soft
        run = evaluate(p.model, ctx.task, val, "sequence", 8)
        assert (run.trace.n_ffn <= np.array(counts)[None, :]).all()
        flops.append(trace_flops(run.trace, "sequence").mean())
    # a larger penalty never keeps more tokens here
    totals = [sum(p.knobs["counts"]) for p in points]
    assert totals[-1] < totals[0]
    assert all(v["soft_steps"] == 2 and v["retrain_steps"] == 1 for v in log["points"].values())
    assert flops[-1] < flops[0]
