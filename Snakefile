"""The harness workflow: lengths -> train -> evaluate -> summary, tables, figures.

Run `snakemake --profile profiles/<name>` (default, smoke, paper) or plain
`snakemake --cores N` for the default profile. Tasks and methods come from the
config and the method registry; nothing here lists methods.
`snakemake figures` rebuilds tables and figures from existing records only.
"""
import json
import shlex
import sys

from harness.config import load_profile, merge, validate
from harness.errors import HarnessError
from harness.run import plan as wf


try:
    # the profile's YAML (config/<profile>.yaml), then --configfile/--config on top
    CFG = validate(merge(load_profile(config.get("profile", "default")), config))
    TASKS = wf.resolve_tasks(CFG)
    METHODS = wf.resolve_methods(CFG)
except HarnessError as e:
    sys.exit(f"error: {e}")

R = CFG["results_dir"]
F = CFG["figures_dir"]
W = CFG["work_dir"]
CFG_ARG = shlex.quote(json.dumps(CFG, sort_keys=True))
GPU = CFG.get("resources", {}).get("gpu", 0)
MEM = CFG.get("resources", {}).get("mem_mb", 4000)

wildcard_constraints:
    task="[a-z0-9_]+",
    method="[a-z0-9_]+",

REPORT = [f"{R}/summary.csv", f"{R}/tables/baseline.csv", f"{R}/tables/length_stats.csv",
          f"{F}/length_histograms.png", f"{F}/length_histograms.pdf"]


localrules: all, figures


rule all:
    input:
        REPORT,


rule lengths:
    output:
        f"{R}/lengths/{{task}}.json",
    log:
        f"{W}/logs/lengths_{{task}}.log",
    shell:
        "python -m harness lengths --config-json {CFG_ARG} --task {wildcards.task} 2> {log}"


rule train:
    input:
        lambda w: wf.required_models(CFG, w.task, w.method),
    output:
        f"{W}/models/{{task}}/{{method}}/done.json",
    threads: workflow.cores
    resources:
        gpu=GPU,
        mem_mb=MEM,
    log:
        f"{W}/logs/train_{{task}}_{{method}}.log",
    shell:
        "OMP_NUM_THREADS={threads} python -m harness train --config-json {CFG_ARG}"
        " --task {wildcards.task} --method {wildcards.method} 2> {log}"


rule evaluate:
    input:
        lambda w: wf.evaluate_inputs(CFG, w.task, w.method),
    output:
        f"{R}/manifests/{{task}}/{{method}}.json",
    threads: CFG["timing"]["threads"]
    resources:
        timing_slot=1,
        gpu=GPU,
    log:
        f"{W}/logs/evaluate_{{task}}_{{method}}.log",
    shell:
        "python -m harness evaluate --config-json {CFG_ARG}"
        " --task {wildcards.task} --method {wildcards.method} 2> {log}"


rule selection_cost:
    output:
        f"{R}/benchmarks/selection_cost.json",
    threads: CFG["timing"]["threads"]
    resources:
        timing_slot=1,
    log:
        f"{W}/logs/selection_cost.log",
    shell:
        "python -m harness selection-cost --config-json {CFG_ARG} 2> {log}"


rule report:
    input:
        wf.all_manifests(CFG),
        wf.all_lengths(CFG),
        wf.benchmark_outputs(CFG),
    output:
        REPORT,
    log:
        f"{W}/logs/report.log",
    shell:
        "python -m harness report --config-json {CFG_ARG} > {log}"


rule figures:
    """Tables and figures from the records already on disk; trains nothing."""
    shell:
        "python -m harness report --config-json {CFG_ARG}"
