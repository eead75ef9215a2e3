"""Analytic FLOPs from traces (FLOPs = 2 x multiply-accumulates).

Counted: every matrix product that runs - Q/K/V/O projections, QK^T, AV, the
FFN, the pooler, the classifier, and whatever a policy reports as extra MACs
(exit heads, predictors). Not counted: softmax, LayerNorm, GELU, embeddings.
This is the convention of `torch.utils.flop_counter.FlopCounterMode`, which
the tests use to cross-check this module on real runs.

Per-sample accounting under each padding protocol:

* `none`     - the example's own real token counts (as if run alone),
* `batch`    - the physical width of the padded batch it ran in,
* `sequence` - the physical width too (the fixed per-task length, shrunk
               only by what the method physically removed).

Policy MACs (exit heads that attend over tokens, predictors) are recorded both
as run and at real token counts, and follow the same rule.
"""
from __future__ import annotations

import numpy as np

from harness.model.trace import ArchShape, Trace

FLOPS_PER_MAC = 2


def layer_macs(n_attn: np.ndarray, n_ffn: np.ndarray, arch: ArchShape, layer: int) -> np.ndarray:
    """MACs of one layer for token counts entering attention and FFN."""
    d, dh = arch.hidden, arch.head_dim
    inner = arch.heads[layer] * dh
    n_attn = n_attn.astype(np.float64)
    n_ffn = n_ffn.astype(np.float64)
    attn = 0.0
    if arch.heads[layer]:
        # Q, K, V: n*d*inner each; O: n*inner*d; QK^T and AV: n*n*dh per head
        attn = 4.0 * n_attn * d * inner + 2.0 * n_attn * n_attn * inner
    ffn = 2.0 * n_ffn * d * arch.ffn[layer]
    return attn + ffn


def head_macs(arch: ArchShape) -> float:
    """Pooler + classifier MACs for one example."""
    return float(arch.pooler[0] * arch.pooler[1] + arch.classifier_in * arch.num_labels)


def trace_macs(trace: Trace, protocol: str) -> np.ndarray:
    """Per-example MACs of a traced run under a padding protocol."""
    real = protocol == "none"
    na = trace.n_attn if real else trace.w_attn
    nf = trace.n_ffn if real else trace.w_ffn
    total = np.zeros(trace.n, dtype=np.float64)
    for layer in range(trace.arch.num_layers):
        total += layer_macs(na[:, layer], nf[:, layer], trace.arch, layer)
    total += trace.final_head.astype(np.float64) * head_macs(trace.arch)
    total += trace.extra_macs_real if real else trace.extra_macs
    return total


def trace_flops(trace: Trace, protocol: str) -> np.ndarray:
    return FLOPS_PER_MAC * trace_macs(trace, protocol)


def dense_macs(lengths: np.ndarray, arch: ArchShape) -> np.ndarray:
    """MACs of the unpruned model on rows of the given (padded) lengths."""
    lengths = np.asarray(lengths, dtype=np.float64)
    total = np.zeros_like(lengths)
    for layer in range(arch.num_layers):
        total += layer_macs(lengths, lengths, arch, layer)
    return total + head_macs(arch)
