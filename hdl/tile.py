"""The tile: the tile core (MAC + SRAM bank) on the local port of a 5-port router."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import Config
from ._util import ConfiguredComponent
from .core import TileCore
from .core.ops import matches
from .counters import count_events, event_bits
from .flit import MESH_PORTS, Port, finish_layout, handoff_layout, route_layout
from .noc import LinkSignature, PhitRx, make_router
from .noc.phit import phase_counter

__all__ = ["Tile"]


class Tile(ConfiguredComponent):
    """One tile of the array: a :class:`~wafertile.hdl.core.TileCore` behind the router of
    ``config.router_arch`` (:func:`~wafertile.hdl.noc.make_router`).

    Flits addressed to this tile leave the router's local port into the core, whatever their
    virtual channel. The core's output flits (READ replies, SEND's ADD flits) enter the router's
    local port with a unicast header built from the request's ``data`` field, read as a
    :func:`~wafertile.hdl.flit.route_layout` (the core echoes it on ``o_tag``); the core waits
    while that VC's local input buffer is full. A FINISH's (or FINISH_BACK's) WRITE_ACT goes to
    the row rectangle in its ``data``; a GRAD's output (an output whose route is ``"down"``,
    :class:`~wafertile.hdl.core.ops.Emit`) to the tile below on VC 0, or, from the last row,
    out of the array's south edge.

    Coordinates are inputs, so one Verilog module serves every tile of an array.

    Members
    -------
    x, y : ``In``
        This tile's coordinates.
    in_n, in_e, in_s, in_w : ``In(LinkSignature.between_routers(config))``
    out_n, out_e, out_s, out_w : ``Out(LinkSignature.between_routers(config))``
        The four mesh links.
    mac_done, mac_skipped, act_written, error : ``Out(1)``
        The core's MAC and activation-write pulses and its sticky error (for utilization
        counters, the host's completion counts, and debug).
    events : ``Out(event_bits())``
        With ``config.counters``: the tile's event counters (:mod:`.counters`).

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    """

    def __init__(self, config: Config):
        link = LinkSignature.between_routers(config)
        members = {"x": In(unsigned(config.x_width)), "y": In(unsigned(config.y_width))}
        for p in MESH_PORTS:
            members[f"in_{p.letter}"] = In(link)
        for p in MESH_PORTS:
            members[f"out_{p.letter}"] = Out(link)
        members.update({"mac_done": Out(1), "mac_skipped": Out(1), "act_written": Out(1),
                        "error": Out(1)})
        if config.counters:
            members["events"] = Out(event_bits())
        super().__init__(config, members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        m.submodules.router = router = make_router(cfg)
        m.submodules.core = core = TileCore(cfg)
        m.d.comb += [router.x.eq(self.x), router.y.eq(self.y)]
        for p in MESH_PORTS:
            wiring.connect(m, wiring.flipped(getattr(self, f"in_{p.letter}")),
                           getattr(router, f"in_{p.letter}"))
            wiring.connect(m, getattr(router, f"out_{p.letter}"),
                           wiring.flipped(getattr(self, f"out_{p.letter}")))

        # With phits, the router's local output reaches the core through a deserializer;
        # the lite router's local input takes whole flits.
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

        # Core -> router: a READ's reply or a SEND's ADD is a unicast to the route the request
        # carried; a FINISH's WRITE_ACT (or MAC) goes to the rectangle of its hand-off.
        route = data.View(route_layout(cfg), core.o_tag[:cfg.route_width])
        header = from_core.flit.header
        # An output's way follows from its opcode, by the core's table (:mod:`.core.ops`):
        # the outputs of the operations whose data field carries a hand-off (FINISH's and
        # FINISH_BACK's WRITE_ACT) go to the rectangle in the tag, those whose route is
        # "down" (GRAD's) down the column, the others (REPLY, ADD) to the tag's route.
        emitting = core.ops.emitting(cfg)
        handoffs = {op for row in emitting if row.data == "handoff" for op in row.emit.opcodes(cfg)}
        downs = {op for row in emitting if row.emit.route == "down" for op in row.emit.opcodes(cfg)}
        x0, x1, y0, y1, vc, exit_ = (route.x, route.x, route.y, route.y, route.vc, route.exit)
        if handoffs:
            handoff = data.View(handoff_layout(cfg), core.o_tag[:cfg.handoff_width])
            last_row = handoff.y
            if any(row.emit.chooses(cfg) for row in emitting if row.data == "handoff"):
                # rows y .. y + dy (finish_layout; the host's encoder keeps it in the array)
                wide = data.View(finish_layout(cfg), core.o_tag[:sum(cfg.finish_fields.values())])
                last_row = (handoff.y + wide.dy)[:cfg.y_width]
            finished = matches(core.o.payload.op, sorted(handoffs, key=lambda op: op.value))
            x0, x1 = Mux(finished, handoff.x0, x0), Mux(finished, handoff.x1, x1)
            y0, y1 = Mux(finished, handoff.y, y0), Mux(finished, last_row, y1)
            vc = Mux(finished, handoff.vc, vc)
            exit_ = Mux(finished, Port.LOCAL, exit_)
        if downs:
            down = matches(core.o.payload.op, sorted(downs, key=lambda op: op.value))
            last = self.y == cfg.rows - 1
            below = Mux(last, self.y, self.y + 1)
            x0, x1 = Mux(down, self.x, x0), Mux(down, self.x, x1)
            y0, y1 = Mux(down, below, y0), Mux(down, below, y1)
            vc = Mux(down, 0, vc)
            exit_ = Mux(down, Mux(last, Port.SOUTH, Port.LOCAL), exit_)
        m.d.comb += [
            from_core.valid.eq(core.o.valid),
            from_core.flit.payload.eq(core.o.payload),
            header.x0.eq(x0), header.x1.eq(x1), header.y0.eq(y0), header.y1.eq(y1),
            header.vc.eq(vc), header.exit.eq(exit_),
            core.o.ready.eq(from_core.ready.bit_select(vc, 1)),
        ]
        m.d.comb += [self.mac_done.eq(core.mac_done), self.mac_skipped.eq(core.mac_skipped),
                     self.act_written.eq(core.act_written), self.error.eq(core.error)]
        if cfg.counters:
            phase = phase_counter(m, cfg, "ev_phase") if cfg.phits > 1 else None
            m.d.comb += self.events.eq(count_events(
                m, cfg, core.ops, core_in=core.i.valid & core.i.ready,
                core_in_op=core.i.payload.op, core_out=core.o.valid & core.o.ready,
                mac_done=core.mac_done, mac_skipped=core.mac_skipped,
                act_written=core.act_written,
                links=[getattr(router, f"out_{p.letter}") for p in MESH_PORTS], phase=phase))
        return m
