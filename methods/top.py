"""ToP: constraint-aware and ranking-distilled token pruning.

Li, Zhang, Xu, et al., "Constraint-aware and Ranking-distilled Token Pruning for Efficient
Transformer Inference", KDD 2023 (arXiv:2306.14393); reference code github.com/microsoft/Moonlit,
folder ToP (`models/l0_module.py`, `models/modeling_bert.py`, `trainer/trainer.py`). Its README:
8.1x fewer FLOPs than BERT-base on GLUE on average at competitive accuracy, up to 7.4x real latency
speedup on an Intel CPU.

Importance. A token's score is the attention it receives, averaged over heads and query rows
(LTP's and PoWER-BERT's score); [CLS] is never pruned.

Gates. At each decision layer, the real tokens still present are ranked by score and cut into
`bins` rank bins of equal share (bin = floor(rank / length x bins), the length counting the tokens
still present besides [CLS]); each (layer, bin) has a hard-concrete gate (`harness.model.hard_concrete`:
CoFi's stretch and temperature) and each decision layer a gate of its own that switches its
pruning on (initialised closed, as the reference's -10, clamped like every log_alpha to ln 1e-2..ln 1e2).
A token dropped at one layer stays dropped. Decisions follow the attention sublayer of layers
prune_from - 1 .. L - 2, so the FFN of that layer and everything after run on the kept tokens.

Training (the pruning stage): one gate sample per step for the batch; a token's mask is
1 - (1 - z_bin)(g_layer) with the layer gate straight-through (binary forward, continuous
gradient) and the bin gate continuous, times whether the token survived the previous decisions;
hidden states are multiplied by it and the next attentions weigh each key by it. The loss is the
logits' KL to the fine-tuned dense model at T = 2 (x T^2), the Lagrangian
lambda1 (s - t) + lambda2 (s - t)^2 on the expected FLOPs sparsity s (the gates' keep probabilities
through every layer's MACs, `harness.measure.flops.layer_macs_of`, at each example's real length)
with the target t ramped linearly from 0 over `warmup_fraction` of the stage, and the ranking
distillation: at layers 1 .. L/3 - 1 the student's token scores are fitted to the ranking of the
dense model's last-layer scores over its top-`top_k` tokens by LambdaLoss's ARP-2 pairwise loss
(sum over pairs with higher teacher relevance of (rel_i - rel_j) log2(1 + exp(-(s_i - s_j))), over
top_k^2), weighted by `rank_weight` x max(0.01, 1 - warm-up progress). Embeddings are frozen.

Inference. Gates are fixed as the reference fixes them: per decision layer the round(sum of the
bins' keep probabilities) bins with the largest log_alpha stay, and the layer prunes when its gate's
keep probability exceeds 1/2. Tokens of a closed bin are physically removed (`select_tokens`).
After the pruning stage the model is fine-tuned with its gates fixed (`finetune_epochs`, the same
distillation loss, physical removal; the checkpoint kept is the best on validation, its start
included).

Knob: the FLOPs speedup target (sparsity t = 1 - 1/speedup of the MACs at each example's real
length, protocol `none`); points `speedup=<x>` with the target, and the validation FLOPs reached
beside it. Departures: `ToP.deviations`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.plugin import (LOG_ALPHA_RANGE, EncoderState, GradientAscent, HarnessError, MethodPlugin, MethodSettings,
                            OperatingPoint, Policy, deterministic_gate, distillation_loss, format_knob, head_macs,
                            keep_probability, layer_macs_of, per_real_row, rank_tokens, received_sum, register_method,
                            sample_gate, select_tokens, task_loss, token_scores, total_steps)


@dataclass(frozen=True)
class Settings(MethodSettings):
    speedups: tuple[float, ...] = (2.0, 4.0, 8.0)  # FLOPs speedup targets (protocol none), one model each
    bins: int = 25  # rank bins per decision layer (the reference's SST-2 setting; 20-100 by task)
    prune_from: int = 2  # the first layer that runs on pruned tokens (the reference's prune_location 2..11)
    top_k: int = 20  # teacher tokens the ranking distillation reads (the reference's TOPK)
    rank_weight: float = 0.01  # the ranking loss's alpha (the reference's grid: 1e-2 .. 1e-5)
    distill_temperature: float = 2.0
    prune_epochs: float = 2.0  # the pruning stage: gates, Lagrangian, distillation
    warmup_fraction: float = 0.25  # of the pruning stage over which the target ramps from 0 (reference: 10 of 40 epochs)
    finetune_epochs: float = 1.0  # then the gates fixed, tokens physically removed
    lr: float | None = None  # the model's (None: the profile's)
    mask_lr: float = 0.02  # the gates' (the reference's REG_LR grid: 0.01, 0.02, 0.04)
    lagrangian_lr: float = 0.02  # the multipliers' (ascent; the reference: the same REG_LR)
    init_bin_log_alpha: float = 10.0  # clamped to ln 100: bins start open (reference)
    init_layer_log_alpha: float = -10.0  # clamped to ln 0.01: layers start not pruning (reference)
    flops_epsilon: float = 0.01  # a point more than this from its target relative FLOPs on validation is flagged


def decision_layers(num_layers: int, prune_from: int) -> list[int]:
    """The layers after whose attention sublayer ToP decides (the next layer is the first to run pruned)."""
    return list(range(max(0, prune_from - 1), num_layers - 1))


def distilled_layers(num_layers: int) -> list[int]:
    """The layers whose scores learn the final layer's ranking: 1 .. L/3 - 1 (the reference's 1, 2, 3 of 12)."""
    return list(range(1, num_layers // 3))


def rank_bins(scores: torch.Tensor, mask: torch.Tensor, bins: int) -> torch.Tensor:
    """Each token's rank bin [b, n] among the real tokens of its row besides [CLS] (column 0): floor(rank /
    length x bins), rank 0 the highest score; [CLS] and padding get -1."""
    rank = rank_tokens(scores, mask).to(torch.float32) - 1.0  # [CLS] is rank 0: the others 0..
    length = (mask.sum(1, keepdim=True) - 1).clamp(min=1).to(torch.float32)
    b = torch.floor(rank / length * bins).clamp(0, bins - 1).to(torch.long)
    first = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) == 0
    return torch.where(mask & ~first, b, torch.full_like(b, -1))


class ToPPolicy(Policy):
    """Token-rank gates per decision layer; soft masks in the pruning stage, physical removal otherwise."""

    def __init__(self, num_layers: int, bins: int, prune_from: int, init_bin: float = 10.0, init_layer: float = -10.0,
                 distill_layers: list[int] | None = None):
        super().__init__()
        self.num_layers, self.bins, self.prune_from = int(num_layers), int(bins), int(prune_from)
        self.layers = decision_layers(self.num_layers, self.prune_from)
        self.distill_layers = list(distill_layers or [])
        lo, hi = LOG_ALPHA_RANGE
        self.bin_log_alpha = nn.Parameter(torch.full((len(self.layers), self.bins), float(init_bin)).clamp(lo, hi))
        self.layer_log_alpha = nn.Parameter(torch.full((len(self.layers),), float(init_layer)).clamp(lo, hi))
        self.register_buffer("keep_bins", torch.ones(len(self.layers), self.bins, dtype=torch.bool))
        self.register_buffer("layer_on", torch.zeros(len(self.layers), dtype=torch.bool))
        self.soft = True  # the pruning stage; `freeze` fixes the gates

    # ---- gates -------------------------------------------------------------------------------
    def clamp_(self) -> None:
        with torch.no_grad():
            self.bin_log_alpha.clamp_(*LOG_ALPHA_RANGE)
            self.layer_log_alpha.clamp_(*LOG_ALPHA_RANGE)

    def keep_ratios(self) -> torch.Tensor:
        """Expected share of the present tokens each decision layer keeps [D]: the bins' mean keep
        probability where the layer prunes, 1 where it does not."""
        bins = keep_probability(self.bin_log_alpha).mean(1)
        return 1.0 - (1.0 - bins) * keep_probability(self.layer_log_alpha)

    @torch.no_grad()
    def freeze(self) -> None:
        """The reference's inference gates: per layer the round(sum of keep probabilities) bins with the
        largest log_alpha, and the layer on when its keep probability exceeds 1/2."""
        self.keep_bins.copy_(deterministic_gate(self.bin_log_alpha) > 0)
        self.layer_on.copy_(keep_probability(self.layer_log_alpha) > 0.5)
        self.soft = False
        self.bin_log_alpha.requires_grad_(False)
        self.layer_log_alpha.requires_grad_(False)

    def _soft_active(self) -> bool:
        """The pruning stage's soft masks: training, before `freeze`."""
        return self.soft and self.training

    def _decides(self) -> list[bool]:
        """Per layer: whether it selects tokens (host copy, read once per change)."""
        def compute():
            on = self.layer_on.tolist()
            return [d in self.layers and (self._soft_active() or on[self.layers.index(d)])
                    for d in range(self.num_layers)]
        key = "decides_soft" if self._soft_active() else "decides"
        return self.host_copy(key, (self.layer_on,), compute)

    # ---- hooks ---------------------------------------------------------------------------------
    def on_forward(self, model) -> None:
        if self._soft_active():
            self.clamp_()  # after every optimizer step, before the forward that uses the gates (as CoFi's masks)

    def needs_attention_probs(self, layer: int) -> bool:
        if self._soft_active() and layer in self.distill_layers:
            return True
        return self._decides()[layer]

    def after_attention(self, layer: int, state: EncoderState) -> None:
        if self._soft_active() and layer in self.distill_layers and state.attn_probs is not None:
            state.scratch.setdefault("top_scores", {})[layer] = self._present_scores(state)[0]
        if not self._decides()[layer] or state.attn_probs is None:
            return
        d = self.layers.index(layer)
        if self._soft_active():
            self._soft(d, state)
            return
        scores = token_scores(state)
        bins = rank_bins(scores.detach(), state.mask, self.bins)
        keep = self.keep_bins[d][bins.clamp(min=0)] | (bins < 0)  # [CLS] (and padding, masked again) stay
        select_tokens(state, keep & state.mask)

    @staticmethod
    def _present_scores(state: EncoderState) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores over the query rows of the tokens still present, in fp32; which tokens are present) in
        the pruning stage, where dropped tokens are zeroed, not removed: as inference scores them."""
        alive = state.scratch.get("top_alive")
        present = state.mask if alive is None else state.mask & (alive > 0)
        probs = state.attn_probs.float()
        return per_real_row(received_sum(probs, present), probs.shape[1], present), present

    def _soft(self, d: int, state: EncoderState) -> None:
        scores, present = self._present_scores(state)
        bins = rank_bins(scores.detach(), present, self.bins)
        z = sample_gate(self.bin_log_alpha[d])  # one draw per step for the batch, as the reference
        g = sample_gate(self.layer_log_alpha[d])
        # straight-through: exactly 0 or 1 forward (the parentheses: (1 + g) - g is not always 1 in floating
        # point, which let a closed bin's tokens survive at 6e-8), the continuous gate's gradient backward
        g = (g > 0).to(g.dtype) + (g - g.detach())
        z_tok = z[bins.clamp(min=0)]
        keep = 1.0 - (1.0 - z_tok) * g
        keep = torch.where(bins < 0, torch.ones_like(keep), keep) * present.to(keep.dtype)
        state.hidden = state.hidden * keep.unsqueeze(-1).to(state.hidden.dtype)
        state.key_weight = keep.to(state.hidden.dtype)
        state.scratch["top_alive"] = (keep > 0).to(keep.dtype).detach()

    def describe(self) -> dict:
        return {"kind": "top_rank_bins", "bins": self.bins, "decision_layers": self.layers,
                "layers_on": [bool(x) for x in self.layer_on.tolist()],
                "bins_kept": [int(x) for x in self.keep_bins.sum(1).tolist()]}


class FinalScores(Policy):
    """The teacher's last-layer token scores, for the ranking distillation."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.last = int(num_layers) - 1

    def needs_attention_probs(self, layer: int) -> bool:
        return layer == self.last

    def after_attention(self, layer: int, state: EncoderState) -> None:
        if layer == self.last and state.attn_probs is not None:
            state.scratch["final_scores"] = per_real_row(received_sum(state.attn_probs, state.mask),
                                                         state.attn_probs.shape[1], state.mask)


