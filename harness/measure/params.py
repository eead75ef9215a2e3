"""Encoder parameter counts from a model's structural shape.

What static pruning changes, stated in every record: the prunable encoder
parameters kept (every layer's attention and FFN weights and biases;
embeddings, LayerNorms, pooler and classifier excluded, as CoFi counts
sparsity), their fraction of the dense model's, and the shape per layer. A
dense or token-pruning model keeps all of them (sparsity 0).
"""
from __future__ import annotations

from harness.model.trace import ArchShape


def attention_params(hidden: int, inner: int) -> int:
    """Q, K, V (hidden -> inner, with biases) and O (inner -> hidden, with bias); 0 when removed."""
    return 4 * hidden * inner + 3 * inner + hidden if inner else 0


def ffn_params(hidden: int, ffn: int) -> int:
    """The FFN's two projections with their biases; 0 when removed."""
    return 2 * hidden * ffn + ffn + hidden if ffn else 0


def encoder_params(arch: ArchShape) -> int:
    return sum(attention_params(arch.hidden, h * arch.head_dim) + ffn_params(arch.hidden, f)
               for h, f in zip(arch.heads, arch.ffn))


def structure_summary(arch: ArchShape, dense: ArchShape) -> dict:
    kept, full = encoder_params(arch), encoder_params(dense)
    return {
        "encoder_params": kept,
        "dense_encoder_params": full,
        "kept_fraction": kept / full,
        "sparsity": 1.0 - kept / full,
        "hidden": arch.hidden,
        "heads_per_layer": list(arch.heads),
        "ffn_dims_per_layer": list(arch.ffn),
    }
