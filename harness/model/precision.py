"""A trained model at a lower numerical precision: the precision axis of the evaluation (`eval.precisions`).

Why here, once, for every method: a speedup timed in fp32 on a CPU or GPU whose bf16 or int8 units make
the dense model itself faster is not the speedup a deployer sees. Each lower precision is made from the
trained fp32 model the same way for every method, policy included, so a method's own decisions (scores,
thresholds, gates, exits) run at that precision too and their effect on accuracy and tokens is measured.

* `fp32`: the model as trained.
* `bf16`: a copy with every parameter and buffer in bfloat16 (float16 on a GPU without bf16, named
  `fp16` in records): weights, activations, the policy's decisions.
* `int8`: a copy whose every `nn.Linear` (the encoder's projections and FFN, the pooler and classifier,
  and a policy's predictors and exit heads) is quantized by torchao: weights symmetric int8 per output
  channel; activations symmetric int8 per tensor with a **static** scale calibrated on validation
  batches (the largest magnitude each Linear's input reached, over 127), LTP Section 4.6's "static
  uniform symmetric" quantization. A Linear that did not run during calibration, or ran on inputs of
  different ranks (torchao's static scale has the input's rank), falls back to torchao's dynamic
  per-token activation scales, and `notes` counts them. Embeddings, LayerNorm, softmax, GELU and the
  attention products QK^T and AV stay in fp32 (LTP also keeps the embeddings at full precision).
  No hand-written kernels: torchao runs `torch._int_mm` (oneDNN's u8s8/s8s8 GEMM on a CPU, cuBLAS on a GPU).

`unavailable` says why a precision cannot run on a device (never a silent fp32 run); `bits` gives the
weight and activation widths the BOPs count uses (`harness.measure.flops.bops`).
"""
from __future__ import annotations

import copy
import importlib.util

import torch

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
FULL = "fp32"


def half_dtype(device) -> torch.dtype:
    """bfloat16, or float16 on a GPU without bf16 units."""
    if str(device).startswith("cuda") and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16
    return torch.bfloat16


def resolved(precision: str, device) -> str:
    """The name a record gives the precision that runs: `bf16` becomes `fp16` on a GPU without bf16."""
    if precision == "bf16" and half_dtype(device) == torch.float16:
        return "fp16"
    return precision


def bits(precision: str) -> dict[str, int]:
    """Weight and activation bit widths of the matrix products a precision quantizes (`linear`) and of
    those it leaves alone (`matmul`: QK^T, AV and the policy's own scoring products)."""
    if precision == "int8":
        return {"linear_weight": 8, "linear_activation": 8, "matmul": 32}
    width = {"fp32": 32, "bf16": 16, "fp16": 16}[precision]
    return {"linear_weight": width, "linear_activation": width, "matmul": width}


def unavailable(precision: str, device) -> str | None:
    """Why `precision` cannot run on `device` as it would be deployed (None: it can)."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})"
    if precision == FULL:
        return None
    on_gpu = str(device).startswith("cuda")
    if precision == "bf16" and not on_gpu and not _cpu_has_bf16():
        return ("this CPU has no bfloat16 matrix units (neither AVX-512 BF16 nor AMX); "
                "bf16 would be emulated, not deployed")
    if precision == "int8" and importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (pip install torchao, pinned in constraints.txt)"
    return None


def _cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX: oneDNN runs bf16 on plain AVX-512 or AVX2 too, by emulation, which is not
    what a deployer would choose bf16 for."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def at_precision(model: torch.nn.Module, precision: str, device, calibration=()) -> tuple[torch.nn.Module, dict]:
    """(a copy of `model` at `precision`, notes on how it was made). `calibration`: batches
    (`harness.data.padding.Batch`, on `device`) that set int8's static activation scales."""
    if precision == FULL:
        return model, {"precision": FULL}
    why = unavailable(precision, device)
    if why:
        raise RuntimeError(f"precision {precision} cannot run on {device}: {why}")
    out = copy.deepcopy(model).eval()
    if precision == "bf16":
        dtype = half_dtype(device)
        return out.to(dtype), {"precision": resolved(precision, device), "dtype": str(dtype).replace("torch.", "")}
    return _int8(out, list(calibration))


def _import_torchao() -> None:
    """torchao's import loads every kernel library it ships and logs a warning for each that will not load: on
    a CPU wheel of torch, its CUDA-only ones (mxfp8, CUTLASS), in every evaluate job's log. The int8 path uses
    none of them, so the import runs with torchao's logger at ERROR."""
    import logging

    log = logging.getLogger("torchao")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import torchao  # noqa: F401
    finally:
        log.setLevel(level)


def _int8(model: torch.nn.Module, calibration: list) -> tuple[torch.nn.Module, dict]:
    _import_torchao()
    from torchao.quantization import (Int8DynamicActivationInt8WeightConfig, Int8StaticActivationInt8WeightConfig,
                                      quantize_)
    from torchao.quantization.granularity import PerRow, PerTensor

    # a Linear pruned to nothing (CoFi removing every head of a layer) computes nothing: left as it is
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.weight.numel()}
    seen: dict[str, dict] = {name: {"absmax": 0.0, "ranks": set()} for name in linears}

    def observer(name):
        def hook(_module, args):
            x = args[0]
            seen[name]["ranks"].add(x.dim())
            if x.numel():
                seen[name]["absmax"] = max(seen[name]["absmax"], float(x.detach().abs().max()))
        return hook

    handles = [m.register_forward_pre_hook(observer(name)) for name, m in linears.items()]
    try:
        with torch.inference_mode():
            for b in calibration:
                model(b.input_ids, b.attention_mask, b.token_type_ids, trace=False)
    finally:
        for h in handles:
            h.remove()
    static, dynamic = [], []
    for name, module in linears.items():
        s = seen[name]
        if len(s["ranks"]) == 1 and s["absmax"] > 0:
            rank = next(iter(s["ranks"]))
            scale = torch.full([1] * rank, s["absmax"] / 127.0, dtype=torch.float32, device=module.weight.device)
            config = Int8StaticActivationInt8WeightConfig(act_quant_scale=scale, granularity=[PerTensor(), PerRow()],
                                                          set_inductor_config=False)
            static.append(name)
        else:
            config = Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
            dynamic.append(name)
        quantize_(module, config, filter_fn=lambda m, _fqn: isinstance(m, torch.nn.Linear))
    return model, {"precision": "int8", "library": "torchao", "linears": len(linears),
                   "static_activation_scales": len(static), "dynamic_activation_scales": len(dynamic),
                   "dynamic_linears": dynamic,
                   "calibration_examples": int(sum(b.input_ids.shape[0] for b in calibration)),
                   "weights": "int8 symmetric per output channel",
                   "activations": "int8 symmetric per tensor, static scale = calibrated max |x| / 127",
                   "full_precision": "embeddings, LayerNorm, softmax, GELU, QK^T and AV"}
