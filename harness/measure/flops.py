"""Analytic FLOPs from traces (FLOPs = 2 x multiply-accumulates).

Counted: every matrix product that runs - Q/K/V/O projections, QK^T, AV, the
FFN, the pooler, the classifier (a span head's on every position it reads), and whatever a policy reports as extra MACs
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

from harness.model.trace import ArchShape, Trace, scoring_macs  # noqa: F401 (scoring_macs: see model/trace)

FLOPS_PER_MAC = 2


def layer_macs(n_attn: np.ndarray, n_ffn: np.ndarray, arch: ArchShape, layer: int) -> np.ndarray:
    """MACs of one layer for token counts entering attention and FFN."""
    return layer_macs_of(np.asarray(n_attn, dtype=np.float64), np.asarray(n_ffn, dtype=np.float64), arch, layer)


def layer_macs_of(n_attn, n_ffn, arch: ArchShape, layer: int):
    """`layer_macs` on any array type whose arithmetic is elementwise (NumPy arrays, torch tensors: a
    method's differentiable expected cost under its keep probabilities, ToP's constraint), so the
    objective a method trains against and the FLOPs the records report are one formula."""
    d, dh = arch.hidden, arch.head_dim
    inner = arch.heads[layer] * dh
    attn = 0.0
    if arch.heads[layer]:
        # Q, K, V: n*d*inner each; O: n*inner*d; QK^T and AV: n*n*dh per head
        attn = 4.0 * n_attn * d * inner + 2.0 * n_attn * n_attn * inner
    ffn = 2.0 * n_ffn * d * arch.ffn[layer]
    return attn + ffn


def head_macs(arch: ArchShape, tokens=1.0):
    """Final-head MACs for one example: pooler + classifier on [CLS], or a
    span head's start/end classifier on each of `tokens` positions."""
    if arch.head == "span":
        return np.asarray(tokens, dtype=np.float64) * float(arch.classifier_in * arch.num_labels)
    return float(arch.pooler[0] * arch.pooler[1] + arch.classifier_in * arch.num_labels)


def count_macs(n_attn: np.ndarray, n_ffn: np.ndarray, arch: ArchShape, final_head=True, extra=0.0,
               head_tokens=1.0) -> np.ndarray:
    """Per-example MACs from token counts entering each layer's attention and
    FFN ([N, L] each), whether the final head ran ([N] or a bool), policy
    MACs (`extra`, [N] or a number) and the positions a span head ran on
    (`head_tokens`, [N] or a number; a [CLS] head ignores it)."""
    total = np.zeros(n_attn.shape[0], dtype=np.float64)
    for layer in range(arch.num_layers):
        total += layer_macs(n_attn[:, layer], n_ffn[:, layer], arch, layer)
    total += np.asarray(final_head, dtype=np.float64) * head_macs(arch, head_tokens)
    return total + extra


def trace_macs(trace: Trace, protocol: str) -> np.ndarray:
    """Per-example MACs of a traced run under a padding protocol."""
    real = protocol == "none"
    return count_macs(
        trace.n_attn if real else trace.w_attn,
        trace.n_ffn if real else trace.w_ffn,
        trace.arch,
        trace.final_head,
        trace.extra_macs_real if real else trace.extra_macs,
        trace.head_tokens if real else trace.head_width,
    )


def policy_macs(trace: Trace, protocol: str) -> np.ndarray:
    """Per-example MACs of the policy's own products (scorers, predictors,
    exit heads), part of `trace_macs`: what the method pays to decide."""
    return np.asarray(trace.extra_macs_real if protocol == "none" else trace.extra_macs, dtype=np.float64)


def trace_flops(trace: Trace, protocol: str) -> np.ndarray:
    return FLOPS_PER_MAC * trace_macs(trace, protocol)


def dense_macs(lengths: np.ndarray, arch: ArchShape) -> np.ndarray:
    """MACs of the unpruned model on rows of the given (padded) lengths."""
    lengths = np.asarray(lengths, dtype=np.float64)
    counts = np.repeat(lengths[:, None], arch.num_layers, 1)
    return count_macs(counts, counts, arch, head_tokens=lengths)


def attention_product_macs(n_attn: np.ndarray, arch: ArchShape) -> np.ndarray:
    """Per-example MACs of the attention products QK^T and AV ([N, L] token counts entering attention):
    the part of `count_macs` that is not a Linear layer's (nor the policy's)."""
    n = np.asarray(n_attn, dtype=np.float64)
    total = np.zeros(n.shape[0], dtype=np.float64)
    for layer in range(arch.num_layers):
        total += 2.0 * n[:, layer] * n[:, layer] * arch.heads[layer] * arch.head_dim
    return total


def trace_attention_product_macs(trace: Trace, protocol: str) -> np.ndarray:
    return attention_product_macs(trace.n_attn if protocol == "none" else trace.w_attn, trace.arch)


def bops(macs: np.ndarray, product_macs: np.ndarray, policy: np.ndarray, bits: dict[str, int]) -> np.ndarray:
    """Per-example bit operations (MACs x weight bits x activation bits; LTP Section 4.6): the Linear
    layers' MACs (`macs` less the attention products' and the policy's) at the Linear widths of `bits`
    (`harness.model.precision.bits`), the attention products and the policy's own products (scorers,
    predictors, exit heads: counted at full width, an upper bound where a predictor is quantized) at
    `bits["matmul"]` squared."""
    macs, product_macs, policy = (np.asarray(a, dtype=np.float64) for a in (macs, product_macs, policy))
    linear = macs - product_macs - policy
    return (linear * bits["linear_weight"] * bits["linear_activation"]
            + (product_macs + policy) * bits["matmul"] ** 2)


def relative_flops(flops, baseline_flops) -> float:
    """FLOPs of a set of examples relative to the dense model on the same
    examples (total over total; 1 / the FLOPs speedup)."""
    return float(np.sum(flops) / np.sum(baseline_flops))
