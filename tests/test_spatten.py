"""SpAtten: schedule, cumulative score, padding invariance, cascade, head pruning, end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.measure.flop_reference import count_flops
from harness.measure.flops import trace_flops, trace_macs
from methods.spatten import (
    SpAtten,
    SpAttenPolicy,
    apply_cascade_head_pruning,
    cascade_heads,
    default_full_layers,
    head_counts,
    head_importance,
    retain_schedule,
)

from .conftest import hand_state, random_batch


# ---- schedule ------------------------------------------------------------------
def test_schedule_bert_base_and_scaled():
    s = retain_schedule(12, 0.1)
    assert s[:3] == [1.0, 1.0, 1.0] and s[3] < 1.0
    assert s[-1] == pytest.approx(0.1)
    steps = np.diff(s[2:])
    assert np.allclose(steps, steps[0]) and steps[0] < 0  # linear fall after the full layers
    assert [default_full_layers(n) for n in (1, 2, 3, 4, 6, 12, 24)] == [0, 1, 1, 1, 2, 3, 6]
    assert retain_schedule(6, 0.5) == pytest.approx([1, 1, 0.875, 0.75, 0.625, 0.5])
    assert retain_schedule(6, 0.5, full_layers=0)[0] < 1.0
    with pytest.raises(ValueError):
        retain_schedule(6, 0.0)


# ---- the score on hand-made attention --------------------------------------------
_state = hand_state


def _probs_to(targets: dict[int, float], n: int, heads: int = 2) -> torch.Tensor:
    """[1, H, n, n] where every query gives `targets[k]` to key k and the rest to key 0."""
    p = torch.zeros(1, heads, n, n)
    for k, v in targets.items():
        p[..., k] = v
    p[..., 0] = 1.0 - sum(targets.values())
    return p


def test_score_is_cumulative_not_per_layer():
    n = 6
    mask = torch.ones(1, n, dtype=torch.bool)
    # layer 0 keeps all; token 2 gets much attention there. Layer 1 prunes to k = ceil(0.34*6) = 3
    # ([CLS] + 2): token 4 beats token 2 at layer 1 alone, but not cumulatively; token 3 is second.
    policy = SpAttenPolicy([1.0, 0.34])
    st = _state(_probs_to({2: 0.5, 3: 0.2}, n), mask)
    policy.after_attention(0, st)
    st.attn_probs = _probs_to({4: 0.3, 2: 0.1, 3: 0.25}, n)
    policy.after_attention(1, st)
    assert st.positions[0].tolist() == [0, 2, 3]
    # the running score was gathered with the selection: it lines up with the kept tokens
    assert st.scratch["spatten_score"].shape == (1, 3)
    per_layer = SpAttenPolicy([1.0, 0.34]).received(_state(_probs_to({4: 0.3, 2: 0.1, 3: 0.25}, n), mask))
    assert per_layer[0, 4] > per_layer[0, 2]  # a per-layer score would have kept token 4


def test_padded_query_rows_and_keys_do_not_count():
    n = 5
    mask = torch.tensor([[True, True, True, True, False]])
    p = _probs_to({1: 0.2, 2: 0.3}, n)
    p[..., 4] = 0.0  # padded key gets 0 (as the encoder produces)
    p[:, :, 4, :] = 0.0
    p[:, :, 4, 1] = 1.0  # a padded QUERY row pours attention on token 1
    policy = SpAttenPolicy([0.5])  # k = ceil(0.5 * 4) = 2: [CLS] + best
    st = _state(p, mask)
    policy.after_attention(0, st)
    assert st.positions[0, : int(st.lengths[0])].tolist() == [0, 2]


def test_cls_kept_without_attention():
    n = 4
    p = torch.zeros(1, 1, n, n)
    p[..., 1] = 0.5
    p[..., 2] = 0.5
    st = _state(p, torch.ones(1, n, dtype=torch.bool))
    SpAttenPolicy([0.25]).after_attention(0, st)  # k = 1
    assert st.positions[0].tolist() == [0] and int(st.lengths[0]) == 1


# ---- on a real (tiny) model ------------------------------------------------------
def _run(model, ids, mask):
    with torch.no_grad():
        return model(ids, mask)


def test_counts_follow_schedule_and_never_grow(tiny_model):
    r = 0.2
    model = SpAtten().demo_model(tiny_model)
    model.policy = SpAtten.policy_for(model, r, None)
    ratios = model.policy.ratios  # 3 layers: [1, 0.6, 0.2]
    lengths = [57, 12, 33, 40]
    ids, mask = random_batch(4, 57, lengths=lengths, seed=1)
    t = _run(model, ids, mask).trace
    for i, n in enumerate(lengths):
        expected = [max(1, math.ceil(q * n - 1e-6)) for q in ratios]
        assert t.n_ffn[i].tolist() == expected
        assert t.n_attn[i].tolist() == [n] + expected[:-1]
        seq = np.stack([t.n_attn[i], t.n_ffn[i]], 1).reshape(-1)
        assert (np.diff(seq) <= 0).all()


def test_padding_does_not_change_selection(tiny_model):
    model = SpAtten().demo_model(tiny_model)
    model.policy = SpAtten.policy_for(model, 0.35, 0)
    lengths = [40, 9, 31, 23]
    ids, mask = random_batch(4, 40, lengths=lengths, seed=5)
    kept = {}

    class Spy(SpAttenPolicy):
        def after_attention(self, layer, state):
            super().after_attention(layer, state)
            for j, row in enumerate(state.rows.tolist()):
                kept[(row, layer, state.hidden.shape[0])] = state.positions[j, : int(state.lengths[j])].tolist()

    model.policy = Spy(model.policy.ratios)
    batch_out = _run(model, ids, mask)
    for i, n in enumerate(lengths):
        alone = _run(model, ids[i : i + 1, :n], mask[i : i + 1, :n])
        for layer in range(3):
            assert kept[(i, layer, 4)] == kept[(0, layer, 1)], (i, layer)
            assert kept[(i, layer, 4)][0] == 0  # [CLS] first
        assert torch.allclose(alone.logits[0], batch_out.logits[i], atol=1e-5)
        assert trace_macs(alone.trace, "none")[0] == pytest.approx(trace_macs(batch_out.trace, "none")[i])


def test_pruned_tokens_never_return(tiny_model):
    model = tiny_model
    model.policy = SpAtten.policy_for(model, 0.1, 0)
    seen = []

    class Spy(SpAttenPolicy):
        def after_attention(self, layer, state):
            super().after_attention(layer, state)
            seen.append(set(state.positions[0, : int(state.lengths[0])].tolist()))

    model.policy = Spy(model.policy.ratios)
    ids, mask = random_batch(1, 50, seed=7)
    _run(model, ids, mask)
    assert len(seen) == 3 and seen[2] <= seen[1] <= seen[0] and len(seen[2]) == 5


def test_lower_ratio_fewer_flops(tiny_model):
    ids, mask = random_batch(1, 60, seed=2)
    flops = []
    for r in (1.0, 0.7, 0.35, 0.1):
        tiny_model.policy = SpAtten.policy_for(tiny_model, r, None)
        flops.append(trace_flops(_run(tiny_model, ids, mask).trace, "none")[0])
    assert flops[0] > flops[1] > flops[2] > flops[3]


# ---- cascade head pruning ----------------------------------------------------------
def test_cascade_heads_never_return():
    imp = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 100.0], [0.0, 50.0, 0.0, 0.0]])
    kept = cascade_heads(imp, [4, 2, 2, 1])
    # layer 1: cumulative 11, 2, 3, 4 -> heads 0 and 3; layer 3: head 1 is dead already
    assert kept == [[0, 1, 2, 3], [0, 3], [0, 3], [3]]
    assert head_counts(6, 12, 0.5, None) == [12, 12, 11, 9, 8, 6]


def test_head_pruning_flops_match_counter(tiny_model):
    model = SpAtten().demo_model(tiny_model)
    from harness.data.encoding import Encoded

    g = np.random.default_rng(0)
    ids = [[1] + g.integers(5, 200, size=int(n)).tolist() for n in g.integers(5, 40, 12)]
    enc = Encoded(ids, [[0] * len(x) for x in ids], np.zeros(12, dtype=np.int64))
    imp = head_importance(model, enc, 12, 5, seed=0)
    assert imp.shape == (3, 4) and (imp > 0).all()
    kept = cascade_heads(imp, head_counts(3, 4, 0.25, 1))
    apply_cascade_head_pruning(model, kept)
    assert [layer.num_heads for layer in model.layers] == [4, 3, 1]
    for lengths in ([57], [57, 12, 33]):
        ids, mask = random_batch(len(lengths), max(lengths), lengths=lengths, seed=3)
        with torch.no_grad():
            measured = count_flops(lambda: model(ids, mask))
            out = model(ids, mask)
        analytic = trace_flops(out.trace, "none" if len(lengths) == 1 else "batch").sum()
        assert abs(analytic - measured) / measured < 1e-3


# ---- end to end on the smoke profile -----------------------------------------------
def test_train_and_operating_points(smoke_context):
    from harness.run.context import RunContext
    from harness.plugin.registry import get_method

    ctx = smoke_context("spatten")
    cfg = ctx.cfg
    cfg["methods_config"] = {"spatten": {"ratios": [0.2, 0.7, 1.0], "epochs": 1, "head_calibration_examples": 16}}
    plugin = get_method("spatten")
    log = plugin.train(ctx)
    assert set(log["points"]) == {"r=0.2", "r=0.7", "r=1"}
    assert all(p["kept"] in ("start", "trained") for p in log["points"].values())
    points = list(plugin.operating_points(ctx))
    assert [p.name for p in points] == ["r=0.2", "r=0.7", "r=1"]
    val = ctx.encoded("validation")
    from harness.train.inference import evaluate

    flops = []
    for p in points:
        assert not p.model.training and isinstance(p.model.policy, SpAttenPolicy)
        assert p.knobs["head_pruning"] is False
        flops.append(trace_flops(evaluate(p.model, ctx.task, val, "none", 32).trace, "none").mean())
    assert flops[0] < flops[1] < flops[2]

    # head pruning option, applied without fine-tuning
    cfg["methods_config"]["spatten"].update(ratios=[0.5], epochs=0, head_ratio=0.5)
    ctx = RunContext(cfg, "mr", "spatten")
    log = plugin.train(ctx)
    (p,) = list(plugin.operating_points(ctx))
    assert p.name == "r=0.5_h=0.5" and p.knobs["head_pruning"] is True
    assert [layer.num_heads for layer in p.model.layers] == [4, 2]
    kept = log["points"]["r=0.5_h=0.5"]["heads_kept"]
    assert len(kept[1]) == 2 and set(kept[1]) <= set(kept[0])
