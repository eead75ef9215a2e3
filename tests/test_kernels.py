"""The attention kernel each layer runs is known without tracing, and dense can
run the pruners' kernel (explicit softmax) as a second timing baseline."""
from __future__ import annotations

import copy

import torch

from harness.plugin.registry import get_method
from harness.run.jobs import dense_with_kernel

from .conftest import random_batch


def test_dense_runs_fused_attention_unless_asked_for_the_eager_kernel(tiny_model):
    eager = dense_with_kernel(tiny_model, "eager")
    assert tiny_model.attention_kernels() == ["sdpa"] * 3 and eager.attention_kernels() == ["eager"] * 3
    assert eager.layers is tiny_model.layers  # the same weights, not a copy
    ids, mask = random_batch(3, 20, lengths=[20, 7, 13])
    with torch.no_grad():
        assert torch.allclose(eager(ids, mask).logits, tiny_model(ids, mask).logits, atol=1e-5)
    assert tiny_model.attention_kernels() == ["sdpa"] * 3  # the original is untouched


def test_a_score_pruner_reports_eager_where_it_reads_probabilities(tiny_model):
    model = get_method("power_bert").demo_model(copy.deepcopy(tiny_model)).eval()
    assert model.attention_kernels() == ["eager"] * 3
    model.layers[1].num_heads = 0  # a layer without heads runs no attention at all
    assert model.attention_kernels()[1] == "none"


def test_timings_name_the_kernels_and_time_dense_on_the_pruners_kernel(smoke_context):
    from harness.run.jobs import side_by_side

    ctx = smoke_context("power_bert", ["timing.dense_kernels=[auto,eager]", "timing.batch_sizes=[2]",
                                       "timing.n_examples=4"])
    dense = ctx.load_model(method="dense")
    point = get_method("power_bert").demo_model(copy.deepcopy(dense)).eval()
    timings = side_by_side(ctx, point, dense, "none")
    for t in timings.values():
        assert t["attention_kernels"] == {"point": point.attention_kernels(), "dense": dense.attention_kernels()}
        assert set(t["attention_kernels"]["point"]) == {"eager"} and set(t["attention_kernels"]["dense"]) == {"sdpa"}
        eager = t["dense_eager"]
        assert eager["rounds"] >= 3 and eager["speedup_low"] <= eager["speedup"] <= eager["speedup_high"]
    assert dense.attention_kernel == "auto"
