"""LAT, the Length-Adaptive Transformer (Kim & Cho, ACL 2021).

"Length-Adaptive Transformer: Train Once with Length Drop, Use Anytime with
Search" (Gyuwan Kim and Kyunghyun Cho, ACL 2021, arXiv:2010.07003).

* Token selection after each layer's attention sublayer: the attention a
  token receives (`harness.model.selection`), [CLS] kept, the top-(k-1)
  others kept in their original order.
* A length configuration (a "gene") g_1..g_L is non-increasing on a grid of
  `resolution` R (default: the task's `seq_len`) and read as ratios of each
  input's real length n: layer l keeps k_l(n) = max(ceil(g_l n / R),
  min(n, min_length)) tokens (exact integer arithmetic).
* Training from the fine-tuned dense model: LengthDrop with the sandwich rule
  at every step - the full model on the task loss, the smallest sub-model
  (g_l = ceil((1-p) g_{l-1}), g_0 = R) and `num_sandwich` random sub-models
  (g_l ~ U[ceil((1-p) g_{l-1}), g_{l-1}]) distilled from the full model's
  detached outputs; the losses are averaged. Best full-model validation
  checkpoint.
* Evolutionary search over genes on the `validation` split
  (`harness.plugin.search`): the full and the smallest gene bound the cost;
  `population_size` constant-drop genes with relative FLOPs evenly spaced
  between them start it. One trained model serves every operating point: the
  same weights with genes spread over the searched front.

How this departs from the original: `LAT.deviations`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.plugin import (EncoderState, MethodPlugin, MethodSettings, OperatingPoint, ParetoSearch, Policy,
                            attention_received, count_macs, dense_macs, distillation_loss, evaluate, primary,
                            register_method, scoring_macs, select_tokens, spread_points, task_loss, topk_keep)

Gene = tuple[int, ...]
MIN_LENGTH = 2


@dataclass(frozen=True)
class Settings(MethodSettings):
    length_drop_ratio: float = 0.2  # p of LengthDrop
    num_sandwich: int = 2  # random sub-models per step (plus the smallest one)
    epochs: float | None = 1.0  # LengthDrop stage; None = the profile's train.epochs
    lr: float | None = None  # None = the profile's train.lr
    resolution: int | None = None  # gene grid R; None = the task's seq_len
    min_length: int = MIN_LENGTH
    population_size: int = 20
    evo_iterations: int = 1
    mutation_size: int = 8
    crossover_size: int = 8
    mutation_prob: float = 0.5
    n_points: int = 5  # operating points spread over the searched front

    def __post_init__(self):
        if self.n_points < 1 or self.population_size < 1:
            raise ValueError("n_points and population_size must be at least 1")
        if not 0.0 < self.length_drop_ratio < 1.0:
            raise ValueError(f"length_drop_ratio must be in (0, 1), got {self.length_drop_ratio}")


# ---- genes -------------------------------------------------------------------
def check_gene(gene: Sequence[int], resolution: int) -> Gene:
    gene = tuple(int(g) for g in gene)
    if not gene:
        raise ValueError("empty length configuration")
    prev = resolution
    for g in gene:
        if not 1 <= g <= prev:
            raise ValueError(f"length configuration {gene} must be non-increasing within [1, {resolution}]")
        prev = g
    return gene


def full_gene(num_layers: int, resolution: int) -> Gene:
    return (resolution,) * num_layers


def constant_drop_gene(num_layers: int, resolution: int, ratio: float) -> Gene:
    """g_l = ceil((1 - ratio) * g_{l-1}), g_0 = R: the original's deterministic drop."""
    out, g = [], resolution
    for _ in range(num_layers):
        g = max(1, int(math.ceil(round(g * (1.0 - ratio), 9))))
        out.append(g)
    return tuple(out)


def sample_gene(num_layers: int, resolution: int, ratio: float, rng: np.random.Generator) -> Gene:
    """LengthDrop: g_l ~ U[ceil((1 - ratio) * g_{l-1}), g_{l-1}], g_0 = R."""
    out, g = [], resolution
    for _ in range(num_layers):
        low = max(1, int(math.ceil(round(g * (1.0 - ratio), 9))))
        g = int(rng.integers(low, g + 1))
        out.append(g)
    return tuple(out)


