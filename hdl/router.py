"""The 5-port mesh router: XY routing, XY-tree multicast, virtual channels, per-VC ready.

Ports are numbered as :class:`~wafertile.hdl.flit.Exit`: 0 = local, 1 = north, 2 = east,
3 = south, 4 = west. Every port is a :func:`link_signature` pair ``in_<p>`` / ``out_<p>``:

- ``valid`` and ``flit`` go downstream; ``ready`` (one bit per virtual channel) comes back.
- A flit is transferred in a cycle when ``valid & ready[flit.header.vc]``.
- ``ready[v]`` depends only on the receiver's state (its VC ``v`` buffer is not full), never on
  ``valid``; a sender may therefore choose what to offer from ``ready`` (the router does: it
  only offers a flit whose VC has room), with no combinational loop between neighbours. This
  is credit flow control with the credit counter kept at the receiver.

Pipeline (one stage per router): a flit is written into its input VC buffer at a clock edge;
in the next cycle, at the head of that buffer, its route is computed, every output arbitrates
among the heads that want it and have room downstream, and the winners cross the switch
straight into the next router's input buffer (or out of the fabric). Zero-load latency is
therefore one cycle per router traversed, the source and destination routers included.

See ``docs/router.md`` for the routing function, the multicast rule and why the fabric is
deadlock-free.
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import Config
from ._util import ConfiguredComponent, check_config
from .flit import flit_layout

__all__ = ["PORTS", "Router", "link_signature", "route_mask"]

#: Port names, indexed by port number (= :class:`Exit` value).
PORTS = ("l", "n", "e", "s", "w")
_L, _N, _E, _S, _W = range(5)


def link_signature(config: Config) -> wiring.Signature:
    """One direction of a router link, seen from the sender."""
    return wiring.Signature({
        "valid": Out(1),
        "flit": Out(flit_layout(config)),
        "ready": In(config.num_vcs),
    })


def route_mask(config: Config, header, x, y, port: int) -> Value:
    """The outputs (bit ``p`` = port ``p``) a flit with ``header`` takes at router (x, y).

    ``port`` is the (constant) input port the flit arrived on. The rule (X then Y, tree
    replication; :mod:`wafertile.sim.noc_model` implements the same rule in Python):

    - east if ``x < x1`` and the flit travels east or starts here (arrived on W or local);
      west if ``x > x0`` and it travels west or starts here (arrived on E or local);
    - in a column of the rectangle (``x0 <= x <= x1``): south if ``y < y1`` unless it travels
      north (arrived on S), north if ``y > y0`` unless it travels south (arrived on N);
    - in the rectangle: out of the edge port ``exit`` if this router is on that edge of the
      array, else local;
    - a flit that would go nowhere (only for a malformed rectangle, x0 > x1 or y0 > y1) is
      delivered locally, so that it can never block its buffer.
    """
    x0, x1, y0, y1 = header.x0, header.x1, header.y0, header.y1
    ex = header.exit.as_value()
    east = (x < x1) if port in (_L, _W) else Const(0)
    west = (x > x0) if port in (_L, _E) else Const(0)
    in_x = (x >= x0) & (x <= x1)
    south = in_x & (y < y1) if port != _S else Const(0)
    north = in_x & (y > y0) if port != _N else Const(0)
    in_rect = in_x & (y >= y0) & (y <= y1)
    edge = {_N: y == 0, _E: x == config.cols - 1, _S: y == config.rows - 1, _W: x == 0}
    leave = {d: in_rect & (ex == d) & edge[d] for d in edge}
    stay = in_rect & ~(leave[_N] | leave[_E] | leave[_S] | leave[_W])
    raw = Cat(stay, north | leave[_N], east | leave[_E], south | leave[_S], west | leave[_W])
    return Mux(raw == 0, 1, raw)


class Router(ConfiguredComponent):
    """A 5-port single-flit mesh router with XY-tree multicast and ``num_vcs`` VCs.

    Parameters
    ----------
    config : Config
        Flit format (``x_width``, ``y_width``, ``vc_width``, payload width), ``num_vcs``,
        ``buffer_depth`` (flits per VC per input) and the array size (to know its edges).

    Members
    -------
    x, y : In
        This router's coordinates (inputs, so one module serves every tile).
    in_l, in_n, in_e, in_s, in_w : In(link_signature(config))
        Input ports. ``ready[v]`` is high when VC ``v``'s buffer of that port has room.
    out_l, out_n, out_e, out_s, out_w : Out(link_signature(config))
        Output ports. ``valid`` is only raised for a flit whose VC is ready downstream.

    Behaviour
    ---------
    Each input port has one FIFO of ``buffer_depth`` flits per VC (LUT RAM, asynchronous
    read). A head flit may be forwarded on several outputs in the same cycle or in different
    cycles; a mask records the branches already sent, and the flit leaves its buffer in the
    cycle its last branch goes. Each output arbitrates round-robin among the (input, VC) heads
    that want it and whose VC has room downstream, so every output moves one flit per cycle
    and no head starves while its downstream buffer keeps draining. Flits with a VC number
    ``>= num_vcs`` are never accepted.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    """

    def __init__(self, config: Config):
        check_config(self, config)
        members = {"x": In(unsigned(config.x_width)), "y": In(unsigned(config.y_width))}
        for p in PORTS:
            members[f"in_{p}"] = In(link_signature(config))
        for p in PORTS:
            members[f"out_{p}"] = Out(link_signature(config))
        super().__init__(config, members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        nv = cfg.num_vcs
        depth = cfg.buffer_depth
        layout = flit_layout(cfg)
        ins = [getattr(self, f"in_{p}") for p in PORTS]
        outs = [getattr(self, f"out_{p}") for p in PORTS]

        heads = []      # (port, vc) -> flit value at the head
        remaining = []  # (port, vc) -> Signal(5): outputs still to send the head on
        pops = []       # (port, vc) -> (granted mask Signal(5), sent register)
        for p in range(5):
            for v in range(nv):
                name = f"{PORTS[p]}{v}"
                mem = Memory(shape=layout, depth=depth, init=[])
                m.submodules[f"buf_{name}"] = mem
                wr = mem.write_port()
                rd = mem.read_port(domain="comb")
                wp = Signal(range(depth), name=f"wp_{name}")
                rp = Signal(range(depth), name=f"rp_{name}")
                count = Signal(range(depth + 1), name=f"count_{name}")
                # ready depends on state only: the upstream router may look at it freely.
                m.d.comb += ins[p].ready[v].eq(count != depth)
                push = Signal(name=f"push_{name}")
                m.d.comb += [
                    push.eq(ins[p].valid & (ins[p].flit.header.vc == v) & (count != depth)),
                    wr.addr.eq(wp),
                    wr.data.eq(ins[p].flit),
                    wr.en.eq(push),
                    rd.addr.eq(rp),
                ]
                head_valid = count != 0
                mask = route_mask(cfg, rd.data.header, self.x, self.y, p)
                sent = Signal(5, name=f"sent_{name}")
                rem = Signal(5, name=f"rem_{name}")
                m.d.comb += rem.eq(Mux(head_valid, mask, 0) & ~sent)
                granted = Signal(5, name=f"granted_{name}")
                pop = Signal(name=f"pop_{name}")
                # The head leaves when its last outstanding branch is sent this cycle.
                m.d.comb += pop.eq(head_valid & ((rem & ~granted) == 0))
                with m.If(pop):
                    m.d.sync += [sent.eq(0), rp.eq(rp + 1)]
                with m.Else():
                    m.d.sync += sent.eq(sent | granted)
                with m.If(push):
                    m.d.sync += wp.eq(wp + 1)
                m.d.sync += count.eq(count + push - pop)
                heads.append((v, rd.data))
                remaining.append(rem)
                pops.append(granted)

        n = len(heads)
        grants_by_input = [[] for _ in range(n)]
        for o in range(5):
            req = Signal(n, name=f"req_{PORTS[o]}")
            m.d.comb += req.eq(reduce(
                lambda a, b: a | b,
                [(remaining[k][o] & outs[o].ready[heads[k][0]]) << k for k in range(n)]))
            grant = self._round_robin(m, req, n, f"arb_{PORTS[o]}")
            for k in range(n):
                grants_by_input[k].append(grant[k])
            m.d.comb += [
                outs[o].valid.eq(req != 0),
                outs[o].flit.eq(reduce(lambda a, b: a | b, [
                    Mux(grant[k], heads[k][1].as_value(), 0) for k in range(n)])),
            ]
        for k in range(n):
            m.d.comb += pops[k].eq(reduce(
                lambda a, b: a | b, [grants_by_input[k][o] << o for o in range(5)]))
        return m

    @staticmethod
    def _round_robin(m: Module, req: Signal, n: int, name: str) -> Signal:
        """One-hot grant among ``req``, starting after the last granted index (fair)."""
        last = Signal(range(n), name=f"{name}_last", init=n - 1)
        above = Signal(n, name=f"{name}_above")
        m.d.comb += above.eq(req & (Const((1 << n) - 1, n) << (last + 1))[:n])
        pick = Signal(n, name=f"{name}_pick")
        m.d.comb += pick.eq(Mux(above != 0, above, req))
        grant = Signal(n, name=f"{name}_grant")
        m.d.comb += grant.eq((pick & (~pick + 1))[:n])  # lowest set bit
        for k in range(n):
            with m.If(grant[k]):
                m.d.sync += last.eq(k)
        return grant
