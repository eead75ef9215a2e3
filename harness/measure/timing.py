"""Wall-clock inference timing with `torch.utils.benchmark`.

Inputs are tokenized and padded before the timed region; the statement timed
is the model's forward over a fixed list of pre-built batches. The thread
count is explicit, a warm-up run precedes measurement, and we report the
median and inter-quartile range over at least `MIN_REPEATS` repeats of
`Timer.timeit` (blocked_autorange gives a single block for a long statement,
and so a meaningless IQR).
Timing jobs take the workflow's single `timing_slot` so they never overlap.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch.utils import benchmark

from harness.data.encoding import Encoded
from harness.data.padding import make_batches

MIN_REPEATS = 5


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
        start = time.perf_counter()
        run()
        once = time.perf_counter() - start
        timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=threads)
        # repeats of `number` runs each (tiny statements are grouped to >= 10 ms), at
        # least MIN_REPEATS of them and enough to fill min_run_time, so the median
        # and IQR describe a distribution
        number = max(1, math.ceil(0.01 / max(once, 1e-9)))
        repeats = max(MIN_REPEATS, math.ceil(min_run_time / max(once * number, 1e-9)))
        m = benchmark.Measurement.merge([timer.timeit(number) for _ in range(repeats)])[0]
    finally:
        torch.set_num_threads(previous)
    return Timing(protocol, batch_size, len(enc), m.median, m.iqr, threads, len(m.times))
