"""Compare the records of two runs, field by field (`python -m harness compare A B`).

For reproducibility and refactoring checks: two runs with the same seed (or
before and after a change that must not alter results) must agree on every
field of every record except the wall-clock measurements and the provenance
(time, commit). Prints one line per differing record and a count per field.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from harness.errors import HarnessError

# measured wall-clock and run metadata: expected to differ between runs
EXCLUDED = ("timing", "latency_ms_median", "throughput_examples_per_s", "wallclock_speedup",
            "wallclock_speedup_vs_fastest_dense", "kernels", "provenance")  # the machine's, not the model's


def _diff(a, b, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if not path and k in EXCLUDED:
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'second' if k not in a else 'first'}")
            else:
                _diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        out.append(f"{path}: {str(a)[:50]} != {str(b)[:50]}")


def compare_runs(first: str | Path, second: str | Path) -> tuple[int, dict[str, list[str]], list[str]]:
    """(records compared, {record: differences}, records present in only one run)."""
    roots = [Path(first) / "records", Path(second) / "records"]
    for r in roots:
        if not r.is_dir():
            raise HarnessError(f"no records under {r}", "pass two results folders (each holding records/)")
    files = [{p.relative_to(r) for p in r.rglob("*.json")} for r in roots]
    only = sorted(str(p) for p in files[0] ^ files[1])
    diffs = {}
    for rel in sorted(files[0] & files[1]):
        out: list[str] = []
        _diff(*(json.loads((r / rel).read_text()) for r in roots), "", out)
        if out:
            diffs[str(rel)] = out
    return len(files[0] & files[1]), diffs, only


def report(first, second) -> tuple[str, bool]:
    n, diffs, only = compare_runs(first, second)
    fields = Counter(d.split(":")[0].split("[")[0] for ds in diffs.values() for d in ds)
    lines = [f"{rec}: {len(ds)} difference(s), e.g. {ds[0]}" for rec, ds in diffs.items()]
    lines += [f"only in one run: {p}" for p in only]
    lines.append(f"{n - len(diffs)} of {n} records identical (timing and provenance excluded); "
                 f"{len(only)} in one run only; differing fields: {dict(fields) or 'none'}")
    return "\n".join(lines), not diffs and not only
