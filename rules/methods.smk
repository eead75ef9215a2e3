# Train each method on each task (after the methods it starts from), then evaluate
# its operating points: metrics, FLOPs and wall-clock timed side by side with dense.


rule train:
    input:
        lambda w: plan.required_models(CFG, w.task, w.method),
    output:
        f"{WORK}/models/{{task}}/{{method}}/done.json",
    threads: workflow.cores
    resources:
        gpu=CFG.get("resources", {}).get("gpu", 0),
        mem_mb=CFG.get("resources", {}).get("mem_mb", 4000),
    log:
        f"{WORK}/logs/train_{{task}}_{{method}}.log",
    params:
        config=CONFIG_FILE,
    shell:
        "OMP_NUM_THREADS={threads} python -m harness train --resolved-config {params.config}"
        " --task {wildcards.task} --method {wildcards.method} 2> {log}"


rule evaluate:
    input:
        lambda w: plan.evaluate_inputs(CFG, w.task, w.method),
    output:
        f"{RESULTS}/manifests/{{task}}/{{method}}.json",
    threads: CFG["timing"]["threads"]
    resources:
        timing_slot=1,
        gpu=CFG.get("resources", {}).get("gpu", 0),
    log:
        f"{WORK}/logs/evaluate_{{task}}_{{method}}.log",
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness evaluate --resolved-config {params.config}"
        " --task {wildcards.task} --method {wildcards.method} 2> {log}"


rule selection_cost:
    output:
        f"{RESULTS}/benchmarks/selection_cost.json",
    threads: CFG["timing"]["threads"]
    resources:
        timing_slot=1,
    log:
        f"{WORK}/logs/selection_cost.log",
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness selection-cost --resolved-config {params.config} 2> {log}"
