"""The GPU path: every method's inference path, its FLOPs check, its host
syncs and the side-by-side timing on a CUDA device, matching the CPU; and the
whole smoke workflow (training, CoFi/Infor-Coef materialization, save/load,
SQuAD when a data directory is set, evaluate, report) with device=cuda.
Skipped without a GPU; run it on a GPU machine whenever one is at hand."""
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
    dense = copy.deepcopy(tiny_model).cuda()  # demo_model prunes the model it is given in place
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
    t = time_side_by_side(gpu, dense, enc, "none", 64, 2, TimingSpec(threads=1, min_rounds=3, max_rounds=5),
                          device="cuda")
    assert t.rounds >= 3 and t.speedup > 0 and len(t.point_gpu_s) == t.rounds
    assert t.to_dict()["gpu_speedup_low"] <= t.to_dict()["gpu_speedup"] <= t.to_dict()["gpu_speedup_high"]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("name", method_names())
def test_method_at_lower_precision_on_cuda_runs_with_exact_flops(name, precision, tiny_model):
    """bf16 (fp16 where the GPU has no bf16) and torchao's int8 on the GPU: every method runs, its
    FLOPs equal FlopCounterMode's, two runs agree, and the kernels it ran are observed."""
    from types import SimpleNamespace

    from harness.measure.kernels import observed_kernels
    from harness.model.precision import at_precision, unavailable

    if unavailable(precision, "cuda"):
        pytest.skip(unavailable(precision, "cuda"))
    ids, mask = (t.cuda() for t in random_batch(len(LENGTHS), max(LENGTHS), lengths=LENGTHS, seed=3))
    batch = SimpleNamespace(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    fp32 = get_method(name).demo_model(tiny_model).eval().cuda()
    model, notes = at_precision(fp32, precision, "cuda", calibration=[batch])
    with torch.no_grad():
        measured = count_flops(lambda: model(ids, mask))
        first, second = model(ids, mask), model(ids, mask)
    assert torch.isfinite(first.logits.float()).all()
    analytic = trace_flops(first.trace, "batch").sum()
    assert abs(analytic - measured) / measured < 1e-3, (name, precision, analytic, measured)
    assert torch.equal(first.logits, second.logits)
    seen = observed_kernels(lambda: model(ids, mask, trace=False), "cuda")
    assert seen["device_kernels"], seen


@pytest.mark.parametrize("name", method_names())
def test_timed_forward_syncs_on_cuda_as_counted(name, tiny_model):
    """torch's own sync detector on the GPU agrees with harness.measure.syncs:
    at most one sync per layer in the timed forward."""
    import warnings

    from harness.measure.syncs import count_host_syncs

    model = get_method(name).demo_model(tiny_model).eval().cuda()
    ids, mask = (t.cuda() for t in random_batch(len(LENGTHS), max(LENGTHS), lengths=LENGTHS, seed=3))
    with torch.inference_mode():
        model(ids, mask, trace=False)
        torch.cuda.synchronize()
        counted = sum(count_host_syncs(lambda: model(ids, mask, trace=False)).values())
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model(ids, mask, trace=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    seen = sum("synchroniz" in str(w.message) for w in caught)
    assert seen <= len(model.layers) and counted <= len(model.layers), (name, seen, counted)


def test_smoke_workflow_on_cuda(tmp_path):
    """Every job of the smoke profile on the GPU: records say cuda, name the GPU
    and its memory, and carry device-time speedups beside wall-clock ones."""
    from .workflow_run import records, snakemake

    snakemake(tmp_path, config=("device=cuda",))
    recs = records(tmp_path)
    assert recs and {r["provenance"]["device"] for r in recs} == {"cuda"}
    assert all(r["provenance"]["hardware"]["gpu"] and r["provenance"]["gpu_peak_memory_bytes"] for r in recs)
    timed = [r for r in recs if r["timing"]]
    assert timed and all("gpu_speedup" in t for r in timed for t in r["timing"]["by_batch_size"].values())
    assert {r["base_method"] for r in recs} >= {"cofi", "infor_coef", "dense"}