# ---- losses ---------------------------------------------------------------------------------------
def ranking_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, top_k: int) -> torch.Tensor:
    """LambdaLoss's ARP-2 on the teacher's top_k tokens of each row ([CLS] and padding left out): relevance
    k - rank (the best token top_k, the k-th 1); sum over pairs i, j with rel_i > rel_j of
    (rel_i - rel_j) log2(1 + exp(-(s_i - s_j))), over top_k^2; the mean over rows."""
    real = mask.clone()
    real[:, 0] = False
    k = max(1, int(top_k))
    width = min(k, student.shape[1])  # a row has at most its width's tokens; k^2 normalises whatever the padding
    t = teacher.detach().masked_fill(~real, -math.inf)
    order = torch.argsort(t, dim=1, descending=True, stable=True)[:, :width]  # [b, width]
    valid = torch.gather(real, 1, order)
    rel = (k - torch.arange(width, device=student.device, dtype=student.dtype)).expand(order.shape[0], -1)
    rel = torch.where(valid, rel, torch.zeros_like(rel))
    s = torch.gather(student, 1, order)
    diff_rel = rel[:, :, None] - rel[:, None, :]
    diff_s = s[:, :, None] - s[:, None, :]
    pairs = (diff_rel > 0) & valid[:, :, None] & valid[:, None, :]
    terms = torch.where(pairs, diff_rel * F.softplus(-diff_s) / math.log(2.0), torch.zeros_like(diff_s))
    return (terms.sum((1, 2)) / (k * k)).mean()


