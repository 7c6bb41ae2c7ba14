"""cocotb parts for the router link (valid, flit, ready per VC: :mod:`wafertile.hdl.noc.link`).

- :class:`LinkSource` offers whole flits (integer words) on a link into the DUT, one at a time,
  with optional pauses; a flit of VC ``v`` is taken in a cycle where ``ready[v]`` is high.
- :class:`LinkSink` takes flits from a link out of the DUT, raising ``ready`` per VC as its
  backpressure generator says, and checks the link rule: the DUT never offers a flit whose VC
  is not ready.
- :class:`LinkMonitor` only watches a link (transfers of either direction).

A link is named by its port prefix (``in_w`` on a router, ``w_in`` on an array or mesh top:
``<prefix>__valid``, ``__flit``, ``__ready``) and, on a grid top's packed group, an element
index (:func:`grid_link` finds both for a router position and port). Each part logs its
transfers at DEBUG level to ``cocotb.<dut>.<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ...config import Config
from ...hdl.flit import Port, field_slice, flit_layout
from ...hdl.grid import Grid, grid_ports, port_groups
from .env import Part, Source
from .pause import never
from .signals import Element

__all__ = ["LinkMonitor", "LinkSink", "LinkSource", "grid_inputs", "grid_link"]


def grid_link(config: Config, grid: Grid, x: int, y: int, port: Port, *, into: bool
              ) -> tuple[str, int]:
    """The (prefix, element) of router (x, y)'s ``port`` link on a grid top: ``into`` the
    fabric (a source drives it) or out of it (a sink takes it).

    Raises
    ------
    ValueError
        If (x, y) has no such port at the top (an inner side, or a local port of the array).
    """
    port = Port(port)
    for group in port_groups(config, grid):
        if group.port is port and group.into == into:
            edge_router = {Port.NORTH: y == 0, Port.SOUTH: y == config.rows - 1,
                           Port.WEST: x == 0, Port.EAST: x == config.cols - 1,
                           Port.LOCAL: True}[port]
            if edge_router:
                return group.name, group.element(config, x, y)
    raise ValueError(f"{grid.top} has no {port.name} port at ({x}, {y})")


def grid_inputs(config: Config, grid: Grid) -> list[str]:
    """Every input port of a grid top but the clock and reset: the ``valid`` of the groups
    into the fabric and the ``ready`` of the groups out of it. A :class:`~.env.TieOff` of
    them all, added before the sources and sinks, leaves every unused port quiet."""
    return [p["name"] for p in grid_ports(config, grid) if p["direction"] == "input"
            and p["name"] not in ("clk", "rst") and not p["name"].endswith("__flit")]


class _Link:
    """The three elements of a link, and how to read a flit's VC."""

    def __init__(self, dut, prefix: str, config: Config, *, index: int | None):
        self.name = prefix if index is None else f"{prefix}[{index}]"
        self.config = config
        self.valid = Element(getattr(dut, f"{prefix}__valid"), 1, index)
        self.flit = Element(getattr(dut, f"{prefix}__flit"), config.flit_width, index)
        self.ready = Element(getattr(dut, f"{prefix}__ready"), config.num_vcs, index)
        self._vc_at, vc_width = field_slice(flit_layout(config), "header.vc")
        self._vc_mask = (1 << vc_width) - 1

    def vc(self, word: int) -> int:
        """The VC of a flit word (from the flit layout)."""
        return (word >> self._vc_at) & self._vc_mask


class LinkSource(Source):
    """Offers flits on a link into the DUT: a flit of VC ``v`` is taken in a cycle where
    ``ready[v]`` is high.

    Parameters
    ----------
    dut, prefix, config
        The DUT, the link's port prefix (``in_w``, ``w_in``) and the configuration.
    index : int, optional
        The element of a packed group.
    pause : iterator of bool, optional
        Before offering each flit, skip the cycles for which it yields True.
    on_sent : callable, optional
        Called with each word in the cycle it is taken.
    name : str, optional
        The logger's name (default: the prefix and index).

    See :class:`~.env.Source` for ``send``, ``idle_now``, ``sent`` and ``stall_cycles``.
    """

    def __init__(self, dut, prefix: str, config: Config, *, index: int | None = None,
                 pause: Iterator[bool] | None = None,
                 on_sent: Callable[[int], None] | None = None, name: str = ""):
        self.link = _Link(dut, prefix, config, index=index)
        super().__init__(dut, name or self.link.name, self.link.valid, self.link.flit,
                         pause=pause, on_sent=on_sent)

    def accepts(self, word: int) -> bool:
        return bool(self.link.ready.get() >> self.link.vc(word) & 1)


class LinkSink(Part):
    """Takes flits from a link out of the DUT.

    Parameters
    ----------
    dut, prefix, config, index, name
        As :class:`LinkSource`.
    backpressure : iterator of bool, optional
        Per cycle and VC: True refuses that VC (ready low) in that cycle.
    on_received : callable, optional
        Called with each word in the cycle it is taken.

    Attributes
    ----------
    received : list of int
        Words taken, in order.
    protocol_errors : list of str
        Cycles where the DUT offered a flit on a VC that was not ready.
    """

    def __init__(self, dut, prefix: str, config: Config, *, index: int | None = None,
                 backpressure: Iterator[bool] | None = None,
                 on_received: Callable[[int], None] | None = None, name: str = ""):
        self.link = link = _Link(dut, prefix, config, index=index)
        super().__init__(dut, name or link.name)
        self.config = config
        self.valid, self.flit, self.ready, self.vc = link.valid, link.flit, link.ready, link.vc
        self.backpressure = backpressure if backpressure is not None else never()
        self.on_received = on_received
        self.received: list[int] = []
        self.protocol_errors: list[str] = []
        self.ready_now = 0

    def idle(self) -> None:
        self.ready.set(0)
        self.ready_now = 0

    def drive(self) -> None:
        r = 0
        for v in range(self.config.num_vcs):
            if not next(self.backpressure):
                r |= 1 << v
        if r != self.ready_now:
            self.ready.set(r)
            self.ready_now = r

    def sample(self) -> None:
        if not self.valid.get():
            return
        word = self.flit.get()
        vc = self.vc(word)
        if not self.ready_now >> vc & 1:
            self.protocol_errors.append(f"{self.name} offered {word:#x} on VC {vc}, which is "
                                        f"not ready")
            return
        self.received.append(word)
        self.log.debug("received %#x", word)
        if self.on_received is not None:
            self.on_received(word)


class LinkMonitor(Part):
    """Watches a link and records each transfer (``valid & ready[vc]``) in :attr:`seen`,
    calling ``on_transfer(word)``."""

    def __init__(self, dut, prefix: str, config: Config, *, index: int | None = None,
                 on_transfer: Callable[[int], None] | None = None, name: str = ""):
        link = _Link(dut, prefix, config, index=index)
        super().__init__(dut, name or link.name)
        self.valid, self.flit, self.ready, self.vc = link.valid, link.flit, link.ready, link.vc
        self.on_transfer = on_transfer
        self.seen: list[int] = []

    def sample(self) -> None:
        if not self.valid.get():
            return
        word = self.flit.get()
        if self.ready.get() >> self.vc(word) & 1:
            self.seen.append(word)
            if self.on_transfer is not None:
                self.on_transfer(word)
