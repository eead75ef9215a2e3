"""LTP (learned token pruning) and its manual-threshold ablation: mechanics
on a tiny random BERT, and train/operating_points end to end on `smoke`."""
from __future__ import annotations


import pytest
import torch

from harness.model.selection import received_sum
from harness.model.thresholds import LTPPolicy, per_real_row, rising_thresholds, token_scores
from harness.plugin.registry import get_method
from harness.plugin.threshold_training import relative_to_length, with_lengths_resolved

from .conftest import hand_state, random_batch


def _layer0_probs(model, ids, mask):
    x = model.embeddings(ids, torch.zeros_like(ids))
    _, probs = model.layers[0].attention(x, mask.bool(), True)
    return probs


def test_scores_use_real_rows_only(tiny_model):
    lengths = [30, 9, 21]
    ids, mask = random_batch(3, 30, lengths=lengths, seed=1)
    with torch.no_grad():
        batch = token_scores(hand_state(_layer0_probs(tiny_model, ids, mask), mask))
        for i, n in enumerate(lengths):
            one_ids, one_mask = ids[i : i + 1, :n], mask[i : i + 1, :n]
            alone = token_scores(hand_state(_layer0_probs(tiny_model, one_ids, one_mask), one_mask))
            assert torch.allclose(batch[i, :n], alone[0], atol=1e-6)
            assert (batch[i, n:] == 0).all()  # padded keys receive nothing
    # mean over heads and real query rows of a row-stochastic matrix: scores sum to 1
    assert torch.allclose(batch.sum(1), torch.ones(3), atol=1e-5)


def test_rising_thresholds():
    assert rising_thresholds(0.012, 3) == pytest.approx([0.004, 0.008, 0.012])


def test_theta_defaults_relative_to_mean_length(smoke_context):
    # multiples of 1/mean length, 3 significant digits
    assert relative_to_length(0.5, 25.0) == 0.02
    assert relative_to_length((1, 2), 30.0) == (0.0333, 0.0667)
    # absolute values win; the others are resolved from the training split's mean length
    ctx = smoke_context("ltp", ["methods_config.ltp={theta_final: 0.03}"])
    s = with_lengths_resolved(ctx, ctx.settings, [("theta_final", "theta_final_rel"), ("threshold_lr", "threshold_lr_rel")])
    mean = ctx.train_split_info["mean_train_length"]
    assert s.theta_final == 0.03 and s.threshold_lr == relative_to_length(ctx.settings.threshold_lr_rel, mean)
    assert s.soft_lr == ctx.cfg["train"]["lr"] == s.hard_lr


def _kept_by_layer(model, ids, mask):
    """Per layer, the scores and the kept counts the policy should produce."""
    seen = []
    policy = model.policy
    orig = policy.after_attention

    def spy(layer, state):
        s = per_real_row(received_sum(state.attn_probs, state.mask), state.attn_probs.shape[1], state.mask)
        expect = ((s >= policy.thresholds[layer]) & state.mask)
        expect[:, 0] = True
        seen.append(expect.sum(1).tolist())
        orig(layer, state)

    policy.after_attention = spy
    with torch.no_grad():
        out = model(ids, mask)
    policy.after_attention = orig
    return seen, out


def test_thresholds_prune_exactly_the_tokens_below(tiny_model):
    model = get_method("ltp").demo_model(tiny_model).eval()
    ids, mask = random_batch(1, 60, seed=4)
    seen, out = _kept_by_layer(model, ids, mask)
    t = out.trace
    for layer, counts in enumerate(seen):
        assert t.n_ffn[0, layer] == counts[0]
    assert t.n_ffn[0, -1] < t.n_attn[0, 0]


@pytest.mark.parametrize("name", ["ltp", "ltp_manual"])
def test_counts_fall_and_cls_survives(tiny_model, name):
    # padding independence (alone vs in a batch) is checked for every method in test_methods.py
    model = get_method(name).demo_model(tiny_model).eval()
    ids, mask = random_batch(4, 57, lengths=[57, 12, 33, 40], seed=3)
    with torch.no_grad():
        batch = model(ids, mask)
    t = batch.trace
    assert (t.n_ffn <= t.n_attn).all()
    assert (t.n_attn[:, 1:] <= t.n_ffn[:, :-1]).all()
    assert (t.n_ffn >= 1).all()  # [CLS] survives


