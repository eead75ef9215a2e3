# Token-length statistics of each task (LTP Table 2, Fig. 1), from the full splits.


rule lengths:
    output:
        f"{RESULTS}/lengths/{{task}}.json",
    log:
        f"{WORK}/logs/lengths_{{task}}.log",
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness lengths --resolved-config {params.config} --task {wildcards.task} 2> {log}"