def gene_counts(gene: Gene, resolution: int, lengths, min_length: int = MIN_LENGTH) -> np.ndarray:
    """Tokens kept after each layer's attention, [N, L], for inputs of real `lengths`."""
    n = np.asarray(lengths, dtype=np.int64)[:, None]
    g = np.asarray(gene, dtype=np.int64)[None, :]
    k = (g * n + resolution - 1) // resolution
    return np.minimum(np.maximum(k, np.minimum(n, min_length)), n)


def gene_macs(gene: Gene | None, resolution: int, lengths, arch, min_length: int = MIN_LENGTH) -> np.ndarray:
    """Per-example MACs of a gene under the `none` protocol (the counts LATPolicy
    keeps, through `harness.measure.flops`)."""
    n = np.asarray(lengths, dtype=np.int64)
    if gene is None:
        return dense_macs(n, arch)
    k = gene_counts(gene, resolution, n, min_length)
    n_attn = np.concatenate([n[:, None], k[:, :-1]], 1)
    scoring = np.zeros(len(n), dtype=np.float64)
    for layer in range(arch.num_layers):
        if gene[layer] < (resolution if layer == 0 else gene[layer - 1]):  # this layer scores and drops
            scoring += scoring_macs(arch.heads[layer], n_attn[:, layer].astype(np.float64))
    return count_macs(n_attn, k, arch, True, scoring, head_tokens=n)  # a span head reads every position


def mutate_gene(gene: Gene, rng, resolution: int, prob: float) -> Gene:
    """Each layer re-drawn with probability `prob` between its neighbours (non-increasing)."""
    layers = len(gene)
    out: list[int] = []
    for i in range(layers):
        if rng.random() < prob:
            prev = resolution if i == 0 else out[i - 1]
            nxt = 1 if i == layers - 1 else min(gene[i + 1], prev)
            out.append(rng.randint(nxt, prev))
        else:
            out.append(min(gene[i], resolution if i == 0 else out[i - 1]))
    return tuple(out)


