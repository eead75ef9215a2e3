"""Measurement: analytic FLOPs from traces (and their reference check), task
metrics, wall-clock timing, provenance, and the selection-cost benchmark (the encoder benchmark is `harness.run`'s)."""
