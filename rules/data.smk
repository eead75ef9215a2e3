# Token-length statistics of each task (LTP Table 2, Fig. 1), from the full splits.


rule lengths:
    output:
        f"{RESULTS}/lengths/{{task}}.json",
    log:
        f"{WORK}/logs/lengths_{{task}}.log",
    # `token_lengths` tokenizes 10,000 texts at a time and keeps only the counts: measured on 242k SST-2
    # texts (2.9M tokens), peak 324 MiB (1,112 MiB when tokenized at once, ~270 bytes per token, which
    # would be ~27 GB for Yelp's ~100M tokens). What remains is the raw texts and the datasets cache:
    # 8 GB for Yelp, 4 GB for the rest. A CPU job: it builds no model and uses no GPU.
    resources:
        mem_mb=lambda w: 8000 if w.task == "yelp_polarity" else 4000,
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness lengths --resolved-config {params.config} --task {wildcards.task} 2> {log}"


# Hugging Face's own fine-tune of the dense model (transformers' classes and example-script recipe, no harness
# encoder or loop) on the dense job's splits and hyperparameters, at each of `reference_seeds`: an independent
# check that the harness's dense baseline works (tables/dense_floors). Costs about one dense training job.
rule reference:
    output:
        f"{RESULTS}/reference/{{task}}/seed{{seed}}.json",
    threads: workflow.cores
    resources:
        gpu=CFG.get("resources", {}).get("gpu", 0),
        mem_mb=CFG.get("resources", {}).get("mem_mb", 4000),
    log:
        f"{WORK}/logs/reference_{{task}}_seed{{seed}}.log",
    params:
        config=CONFIG_FILE,
    shell:
        "OMP_NUM_THREADS={threads} python -m harness reference --resolved-config {params.config}"
        " --task {wildcards.task} --seed {wildcards.seed} --out {output} 2> {log}"
