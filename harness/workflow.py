"""What the workflow runs for a config: tasks, methods, jobs and their files.

Shared by the Snakefile and the CLI so `python -m harness` lists exactly what
`snakemake` would run.
"""
from __future__ import annotations

from pathlib import Path

from .data import available_locally
from .errors import HarnessError
from .registry import get_method, method_names
from .results import lengths_path, manifest_path
from .tasks import task_names


def resolve_tasks(cfg: dict) -> list[str]:
    out: list[str] = []
    known = task_names()
    for name in cfg["tasks"]:
        if name == "auto":
            out += [t for t in known if available_locally(t, cfg.get("data_dir"))]
        elif name in known:
            out.append(name)
        else:
            raise HarnessError(f"unknown task {name!r} in the config", f"use one of: {', '.join(known)} or 'auto'")
    return list(dict.fromkeys(out))


def resolve_methods(cfg: dict) -> list[str]:
    names = method_names() if "all" in cfg["methods"] else list(cfg["methods"])
    for n in list(names) + list(cfg.get("exclude_methods", [])):
        get_method(n)  # raises a clear error for unknown names
    names = [n for n in names if n not in cfg.get("exclude_methods", [])]
    # the dense baseline always runs (every speedup is relative to it), and so
    # do a method's requirements; dense first
    names.append("dense")
    for n in list(names):
        for req in get_method(n).requires:
            if req not in names:
                names.append(req)
    return sorted(dict.fromkeys(names), key=lambda n: (n != "dense", n))


def done_path(cfg: dict, task: str, method: str) -> Path:
    return Path(cfg["work_dir"]) / "models" / task / method / "done.json"


def required_models(cfg: dict, task: str, method: str) -> list[str]:
    return [str(done_path(cfg, task, r)) for r in get_method(method).requires]


def evaluate_inputs(cfg: dict, task: str, method: str) -> list[str]:
    inputs = [str(done_path(cfg, task, method))]
    if method != "dense":
        inputs.append(str(manifest_path(cfg["results_dir"], task, "dense")))
    return inputs


def all_manifests(cfg: dict) -> list[str]:
    return [str(manifest_path(cfg["results_dir"], t, m)) for t in resolve_tasks(cfg) for m in resolve_methods(cfg)]


def all_lengths(cfg: dict) -> list[str]:
    return [str(lengths_path(cfg["results_dir"], t)) for t in resolve_tasks(cfg)]
