"""LAT, the Length-Adaptive Transformer (Kim & Cho, ACL 2021).

"Length-Adaptive Transformer: Train Once with Length Drop, Use Anytime with
Search" (Gyuwan Kim and Kyunghyun Cho, ACL 2021, arXiv:2010.07003).

What it does
------------
* Token selection after each layer's attention sublayer (before its FFN),
  PoWER-BERT's score: the attention a token receives, summed over heads and
  over the REAL query rows. [CLS] is always kept; the other kept tokens are the
  top-(k-1) by score (ties broken by position), kept in their original order.
* A *length configuration* (a "gene") says how many tokens each layer keeps.
  Here a gene is a non-increasing tuple of integers g_1..g_L on a grid of
  `resolution` R (default: the task's fixed `seq_len`), read as ratios g_l/R
  of each input's real length n. Rounding: layer l keeps
  k_l(n) = max(ceil(g_l * n / R), min(n, min_length)) tokens (exact integer
  arithmetic; min_length = 2, the original's floor), so it applies to any
  input length and the choice never depends on padding.
* Training (from the fine-tuned dense model): LengthDrop with the sandwich
  rule at every step - the full model on the task loss, the smallest
  sub-model (g_l = ceil((1-p) g_{l-1}), g_0 = R) and `num_sandwich` random
  sub-models (g_l ~ U[ceil((1-p) g_{l-1}), g_{l-1}], p = 0.2) distilled from
  the full model's (detached) outputs: KL for classification, MSE for
  regression. The losses are averaged (the original divides each by
  num_sandwich + 2). The checkpoint kept is the best full-model validation
  score (as the original's evaluation during training, which runs the full
  model).
* Evolutionary search over genes on the `validation` split only: the full
  and the smallest gene bound the search (genes cheaper than the smallest are
  rejected), `population_size` (20) initial constant-drop-ratio genes whose
  relative FLOPs are evenly spaced between the smallest gene's and 1, then per
  iteration `mutation_size` mutations (each layer re-drawn with probability
  `mutation_prob` = 0.5 between its neighbours, keeping the gene
  non-increasing) and `crossover_size` crossovers (element-wise ceil of the
  mean) whose parents are the current Pareto front (validation score vs
  FLOPs). FLOPs of a gene are computed analytically (`harness.flops`) from
  the validation lengths under the `none` protocol.
* One trained model serves every operating point: each point is the same
  weights with a different gene from the searched front.
* Drop-and-Restore (dropped tokens' last states written back at the output)
  is available through `model(..., restore=True)`; the harness's tasks are
  sequence classification, which reads [CLS] only, so it is not used.

Fidelity choices (also in `LAT.deviations`)
-------------------------------------------
* Length configurations are ratios of each input's real length (ceil), not
  absolute token counts at a fixed padded length; the score sums over real
  query rows only.
* Search (and the choice of operating points) uses the held-out validation
  split, not the dev/eval set; FLOPs are analytic over the validation lengths.
* Distillation is KL(full || sub-model) (teacher to student); the original
  code computes the reverse direction. Regression uses MSE (the original's KL
  on one logit is identically zero). LayerDrop (the original's optional
  layer_dropout) is not used.
* Mutations and crossovers draw parents from the Pareto front at the start of
  each iteration; the front is the set of non-dominated genes.
* `train_max_length` (robustness experiment) drops training examples longer
  than it from the LengthDrop stage only; the dense model it starts from is
  the shared one.

Configuration (`methods_config.lat`, defaults in `DEFAULTS`)
-----------------------------------------------------------
length_drop_ratio (p, 0.2), num_sandwich (2), epochs (1.0) and lr (profile) of
the LengthDrop stage, resolution (task seq_len), min_length (2),
population_size (20), evo_iterations (1), mutation_size (8), crossover_size
(8), mutation_prob (0.5), n_points (5), search_batch_size (profile eval batch
size), train_max_length (None). The defaults fit about 4 CPU minutes per task
on MiniLM-L6 with 2000 training and 500 validation examples; the paper's
search is population 20, 30 iterations of 30 + 30.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.run.inference import evaluate
from harness.measure.flops import head_macs, layer_macs
from harness.plugin.base import MethodPlugin, OperatingPoint
from harness.measure.metrics import primary
from harness.model.policy import EncoderState, Policy, attention_received, select_tokens
from harness.plugin.registry import register_method
from harness.run.finetune import task_loss

Gene = tuple[int, ...]

MIN_LENGTH = 2
DEFAULTS = {
    "length_drop_ratio": 0.2,  # p of LengthDrop
    "num_sandwich": 2,  # random sub-models per step (plus the smallest one)
    "epochs": 1.0,  # LengthDrop stage; None = the profile's train.epochs
    "lr": None,  # None = the profile's train.lr
    "resolution": None,  # gene grid R; None = the task's seq_len
    "min_length": MIN_LENGTH,
    "population_size": 20,
    "evo_iterations": 1,
    "mutation_size": 8,
    "crossover_size": 8,
    "mutation_prob": 0.5,
    "n_points": 5,
    "search_batch_size": None,  # None = the profile's eval.batch_size
    "train_max_length": None,
}


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
    """Per-example MACs of a gene under the `none` protocol (harness.flops formulas)."""
    n = np.asarray(lengths, dtype=np.int64)
    layers = arch.num_layers
    if gene is None:
        k = np.repeat(n[:, None], layers, 1)
    else:
        k = gene_counts(gene, resolution, n, min_length)
    n_attn = np.concatenate([n[:, None], k[:, :-1]], 1)
    total = np.zeros(len(n), dtype=np.float64)
    for layer in range(layers):
        total += layer_macs(n_attn[:, layer], k[:, layer], arch, layer)
        if gene is not None and gene[layer] < (resolution if layer == 0 else gene[layer - 1]):
            # scoring (attention received) where the layer drops: H n^2
            total += arch.heads[layer] * n_attn[:, layer].astype(np.float64) ** 2
    return total + head_macs(arch)


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
        # attention received from real query rows only (padded keys have probability 0)
        score = attention_received(state)
        score = score.masked_fill(~state.mask, float("-inf"))
        score[:, 0] = float("inf")  # [CLS]
        order = torch.argsort(score, dim=1, descending=True, stable=True)
        rank = torch.argsort(order, dim=1)
        select_tokens(state, rank < k.unsqueeze(1))

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
class _InputTap:
    """Remembers the positional inputs of the model's last forward call."""

    def __init__(self, model):
        self.args: tuple | None = None
        self.handle = model.register_forward_pre_hook(self._grab)

    def _grab(self, module, args):
        self.args = args

    def close(self):
        self.handle.remove()


