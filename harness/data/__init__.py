"""Data: what a task is, where its examples come from, how they become padded batches.

tasks -> sources (files in the data directory, packages, the hub) -> splits
-> encoding (token ids, once) -> padding (the three protocols); lengths holds
the length statistics of LTP's Table 2.
"""
