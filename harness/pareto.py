"""The one definition of a Pareto front in the harness (lower cost, higher value), and of the rule
that picks one point off it.

`pareto_front` is used by the operating-point search (`harness.plugin.search`) and by the trade-off
figures, which join each method's non-dominated points. `fewest_within` is the papers' rule for the
point they report (LTP Table 1, Magic Pyramid Table 2): the report's tables apply it to records
(`harness.report.point_choice`), the evaluate job to choose the point it times at every precision.
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


def fewest_within(costs: Sequence[float], values: Sequence[float], reference: float,
                  tolerance: float) -> tuple[int | None, bool]:
    """(index, met): the point of lowest cost whose value is at least `reference - tolerance` (equal costs:
    the higher value, then position), else the point of highest value (first on ties) with met = False;
    (None, False) with no points. Values are validation metrics: the choice never reads the reported split."""
    n = len(costs)
    if n == 0:
        return None, False
    value = [-math.inf if v is None or math.isnan(v) else float(v) for v in values]  # an undefined metric ranks last
    ok = [i for i in range(n) if value[i] >= reference - tolerance]
    if ok:
        return min(ok, key=lambda i: (costs[i], -value[i], i)), True
    return min(range(n), key=lambda i: (-value[i], i)), False
