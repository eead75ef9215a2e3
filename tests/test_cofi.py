"""CoFi: masks, materialization and the Lagrangian.

The materialized model must compute what the masked model computes under the
deterministic gates (so the speed measured on it is the speed of the model
that was trained); its achieved sparsity must be the masks' expected sparsity;
the Lagrangian must drive the masks to the target.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml

from harness.config import load_config
from harness.measure.params import encoder_params
from harness.model.structure import materialize
from harness.plugin.registry import get_method
from harness.model.hard_concrete import GradientAscent, deterministic_gate, keep_probability, sample_gate
from methods.cofi import CoFiMasks, CoFiPolicy, teacher_layers

from .conftest import random_batch


def spread_masks(model, seed=0, scale=3.0) -> CoFiMasks:
    first = model.layers[0]
    masks = CoFiMasks(len(model.layers), first.num_heads, first.head_dim, first.ffn_dim, model.arch().hidden)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in masks.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale + 1.0)
    return masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_materialized_equals_masked(tiny_model, seed):
    masks = spread_masks(tiny_model, seed)
    with torch.no_grad():
        masks.attention[seed % 3] = -5.0  # one attention sublayer goes entirely
        masks.ffn[(seed + 1) % 3] = -5.0  # and one FFN
    masked = copy.deepcopy(tiny_model)
    masked.policy = CoFiPolicy(masks).eval()
    ids, mask = random_batch(4, 30, lengths=[30, 7, 19, 25], seed=seed)
    with torch.no_grad():
        want = masked(ids, mask).logits
        gates = masks.gates(sample=False)
        pruned = materialize(copy.deepcopy(tiny_model), gates)
        got = pruned(ids, mask).logits
    arch = pruned.arch()
    assert 0 in arch.heads and 0 in arch.ffn  # whole sublayers are gone
    assert arch.hidden < tiny_model.arch().hidden
    assert arch.hidden == int((gates.hidden != 0).sum())
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    # and the masks really change the function (the comparison is not vacuous)
    with torch.no_grad():
        assert not torch.allclose(tiny_model(ids, mask).logits, want, atol=1e-3)


def test_hard_concrete_gate_statistics():
    la = torch.tensor([-3.0, 0.0, 3.0])
    draws = torch.stack([sample_gate(la.expand(20000, 3).contiguous()) for _ in range(2)]).reshape(-1, 3)
    # exact zeros and ones occur, and P(gate > 0) matches the closed form
    assert (draws == 0).any() and (draws == 1).any()
    assert torch.allclose((draws > 0).float().mean(0), keep_probability(la), atol=0.01)


def test_deterministic_gate_zeros_the_expected_number():
    la = torch.tensor([[4.0, 4.0, -4.0, -4.0, 0.5, -0.2]])
    z = deterministic_gate(la)
    zeros = round(6 - float(keep_probability(la).sum()))
    assert int((z == 0).sum()) == zeros
    assert bool((z[0, :2] > 0.99).all())  # the confident keeps stay (soft value near 1)
    assert bool((z[0, 2:4] == 0).all())


def log_alpha_for(keep: float) -> float:
    """The log_alpha whose keep probability P(gate > 0) is `keep`."""
    lo, hi = -0.1, 1.1
    x = (0.0 - lo) / (hi - lo)
    return math.log(x / (1 - x)) * (2.0 / 3.0) - math.log((1 - keep) / keep)


@pytest.mark.parametrize("which", ["attention", "ffn"])
@pytest.mark.parametrize("keeps, kept", [
    # each sublayer alone rounds 1 - 0.7 = 0.3 expected zeros to none: all six stay (decided across the
    # six as one group, the 0.9 summed expected zeros would round to one removed sublayer)
    ([0.7, 0.7, 0.7, 0.999, 0.999, 0.999], [True] * 6),
    # each 0.4 sublayer rounds 0.6 expected zeros to one: both go (as one group, 1.2 rounds to one)
    ([0.4, 0.4, 0.999, 0.999, 0.999, 0.999], [False, False, True, True, True, True]),
])
def test_whole_sublayer_gates_are_decided_layer_by_layer(which, keeps, kept):
    """The reference (CoFiPruning's L0Module, deterministic z) decides each
    layer's attention and FFN sublayer gate on its own, a group of one: it
    closes exactly when its keep probability is below 0.5."""
    masks = CoFiMasks(6, 2, 4, 8, 8)
    with torch.no_grad():
        getattr(masks, which).copy_(torch.tensor([log_alpha_for(k) for k in keeps]))
    assert keep_probability(getattr(masks, which)).tolist() == pytest.approx(keeps, abs=1e-4)
    gates = masks.gates(sample=False)
    assert [bool(g != 0) for g in getattr(gates, which)] == kept
    # a sublayer that stays keeps its soft value, as the reference's (not 1)
    soft = torch.sigmoid(getattr(masks, which).detach() / (2.0 / 3.0) * 0.8)
    for g, s, k in zip(getattr(gates, which), soft, kept):
        assert float(g) == pytest.approx(float(s) if k else 0.0)


def test_head_and_dim_gates_are_decided_per_layer_and_hidden_as_one_group():
    """The 2-D gates (heads, FFN dims) round each layer's row on its own; the
    hidden dims, one mask for the whole model, round as one group."""
    masks = CoFiMasks(2, 4, 4, 4, 4)
    with torch.no_grad():
        # layer 0: expected zeros 4 x 0.3 = 1.2 -> one head goes; layer 1: all at 0.999 -> none
        masks.heads.copy_(torch.tensor([[log_alpha_for(0.7)] * 4, [log_alpha_for(0.999)] * 4]))
        masks.ffn_dims.copy_(torch.tensor([[log_alpha_for(0.999)] * 4, [log_alpha_for(0.7)] * 4]))
        masks.hidden.copy_(torch.tensor([log_alpha_for(k) for k in (0.7, 0.7, 0.7, 0.999)]))
    gates = masks.gates(sample=False)
    assert [int((h == 0).sum()) for h in gates.heads] == [1, 0]
    assert [int((d == 0).sum()) for d in gates.ffn_dims] == [0, 1]
    assert int((gates.hidden == 0).sum()) == 1  # 0.9 + 0.001 expected zeros round to one


def test_expected_size_of_open_masks_is_the_dense_count(tiny_model):
    masks = CoFiMasks(3, 4, 8, 64, 32)
    with torch.no_grad():
        for p in masks.parameters():
            p.fill_(50.0)  # keep probability 1 (unclamped)
    assert masks.dense_size == encoder_params(tiny_model.arch())
    assert masks.expected_size().item() == pytest.approx(masks.dense_size, rel=1e-5)


def test_expected_size_matches_the_count_of_hard_masks():
    """With polarized masks the expected size is the exact parameter count of
    the structure they select."""
    masks = CoFiMasks(2, 4, 8, 16, 32)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in masks.parameters():
            p.copy_(torch.where(torch.rand(p.shape, generator=g) < 0.6, 50.0, -50.0))
        masks.attention.fill_(50.0)
        masks.ffn.fill_(50.0)
    heads = (masks.heads > 0).sum(1)
    dims = (masks.ffn_dims > 0).sum(1)
    hid = int((masks.hidden > 0).sum())
    exact = sum(4 * hid * 8 * h + 3 * 8 * h + hid * (h > 0) + 2 * hid * f + f + hid * (f > 0)
                for h, f in zip(heads.tolist(), dims.tolist()))
    assert masks.expected_size().item() == pytest.approx(exact, rel=1e-4)


def test_lagrangian_drives_masks_to_the_target():
    """Only the Lagrangian term, gradient ascent on the multipliers: the
    expected sparsity settles at the target."""
    torch.manual_seed(0)
    masks = CoFiMasks(3, 4, 8, 64, 32)
    lam = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([{"params": masks.parameters(), "lr": 0.1}, {"params": [lam], "lr": 0.1}])
    target, steps = 0.6, 400
    for step in range(1, steps + 1):
        masks.clamp_()
        t = target * min(1.0, step / 200)
        gap = masks.expected_sparsity() - t
        l1, l2 = GradientAscent.apply(lam)
        loss = l1 * gap + l2 * gap * gap
        opt.zero_grad()
        loss.backward()
        opt.step()
    masks.clamp_()
    assert masks.expected_sparsity().item() == pytest.approx(target, abs=0.02)


def test_teacher_layers_generalise_the_reference():
    assert teacher_layers(12) == [2, 5, 8, 11]
    assert teacher_layers(6) == [1, 2, 4, 5]
    assert teacher_layers(2) == [0, 1]


def test_pruning_stage_materializes_at_the_expected_sparsity(smoke_context):
    """The plugin's own training on the smoke profile: the Lagrangian moves the
    tiny model's masks most of the way to the target, and the materialized
    model's sparsity is the masks' expected sparsity at the end of training
    within 1 point."""
    ctx = smoke_context("cofi", ["methods_config.cofi={sparsities: [0.6], prune_epochs: 40, finetune_epochs: 1}"])
    log = get_method("cofi").train(ctx)
    point = log["points"]["sparsity=0.6"]
    assert 0.45 < point["expected_sparsity"] < 0.8, point
    assert abs(point["achieved_sparsity"] - point["expected_sparsity"]) < 0.01, point
    (op,) = list(get_method("cofi").operating_points(ctx))
    dense_params = encoder_params(ctx.load_model(method="dense").arch())
    assert encoder_params(op.model.arch()) == round((1 - point["achieved_sparsity"]) * dense_params)
    # named and selected by the sparsity it reached, its target beside it, a flag when more than 0.01 off
    assert op.name.startswith(f"sparsity={point['achieved_sparsity']:.3f}_target=0.6")
    off = abs(point["achieved_sparsity"] - 0.6) > 0.01
    assert op.knobs["target_sparsity"] == 0.6 and op.knobs["off_target"] is off
    assert op.name.endswith("_off_target") is off
    assert op.knobs["sparsity"] == pytest.approx(round(point["achieved_sparsity"], 2) if off else 0.6)
    assert op.model.policy.describe()["kind"] == "cofi_materialized"
    assert not math.isnan(point["finetune"]["best_validation"])


class _Points:
    """A stand-in run context: a CoFi points manifest and models that are not loaded."""

    def __init__(self, entries):
        self.entries = entries
        self.settings = get_method("cofi").Settings()

    def points(self, method=None):
        return self.entries

    def load_model(self, name, method=None):
        return torch.nn.Identity()


def test_points_are_named_and_selected_by_achieved_sparsity():
    """A point's name and its `sparsity` knob (what experiments and claims
    select by) follow the sparsity the materialized model reached; the target
    stays a knob beside it, and a point more than `sparsity_epsilon` (0.01)
    off its target is flagged and selectable only at
    the sparsity it reached."""
    reached = [(0.6, 0.6042), (0.8, 0.8951), (0.95, 0.9412)]  # (target, achieved)
    entries = [{"name": f"sparsity={t:g}", "target_sparsity": t, "file": f"sparsity={t:g}.pt",
                "expected_sparsity": a, "achieved_sparsity": a} for t, a in reached]
    ops = list(get_method("cofi").operating_points(_Points(entries)))
    assert [op.name for op in ops] == ["sparsity=0.604_target=0.6", "sparsity=0.895_target=0.8_off_target",
                                       "sparsity=0.941_target=0.95"]
    assert [op.knobs["target_sparsity"] for op in ops] == [0.6, 0.8, 0.95]
    assert [op.knobs["off_target"] for op in ops] == [False, True, False]
    # within 0.01 of its target a point stands for it; off it, for what it reached (to 0.01)
    assert [op.knobs["sparsity"] for op in ops] == [0.6, 0.9, 0.95]
    assert [op.notes["achieved_sparsity"] for op in ops] == [0.6042, 0.8951, 0.9412]


@pytest.mark.parametrize("profile", ["default", "smoke"])
def test_experiments_and_claims_select_cofi_by_achieved_sparsity(profile):
    """No table row, ratio table or claim picks a CoFi point by its target: a
    point that missed its target must not stand for it."""
    cfg = load_config(profile, ["data_dir="])
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("method") == "cofi" and "knobs" in node:
                found.append(dict(node["knobs"]))
            if "cofi" in (node.get("methods") or []) and "knob" in node:
                found.append({node["knob"]: None})
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(cfg["experiments"])
    claims = yaml.safe_load((Path(__file__).parents[1] / "config" / "claims" / "papers.yaml").read_text())
    walk(claims)
    assert found and all("target_sparsity" not in k and "sparsity" in k for k in found), found
