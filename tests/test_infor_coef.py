"""Infor-Coef: the information-bottleneck terms on hand-computed cases and
their gradients, the warm-up switch, the starting model (a CoFi point, or
dense for the dynamic-only ablation, and what the workflow trains for it),
and train/operating_points end to end on `smoke` (deterministic inference is
tested for every method in test_methods.py)."""
from __future__ import annotations

import math

import pytest
import torch

from harness.config import load_config
from harness.errors import HarnessError
from harness.model.skim import SkimStep
from harness.plugin.registry import get_method
from harness.run.plan import required_models, resolve_methods
from harness.storage import write_json
from methods.infor_coef import InforCoefPolicy, computing_layers, kept_norm, negative_entropy

from .conftest import random_batch


def _step(p, alive, decides, hidden):
    p, alive, decides = (torch.tensor(x, dtype=torch.float32) for x in (p, alive, decides))
    return SkimStep(mask=alive, alive=alive, real=alive, keep_prob=p, hidden=torch.tensor(hidden, dtype=torch.float32),
                    decides=decides)


def test_negative_entropy_by_hand():
    # decided tokens: positions 1 and 2 of row 0 (position 3 is padding, [CLS] is not decided)
    st = _step([[1.0, 0.5, 0.9, 0.3]], [[1, 1, 1, 0]], [[0, 1, 1, 0]], [[[1.0]] * 4])
    h = lambda p: p * math.log(p) + (1 - p) * math.log(1 - p)  # noqa: E731
    assert float(negative_entropy([st])) == pytest.approx((h(0.5) + h(0.9)) / 2, rel=1e-5)


def test_kept_norm_by_hand():
    # row 0: tokens 1 (p 0.5, |h| 2) and 2 (p 1, |h| 1) -> sqrt(1 + 1); row 1: token 1 (p 0.5, |h| 6) -> 3
    hidden = [[[9.0, 0.0], [2.0, 0.0], [0.0, 1.0]], [[9.0, 9.0], [0.0, 6.0], [5.0, 5.0]]]
    st = _step([[1.0, 0.5, 1.0], [1.0, 0.5, 0.7]], [[1, 1, 1], [1, 1, 0]], [[0, 1, 1], [0, 1, 0]], hidden)
    assert float(kept_norm([st], "sample")) == pytest.approx((math.sqrt(2.0) + 3.0) / 2, rel=1e-5)
    # the reference's: one Frobenius norm over the whole batch, sqrt(1 + 1 + 9)
    assert float(kept_norm([st], "batch")) == pytest.approx(math.sqrt(11.0), rel=1e-5)


def test_norm_scope_is_a_setting_with_the_reference_as_default():
    settings = get_method("infor_coef").Settings
    assert settings().norm_scope == "batch"
    with pytest.raises(ValueError, match="norm_scope"):
        settings(norm_scope="token")
    policy = InforCoefPolicy(2, 8, [0, 1], weight=1.0, norm_scope="sample")
    assert policy.describe()["norm_scope"] == "sample"


def test_norm_term_pushes_keep_probabilities_down_and_waits_for_the_warmup(tiny_model):
    torch.manual_seed(0)
    policy = InforCoefPolicy(len(tiny_model.layers), tiny_model.arch().hidden, range(len(tiny_model.layers)),
                             "ib", weight=1.0, entropy_weight=0.0, keep_bias=0.0)
    tiny_model.policy = policy
    ids, mask = random_batch(3, 30, lengths=[30, 12, 25], seed=2)
    tiny_model.train()
    policy.norm_on = False
    assert policy.extra_loss(tiny_model(ids, mask).state) is None  # no entropy weight, norm not on yet
    policy.norm_on = True
    loss = policy.extra_loss(tiny_model(ids, mask).state)
    assert loss is not None and float(loss) > 0
    loss.backward()
    bias = policy.predictors["0"][-1].bias.grad
    assert bias[1] > 0 > bias[0]  # descending raises skim (index 0) and lowers keep (index 1)


def test_skim_loss_variant_and_computing_layers(tiny_model):
    model = get_method("cofi").demo_model(tiny_model)  # its last attention sublayer is pruned away
    layers = computing_layers(model)
    assert layers == [i for i, layer in enumerate(model.layers) if layer.num_heads or layer.ffn_dim]
    policy = InforCoefPolicy(len(model.layers), model.arch().hidden, layers, "skim", weight=2.0, keep_bias=0.0)
    model.policy = policy
    ids, mask = random_batch(2, 20, lengths=[20, 9], seed=1)
    model.train()
    loss = policy.extra_loss(model(ids, mask).state)
    assert 0 < float(loss) <= 2.0 and policy.describe()["skim_weight"] == 2.0


def test_dynamic_only_starts_from_dense_and_needs_no_cofi(tmp_path):
    cfg = load_config("smoke", [f"work_dir={tmp_path}/w", "methods=[dyn]", "data_dir=",
                                "variants={dyn: {method: infor_coef, config: {static: none}}}"])
    assert resolve_methods(cfg) == ["dense", "dyn"]
    assert [p.split("/")[-3] for p in required_models(cfg, "mr", "dyn", 0)] == ["dense"]
    cfg = load_config("smoke", [f"work_dir={tmp_path}/w", "methods=[infor_coef]", "data_dir="])
    assert resolve_methods(cfg) == ["dense", "cofi", "infor_coef"]


