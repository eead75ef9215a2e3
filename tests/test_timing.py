"""Side-by-side timing: interleaved rounds, a real interval, no trace in the timed forward."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from harness.data.encoding import Encoded
from harness.measure.timing import TimingSpec, median_interval, time_side_by_side


class Sleeper(nn.Module):
    """A model whose forward takes `ms` milliseconds per batch and remembers how it was called."""

    def __init__(self, ms: float):
        super().__init__()
        self.ms, self.calls = ms, []

    def forward(self, ids, mask, types, trace=True):
        self.calls.append(trace)
        time.sleep(self.ms / 1000)
        return None


def _enc(n: int = 4) -> Encoded:
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(5, 200, size=k)) for k in (12, 30, 7, 22)[:n]]
    return Encoded(ids, [[0] * len(x) for x in ids], np.zeros(n, dtype=np.int64))


def test_median_interval_order_statistics():
    x = list(range(1, 8))  # n = 7: only [min, max] covers 95% (98.4%)
    assert median_interval(x) == (1, 7)
    x = list(range(1, 12))  # n = 11: [x(2), x(10)] covers 98.8%, [x(3), x(9)] only 93.5%
    assert median_interval(x) == (2, 10)
    assert median_interval(list(range(100)))[0] > 30  # it narrows with more rounds


def test_speedup_of_a_point_twice_as_fast():
    point, dense = Sleeper(2.0), Sleeper(4.0)
    spec = TimingSpec(threads=1, min_rounds=7, max_rounds=15, max_seconds=5, target=0.05)
    t = time_side_by_side(point, dense, _enc(), "none", 64, 2, spec)
    lo, hi = t.interval
    assert lo <= t.speedup <= hi and 1.8 < t.speedup < 2.2
    assert 7 <= t.rounds <= 15 and len(t.dense_s) == len(t.point_s) == t.rounds
    d = t.to_dict()
    assert d["dense_examples_per_s"] < d["point_examples_per_s"] and d["passes_per_round"] >= 1
    # timed forwards never record a trace (warm-up included)
    assert point.calls and dense.calls and not any(point.calls + dense.calls)


def test_same_model_against_itself_is_about_one(tiny_model):
    spec = TimingSpec(threads=1, min_rounds=5, max_rounds=9, max_seconds=10)
    t = time_side_by_side(tiny_model, tiny_model, _enc(), "batch", 64, 4, spec)
    assert 0.7 < t.speedup < 1.4 and t.threads == 1 and t.n_examples == 4


def test_untraced_forward_gives_the_same_logits(tiny_model):
    ids = torch.randint(5, 200, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with torch.no_grad():
        traced, plain = tiny_model(ids, mask), tiny_model(ids, mask, trace=False)
    assert plain.trace is None and traced.trace is not None
    assert torch.equal(traced.logits, plain.logits)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_are_restored(tiny_model, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # differs from both timed thread counts
    try:
        time_side_by_side(tiny_model, tiny_model, _enc(2), "none", 64, 1, TimingSpec(threads=threads, min_rounds=1,
                                                                                   max_rounds=1))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_policy_time_share_times_the_policy_modules(tiny_model):
    """The share is the time inside the policy's modules over the forward time:
    between 0 and 1 for a policy with modules, None for one without."""
    import numpy as np

    from harness.data.encoding import Encoded
    from harness.measure.timing import policy_time_share
    from harness.model.skim import SkimPolicy

    rs = np.random.RandomState(0)
    ids = [[101] + list(rs.randint(5, 90, int(n))) for n in rs.randint(5, 40, 8)]
    enc = Encoded(ids, [[0] * len(x) for x in ids], np.zeros(8, dtype=np.int64))
    assert policy_time_share(tiny_model, enc, "batch", 64, 4, threads=1) is None  # the dense policy has none
    tiny_model.policy = SkimPolicy(len(tiny_model.layers), tiny_model.arch().hidden, soft=False)
    share = policy_time_share(tiny_model, enc, "batch", 64, 4, threads=1)
    assert share is not None and 0.0 < share < 1.0
    assert not tiny_model.policy.predictors["0"]._forward_hooks  # the hooks are removed


def test_device_times_get_the_same_statistics_as_wall_times():
    """On a GPU the CUDA-event times are summarised like the wall times: median
    ratio and its interval (checked here without a GPU, from given times)."""
    from harness.measure.timing import PairedTiming, median_interval

    point, dense = [0.5, 1.0, 0.75, 0.6, 0.7], [1.0, 1.2, 1.5, 1.3, 1.1]
    d = PairedTiming(1, 4, 1, 1, [1.0] * 5, [1.0] * 5, 0, point, dense).to_dict()
    ratios = np.asarray(dense) / np.asarray(point)
    assert d["gpu_speedup"] == float(np.median(ratios))
    assert (d["gpu_speedup_low"], d["gpu_speedup_high"]) == median_interval(ratios)
    assert "gpu_speedup" not in PairedTiming(1, 4, 1, 1, [1.0], [1.0]).to_dict()


def test_a_timing_that_misses_its_target_is_kept_and_marked_with_the_load_around_it():
    """Rounds that end (max_rounds) before the interval's half-width reaches `target` x the median give a
    timing marked `reliable: false`; one within it `reliable: true`. Both carry the machine's load: while a
    second process spins on a core, the cores other processes kept busy read about one."""
    import multiprocessing as mp

    from harness.measure.timing import PairedTiming

    wide = PairedTiming(1, 4, 1, 1, point_s=[1.0, 1.0, 1.0], dense_s=[1.0, 2.0, 3.0], target=0.05)
    assert wide.interval == (1.0, 3.0) and wide.reliable is False  # half-width 1 > 0.05 x 2
    assert wide.to_dict()["reliable"] is False and wide.to_dict()["target"] == 0.05
    tight = PairedTiming(1, 4, 1, 1, point_s=[1.0] * 7, dense_s=[2.0, 2.01, 2.0, 1.99, 2.0, 2.0, 2.02])
    assert tight.reliable is True

    point, dense = Sleeper(2.0), Sleeper(4.0)
    spec = TimingSpec(threads=1, min_rounds=3, max_rounds=3, max_seconds=5, target=1e-6)  # unreachable
    stop = mp.Event()
    spinner = mp.Process(target=_spin, args=(stop,))
    spinner.start()
    try:
        time.sleep(0.3)
        d = time_side_by_side(point, dense, _enc(), "none", 64, 2, spec).to_dict()
    finally:
        stop.set()
        spinner.join()
    assert d["reliable"] is False and d["rounds"] == 3
    load = d["load"]
    assert set(load) == {"loadavg_1m_before", "loadavg_1m_after", "other_busy_cores", "cores"}
    assert load["other_busy_cores"] >= 0.5  # the spinner's core (the sleeping models use almost none)


def _spin(stop) -> None:
    while not stop.is_set():
        pass
