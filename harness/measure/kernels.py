"""Which kernels a forward pass ran: the evidence behind a record's precision.

Why: "bf16" or "int8" in a record says what was asked, not what ran. A CPU without bf16 units emulates
bf16, a library can fall back to dequantizing int8 weights and running fp32 GEMMs; the speed follows
what ran. So one untimed pass of each timed model is observed twice:

* the PyTorch profiler lists the matrix-product operators dispatched (`aten::addmm`, `aten::_int_mm`,
  `aten::bmm`, ...) and, on a GPU, the device kernels that ran (cuBLAS / cutlass names);
* on a CPU, oneDNN's verbose mode lists each primitive it executed with its implementation and ISA
  (e.g. `matmul brg_matmul:avx512_core_bf16 src:bf16 wei:bf16`, or `gemm_api src:u8 wei:s8 dst:s32`
  for int8 on AVX-512 VNNI). A matrix product that oneDNN did not run (fp32 `addmm` goes to MKL's sgemm
  in the CPU wheel) appears in the first list only.
"""
from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections import Counter

import torch

MATRIX_OPS = ("addmm", "mm", "bmm", "matmul", "linear", "_int_mm", "baddbmm", "scaled_dot_product", "einsum")


def observed_kernels(run, device) -> dict:
    """{"operators": {aten matrix op: calls}, "device_kernels": [...], "onednn": [...]} of one call of `run`."""
    from torch.profiler import ProfilerActivity, profile

    gpu = str(device).startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof, torch.inference_mode():  # as the timed passes run
        run()
        if gpu:
            torch.cuda.synchronize()
    ops: Counter = Counter()
    kernels: Counter = Counter()
    for event in prof.events():
        name = event.name
        if name.startswith("aten::") and any(k in name for k in MATRIX_OPS):
            ops[name] += 1
        if gpu and getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA:
            kernels[name[:120]] += 1
    out = {"operators": dict(sorted(ops.items())), "capture": "torch.profiler over one untimed pass"}
    if gpu:
        out["device_kernels"] = [k for k, _ in kernels.most_common(12)]
    else:
        out["onednn"] = onednn_primitives(run)
    return out


def observed_on(model, batch, device) -> dict:
    """`observed_kernels` of `model`'s untimed forward over one batch (`harness.data.padding.Batch`),
    called as the timed passes call it."""
    return observed_kernels(lambda: model(batch.input_ids, batch.attention_mask, batch.token_type_ids, trace=False),
                            device)


def onednn_primitives(run) -> list[str] | None:
    """The oneDNN primitives one call of `run` executed ("kind implementation data types"), from oneDNN's
    verbose output on the process's stdout (captured at the file-descriptor level); None where this
    PyTorch has no oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), torch.inference_mode():
                run()
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    seen = []
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) > 8 and parts[0] == "onednn_verbose" and "exec" in parts[:4]:
            at = parts.index("exec")
            kind, impl, descs = parts[at + 2], parts[at + 3], parts[at + 5]
            types = " ".join(d.split("::")[0] for d in descs.split() if ":" in d)
            entry = " ".join(x for x in (kind, impl or "(no implementation name)", types) if x)
            if entry not in seen:
                seen.append(entry)
    return seen
