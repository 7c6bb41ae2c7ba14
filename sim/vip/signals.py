"""Access to one element of a packed vector port (the grid tops' edge and local groups), or
to a whole port.

Several parts drive different elements of one vector input (``w_in__flit`` carries every
row's flit): writes go through one shared value per signal, so that parts writing in the
same cycle never undo each other. Reads of one signal are cached for one simulation time step
(parts read in the ReadOnly phase, where values are final).
"""

from __future__ import annotations

from cocotb.simtime import get_sim_time

__all__ = ["Element", "forget_writes"]

# id(handle) -> [handle, value driven by the parts]
_WRITES: dict[int, list] = {}
# id(handle) -> (handle, sim time of the read, value)
_READS: dict[int, tuple] = {}


def forget_writes() -> None:
    """Start a new test: drop the values the parts of an earlier test drove."""
    _WRITES.clear()
    _READS.clear()


class Element:
    """Element ``index`` (``width`` bits from ``index * width``) of ``handle``, or all of it
    (``index=None``)."""

    def __init__(self, handle, width: int, index: int | None = None):
        self.handle = handle
        self.width = width
        self.shift = 0 if index is None else index * width
        self.mask = (1 << width) - 1

    def set(self, value: int) -> None:
        entry = _WRITES.setdefault(id(self.handle), [self.handle, 0])
        entry[1] = (entry[1] & ~(self.mask << self.shift)) | ((value & self.mask) << self.shift)
        self.handle.value = entry[1]

    def get(self) -> int:
        now = get_sim_time("step")
        cached = _READS.get(id(self.handle))
        if cached is None or cached[1] != now or cached[0] is not self.handle:
            cached = (self.handle, now, int(self.handle.value))
            _READS[id(self.handle)] = cached
        return (cached[2] >> self.shift) & self.mask
