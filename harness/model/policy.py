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
    dropped: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
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


def select_tokens(state: EncoderState, keep: torch.Tensor) -> torch.Tensor:
    """Physically keep the tokens where `keep` [b, n] is true, in their order.

    Rows are re-packed to the largest kept count in the batch (the rest is
    padding). Returns the gather index [b, n_new] so a policy can gather any
    per-token tensor of its own the same way. Dropped real tokens are stored
    for Drop-and-Restore when `state.restore` is set: the state they had entering
    the current layer when dropped after its attention sublayer (LAT keeps the
    previous layer's output, not a half-computed layer), else their current state.
    """
    keep = keep & state.mask
    state.moved = True
    counts = keep.sum(1)
    width = int(counts.max().item()) if counts.numel() else 0
    # stable sort puts kept tokens first, in original order
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    index = order[:, :width]
    if state.restore:
        gone = state.mask & ~keep
        if bool(gone.any()):
            r, c = gone.nonzero(as_tuple=True)
            source = state.layer_input if state.layer_input is not None else state.hidden
            state.dropped.append((state.rows[r], state.positions[r, c], source[r, c]))
    d = state.hidden.shape[-1]
    state.hidden = torch.gather(state.hidden, 1, index.unsqueeze(-1).expand(-1, -1, d))
    if state.layer_input is not None:
        state.layer_input = torch.gather(state.layer_input, 1, index.unsqueeze(-1).expand(-1, -1, d))
    state.positions = torch.gather(state.positions, 1, index)
    state.mask = torch.arange(width, device=keep.device).unsqueeze(0) < counts.unsqueeze(1)
    return index


def drop_rows(state: EncoderState, leave: torch.Tensor) -> torch.Tensor:
    """Physically remove rows where `leave` [b] is true; returns kept row index."""
    stay = (~leave).nonzero(as_tuple=True)[0]
    state.hidden = state.hidden[stay]
    state.mask = state.mask[stay]
    state.positions = state.positions[stay]
    state.rows = state.rows[stay]
    if state.attn_probs is not None:
        state.attn_probs = state.attn_probs[stay]
    # shrink the width if the longest rows left
    if state.mask.shape[0]:
        width = int(state.mask.sum(1).max().item())
        if width < state.mask.shape[1] and bool(state.mask[:, width:].logical_not().all()):
            state.hidden = state.hidden[:, :width]
            state.mask = state.mask[:, :width]
            state.positions = state.positions[:, :width]
    return stay


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
