"""Transkimmer: the predictors learn from the task and the skim loss,
and train/operating_points run end to end on
`smoke` (the shared skim machinery is tested in test_skim.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.plugin.registry import get_method
from harness.model.selection import mean_kept_fraction
from harness.model.skim import SkimPolicy
from methods.transkimmer import TranskimmerPolicy

from .conftest import random_batch


def test_predictors_get_task_and_skim_gradients(tiny_model):
    torch.manual_seed(0)
    policy = TranskimmerPolicy(len(tiny_model.layers), tiny_model.arch().hidden, alpha=1.0, keep_bias=0.0)
    tiny_model.policy = policy
    ids, mask = random_batch(4, 30, lengths=[30, 12, 25, 8], seed=2)
    tiny_model.train()
    out = tiny_model(ids, mask)
    skim = policy.extra_loss(out.state)
    assert skim is not None and 0 < float(skim.detach()) <= 1
    skim.backward(retain_graph=True)
    assert policy.predictors["0"][-1].weight.grad.abs().sum() > 0
    policy.zero_grad()
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0])).backward()
    assert policy.predictors["0"][1].weight.grad.abs().sum() > 0  # the task loss reaches the predictors


def test_skim_ratio_loss_counts_real_tokens():
    real = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])
    m = torch.tensor([[1.0, 0, 1, 0], [1, 1, 0, 0]])
    # layer fraction = 4 kept of 5 real tokens
    assert float(mean_kept_fraction([(m, real)])) == pytest.approx(0.8)


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
