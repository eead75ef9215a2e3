"""Length-bucket analysis from records' per-example data.

Used by the robustness table (LTP Table 3: eval quartile buckets <=Q2,
Q2-Q3, >Q3) and by Magic Pyramid's Fig. 1 (fixed buckets <=35, 36-70, >70
tokens). Per bucket: the task metric over the bucket's examples and the
relative FLOPs (method FLOPs / dense FLOPs on the same examples, same protocol).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.measure.flops import relative_flops
from harness.measure.metrics import compute_metrics, primary
from harness.report.load import per_example
from harness.data.tasks import get_task


def quartile_buckets(lengths) -> list[tuple[str, float, float]]:
    """(label, low exclusive, high inclusive) for <=Q2, Q2-Q3, >Q3."""
    q2, q3 = np.percentile(np.asarray(lengths), [50, 75])
    return [("<=Q2", -np.inf, q2), ("Q2-Q3", q2, q3), (">Q3", q3, np.inf)]


FIXED_BUCKETS = [("short (<=35)", -np.inf, 35), ("middle (36-70)", 35, 70), ("long (>70)", 70, np.inf)]


def bucket_table(row: pd.Series, buckets) -> pd.DataFrame:
    """Metric (x100) and relative FLOPs of one record per length bucket."""
    ex = per_example(row)
    task = get_task(row["task"])
    out = []
    for label, lo, hi in buckets:
        sel = ex[(ex["length"] > lo) & (ex["length"] <= hi)]
        if sel.empty:
            out.append({"bucket": label, "n": 0, "value": np.nan, "relative_flops": np.nan, "speedup": np.nan})
            continue
        metrics = compute_metrics(task, sel["prediction"].to_numpy(), sel["label"].to_numpy())
        rel = relative_flops(sel["flops"], sel["baseline_flops"])
        out.append({"bucket": label, "n": len(sel), "value": 100 * primary(task, metrics),
                    "relative_flops": rel, "speedup": 1 / rel})
    return pd.DataFrame(out)
