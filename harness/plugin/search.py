"""A search over operating points: LAT's evolutionary search, for any method.

A candidate is any hashable configuration (LAT: a per-layer length gene).
The search keeps every candidate it evaluated with its cost (e.g. MACs on the
validation split, from `harness.measure.flops`) and its validation score,
rejects candidates outside the cost bounds, and breeds new ones from the
current Pareto front (lower cost, higher score): `mutation_size` mutations and
`crossover_size` crossovers per iteration, parents drawn at the start of each
iteration. The method supplies the mutation and crossover operators; the
search supplies the bookkeeping, the random stream (`random.Random(seed)`),
the front and the choice of points spread over relative cost.

Non-dominated means `harness.pareto.pareto_front`, the definition the
trade-off figures use too.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Hashable

import numpy as np

from harness.pareto import pareto_front


class ParetoSearch:
    """Evaluated candidates, cost bounds and evolution from the Pareto front."""

    def __init__(
        self,
        score_fn: Callable[[Hashable], float],
        cost_fn: Callable[[Hashable], float],
        seed: int,
        known_scores: dict | None = None,
    ):
        self.score_fn, self.cost_fn = score_fn, cost_fn
        self.known_scores = dict(known_scores or {})  # validation scores measured elsewhere
        self.rng = random.Random(seed)
        self.store: dict[Hashable, dict] = {}  # every candidate evaluated within the bounds
        self.rejected: set = set()
        self.lower: float | None = None
        self.upper: float | None = None
        self.history: list[dict] = []

    def add(self, candidate, how: str, parents=None) -> bool:
        """Evaluate a new candidate; True if it is new and within the cost bounds."""
        if candidate in self.store or candidate in self.rejected:
            return False
        cost = float(self.cost_fn(candidate))
        if (self.lower is not None and cost < self.lower) or (self.upper is not None and cost > self.upper):
            self.rejected.add(candidate)
            return False
        score = self.known_scores[candidate] if candidate in self.known_scores else self.score_fn(candidate)
        self.store[candidate] = {
            "cost": cost,
            "score": float(score),
            "how": how,
            "parents": None if parents is None else [list(p) for p in parents],
        }
        return True

    def front(self) -> list:
        """The non-dominated candidates, in increasing cost (ties by candidate)."""
        cands = list(self.store)
        idx = pareto_front([self.store[c]["cost"] for c in cands], [self.store[c]["score"] for c in cands], cands)
        return [cands[i] for i in idx]

    def _breed(self, n: int, make) -> int:
        added, attempts = 0, 0
        while added < n and attempts < 50 * max(1, n):
            attempts += 1
            made = make()
            if made is not None and self.add(*made):
                added += 1
        return added

    def evolve(
        self,
        iterations: int,
        mutation_size: int,
        crossover_size: int,
        mutate: Callable[[Hashable, random.Random], Hashable],
        crossover: Callable[[Hashable, Hashable], Hashable],
    ) -> list:
        """`iterations` rounds of breeding from the front; returns the final front."""
        for it in range(iterations + 1):
            front = self.front()
            self.history.append({"iteration": it, "evaluated": len(self.store), "front_size": len(front)})
            if it == iterations:
                return front
            parents = list(front)

            def mutation():
                p = self.rng.choice(parents)
                return mutate(p, self.rng), "mutation", (p,)

            def cross():
                a, b = self.rng.sample(parents, 2)
                return crossover(a, b), "crossover", (a, b)

            self._breed(mutation_size, mutation)
            if len(parents) >= 2:
                self._breed(crossover_size, cross)
        return self.front()


def spread_points(store: dict, front: list, reference_cost: float, n_points: int) -> list:
    """`n_points` candidates spread evenly over relative cost (cost /
    `reference_cost`): from the front, topped up with the off-front candidates
    farthest from those chosen when the front is short. In increasing cost."""
    rel = {c: store[c]["cost"] / reference_cost for c in store}
    chosen: list = []
    if len(front) >= n_points:
        lo, hi = min(rel[c] for c in front), max(rel[c] for c in front)
        for t in np.linspace(lo, hi, n_points):
            left = [c for c in front if c not in chosen]
            chosen.append(min(left, key=lambda c: (abs(rel[c] - t), -store[c]["score"])))
    else:
        chosen = list(front)
        others = [c for c in store if c not in chosen]
        while len(chosen) < n_points and others:
            pick = max(others, key=lambda c: (min(abs(rel[c] - rel[k]) for k in chosen), store[c]["score"]))
            chosen.append(pick)
            others.remove(pick)
    return sorted(chosen, key=lambda c: store[c]["cost"])
