"""The token-scoring and selection kernels the token-dropping methods share.

* `attention_received` - the score of PoWER-BERT, LAT, SpAtten and LTP: the
  attention each token receives, summed over heads and over the REAL query
  rows (padding never changes a score), as one batched matrix product whose
  MACs are added to the trace (`harness.model.trace.scoring_macs`);
* `rank_tokens` / `topk_keep` - keep [CLS] and the k-1 highest-scoring other
  real tokens per row, ties broken by position (a stable sort), so the choice
  never depends on padding (PoWER-BERT, LAT, SpAtten);
* `threshold_keep` - keep real tokens scoring at least a threshold (LTP): a
  compare, no sort.

Both selectors return a keep mask [b, n]; `harness.model.policy.select_tokens`
then removes the rest physically.
"""
from __future__ import annotations

import math

import torch

from harness.model.policy import EncoderState
from harness.model.trace import scoring_macs


def received_sum(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention each token receives [b, n]: probabilities [b, H, n, n] summed
    over heads and over the real query rows (mask [b, n]). Written as one
    batched matrix product (mask row x probs), which is how it is counted."""
    q = mask.to(probs.dtype)[:, None, None, :].expand(-1, probs.shape[1], 1, -1)
    return torch.matmul(q, probs).squeeze(2).sum(1)


def attention_received(state: EncoderState, probs: torch.Tensor | None = None) -> torch.Tensor:
    """`received_sum` of `probs` (default `state.attn_probs`) at the current
    layer, with its MACs added to the trace: as run (at the batch's physical
    width) and at each row's real token count (protocol `none`)."""
    probs = state.attn_probs if probs is None else probs
    heads = probs.shape[1]
    state.recorder.add_extra_macs(state.rows, lambda tokens: scoring_macs(heads, tokens), state.mask)
    return received_sum(probs, state.mask)


def rank_tokens(scores: torch.Tensor, mask: torch.Tensor, keep_cls: bool = True) -> torch.Tensor:
    """Rank of every token [b, n]: [CLS] 0 (when `keep_cls`), then real tokens
    by decreasing score, ties by position; padding last."""
    s = scores.masked_fill(~mask, -math.inf)
    if keep_cls:
        s[:, 0] = math.inf
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    return torch.argsort(order, dim=1)


def topk_keep(scores: torch.Tensor, mask: torch.Tensor, k, keep_cls: bool = True) -> torch.Tensor:
    """Keep mask [b, n] of the `k` best-ranked real tokens per row ([CLS]
    counted among them); `k` is an int or a [b] tensor."""
    if isinstance(k, torch.Tensor) and k.ndim == 1:
        k = k.unsqueeze(1)
    return (rank_tokens(scores, mask, keep_cls) < k) & mask  # a Python k: no host-to-device copy


def threshold_keep(scores: torch.Tensor, mask: torch.Tensor, theta, keep_cls: bool = True) -> torch.Tensor:
    """Keep mask [b, n] of the real tokens whose score is >= theta (pruned
    means s < theta, strict, as in LTP's code). theta: a float, a 0-d tensor
    or a [b] tensor (per-row thresholds)."""
    if isinstance(theta, torch.Tensor):
        theta = theta.to(scores.dtype)
        if theta.ndim == 1:
            theta = theta.unsqueeze(1)
    keep = (scores >= theta) & mask
    if keep_cls:
        keep[:, 0] = mask[:, 0]
    return keep


def mean_kept_fraction(masks: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Mean over layers of the fraction of real tokens soft masks keep:
    `masks` is one (mask [b, n], real [b, n]) pair per layer, the fraction is
    token-weighted within a layer. The regulariser of the soft token pruners
    (LTP's mask term, Transkimmer's skim loss)."""
    per_layer = [(m * real).sum() / real.sum().clamp(min=1) for m, real in masks]
    return torch.stack(per_layer).mean()
