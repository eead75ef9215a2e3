"""Command line: `python -m harness <command>`.

Commands: list, plan, check-config, prefetch, train, gather, evaluate, lengths, selection-cost,
report, compare, reference.

Every user-facing failure is a `HarnessError`: one message naming the problem
and the fix, exit status 2, no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness.errors import HarnessError


def _config(args) -> dict:
    from harness.config import load_config, validate

    if getattr(args, "resolved_config", None):  # written by the workflow (harness.run.plan.write_resolved_config)
        with open(args.resolved_config) as f:
            return validate(json.load(f))
    return load_config(args.profile, args.config, args.configfile)


def cmd_list(args) -> None:
    from harness.config import profile_names
    from harness.data.sources import locate
    from harness.data.tasks import TASKS
    from harness.plugin.registry import get_method, method_names

    cfg = _config(args)
    print(f"data directory: {cfg.get('data_dir') or '(none: set data_dir or HARNESS_DATA_DIR)'}")
    print("\ntasks (where each would load from):")
    for name, spec in TASKS.items():
        print(f"  {name:15s} {spec.primary_metric:9s} len {spec.seq_len:<4d} {locate(name, cfg.get('data_dir'))}")
    print("\nmethods:")
    for name in method_names():
        plugin = get_method(name)
        print(f"  {name:15s} {plugin.summary}")
        if args.settings:
            from harness.plugin.settings import describe

            for key, kind, default in describe(plugin.Settings):
                print(f"      {key} ({kind}) = {default!r}")
        if args.deviations:
            for line in plugin.deviations:
                print(f"      - {line}")
    print("\nprofiles:")
    from harness.config import load_profile

    for name in profile_names():
        desc = " ".join(str(load_profile(name).get("description", "")).split())
        print(f"  {name:15s} {desc}")


def cmd_plan(args) -> None:
    from harness.run.plan import resolve_methods, resolve_tasks

    cfg = _config(args)
    print(json.dumps({"tasks": resolve_tasks(cfg), "methods": resolve_methods(cfg)}))


def _print_peak_memory() -> None:
    """The job's peak resident memory, exact (the kernel's high-water mark), into its log
    (stderr): what a cluster memory request must cover. Snakemake's benchmark files sample it."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    mib = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    print(f"peak resident memory: {mib:.0f} MiB", file=sys.stderr)


def cmd_train(args) -> None:
    from harness.run.jobs import train_job, train_point_job

    if args.point is not None:
        print(train_point_job(_config(args), args.task, args.method, args.point, args.seed))
    else:
        print(train_job(_config(args), args.task, args.method, args.seed))
    _print_peak_memory()


def cmd_gather(args) -> None:
    from harness.run.jobs import gather_points_job

    print(gather_points_job(_config(args), args.task, args.method, args.seed))


def cmd_evaluate(args) -> None:
    from harness.run.jobs import evaluate_job

    print(evaluate_job(_config(args), args.task, args.method, args.seed))
    _print_peak_memory()


def cmd_lengths(args) -> None:
    from harness.run.jobs import lengths_job

    print(lengths_job(_config(args), args.task))


def cmd_report(args) -> None:
    from harness.report.build import build_report
    from harness.run.plan import resolve_methods

    cfg = _config(args)
    for path in build_report(cfg, resolve_methods(cfg)):
        print(path)


def cmd_selection_cost(args) -> None:
    from harness.run.jobs import selection_cost_job

    print(selection_cost_job(_config(args)))


def cmd_reference(args) -> None:
    from harness.run.hf_reference import reference_job

    cfg = _config(args)
    print(reference_job(cfg, args.task, cfg["seeds"][0] if args.seed is None else args.seed, args.out))
    _print_peak_memory()


def cmd_compare(args) -> int:
    from harness.report.compare import report

    text, same = report(args.first, args.second)
    print(text)
    return 0 if same else 1


def cmd_check(args) -> None:
    from harness.run.plan import (check_method_seeds, check_precision_methods, check_task_methods, resolve_methods,
                                  resolve_tasks)

    cfg = _config(args)
    methods = resolve_methods(cfg)
    check_task_methods(cfg, resolve_tasks(cfg), methods)
    check_method_seeds(cfg, methods)
    check_precision_methods(cfg, methods)
    print(f"config {cfg['profile']} is valid")


def cmd_prefetch(args) -> None:
    from harness.run.prefetch import prefetch

    prefetch(_config(args), dry_run=args.dry_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")

    def add(name, fn, help_, task=False, method=False, seed=False):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--profile", default="default", help="config/<profile>.yaml (default: default)")
        p.add_argument("--configfile", help="a config file instead of a profile")
        p.add_argument("--config", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="overrides, e.g. train.epochs=1")
        p.add_argument("--resolved-config", metavar="FILE", help="a resolved config file written by the workflow")
        if task:
            p.add_argument("--task", required=True)
        if method:
            p.add_argument("--method", required=True)
        if seed:
            p.add_argument("--seed", type=int, default=None,
                           help="the training seed, one of the config's `seeds` (default: its first)")
        p.set_defaults(fn=fn)
        return p

    lister = add("list", cmd_list, "list tasks (and where they load from), methods and profiles")
    lister.add_argument("--settings", action="store_true", help="each method's settings, types and defaults")
    lister.add_argument("--deviations", action="store_true", help="how each method departs from its original")
    add("plan", cmd_plan, "the tasks and methods a profile would run (JSON)")
    add("check-config", cmd_check, "validate a profile")
    fetcher = add("prefetch", cmd_prefetch, "download the hub models, tokenizers and datasets a profile needs, "
                  "once, into the Hugging Face cache (jobs then run with HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1)")
    fetcher.add_argument("--dry-run", action="store_true", help="only list what would be downloaded (no network)")
    trainer = add("train", cmd_train, "train one method on one task (every point, or --point)", task=True, method=True,
                  seed=True)
    trainer.add_argument("--point", help="only this one of the points the method trains independently")
    add("gather", cmd_gather, "join a method's trained points into its points manifest and done.json",
        task=True, method=True, seed=True)
    add("evaluate", cmd_evaluate, "evaluate, count FLOPs, time, write records", task=True, method=True, seed=True)
    add("lengths", cmd_lengths, "write a task's token-length record", task=True)
    add("selection-cost", cmd_selection_cost, "benchmark top-k vs threshold token selection (LTP Fig. A.1)")
    add("report", cmd_report, "summary, tables and figures from existing records")
    ref = add("reference", cmd_reference, "fine-tune the dense model with Hugging Face's own model classes and the "
              "example scripts' recipe on the dense job's splits; metrics to --out (JSON)", task=True)
    ref.add_argument("--seed", type=int, help="the training seed of the dense job to mirror (default: the config's first seed)")
    ref.add_argument("--out", required=True, metavar="PATH", help="where the JSON goes")
    cmp = sub.add_parser("compare", help="compare two runs' records field by field (exit 1 if they differ)")
    cmp.add_argument("first")
    cmp.add_argument("second")
    cmp.set_defaults(fn=cmd_compare)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["list", *(argv or [])])
    try:
        return args.fn(args) or 0
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
