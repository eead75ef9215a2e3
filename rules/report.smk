# Tables and figures from the records alone (of every training seed: plan.all_manifests), each a declared output in the HTML
# report (`snakemake --report report.html`); `figures` rebuilds them on demand.


rule report:
    input:
        plan.all_manifests(CFG),
        plan.all_lengths(CFG),
        plan.benchmark_outputs(CFG),
        plan.reference_outputs(CFG),
    output:
        [report(o.path, caption=f"captions/{o.caption}.rst", category=o.category) for o in REPORT],
    log:
        f"{WORK}/logs/report.log",
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness report --resolved-config {params.config} > {log} 2>&1"


rule figures:
    """Tables and figures from the records already on disk; trains nothing."""
    log:
        f"{WORK}/logs/figures.log",
    params:
        config=CONFIG_FILE,
    shell:
        "python -m harness report --resolved-config {params.config} > {log} 2>&1"
