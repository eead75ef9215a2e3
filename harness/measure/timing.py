"""Wall-clock speedups, measured side by side with the dense model.

A speedup is only meaningful against the dense model timed in the same
process, on the same batches, under the same load. `time_side_by_side` builds
the batches once (tokenized and padded before any timing), warms both models
up, then runs rounds: in each round the dense model and the point each run
over every batch (`passes` times, an explicit thread count, timed by
`time.perf_counter`), in alternating order (dense first in even rounds, the
point first in odd ones), so slow drifts of the machine hit both alike. The
speedup of a round is dense time / point time; the reported speedup is the
median over rounds with a distribution-free confidence interval for that
median (binomial order statistics). Rounds continue, between `min_rounds`
and `max_rounds` and within `max_seconds`, until the interval's half-width
is within `target` (default 5%) of the median. A timing that ends without
meeting it (`max_rounds` or `max_seconds` reached first) is kept and marked
`reliable: false`; every timing records the machine's load around it
(`MachineLoad`: load average, cores other processes kept busy).

The timed forward runs with `trace=False`: no trace is recorded, so the
harness's bookkeeping is not part of the measured time (FLOPs come from an
untimed pass).

`steady_allocator` fixes glibc malloc's mmap and trim thresholds. Left
dynamic, glibc moves them as blocks are freed, so whether a model's large
activations come from the heap or from fresh, page-faulting mmaps depends on
what ran before: on MiniLM at batch 32 the dense model's pass time shifted by
up to 30% between measurements within one process, and the speedups of one
point measured in two processes disagreed by up to 15%, far outside their
intervals. Evaluate jobs call it before they load a model.

Why not `torch.utils.benchmark.Timer.timeit` per round (as until commit
c19bd0b): it runs two untimed warm-up passes before every timed
one, so two thirds of each round went unmeasured (measured on MR: the same
speedups within their intervals in 1.7-4.1x less time). Both models are warmed up once before the rounds;
`round_warmups` restores untimed passes before each timed block (2 = what
`Timer.timeit` did) for comparisons.
"""
from __future__ import annotations

import ctypes
import dataclasses
import ctypes.util
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from harness.data.encoding import Encoded
from harness.data.padding import make_batches

CONFIDENCE = 0.95
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest dynamic value on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024