def distill_loss(regression: bool, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    if regression:
        return F.mse_loss(student[:, 0], teacher[:, 0])
    return F.kl_div(F.log_softmax(student, -1), F.softmax(teacher, -1), reduction="batchmean")


def sandwich_loss_fn(task, tap: _InputTap, num_layers: int, resolution: int, ratio: float, num_sandwich: int, rng):
    """Full model on the task loss; smallest + random sub-models distilled from it."""
    smallest = constant_drop_gene(num_layers, resolution, ratio)

    def loss(model, out, labels):
        policy: LATPolicy = model.policy
        args = tap.args
        losses = [task_loss(task, out.logits, labels)]
        teacher = out.logits.detach()
        genes = [smallest] + [sample_gene(num_layers, resolution, ratio, rng) for _ in range(num_sandwich)]
        saved = policy.gene
        try:
            for gene in genes:
                policy.set_gene(gene)
                sub = model(*args)
                losses.append(distill_loss(task.is_regression, sub.logits, teacher))
        finally:
            policy.set_gene(saved)
        return torch.stack(losses).sum() / len(losses)

    return loss


# ---- search --------------------------------------------------------------------
def pareto_front(points: dict[Gene, dict]) -> list[Gene]:
    """Non-dominated genes (lower MACs, higher score), sorted by MACs."""
    order = sorted(points, key=lambda g: (points[g]["macs"], -points[g]["score"], g))
    front, best = [], -math.inf
    for g in order:
        if points[g]["score"] > best:
            front.append(g)
            best = points[g]["score"]
    return front


class EvolutionarySearch:
    """LAT's evolutionary search over length configurations (genes)."""

    def __init__(
        self,
        score_fn: Callable[[Gene], float],
        macs_fn: Callable[[Gene], float],
        num_layers: int,
        resolution: int,
        ratio: float,
        seed: int,
        population_size: int = 20,
        mutation_size: int = 30,
        crossover_size: int = 30,
        mutation_prob: float = 0.5,
        known_scores: dict[Gene, float] | None = None,
    ):
        self.score_fn, self.macs_fn = score_fn, macs_fn
        self.known_scores = dict(known_scores or {})  # validation scores already measured
        self.num_layers, self.resolution, self.ratio = num_layers, resolution, ratio
        self.population_size = population_size
        self.mutation_size, self.crossover_size, self.mutation_prob = mutation_size, crossover_size, mutation_prob
        self.rng = random.Random(seed)
        self.store: dict[Gene, dict] = {}  # every gene evaluated (within the bounds)
        self.rejected: set[Gene] = set()
        self.lower = self.upper = None
        self.history: list[dict] = []

    def add(self, gene: Gene, how: str, parents=None) -> bool:
        """Evaluate a new gene; True if it is new and within the FLOPs bounds."""
        if gene in self.store or gene in self.rejected:
            return False
        macs = float(self.macs_fn(gene))
        if (self.lower is not None and macs < self.lower) or (self.upper is not None and macs > self.upper):
            self.rejected.add(gene)
            return False
        self.store[gene] = {
            "macs": macs,
            "score": float(self.known_scores[gene] if gene in self.known_scores else self.score_fn(gene)),
            "how": how,
            "parents": None if parents is None else [list(p) for p in parents],
        }
        return True

    def initial_genes(self) -> list[Gene]:
        """Constant-drop-ratio genes with relative FLOPs evenly spaced in (smallest, 1)."""
        lo_rel = self.lower / self.upper
        targets = np.linspace(lo_rel, 1.0, self.population_size + 2)[1:-1]
        genes = []
        for t in targets:
            a, b = 0.0, self.ratio  # rel(a) = 1 >= t >= rel(b)
            for _ in range(40):
                c = (a + b) / 2
                rel = self.macs_fn(constant_drop_gene(self.num_layers, self.resolution, c)) / self.upper
                a, b = (c, b) if rel >= t else (a, c)
            genes.append(constant_drop_gene(self.num_layers, self.resolution, a))
        return list(dict.fromkeys(genes))

    def mutate(self, gene: Gene) -> Gene:
        out: list[int] = []
        for i in range(self.num_layers):
            if self.rng.random() < self.mutation_prob:
                prev = self.resolution if i == 0 else out[i - 1]
                nxt = 1 if i == self.num_layers - 1 else min(gene[i + 1], prev)
                out.append(self.rng.randint(nxt, prev))
            else:
                out.append(min(gene[i], self.resolution if i == 0 else out[i - 1]))
        return tuple(out)

    @staticmethod
    def crossover(g0: Gene, g1: Gene) -> Gene:
        return tuple((a + b + 1) // 2 for a, b in zip(g0, g1))

    def _breed(self, n: int, make) -> int:
        added, attempts = 0, 0
        while added < n and attempts < 50 * max(1, n):
            attempts += 1
            made = make()
            if made is not None and self.add(*made):
                added += 1
        return added

    def run(self, iterations: int) -> list[Gene]:
        top = full_gene(self.num_layers, self.resolution)
        bottom = constant_drop_gene(self.num_layers, self.resolution, self.ratio)
        self.add(top, "full")
        self.upper = self.store[top]["macs"]
        self.add(bottom, "smallest")
        self.lower = self.store[bottom]["macs"]
        for gene in self.initial_genes():
            self.add(gene, "initial")
        for it in range(iterations + 1):
            front = pareto_front(self.store)
            self.history.append({"iteration": it, "evaluated": len(self.store), "front": [list(g) for g in front]})
            if it == iterations:
                break
            parents = list(front)
            self._breed(self.mutation_size, lambda: self._mutation(parents))
            if len(parents) >= 2:
                self._breed(self.crossover_size, lambda: self._crossover(parents))
        return pareto_front(self.store)

    def _mutation(self, parents):
        p = self.rng.choice(parents)
        return self.mutate(p), "mutation", (p,)

    def _crossover(self, parents):
        a, b = self.rng.sample(parents, 2)
        return self.crossover(a, b), "crossover", (a, b)


def choose_points(store: dict[Gene, dict], front: list[Gene], dense_macs: float, n_points: int) -> list[Gene]:
    """n_points genes spread over relative FLOPs: from the front, topped up off-front if it is short."""
    rel = {g: store[g]["macs"] / dense_macs for g in store}
    chosen: list[Gene] = []
    if len(front) >= n_points:
        lo, hi = min(rel[g] for g in front), max(rel[g] for g in front)
        for t in np.linspace(lo, hi, n_points):
            left = [g for g in front if g not in chosen]
            chosen.append(min(left, key=lambda g: (abs(rel[g] - t), -store[g]["score"])))
    else:
        chosen = list(front)
        others = [g for g in store if g not in chosen]
        while len(chosen) < n_points and others:
            pick = max(others, key=lambda g: (min(abs(rel[g] - rel[c]) for c in chosen), store[g]["score"]))
            chosen.append(pick)
            others.remove(pick)
    return sorted(chosen, key=lambda g: store[g]["macs"])


# ---- the plugin ----------------------------------------------------------------
@register_method("lat")
class LAT(MethodPlugin):
    summary = (
        "Length-Adaptive Transformer: LengthDrop + sandwich distillation, then an evolutionary "
        "search of per-layer keep ratios (attention-received top-k) on validation"
    )
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
        "direction) and MSE for regression; LayerDrop is not used.",
        "Parents of each iteration are the non-dominated genes at its start.",
        "Drop-and-Restore is not used: the tasks are sequence classification from [CLS].",
    )

    # -- helpers
    @staticmethod
    def _cfg(ctx) -> dict:
        return ctx.method_settings(DEFAULTS)

    @staticmethod
    def _resolution(ctx, cfg) -> int:
        return int(cfg["resolution"] or ctx.task.seq_len)

    def _train_split(self, ctx, cfg, log):
        enc = ctx.encoded("train")
        tml = cfg.get("train_max_length")
        log["train_max_length"] = tml
        if tml is None:
            log["n_train_used"] = len(enc)
            return enc
        keep = np.nonzero(enc.lengths <= int(tml))[0]
        if len(keep) == 0:
            raise HarnessError(
                f"lat: no training example of {ctx.task.name} is at most train_max_length={tml} tokens",
                "raise methods_config.lat.train_max_length",
            )
        log["n_train_used"] = int(len(keep))
        log["n_train_dropped_too_long"] = int(len(enc) - len(keep))
        return enc.subset(keep)

    # -- stages
    def train(self, ctx) -> dict:
        cfg = self._cfg(ctx)
        log: dict = {"config": {k: cfg[k] for k in DEFAULTS}, "seconds": {}}
        resolution = self._resolution(ctx, cfg)
        min_length = int(cfg["min_length"])
        ratio = float(cfg["length_drop_ratio"])
        log["resolution"] = resolution

        model = ctx.load_model(method="dense")
        model.policy = LATPolicy(None, resolution, min_length)
        layers = len(model.layers)
        val = ctx.encoded("validation")
        batch_size = int(cfg["search_batch_size"] or ctx.cfg.get("eval", {}).get("batch_size", 64))

        def score(gene):
            model.policy.set_gene(gene)
            try:
                run = evaluate(model, ctx.task, val, "none", batch_size, ctx.device)
            finally:
                model.policy.set_gene(None)
            return primary(ctx.task, run.metrics)

        log["dense_model_validation"] = score(None)  # the fine-tuned dense model it starts from

        # stage 1: LengthDrop + sandwich rule
        start = time.time()
        train = self._train_split(ctx, cfg, log)
        overrides = {k: cfg[k] for k in ("epochs", "lr") if cfg[k] is not None}
        rng = np.random.default_rng(ctx.seed)
        tap = _InputTap(model)
        try:
            loss_fn = sandwich_loss_fn(ctx.task, tap, layers, resolution, ratio, int(cfg["num_sandwich"]), rng)
            log["length_drop"] = ctx.finetune(
                model,
                cfg=ctx.train_config(**overrides),
                train=train,
                loss_fn=loss_fn,
                desc=f"{ctx.task.name}/lat lengthdrop",
            )
        finally:
            tap.close()
        model.policy.set_gene(None)
        model.eval()
        ctx.save_model(model)
        log["seconds"]["length_drop"] = time.time() - start

        # stage 2: evolutionary search on validation
        start = time.time()
        lengths = val.lengths
        arch = model.arch()
        dense = float(gene_macs(None, resolution, lengths, arch, min_length).mean())
        search = EvolutionarySearch(
            score,
            lambda g: gene_macs(g, resolution, lengths, arch, min_length).mean(),
            layers,
            resolution,
            ratio,
            ctx.seed,
            population_size=int(cfg["population_size"]),
            mutation_size=int(cfg["mutation_size"]),
            crossover_size=int(cfg["crossover_size"]),
            mutation_prob=float(cfg["mutation_prob"]),
            # the full model's validation score was measured when its checkpoint was chosen
            known_scores={full_gene(layers, resolution): log["length_drop"]["best_validation"]}
            if math.isfinite(log["length_drop"].get("best_validation", -math.inf))
            else None,
        )
        front = search.run(int(cfg["evo_iterations"]))
        chosen = choose_points(search.store, front, dense, max(4, int(cfg["n_points"])))
        log["seconds"]["search"] = time.time() - start

        def row(g):
            s = search.store[g]
            return {
                "gene": list(g),
                "length_ratios": [round(x / resolution, 4) for x in g],
                "macs": s["macs"],
                "flops": 2 * s["macs"],
                "relative_flops": s["macs"] / dense,
                "validation_score": s["score"],
                "how": s["how"],
                "on_front": g in front,
            }

        result = {
            "resolution": resolution,
            "min_length": min_length,
            "dense_macs_validation": dense,
            "train_max_length": log["train_max_length"],
            "front": [row(g) for g in front],
            "chosen": [row(g) for g in chosen],
            "evaluated": [row(g) for g in sorted(search.store, key=lambda g: search.store[g]["macs"])],
            "history": [{"iteration": h["iteration"], "evaluated": h["evaluated"], "front_size": len(h["front"])}
                        for h in search.history],
        }
        path = ctx.model_dir() / "search.json"
        path.write_text(json.dumps(result, indent=1))
        log["search"] = {k: result[k] for k in ("front", "chosen", "history", "dense_macs_validation")}
        log["search"]["n_evaluated"] = len(search.store)
        return log

    def operating_points(self, ctx):
        path = ctx.model_dir() / "search.json"
        if not path.is_file():
            raise HarnessError(f"{path} not found", f"run the train step for {ctx.task.name}/lat first")
        result = json.loads(path.read_text())
        front = [
            {k: r[k] for k in ("gene", "length_ratios", "flops", "relative_flops", "validation_score")}
            for r in result["front"]
        ]
        names: set[str] = set()
        for r in result["chosen"]:
            model = ctx.load_model()
            if not isinstance(model.policy, LATPolicy):
                model.policy = LATPolicy(None, result["resolution"], result["min_length"])
            model.policy.set_gene(r["gene"])
            model.eval()
            name = f"rel_flops={r['relative_flops']:.3f}"
            while name in names:
                name += "b"
            names.add(name)
            yield OperatingPoint(
                name,
                {"gene": r["gene"], "length_ratios": r["length_ratios"], "resolution": result["resolution"]},
                model,
                notes={
                    "validation_relative_flops": r["relative_flops"],
                    "validation_score_in_search": r["validation_score"],
                    "on_pareto_front": r["on_front"],
                    "searched_front": front,
                    "selection": "points spread over relative FLOPs of the validation-searched Pareto front",
                    "train_max_length": result.get("train_max_length"),
                },
            )

    def demo_model(self, model):
        layers = len(model.layers)
        model.policy = LATPolicy(constant_drop_gene(layers, 64, 0.3), resolution=64)
        return model
