"""SpAtten: cascade token pruning (and, optionally, cascade head pruning).

Wang, Zhang, Han, "SpAtten: Efficient Sparse Attention Architecture with
Cascade Token and Head Pruning", HPCA 2021 (arXiv:2012.09852).

Method. After the attention sublayer of every layer, each token's importance
is the attention probability it *receives*, summed over heads and over the
real query rows, and added to a running (cumulative) score that goes back to
layer 0. The top-k tokens by cumulative score are kept, [CLS] always among
them, and the others are physically removed (`select_tokens`) before the FFN;
the running score is gathered with the index `select_tokens` returns, so a
pruned token never returns ("cascade"). The retain ratio follows SpAtten's
schedule: the first layers keep all tokens (3 of 12 for BERT-base), then it
falls linearly to the final ratio r at the last layer; per example
k = ceil(ratio x its real length). No public BERT code of SpAtten exists.

Cascade head pruning (option, off by default, `head_ratio` < 1): head
importance is the cumulative (over layers, by head index, as in SpAtten) L1
magnitude of each head's attention output. A head pruned at one layer stays
pruned in every later layer; kept-head counts follow the same linear schedule
down to `head_ratio`. SpAtten chooses heads per input on the fly; the harness
needs one head set per model to remove heads physically
(`harness.structure.prune_heads`), so the choice is made once from a
calibration pass over training examples and the analytic FLOPs (from the
model's new shape) still equal FlopCounterMode's.

Training: start from the fine-tuned dense model and, for each r, fine-tune
briefly with the pruning active (hard `select_tokens`, the same path as
inference); the best validation checkpoint is kept, including the
not-fine-tuned start. Default 0.25 epoch at half the profile's learning rate
(`epochs: 0` applies the schedule without fine-tuning): SpAtten's score needs
no learned parameters and the dense model already tolerates the pruning well
(MiniLM-L6 on MR: -1 point at r = 0.1 untrained), so a short adaptation is
enough and five ratios fit the default profile's ~4 minute training budget.

How this departs from the original: `SpAtten.deviations`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from harness.plugin import (EncoderState, MethodPlugin, MethodSettings, OperatingPoint, Policy, attention_received,
                            collate, evaluate, primary, prune_heads, register_method, select_tokens, topk_keep)

@dataclass(frozen=True)
class Settings(MethodSettings):
    ratios: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.7)  # final retain ratio r, one model each
    full_layers: int | None = None  # layers that keep every token; None = round(L/4)
    epochs: float = 0.25  # fine-tune with the pruning active (0 = no fine-tune)
    lr: float | None = None  # None = half the profile's learning rate
    batch_size: int | None = None  # None = the profile's
    eval_every: int = 0
    keep_start_if_better: bool = True
    head_ratio: float = 1.0  # 1.0 = head pruning off
    head_calibration_examples: int = 256

    def __post_init__(self):
        if not all(0.0 < r <= 1.0 for r in self.ratios) or not 0.0 < self.head_ratio <= 1.0:
            raise ValueError(f"retain ratios must be in (0, 1], got ratios {self.ratios}, head_ratio {self.head_ratio}")


# ---- schedule ----------------------------------------------------------------
def default_full_layers(num_layers: int) -> int:
    """Layers that keep every token: SpAtten's 3 of 12, scaled (round half up),
    leaving at least one layer to prune."""
    return max(0, min(num_layers - 1, int(math.floor(num_layers / 4 + 0.5))))


def retain_schedule(num_layers: int, final_ratio: float, full_layers: int | None = None) -> list[float]:
    """Per-layer retain ratio: 1 for the first `full_layers` layers, then a
    linear fall that reaches `final_ratio` at the last layer."""
    if not 0.0 < final_ratio <= 1.0:
        raise ValueError(f"final retain ratio must be in (0, 1], got {final_ratio}")
    f = default_full_layers(num_layers) if full_layers is None else int(full_layers)
    f = max(0, min(f, num_layers))
    span = num_layers - f
    out = []
    for layer in range(num_layers):
        if layer < f:
            out.append(1.0)
        else:
            out.append(1.0 - (1.0 - final_ratio) * (layer - f + 1) / span)
    return out


def keep_counts(ratio: float, lengths: torch.Tensor) -> torch.Tensor:
    """k = ceil(ratio x real length) per example, at least 1 ([CLS])."""
    k = torch.ceil(ratio * lengths.to(torch.float64) - 1e-6).to(torch.long)
    return k.clamp(min=1)


# ---- the policy ----------------------------------------------------------------
class SpAttenPolicy(Policy):
    """Cascade token pruning by cumulative attention received."""

    def __init__(self, ratios: list[float]):
        super().__init__()
        self.ratios = [float(r) for r in ratios]
        pruning = [i for i, r in enumerate(self.ratios) if r < 1.0]
        # scores are needed at every layer up to the last one that prunes
        self.last_layer = max(pruning) if pruning else -1

    def needs_attention_probs(self, layer: int) -> bool:
        return layer <= self.last_layer

    @staticmethod
    def received(state: EncoderState) -> torch.Tensor:
        """Attention each token receives, summed over heads and real query rows."""
        return attention_received(state, state.attn_probs.detach()).masked_fill(~state.mask, 0.0)

    def after_attention(self, layer: int, state: EncoderState) -> None:
        if layer > self.last_layer:
            return
        scratch = state.scratch
        if "spatten_len0" not in scratch:
            len0 = torch.zeros(state.recorder.batch, dtype=torch.long, device=state.mask.device)
            len0[state.rows] = state.lengths
            scratch["spatten_len0"] = len0
            scratch["spatten_score"] = torch.zeros(state.mask.shape, dtype=torch.float32, device=state.mask.device)
        score = scratch["spatten_score"]
        if state.attn_probs is not None:  # None only if every head of this layer was pruned
            score = score + self.received(state).to(score.dtype)
        scratch["spatten_score"] = score
        ratio = self.ratios[layer]
        if ratio >= 1.0:
            return
        k = torch.minimum(keep_counts(ratio, scratch["spatten_len0"][state.rows]), state.lengths)
        index = select_tokens(state, topk_keep(score, state.mask, k))
        if index is not None:  # None: every token stays
            scratch["spatten_score"] = torch.gather(score, 1, index)

    def describe(self) -> dict:
        return {"ratios": [round(r, 6) for r in self.ratios], "score": "cumulative"}


class _HeadProbe(Policy):
    """Calibration only: SpAtten token pruning plus per-head output magnitudes
    (L1 over real tokens and head dims), read from the input of `attn_out`."""

    def __init__(self, inner: SpAttenPolicy, model):
        super().__init__()
        self.inner = inner
        self.captured: dict[int, torch.Tensor] = {}
        most = max(layer.num_heads for layer in model.layers)
        self.magnitude = torch.zeros(len(model.layers), most, dtype=torch.float64)
        self.examples = 0
        self.hooks = [
            layer.attn_out.register_forward_pre_hook(self._hook(i)) for i, layer in enumerate(model.layers)
        ]
        self.heads = [layer.num_heads for layer in model.layers]
        self.head_dim = model.layers[0].head_dim

    def _hook(self, i):
        def hook(_mod, args):
            self.captured[i] = args[0].detach()

        return hook

    def remove(self):
        for h in self.hooks:
            h.remove()

    def needs_attention_probs(self, layer):
        return self.inner.needs_attention_probs(layer)

    def after_attention(self, layer, state):
        mixed = self.captured.pop(layer, None)  # the layer's attention output, before its projection
        if mixed is not None:
            b, n, _ = mixed.shape
            mag = mixed.view(b, n, self.heads[layer], self.head_dim).abs().sum(-1)  # [b, n, H]
            mag = (mag * state.mask[..., None]).sum((0, 1))
            self.magnitude[layer, : self.heads[layer]] += mag.double().cpu()
        if layer == 0:
            self.examples += state.hidden.shape[0]
        self.inner.after_attention(layer, state)


def head_counts(num_layers: int, num_heads: int, head_ratio: float, full_layers: int | None) -> list[int]:
    return [max(1, math.ceil(r * num_heads - 1e-6)) for r in retain_schedule(num_layers, head_ratio, full_layers)]


def cascade_heads(importance: np.ndarray, counts: list[int]) -> list[list[int]]:
    """Heads kept per layer: top-count heads by importance accumulated over
    layers, among those still alive (a pruned head never returns)."""
    num_layers, num_heads = importance.shape
    alive = list(range(num_heads))
    cum = np.zeros(num_heads)
    kept = []
    for layer in range(num_layers):
        cum = cum + importance[layer]
        if counts[layer] < len(alive):
            ranked = sorted(alive, key=lambda h: (-cum[h], h))
            alive = sorted(ranked[: counts[layer]])
        kept.append(list(alive))
    return kept


@torch.no_grad()
def head_importance(model, enc, n_examples: int, batch_size: int, seed: int, device="cpu") -> np.ndarray:
    """Mean per-example head output magnitude [L, H] over calibration examples,
    with the model's SpAtten token pruning active."""
    was_training = model.training
    model.eval()
    inner = model.policy
    probe = _HeadProbe(inner, model)
    model.policy = probe
    try:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(enc), size=min(n_examples, len(enc)), replace=False))
        for s in range(0, len(idx), batch_size):
            b = collate(enc, idx[s : s + batch_size]).to(device)
            model(b.input_ids, b.attention_mask, b.token_type_ids)
    finally:
        probe.remove()
        model.policy = inner
        model.train(was_training)
    return (probe.magnitude / max(1, probe.examples)).numpy()


