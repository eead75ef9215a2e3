"""Wall-clock timings as the report reads them: value, interval, and whether they met their target.

Why this module: a side-by-side timing (`harness.measure.timing`) runs rounds until the interval of its
median speedup is within `timing.target` of the median, or until its round or time budget ends first.
One that ended first (a busy machine, too few rounds) is kept in the record with `reliable: false`
and the machine's load around it. Every table that shows a wall-clock speedup reads it through `wall`
and adds a `wall_bs<b>_reliable` column beside it; figures draw such points faintly; claims read them
as inconclusive; and `unreliable_table` lists them for the report with the command that re-times them.
Records written before the flag existed have none: they are shown unflagged (`reliable` None).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from harness.storage import manifest_path

UNRELIABLE_NOTE = (
    "Wall-clock timings whose 95% interval of the median speedup is wider than the target (half-width > target x "
    "speedup) when their rounds ran out: shown faint in the figures, flagged in every table (wall_bs<b>_reliable), "
    "inconclusive in the claims. load = the 1-minute load average before/after and the cores other processes kept "
    "busy during the timing. Re-time them once the machine is quiet with the command: it re-runs the method's "
    "evaluate job for that training seed (metrics and FLOPs are deterministic and come out the same), then the "
    "report. Empty: every timing met its target."
)


@dataclass(frozen=True)
class Wall:
    """A timed speedup at one batch size."""

    speedup: float
    low: float
    high: float
    reliable: bool | None  # None: a record from before the flag
    rounds: int
    load: Mapping | None


MISSING = Wall(math.nan, math.nan, math.nan, None, 0, None)


def timed_sizes(rec: Mapping | None) -> list[int]:
    timing = rec.get("timing") if rec is not None else None
    return sorted(int(b) for b in ((timing or {}).get("by_batch_size") or {})) if isinstance(timing, dict) else []


def wall(rec: Mapping | None, size) -> Wall:
    """The record's timing at batch `size` (MISSING where it was not timed there)."""
    timing = rec.get("timing") if rec is not None else None
    t = ((timing or {}).get("by_batch_size") or {}).get(str(size)) if isinstance(timing, dict) else None
    if not t:
        return MISSING
    reliable = t.get("reliable")
    return Wall(float(t["speedup"]), float(t.get("speedup_low", math.nan)), float(t.get("speedup_high", math.nan)),
                None if reliable is None else bool(reliable), int(t.get("rounds", 0) or 0), t.get("load"))


def wall_columns(rec: Mapping | None, size, prefix: str | None = None, interval: bool = False) -> dict:
    """{wall_bs<b>[, _low, _high], wall_bs<b>_reliable} of a record, as a table row shows them."""
    w = wall(rec, size)
    name = prefix or f"wall_bs{size}"
    out = {name: w.speedup}
    if interval:
        out |= {f"{name}_low": w.low, f"{name}_high": w.high}
    out[f"{name}_reliable"] = w.reliable
    return out


def _load_text(load: Mapping | None) -> str:
    if not load:
        return ""
    parts = []
    if load.get("loadavg_1m_before") is not None:
        parts.append(f"loadavg {load['loadavg_1m_before']:.2f} -> {load.get('loadavg_1m_after') or math.nan:.2f}")
    if load.get("other_busy_cores") is not None:
        parts.append(f"others busy {load['other_busy_cores']:.2f} of {load.get('cores')} cores")
    return "; ".join(parts)


def retime_command(cfg: Mapping, task: str, method: str, seed: int) -> str:
    """Re-run one evaluate job (its timings with it), then the report."""
    profile = cfg.get("profile", "default")
    target = manifest_path(cfg["results_dir"], task, method, seed)
    return (f"snakemake --cores 2 --profile profiles/{profile} --force {target} && "
            f"snakemake --cores 2 --profile profiles/{profile}")


def unreliable_table(records: pd.DataFrame, cfg: Mapping) -> pd.DataFrame:
    """One row per (record, batch size) whose timing did not meet its target, from the per-seed records."""
    rows = []
    for _, r in records.iterrows():
        for size in timed_sizes(r):
            w = wall(r, size)
            if w.reliable is not False:
                continue
            half = (w.high - w.low) / 2 / w.speedup if w.speedup else math.nan
            seed = int(r.get("seed", 0) or 0)
            rows.append({"task": r["task"], "method": r["method"], "seed": seed,
                         "operating_point": r["operating_point"], "protocol": r["protocol"],
                         "precision": r.get("precision", "fp32"), "batch_size": size,
                         "speedup": w.speedup, "low": w.low, "high": w.high, "half_width": half, "rounds": w.rounds,
                         "load": _load_text(w.load), "command": retime_command(cfg, r["task"], r["method"], seed)})
    columns = ["task", "method", "seed", "operating_point", "protocol", "precision", "batch_size", "speedup", "low", "high",
               "half_width", "rounds", "load", "command"]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs["note"] = UNRELIABLE_NOTE
    out.attrs["floatfmt"] = {"speedup": ".2f", "low": ".2f", "high": ".2f", "half_width": ".3f"}
    return out
