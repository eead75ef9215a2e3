"""Cost of the token-selection step alone: top-k vs threshold (LTP Fig. A.1).

Times the kernels the methods use (`harness.model.selection`): `topk_keep`
(PoWER-BERT, LAT, SpAtten: a stable rank of the scores, [CLS] kept, so ties
never depend on padding) against `threshold_keep` (LTP: one comparison), both
producing the keep mask [batch, n] from importance scores that keep the same
tokens; and, for reference, the fastest top-k PyTorch offers (`torch.topk`
plus a scatter, ties in no guaranteed order), `topk_torch`. Timed with
`torch.utils.benchmark` at an explicit thread count, batch 32, lengths
128-1024 and retain ratios 10-50%, on whatever machine runs it.
"""
from __future__ import annotations

import torch
from torch.utils import benchmark

from harness.model.selection import threshold_keep, topk_keep


def torch_topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    idx = scores.topk(k, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, idx, True)


def measure(lengths=(128, 256, 512, 1024), ratios=(0.1, 0.2, 0.3, 0.4, 0.5), batch: int = 32,
            threads: int = 1, min_run_time: float = 0.2, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        scores = torch.rand(batch, n, generator=g)
        mask = torch.ones(batch, n, dtype=torch.bool)
        for r in ratios:
            k = max(1, round(r * n))
            # the threshold that keeps the same tokens as top-k ([CLS] aside)
            theta = scores[:, 1:].kthvalue(n - k + 1, dim=1, keepdim=True).values.squeeze(1)
            assert torch.equal(topk_keep(scores, mask, k), threshold_keep(scores, mask, theta))
            out = {"length": n, "ratio": r, "batch": batch, "threads": threads}
            for name, stmt in (("topk", lambda: topk_keep(scores, mask, k)),
                               ("topk_torch", lambda: torch_topk_mask(scores, k)),
                               ("threshold", lambda: threshold_keep(scores, mask, theta))):
                stmt()
                m = benchmark.Timer("f()", globals={"f": stmt}, num_threads=threads).blocked_autorange(
                    min_run_time=min_run_time
                )
                out[f"{name}_us"] = 1e6 * m.median
                out[f"{name}_iqr_us"] = 1e6 * m.iqr
            out["ratio_topk_over_threshold"] = out["topk_us"] / out["threshold_us"]
            out["ratio_topk_torch_over_threshold"] = out["topk_torch_us"] / out["threshold_us"]
            rows.append(out)
    return rows
