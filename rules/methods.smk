# Train each method on each task (after the methods it starts from), then evaluate
# its operating points: metrics, FLOPs and wall-clock timed side by side with dense.
# A method whose points train independently (one model per lambda, per sparsity: its
# plugin's `train_points`) trains as one `train_point` job per point, side by side
# where cores or a cluster allow, each from the seed alone, joined by `gather_points`;
# the others (one model, or points that build on one another) train in one `train` job.
# Every train, train_point, gather_points and evaluate job runs once per training seed
# (the config's `seeds`, the {seed} wildcard: `seed<s>` in every path), so a cluster runs
# seeds side by side; a method starts from the models of the same seed.
# Every train and evaluate job also writes `<work_dir>/benchmarks/<job>.tsv` (snakemake's
# benchmark: wall seconds, a sampled max_rss in MB, ...) and ends its log with its exact peak
# memory, to size cluster memory requests.

POINTWISE = plan.pointwise_methods(CFG, TASKS, METHODS)


rule train:
    input:
        lambda w: plan.required_models(CFG, w.task, w.method, int(w.seed)),
    output:
        f"{WORK}/models/{{task}}/{{method}}/seed{{seed}}/done.json",
    wildcard_constraints:
        method=plan.any_of(set(METHODS) - set(POINTWISE)),
    threads: workflow.cores
    resources:
        gpu=CFG.get("resources", {}).get("gpu", 0),
        mem_mb=CFG.get("resources", {}).get("mem_mb", 4000),
    log:
        f"{WORK}/logs/train_{{task}}_{{method}}_seed{{seed}}.log",
    benchmark:
        f"{WORK}/benchmarks/train_{{task}}_{{method}}_seed{{seed}}.tsv"
    params:
        config=CONFIG_FILE,
    shell:
        "OMP_NUM_THREADS={threads} python -m harness train --resolved-config {params.config}"
        " --task {wildcards.task} --method {wildcards.method} --seed {wildcards.seed} 2> {log}"


rule train_point:
    input:
        lambda w: plan.required_models(CFG, w.task, w.method, int(w.seed)),
    output:
        f"{WORK}/models/{{task}}/{{method}}/seed{{seed}}/points/{{point}}.json",
    wildcard_constraints:
        method=plan.any_of(POINTWISE),
        point="[A-Za-z0-9_.=+-]+",
    threads: workflow.cores
    resources:
        gpu=CFG.get("resources", {}).get("gpu", 0),
        mem_mb=CFG.get("resources", {}).get("mem_mb", 4000),
    log:
        f"{WORK}/logs/train_{{task}}_{{method}}_seed{{seed}}_{{point}}.log",
    benchmark:
        f"{WORK}/benchmarks/train_{{task}}_{{method}}_seed{{seed}}_{{point}}.tsv"
    params:
        config=CONFIG_FILE,
    shell:
        "OMP_NUM_THREADS={threads} python -m harness train --resolved-config {params.config}"
        " --task {wildcards.task} --method {wildcards.method} --seed {wildcards.seed}"
        " --point '{wildcards.point}' 2> {log}"


rule gather_points:
    input:
        lambda w: plan.point_files(CFG, w.task, w.method, int(w.seed)),
    output:
        f"{WORK}/models/{{task}}/{{method}}/seed{{seed}}/done.json",
    wildcard_constraints:
        method=plan.any_of(POINTWISE),
    log:
        f"{WORK}/logs/gather_{{task}}_{{method}}_seed{{seed}}.log",
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness gather --resolved-config {params.config}"
        " --task {wildcards.task} --method {wildcards.method} --seed {wildcards.seed} 2> {log}"


rule evaluate:
    input:
        lambda w: plan.evaluate_inputs(CFG, w.task, w.method, int(w.seed)),
    output:
        f"{RESULTS}/manifests/{{task}}/{{method}}/seed{{seed}}.json",
    threads: CFG["timing"]["threads"]
    resources:
        # one timed job at a time; a seed that timing.seeds leaves untimed runs beside the others
        timing_slot=lambda w: int(plan.timed_seed(CFG, int(w.seed))),
        gpu=CFG.get("resources", {}).get("gpu", 0),
    log:
        f"{WORK}/logs/evaluate_{{task}}_{{method}}_seed{{seed}}.log",
    benchmark:
        f"{WORK}/benchmarks/evaluate_{{task}}_{{method}}_seed{{seed}}.tsv"
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness evaluate --resolved-config {params.config}"
        " --task {wildcards.task} --method {wildcards.method} --seed {wildcards.seed} 2> {log}"


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
