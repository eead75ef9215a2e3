"""Count the host syncs a forward pass would make on a GPU, on any device.

A host sync (the CPU waiting for the GPU to drain its queue) costs tens of
microseconds per call on a GPU and serialises the launch pipeline: a pruner
that syncs three times per layer while the dense model never does is timed
at a disadvantage that has nothing to do with its method. On a CPU nothing
waits, so the cost is invisible where this harness is developed; this module
makes it countable there.

`count_host_syncs` runs a callable under a `TorchFunctionMode` and counts
every tensor operation that must read a device value back to the host before
it can return: `.item()`, `bool()/int()/float()` of a tensor, `.tolist()`,
`.cpu()`/`.numpy()`, `nonzero` and `argwhere` (the output size depends on the
data), `masked_select`, `unique`, and indexing with a boolean mask. These are
the operations `torch.cuda.set_sync_debug_mode` reports on a GPU (the CUDA
test cross-checks the two there). Creating a device tensor from host data is
a host-to-device copy, which does not wait for the GPU, and is not counted.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode

_SYNCING = {
    torch.Tensor.item: "item",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__int__: "int",
    torch.Tensor.__float__: "float",
    torch.Tensor.__index__: "index",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.nonzero: "nonzero",
    torch.nonzero: "nonzero",
    torch.Tensor.argwhere: "argwhere",
    torch.argwhere: "argwhere",
    torch.Tensor.masked_select: "masked_select",
    torch.masked_select: "masked_select",
    torch.Tensor.unique: "unique",
    torch.unique: "unique",
}
_INDEXING = {torch.Tensor.__getitem__: "bool_index", torch.Tensor.__setitem__: "bool_index_put"}


def _has_bool_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool and i.ndim > 0 for i in items)


class HostSyncCounter(TorchFunctionMode):
    """Counts syncing tensor operations by kind while active (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kind = _SYNCING.get(func)
        if kind is None and func in _INDEXING and len(args) > 1 and _has_bool_index(args[1]):
            kind = _INDEXING[func]
        if kind is not None:
            self.counts[kind] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count_host_syncs(fn: Callable[[], object]) -> Counter[str]:
    """Run `fn()` and return the syncing operations it made, by kind."""
    with HostSyncCounter() as counter:
        fn()
    return counter.counts