def expected_relative_macs(policy: ToPPolicy, arch, lengths: torch.Tensor) -> torch.Tensor:
    """E[MACs] / dense MACs over a batch of real lengths under the gates' keep probabilities: at each
    decision layer the tokens besides [CLS] shrink by its keep ratio, from that layer's FFN on
    (`harness.measure.flops.layer_macs_of`, the records' formula; the scoring at a decision layer counted
    at its keep probability)."""
    n0 = lengths.to(torch.float32)
    ratios = policy.keep_ratios()
    on = keep_probability(policy.layer_log_alpha)
    n, total, dense = n0, n0.new_zeros(()), n0.new_zeros(())
    for layer in range(policy.num_layers):
        n_attn = n
        if layer in policy.layers:
            d = policy.layers.index(layer)
            n = (n - 1.0) * ratios[d] + 1.0
            heads = arch.heads[layer]
            total = total + (on[d] * heads * n_attn * n_attn).sum()
        total = total + layer_macs_of(n_attn, n, arch, layer).sum()
        dense = dense + layer_macs_of(n0, n0, arch, layer).sum()
    head = float(head_macs(arch, 1.0)) * len(n0) if arch.head != "span" else (n0 * float(head_macs(arch, 1.0))).sum()
    return (total + head) / (dense + head)


