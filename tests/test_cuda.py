"""The GPU path: every method's inference path, its FLOPs check and the
side-by-side timing on a CUDA device, matching the CPU. Skipped without a GPU;
run it on a GPU machine whenever one is at hand."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from harness.data.encoding import Encoded
from harness.measure.flop_reference import count_flops
from harness.measure.flops import trace_flops
from harness.measure.timing import TimingSpec, time_side_by_side
from harness.plugin.registry import get_method, method_names

from .conftest import random_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
LENGTHS = [57, 12, 33, 40]


@pytest.mark.parametrize("name", method_names())
def test_method_on_cuda_matches_cpu_and_its_flops(name, tiny_model):
    cpu = get_method(name).demo_model(tiny_model).eval()
    gpu = copy.deepcopy(cpu).cuda()
    ids, mask = random_batch(len(LENGTHS), max(LENGTHS), lengths=LENGTHS, seed=3)
    with torch.no_grad():
        on_cpu = cpu(ids, mask)
        measured = count_flops(lambda: gpu(ids.cuda(), mask.cuda()))
        on_gpu = gpu(ids.cuda(), mask.cuda())
    analytic = trace_flops(on_gpu.trace, "batch").sum()
    assert abs(analytic - measured) / measured < 1e-3, (name, analytic, measured)
    assert np.array_equal(on_gpu.trace.n_attn, on_cpu.trace.n_attn)
    assert np.array_equal(on_gpu.trace.exit_layer, on_cpu.trace.exit_layer)
    assert torch.allclose(on_gpu.logits.cpu(), on_cpu.logits, atol=1e-3)
    enc = Encoded([list(ids[i, :n].tolist()) for i, n in enumerate(LENGTHS)], [[0] * n for n in LENGTHS],
                  np.zeros(len(LENGTHS), dtype=np.int64))
    t = time_side_by_side(gpu, copy.deepcopy(tiny_model).cuda(), enc, "none", 64, 2,
                          TimingSpec(threads=1, min_rounds=3, max_rounds=5), device="cuda")
    assert t.rounds >= 3 and t.speedup > 0
