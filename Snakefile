"""The harness workflow: lengths -> train (or train_point + gather_points) -> evaluate -> report.

`snakemake --cores N` runs the `default` profile, `snakemake --profile profiles/<name>`
another one (smoke, offline, paper); `--config key=value` overrides either. Tasks and
methods come from the config and the method registry: nothing here lists methods.
`snakemake figures` rebuilds the tables and figures from the records on disk, and
`snakemake --report report.html` bundles them into one offline HTML report.
"""
import sys

from snakemake.utils import min_version

min_version("9.0")

from harness.config import resolve_workflow_config
from harness.errors import HarnessError
from harness.report.build import planned_outputs
from harness.run import plan

try:
    # config/<profile>.yaml (what `extends` names resolved), then --configfile / --config on top
    CFG = resolve_workflow_config(config)
    TASKS = plan.resolve_tasks(CFG)
    METHODS = plan.resolve_methods(CFG)
    plan.check_task_methods(CFG, TASKS, METHODS)
    plan.check_method_seeds(CFG, METHODS)
    plan.check_precision_methods(CFG, METHODS)
except HarnessError as e:
    sys.exit(f"error: {e}")

# jobs read the resolved config from this file, not from the command line
CONFIG_FILE = plan.write_resolved_config(CFG)
RESULTS = CFG["results_dir"]
WORK = CFG["work_dir"]
REPORT = planned_outputs(CFG, METHODS)


wildcard_constraints:
    task="[a-z0-9_]+",
    method="[a-z0-9_]+",
    seed="[0-9]+",


include: "rules/data.smk"
include: "rules/methods.smk"
include: "rules/report.smk"


localrules:
    all,
    figures,
    gather_points,  # reads the point jobs' JSON files: seconds, no data, no model


rule all:
    input:
        [o.path for o in REPORT],