def steady_allocator() -> bool:
    """Fix glibc malloc's mmap and trim thresholds for this process (see the
    module docstring); False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class TimingSpec:
    """How to time: threads, rounds, the interval target."""

    threads: int = 1
    min_rounds: int = 7
    max_rounds: int = 41
    max_seconds: float = 20.0
    target: float = 0.05  # stop when the interval's half-width <= target x median
    min_time: float = 0.01  # seconds per timed half-round: short statements are repeated to reach it
    round_warmups: int = 0  # untimed passes before each timed half-round (torch's Timer.timeit runs 2)


def _half_binomial_cdf(j: int, n: int) -> float:
    """P(Bin(n, 1/2) <= j), exactly (integer sums; scipy's binom would add a second to every job's start)."""
    return sum(math.comb(n, i) for i in range(j + 1)) / 2 ** n


def median_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free interval for the median of `values`: order statistics
    x_(j) .. x_(n+1-j) with the largest j whose binomial coverage is at least
    `confidence` (the whole range when there are too few values)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    j = 0
    while j + 1 <= n // 2 and 1.0 - 2.0 * _half_binomial_cdf(j, n) >= confidence:
        j += 1
    # coverage of [x_(j), x_(n+1-j)] (1-indexed) is 1 - 2 * P(Bin(n, .5) <= j - 1)
    j = max(j, 1)
    return float(x[j - 1]), float(x[n - j])


def _busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat: every state but idle and
    iowait, summed over CPUs); None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)) / ticks


class MachineLoad:
    """The machine's load around a timing: the 1-minute load average before and after, and how many
    cores other processes kept busy meanwhile (the machine's busy CPU time minus this process's, over
    the wall time). A speedup timed beside another job is noisy or biased; the record says so."""

    def __enter__(self):
        self.load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.busy, self.own, self.wall = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        busy = _busy_cpu_seconds()
        own = time.process_time() - self.own
        other = None
        if busy is not None and self.busy is not None and wall > 0:
            other = max(0.0, (busy - self.busy - own) / wall)
        self.result = {"loadavg_1m_before": self.load_before,
                       "loadavg_1m_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                       "other_busy_cores": None if other is None else round(other, 3),
                       "cores": os.cpu_count()}
        return False


def within_target(ratios, target: float) -> bool:
    """Whether the interval of the median of `ratios` has a half-width within `target` x the median: the
    rounds' stopping rule, and the record's `reliable` flag."""
    lo, hi = median_interval(ratios)
    return bool((hi - lo) / 2 <= target * float(np.median(ratios)) * (1 + 1e-9))


@dataclass
class PairedTiming:
    """Interleaved timings of a point and the dense model on the same batches."""

    batch_size: int
    n_examples: int
    threads: int
    number: int  # forward passes over all batches per timed half-round
    point_s: list[float]  # per round: seconds for all n_examples
    dense_s: list[float]
    warmups: int = 0  # untimed passes before each timed half-round
    # on a GPU, per round: seconds between CUDA events around the same passes (device time)
    point_gpu_s: list[float] | None = None
    dense_gpu_s: list[float] | None = None
    target: float = 0.05  # the interval's half-width the rounds aimed for, relative to the median
    load: dict | None = None  # MachineLoad around the rounds

    @property
    def reliable(self) -> bool:
        """Whether the rounds met their target (`within_target`). A timing that did not (too few rounds
        within `max_seconds`, or a busy machine) is kept, marked."""
        return within_target(self.ratios, self.target)

    @property
    def rounds(self) -> int:
        return len(self.point_s)

    @property
    def ratios(self) -> np.ndarray:
        return np.asarray(self.dense_s) / np.asarray(self.point_s)

    @property
    def speedup(self) -> float:
        return float(np.median(self.ratios))

    @property
    def interval(self) -> tuple[float, float]:
        return median_interval(self.ratios)

    def to_dict(self) -> dict:
        lo, hi = self.interval
        point, dense = float(np.median(self.point_s)), float(np.median(self.dense_s))
        return {
            "batch_size": self.batch_size,
            "n_examples": self.n_examples,
            "threads": self.threads,
            "rounds": self.rounds,
            "passes_per_round": self.number,
            "warmup_passes_per_round": self.warmups,
            "point_examples_per_s": self.n_examples / point,
            "dense_examples_per_s": self.n_examples / dense,
            "point_latency_ms": 1000.0 * point / self.n_examples,
            "dense_latency_ms": 1000.0 * dense / self.n_examples,
            "speedup": self.speedup,
            "speedup_low": lo,
            "speedup_high": hi,
            "confidence": CONFIDENCE,
            "target": self.target,
            "reliable": self.reliable,
            "load": self.load,
            "point_s": self.point_s,
            "dense_s": self.dense_s,
            **self._gpu_dict(),
        }

    def _gpu_dict(self) -> dict:
        if not self.point_gpu_s:
            return {}
        device = dataclasses.replace(self, point_s=self.point_gpu_s, dense_s=self.dense_gpu_s, point_gpu_s=None,
                                     dense_gpu_s=None)  # the same statistics, on the device times
        lo, hi = device.interval
        return {"point_gpu_s": self.point_gpu_s, "dense_gpu_s": self.dense_gpu_s,
                "gpu_speedup": device.speedup, "gpu_speedup_low": lo, "gpu_speedup_high": hi}


def add_question_times(timing: dict, windows: int, questions: int | None) -> dict:
    """A span task's timing (`PairedTiming.to_dict`) over `windows` windows of `questions` questions gains
    the time per question, the sum over its windows (unchanged when `questions` is None)."""
    if questions is not None:
        timing["questions"] = questions
        for who in ("point", "dense"):
            timing[f"{who}_ms_per_question"] = timing[f"{who}_latency_ms"] * windows / questions
    return timing


def _runner(model, batches, sync):
    def run() -> None:
        with torch.inference_mode():
            for b in batches:
                model(b.input_ids, b.attention_mask, b.token_type_ids, trace=False)
        sync()

    return run


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def policy_time_share(model, enc: Encoded, protocol: str, seq_len: int, batch_size: int, threads: int,
                      device: str = "cpu", passes: int = 3) -> float | None:
    """The share of `model`'s forward time spent inside its policy's own
    modules (predictors, exit heads), over `passes` passes of the same
    batches after a warm-up: forward hooks time the outermost policy module
    calls. None when the policy has no modules (score-and-select policies
    spend their time in tensor ops, which this does not isolate)."""
    mods = [m for m in model.policy.modules() if m is not model.policy]
    if not mods:
        return None
    batches = [b.to(device) for b in make_batches(enc, protocol, seq_len, batch_size)]
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    inside = {"depth": 0, "start": 0.0, "total": 0.0}

    def enter(*_):
        if inside["depth"] == 0:
            sync()
            inside["start"] = time.perf_counter()
        inside["depth"] += 1

    def leave(*_):
        inside["depth"] -= 1
        if inside["depth"] == 0:
            sync()
            inside["total"] += time.perf_counter() - inside["start"]

    run = _runner(model, batches, sync)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    handles = []
    try:
        run()  # warm-up, unhooked
        handles = [h for m in mods for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
        start = time.perf_counter()
        for _ in range(passes):
            run()
        elapsed = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
        torch.set_num_threads(previous)
    return inside["total"] / elapsed if elapsed > 0 else None


def time_side_by_side(
    point, dense, enc: Encoded, protocol: str, seq_len: int, batch_size: int, spec: TimingSpec, device: str = "cpu"
) -> PairedTiming:
    """Time `point` against `dense` on the same pre-built batches of `enc`."""
    return time_interleaved({"dense": dense, "point": point}, enc, protocol, seq_len, batch_size, spec, device,
                            [("point", "dense")]).pair("point", "dense")


@dataclass
class InterleavedTiming:
    """Several models timed in the same rounds on the same batches (`time_interleaved`): any two give a
    `PairedTiming`, whose per-round ratios come from the same rounds."""

    batch_size: int
    n_examples: int
    threads: int
    number: int
    seconds: dict[str, list[float]]  # per model, per round: seconds for all n_examples
    gpu_seconds: dict[str, list[float]]
    warmups: int
    target: float
    load: dict | None

    def pair(self, point: str, dense: str) -> PairedTiming:
        gpu = self.gpu_seconds.get(point) or None
        return PairedTiming(self.batch_size, self.n_examples, self.threads, self.number, self.seconds[point],
                            self.seconds[dense], self.warmups, gpu, self.gpu_seconds.get(dense) or None if gpu else None,
                            self.target, self.load)

    def median_seconds(self, name: str) -> float:
        return float(np.median(self.seconds[name]))


def time_interleaved(models: dict, enc: Encoded, protocol: str, seq_len: int, batch_size: int, spec: TimingSpec,
                     device: str = "cpu", pairs: list[tuple[str, str]] | None = None) -> InterleavedTiming:
    """Time every model of `models` ({name: model}) in the same rounds on the same pre-built batches of
    `enc`: each round runs each model once, in an order rotated by one every round (two models: first
    the one named first, then the other, alternating), so slow drifts of the machine hit all alike. Rounds
    stop once every (point, dense) pair of `pairs` (default: every pair) has met `spec.target`, or at
    `max_rounds`, or after `max_seconds` once `min_rounds` have run."""
    names = list(models)
    pairs = pairs or [(a, b) for a in names for b in names if a != b]
    for model in models.values():
        model.eval()
    batches = [b.to(device) for b in make_batches(enc, protocol, seq_len, batch_size)]
    gpu = str(device).startswith("cuda")
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    runs = {name: _runner(model, batches, sync) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in names}
    gpu_times: dict[str, list[float]] = {name: [] for name in names}
    previous = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    with MachineLoad() as load:  # the machine's load around the rounds
        try:
            for f in runs.values():  # warm-up
                f()
            once = min(_seconds(f) for f in runs.values())  # the fastest pass sets the repeats
            number = max(1, math.ceil(spec.min_time / max(once, 1e-9)))
            began = time.perf_counter()
            while True:
                shift = len(times[names[0]]) % len(names)
                for name in names[shift:] + names[:shift]:
                    for _ in range(spec.round_warmups):
                        runs[name]()
                    if gpu:  # device time beside wall time: events around the same passes
                        events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        events[0].record()
                    start = time.perf_counter()
                    for _ in range(number):
                        runs[name]()
                    times[name].append((time.perf_counter() - start) / number)
                    if gpu:
                        events[1].record()
                        events[1].synchronize()
                        gpu_times[name].append(events[0].elapsed_time(events[1]) / 1000.0 / number)
                rounds = len(times[names[0]])
                if rounds >= spec.max_rounds:
                    break
                if rounds >= spec.min_rounds:
                    if all(within_target(np.asarray(times[d]) / np.asarray(times[p]), spec.target) for p, d in pairs):
                        break
                    if time.perf_counter() - began > spec.max_seconds:
                        break
        finally:
            torch.set_num_threads(previous)
    return InterleavedTiming(batch_size, len(enc), spec.threads, number, times, gpu_times, spec.round_warmups,
                             spec.target, load.result)