def apply_cascade_head_pruning(model, kept: list[list[int]]) -> None:
    for layer, heads in zip(model.layers, kept):
        if len(heads) < layer.num_heads:
            prune_heads(layer, heads)


# ---- the plugin --------------------------------------------------------------
def _fmt(r: float) -> str:
    return f"{r:g}"


@register_method("spatten")
class SpAtten(MethodPlugin):
    summary = "SpAtten cascade token pruning by cumulative attention received, retain ratio falling linearly to r"
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "cumulative importance score (attention received summed over heads, real query rows and all layers so far), "
        "as in the paper; LTP's reimplementation of SpAtten used the per-layer (non-cumulative) score and no "
        "head pruning",
        "no public BERT code of SpAtten exists; this is a software reimplementation from the paper (no progressive "
        "quantization, no top-k hardware engine)",
        "[CLS] is always kept (SpAtten protects no token)",
        "padded query rows are excluded from the score and padded keys get 0, so the selection never depends on "
        "padding; ties break by token position",
        "tokens are removed after the attention sublayer of a layer, so that layer's FFN and all later sublayers "
        "skip them",
        "retain schedule scaled to the model depth: the first round(L/4) layers keep all tokens (3 of 12 as in the "
        "paper, 2 of 6 for MiniLM-L6, 1 of 2), then linearly down to r at the last layer; "
        "k = ceil(ratio x real length) per example",
        "fine-tuned from the dense model for a short, configurable schedule (default 0.25 epoch) with hard pruning "
        "active for each r; the best validation checkpoint is kept, the not-fine-tuned start included",
        "cascade head pruning is an option (off by default); when on, the head set is chosen once per model from a "
        "calibration pass over training examples and heads are physically removed, instead of SpAtten's per-input "
        "choice",
    )

    @staticmethod
    def point_name(r: float, head_ratio: float) -> str:
        name = f"r={_fmt(r)}"
        return name if head_ratio >= 1.0 else f"{name}_h={_fmt(head_ratio)}"

    @staticmethod
    def policy_for(model, r: float, full_layers: int | None) -> SpAttenPolicy:
        return SpAttenPolicy(retain_schedule(len(model.layers), r, full_layers))

    # ---- training --------------------------------------------------------------
    def train_points(self, settings, task) -> dict:
        return {self.point_name(r, settings.head_ratio): r for r in settings.ratios}

    def train_point(self, ctx, name: str, r) -> tuple[list[dict], dict]:
        s = ctx.settings
        lr = float(ctx.train_setting("lr") * 0.5 if s.lr is None else s.lr)
        batch_size = int(ctx.train_setting("batch_size") if s.batch_size is None else s.batch_size)
        t0 = time.perf_counter()
        model = ctx.load_model(method="dense")  # this point's own copy: each point loads dense afresh
        model.policy = self.policy_for(model, r, s.full_layers)
        entry: dict = {"r": r, "ratios": model.policy.ratios}
        if s.head_ratio < 1.0:
            imp = head_importance(model, ctx.train_split, s.head_calibration_examples, batch_size, ctx.seed,
                                  ctx.device)
            counts = head_counts(len(model.layers), model.layers[0].num_heads, s.head_ratio, s.full_layers)
            kept = cascade_heads(imp, counts)
            apply_cascade_head_pruning(model, kept)
            entry["head_importance"] = imp.round(6).tolist()
            entry["heads_kept"] = kept
        model = model.to(ctx.device)
        run = evaluate(model, ctx.task, ctx.encoded("validation"), "none", ctx.validation_batch_size, ctx.device)
        entry["validation_start"] = start = primary(ctx.task, run.metrics)
        entry["kept"], entry["validation"] = "start", start
        if s.epochs > 0:
            ft = ctx.finetune(
                model,
                cfg=ctx.train_config(epochs=s.epochs, lr=lr, batch_size=batch_size, eval_every=s.eval_every),
                checkpoint="best_or_start" if s.keep_start_if_better else "best",
                start_score=start,
                desc=f"{ctx.task.name}/spatten r={_fmt(r)}",
            )
            entry["finetune"] = ft
            entry["kept"], entry["validation"] = ft.get("kept", "trained"), ft["best_validation"]
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        ctx.save_model(model.eval(), f"{name}.pt")
        return [{"name": name, "r": r, "file": f"{name}.pt"}], entry

    def operating_points(self, ctx):
        s = ctx.settings
        for entry in ctx.points():
            model = ctx.load_model(entry["file"]).eval()
            knobs = {"r": entry["r"], "head_pruning": s.head_ratio < 1.0, "head_ratio": s.head_ratio}
            full = s.full_layers if s.full_layers is not None else default_full_layers(len(model.layers))
            notes = {
                "score": "cumulative",
                "retain_schedule": [round(q, 6) for q in model.policy.ratios],
                "full_layers": full,
                "heads_per_layer": [layer.num_heads for layer in model.layers],
                "finetune_epochs": s.epochs,
            }
            yield OperatingPoint(entry["name"], knobs, model, notes)

    def demo_model(self, model):
        model.policy = self.policy_for(model, 0.3, None)
        return model
