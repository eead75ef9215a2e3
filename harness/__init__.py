"""The harness: reproduce efficient-BERT inference methods under one protocol.

Flow: dataset -> tokenize -> padding protocol -> encoder under a method's
policy -> per-sample trace -> metrics + analytic FLOPs + timings -> one result
record -> tables and figures.
"""
__version__ = "0.1.0"
