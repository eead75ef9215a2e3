"""Physical slicing of heads, FFN dimensions and hidden dimensions.

Structural pruning trains with gates on `Layer` (CoFi-style head, FFN and
hidden-dimension masks; no registered method trains them yet) and then calls
these to really remove the pruned rows/columns of the weight matrices,
so the pruned model is smaller and faster, not merely masked. After slicing,
`BertClassifier.arch()` reports the new shape and the FLOPs counter follows.
SpAtten's optional cascade head pruning uses `prune_heads`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harness.model.encoder import BertClassifier, Layer


def _slice_linear(lin: nn.Linear, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Linear:
    w = lin.weight.detach()
    b = lin.bias.detach() if lin.bias is not None else None
    if out_idx is not None:
        w = w.index_select(0, out_idx)
        b = b.index_select(0, out_idx) if b is not None else None
    if in_idx is not None:
        w = w.index_select(1, in_idx)
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None).to(w.device, w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _slice_norm(norm: nn.LayerNorm, idx: torch.Tensor) -> nn.LayerNorm:
    new = nn.LayerNorm(len(idx), eps=norm.eps).to(norm.weight.device, norm.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(norm.weight.detach()[idx])
        new.bias.copy_(norm.bias.detach()[idx])
    return new


def prune_heads(layer: Layer, keep: Sequence[int]) -> None:
    """Keep only attention heads `keep` of `layer` (empty = remove the sublayer)."""
    dh = layer.head_dim
    idx = torch.tensor([h * dh + j for h in sorted(keep) for j in range(dh)], dtype=torch.long)
    layer.query = _slice_linear(layer.query, idx, None)
    layer.key = _slice_linear(layer.key, idx, None)
    layer.value = _slice_linear(layer.value, idx, None)
    layer.attn_out = _slice_linear(layer.attn_out, None, idx)
    layer.num_heads = len(keep)
    layer.head_gate = None


def prune_ffn(layer: Layer, keep: Sequence[int]) -> None:
    """Keep only FFN intermediate dims `keep` (empty = remove the sublayer)."""
    idx = torch.tensor(sorted(keep), dtype=torch.long)
    layer.ffn_in = _slice_linear(layer.ffn_in, idx, None)
    layer.ffn_out = _slice_linear(layer.ffn_out, None, idx)
    layer.ffn_gate = None


def prune_hidden(model: BertClassifier, keep: Sequence[int]) -> None:
    """Keep only hidden dims `keep` everywhere (embeddings, every layer, pooler input).

    LayerNorms then normalise over the kept dims only, as in CoFi.
    """
    idx = torch.tensor(sorted(keep), dtype=torch.long)
    emb = model.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        e: nn.Embedding = getattr(emb, name)
        new = nn.Embedding(e.num_embeddings, len(idx), padding_idx=e.padding_idx)
        with torch.no_grad():
            new.weight.copy_(e.weight.detach()[:, idx])
        setattr(emb, name, new)
    emb.LayerNorm = _slice_norm(emb.LayerNorm, idx)
    for layer in model.layers:
        if layer.num_heads:
            layer.query = _slice_linear(layer.query, None, idx)
            layer.key = _slice_linear(layer.key, None, idx)
            layer.value = _slice_linear(layer.value, None, idx)
        layer.attn_out = _slice_linear(layer.attn_out, idx, None)
        layer.attn_norm = _slice_norm(layer.attn_norm, idx)
        layer.ffn_in = _slice_linear(layer.ffn_in, None, idx)
        layer.ffn_out = _slice_linear(layer.ffn_out, idx, None)
        layer.ffn_norm = _slice_norm(layer.ffn_norm, idx)
        layer.hidden_gate = None
    model.pooler = _slice_linear(model.pooler, None, idx)
    model.embedding_hidden_gate = None
