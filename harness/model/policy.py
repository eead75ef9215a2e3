"""The extension points a method plugs into the encoder.

A method is a `Policy` (an `nn.Module`, so it can hold learned thresholds,
retention weights, exit heads or predictors and be trained and saved with the
model). The encoder calls it at fixed points of every layer:

* `on_forward(model)`           - once per forward, before the embeddings:
                                   set the model's structural gates (CoFi's
                                   L0 masks, sampled in training)
* `before_layer(l, state)`       - token selection before layer l
                                   (predictor-based skimming: Transkimmer); in
                                   training a soft policy may set
                                   `state.key_weight` instead of removing tokens
* `after_attention(l, state)`    - token selection after the attention
                                   sublayer, with `state.attn_probs` available
                                   when `needs_attention_probs(l)` is true
                                   (PoWER-BERT, LAT, SpAtten, LTP)
* `after_layer(l, state)`        - early exit: return an `Exit` of the rows
                                   leaving now and their logits (FastBERT)
* `extra_loss()`                 - a training-time regulariser (soft masks)

Structural pruning (heads, FFN and hidden dims) is applied to the model
itself, through gates while training (set in `on_forward`) and physical
slicing at inference (see `harness.model.encoder` and `harness.model.structure`).

`select_tokens` and `drop_rows` are the only ways a policy should change the
shape of the state (the scores and keep masks they act on come from
`harness.model.selection`): they physically gather the kept tokens / rows, so time
saved at inference is real, and keep positions, row ids and the optional
Drop-and-Restore store consistent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.model.trace import TraceRecorder


@dataclass
class Dropped:
    """Tokens a selection removed, for Drop-and-Restore: the rows' ids, the
    token positions and states [b, n, d] as they were, and which tokens went
    (`gone` [b, n]); kept whole so that storing them needs no host sync."""

    rows: torch.Tensor  # [b]
    positions: torch.Tensor  # [b, n]
    states: torch.Tensor  # [b, n, d]
    gone: torch.Tensor  # [b, n] bool


@dataclass
class EncoderState:
    """Everything that flows between layers for the rows still running."""

    hidden: torch.Tensor  # [b, n, d]
    mask: torch.Tensor  # [b, n] bool, True = real (kept) token
    positions: torch.Tensor  # [b, n] original token positions
    rows: torch.Tensor  # [b] index of each row in the original batch
    recorder: TraceRecorder
    layer: int = 0
    num_layers: int = 0
    attn_probs: torch.Tensor | None = None  # [b, H, n, n] when requested
    restore: bool = False
    # the layer's input while its attention sublayer runs: a token dropped after attention
    # is restored with this state (what the previous layer output), as LAT's Drop-and-Restore does
    layer_input: torch.Tensor | None = None
    moved: bool = False  # tokens were selected (positions are no longer 0..n-1 in every row)
    dropped: list[Dropped] = field(default_factory=list)
    exit_logits: torch.Tensor | None = None  # [B0, C] logits of rows that exited early
    scratch: dict[str, Any] = field(default_factory=dict)  # per-forward policy state
    # [b, n] soft key weights for the next attention (training-time token masks; None = off)
    key_weight: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        """Real (kept) tokens per row."""
        return self.mask.sum(1)


@dataclass
class Exit:
    """Rows (in the current state's order) that leave the encoder now."""

    mask: torch.Tensor  # [b] bool
    logits: torch.Tensor  # [b, C] logits for every current row (only masked rows are used)


def _to_host(*values: torch.Tensor) -> list[int]:
    """Integer device values read back in one transfer: the one host sync a
    selection or an exit step makes (see `harness.measure.syncs`)."""
    return torch.cat([v.reshape(-1).to(torch.long) for v in values]).tolist()


def select_tokens(state: EncoderState, keep: torch.Tensor) -> torch.Tensor | None:
    """Physically keep the tokens where `keep` [b, n] is true, in their order.

    Rows are re-packed to the largest kept count in the batch (the rest is
    padding). Returns the gather index [b, n_new] so a policy can gather any
    per-token tensor of its own the same way, or None when `keep` keeps every
    real token (nothing changes). Dropped real tokens are stored for
    Drop-and-Restore when `state.restore` is set: the state they had entering
    the current layer when dropped after its attention sublayer (LAT keeps the
    previous layer's output, not a half-computed layer), else their current state.

    One host sync: the new width and the "all kept?" answer are read back
    together; the Drop-and-Restore store keeps whole [b, n] tensors and a
    mask instead of gathering the dropped tokens (which would sync again).
    """
    keep = keep & state.mask
    counts = keep.sum(1)
    if not counts.numel():
        return None
    width, dropped_any = _to_host(counts.max(), (counts != state.mask.sum(1)).any())
    if not dropped_any:
        return None
    state.moved = True
    # stable sort puts kept tokens first, in original order
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    index = order[:, :width]
    if state.restore:
        source = state.layer_input if state.layer_input is not None else state.hidden
        state.dropped.append(Dropped(state.rows, state.positions, source, state.mask & ~keep))
    d = state.hidden.shape[-1]
    state.hidden = torch.gather(state.hidden, 1, index.unsqueeze(-1).expand(-1, -1, d))
    if state.layer_input is not None:
        state.layer_input = torch.gather(state.layer_input, 1, index.unsqueeze(-1).expand(-1, -1, d))
    state.positions = torch.gather(state.positions, 1, index)
    state.mask = torch.arange(width, device=keep.device).unsqueeze(0) < counts.unsqueeze(1)
    return index


def leaving_rows(state: EncoderState, leave: torch.Tensor) -> tuple[list[int], list[int], int] | None:
    """Which rows leave (`leave` [b] true) and which stay, as host lists, and
    the width the staying rows need (their last real token + 1); None when
    nobody leaves. One host sync."""
    n = state.mask.shape[1]
    extent = (state.mask * torch.arange(1, n + 1, device=state.mask.device)).amax(1) if n else state.mask.sum(1)
    host = _to_host(leave, extent)
    b = len(host) // 2
    flags, extents = host[:b], host[b:]
    gone = [i for i in range(b) if flags[i]]
    if not gone:
        return None
    stay = [i for i in range(b) if not flags[i]]
    return gone, stay, max((extents[i] for i in stay), default=0)


def drop_rows(state: EncoderState, stay: list[int], width: int) -> torch.Tensor:
    """Physically keep only rows `stay` (host indices, from `leaving_rows`) and
    the first `width` columns; returns the kept row index on the device."""
    index = torch.tensor(stay, dtype=torch.long, device=state.hidden.device)
    state.hidden = state.hidden.index_select(0, index)
    state.mask = state.mask.index_select(0, index)
    state.positions = state.positions.index_select(0, index)
    state.rows = state.rows.index_select(0, index)
    if state.attn_probs is not None:
        state.attn_probs = state.attn_probs.index_select(0, index)
    if stay and width < state.mask.shape[1]:  # the longest rows left
        state.hidden = state.hidden[:, :width]
        state.mask = state.mask[:, :width]
        state.positions = state.positions[:, :width]
    return index


class Policy(nn.Module):
    """Base policy: does nothing (the dense model). Methods subclass it."""

    def needs_attention_probs(self, layer: int) -> bool:  # noqa: ARG002
        return False

    def on_forward(self, model: nn.Module) -> None:
        """Set the model's structural gates before a forward (default: none)."""

    def before_layer(self, layer: int, state: EncoderState) -> None:
        """Token selection before a layer runs."""

    def after_attention(self, layer: int, state: EncoderState) -> None:
        """Token selection after the attention sublayer."""

    def after_layer(self, layer: int, state: EncoderState) -> Exit | None:
        """Early exit after a layer; None = nobody leaves."""
        return None

    def extra_loss(self, state: EncoderState) -> torch.Tensor | None:
        """Training regulariser computed from the finished forward."""
        return None

    def describe(self) -> dict:
        """JSON-serialisable settings, stored in result records."""
        return {}

    def host_copy(self, key: str, sources: tuple[torch.Tensor, ...], compute):
        """`compute()` (a Python value derived from `sources`, such as per-layer
        thresholds or token counts), cached until a source tensor changes (its
        storage or its in-place version counter): the timed forward then reads
        numbers the policy decides with from the host instead of syncing on
        them at every layer."""
        stamp = tuple((t.data_ptr(), t._version) for t in sources)
        cache = self.__dict__.setdefault("_host_copies", {})
        hit = cache.get(key)
        if hit is None or hit[0] != stamp:
            hit = cache[key] = (stamp, compute())
        return hit[1]

    def __getstate__(self):
        """Saved models carry no host copies (they are rebuilt on first use)."""
        return {k: v for k, v in self.__dict__.items() if k != "_host_copies"}
