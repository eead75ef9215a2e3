"""Training and evaluating a model, below the plugin API and above data, model and measure.

Fine-tuning (`finetune`: the loop, its losses, its resumable state in `resume`) and evaluation
(`inference`: a model over encoded examples to a trace, `spans` for SQuAD's answers) are what
every method's recipe and the workflow's jobs share. They know nothing of plugins, jobs or
files of a run: `harness.plugin` offers them to methods, `harness.run` to jobs.
"""
