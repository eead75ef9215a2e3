"""Running: the plan of a workflow, the context a method runs in, the
fine-tuning loop, deterministic inference, and the workflow's jobs."""
