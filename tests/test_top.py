"""ToP (methods/top.py): rank bins, the ranking loss, the expected-FLOPs constraint against the records'
FLOPs, the soft path with every gate open, and a model trained end to end on the smoke profile."""
from __future__ import annotations

import copy

import pytest
import torch

from harness.measure.flops import trace_macs
from harness.plugin.registry import get_method

from .conftest import hand_state, random_batch

top = get_method("top")
mod = __import__(type(top).__module__, fromlist=["x"])


def test_rank_bins_cut_the_ranking_of_real_tokens_besides_cls():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, True, False, False]])
    bins = mod.rank_bins(scores, mask, 2)
    # four tokens besides [CLS]: ranks 0 (0.7), 1 (0.5), 2 (0.3), 3 (0.1) -> bins 0, 0, 1, 1
    assert bins.tolist() == [[-1, 1, 0, 1, 0, -1, -1]]
    alone = mod.rank_bins(scores[:, :5], mask[:, :5], 2)  # padding changes nothing
    assert alone.tolist() == [bins[0, :5].tolist()]


def test_ranking_loss_prefers_the_teachers_order():
    mask = torch.ones(1, 6, dtype=torch.bool)
    teacher = torch.tensor([[0.0, 0.5, 0.4, 0.3, 0.2, 0.1]])
    same = mod.ranking_loss(teacher * 10, teacher, mask, top_k=3)
    reversed_ = mod.ranking_loss(-teacher * 10, teacher, mask, top_k=3)
    assert same < reversed_
    s = (torch.zeros(1, 6)).requires_grad_()
    mod.ranking_loss(s, teacher, mask, top_k=3).backward()
    # the teacher's best token (position 1) is pushed up, its third (3) down; beyond top_k nothing moves
    assert s.grad[0, 1] < 0 < s.grad[0, 3] and s.grad[0, 4] == 0 and s.grad[0, 0] == 0


def test_a_closed_bin_drops_its_tokens_exactly():
    """The layer gate is straight-through: exactly 0 or 1 forward, so a closed bin's tokens are exactly
    gone (not scaled by 6e-8 and ranked again at the next decision)."""
    policy = mod.ToPPolicy(3, bins=2, prune_from=1).train()
    with torch.no_grad():
        policy.bin_log_alpha.fill_(-30.0)  # every bin closed (not clamped: no forward ran on_forward)
        policy.layer_log_alpha.fill_(0.0)  # the layer gate drawn inside (0, 1) most of the time
    mask = torch.tensor([[True] * 6 + [False] * 2])
    probs = torch.softmax(torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0)), -1)
    outcomes = set()
    for seed in range(40):
        torch.manual_seed(seed)
        state = hand_state(probs, mask)
        policy._soft(0, state)
        weights = state.key_weight[0, 1:6]
        assert state.key_weight[0, 0] == 1.0  # [CLS]
        assert torch.all(weights == 0.0) or torch.all(weights == 1.0), weights
        assert torch.equal(state.scratch["top_alive"][0, 1:6] > 0, weights > 0)
        outcomes.add(float(weights[0].detach()))
    assert outcomes == {0.0, 1.0}  # the layer gate was drawn both ways


@pytest.mark.parametrize("closed", [[1, 2, 3], [0, 2]])
def test_expected_flops_match_the_records_with_decided_gates(tiny_model, closed):
    """With every gate decided (keep probability 0 or 1), the constraint's expected relative MACs equal
    what the records count for the frozen model on rows whose lengths split evenly into bins."""
    model = copy.deepcopy(tiny_model).eval()
    policy = mod.ToPPolicy(len(model.layers), bins=4, prune_from=1)
    with torch.no_grad():
        policy.bin_log_alpha.fill_(30.0)
        policy.bin_log_alpha[:, closed] = -30.0
        policy.layer_log_alpha.fill_(30.0)
    lengths = [33, 33]  # 32 tokens besides [CLS]: 8 per bin, and 8 * kept bins split evenly again
    ids, mask = random_batch(2, 33, lengths=lengths, seed=7)
    expected = mod.expected_relative_macs(policy, model.arch(), mask.sum(1)).item()
    policy.freeze()
    model.policy = policy
    with torch.no_grad():
        pruned = trace_macs(model(ids, mask).trace, "none")
        model.policy = mod.Policy()
        dense = trace_macs(model(ids, mask).trace, "none")
    assert expected == pytest.approx(pruned.sum() / dense.sum(), rel=0.05)
    assert expected < 0.9


def test_soft_path_with_pruning_off_is_the_dense_model(tiny_model):
    model = copy.deepcopy(tiny_model)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for layer in model.layers:
        layer.attn_dropout_p = 0.0
    ids, mask = random_batch(3, 20, lengths=[20, 11, 6], seed=3)
    with torch.no_grad():
        dense = model.eval()(ids, mask).logits
        model.policy = mod.ToPPolicy(len(model.layers), bins=4, prune_from=1, init_layer=-30.0)
        model.policy.layer_log_alpha.data.fill_(-30.0)  # below the clamp: the layer gate is never drawn open
        soft = model.train()(ids, mask).logits
    assert torch.allclose(soft, dense, atol=1e-5)


def test_bad_settings_are_one_clear_error():
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="speedup targets above 1"):
        top.check("top", mod.Settings(speedups=(0.5,)), None)


def test_top_trains_and_yields_its_points(smoke_context):
    ctx = smoke_context("top", ["methods_config.top={speedups: [2], bins: 4, prune_from: 1, prune_epochs: 2, "
                                "finetune_epochs: 1, init_layer_log_alpha: 0.0}"])
    log = top.train(ctx)
    (point,) = list(top.operating_points(ctx))
    assert point.name.startswith("speedup=2")
    assert point.knobs["speedup"] == 2.0 and point.knobs["flops_target"] == 0.5
    policy = point.model.policy
    assert not policy.soft and not policy.bin_log_alpha.requires_grad
    entry = log["points"]["speedup=2"]
    assert entry["steps"] > 0 and len(entry["trail"]["sparsity"]) > 0
    assert entry["validation_relative_flops"] > 0.0  # above 1 where a layer scores but keeps every token
