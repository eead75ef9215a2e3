"""FastBERT and Magic Pyramid: exit heads, exit rules, FLOPs with real exits,
self-distillation, and the plugins' train -> operating points path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.measure.flop_reference import count_flops
from harness.measure.flops import trace_flops, trace_macs
from harness.model.exits import EarlyExitPolicy, Student, demo_exits, entropy_uncertainty
from harness.model.thresholds import LTPPolicy
from harness.plugin.registry import get_method
from harness.plugin.exit_training import exit_distillation_loss
from methods.magic_pyramid import PrunedExitPolicy

from .conftest import random_batch


def test_student_cls_query_equals_full_self_attention():
    """Computing only the [CLS] query gives the [CLS] output of full self-attention."""
    torch.manual_seed(0)
    st = Student(32, 3, width=16, heads=2).eval()
    hidden = torch.randn(3, 9, 32)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    x = torch.tanh(st.proj(hidden))
    b, n, h, dh = 3, 9, 2, 8
    split = lambda t: t.view(b, n, h, dh).transpose(1, 2)  # noqa: E731
    q, k, v = split(st.query(x)), split(st.key(x)), split(st.value(x))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
    s = s.masked_fill(~mask[:, None, None, :], torch.finfo(s.dtype).min)
    full = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, 16)[:, 0]
    expected = st.classifier(torch.tanh(st.dense(full)))
    assert torch.allclose(st(hidden, mask), expected, atol=1e-6)


def test_entropy_uncertainty_range():
    assert entropy_uncertainty(torch.zeros(1, 4)).item() == pytest.approx(1.0)
    assert entropy_uncertainty(torch.tensor([[50.0, 0.0, 0.0]])).item() < 1e-6


@pytest.mark.parametrize("name", ["fastbert", "magic_pyramid"])
def test_demo_exits_for_real_and_flops_match(name, tiny_model):
    """With real exits (some rows leave at each layer, some run to the end) the
    analytic FLOPs equal FlopCounterMode, batched and one row at a time."""
    model = get_method(name).demo_model(tiny_model).eval()
    lengths = [50, 7, 33, 21, 12, 40, 3, 28]
    ids, mask = random_batch(len(lengths), 50, lengths=lengths, seed=5)
    with torch.no_grad():
        out = model(ids, mask)
        measured = count_flops(lambda: model(ids, mask))
    layers = len(model.layers)
    exits = out.trace.exit_layer
    assert (exits < layers).any() and (exits == layers).any(), exits
    assert trace_flops(out.trace, "batch").sum() == pytest.approx(measured, rel=1e-9)
    # exited rows ran no later layer and not the final head
    assert not out.trace.final_head[exits < layers].any()
    for i in np.nonzero(exits < layers)[0]:
        assert (out.trace.n_attn[i, exits[i]:] == 0).all()
        assert out.trace.extra_macs[i] > 0
    for i, n in enumerate(lengths):
        with torch.no_grad():
            one = count_flops(lambda: model(ids[i : i + 1, :n], mask[i : i + 1, :n]))
        assert trace_flops(out.trace, "none")[i] == pytest.approx(one, rel=1e-9)


def test_speed_limits(tiny_model):
    ids, mask = random_batch(4, 20, lengths=[20, 9, 14, 5], seed=2)
    with torch.no_grad():
        dense = tiny_model(ids, mask)
        tiny_model.policy = demo_exits(tiny_model)
        tiny_model.policy.speed = None  # teacher only: no student runs
        none = tiny_model(ids, mask)
        tiny_model.policy.speed = 0.0  # u < 0 never: every student runs, nobody leaves
        zero = tiny_model(ids, mask)
        tiny_model.policy.speed = 1.01  # everybody leaves after the first layer
        all_out = tiny_model(ids, mask)
    assert torch.allclose(none.logits, dense.logits) and torch.allclose(zero.logits, dense.logits, atol=1e-6)
    assert (none.trace.extra_macs == 0).all() and (zero.trace.extra_macs > 0).all()
    assert (zero.trace.exit_layer == len(tiny_model.layers)).all()
    assert (all_out.trace.exit_layer == 1).all() and not all_out.trace.final_head.any()
    assert (trace_macs(all_out.trace, "none") < trace_macs(dense.trace, "none")).all()


def test_regression_stability_rule(tiny_model):
    """Regression: no exit at the first student; a row leaves once consecutive
    predictions differ by less than speed x label scale."""
    pol = EarlyExitPolicy(32, 1, 3, width=8, heads=2, regression=True, label_scale=2.0)
    tiny_model.classifier = torch.nn.Linear(32, 1)
    tiny_model.num_labels = 1
    tiny_model.policy = pol
    ids, mask = random_batch(3, 12, lengths=[12, 6, 9], seed=1)
    pol.speed = 1e9
    with torch.no_grad():
        out = tiny_model(ids, mask)
    assert (out.trace.exit_layer == 2).all()  # the second student is the first that can compare
    pol.speed = 0.0
    with torch.no_grad():
        out = tiny_model(ids, mask)
    assert (out.trace.exit_layer == 3).all()
    assert pol.describe()["label_scale"] == 2.0


def test_students_learn_the_teacher(tiny_model):
    """Self-distillation: with the backbone frozen, the students' KL to a
    confident teacher falls; the teacher's logits do not change."""
    with torch.no_grad():
        tiny_model.classifier.weight.mul_(50.0)
    pol = EarlyExitPolicy(32, 3, 3, width=16, heads=2)
    tiny_model.policy = pol
    pol.collect = True
    ids, mask = random_batch(16, 20, seed=7)
    opt = torch.optim.Adam(pol.students.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        out = tiny_model(ids, mask)
        loss = exit_distillation_loss(out.logits, out.state.scratch["student_logits"], regression=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_magic_pyramid_prunes_and_exits(tiny_model):
    exits = demo_exits(tiny_model)
    exits.speed = 0.0
    exits.inclusive = True
    tiny_model.policy = PrunedExitPolicy(LTPPolicy(3, theta_final=0.05), exits)
    ids, mask = random_batch(2, 60, seed=4)
    with torch.no_grad():
        out = tiny_model(ids, mask)
    assert (out.trace.n_ffn[:, -1] < 60).all()  # tokens pruned
    # u <= 0 only for a fully confident head: nobody leaves, the pruned model decides
    assert (out.trace.exit_layer == 3).all()




def test_fastbert_train_and_points(smoke_context):
    ctx = smoke_context("fastbert")
    ctx.cfg["methods_config"]["fastbert"] = {"speeds": [0.0, 0.5, 1.01], "distill_epochs": 2.0}
    plugin = get_method("fastbert")
    log = plugin.train(ctx)
    losses = log["distill"]["validation_distill_loss"]
    assert len(losses) == 2 and log["distill"]["best_validation_distill_loss"] == pytest.approx(min(losses))
    pts = list(plugin.operating_points(ctx))
    assert [p.name for p in pts] == ["speed=0", "speed=0.5", "speed=1.01"]
    dense = ctx.load_model(method="dense")
    for p in pts:  # backbone and teacher untouched by stage 2
        assert torch.equal(p.model.classifier.weight, dense.classifier.weight)
        assert torch.equal(p.model.layers[0].query.weight, dense.layers[0].query.weight)
    enc = ctx.encoded("validation")
    from harness.train.inference import evaluate

    layers = [evaluate(p.model, ctx.task, enc, "none", 16).trace.exit_layer.mean() for p in pts]
    assert layers[0] == len(dense.layers) and layers[2] == 1.0 and layers[0] >= layers[1] >= layers[2]


def test_magic_pyramid_train_and_points(smoke_context):
    ctx = smoke_context("ltp")
    ctx.cfg["methods_config"]["ltp"] = {"lambdas": [0.1], "theta_final": 0.05, "soft_epochs": 0.3, "hard_epochs": 0}
    get_method("ltp").train(ctx)
    mp = smoke_context("magic_pyramid")
    mp.cfg["methods_config"]["magic_pyramid"] = {"lambdas": [0.1], "taus": [0.0, 0.5], "distill_epochs": 1.0}
    plugin = get_method("magic_pyramid")
    log = plugin.train(mp)
    assert list(log["points"]) == ["lambda=0.1"]
    pts = list(plugin.operating_points(mp))
    assert [p.name for p in pts] == ["lambda=0.1_tau=0", "lambda=0.1_tau=0.5"]
    ltp_model = ctx.load_model("lambda=0.1.pt")
    for p in pts:
        assert torch.equal(p.model.policy.ltp.thresholds, ltp_model.policy.thresholds)
        assert p.knobs["lambda"] == 0.1 and p.model.policy.describe()["exits"]["exit_rule"] == "u <= speed"
    # an LTP lambda that was never trained: one clear error
    mp = smoke_context("magic_pyramid", ["methods_config.magic_pyramid={lambdas: [0.7]}"])
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="no trained ltp model"):
        plugin.train(mp)
