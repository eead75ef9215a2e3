"""The one definition of a Pareto front in the harness (lower cost, higher value).

Used by the operating-point search (`harness.plugin.search`) and by the
trade-off figures, which join each method's non-dominated points.
"""
from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(costs: Sequence[float], values: Sequence[float], tiebreak: Sequence | None = None) -> list[int]:
    """Indices of the points no other point beats (lower or equal cost and
    strictly higher value), in increasing cost. Equal costs and values are
    ordered by `tiebreak` (default: position)."""
    tie = list(range(len(costs))) if tiebreak is None else list(tiebreak)
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -values[i], tie[i]))
    keep, best = [], -math.inf
    for i in order:
        if values[i] > best:
            keep.append(i)
            best = values[i]
    return keep
