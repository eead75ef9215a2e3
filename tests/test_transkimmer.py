"""Transkimmer: the soft training path computes what removal computes, the
predictors learn from the task and the skim loss, inference is deterministic,
and train/operating_points run end to end on `smoke`."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.plugin.registry import get_method
from harness.run.finetune import frozen_except
from harness.model.selection import mean_kept_fraction
from methods.transkimmer import KEEP, SkimPolicy

from .conftest import random_batch


def _argmax_onehot(logits, tau=1.0, hard=True):  # noqa: ARG001
    return F.one_hot(logits.argmax(-1), 2).to(logits.dtype)


@pytest.mark.parametrize("seed", [0, 1])
def test_soft_masks_compute_what_removal_computes(tiny_model, monkeypatch, seed):
    """With the Gumbel sample replaced by the argmax, the training path (masks,
    nothing removed) gives the logits of the inference path (tokens removed)."""
    torch.manual_seed(seed)
    tiny_model.policy = SkimPolicy(len(tiny_model.layers), tiny_model.arch().hidden, keep_bias=0.0)
    ids, mask = random_batch(3, 40, lengths=[40, 17, 29], seed=seed)
    with torch.no_grad():
        tiny_model.eval()
        removed = tiny_model(ids, mask)
        monkeypatch.setattr(F, "gumbel_softmax", _argmax_onehot)
        with frozen_except(tiny_model, []):
            tiny_model.train()
            soft = tiny_model(ids, mask)
    kept = removed.trace.n_attn
    assert (kept[:, -1] < kept[:, 0]).all(), "the demo predictors must skim something"
    assert (soft.trace.n_attn == mask.sum(1, keepdim=True).numpy()).all()  # nothing removed in training
    assert torch.allclose(soft.logits, removed.logits, atol=1e-5), (soft.logits - removed.logits).abs().max()
    # the training masks count the tokens the inference path kept at each layer
    masks = soft.state.scratch["skim_masks"]
    for layer, (m, real) in enumerate(masks):
        assert m.sum(1).tolist() == kept[:, layer].tolist()
        assert (m[:, 0] == 1).all() and (m * (1 - real) == 0).all()  # [CLS] kept, padding never counted


def test_predictors_get_task_and_skim_gradients(tiny_model):
    torch.manual_seed(0)
    policy = SkimPolicy(len(tiny_model.layers), tiny_model.arch().hidden, alpha=1.0, keep_bias=0.0)
    tiny_model.policy = policy
    ids, mask = random_batch(4, 30, lengths=[30, 12, 25, 8], seed=2)
    tiny_model.train()
    out = tiny_model(ids, mask)
    skim = policy.extra_loss(out.state)
    assert skim is not None and 0 < float(skim.detach()) <= 1
    skim.backward(retain_graph=True)
    assert policy.predictors[0][-1].weight.grad.abs().sum() > 0
    policy.zero_grad()
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0])).backward()
    assert policy.predictors[0][1].weight.grad.abs().sum() > 0  # the task loss reaches the predictors


def test_skim_ratio_loss_counts_real_tokens():
    real = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])
    m = torch.tensor([[1.0, 0, 1, 0], [1, 1, 0, 0]])
    # layer fraction = 4 kept of 5 real tokens
    assert float(mean_kept_fraction([(m, real)])) == pytest.approx(0.8)


def test_inference_is_deterministic(tiny_model):
    model = get_method("transkimmer").demo_model(tiny_model).eval()
    ids, mask = random_batch(4, 50, lengths=[50, 20, 35, 9], seed=5)
    with torch.no_grad():
        a, b = model(ids, mask), model(ids, mask)
    assert torch.equal(a.logits, b.logits) and (a.trace.n_ffn == b.trace.n_ffn).all()
    assert KEEP == 1


def test_transkimmer_train_and_operating_points(smoke_context):
    ctx = smoke_context("transkimmer", ["methods_config.transkimmer={alphas: [0.0, 20.0], epochs: 2, predictor_lr: 0.05, init_keep_bias: 1.0}"])
    plugin = get_method("transkimmer")
    log = plugin.train(ctx)
    pts = list(plugin.operating_points(ctx))
    assert [p.name for p in pts] == ["alpha=0", "alpha=20"]
    for p in pts:
        assert not p.model.training and isinstance(p.model.policy, SkimPolicy)
    none, strong = (log["points"][p.name]["validation"] for p in pts)
    # a strong skim loss makes the predictors skim far more than the task loss alone
    assert strong["relative_flops"] < none["relative_flops"]
    assert strong["tokens_per_layer"][-1] < none["tokens_per_layer"][-1]
