"""Running: the plan of a workflow, the context a method runs in (its data,
files and training recipe), the workflow's jobs, the Hugging Face reference
and the encoder benchmark. The fine-tuning loop and evaluation are `harness.train`'s."""
