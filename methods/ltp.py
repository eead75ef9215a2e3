"""LTP: Learned Token Pruning, and its manual-threshold ablation.

Kim, Shen, Thorsley, Gholami, Kwon, Hassoun, Keutzer, "Learned Token Pruning
for Transformers", KDD 2022 (arXiv:2107.00910); reference code
github.com/kssteven418/LTP.

Method. After the attention sublayer of layer l, token i's importance is the
attention probability it *receives*, averaged over heads and over the real
query rows present at that layer:

    s_l(i) = 1/(H n_l) sum_h sum_{q real} P_h[q, i]

Token i is pruned when s_l(i) < theta_l, a threshold per layer (no top-k, so
the number of kept tokens adapts to every input); [CLS] is always kept.
Pruned tokens are physically removed (`select_tokens`) before the FFN of that
layer, so later layers see only kept tokens and their scores are over the
tokens still present.

Training (`ltp`), one model per lambda, from the fine-tuned dense model:
1. soft stage: thresholds initialised to theta_l = theta_final * l / L
   (l = 1..L, so the last layer gets theta_final, as in the reference README),
   learned jointly with the model. In training, the soft mask
   m_l(i) = sigmoid((s_l(i) - theta_l) / T) multiplies each token's output of
   layer l (the reference code multiplies the layer output), and the loss is
   task + lambda * mean_l(mean over real tokens of m_l). The last checkpoint is
   kept (the reference runs this stage with --no_load, i.e. no best-on-dev
   reload, since accuracy alone would favour the least pruned checkpoint).
2. hard stage: thresholds frozen, masks binarised (tokens physically removed
   exactly as at inference), the model fine-tuned; best validation checkpoint.

`ltp_manual` (the paper's "manual threshold" ablation): the same pruning with
the linearly rising thresholds theta_l = theta_final * l / L fixed (nothing
learned), knob theta_final, applied to the fine-tuned dense model and
optionally followed by a short hard-stage fine-tune.

Knob defaults: unless `theta_final` (ltp) / `theta_finals` (ltp_manual) are
configured, theta_final is a multiple (`theta_final_rel` / `theta_final_rels`)
of 1/(mean training length), the mean score of an average training input, so
one set of defaults gives comparable pruning on short and long tasks; the
resolved absolute values are the knobs recorded.

`threshold_select(scores, mask, theta)` is the selection kernel (a compare,
no sort); `topk_select` is the top-k alternative for timing comparisons
(LTP Fig. A.1).

Fidelity choices (also in `deviations`):
* scores average over the REAL query rows (the reference averages over every
  row of the padded [128] sequence, padded rows counting as zeros, which ties
  score magnitudes - and hence thresholds - to the padded length). With the
  real-row average the mean score at a layer is exactly 1/(tokens present),
  so a fixed threshold prunes relatively more of a long input than of a short
  one;
* attention probabilities are the softmax output before dropout (the
  reference scores the post-dropout probabilities in training);
* [CLS] is always kept (the reference does not protect it);
* pruned tokens are physically removed at inference and in the hard stage
  (the reference masks them with -10000 in the attention mask and counts FLOPs
  from the mask);
* thresholds use theta_final * l / L with l = 1..L (reference README); the
  reference's 0-indexed code gives layer 1 a zero threshold;
* one optimiser, one schedule: the thresholds' higher learning rate
  (threshold_lr) is realised by the Adam-invariant reparameterisation
  theta = theta_0 + (threshold_lr / lr) * delta with delta learned (the core's
  `finetune` takes a single learning rate); gradient clipping covers delta too;
* hard-stage (and ltp_manual fine-tune) checkpoints are chosen on the
  held-out validation split, the stage's starting point included;
* default knobs relative to the mean training length (above) and short stage
  budgets (0.25 epoch soft, 0.25 epoch hard) instead of the reference's
  1-10 soft and 5 hard epochs;
* the optional `train_max_length` drops longer training examples (LTP Table 3
  robustness setting).
"""
from __future__ import annotations

import copy
import json
import math
import time

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError
from harness.run.inference import evaluate
from harness.measure.flops import dense_macs, trace_macs
from harness.plugin.base import MethodPlugin, OperatingPoint
from harness.measure.metrics import primary
from harness.model.policy import EncoderState, Policy, attention_received, received_sum, select_tokens
from harness.plugin.registry import register_method

