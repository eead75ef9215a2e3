# Token-length statistics of each task (LTP Table 2, Fig. 1), from the full splits.


rule lengths:
    output:
        f"{RESULTS}/lengths/{{task}}.json",
    log:
        f"{WORK}/logs/lengths_{{task}}.log",
    # Tokenizing a task's full, untruncated texts peaks near 230 bytes per token (measured with the fast
    # tokenizer): Yelp's 560k reviews (~100M tokens) about 21 GB; MNLI, QQP and SQuAD 16-21M tokens, under
    # 5 GB; the rest under 2 GB. A CPU job: it builds no model and uses no GPU.
    resources:
        mem_mb=lambda w: {"yelp_polarity": 40000, "mnli": 8000, "qqp": 8000, "squad": 8000,
                          "squad_v2": 8000}.get(w.task, 4000),
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness lengths --resolved-config {params.config} --task {wildcards.task} 2> {log}"
