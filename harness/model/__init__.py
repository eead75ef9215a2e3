"""Model: the harness's own BERT, the policy hooks methods plug into, and traces.

backbone (where weights come from) -> encoder (layers that call a policy) ->
policy (token selection, early exit) and selection (the shared selection
kernels) -> structure (physical slicing) -> trace (what ran, per example).
"""
