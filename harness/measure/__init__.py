"""Measurement: analytic FLOPs from traces (and their reference check), task
metrics, wall-clock timing, provenance, and the two stand-alone benchmarks."""
