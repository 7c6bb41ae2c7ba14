"""The tile: tile core (MAC + SRAM bank) on the local port of a 5-port router."""

from __future__ import annotations

from amaranth.hdl import Module, Shape, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import Config
from ._util import ConfiguredComponent, check_config
from .flit import Exit
from .mac import TileCore
from .phit import PhitRx
from .router import PORTS, Router, link_signature

__all__ = ["Tile", "route_layout"]


def route_layout(config: Config) -> data.StructLayout:
    """Where a tile sends the output of a READ or SEND: carried in the request's ``data``.

    A READ's reply and a SEND's ADD flit go to tile (``x``, ``y``) on virtual channel ``vc``,
    leaving the array through edge port ``exit`` if that tile is on that edge (a reply to the
    host on the west edge of row ``y``: ``x = 0, exit = WEST``), else delivered to the tile.
    """
    return data.StructLayout({
        "x": unsigned(config.x_width),
        "y": unsigned(config.y_width),
        "exit": Exit,
        "vc": unsigned(config.vc_width),
    })


def route_width(config: Config) -> int:
    return Shape.cast(route_layout(config)).width


class Tile(ConfiguredComponent):
    """One tile of the array: a :class:`~wafertile.hdl.mac.TileCore` behind a
    :class:`~wafertile.hdl.router.Router`.

    Flits addressed to this tile leave the router's local port into the core, whatever their
    virtual channel. The core's output flits (READ replies, SEND's ADD flits) enter the router's
    local port with a unicast header built from the request's ``data`` field, read as a
    :func:`route_layout` (the core echoes it on ``o_tag``); the core waits while that VC's local
    input buffer is full.

    Coordinates are inputs, so one Verilog module serves every tile of an array.

    Members
    -------
    x, y : In
        This tile's coordinates.
    in_n, in_e, in_s, in_w : In(link_signature(config))
    out_n, out_e, out_s, out_w : Out(link_signature(config))
        The four mesh links.
    mac_done, mac_skipped, error : Out(1)
        The core's MAC pulses and sticky error (for utilization counters and debug).
    """

    def __init__(self, config: Config):
        check_config(self, config)
        members = {"x": In(unsigned(config.x_width)), "y": In(unsigned(config.y_width))}
        for p in PORTS[1:]:
            members[f"in_{p}"] = In(link_signature(config))
        for p in PORTS[1:]:
            members[f"out_{p}"] = Out(link_signature(config))
        members.update({"mac_done": Out(1), "mac_skipped": Out(1), "error": Out(1)})
        super().__init__(config, members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        m.submodules.router = router = Router(cfg)
        m.submodules.core = core = TileCore(cfg)
        m.d.comb += [router.x.eq(self.x), router.y.eq(self.y)]
        for p in PORTS[1:]:
            wiring.connect(m, wiring.flipped(getattr(self, f"in_{p}")),
                           getattr(router, f"in_{p}"))
            wiring.connect(m, getattr(router, f"out_{p}"),
                           wiring.flipped(getattr(self, f"out_{p}")))

        # With phits, the router's local output reaches the core through a deserializer
        # (hdl/phit.py); the lite router's local input takes whole flits.
        to_core, from_core = router.out_l, router.in_l
        if cfg.phits > 1:
            m.submodules.rx = rx = PhitRx(cfg)
            wiring.connect(m, router.out_l, rx.i)
            to_core = rx.o

        # Router -> core. The router offers a flit only where ready[vc] is high; the core's
        # ready depends on its own state and on the router's local input (state), not on valid.
        m.d.comb += [
            core.i.valid.eq(to_core.valid),
            core.i.payload.eq(to_core.flit.payload),
            to_core.ready.eq(core.i.ready.replicate(cfg.num_vcs)),
        ]

        # Core -> router: a unicast to the route the request carried.
        route = data.View(route_layout(cfg), core.o_tag[:route_width(cfg)])
        header = from_core.flit.header
        m.d.comb += [
            from_core.valid.eq(core.o.valid),
            from_core.flit.payload.eq(core.o.payload),
            header.x0.eq(route.x), header.x1.eq(route.x),
            header.y0.eq(route.y), header.y1.eq(route.y),
            header.vc.eq(route.vc),
            header.exit.eq(route.exit),
            core.o.ready.eq(from_core.ready.bit_select(route.vc, 1)),
        ]
        m.d.comb += [self.mac_done.eq(core.mac_done), self.mac_skipped.eq(core.mac_skipped),
                     self.error.eq(core.error)]
        return m