def test_a_sparsity_cofi_does_not_train_is_one_clear_error(smoke_context, tmp_path):
    # when the config is checked, before anything runs
    cfg = load_config("smoke", [f"work_dir={tmp_path}/w", "data_dir=", "methods=[ic]",
                                "variants={ic: {method: infor_coef, config: {sparsities: [0.7]}}}"])
    with pytest.raises(HarnessError) as err:
        resolve_methods(cfg)
    assert "ic starts from cofi models at sparsity 0.7" in str(err.value)
    assert "methods_config.cofi.sparsities" in err.value.fix
    # and at train time, when the cofi models on disk came from another config
    ctx = smoke_context("infor_coef", ["methods_config.infor_coef={sparsities: [0.7]}"])
    write_json(ctx.model_dir("cofi") / "points.json", [{"name": "sparsity=0.6", "target_sparsity": 0.6, "file": "x.pt",
                                            "achieved_sparsity": 0.6}])
    with pytest.raises(HarnessError) as err:
        get_method("infor_coef").train(ctx)
    assert "0.7" in str(err.value) and "methods_config.cofi.sparsities" in err.value.fix


def test_infor_coef_train_and_operating_points(smoke_context):
    over = ["methods_config.cofi={sparsities: [0.6], prune_epochs: 1, finetune_epochs: 0}",
            "methods_config.infor_coef={sparsities: [0.6], norm_weights: [0.0, 20.0], epochs: 2, "
            "norm_warmup_epochs: 0.5, predictor_lr: 0.05}"]
    cofi_ctx = smoke_context("cofi", over)
    get_method("cofi").train(cofi_ctx)
    ctx = smoke_context("infor_coef", over)
    plugin = get_method("infor_coef")
    seen, extra_loss = [], InforCoefPolicy.extra_loss

    def spy(policy, state):
        if policy.skim_steps(state):  # a training step
            seen.append(policy.norm_on)
        return extra_loss(policy, state)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(InforCoefPolicy, "extra_loss", spy)
        log = plugin.train(ctx)
    first = log["points"]["sparsity=0.6_norm=0"]
    warm, steps = first["norm_starts_after_step"], first["steps"]
    assert 0 < warm < steps
    # per model: the norm term is off for exactly the warm-up steps, then on
    assert seen == ([False] * warm + [True] * (steps - warm)) * 2
    pts = list(plugin.operating_points(ctx))
    assert [p.name for p in pts] == ["sparsity=0.6_norm=0", "sparsity=0.6_norm=20"]
    cofi_arch = cofi_ctx.load_model("sparsity=0.6.pt").arch()
    (cofi_point,) = get_method("cofi").operating_points(cofi_ctx)
    for p in pts:
        assert p.model.arch() == cofi_arch  # the CoFi structure is kept
        # selected by the sparsity its CoFi start reached (the 1-epoch start misses its target here),
        # with that start's target and flag beside it
        assert p.knobs["target_sparsity"] == 0.6
        assert {k: p.knobs[k] for k in ("sparsity", "off_target")} == {
            k: cofi_point.knobs[k] for k in ("sparsity", "off_target")}
        assert p.notes["cofi_point"] == cofi_point.name
        assert not p.model.training and p.model.policy.describe()["kind"] == "infor_coef_sampler"
    none, strong = (log["points"][p.name]["validation"] for p in pts)
    # the norm term makes the samplers skim far more than cross-entropy and the entropy term alone
    assert strong["tokens_per_layer"][-1] < none["tokens_per_layer"][-1]
    assert strong["relative_flops"] < none["relative_flops"]


def test_points_carry_their_cofi_starts_achieved_sparsity():
    """A manifest written when Infor-Coef's `sparsity` knob was the CoFi
    target reads with the start's achieved sparsity as CoFi's own points do;
    a dynamic-only point has no sparsity knobs."""
    entries = [
        {"name": "sparsity=0.8_norm=0.01", "knobs": {"sparsity": 0.8, "norm_weight": 0.01}, "file": "a.pt",
         "start": {"start": "cofi", "cofi_point": "sparsity=0.8", "achieved_sparsity": 0.8951}},
        {"name": "sparsity=0.6_norm=0.01", "knobs": {"sparsity": 0.6, "norm_weight": 0.01}, "file": "b.pt",
         "start": {"start": "cofi", "cofi_point": "sparsity=0.6", "achieved_sparsity": 0.6042}},
        {"name": "norm=0.01", "knobs": {"norm_weight": 0.01}, "file": "c.pt", "start": {"start": "dense"}},
    ]

    class Ctx:
        def points(self, method=None):
            return entries

        def load_model(self, name, method=None):
            return torch.nn.Identity()

    ops = list(get_method("infor_coef").operating_points(Ctx()))
    assert [op.knobs for op in ops] == [
        {"sparsity": 0.9, "target_sparsity": 0.8, "off_target": True, "norm_weight": 0.01},
        {"sparsity": 0.6, "target_sparsity": 0.6, "off_target": False, "norm_weight": 0.01},
        {"norm_weight": 0.01}]
