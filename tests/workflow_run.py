"""Run the workflow on the smoke profile into a folder of its own, and read its records."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def snakemake(out: Path, *extra: str, config: tuple[str, ...] = (), profile: str = "profiles/smoke",
              env: dict | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """`snakemake --profile <profile>` with results, figures and work under `out`; asserts success."""
    cmd = [
        "snakemake", *extra, "--profile", profile, "--nolock", "--cores", "2",
        "--config", f"results_dir={out}/results", f"figures_dir={out}/figures", f"work_dir={out}/work", *config,
    ]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "results" / "records").rglob("*.json"))]
