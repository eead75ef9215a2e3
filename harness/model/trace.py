"""Per-sample execution traces: what actually ran, for every example.

A trace is the only thing the FLOPs counter reads. For each example and layer
it records how many *real* tokens entered the attention and FFN sublayers and
the *physical* row width those tokens were computed in (real tokens plus
padding of the batch they ran in), the layer at which the example left the
encoder, whether the final head ran, and the extra MACs a method's policy
spent on that example (exit heads, predictors, scorers). The model's
structural shape (heads, FFN and hidden dims per layer) is recorded as well,
because physical pruning changes it.

The recorder works on batches whose rows may leave early (early exit): rows
are addressed by their index in the original batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ArchShape:
    """Structural shape of the model that produced a trace."""

    hidden: int
    head_dim: int
    heads: tuple[int, ...]  # heads run per layer (0 = attention sublayer removed)
    ffn: tuple[int, ...]  # FFN intermediate dims per layer (0 = FFN removed)
    num_labels: int
    pooler: tuple[int, int]  # (in, out) dims of the pooler dense layer, (0, 0) if none
    classifier_in: int
    head: str = "classify"  # 'classify' (once per example, on [CLS]) | 'span' (on every token)

    @property
    def num_layers(self) -> int:
        return len(self.heads)

    def to_dict(self) -> dict:
        return {
            "hidden": self.hidden,
            "head_dim": self.head_dim,
            "heads": list(self.heads),
            "ffn": list(self.ffn),
            "num_labels": self.num_labels,
            "pooler": list(self.pooler),
            "classifier_in": self.classifier_in,
            **({"head": self.head} if self.head != "classify" else {}),
        }


@dataclass
class Trace:
    """Traces of N examples through an encoder of L layers (numpy, float64/int)."""

    arch: ArchShape
    n_attn: np.ndarray  # [N, L] real tokens entering attention
    n_ffn: np.ndarray  # [N, L] real tokens entering the FFN
    w_attn: np.ndarray  # [N, L] physical row width at attention (incl. padding)
    w_ffn: np.ndarray  # [N, L] physical row width at the FFN
    exit_layer: np.ndarray  # [N] number of layers run
    final_head: np.ndarray  # [N] bool, the model's own pooler+classifier ran
    extra_macs: np.ndarray  # [N] policy MACs (exit heads, predictors, ...) as run (physical width)
    extra_macs_real: np.ndarray  # [N] the same at the example's real token counts (protocol `none`)
    head_tokens: np.ndarray  # [N] real tokens the final head ran on (1 for a [CLS] head)
    head_width: np.ndarray  # [N] positions it ran on as computed (the padded width for a span head)

    @property
    def n(self) -> int:
        return int(self.n_attn.shape[0])

    @staticmethod
    def concat(traces: list["Trace"]) -> "Trace":
        if not traces:
            raise ValueError("no traces to concatenate")
        arch = traces[0].arch
        for t in traces[1:]:
            if t.arch != arch:
                raise ValueError("traces from different model shapes cannot be concatenated")
        cat = lambda name: np.concatenate([getattr(t, name) for t in traces], axis=0)  # noqa: E731
        return Trace(
            arch,
            cat("n_attn"),
            cat("n_ffn"),
            cat("w_attn"),
            cat("w_ffn"),
            cat("exit_layer"),
            cat("final_head"),
            cat("extra_macs"),
            cat("extra_macs_real"),
            cat("head_tokens"),
            cat("head_width"),
        )

    def take(self, index: np.ndarray) -> "Trace":
        """Rows `index` of this trace (reordering or selecting examples)."""
        return Trace(
            self.arch,
            self.n_attn[index],
            self.n_ffn[index],
            self.w_attn[index],
            self.w_ffn[index],
            self.exit_layer[index],
            self.final_head[index],
            self.extra_macs[index],
            self.extra_macs_real[index],
            self.head_tokens[index],
            self.head_width[index],
        )


def scoring_macs(heads, tokens):
    """MACs of scoring tokens by the attention they receive (one [1 x n] by
    [n x n] product per head): heads * n^2, n the row width the scores span.
    The one cost formula that lives here rather than in `harness.measure.flops`
    (which re-exports it): policies record it while they run, through the
    recorder below, and the model layer imports nothing of measure."""
    return heads * tokens * tokens


class TraceRecorder:
    """Accumulates one batch's trace while the encoder runs.

    Its tensors live on the model's device and are moved to the host once,
    by `to_trace`, so recording costs no host synchronisation per layer."""

    def __init__(self, batch: int, layers: int, device="cpu"):
        self.batch, self.layers = batch, layers
        z = lambda: torch.zeros(batch, layers, dtype=torch.long, device=device)  # noqa: E731
        self.n_attn, self.n_ffn, self.w_attn, self.w_ffn = z(), z(), z(), z()
        self.exit_layer = torch.full((batch,), layers, dtype=torch.long, device=device)
        self.final_head = torch.zeros(batch, dtype=torch.bool, device=device)
        self.extra_macs = torch.zeros(batch, dtype=torch.float64, device=device)
        self.extra_macs_real = torch.zeros(batch, dtype=torch.float64, device=device)
        self.head_tokens = torch.ones(batch, dtype=torch.long, device=device)
        self.head_width = torch.ones(batch, dtype=torch.long, device=device)

    def attention(self, layer: int, rows: torch.Tensor, mask: torch.Tensor) -> None:
        self.n_attn[rows, layer] = mask.sum(1)
        self.w_attn[rows, layer] = mask.shape[1]

    def ffn(self, layer: int, rows: torch.Tensor, mask: torch.Tensor) -> None:
        self.n_ffn[rows, layer] = mask.sum(1)
        self.w_ffn[rows, layer] = mask.shape[1]

    def exited(self, rows: torch.Tensor, layers_run: int) -> None:
        self.exit_layer[rows] = layers_run

    def ran_head(self, rows: torch.Tensor, tokens: torch.Tensor | None = None, width: int | None = None) -> None:
        """The final head ran on `rows`: once each (a [CLS] head), or (a span
        head) on `tokens` real positions per row within `width` computed ones."""
        self.final_head[rows] = True
        if tokens is not None:
            self.head_tokens[rows] = tokens.to(self.head_tokens.device, torch.long)
            self.head_width[rows] = int(width)

    def add_extra_macs(self, rows: torch.Tensor, macs, mask: torch.Tensor | None = None) -> None:
        """Policies call this for compute they add (exit heads, predictors, scorers).

        `macs` is a number (compute that does not depend on the width) or a
        function of a row's token count; with `mask`, the function is counted
        at the batch's physical width (what ran) and at each row's real token
        count (protocol `none`). Evaluated here only, so the untimed
        `NullRecorder` pays nothing for it."""
        if callable(macs):
            ran, real = float(macs(mask.shape[1])), macs(mask.sum(1).to(torch.float64))
        else:
            ran = real = macs
        conv = lambda m: m.detach().to(self.extra_macs.device, torch.float64) if isinstance(m, torch.Tensor) else m  # noqa: E731
        self.extra_macs[rows] += conv(ran)
        self.extra_macs_real[rows] += conv(real)

    def to_trace(self, arch: ArchShape) -> Trace:
        host = lambda t: t.cpu().numpy().copy()  # noqa: E731
        return Trace(
            arch,
            host(self.n_attn),
            host(self.n_ffn),
            host(self.w_attn),
            host(self.w_ffn),
            host(self.exit_layer),
            host(self.final_head),
            host(self.extra_macs),
            host(self.extra_macs_real),
            host(self.head_tokens),
            host(self.head_width),
        )


class NullRecorder:
    """Records nothing: the timed forward (`model(..., trace=False)`) must not
    pay for the harness's bookkeeping. Keeps `batch` for policies that size
    per-row state by it."""

    def __init__(self, batch: int, layers: int, device="cpu"):
        self.batch, self.layers = batch, layers

    def attention(self, layer, rows, mask) -> None:
        pass

    ffn = attention

    def exited(self, rows, layers_run) -> None:
        pass

    def ran_head(self, rows, tokens=None, width=None) -> None:
        pass

    def add_extra_macs(self, rows, macs, mask=None) -> None:
        pass

    def to_trace(self, arch: ArchShape) -> None:
        return None
