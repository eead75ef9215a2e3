"""Every registered method: analytic FLOPs == FlopCounterMode on its real
(physically pruned / exiting) inference path, and the path really saves work.

Methods are discovered from the registry; this file never lists them.
"""
from __future__ import annotations

import pytest
import torch

from harness.measure.flop_reference import count_flops
from harness.measure.flops import trace_flops, trace_macs
from harness.plugin.registry import get_method, method_names

from .conftest import random_batch


@pytest.mark.parametrize("name", method_names())
@pytest.mark.parametrize("lengths", [[57], [57, 12, 33, 40]])
def test_flops_match_flop_counter(name, lengths, tiny_model):
    model = get_method(name).demo_model(tiny_model).eval()
    ids, mask = random_batch(len(lengths), max(lengths), lengths=lengths, seed=3)
    with torch.no_grad():
        measured = count_flops(lambda: model(ids, mask))
        out = model(ids, mask)
    protocol = "none" if len(lengths) == 1 else "batch"
    analytic = trace_flops(out.trace, protocol).sum()
    assert abs(analytic - measured) / measured < 1e-3, (name, analytic, measured)


@pytest.mark.parametrize("name", method_names())
def test_inference_is_deterministic(name, tiny_model):
    """The same model on the same batch twice: identical logits and traces
    (the skimmers take the argmax where their references sample)."""
    model = get_method(name).demo_model(tiny_model).eval()
    ids, mask = random_batch(4, 50, lengths=[50, 20, 35, 9], seed=5)
    with torch.no_grad():
        a, b = model(ids, mask), model(ids, mask)
    assert torch.equal(a.logits, b.logits)
    assert (a.trace.n_attn == b.trace.n_attn).all() and (a.trace.n_ffn == b.trace.n_ffn).all()
    assert (a.trace.exit_layer == b.trace.exit_layer).all()


@pytest.mark.parametrize("name", method_names())
def test_padding_does_not_change_results(name, tiny_model):
    """Each example runs the same alone as in a padded batch: same tokens per
    layer, same exit, same logits. Selection must never depend on padding."""
    model = get_method(name).demo_model(tiny_model).eval()
    lengths = [57, 12, 33, 40]
    ids, mask = random_batch(4, 57, lengths=lengths, seed=3)
    with torch.no_grad():
        batch = model(ids, mask)
        for i, n in enumerate(lengths):
            alone = model(ids[i : i + 1, :n], mask[i : i + 1, :n])
            assert alone.trace.n_attn[0].tolist() == batch.trace.n_attn[i].tolist()
            assert alone.trace.n_ffn[0].tolist() == batch.trace.n_ffn[i].tolist()
            assert alone.trace.exit_layer[0] == batch.trace.exit_layer[i]
            assert torch.allclose(alone.logits[0], batch.logits[i], atol=1e-4)
            # protocol `none` counts the example as if run alone, policy compute included
            assert trace_macs(alone.trace, "none")[0] == pytest.approx(trace_macs(batch.trace, "none")[i])


@pytest.mark.parametrize("name", [n for n in method_names() if n != "dense"])
def test_method_inference_saves_work(name, tiny_model):
    dense_macs = None
    ids, mask = random_batch(1, 60, seed=4)
    with torch.no_grad():
        dense_macs = trace_macs(tiny_model(ids, mask).trace, "none")[0]
        model = get_method(name).demo_model(tiny_model).eval()
        macs = trace_macs(model(ids, mask).trace, "none")[0]
    assert macs < dense_macs, f"{name}: demo path does not prune or exit ({macs} >= {dense_macs})"


@pytest.mark.parametrize("name", method_names())
def test_plugin_metadata(name):
    plugin = get_method(name)
    assert plugin.name == name and plugin.summary
    for req in plugin.requires:
        get_method(req)


SPAN_METHODS = [n for n in method_names() if "span" not in get_method(n).cannot_serve]


@pytest.mark.parametrize("name", SPAN_METHODS)
@pytest.mark.parametrize("restore", [True, False])
def test_span_head_under_every_span_method(name, restore, tiny_span_model):
    """A span head after each method's inference path: FLOPs == FlopCounterMode,
    logits at every position; with Drop-and-Restore every real token can be the
    answer, without it only the tokens the method kept."""
    model = get_method(name).demo_model(tiny_span_model).eval()
    model.restore_dropped = restore
    lengths = [57, 12, 33, 40]
    ids, mask = random_batch(4, 57, lengths=lengths, seed=3)
    with torch.no_grad():
        measured = count_flops(lambda: model(ids, mask))
        out = model(ids, mask)
    assert out.logits.shape == (4, 57, 2)
    analytic = trace_flops(out.trace, "batch").sum()
    assert abs(analytic - measured) / measured < 1e-3, (name, analytic, measured)
    answerable = (out.logits[..., 0] > -1e3).sum(1).tolist()
    assert answerable == out.trace.head_tokens.tolist()
    if restore:
        assert answerable == lengths
    else:  # the tokens still there after the last layer
        assert answerable == out.trace.n_ffn[:, -1].tolist()


@pytest.mark.parametrize("name", [n for n in method_names() if n not in SPAN_METHODS])
def test_methods_that_cannot_serve_spans_say_why(name):
    from harness.data.tasks import get_task

    reason = get_method(name).exclusion(get_task("squad"))
    assert reason and len(reason) > 40 and get_method(name).exclusion(get_task("mr")) is None
