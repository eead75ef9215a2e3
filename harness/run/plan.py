"""What the workflow runs for a config: tasks, methods, jobs and their files.

Shared by the Snakefile and the CLI so `python -m harness` lists exactly what
`snakemake` would run. Every model, point, record and manifest path carries
the training seed (`seed<s>`, one of the config's `seeds`); a method that
starts from another (`requirements`) starts from that method's model of the
same seed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from harness.claim_spec import check_claims
from harness.data.sources import available_locally
from harness.errors import HarnessError
from harness.plugin.registry import get_method, method_names
from harness.plugin.settings import parse_settings
from harness.storage import lengths_path, manifest_path, seed_dir
from harness.data.tasks import get_task, task_names


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
    for name in cfg["train"].get("task_caps") or {}:
        if name not in known:
            raise HarnessError(f"train.task_caps names {name!r}, which is not a task", f"use one of: {', '.join(known)}")
    for name in cfg.get("optional_tasks", []):
        if name not in known:
            raise HarnessError(f"unknown optional task {name!r} in the config", f"use one of: {', '.join(known)}")
        if available_locally(name, cfg.get("data_dir")):
            out.append(name)
    return list(dict.fromkeys(out))


def base_method(cfg: dict, name: str) -> str:
    """The registered method behind a name: a variant's `method`, else the name."""
    variant = cfg.get("variants", {}).get(name)
    return variant["method"] if variant else name


def plugin_for(cfg: dict, name: str):
    """The plugin behind a method name or a config-defined variant of one."""
    return get_method(base_method(cfg, name))


def method_values(cfg: dict, name: str) -> dict:
    """The raw settings of a method or variant: the plugin's `methods_config`
    with a variant's `config` on top."""
    variant = cfg.get("variants", {}).get(name)
    out = dict(cfg.get("methods_config", {}).get(base_method(cfg, name), {}))
    if variant:
        out.update(variant.get("config") or {})
    return out


def settings_for(cfg: dict, name: str):
    """The typed settings of a method or variant under this config."""
    where = f"variants.{name}.config" if name in cfg.get("variants", {}) else f"methods_config.{name}"
    return parse_settings(plugin_for(cfg, name).Settings, method_values(cfg, name), where)


def requirements(cfg: dict, name: str) -> tuple[str, ...]:
    """The methods a method or variant starts from, under its settings."""
    return plugin_for(cfg, name).requirements(settings_for(cfg, name))


def check_settings(cfg: dict) -> None:
    """Every `methods_config.<method>` and variant `config` against the
    plugin's typed Settings: an unknown key or a wrong value is one error."""
    given = cfg.get("methods_config", {})
    for name, values in given.items():
        if name not in method_names():
            raise HarnessError(
                f"methods_config names {name!r}, which is not a registered method",
                f"use one of: {', '.join(method_names())} (variants take their settings under variants.<name>.config)",
            )
        parse_settings(get_method(name).Settings, values, f"methods_config.{name}")
    for v in cfg.get("variants", {}):
        parse_settings(plugin_for(cfg, v).Settings, method_values(cfg, v), f"variants.{v}.config")


def check_experiments(cfg: dict) -> None:
    """What the schema cannot check of the experiments (a claim's rule: its
    measure, arguments and test), before any job runs."""
    for name, spec in (cfg.get("experiments") or {}).items():
        if spec["kind"] == "claims":
            check_claims(spec, f"experiments.{name}")


def with_requirements(cfg: dict, names: list[str]) -> list[str]:
    """`names` followed by what they start from, and what that starts from."""
    names = list(names)
    for n in names:  # grows while it is walked
        names += [r for r in requirements(cfg, n) if r not in names]
    return names


