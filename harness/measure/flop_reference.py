"""Reference FLOP counting with `torch.utils.flop_counter.FlopCounterMode`.

Used by the tests to cross-check the analytic counter on real runs. PyTorch's
counter has no formula for the CPU SDPA kernel
(`aten._scaled_dot_product_flash_attention_for_cpu`), so it would silently
miss QK^T and AV on CPU; we register the same formula PyTorch uses for its
GPU SDPA kernels. Nor has it one for `aten._int_mm`, the int8 GEMM torchao's quantized Linear runs
(`harness.model.precision`): we register the plain matrix-product count for it, so an int8 model's
products are counted like its fp32 twin's.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils import flop_counter

_aten = torch.ops.aten
_registered = False


def _register_cpu_sdpa() -> None:
    global _registered
    if _registered:
        return
    op = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None and op.default not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(op)
        def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    int_mm = getattr(_aten, "_int_mm", None)
    if int_mm is not None and int_mm.default not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(int_mm)
        def _int_mm_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.mm_flop(a_shape, b_shape)

    _registered = True


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs (2 x MACs) of the matrix products `fn()` runs."""
    _register_cpu_sdpa()
    with flop_counter.FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