# ---- training ---------------------------------------------------------------------------------------
def point_name(speedup: float) -> str:
    return f"speedup={format_knob(speedup)}"


def prune_stage(ctx, dense, speedup: float, s: Settings, lr: float, name: str):
    """The pruning stage from the dense model: the student with its gates trained, and a log."""
    L = len(dense.layers)
    student = copy.deepcopy(dense)
    policy = ToPPolicy(L, s.bins, s.prune_from, s.init_bin_log_alpha, s.init_layer_log_alpha,
                       distilled_layers(L)).to(ctx.device)
    student.policy = policy
    teacher = copy.deepcopy(dense).eval()
    teacher.policy = FinalScores(L)
    for p in student.embeddings.parameters():
        p.requires_grad_(False)  # the reference trains every weight but the embeddings
    multipliers = nn.Parameter(torch.zeros(2, device=ctx.device))
    cfg = ctx.train_config(epochs=s.prune_epochs, lr=lr)
    total = total_steps(cfg, len(ctx.train_split))
    warm = max(1, int(round(s.warmup_fraction * total)))
    target = 1.0 - 1.0 / float(speedup)
    arch = student.arch()
    trail = {"step": 0, "sparsity": [], "target": []}

    def loss_fn(model, out, batch):
        step = trail["step"] = trail["step"] + 1
        progress = min(1.0, step / warm)
        t = target * progress
        with torch.no_grad():
            t_out = teacher(*batch.inputs, trace=False)
        if ctx.task.is_regression:
            value = task_loss(ctx.task, out.logits, batch.labels)
        else:
            value = distillation_loss(ctx.task, out.logits, t_out.logits, s.distill_temperature)
        scores = out.state.scratch.get("top_scores", {})
        if scores and s.rank_weight:
            final = t_out.state.scratch["final_scores"]
            real = batch.attention_mask.bool()
            rank = sum(ranking_loss(v.float(), final.float(), real, s.top_k) for v in scores.values())
            value = value + s.rank_weight * max(0.01, 1.0 - progress) * rank
        sparsity = 1.0 - expected_relative_macs(policy, arch, batch.attention_mask.sum(1))
        gap = sparsity - t
        lam = GradientAscent.apply(multipliers)
        if step % max(1, total // 20) == 0 or step == total:
            trail["sparsity"].append(round(float(sparsity.detach()), 4))
            trail["target"].append(round(t, 4))
        return value + lam[0] * gap + lam[1] * gap * gap

    log = ctx.finetune(student, cfg=cfg, loss_fn=loss_fn, checkpoint="last",
                       parameters=[p for p in student.parameters() if p.requires_grad
                                   and p is not policy.bin_log_alpha and p is not policy.layer_log_alpha],
                       extra_groups=[{"params": [policy.bin_log_alpha, policy.layer_log_alpha], "lr": s.mask_lr},
                                     {"params": [multipliers], "lr": s.lagrangian_lr}],
                       desc=f"{ctx.task.name}/{ctx.method} prune {name}")
    policy.clamp_()
    return student, teacher, {"steps": log["steps"], "warmup_steps": warm, "target_sparsity": target, "trail": trail,
                              "multipliers": [float(x) for x in multipliers.detach()],
                              "expected_relative_flops": float(1.0 - trail["sparsity"][-1]) if trail["sparsity"]
                              else None}


@register_method("top")
class ToP(MethodPlugin):
    summary = "ToP: token pruning by rank-bin L0 gates under a FLOPs Lagrangian, with ranking distillation"
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "starts from the harness's fine-tuned dense model, which is also the teacher (the reference starts from and "
        "distils from the same fine-tuned checkpoint too)",
        "decisions after the attention sublayer of layers prune_from - 1 .. L - 2, so that layer's FFN already runs "
        "on the kept tokens: what the reference's MAC model counts; its code masks at the next layer's input",
        "pruned tokens are physically removed at inference (the reference masks them as keys and still computes "
        "them); in the pruning stage the soft mask multiplies the hidden states, as in the reference, and also "
        "weighs them as keys (the reference leaves them attendable in training, unlike its inference)",
        "token scores average over the real query rows (the reference averages over every row, padding and pruned "
        "rows included, which shifts every token's score alike) and, in training, after no attention dropout of "
        "their own (the reference's follow attention dropout)",
        "the expected FLOPs count every Linear, QK^T and AV, the scoring product at each decision layer at its "
        "keep probability, the pooler and classifier at each example's real length (the reference counts the "
        "encoder's MHA and FFN only)",
        "ranking distillation at layers 1 .. L/3 - 1 (the reference's 1, 2, 3 of BERT-base's 12); relevance k .. 1 "
        "over the teacher's top_k tokens besides [CLS]; LambdaLoss's ARP-2 written out (the reference imports "
        "pytorchltr's LambdaARPLoss2)",
        "a fine-tune with the gates fixed and tokens removed follows the pruning stage (finetune_epochs; the "
        "reference's main recipe ends with the pruning stage and keeps its best dev checkpoint once the sparsity "
        "is within 0.01 of the target); points are named by their target and carry the validation FLOPs they "
        "reached, flagged off_target beyond flops_epsilon",
        "short budgets (prune_epochs, finetune_epochs) on the profile's training split; the reference prunes for "
        "40 epochs on most GLUE tasks with the target ramped over 10",
        "no label loss on classification (as the reference); a regression task trains on its labels (the "
        "reference's STS-B)",
        "the model's learning rate follows the profile's schedule (warm-up 0.1, weight decay 0.01; the reference: "
        "no warm-up, no decay); the Lagrangian reads the expected FLOPs of the batch as a ratio of sums over its "
        "examples (the reference: the mean of per-example ratios)",
        "token scores in the pruning stage are computed in fp32 (under bf16 autocast the attention is bf16)",
        "gates and multipliers at mask_lr and lagrangian_lr, 0.02 by default (the reference's REG_LR grid is "
        "0.01-0.04 for ~10^4 steps): in a short budget the layer gates may not open in time, and a point is then "
        "flagged off_target",
    )

    def check(self, name: str, settings, settings_of) -> None:
        if not settings.speedups or any(float(x) <= 1.0 for x in settings.speedups):
            raise HarnessError(f"{name} speedups must be FLOPs speedup targets above 1 (got {list(settings.speedups)})",
                               f"set methods_config.{name}.speedups to targets such as [2, 4, 8]")
        if settings.bins < 1 or settings.prune_from < 1:
            raise HarnessError(f"{name} needs bins >= 1 and prune_from >= 1 (got {settings.bins}, {settings.prune_from})",
                               f"set methods_config.{name}.bins and prune_from (the reference: 25 and 2)")

    def train_points(self, settings, task) -> dict:
        return {point_name(x): float(x) for x in settings.speedups}

    def train_point(self, ctx, name: str, speedup: float) -> tuple[list[dict], dict]:
        s = ctx.settings
        self.check(ctx.method, s, None)
        if s.prune_from > len(ctx.load_model(method="dense").layers) - 1:
            raise HarnessError(f"{ctx.method} prune_from {s.prune_from} leaves no layer to prune",
                               f"set methods_config.{ctx.method}.prune_from below the number of layers")
        lr = float(s.lr if s.lr is not None else ctx.train_setting("lr"))
        dense = ctx.load_model(method="dense").to(ctx.device)
        t0 = time.time()
        student, teacher, log = prune_stage(ctx, dense, speedup, s, lr, name)
        student.policy.freeze()
        log["frozen"] = student.policy.describe()
        log["pruned_validation"] = ctx.validation_summary(student.eval())
        if s.finetune_epochs > 0:
            teacher.policy = Policy()

            def distill(model, out, batch):
                with torch.no_grad():
                    soft = teacher(*batch.inputs, trace=False).logits
                if ctx.task.is_regression:
                    return task_loss(ctx.task, out.logits, batch.labels)
                return distillation_loss(ctx.task, out.logits, soft, s.distill_temperature)

            tuned = ctx.finetune(student, cfg=ctx.train_config(epochs=s.finetune_epochs, lr=lr), loss_fn=distill,
                                 checkpoint="best_or_start", start_score=log["pruned_validation"]["score"],
                                 parameters=[p for p in student.parameters() if p.requires_grad],
                                 desc=f"{ctx.task.name}/{ctx.method} finetune {name}")
            log["finetune"] = {k: tuned[k] for k in ("steps", "start_validation", "best_validation", "kept")}
        summary = ctx.validation_summary(student.eval())
        reached = float(summary["relative_flops"])
        wanted = 1.0 / float(speedup)
        knobs = {"speedup": float(speedup), "flops_target": wanted, "validation_relative_flops": reached,
                 "off_target": abs(reached - wanted) > s.flops_epsilon}
        for p in student.embeddings.parameters():
            p.requires_grad_(True)  # frozen through both stages (as the reference trains)
        ctx.save_model(student.eval(), f"{name}.pt")
        log.update(validation=summary, seconds=round(time.time() - t0, 2), **knobs)
        return [{"name": name + ("_off_target" if knobs["off_target"] else ""), "file": f"{name}.pt", **knobs}], log

    def operating_points(self, ctx):
        for entry in ctx.points():
            knobs = {k: entry[k] for k in ("speedup", "flops_target", "validation_relative_flops", "off_target")}
            yield OperatingPoint(entry["name"], knobs, ctx.load_model(entry["file"]).eval())

    def demo_model(self, model):
        """Gates fixed at a spread: every decision layer on, about half of its bins closed."""
        model = copy.deepcopy(model)
        policy = ToPPolicy(len(model.layers), bins=4, prune_from=1)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            policy.bin_log_alpha.copy_(torch.randn(policy.bin_log_alpha.shape, generator=g) * 3.0)
            policy.layer_log_alpha.fill_(LOG_ALPHA_RANGE[1])
        policy.freeze()
        model.policy = policy
        return model.eval()
