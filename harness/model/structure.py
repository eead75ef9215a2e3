"""Physical slicing of heads, FFN dimensions and hidden dimensions.

Structural pruning trains with gates on `Layer` (CoFi's head, sublayer, FFN
and hidden-dimension masks) and then calls `materialize` to fold the gates'
values into the weights and really remove the pruned rows/columns, so the
pruned model is a smaller dense model, not a masked one. After slicing,
`BertClassifier.arch()` reports the new shape and the FLOPs counter follows.
SpAtten's optional cascade head pruning uses `prune_heads`. `demo_pruned` is
a structurally pruned model for the generic tests of a method that starts from
one (Infor-Coef starts from CoFi's), so such a method needs no other method's
code to build its demo.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

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
    with warnings.catch_warnings():  # a removed sublayer leaves zero-size projections
        warnings.simplefilter("ignore", UserWarning)
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
    idx = torch.tensor([h * dh + j for h in sorted(keep) for j in range(dh)], dtype=torch.long,
                       device=layer.query.weight.device)
    layer.query = _slice_linear(layer.query, idx, None)
    layer.key = _slice_linear(layer.key, idx, None)
    layer.value = _slice_linear(layer.value, idx, None)
    layer.attn_out = _slice_linear(layer.attn_out, None, idx)
    layer.num_heads = len(keep)
    layer.head_gate = None


def prune_ffn(layer: Layer, keep: Sequence[int]) -> None:
    """Keep only FFN intermediate dims `keep` (empty = remove the sublayer)."""
    idx = torch.tensor(sorted(keep), dtype=torch.long, device=layer.ffn_in.weight.device)
    layer.ffn_in = _slice_linear(layer.ffn_in, idx, None)
    layer.ffn_out = _slice_linear(layer.ffn_out, None, idx)
    layer.ffn_gate = None


def prune_hidden(model: BertClassifier, keep: Sequence[int]) -> None:
    """Keep only hidden dims `keep` everywhere (embeddings, every layer, pooler input).

    LayerNorms then normalise over the kept dims only, as in CoFi.
    """
    emb = model.embeddings
    idx = torch.tensor(sorted(keep), dtype=torch.long, device=emb.word_embeddings.weight.device)
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        e: nn.Embedding = getattr(emb, name)
        new = nn.Embedding(e.num_embeddings, len(idx), padding_idx=e.padding_idx,
                           device=e.weight.device, dtype=e.weight.dtype)
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
    if model.pooler is not None:
        model.pooler = _slice_linear(model.pooler, None, idx)
    else:  # a span head reads the hidden states directly
        model.classifier = _slice_linear(model.classifier, None, idx)
    model.embedding_hidden_gate = None


@dataclass
class Gates:
    """Gate values of a structurally pruned model (zeros = removed units;
    non-zero values are folded into the weights by `materialize`)."""

    heads: list[torch.Tensor]  # per layer [heads]
    attention: list[torch.Tensor]  # per layer scalar: the whole attention sublayer
    ffn_dims: list[torch.Tensor]  # per layer [intermediate]
    ffn: list[torch.Tensor]  # per layer scalar: the whole FFN sublayer
    hidden: torch.Tensor  # [hidden], shared by the embeddings and every layer

    def apply(self, model: BertClassifier) -> None:
        """Set the gates on `model` (the masked form of the pruned model)."""
        for i, layer in enumerate(model.layers):
            layer.head_gate, layer.attn_layer_gate = self.heads[i], self.attention[i]
            layer.ffn_gate, layer.ffn_layer_gate = self.ffn_dims[i], self.ffn[i]
            layer.hidden_gate = self.hidden
        model.embedding_hidden_gate = self.hidden


def clear_gates(model: BertClassifier) -> None:
    for layer in model.layers:
        layer.head_gate = layer.attn_layer_gate = layer.ffn_gate = layer.ffn_layer_gate = layer.hidden_gate = None
    model.embedding_hidden_gate = None


def _scale_rows(lin: nn.Linear, scale: torch.Tensor) -> None:
    with torch.no_grad():
        lin.weight.mul_(scale.view(-1, 1).to(lin.weight.dtype))
        if lin.bias is not None:
            lin.bias.mul_(scale.to(lin.bias.dtype))


def _scale_cols(lin: nn.Linear, scale: torch.Tensor) -> None:
    with torch.no_grad():
        lin.weight.mul_(scale.view(1, -1).to(lin.weight.dtype))


@torch.no_grad()
def materialize(model: BertClassifier, gates: Gates) -> BertClassifier:
    """Fold `gates` into `model`'s weights and slice away every zero-gated unit,
    in place: the result computes what the gated model computes (to float
    rounding) with smaller matrices. A sublayer whose gates are all zero is
    removed with its LayerNorm; hidden dims are sliced everywhere (embeddings,
    every Linear and LayerNorm, the pooler's input)."""
    clear_gates(model)
    hid = gates.hidden.detach()
    for i, layer in enumerate(model.layers):
        dh = layer.head_dim
        z_heads, z_attn = gates.heads[i].detach(), gates.attention[i].detach()
        # ctx_h * z_h = probs @ (v_h * z_h): fold into the value rows of head h;
        # the sublayer and hidden gates scale the output projection's rows
        _scale_rows(layer.value, z_heads.repeat_interleave(dh))
        _scale_rows(layer.attn_out, z_attn * hid)
        prune_heads(layer, ((z_heads * z_attn) != 0).nonzero(as_tuple=True)[0].tolist())
        z_dims, z_ffn = gates.ffn_dims[i].detach(), gates.ffn[i].detach()
        _scale_cols(layer.ffn_out, z_dims)
        _scale_rows(layer.ffn_out, z_ffn * hid)
        dims = z_dims * z_ffn
        prune_ffn(layer, (dims != 0).nonzero(as_tuple=True)[0].tolist())
    norm = model.embeddings.LayerNorm
    norm.weight.mul_(hid)
    norm.bias.mul_(hid)
    keep = (hid != 0).nonzero(as_tuple=True)[0].tolist()
    if len(keep) < hid.numel():
        prune_hidden(model, keep)
    return model


@torch.no_grad()
def demo_pruned(model: BertClassifier, seed: int = 0) -> BertClassifier:
    """A copy of `model` pruned at random (seeded by `seed`, not by the global
    generator) and materialized: about a third of each layer's heads, of its
    FFN dims and of the hidden dims sliced away (at least one of each kept),
    the last layer's attention sublayer removed entirely, the kept units'
    gate values drawn from [0.5, 1) and folded into the weights. No training:
    for the generic tests of a method that runs on a structurally pruned
    model (its FLOPs against FlopCounterMode, its padding independence)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device

    def gate(n: int) -> torch.Tensor:
        keep = torch.rand(n, generator=gen) >= 1.0 / 3.0
        keep[0] = True
        return torch.where(keep, 0.5 + 0.5 * torch.rand(n, generator=gen), torch.zeros(n)).to(device)

    one, zero = torch.ones((), device=device), torch.zeros((), device=device)
    layers = list(model.layers)
    gates = Gates(heads=[gate(layer.num_heads) for layer in layers],
                  attention=[zero if i == len(layers) - 1 else one for i in range(len(layers))],
                  ffn_dims=[gate(layer.ffn_dim) for layer in layers],
                  ffn=[one for _ in layers],
                  hidden=gate(model.arch().hidden))
    return materialize(copy.deepcopy(model), gates)
