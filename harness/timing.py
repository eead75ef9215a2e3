"""Wall-clock inference timing with `torch.utils.benchmark`.

Inputs are tokenized and padded before the timed region; the statement timed
is the model's forward over a fixed list of pre-built batches. The thread
count is explicit, a warm-up run precedes measurement, and we report the
median and inter-quartile range of `blocked_autorange` blocks.
Timing jobs take the workflow's single `timing_slot` so they never overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils import benchmark

from .encoding import Encoded
from .padding import make_batches


@dataclass
class Timing:
    protocol: str
    batch_size: int
    n_examples: int
    median_s: float  # time for all n_examples
    iqr_s: float
    threads: int
    runs: int

    @property
    def throughput(self) -> float:
        return self.n_examples / self.median_s

    @property
    def latency_ms(self) -> float:
        """Per-example time; the latency at batch size 1."""
        return 1000.0 * self.median_s / self.n_examples

    @property
    def latency_iqr_ms(self) -> float:
        return 1000.0 * self.iqr_s / self.n_examples


def time_model(
    model, enc: Encoded, protocol: str, seq_len: int, batch_size: int, threads: int, min_run_time: float,
    device: str = "cpu",
) -> Timing:
    model.eval()
    batches = [b.to(device) for b in make_batches(enc, protocol, seq_len, batch_size)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run() -> None:
        with torch.inference_mode():
            for b in batches:
                model(b.input_ids, b.attention_mask, b.token_type_ids)
        sync()

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run()  # warm-up
        timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=threads)
        m = timer.blocked_autorange(min_run_time=min_run_time)
    finally:
        torch.set_num_threads(previous)
    return Timing(protocol, batch_size, len(enc), m.median, m.iqr, threads, len(m.times))
