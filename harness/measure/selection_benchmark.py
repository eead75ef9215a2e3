"""Cost of the token-selection operation alone: top-k vs threshold (LTP Fig. A.1).

Top-k (PoWER-BERT, LAT, SpAtten) must rank the scores; a threshold (LTP) is
one comparison. Both produce the keep mask [batch, n] from importance scores;
timed with torch.utils.benchmark at an explicit thread count, batch 32,
lengths 128-1024 and retain ratios 10-50%, on whatever machine runs it.
"""
from __future__ import annotations

import torch
from torch.utils import benchmark


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    idx = scores.topk(k, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, idx, True)


def threshold_mask(scores: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return scores >= theta


def measure(lengths=(128, 256, 512, 1024), ratios=(0.1, 0.2, 0.3, 0.4, 0.5), batch: int = 32,
            threads: int = 1, min_run_time: float = 0.2, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        scores = torch.rand(batch, n, generator=g)
        for r in ratios:
            k = max(1, round(r * n))
            theta = scores.kthvalue(n - k + 1, dim=1, keepdim=True).values  # same tokens kept as top-k
            assert torch.equal(topk_mask(scores, k), threshold_mask(scores, theta))
            out = {"length": n, "ratio": r, "batch": batch, "threads": threads}
            for name, stmt in (("topk", lambda: topk_mask(scores, k)), ("threshold", lambda: threshold_mask(scores, theta))):
                stmt()
                m = benchmark.Timer("f()", globals={"f": stmt}, num_threads=threads).blocked_autorange(
                    min_run_time=min_run_time
                )
                out[f"{name}_us"] = 1e6 * m.median
                out[f"{name}_iqr_us"] = 1e6 * m.iqr
            out["ratio_topk_over_threshold"] = out["topk_us"] / out["threshold_us"]
            rows.append(out)
    return rows
