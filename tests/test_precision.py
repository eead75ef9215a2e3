"""Every registered method's inference path at each lower precision (issue 32's precision axis): the
method's model, policy included, converted by `harness.model.precision` runs on the tiny model, its own
decisions (scores, thresholds, gates, exits) taken at that precision; the analytic FLOPs still equal
FlopCounterMode's count of what ran (torchao's int8 GEMM included); two runs agree bit for bit. Methods
come from the registry; no list here."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from harness.measure.flop_reference import count_flops
from harness.measure.flops import trace_flops
from harness.model.precision import at_precision, unavailable
from harness.plugin.registry import get_method, method_names

from .conftest import random_batch

LENGTHS = [57, 12, 33, 40]


def _batch(seed: int):
    ids, mask = random_batch(len(LENGTHS), max(LENGTHS), lengths=LENGTHS, seed=seed)
    return SimpleNamespace(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("name", method_names())
def test_every_method_runs_at_lower_precision_with_exact_flops_and_determinism(name, precision, tiny_model):
    if unavailable(precision, "cpu"):
        pytest.skip(unavailable(precision, "cpu"))
    fp32 = get_method(name).demo_model(tiny_model).eval()
    model, notes = at_precision(fp32, precision, "cpu", calibration=[_batch(7)])
    assert notes["precision"] == precision
    if precision == "bf16":
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    else:  # every Linear's weight is torchao's int8 tensor; the fp32 model is left as it was
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.numel()]
        assert linears and all(type(m.weight).__name__ == "Int8Tensor" for m in linears)
        assert all(p.dtype == torch.float32 for p in fp32.parameters())
        assert notes["static_activation_scales"] + len(notes["dynamic_activation_scales"]) == notes["linears"]
    b = _batch(3)
    with torch.no_grad():
        measured = count_flops(lambda: model(b.input_ids, b.attention_mask))
        first, second = model(b.input_ids, b.attention_mask), model(b.input_ids, b.attention_mask)
        reference = fp32(b.input_ids, b.attention_mask)
    assert torch.isfinite(first.logits.float()).all()
    analytic = trace_flops(first.trace, "batch").sum()
    assert abs(analytic - measured) / measured < 1e-3, (name, analytic, measured)
    assert torch.equal(first.logits, second.logits)
    for field in ("n_attn", "n_ffn", "exit_layer"):
        assert (getattr(first.trace, field) == getattr(second.trace, field)).all(), field
    if precision == "int8" and (first.trace.n_attn == reference.trace.n_attn).all():
        # the same tokens kept: int8 logits stay near fp32's (a quantized model, not a different one)
        scale = reference.logits.abs().max().item() + 1e-6
        assert (first.logits.float() - reference.logits).abs().max().item() < 0.25 * scale + 0.05
