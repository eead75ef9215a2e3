"""The shared skim machinery (`harness.model.skim`): the soft training path
computes what physical removal computes, predictors can be limited to some
layers, and the per-layer steps a method's loss reads are consistent."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.model.skim import SkimPolicy
from harness.train.finetune import frozen_except

from .conftest import random_batch


def _argmax_onehot(logits, tau=1.0, hard=True):  # noqa: ARG001
    return F.one_hot(logits.argmax(-1), 2).to(logits.dtype)


@pytest.mark.parametrize("seed,first_only", [(0, False), (1, False), (0, True)])
def test_soft_masks_compute_what_removal_computes(tiny_model, monkeypatch, seed, first_only):
    """With the Gumbel sample replaced by the argmax, the training path (masks,
    nothing removed) gives the logits of the inference path (tokens removed)."""
    torch.manual_seed(seed)
    # first_only: a predictor before the first layer alone; later layers must still leave skimmed tokens out
    tiny_model.policy = SkimPolicy(len(tiny_model.layers), tiny_model.arch().hidden, keep_bias=0.0,
                                   layers=[0] if first_only else None)
    ids, mask = random_batch(3, 40, lengths=[40, 17, 29], seed=seed)
    with torch.no_grad():
        tiny_model.eval()
        removed = tiny_model(ids, mask)
        monkeypatch.setattr(F, "gumbel_softmax", _argmax_onehot)
        with frozen_except(tiny_model, []):
            tiny_model.train()
            soft = tiny_model(ids, mask)
    kept = removed.trace.n_attn
    assert (kept[:, -1] < mask.sum(1).numpy()).all(), "the demo predictors must skim something"
    assert (soft.trace.n_attn == mask.sum(1, keepdim=True).numpy()).all()  # nothing removed in training
    assert torch.allclose(soft.logits, removed.logits, atol=1e-5), (soft.logits - removed.logits).abs().max()
    # the training masks count the tokens the inference path kept at each layer
    steps = soft.state.scratch["skim_steps"]
    assert len(steps) == (1 if first_only else len(tiny_model.layers))
    for layer, step in enumerate(steps):
        m, real = step.mask, step.real
        assert m.sum(1).tolist() == kept[:, layer].tolist()
        assert (m[:, 0] == 1).all() and (m * (1 - real) == 0).all()  # [CLS] kept, padding never counted


def test_predictors_on_some_layers_only(tiny_model):
    """Layers without a predictor keep every token and cost no predictor MACs."""
    torch.manual_seed(0)
    layers = len(tiny_model.layers)
    tiny_model.policy = SkimPolicy(layers, tiny_model.arch().hidden, keep_bias=0.0, layers=[layers - 1])
    ids, mask = random_batch(3, 40, lengths=[40, 17, 29], seed=3)
    with torch.no_grad():
        out = tiny_model.eval()(ids, mask)
    n = out.trace.n_attn
    assert (n[:, : layers - 1] == mask.sum(1, keepdim=True).numpy()).all()
    assert (n[:, -1] < n[:, 0]).any(), "the last layer's predictor must skim something"
    assert tiny_model.policy.skim_layers == [layers - 1]


def test_steps_record_alive_and_decided_tokens(tiny_model):
    torch.manual_seed(1)
    tiny_model.policy = SkimPolicy(len(tiny_model.layers), tiny_model.arch().hidden, keep_bias=0.0)
    ids, mask = random_batch(2, 20, lengths=[20, 9], seed=1)
    tiny_model.train()
    steps = tiny_model(ids, mask).state.scratch["skim_steps"]
    assert len(steps) == len(tiny_model.layers)
    for prev, step in zip(steps, steps[1:]):
        assert torch.equal(step.alive, prev.mask)  # a skimmed token never returns
    first = steps[0]
    assert first.decides[:, 0].sum() == 0 and first.decides.sum() == mask.sum() - 2  # [CLS] and padding excluded
    assert ((first.keep_prob > 0) & (first.keep_prob < 1)).all()
