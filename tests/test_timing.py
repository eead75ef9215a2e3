"""Timing: explicit threads, several repeats, sane per-example numbers."""
from __future__ import annotations

import numpy as np

from harness.data.encoding import Encoded
from harness.measure.timing import MIN_REPEATS, time_model


def test_time_model_repeats_and_reports(tiny_model):
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(5, 200, size=n)) for n in (12, 30, 7, 22)]
    enc = Encoded(ids, [[0] * len(x) for x in ids], np.zeros(4, dtype=np.int64))
    t = time_model(tiny_model, enc, "none", 64, 2, threads=1, min_run_time=0.01)
    assert t.runs >= MIN_REPEATS and t.threads == 1 and t.n_examples == 4
    assert t.median_s > 0 and t.iqr_s >= 0
    assert t.throughput == 4 / t.median_s and t.latency_ms == 1000 * t.median_s / 4