DEFAULT_LAMBDAS = (0.03, 0.1, 0.3, 1.0)
DEFAULT_TEMPERATURE = 2e-3
# Unless absolute thresholds are configured, theta_final defaults to a multiple
# of 1/(mean training length) - the mean score of an average training input -
# so the same defaults give comparable pruning on short (MR) and long (RTE) tasks.
DEFAULT_THETA_FINAL_REL = 0.25
DEFAULT_MANUAL_THETA_RELS = (0.25, 0.5, 1.0, 2.0)
# thresholds live on the same 1/length scale, so their learning rate does too
DEFAULT_THRESHOLD_LR_REL = 0.108  # 0.004 on MR (mean training length 27)
DEFAULT_SOFT_EPOCHS = 0.25
DEFAULT_HARD_EPOCHS = 0.25
LTP_DEFAULTS = {
    "lambdas": list(DEFAULT_LAMBDAS),
    "theta_final": None,  # None: theta_final_rel / (mean training length)
    "theta_final_rel": DEFAULT_THETA_FINAL_REL,
    "temperature": DEFAULT_TEMPERATURE,
    "soft_epochs": DEFAULT_SOFT_EPOCHS,
    "soft_lr": None,  # None: the profile's learning rate
    "threshold_lr": None,  # None: threshold_lr_rel / (mean training length)
    "threshold_lr_rel": DEFAULT_THRESHOLD_LR_REL,
    "soft_cumulative": False,
    "hard_epochs": DEFAULT_HARD_EPOCHS,
    "hard_lr": None,
}
MANUAL_DEFAULTS = {
    "theta_finals": None,  # None: theta_final_rels / (mean training length)
    "theta_final_rels": list(DEFAULT_MANUAL_THETA_RELS),
    "hard_epochs": DEFAULT_HARD_EPOCHS,
    "hard_lr": None,
}


def with_profile_lrs(ctx, s: dict, keys) -> dict:
    """Learning rates left at None take the profile's train.lr."""
    for k in keys:
        s[k] = float(ctx.cfg["train"]["lr"] if s[k] is None else s[k])
    return s


