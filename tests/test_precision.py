"""Every registered method's inference path in bfloat16 (issue 32's precision axis, its first part): the
method's model, policy included, cast to bf16 runs on the tiny model, its own decisions (scores,
thresholds, gates, exits) taken in bf16; the analytic FLOPs still equal FlopCounterMode's count of what
ran; and two runs agree bit for bit. Methods come from the registry; no list here."""
from __future__ import annotations

import pytest
import torch

from harness.measure.flop_reference import count_flops
from harness.measure.flops import trace_flops
from harness.plugin.registry import get_method, method_names

from .conftest import random_batch

LENGTHS = [57, 12, 33, 40]


@pytest.mark.parametrize("name", method_names())
def test_every_method_runs_in_bf16_with_exact_flops_and_determinism(name, tiny_model):
    model = get_method(name).demo_model(tiny_model).eval().to(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    ids, mask = random_batch(len(LENGTHS), max(LENGTHS), lengths=LENGTHS, seed=3)
    with torch.no_grad():
        measured = count_flops(lambda: model(ids, mask))
        first, second = model(ids, mask), model(ids, mask)
    assert first.logits.dtype == torch.bfloat16 and torch.isfinite(first.logits.float()).all()
    analytic = trace_flops(first.trace, "batch").sum()
    assert abs(analytic - measured) / measured < 1e-3, (name, analytic, measured)
    assert torch.equal(first.logits, second.logits)
    for field in ("n_attn", "n_ffn", "exit_layer"):
        assert (getattr(first.trace, field) == getattr(second.trace, field)).all(), field