def test_soft_stage_masks_without_removing_and_learns_thresholds(tiny_model):
    model = tiny_model
    L = len(model.layers)
    # thresholds near the uniform score of a 40-token input, so masks are fractional
    policy = LTPPolicy(L, theta_final=1 / 40, temperature=5e-3, lam=0.3, soft=True, lr_scale=10.0, learnable=True)
    model.policy = policy
    model.train()
    ids, mask = random_batch(2, 40, lengths=[40, 31], seed=5)
    out = model(ids, mask)
    t = out.trace
    assert t.n_ffn.tolist() == t.n_attn.tolist() == [[40] * L, [31] * L]  # nothing removed in soft mode
    masks = out.state.scratch["ltp_masks"]
    assert len(masks) == L
    for m, real in masks:
        assert torch.all(m[:, 0] == 1) and torch.all(m[~real] == 0)
        assert ((m > 0.01) & (m < 0.99))[real].any()
    reg = policy.extra_loss(out.state)
    mean = torch.stack([(m * r).sum() / r.sum() for m, r in masks]).mean()
    assert reg.item() == pytest.approx(0.3 * mean.item())
    reg.backward()
    # the regulariser pushes every threshold up (gradient on delta negative)
    assert (policy.delta.grad < 0).all()
    # freezing folds the learned offset in and switches to hard masks
    with torch.no_grad():
        policy.delta.add_(0.001)
    before = policy.thresholds.detach().clone()
    policy.freeze()
    assert torch.allclose(policy.thresholds, before) and not policy.delta.requires_grad and not policy.soft
    out = model(ids, mask)
    assert policy.extra_loss(out.state) is None


def test_no_attention_probs_when_threshold_cannot_prune(tiny_model):
    policy = LTPPolicy(3, theta_final=0.0)
    assert not any(policy.needs_attention_probs(i) for i in range(3))
    policy.train()
    policy.soft = True
    assert all(policy.needs_attention_probs(i) for i in range(3))


# ---- end to end on the smoke profile -----------------------------------------------
def test_ltp_train_and_operating_points(smoke_context):
    ctx = smoke_context("ltp", ["methods_config.ltp={lambdas: [0.0, 50.0], theta_final: 0.05, temperature: 5.0e-3, "
                               "threshold_lr: 5.0e-3, hard_epochs: 0.4, train_max_length: 40}"])
    plugin = get_method("ltp")
    log = plugin.train(ctx)
    assert log["train_max_length"] == 40
    lengths = ctx.encoded("train").lengths
    assert log["n_train_used"] == int((lengths <= 40).sum()) < log["n_train_available"]
    pts = list(plugin.operating_points(ctx))
    assert [p.name for p in pts] == ["lambda=0", "lambda=50"]
    for p in pts:
        assert not p.model.training and isinstance(p.model.policy, LTPPolicy)
        assert not p.model.policy.soft and not p.model.policy.delta.requires_grad
        info = log["points"][p.name]
        assert info["thresholds_learned"] == pytest.approx(p.notes["thresholds"])
        assert 0 < info["validation"]["relative_flops"] <= 1
        assert info["hard"]["steps"] == 1
    # a strong regulariser raises every threshold above its initial value
    big = log["points"]["lambda=50"]
    assert all(b > a for a, b in zip(big["thresholds_init"], big["thresholds_learned"]))


def test_ltp_manual_points(smoke_context):
    ctx = smoke_context("ltp_manual", ["methods_config.ltp_manual={theta_finals: [0.02, 0.2], hard_epochs: 0.4}"])
    plugin = get_method("ltp_manual")
    log = plugin.train(ctx)
    pts = list(plugin.operating_points(ctx))
    assert [p.name for p in pts] == ["theta_final=0.02", "theta_final=0.2"]
    flops = [log["points"][p.name]["validation"]["relative_flops"] for p in pts]
    assert flops[0] > flops[1]  # higher thresholds, fewer FLOPs
    for p in pts:
        assert p.notes["fine_tuned"] and p.model.policy.thresholds[-1].item() == pytest.approx(p.knobs["theta_final"])
    # without a fine-tune, the points are the dense model with thresholds attached
    ctx = smoke_context("ltp_manual", ["methods_config.ltp_manual={theta_finals: [0.02, 0.2], hard_epochs: 0}"])
    plugin.train(ctx)
    pts = list(plugin.operating_points(ctx))
    dense = ctx.load_model(method="dense")
    for p in pts:
        assert not p.notes["fine_tuned"]
        assert torch.equal(p.model.classifier.weight, dense.classifier.weight)