def resolve_methods(cfg: dict) -> list[str]:
    variants = cfg.get("variants", {})
    for v, spec in variants.items():
        if v in method_names():
            raise HarnessError(f"variant {v!r} has the name of a registered method", "rename the variant")
        get_method(spec["method"])
    check_settings(cfg)
    check_experiments(cfg)
    names = method_names() + list(variants) if "all" in cfg["methods"] else list(cfg["methods"])
    for n in list(names) + list(cfg.get("exclude_methods", [])):
        plugin_for(cfg, n)  # raises a clear error for unknown names
    names = [n for n in names if n not in cfg.get("exclude_methods", [])]
    # the dense baseline always runs (every speedup is relative to it), and so
    # do a method's requirements, and theirs; dense first
    names = with_requirements(cfg, [*names, "dense"])
    for n in names:  # what a plugin checks across methods (e.g. that the models it starts from are trained)
        plugin_for(cfg, n).check(n, settings_for(cfg, n), lambda m: settings_for(cfg, m))
    return sorted(dict.fromkeys(names), key=lambda n: (n != "dense", n))


def write_resolved_config(cfg: dict) -> str:
    """The resolved config as the file the workflow's jobs read
    (`--resolved-config`): `<work_dir>/config.json`, rewritten (atomically)
    only when the config changed. Its path never changes, so editing the config
    does not by itself make Snakemake rerun finished jobs (as before, outputs
    are redone by `--forcerun` or when their inputs change)."""
    from harness.storage import read_json, write_json

    path = Path(cfg["work_dir"]) / "config.json"
    if not path.is_file() or read_json(path) != json.loads(json.dumps(cfg)):
        write_json(path, cfg)
    return str(path)


def seeds(cfg: dict, method: str | None = None) -> list[int]:
    """The training seeds of `method` (its `method_seeds` entry, else the config's `seeds`): its train and
    evaluate jobs run once per seed."""
    chosen = (cfg.get("method_seeds") or {}).get(method) if method is not None else None
    return [int(s) for s in (chosen if chosen is not None else cfg["seeds"])]


def timed_seed(cfg: dict, seed: int) -> bool:
    """Whether training seed `seed`'s evaluate job times its points (`timing.seeds`; default: every seed).
    An untimed job records metrics and FLOPs only and takes no timing slot in the workflow."""
    return int(seed) in cfg["timing"].get("seeds", [int(seed)])


def all_seeds(cfg: dict) -> list[int]:
    """Every training seed some method runs at (a model at any of them may be trained as a requirement)."""
    extra = [s for listed in (cfg.get("method_seeds") or {}).values() for s in listed]
    return sorted({int(s) for s in [*cfg["seeds"], *extra]})


def check_method_seeds(cfg: dict, methods: list[str]) -> None:
    """`method_seeds` names methods that exist (registered ones or the config's variants)."""
    known = set(method_names()) | set(cfg.get("variants") or {}) | set(methods)
    unknown = [m for m in (cfg.get("method_seeds") or {}) if m not in known]
    if unknown:
        raise HarnessError(f"method_seeds names {unknown}, which is not a method or variant",
                           f"use some of: {', '.join(methods)}")
    run_at = all_seeds(cfg)
    stray = sorted(set(cfg["timing"].get("seeds") or []) - set(run_at))
    if stray:
        raise HarnessError(f"timing.seeds names training seeds {stray} that no method runs at",
                           f"use some of the config's seeds {run_at} (or drop timing.seeds to time every seed)")


def check_precision_methods(cfg: dict, methods: list[str]) -> None:
    """`eval.precision_methods` and a list `eval.precision_points` name methods that exist."""
    known = set(method_names()) | set(cfg.get("variants") or {}) | set(methods)
    ev = cfg["eval"]
    for key in ("precision_methods", "precision_points"):
        named = ev.get(key)
        unknown = [m for m in named if m not in known] if isinstance(named, list) else []
        if unknown:
            raise HarnessError(f"eval.{key} names {unknown}, which is not a method or variant",
                               f"use some of: {', '.join(methods)}")


def done_path(cfg: dict, task: str, method: str, seed: int) -> Path:
    """A trained method's marker, in its seed's model folder
    (`<work_dir>/models/<task>/<method>/seed<s>/done.json`)."""
    return Path(cfg["work_dir"]) / "models" / task / method / seed_dir(seed) / "done.json"