# ---- scoring and selection ---------------------------------------------------
def token_scores(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention received per token [b, n]: mean over heads and real query rows.

    probs: [b, H, n, n] softmax output (padded keys hold 0); mask: [b, n] bool.
    Padded query rows are excluded, so the result never depends on padding.
    """
    return per_real_row(received_sum(probs, mask), probs.shape[1], mask)


def per_real_row(received: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """Summed attention received -> mean over heads and real query rows."""
    return received / heads / mask.to(received.dtype).sum(1, keepdim=True).clamp(min=1.0)


def threshold_select(scores: torch.Tensor, mask: torch.Tensor, theta, keep_cls: bool = True) -> torch.Tensor:
    """LTP's selection: keep real tokens whose score is >= theta (bool [b, n]).

    theta: a float, a 0-d tensor, or a [b] tensor (per-row thresholds). Pruned
    means s < theta (strict), as in the reference. A compare, no sorting: its
    cost is linear in n, unlike `torch.topk` (see `topk_select`).
    """
    theta = torch.as_tensor(theta, dtype=scores.dtype, device=scores.device)
    if theta.ndim == 1:
        theta = theta.unsqueeze(1)
    keep = (scores >= theta) & mask
    if keep_cls:
        keep[:, 0] = mask[:, 0]
    return keep


def topk_select(scores: torch.Tensor, mask: torch.Tensor, k: torch.Tensor, keep_cls: bool = True) -> torch.Tensor:
    """The top-k alternative (for timing comparisons): keep the k [b] highest
    scoring real tokens per row ([CLS] counted among them when kept)."""
    s = scores.masked_fill(~mask, float("-inf"))
    if keep_cls:
        s = s.clone()
        s[:, 0] = float("inf")
    kmax = int(k.max().item()) if k.numel() else 0
    idx = torch.topk(s, kmax, dim=1).indices
    take = torch.arange(kmax, device=s.device).unsqueeze(0) < k.unsqueeze(1)
    keep = torch.zeros_like(mask)
    keep.scatter_(1, idx, take)
    return keep & mask


def resolve_thetas(mc: dict, absolute: str, relative: str, default_rel, mean_length: float):
    """Absolute theta_final value(s) from the config: `absolute` if given, else
    `relative` (default `default_rel`) times 1/mean_length, to 3 significant digits."""
    if mc.get(absolute) is not None:
        value = mc[absolute]
        return [float(x) for x in value] if isinstance(value, (list, tuple)) else float(value)
    rel = mc.get(relative, default_rel)
    conv = lambda r: float(f"{float(r) / mean_length:.3g}")  # noqa: E731
    return [conv(r) for r in rel] if isinstance(rel, (list, tuple)) else conv(rel)


def rising_thresholds(theta_final: float, num_layers: int) -> list[float]:
    """theta_l = theta_final * l / L for l = 1..L (the last layer gets theta_final)."""
    return [float(theta_final) * (i + 1) / num_layers for i in range(num_layers)]


# ---- the policy ------------------------------------------------------------------
class LTPPolicy(Policy):
    """Per-layer threshold token pruning after the attention sublayer.

    Thresholds are theta = base + lr_scale * delta (delta learned in the soft
    stage). In training with `soft` set, tokens are not removed: the soft mask
    multiplies each token's layer output and `extra_loss` adds lambda times the
    mean mask. Otherwise (hard-stage training, inference) tokens below the
    threshold are physically removed.
    """

    def __init__(
        self,
        num_layers: int,
        theta_final: float,
        temperature: float = DEFAULT_TEMPERATURE,
        lam: float = 0.0,
        soft: bool = False,
        lr_scale: float = 1.0,
        learnable: bool = False,
        cumulative: bool = False,
    ):
        super().__init__()
        self.num_layers = int(num_layers)
        self.theta_final = float(theta_final)
        self.temperature = float(temperature)
        self.lam = float(lam)
        self.soft = bool(soft)
        self.lr_scale = float(lr_scale)
        self.cumulative = bool(cumulative)
        self.learned = bool(learnable)  # thresholds learned (ltp) or fixed (ltp_manual)
        self.register_buffer("base", torch.tensor(rising_thresholds(theta_final, num_layers), dtype=torch.float32))
        self.delta = nn.Parameter(torch.zeros(self.num_layers), requires_grad=learnable)

    @property
    def thresholds(self) -> torch.Tensor:
        return self.base + self.lr_scale * self.delta

    def freeze(self) -> None:
        """Fold the learned offsets into the base and stop learning thresholds;
        switch to hard (binarised) masks."""
        with torch.no_grad():
            self.base.copy_(self.thresholds)
            self.delta.zero_()
        self.delta.requires_grad_(False)
        self.soft = False

    def _soft_active(self) -> bool:
        return self.training and self.soft

    def needs_attention_probs(self, layer: int) -> bool:
        if self._soft_active():
            return True
        # s >= 0, so a threshold <= 0 can prune nothing: keep the fast attention path
        return bool(self.thresholds[layer].item() > 0)

    def after_attention(self, layer: int, state: EncoderState) -> None:
        if state.attn_probs is None:
            return
        theta = self.thresholds[layer]
        scores = per_real_row(attention_received(state), state.attn_probs.shape[1], state.mask)
        if self._soft_active():
            m = torch.sigmoid((scores - theta) / self.temperature)
            first = torch.arange(m.shape[1], device=m.device).unsqueeze(0) == 0
            m = torch.where(first, torch.ones_like(m), m) * state.mask.to(m.dtype)
            if self.cumulative and "ltp_prev" in state.scratch:
                m = m * state.scratch["ltp_prev"]
            state.scratch["ltp_prev"] = m
            state.scratch["ltp_mask"] = m
            state.scratch.setdefault("ltp_masks", []).append((m, state.mask))
            return
        keep = threshold_select(scores.detach(), state.mask, theta.detach())
        if bool((keep == state.mask).all()):
            return
        select_tokens(state, keep)

    def after_layer(self, layer: int, state: EncoderState):
        m = state.scratch.pop("ltp_mask", None)
        if m is not None:
            state.hidden = state.hidden * m.unsqueeze(-1).to(state.hidden.dtype)
        return None

    def mask_mean(self, state: EncoderState) -> torch.Tensor | None:
        """Mean over layers of the mean soft mask over real tokens (token-weighted)."""
        masks = state.scratch.get("ltp_masks")
        if not masks:
            return None
        per_layer = [(m * real).sum() / real.sum().clamp(min=1) for m, real in masks]
        return torch.stack(per_layer).mean()

    def extra_loss(self, state: EncoderState) -> torch.Tensor | None:
        if not self._soft_active() or self.lam == 0.0:
            return None
        mean = self.mask_mean(state)
        return None if mean is None else self.lam * mean

    def describe(self) -> dict:
        return {
            "kind": "ltp_threshold",
            "thresholds_learned": self.learned,
            "thresholds": [round(float(t), 8) for t in self.thresholds.detach().cpu()],
            "theta_final_init": self.theta_final,
            "temperature": self.temperature,
            "lambda": self.lam,
            "score": "attention received, mean over heads and real query rows of the tokens present",
            "cls_kept": True,
            "soft_cumulative": self.cumulative,
        }


# ---- shared training helpers ---------------------------------------------------
def _fmt(x: float) -> str:
    return f"{float(x):g}"


def training_split(ctx, log: dict):
    """The training examples, without those longer than `train_max_length` if set."""
    enc = ctx.encoded("train")
    max_len = ctx.method_cfg.get("train_max_length")
    log["train_max_length"] = None if max_len is None else int(max_len)
    log["n_train_available"] = len(enc)
    if max_len is not None:
        keep = np.nonzero(enc.lengths <= int(max_len))[0]
        if len(keep) == 0:
            raise HarnessError(
                f"train_max_length={max_len} leaves no training example for {ctx.task.name}",
                f"raise methods_config.{ctx.method}.train_max_length "
                f"(shortest example: {int(enc.lengths.min())} tokens)",
            )
        enc = enc.subset(keep)
    log["n_train_used"] = len(enc)
    log["mean_train_length"] = float(enc.lengths.mean())
    return enc


def validation_summary(ctx, model) -> dict:
    """Primary metric, FLOPs relative to dense and mean kept tokens per layer on
    the validation split (protocol `none`)."""
    enc = ctx.encoded("validation")
    bs = ctx.cfg.get("eval", {}).get("batch_size", 64)
    run = evaluate(model, ctx.task, enc, "none", bs, ctx.device)
    macs = trace_macs(run.trace, "none")
    base = dense_macs(enc.lengths, run.trace.arch)
    return {
        "score": primary(ctx.task, run.metrics),
        "relative_flops": float(macs.mean() / base.mean()),
        "tokens_per_layer": [round(float(x), 3) for x in run.trace.n_ffn.mean(0)],
        "mean_length": float(enc.lengths.mean()),
    }


def prepare(ctx, s: dict, relative: list[tuple[str, str, object]]):
    """Shared start of ltp / ltp_manual training: the log, the training split
    (length-filtered if configured), absolute values for the length-relative
    settings `relative` [(absolute, relative, default)], and the dense model."""
    log: dict = {"settings": s, "points": {}}
    train = training_split(ctx, log)
    mean_length = float(train.lengths.mean())
    for absolute, rel, default in relative:
        s[absolute] = resolve_thetas(ctx.method_cfg, absolute, rel, default, mean_length)
    dense = ctx.load_model(method="dense").to(ctx.device)
    log["dense_validation"] = validation_summary(ctx, dense)
    return log, train, dense


def _last_checkpoint_score():
    """A `score_fn` that makes `finetune` keep the last checkpoint."""
    calls = {"n": 0}

    def score(_model) -> float:
        calls["n"] += 1
        return float(calls["n"])

    return score


def hard_stage(ctx, model, cfg, train, desc: str, start: dict) -> tuple[dict, dict]:
    """Fine-tune with the pruning active (hard, frozen thresholds) and keep the
    best validation checkpoint, the starting point (whose `validation_summary`
    is `start`) included. Returns the finetune log and the kept point's summary."""
    start_state = copy.deepcopy(model.state_dict())
    summaries: list[dict] = []

    def score_fn(m) -> float:
        summaries.append(validation_summary(ctx, m))
        return summaries[-1]["score"]

    log = ctx.finetune(model, cfg=cfg, train=train, score_fn=score_fn, desc=desc)
    # the checkpoint finetune restored: the first best score (NaN counts as -inf)
    clean = [-math.inf if math.isnan(x["score"]) else x["score"] for x in summaries]
    best = summaries[int(np.argmax(clean))] if summaries else start
    log["start_validation"] = start["score"]
    if not summaries or start["score"] > max(clean):
        model.load_state_dict(start_state)
        best, log["kept"] = start, "start"
    else:
        log["kept"] = "fine-tuned"
    model.eval()
    return log, best


def _manifest_write(ctx, entries: list[dict]) -> None:
    path = ctx.model_dir() / "points.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1))


def _manifest_read(ctx, method: str | None = None) -> list[dict]:
    """The points manifest of this job's method (or of `method`, whose models it starts from)."""
    path = ctx.model_dir(method) / "points.json"
    if not path.is_file():
        raise HarnessError(
            f"{path} not found", f"run the workflow's train step for {ctx.task.name}/{method or ctx.method} first"
        )
    return json.loads(path.read_text())


# ---- LTP ---------------------------------------------------------------------------
@register_method("ltp")
class LTP(MethodPlugin):
    summary = "LTP learned token pruning: per-layer learned thresholds on attention received (soft then hard stage)"
    requires = ("dense",)
    deviations = (
        "token score averages attention received over heads and the REAL query rows of the tokens present "
        "(the reference averages over all padded rows, tying thresholds to the padded length)",
        "scores use the softmax output before attention dropout "
        "(the reference uses post-dropout probabilities in training)",
        "[CLS] is always kept (the reference does not protect it)",
        "pruned tokens are physically removed after the attention sublayer at inference and in the hard stage "
        "(the reference hard-masks them in the attention mask)",
        "initial thresholds theta_l = theta_final*l/L with l = 1..L as in the reference README "
        "(the reference code's 0-indexed layers give the first layer a zero threshold)",
        "the thresholds' own learning rate is realised by the Adam-invariant reparameterisation "
        "theta = theta_0 + (threshold_lr/lr)*delta under one optimiser and schedule "
        "(the reference uses a second optimiser)",
        "soft stage keeps its last checkpoint; hard stage keeps the best checkpoint on the held-out validation split "
        "(its starting point included)",
        "theta_final and the threshold learning rate default to multiples of 1/(mean training length) "
        "(theta_final_rel, threshold_lr_rel) unless absolute values are configured; the reference uses an absolute "
        "theta_final of 0.01 on padded-length scores",
        "short stage budgets by default (soft_epochs, hard_epochs = 0.25 epoch each) instead of the reference's "
        "1-10 soft and 5 hard epochs",
    )

    @staticmethod
    def settings(ctx) -> dict:
        return with_profile_lrs(ctx, ctx.method_settings(LTP_DEFAULTS), ("soft_lr", "hard_lr"))

    def train(self, ctx) -> dict:
        s = self.settings(ctx)
        log, train, dense = prepare(ctx, s, [
            ("theta_final", "theta_final_rel", DEFAULT_THETA_FINAL_REL),
            ("threshold_lr", "threshold_lr_rel", DEFAULT_THRESHOLD_LR_REL),
        ])
        num_layers = len(dense.layers)
        manifest = []
        for lam in s["lambdas"]:
            name = f"lambda={_fmt(lam)}"
            t0 = time.time()
            model = copy.deepcopy(dense)
            model.policy = LTPPolicy(
                num_layers,
                s["theta_final"],
                s["temperature"],
                lam=lam,
                soft=True,
                lr_scale=s["threshold_lr"] / s["soft_lr"],
                learnable=True,
                cumulative=s["soft_cumulative"],
            ).to(ctx.device)
            init = [float(x) for x in model.policy.thresholds.detach().cpu()]
            soft_log = ctx.finetune(
                model,
                cfg=ctx.train_config(epochs=s["soft_epochs"], lr=s["soft_lr"]),
                train=train,
                score_fn=_last_checkpoint_score(),
                desc=f"{ctx.task.name}/ltp soft {name}",
            )
            model.policy.freeze()
            model.eval()
            soft_val = validation_summary(ctx, model)
            t_soft = time.time() - t0
            hard_log, hard_val = None, soft_val
            if s["hard_epochs"] > 0:
                hard_log, hard_val = hard_stage(
                    ctx,
                    model,
                    ctx.train_config(epochs=s["hard_epochs"], lr=s["hard_lr"]),
                    train,
                    f"{ctx.task.name}/ltp hard {name}",
                    soft_val,
                )
            file = f"{name}.pt"
            ctx.save_model(model.eval(), file)
            manifest.append(
                {
                    "name": name,
                    "lambda": lam,
                    "theta_final": s["theta_final"],
                    "temperature": s["temperature"],
                    "file": file,
                }
            )
            log["points"][name] = {
                "lambda": lam,
                "thresholds_init": init,
                "thresholds_learned": [float(x) for x in model.policy.thresholds.cpu()],
                "soft_steps": soft_log["steps"],
                "soft_validation": soft_val,
                "hard": None if hard_log is None else {
                    "steps": hard_log["steps"],
                    "start_validation": hard_log["start_validation"],
                    "best_validation": hard_log["best_validation"],
                    "kept": hard_log["kept"],
                },
                "validation": hard_val,
                "seconds_soft": round(t_soft, 2),
                "seconds_total": round(time.time() - t0, 2),
            }
        _manifest_write(ctx, manifest)
        return log

    def operating_points(self, ctx):
        for entry in _manifest_read(ctx):
            model = ctx.load_model(entry["file"]).eval()
            yield OperatingPoint(
                entry["name"],
                {k: entry[k] for k in ("lambda", "theta_final", "temperature")},
                model,
                notes={
                    "thresholds": [float(x) for x in model.policy.thresholds.detach().cpu()],
                    "train_max_length": ctx.method_cfg.get("train_max_length"),
                },
            )

    def demo_model(self, model):
        # rising thresholds that prune near-uniform attention of a random model:
        # at the last layer anything below 0.05 (i.e. inputs with > 20 tokens left) goes
        model.policy = LTPPolicy(len(model.layers), theta_final=0.05)
        return model


# ---- manual thresholds (ablation) ------------------------------------------------
@register_method("ltp_manual")
class LTPManual(MethodPlugin):
    summary = "LTP ablation: fixed linearly rising thresholds theta_final*l/L on attention received (no learning)"
    requires = ("dense",)
    deviations = (
        "token score averages attention received over heads and the REAL query rows of the tokens present "
        "(the reference averages over all padded rows, tying thresholds to the padded length)",
        "[CLS] is always kept (the reference does not protect it)",
        "pruned tokens are physically removed after the attention sublayer (the reference hard-masks them)",
        "thresholds theta_l = theta_final*l/L with l = 1..L as in the reference README",
        "optional short hard-stage fine-tune (hard_epochs, default 0.25 epoch) instead of the reference's 5 epochs; "
        "best checkpoint on the held-out validation split, the un-fine-tuned start included",
        "theta_final values default to multiples of 1/(mean training length) (theta_final_rels) unless absolute "
        "theta_finals are configured",
    )

    @staticmethod
    def settings(ctx) -> dict:
        return with_profile_lrs(ctx, ctx.method_settings(MANUAL_DEFAULTS), ("hard_lr",))

    def train(self, ctx) -> dict:
        s = self.settings(ctx)
        log, train, dense = prepare(ctx, s, [("theta_finals", "theta_final_rels", DEFAULT_MANUAL_THETA_RELS)])
        num_layers = len(dense.layers)
        manifest = []
        for theta in s["theta_finals"]:
            name = f"theta_final={_fmt(theta)}"
            t0 = time.time()
            model = copy.deepcopy(dense)
            model.policy = LTPPolicy(num_layers, theta).to(ctx.device)
            entry = {"name": name, "theta_final": theta, "file": None}
            point: dict = {"theta_final": theta, "thresholds": rising_thresholds(theta, num_layers)}
            model.eval()
            point["untuned_validation"] = validation_summary(ctx, model)
            point["validation"] = point["untuned_validation"]
            if s["hard_epochs"] > 0:
                ft, point["validation"] = hard_stage(
                    ctx, model, ctx.train_config(epochs=s["hard_epochs"], lr=s["hard_lr"]), train,
                    f"{ctx.task.name}/ltp_manual {name}", point["untuned_validation"],
                )
                point["hard"] = {k: ft[k] for k in ("steps", "start_validation", "best_validation", "kept")}
                entry["file"] = f"{name}.pt"
                ctx.save_model(model.eval(), entry["file"])
            point["seconds"] = round(time.time() - t0, 2)
            log["points"][name] = point
            manifest.append(entry)
        _manifest_write(ctx, manifest)
        return log

    def operating_points(self, ctx):
        dense = None
        for entry in _manifest_read(ctx):
            if entry["file"] is not None:
                model = ctx.load_model(entry["file"])
            else:
                if dense is None:
                    dense = ctx.load_model(method="dense")
                model = copy.deepcopy(dense)
                model.policy = LTPPolicy(len(model.layers), entry["theta_final"]).to(ctx.device)
            yield OperatingPoint(
                entry["name"],
                {"theta_final": entry["theta_final"]},
                model.eval(),
                notes={
                    "thresholds": [float(x) for x in model.policy.thresholds.detach().cpu()],
                    "fine_tuned": entry["file"] is not None,
                    "train_max_length": ctx.method_cfg.get("train_max_length"),
                },
            )

    def demo_model(self, model):
        model.policy = LTPPolicy(len(model.layers), theta_final=0.05)
        return model
