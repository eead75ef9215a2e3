"""The timed forward makes at most one host sync per layer that prunes or exits,
and the dense model none (harness.measure.syncs counts them on any device).

Methods come from the registry; this file never lists them."""
from __future__ import annotations

import copy

import pytest
import torch

from harness.measure.syncs import count_host_syncs
from harness.model.policy import Policy, select_tokens
from harness.plugin.registry import get_method, method_names

from .conftest import random_batch

LENGTHS = [57, 12, 33, 40]


def test_counter_sees_every_syncing_kind():
    t = torch.tensor([1.0, 0.0, 2.0])
    counts = count_host_syncs(lambda: (t.sum().item(), bool(t.any()), int(t[0]), t.tolist(), t.nonzero(),
                                       t[t > 0], torch.tensor([0]).cpu()))
    assert dict(counts) == {"item": 1, "bool": 1, "int": 1, "tolist": 1, "nonzero": 1, "bool_index": 1, "cpu": 1}
    assert not count_host_syncs(lambda: (t * 2).sum(0).argmax())  # device-only work syncs nothing


@pytest.mark.parametrize("name", method_names())
@pytest.mark.parametrize("head", ["classify", "span"])
def test_timed_forward_syncs_at_most_once_per_layer(name, head, tiny_model, tiny_span_model):
    base = tiny_model if head == "classify" else tiny_span_model
    plugin = get_method(name)
    if head in plugin.cannot_serve:
        pytest.skip(f"{name} does not serve span tasks")
    model = plugin.demo_model(copy.deepcopy(base)).eval()
    ids, mask = random_batch(len(LENGTHS), max(LENGTHS), lengths=LENGTHS, seed=3)
    with torch.inference_mode():
        model(ids, mask, trace=False)  # a policy's host copies of its numbers are made once
        counts = count_host_syncs(lambda: model(ids, mask, trace=False))
        untimed = model(ids, mask)
    layers = len(model.layers)
    assert sum(counts.values()) <= layers, (name, dict(counts))
    if type(model.policy) is Policy:  # the dense model (and a structurally pruned one) never syncs
        assert not counts, (name, dict(counts))
    # the sync-free path is the traced path: same predictions
    assert torch.equal(model(ids, mask, trace=False).logits, untimed.logits)


def test_select_tokens_that_keeps_everything_changes_nothing():
    from .conftest import hand_state

    probs = torch.full((2, 1, 4, 4), 0.25)
    state = hand_state(probs, torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]))
    hidden = state.hidden
    counts = count_host_syncs(lambda: select_tokens(state, torch.ones(2, 4, dtype=torch.bool)))
    assert sum(counts.values()) == 1 and state.hidden is hidden and not state.moved