def crossover_genes(g0: Gene, g1: Gene) -> Gene:
    """Element-wise ceil of the mean (stays non-increasing)."""
    return tuple((a + b + 1) // 2 for a, b in zip(g0, g1))


def initial_genes(cost, num_layers: int, resolution: int, ratio: float, lower: float, upper: float,
                  population: int) -> list[Gene]:
    """Constant-drop-ratio genes whose relative cost is evenly spaced in (lower/upper, 1)."""
    targets = np.linspace(lower / upper, 1.0, population + 2)[1:-1]
    genes = []
    for t in targets:
        a, b = 0.0, ratio  # rel(a) = 1 >= t >= rel(b)
        for _ in range(40):
            c = (a + b) / 2
            rel = cost(constant_drop_gene(num_layers, resolution, c)) / upper
            a, b = (c, b) if rel >= t else (a, c)
        genes.append(constant_drop_gene(num_layers, resolution, a))
    return list(dict.fromkeys(genes))


def search_genes(score, cost, num_layers: int, resolution: int, s: Settings, seed: int,
                 known_scores: dict | None = None) -> tuple[ParetoSearch, list[Gene]]:
    """LAT's evolutionary search: the full and the smallest gene bound the cost,
    constant-drop genes start it, then `evo_iterations` rounds of breeding."""
    search = ParetoSearch(score, cost, seed, known_scores)
    top = full_gene(num_layers, resolution)
    bottom = constant_drop_gene(num_layers, resolution, s.length_drop_ratio)
    search.add(top, "full")
    search.upper = search.store[top]["cost"]
    search.add(bottom, "smallest")
    search.lower = search.store[bottom]["cost"]
    for gene in initial_genes(cost, num_layers, resolution, s.length_drop_ratio, search.lower, search.upper,
                              s.population_size):
        search.add(gene, "initial")
    front = search.evolve(s.evo_iterations, s.mutation_size, s.crossover_size,
                          lambda g, rng: mutate_gene(g, rng, resolution, s.mutation_prob), crossover_genes)
    return search, front


# ---- the policy ----------------------------------------------------------------
class LATPolicy(Policy):
    """Top-k by attention received after each attention sublayer, per a gene."""

    def __init__(self, gene: Sequence[int] | None = None, resolution: int = 64, min_length: int = MIN_LENGTH):
        super().__init__()
        self.resolution = int(resolution)
        self.min_length = int(min_length)
        self.gene: Gene | None = None
        self.set_gene(gene)

    def set_gene(self, gene: Sequence[int] | None) -> None:
        self.gene = None if gene is None else check_gene(gene, self.resolution)

    def drops_at(self, layer: int) -> bool:
        if self.gene is None or layer >= len(self.gene):
            return False
        prev = self.resolution if layer == 0 else self.gene[layer - 1]
        return self.gene[layer] < prev

    def needs_attention_probs(self, layer: int) -> bool:
        return self.drops_at(layer)

    def before_layer(self, layer: int, state: EncoderState) -> None:
        if layer != 0 or self.gene is None:
            return
        if len(self.gene) != state.num_layers:
            raise ValueError(f"length configuration has {len(self.gene)} layers, the model {state.num_layers}")
        # per-row kept counts for every layer, from the input's real length
        n = state.lengths.to(torch.long).unsqueeze(1)
        g = torch.tensor(self.gene, dtype=torch.long, device=n.device).unsqueeze(0)
        k = torch.div(g * n + self.resolution - 1, self.resolution, rounding_mode="floor")
        k = torch.minimum(torch.maximum(k, n.clamp(max=self.min_length)), n)
        state.scratch["lat_counts"] = k  # [B, L], rows in the original batch order

    def after_attention(self, layer: int, state: EncoderState) -> None:
        if not self.drops_at(layer):
            return
        k = state.scratch["lat_counts"][state.rows, layer]
        select_tokens(state, topk_keep(attention_received(state), state.mask, k))

    def describe(self) -> dict:
        return {
            "method": "lat",
            "gene": None if self.gene is None else list(self.gene),
            "resolution": self.resolution,
            "length_ratios": None if self.gene is None else [g / self.resolution for g in self.gene],
            "rounding": "k_l = max(ceil(g_l * n / R), min(n, min_length))",
            "min_length": self.min_length,
            "score": "attention received, summed over heads and real query rows; [CLS] kept; top-k",
            "where": "after each layer's attention sublayer",
        }


# ---- training ------------------------------------------------------------------
def sandwich_loss_fn(task, num_layers: int, resolution: int, ratio: float, num_sandwich: int, rng):
    """Full model on the task loss; smallest + random sub-models distilled from it."""
    smallest = constant_drop_gene(num_layers, resolution, ratio)

    def loss(model, out, batch):
        policy: LATPolicy = model.policy
        losses = [task_loss(task, out.logits, batch.labels)]
        teacher = out.logits.detach()
        genes = [smallest] + [sample_gene(num_layers, resolution, ratio, rng) for _ in range(num_sandwich)]
        saved = policy.gene
        try:
            for gene in genes:
                policy.set_gene(gene)
                losses.append(distillation_loss(task, model(*batch.inputs).logits, teacher))
        finally:
            policy.set_gene(saved)
        return torch.stack(losses).sum() / len(losses)

    return loss


# ---- the plugin ----------------------------------------------------------------
@register_method("lat")
class LAT(MethodPlugin):
    summary = (
        "Length-Adaptive Transformer: LengthDrop + sandwich distillation, then an evolutionary "
        "search of per-layer keep ratios (attention-received top-k) on validation"
    )
    Settings = Settings
    requires = ("dense",)
    deviations = (
        "Length configurations are per-layer ratios g_l/R of each input's real length, rounded up "
        "(k_l = max(ceil(g_l*n/R), min(n, 2))), instead of absolute token counts at a fixed padded length.",
        "Token score = attention received summed over heads and over real query rows only (the original "
        "also sums padded query rows).",
        "The evolutionary search and the choice of operating points run on the held-out validation split "
        "(the original ran the search and checkpoint choice on the dev set); FLOPs of a gene are analytic "
        "over the validation lengths under the 'none' protocol.",
        "Search sizes are reduced for the CPU budget (population, iterations, mutations and crossovers are "
        "configurable; the paper uses 20 initial genes, 30 iterations of 30 mutations + 30 crossovers).",
        "Sandwich distillation uses KL(full || sub-model) (the original code computes the reverse "
        "direction) and MSE for regression (the original's KL on one logit is zero); LayerDrop is not used.",
        "Parents of each iteration are the non-dominated genes at its start.",
        "Drop-and-Restore serves span tasks only (SQuAD: the span head reads every position; a dropped token gets "
        "back the output of the last layer that computed it whole); [CLS] classification does not need it",
        "train_max_length (robustness variants) filters the LengthDrop stage only; the dense model it starts "
        "from is the shared one.",
    )

    def train(self, ctx) -> dict:
        s = ctx.settings
        resolution = int(s.resolution or ctx.task.seq_len)
        log: dict = {"settings": ctx.settings_log, "resolution": resolution, "seconds": {}, **ctx.train_split_info}

        model = ctx.load_model(method="dense")
        model.policy = LATPolicy(None, resolution, s.min_length)
        layers = len(model.layers)
        val = ctx.encoded("validation")

        def score(gene):
            model.policy.set_gene(gene)
            try:
                run = evaluate(model, ctx.task, val, "none", ctx.validation_batch_size, ctx.device)
            finally:
                model.policy.set_gene(None)
            return primary(ctx.task, run.metrics)

        log["dense_model_validation"] = score(None)  # the fine-tuned dense model it starts from

        # stage 1: LengthDrop + sandwich rule
        start = time.time()
        overrides = {k: getattr(s, k) for k in ("epochs", "lr") if getattr(s, k) is not None}
        rng = np.random.default_rng(ctx.seed)
        log["length_drop"] = ctx.finetune(
            model,
            cfg=ctx.train_config(**overrides),
            loss_fn=sandwich_loss_fn(ctx.task, layers, resolution, s.length_drop_ratio, s.num_sandwich, rng),
            desc=f"{ctx.task.name}/lat lengthdrop",
        )
        model.policy.set_gene(None)
        ctx.save_model(model.eval())
        log["seconds"]["length_drop"] = time.time() - start

        # stage 2: evolutionary search on validation
        start = time.time()
        arch = model.arch()
        cost = lambda g: gene_macs(g, resolution, val.lengths, arch, s.min_length).mean()  # noqa: E731
        dense = float(gene_macs(None, resolution, val.lengths, arch, s.min_length).mean())
        best = log["length_drop"]["best_validation"]
        # the full model's validation score was measured when its checkpoint was chosen
        known = {full_gene(layers, resolution): best} if math.isfinite(best) else None
        search, front = search_genes(score, cost, layers, resolution, s, ctx.seed, known)
        chosen = spread_points(search.store, front, dense, s.n_points)
        log["seconds"]["search"] = time.time() - start

        def row(g):
            e = search.store[g]
            return {
                "gene": list(g),
                "length_ratios": [round(x / resolution, 4) for x in g],
                "macs": e["cost"],
                "flops": 2 * e["cost"],
                "relative_flops": e["cost"] / dense,
                "validation_score": e["score"],
                "how": e["how"],
                "on_front": g in front,
            }

        result = {
            "resolution": resolution,
            "min_length": s.min_length,
            "dense_macs_validation": dense,
            "front": [row(g) for g in front],
            "chosen": [row(g) for g in chosen],
            "evaluated": [row(g) for g in sorted(search.store, key=lambda g: search.store[g]["cost"])],
            "history": search.history,
        }
        ctx.write_json("search.json", result)
        log["search"] = {k: result[k] for k in ("front", "chosen", "history", "dense_macs_validation")}
        log["search"]["n_evaluated"] = len(search.store)
        return log

    def operating_points(self, ctx):
        result = ctx.read_json("search.json")
        front = [
            {k: r[k] for k in ("gene", "length_ratios", "flops", "relative_flops", "validation_score")}
            for r in result["front"]
        ]
        names: set[str] = set()
        for r in result["chosen"]:
            model = ctx.load_model()
            model.policy.set_gene(r["gene"])
            name = f"rel_flops={r['relative_flops']:.3f}"
            while name in names:
                name += "b"
            names.add(name)
            yield OperatingPoint(
                name,
                {"gene": r["gene"], "length_ratios": r["length_ratios"], "resolution": result["resolution"]},
                model.eval(),
                notes={
                    "validation_relative_flops": r["relative_flops"],
                    "validation_score_in_search": r["validation_score"],
                    "on_pareto_front": r["on_front"],
                    "searched_front": front,
                    "selection": "points spread over relative FLOPs of the validation-searched Pareto front",
                    "train_max_length": ctx.settings.train_max_length,
                },
            )

    def demo_model(self, model):
        layers = len(model.layers)
        model.policy = LATPolicy(constant_drop_gene(layers, 64, 0.3), resolution=64)
        return model
