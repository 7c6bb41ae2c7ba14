"""What a formal check is: a harness around one block, a proof mode and a depth.

A :class:`Harness` is an Amaranth elaboratable that instantiates the block under test, drives
its inputs from free values (``AnySeq`` / ``AnyConst``) constrained only by assumptions, and
states the block's properties (:class:`~.props.Properties`). It runs in a reset-less ``sync``
domain: every register starts at its reset value (the state right after reset) and the
solver picks every input in every cycle. The hardware under test is the synthesized RTL
unchanged; the harness only wraps it.

A :class:`Check` names a harness, the configuration it is built for, and how it is run:
``"prove"`` (k-induction: a property that passes holds in every reachable state) or
``"bmc"`` (bounded model checking: no input sequence of up to ``depth`` cycles breaks it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from amaranth.hdl import ClockDomain, Elaboratable, Module

from ..config import Config
from .props import Properties

__all__ = ["MODES", "Check", "Harness"]

#: How a check is run: k-induction or bounded model checking.
MODES = ("prove", "bmc")


class Harness(Elaboratable):
    """A formal harness around one block (abstract: subclasses implement :meth:`build`).

    Parameters
    ----------
    config : Config
        The configuration of the block under test.

    Members
    -------
    clk : Signal
        The clock of the harness's reset-less ``sync`` domain (the one port of its RTLIL).
    props : Properties
        The harness's properties, filled in when it is elaborated.
    """

    def __init__(self, config: Config):
        self.config = config
        self._domain = ClockDomain("sync", reset_less=True)
        self.props: Properties | None = None

    @property
    def clk(self):
        return self._domain.clk

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self._domain
        self.props = Properties(m)
        self.build(m, self.props)
        return m

    def build(self, m: Module, props: Properties) -> None:
        """Add the block under test, its environment and its properties to ``m``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Check:
    """One formal check: a harness for ``config``, run in ``mode`` to ``depth``.

    Members
    -------
    name : str
        Unique among the checks of a run (file and directory names).
    block : str
        The block it verifies (``wafertile formal --block``).
    config : Config
    make : callable
        ``make(config)`` returns the :class:`Harness`.
    mode : str
        ``"prove"`` or ``"bmc"`` (:data:`MODES`).
    depth : int
        Induction length (``prove``) or bound in cycles (``bmc``).
    cover_depth : int
        Bound of the cover run (0: the harness has no covers).
    why : str
        Why this mode and depth (shown in the report and ``docs/formal.md``).
    expect_fail : bool
        A mutation: the check must fail with a counterexample.
    map_memories : bool
        Turn memories into registers before the solver sees them (``memory_map``: faster
        for the small LUT RAMs of the routers) instead of SMT arrays.
    """

    name: str
    block: str
    config: Config
    make: Callable[[Config], Harness] = field(compare=False)
    mode: str
    depth: int
    cover_depth: int = 0
    why: str = ""
    expect_fail: bool = False
    map_memories: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"check mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if type(self.depth) is not int or self.depth < 1:
            raise ValueError(f"check depth must be a positive integer, not {self.depth!r}")
