"""CoFi: coarse- and fine-grained structured pruning with L0 masks.

Xia, Zhong, Chen, "Structured Pruning Learns Compact and Accurate Models",
ACL 2022 (arXiv:2204.00408); reference code github.com/princeton-nlp/CoFiPruning.

Masks. Hard-concrete gates (Louizos et al. 2018; stretch (-0.1, 1.1),
temperature 2/3) over every attention head, each whole attention sublayer,
every FFN intermediate dim, each whole FFN sublayer and the hidden dims (one
mask shared by the embeddings' output and every sublayer's output). A weight
goes when any gate above it closes.

Objective. Expected sparsity s = 1 - E[size] / size, the size counted over the
prunable encoder parameters (every layer's attention and FFN weights and
biases; embeddings and LayerNorms excluded) from the gates' keep
probabilities. The target t ramps linearly from 0 over the warm-up; the
Lagrangian lambda1 (s - t) + lambda2 (s - t)^2 is added with the multipliers
updated by gradient ascent. Distillation from the fine-tuned dense model:
0.1 x KL of the logits at T = 2 (times T^2) + 0.9 x layer distillation (each
of the teacher's layers at depth L/4, L/2, 3L/4 and L, from the top down,
matched to the lowest-error remaining student layer below the previous match,
through a learned linear map initialised to the identity). No hard-label loss
unless `label_weight` is set.

Inference. Deterministic gates as the reference computes them (per group, the
round(size - sum of keep probabilities) lowest gates are zero, the rest keep
sigmoid(0.8 log_alpha / temperature); the groups are each layer's heads, each
layer's FFN dims, the hidden dims, and each layer's attention and FFN
sublayer gate on its own), folded into the weights and sliced
away (`harness.model.structure.materialize`): the pruned model is a smaller
dense model, so its speed is real at any batch size. The materialized model
is then fine-tuned with the structure fixed and the same distillation loss.

Knob: the target sparsity, one model per target (independent runs). In a
short budget the Lagrangian need not reach the target, so a point is named
and selected by the sparsity its materialized model reached (`point_identity`):
its name shows the achieved and the target sparsity and, more than the
tolerance `sparsity_epsilon` (0.01) off the target, the flag `off_target`;
its knobs are `sparsity` (what experiments and claims select by: the target
when reached within the epsilon, else the achieved sparsity to 0.01),
`target_sparsity` and `off_target`. How this departs from the original:
`CoFi.deviations`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from harness.plugin import (LOG_ALPHA_RANGE, SPARSITY_EPSILON, EncoderState, Gates, GradientAscent, HarnessError,
                            JobContext, MethodPlugin, MethodSettings, OperatingPoint, Policy, attention_params,
                            clear_gates, deterministic_gate, distillation_loss, ffn_params, keep_probability,
                            materialize, point_identity, register_method, sample_gate, structure_summary, task_loss,
                            total_steps)



@dataclass(frozen=True)
class Settings(MethodSettings):
    sparsities: tuple[float, ...] = (0.5, 0.6, 0.8, 0.9, 0.95)
    prune_epochs: float = 2.0  # the pruning stage (masks, Lagrangian, distillation)
    warmup_fraction: float = 0.5  # of the pruning steps over which the target ramps from 0 (the reference: 0.1-0.2)
    finetune_epochs: float = 1.0  # the materialized model, structure fixed
    lr: float | None = None  # the model's learning rate in both stages (None: the profile's)
    mask_lr: float = 0.1  # log_alpha's (Adam, constant); the reference's 0.01 is for ~10^4 steps
    lagrangian_lr: float = 0.1  # the multipliers' (gradient ascent)
    distill_temperature: float = 2.0
    logit_distill_weight: float = 0.1
    layer_distill_weight: float = 0.9
    label_weight: float = 0.0  # cross-entropy on the labels (the reference uses none)
    init_log_alpha: float = 10.0  # heads, sublayers and hidden dims (FFN dims start at 0), clamped to ln 100
    sparsity_epsilon: float = SPARSITY_EPSILON  # further than this from its target, a point is flagged off_target


class CoFiMasks(nn.Module):
    """The log_alphas of every gate and the expected model size they imply."""

    def __init__(self, layers: int, heads: int, head_dim: int, ffn: int, hidden: int, start: float = 10.0):
        super().__init__()
        self.shape = (layers, heads, head_dim, ffn, hidden)
        init = lambda *s, v=start: nn.Parameter(torch.full(s, float(v)).clamp(*LOG_ALPHA_RANGE))  # noqa: E731
        self.heads = init(layers, heads)
        self.attention = init(layers)
        self.ffn_dims = init(layers, ffn, v=0.0)
        self.ffn = init(layers)
        self.hidden = init(hidden)

    @property
    def dense_size(self) -> int:
        layers, heads, dh, ffn, hidden = self.shape
        return layers * (attention_params(hidden, heads * dh) + ffn_params(hidden, ffn))

    def clamp_(self) -> None:
        with torch.no_grad():
            for p in self.parameters():
                p.clamp_(*LOG_ALPHA_RANGE)

    def expected_size(self) -> torch.Tensor:
        """E[prunable parameters], the count of `harness.measure.params` with
        every unit weighted by its keep probability."""
        _, _, dh, _, _ = self.shape
        hid = keep_probability(self.hidden).sum()
        attn, ffn = keep_probability(self.attention), keep_probability(self.ffn)
        inner = dh * (keep_probability(self.heads) * attn[:, None]).sum(1)  # [L]
        dims = (keep_probability(self.ffn_dims) * ffn[:, None]).sum(1)  # [L]
        size = 4 * hid * inner + 3 * inner + hid * attn + 2 * hid * dims + dims + hid * ffn
        return size.sum()

    def expected_sparsity(self) -> torch.Tensor:
        return 1.0 - self.expected_size() / self.dense_size

    def gates(self, sample: bool) -> Gates:
        """Sampled gates (training) or the deterministic ones (inference). The
        deterministic groups are the reference's: each layer's heads, each
        layer's FFN dims, the hidden dims as one, and each layer's attention
        and FFN sublayer gate alone (a group of one, so a sublayer closes
        exactly when its keep probability is below 0.5, whatever the other
        layers' gates are)."""
        f = sample_gate if sample else deterministic_gate
        layers = self.shape[0]
        if sample:
            attn, ffn = f(self.attention), f(self.ffn)
        else:  # [L] -> [L, 1]: one group per layer, not one over the layers
            attn, ffn = f(self.attention[:, None])[:, 0], f(self.ffn[:, None])[:, 0]
        heads, dims = f(self.heads), f(self.ffn_dims)
        return Gates(heads=[heads[i] for i in range(layers)], attention=[attn[i] for i in range(layers)],
                     ffn_dims=[dims[i] for i in range(layers)], ffn=[ffn[i] for i in range(layers)],
                     hidden=f(self.hidden))


# ---- policies ----------------------------------------------------------------------
class LayerOutputs(Policy):
    """Keeps every layer's output in training, or always if `always` (the
    teacher's), for layer distillation."""

    def __init__(self, always: bool = False):
        super().__init__()
        self.always = always

    def after_layer(self, layer: int, state: EncoderState):
        if self.training or self.always:
            state.scratch.setdefault("layer_outputs", []).append(state.hidden)
        return None


class CoFiPolicy(LayerOutputs):
    """Gates the model with the L0 masks: sampled in training, deterministic otherwise."""

    def __init__(self, masks: CoFiMasks):
        super().__init__()
        self.masks = masks
        self.last: Gates | None = None

    def on_forward(self, model) -> None:
        if self.training:
            self.masks.clamp_()
        self.last = self.masks.gates(sample=self.training)
        self.last.apply(model)

    def describe(self) -> dict:
        return {"kind": "cofi_l0_masks", "expected_sparsity": self.masks.expected_sparsity().item()}


class PrunedStructure(LayerOutputs):
    """The materialized model's policy: nothing runs per input; it says what was pruned."""

    def __init__(self, summary: dict):
        super().__init__()
        self.summary = dict(summary)

    def describe(self) -> dict:
        return {"kind": "cofi_materialized", **self.summary}


# ---- distillation ---------------------------------------------------------------------
def teacher_layers(num_layers: int) -> list[int]:
    """The teacher layers distilled: at depth L/4, L/2, 3L/4 and L (0-based;
    BERT-base's 2, 5, 8, 11 in the reference)."""
    return sorted({max(0, math.ceil(k * num_layers / 4) - 1) for k in range(1, 5)})


class Distiller(nn.Module):
    """CoFi's distillation loss against a frozen teacher."""

    def __init__(self, teacher, hidden: int, s: Settings, task):
        super().__init__()
        self.task = task
        self.teacher = [teacher.eval()]  # a list: not a submodule, not trained or saved
        self.map = nn.Linear(hidden, teacher.arch().hidden)
        with torch.no_grad():
            self.map.weight.copy_(torch.eye(self.map.out_features, hidden))
            self.map.bias.zero_()
        self.s = s
        self.layers = teacher_layers(len(teacher.layers))

    def keep_inputs(self, keep: torch.Tensor) -> None:
        """After the student's hidden dims are sliced: the map reads only those."""
        new = nn.Linear(len(keep), self.map.out_features).to(self.map.weight.device)
        with torch.no_grad():
            new.weight.copy_(self.map.weight[:, keep])
            new.bias.copy_(self.map.bias)
        self.map = new

    def loss(self, out, batch, alive: list[bool]) -> tuple[torch.Tensor, dict]:
        teacher = self.teacher[0]
        with torch.no_grad():
            t_out = teacher(*batch.inputs, trace=False)
        kl = distillation_loss(self.task, out.logits, t_out.logits, self.s.distill_temperature)
        real = batch.attention_mask.bool()
        s_layers = out.state.scratch.get("layer_outputs", [])
        t_layers = t_out.state.scratch["layer_outputs"]
        mse = torch.stack([torch.stack([((self.map(sh) - t_layers[t]) ** 2)[real].mean() for sh in s_layers])
                           for t in self.layers])  # [teacher layers, student layers]
        errors = mse.detach().tolist()
        layer_loss, below, matched = out.logits.new_zeros(()), len(s_layers), []
        for row in reversed(range(len(self.layers))):
            cands = [j for j in range(below) if alive[j]]
            if not cands:
                break
            j = min(cands, key=lambda c: errors[row][c])
            layer_loss, below = layer_loss + mse[row, j], j
            matched.append(j)
        total = self.s.logit_distill_weight * kl + self.s.layer_distill_weight * layer_loss
        if self.s.label_weight:
            total = total + self.s.label_weight * task_loss(self.task, out.logits, batch.labels)
        return total, {"kl": kl.item(), "layer": layer_loss.item(), "matched": matched[::-1]}


# ---- training --------------------------------------------------------------------------
def prune(ctx: JobContext, dense, target: float, s: Settings, lr: float, name: str):
    """The pruning stage from the dense model: returns the masked student, its masks and a log."""
    student = copy.deepcopy(dense)
    L, first = len(student.layers), student.layers[0]
    masks = CoFiMasks(L, first.num_heads, first.head_dim, first.ffn_dim, student.arch().hidden,
                      s.init_log_alpha).to(ctx.device)
    student.policy = CoFiPolicy(masks)
    teacher = copy.deepcopy(dense)
    teacher.policy = LayerOutputs(always=True)
    distiller = Distiller(teacher, student.arch().hidden, s, ctx.task).to(ctx.device)
    multipliers = nn.Parameter(torch.zeros(2, device=ctx.device))
    cfg = ctx.train_config(epochs=s.prune_epochs, lr=lr)
    total = total_steps(cfg, len(ctx.train_split))
    warm = max(1, int(round(s.warmup_fraction * total)))
    trail = {"step": 0, "sparsity": [], "target": []}

    def loss_fn(model, out, batch):
        step = trail["step"] = trail["step"] + 1
        t = target * min(1.0, step / warm)
        alive = [bool(g != 0) for g in model.policy.last.attention]
        value, _ = distiller.loss(out, batch, alive)
        gap = masks.expected_sparsity() - t
        lam = GradientAscent.apply(multipliers)
        if step % max(1, total // 20) == 0 or step == total:
            trail["sparsity"].append(round(gap.item() + t, 4))
            trail["target"].append(round(t, 4))
        return value + lam[0] * gap + lam[1] * gap * gap

    log = ctx.finetune(student, cfg=cfg, loss_fn=loss_fn, checkpoint="last",
                       parameters=list(student.parameters()) + list(distiller.map.parameters()),
                       extra_groups=[{"params": list(masks.parameters()), "lr": s.mask_lr},
                                     {"params": [multipliers], "lr": s.lagrangian_lr}],
                       desc=f"{ctx.task.name}/{ctx.method} prune {name}")
    masks.clamp_()
    return student, masks, distiller, {"steps": log["steps"], "warmup_steps": warm, "trail": trail,
                                       "multipliers": [float(x) for x in multipliers.detach()],
                                       "expected_sparsity": masks.expected_sparsity().item()}


def materialized(student, masks: CoFiMasks):
    """The student with its deterministic gates folded in and sliced away."""
    with torch.no_grad():
        gates = masks.gates(sample=False)
    model = materialize(student, gates)
    model.policy = LayerOutputs()
    return model, (gates.hidden != 0).nonzero(as_tuple=True)[0]


def finetune_pruned(ctx: JobContext, model, distiller: Distiller, s: Settings, lr: float, name: str) -> dict:
    alive = [layer.num_heads > 0 for layer in model.layers]
    log = ctx.finetune(model, cfg=ctx.train_config(epochs=s.finetune_epochs, lr=lr),
                       loss_fn=lambda m, out, batch: distiller.loss(out, batch, alive)[0],
                       parameters=list(model.parameters()) + list(distiller.map.parameters()),
                       checkpoint="best_or_start", desc=f"{ctx.task.name}/{ctx.method} finetune {name}")
    return {k: log[k] for k in ("steps", "start_validation", "best_validation", "kept")}


@register_method("cofi")
class CoFi(MethodPlugin):
    summary = "CoFi structured pruning: L0 masks over heads, sublayers, FFN dims and hidden dims, materialized"
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "starts from the harness's fine-tuned dense model, which is also the teacher; the reference's 100 steps "
        "of fine-tuning before pruning are not repeated",
        "log_alpha starts at init_log_alpha (default 10 as in the reference) clamped to ln 100 at once (the "
        "reference clamps after the first step); intermediate dims start at 0 as in the reference",
        "short stage budgets (prune_epochs, finetune_epochs) with a mask and multiplier learning rate of 0.1 "
        "instead of the reference's 20 + 20 epochs at 0.01, so the masks can travel their range in a few hundred "
        "steps; in so few steps the Lagrangian need not settle, so a point is named, selected and claimed by the "
        "sparsity its materialized model reached, its target beside it, and flagged off_target when more than "
        "sparsity_epsilon (0.01) from the target either side (the reference's sparsity_epsilon, default 0, only "
        "delays saving a best model until the expected sparsity is at least target - epsilon)",
        "the target ramps linearly from 0 over warmup_fraction of the pruning stage (default 0.5, from its first "
        "step); the reference ramps over lagrangian_warmup_epochs after its 100 pre-pruning steps: 2 of 20 pruning "
        "epochs on the large GLUE tasks, 20 of 100 on the small ones, so its masks spend 80-90% of the stage at "
        "the full target, these half",
        "label cross-entropy at label_weight is added to the distillation loss in the pruning stage and in the "
        "fine-tune of the materialized model (setting default 0, as the reference, which distils without "
        "labels; the default profile sets 1.0)",
        "expected size counts biases as well as weights (the reference counts weights only), the same count as the "
        "achieved sparsity of the materialized model",
        "layer distillation generalises the reference's BERT-base teacher layers (2, 5, 8, 11) to depth L/4, L/2, "
        "3L/4, L of any encoder; the error is averaged over real tokens only",
        "a sublayer whose gates are all zero is skipped with its LayerNorm in training as at inference; LayerNorms "
        "normalise over the kept hidden dims in both",
        "the materialized model is fine-tuned with the same distillation loss (no Lagrangian); the checkpoint kept "
        "is the best on the held-out validation split, its starting point included",
        "the pooler's output and the classifier keep their width (hidden-dim masks act on the residual stream; the "
        "pooler's input is sliced)",
    )

    def check(self, name: str, settings, settings_of) -> None:
        bad = [t for t in settings.sparsities if not 0.0 < float(t) < 1.0]
        if bad or not settings.sparsities:
            raise HarnessError(f"cofi sparsities must lie strictly between 0 and 1 (got {list(settings.sparsities)})",
                               "set methods_config.cofi.sparsities to targets such as [0.5, 0.9]")
        if not 0.0 <= settings.sparsity_epsilon < 1.0:
            raise HarnessError(f"cofi sparsity_epsilon must lie in [0, 1) (got {settings.sparsity_epsilon})",
                               "set methods_config.cofi.sparsity_epsilon to a tolerance such as 0.01")

    def train_points(self, settings, task) -> dict:
        return {f"sparsity={t:g}": float(t) for t in settings.sparsities}

    def train_point(self, ctx, name: str, target: float) -> tuple[list[dict], dict]:
        s = ctx.settings
        self.check(ctx.method, s, None)
        lr = float(s.lr if s.lr is not None else ctx.train_setting("lr"))
        dense = ctx.load_model(method="dense").to(ctx.device)
        t0 = time.time()
        student, masks, distiller, prune_log = prune(ctx, dense, target, s, lr, name)
        prune_log["masked_validation"] = ctx.validation_summary(student.eval())["score"]
        model, keep = materialized(student.eval(), masks)
        distiller.keep_inputs(keep)
        structure = structure_summary(model.arch(), dense.arch())
        summary = {"target_sparsity": target, "expected_sparsity": prune_log["expected_sparsity"],
                   "achieved_sparsity": structure["sparsity"], **structure}
        tuned = finetune_pruned(ctx, model, distiller, s, lr, name) if s.finetune_epochs > 0 else None
        model.policy = PrunedStructure(summary)
        clear_gates(model)
        ctx.save_model(model.eval(), f"{name}.pt")  # the file keeps the training point's (target's) name
        point, knobs = point_identity(target, structure["sparsity"], s.sparsity_epsilon)
        return ([{"name": point, "file": f"{name}.pt", **summary, **knobs, "sparsity_epsilon": s.sparsity_epsilon}],
                {**summary, **knobs, "prune": prune_log, "finetune": tuned, "seconds": round(time.time() - t0, 2)})

    def operating_points(self, ctx):
        """Named and knobbed by `point_identity` from the manifest's target and
        achieved sparsity (so a manifest written before points were named by
        their achieved sparsity reads the same way)."""
        for entry in ctx.points():
            name, knobs = point_identity(entry["target_sparsity"], entry["achieved_sparsity"],
                                         entry.get("sparsity_epsilon", ctx.settings.sparsity_epsilon))
            yield OperatingPoint(name, knobs, ctx.load_model(entry["file"]).eval(),
                                 notes={k: entry[k] for k in ("expected_sparsity", "achieved_sparsity")})

    def demo_model(self, model):
        # masks with a spread of log_alphas: some heads, dims, sublayers and hidden dims close
        first = model.layers[0]
        masks = CoFiMasks(len(model.layers), first.num_heads, first.head_dim, first.ffn_dim, model.arch().hidden)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in masks.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 3.0 + 1.0)
            masks.attention[-1] = LOG_ALPHA_RANGE[0]  # the last attention sublayer goes entirely
        dense = model.arch()
        model = copy.deepcopy(model)
        model.policy = CoFiPolicy(masks).eval()
        pruned, _ = materialized(model, masks)
        pruned.policy = PrunedStructure(structure_summary(pruned.arch(), dense))
        return pruned