def point_names(cfg: dict, task: str, method: str) -> list[str]:
    """The points a method trains as separate jobs on a task (its plugin's
    `train_points`; none where the method cannot serve the task)."""
    plugin, spec = plugin_for(cfg, method), get_task(task)
    if plugin.exclusion(spec):
        return []
    return list(plugin.train_points(settings_for(cfg, method), spec))


def pointwise_methods(cfg: dict, tasks: list[str], methods: list[str]) -> list[str]:
    """The methods trained point by point (a `train_point` job per point and a
    `gather_points` step) on some task; the others train in one `train` job."""
    return [m for m in methods if any(point_names(cfg, t, m) for t in tasks)]


def any_of(names) -> str:
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    names = sorted(names)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def point_files(cfg: dict, task: str, method: str, seed: int) -> list[str]:
    from harness.run.points import point_file

    return [str(point_file(done_path(cfg, task, method, seed).parent, n)) for n in point_names(cfg, task, method)]


def required_models(cfg: dict, task: str, method: str, seed: int) -> list[str]:
    """The models `method` starts from, trained with the same seed."""
    return [str(done_path(cfg, task, r, seed)) for r in requirements(cfg, method)]


def evaluate_inputs(cfg: dict, task: str, method: str, seed: int) -> list[str]:
    """A point's model, and the dense model (same seed) it is timed side by side with."""
    return list(dict.fromkeys([str(done_path(cfg, task, method, seed)), str(done_path(cfg, task, "dense", seed))]))


def runs_on(cfg: dict, task: str, method: str) -> bool:
    """Whether `method` is evaluated on `task`: everywhere, unless a variant
    names its `tasks`, or `task_methods.<task>` lists the methods of that task
    (dense and what they start from always run beside them)."""
    variant = cfg.get("variants", {}).get(method)
    if variant and variant.get("tasks") and task not in variant["tasks"]:
        return False
    only = (cfg.get("task_methods") or {}).get(task)
    if only is None or method == "dense":
        return True
    return method in with_requirements(cfg, only)


def check_task_methods(cfg: dict, tasks: list[str], methods: list[str]) -> None:
    """`task_methods` names registered tasks and methods that exist (registered ones or the config's
    variants). A task or method the run leaves out (e.g. `--config tasks=[mr]` or `methods=[dense, ltp]`)
    is simply not run: narrowing a profile from the command line needs no edit of its task_methods."""
    from harness.data.tasks import TASKS

    known = set(method_names()) | set(cfg.get("variants") or {}) | set(methods)
    for task, names in (cfg.get("task_methods") or {}).items():
        if task not in TASKS:
            raise HarnessError(f"task_methods names {task!r}, which is not a task",
                               f"use one of: {', '.join(tasks)} (the tasks this profile runs)")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise HarnessError(f"task_methods.{task} names {unknown}, which is not a method or variant",
                               f"use some of: {', '.join(methods)}")


def all_manifests(cfg: dict) -> list[str]:
    """Every evaluate job's manifest: each task, method it runs and training seed."""
    return [
        str(manifest_path(cfg["results_dir"], t, m, s))
        for t in resolve_tasks(cfg)
        for m in resolve_methods(cfg)
        if runs_on(cfg, t, m)
        for s in seeds(cfg, m)
    ]


def all_lengths(cfg: dict) -> list[str]:
    return [str(lengths_path(cfg["results_dir"], t)) for t in resolve_tasks(cfg)]


def reference_outputs(cfg: dict) -> list[str]:
    """The Hugging Face reference fine-tunes the config asks for (`reference_seeds`), one per task and seed."""
    return [str(Path(cfg["results_dir"]) / "reference" / t / f"{seed_dir(s)}.json")
            for t in resolve_tasks(cfg) for s in cfg.get("reference_seeds") or []]


def benchmark_outputs(cfg: dict) -> list[str]:
    """Benchmark files the configured experiments need."""
    kinds = {e["kind"] for e in cfg.get("experiments", {}).values()}
    return [str(Path(cfg["results_dir"]) / "benchmarks" / "selection_cost.json")] if "selection_cost" in kinds else []
