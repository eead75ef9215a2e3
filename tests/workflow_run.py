"""Run the workflow on the smoke profile into a folder of its own, and read its records."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command(out: Path, *extra: str, config: tuple[str, ...] = (), profile: str = "profiles/smoke") -> list[str]:
    """`snakemake --profile <profile> <extra>` with results, figures and work under `out`."""
    return ["snakemake", *extra, "--profile", profile, "--nolock", "--config", f"results_dir={out}/results",
            f"figures_dir={out}/figures", f"work_dir={out}/work", *config]


def snakemake(out: Path, *extra: str, config: tuple[str, ...] = (),
              profile: str = "profiles/smoke") -> subprocess.CompletedProcess:
    """`command` run locally on 2 cores; asserts success."""
    p = subprocess.run(command(out, *extra, "--cores", "2", config=config, profile=profile), cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "results" / "records").rglob("*.json"))]
