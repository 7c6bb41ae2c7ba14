"""A fair round-robin arbiter."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from .._util import CheckedComponent

__all__ = ["RoundRobinArbiter", "arbitrate"]


class RoundRobinArbiter(CheckedComponent):
    """One-hot grant among ``count`` requests, starting after the last index granted.

    The grant is combinational (same cycle as the requests). The pointer moves past the
    winner at the clock edge of a cycle with a grant and ``advance`` high; an arbiter whose
    grant may not be used (a downstream stage refused it) leaves ``advance`` low, so that no
    requester loses its turn and none starves while the others keep being served. At reset
    the lowest request wins.

    Parameters
    ----------
    count : int
        Requesters (>= 1).

    Members
    -------
    requests : ``In(count)``
    grant : ``Out(count)``
        At most one bit, only among ``requests``.
    advance : ``In(1, init=1)``
        Move the pointer past this cycle's winner (default: whenever there is one).

    Raises
    ------
    TypeError
        If ``count`` is not a positive integer.
    """

    def __init__(self, count: int):
        self._count = count
        super().__init__({"requests": In(count), "grant": Out(count), "advance": In(1, init=1)})

    @classmethod
    def check(cls, count: object) -> None:
        if type(count) is not int or count < 1:
            raise TypeError(f"Arbiter count must be a positive integer, not {count!r}")

    @property
    def count(self) -> int:
        return self._count

    def elaborate(self, platform):
        m = Module()
        n = self._count
        # keep: one grant wire per arbiter in the netlist (a hint to synthesis; the ECP5 LUT
        # count is the same within a few LUTs without it).
        grant = Signal(n, attrs={"keep": 1})
        m.d.comb += self.grant.eq(grant)
        if n == 1:
            m.d.comb += grant.eq(self.requests)
            return m
        # prio: the indices after the last winner (none at reset: the lowest request wins).
        prio = Signal(n)
        above = Signal(n)
        m.d.comb += above.eq(self.requests & prio)
        chosen = Signal(n)
        m.d.comb += chosen.eq(Mux(above != 0, above, self.requests))
        m.d.comb += grant.eq(Cat(chosen[k] & ~chosen[:k].any() for k in range(n)))  # lowest bit
        with m.If((grant != 0) & self.advance):
            m.d.sync += prio.eq(Cat(grant[:k].any() for k in range(n)))
        return m


def arbitrate(m: Module, name: str, requests, *, advance=None) -> Signal:
    """Add a :class:`RoundRobinArbiter` over ``requests`` (a value of one bit per requester)
    to ``m`` as submodule ``name``; return its grant. ``advance``: when the pointer may move
    (default: whenever there is a winner)."""
    arb = RoundRobinArbiter(len(requests))
    m.submodules[name] = arb
    m.d.comb += arb.requests.eq(requests)
    if advance is not None:
        m.d.comb += arb.advance.eq(advance)
    return arb.grant
