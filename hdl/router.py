"""The 5-port mesh router: XY routing, XY-tree multicast, virtual channels, per-VC ready.

Ports are numbered as :class:`~wafertile.hdl.flit.Exit`: 0 = local, 1 = north, 2 = east,
3 = south, 4 = west. Every port is a :func:`link_signature` pair ``in_<p>`` / ``out_<p>``:

- ``valid`` and ``flit`` go downstream; ``ready`` (one bit per virtual channel) comes back.
- A flit is transferred in a cycle when ``valid & ready[flit.header.vc]``.
- ``ready[v]`` depends only on the receiver's state (its VC ``v`` buffer is not full), never on
  ``valid``; a sender may therefore choose what to offer from ``ready`` (the router does: it
  only offers a flit whose VC has room), with no combinational loop between neighbours. This
  is credit flow control with the credit counter kept at the receiver.

Pipeline (one stage per router): a flit is written into its input buffer at a clock edge,
with its route mask (computed from the header in the cycle it arrives) beside it. In the next
cycle each input chooses one of its VC heads, the switch stages and outputs arbitrate, and the
winners cross the switch straight into the next router's input buffer (or out of the fabric).
Zero-load latency is therefore one cycle per router traversed, the source and destination
routers included.

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

__all__ = ["PORTS", "Router", "flit_link_signature", "link_signature", "route_mask"]

#: Port names, indexed by port number (= :class:`Exit` value).
PORTS = ("l", "n", "e", "s", "w")
_L, _N, _E, _S, _W = range(5)


def link_signature(config: Config) -> wiring.Signature:
    """One direction of a router link, seen from the sender: whole flits
    (:func:`flit_link_signature`), or phits when ``config.phits > 1``
    (:func:`~wafertile.hdl.phit.phit_link_signature`)."""
    if config.phits > 1:
        from .phit import phit_link_signature
        return phit_link_signature(config)
    return flit_link_signature(config)


def flit_link_signature(config: Config) -> wiring.Signature:
    """One direction of a whole-flit link, seen from the sender."""
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


def vc_fifo_pointers(m: Module, inp, v: int, abits: int, name: str, vc=None):
    """Write and read pointers of VC ``v``'s FIFO at input link ``inp``, its ``ready`` bit and
    its ``push`` (the incoming flit is taken into this FIFO this cycle; ``vc`` is the incoming
    flit's VC, by default its header's).

    The pointers have one wrap bit (``abits + 1`` bits), so the occupancy is their difference
    and the FIFO is full when they differ only in that bit. ``inp.ready[v]`` depends on this
    state only, so the upstream router may look at it freely. The caller advances the
    pointers. Returns ``(wp, rp, push)``.
    """
    wp = Signal(abits + 1, name=f"wp_{name}")
    rp = Signal(abits + 1, name=f"rp_{name}")
    full = (wp[abits] != rp[abits]) & (wp[:abits] == rp[:abits])
    m.d.comb += inp.ready[v].eq(~full)
    push = Signal(name=f"push_{name}")
    m.d.comb += push.eq(inp.valid & ((inp.flit.header.vc if vc is None else vc) == v) & ~full)
    return wp, rp, push


def _path(p: int, o: int) -> str:
    """How a branch from input ``p`` reaches output ``o`` in the switch (see PATHS)."""
    if o == _L:
        return "D" if p in (_N, _S) else "TD"
    if o == _N:
        return "direct" if p in (_S, _W) else "T"
    if o == _S:
        return "direct" if p in (_N, _E) else "T"
    opposite = {_E: _W, _W: _E}[o]
    if p in (_L, opposite):
        return "direct"
    return "TD" if p == o else "D"


#: ``PATHS[p][o]``: how a branch from input ``p`` reaches output ``o``:
#: ``"direct"`` (the output's own multiplexer has input ``p``), ``"T"`` (through the turn
#: stage, which feeds N and S), ``"D"`` (through the delivery stage, which has inputs N, S
#: and T and feeds L, E and W) or ``"TD"`` (T, then D). See ``docs/router.md``.
PATHS = tuple(tuple(_path(p, o) for o in range(5)) for p in range(5))
#: Inputs of the turn stage T and of the delivery stage D (besides T).
T_INPUTS = tuple(p for p in range(5) if {"T", "TD"} & set(PATHS[p]))
D_INPUTS = tuple(p for p in range(5) if "D" in PATHS[p])
#: Outputs fed by T / by D.
T_OUTPUTS = tuple(o for o in range(5) if any(PATHS[p][o] == "T" for p in range(5)))
D_OUTPUTS = tuple(o for o in range(5) if any(PATHS[p][o] in ("D", "TD") for p in range(5)))


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
    This is the ``compact`` micro-architecture (``config.router_arch``, the default);
    ``"parallel"`` elaborates :func:`~wafertile.hdl.router_parallel.elaborate_parallel`
    instead, with the same ports and routing. In ``compact``, each input port has one LUT
    RAM holding a FIFO of ``buffer_depth`` flits per VC (address
    ``{vc, pointer}``, asynchronous read), and a small LUT RAM per VC with the route mask of
    every buffered flit. Each cycle an input sends the head of at most one VC (round-robin
    among the VCs whose head has an unsent branch with room downstream); the turn stage, the
    delivery stage and the outputs then arbitrate round-robin among the inputs (see
    ``docs/router.md``). A head flit may be forwarded on several outputs in the same cycle or
    in different cycles; a mask records the branches already sent, and the flit leaves its
    buffer in the cycle its last branch goes. Arbiters move their pointer only past a winner
    that was served, so no head starves while its downstream buffer keeps draining. Flits
    with a VC number ``>= num_vcs`` are never accepted.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    """

    def __init__(self, config: Config):
        check_config(self, config)
        members = {"x": In(unsigned(config.x_width)), "y": In(unsigned(config.y_width))}
        for p in PORTS:
            # the lite router's local input takes whole flits (router_lite.py)
            local_flits = p == "l" and config.router_arch == "lite"
            members[f"in_{p}"] = In(flit_link_signature(config) if local_flits
                                    else link_signature(config))
        for p in PORTS:
            members[f"out_{p}"] = Out(link_signature(config))
        super().__init__(config, members)

    def elaborate(self, platform):
        cfg = self.config
        if cfg.router_arch == "parallel":
            from .router_parallel import elaborate_parallel
            return elaborate_parallel(self)
        if cfg.router_arch == "lite":
            from .router_lite import elaborate_lite
            return elaborate_lite(self)
        m = Module()
        nv = cfg.num_vcs
        depth = cfg.buffer_depth
        abits = (depth - 1).bit_length()  # depth is a power of two
        layout = flit_layout(cfg)
        ins = [getattr(self, f"in_{p}") for p in PORTS]
        outs = [getattr(self, f"out_{p}") for p in PORTS]
        # ready_by_vc[v]: bit o = output o's downstream VC v has room.
        ready_by_vc = [Cat(outs[o].ready[v] for o in range(5)) for v in range(nv)]

        data = []      # input p -> the flit at the head of its chosen VC (RAM read data)
        request = []   # input p -> Signal(5): outputs its chosen head asks for this cycle
        granted = []   # input p -> Signal(5): outputs that took its chosen head this cycle
        for p in range(5):
            name = PORTS[p]
            inp = ins[p]
            # One LUT RAM per input holds every VC's FIFO: address = {vc, pointer}, so the
            # choice of VC is the RAM's read address rather than a multiplexer.
            buf = Memory(shape=layout, depth=nv * depth, init=[])
            m.submodules[f"buf_{name}"] = buf
            wr = buf.write_port()
            rd = buf.read_port(domain="comb")
            # The route mask is computed once, when the flit is written, and kept beside it
            # in a small per-VC FIFO, so the allocator sees every VC's head mask.
            mask_in = Signal(5, name=f"mask_in_{name}")
            m.d.comb += mask_in.eq(route_mask(cfg, inp.flit.header, self.x, self.y, p))
            in_vc = inp.flit.header.vc

            wps, rps, rems, pushes, ptrs = [], [], [], [], []
            for v in range(nv):
                vname = f"{name}{v}"
                wp, rp, push = vc_fifo_pointers(m, inp, v, abits, vname)
                count = Signal(range(depth + 1), name=f"count_{vname}")
                m.d.comb += count.eq((wp - rp)[:abits + 1])
                masks = Memory(shape=5, depth=depth, init=[])
                m.submodules[f"mask_{vname}"] = masks
                mwr = masks.write_port()
                mrd = masks.read_port(domain="comb")
                m.d.comb += [mwr.addr.eq(wp[:abits]), mwr.data.eq(mask_in), mwr.en.eq(push),
                             mrd.addr.eq(rp[:abits])]
                sent = Signal(5, name=f"sent_{vname}")
                rem = Signal(5, name=f"rem_{vname}")
                m.d.comb += rem.eq(Mux(wp != rp, mrd.data, 0) & ~sent)
                wps.append(wp[:abits])
                rps.append(rp[:abits])
                ptrs.append((wp, rp))
                rems.append((rem, sent, count))
                pushes.append(push)

            # Input stage of the allocator: one VC per input per cycle, round-robin among the
            # VCs whose head has an unsent branch whose downstream VC has room.
            eligible = Signal(nv, name=f"eligible_{name}")
            m.d.comb += eligible.eq(Cat((rems[v][0] & ready_by_vc[v]) != 0 for v in range(nv)))
            got = Signal(5, name=f"granted_{name}")
            popped = Signal(name=f"popped_{name}")
            pick = self._round_robin(m, eligible, nv, f"vc_{name}", advance=popped)
            sel = Signal(range(nv), name=f"sel_{name}")
            for v in range(nv):
                with m.If(pick[v]):
                    m.d.comb += sel.eq(v)
            req = Signal(5, name=f"req_{name}")
            m.d.comb += req.eq(reduce(lambda a, b: a | b, [
                Mux(pick[v], rems[v][0] & ready_by_vc[v], 0) for v in range(nv)]))

            m.d.comb += [
                wr.addr.eq(Cat(reduce(lambda a, b: a | b, [
                    Mux(in_vc == v, wps[v], 0) for v in range(nv)]), in_vc)),
                wr.data.eq(inp.flit),
                wr.en.eq(reduce(lambda a, b: a | b, pushes)),
                rd.addr.eq(Cat(reduce(lambda a, b: a | b, [
                    Mux(pick[v], rps[v], 0) for v in range(nv)]), sel)),
            ]
            pops = []
            for v in range(nv):
                rem, sent, count = rems[v]
                # The head leaves when its last outstanding branch is sent this cycle.
                pop = Signal(name=f"pop_{name}{v}")
                m.d.comb += pop.eq(pick[v] & (got != 0) & ((rem & ~got) == 0))
                pops.append(pop)
                wp, rp = ptrs[v]
                with m.If(pop):
                    m.d.sync += [sent.eq(0), rp.eq(rp + 1)]
                with m.Elif(pick[v]):
                    m.d.sync += sent.eq(sent | got)
                with m.If(pushes[v]):
                    m.d.sync += wp.eq(wp + 1)
            m.d.comb += popped.eq(reduce(lambda a, b: a | b, pops))
            data.append(rd.data)
            request.append(req)
            granted.append(got)

        # Switch: a turn stage T, a delivery stage D, then the five outputs (see PATHS).
        def any_of(bits):
            return reduce(lambda a, b: a | b, bits, Const(0))

        def path_bits(p, kinds):
            """Output mask of the branches of input ``p`` that take a path in ``kinds``."""
            return sum(1 << o for o in range(5) if PATHS[p][o] in kinds)

        def mux(grant, values):
            return reduce(lambda a, b: a | b, [Mux(grant[k], val, 0)
                                               for k, val in enumerate(values)])

        # T: one flit per cycle that goes north/south other than straight on or by the
        # direct W -> N / E -> S turns, or that came in on L, E or W and is delivered here or
        # (E/W) leaves by the edge port it came in on (through D).
        t_req = Signal(len(T_INPUTS), name="t_req")
        m.d.comb += t_req.eq(Cat((request[p] & path_bits(p, ("T", "TD"))) != 0
                                 for p in T_INPUTS))
        t_ok = Signal(name="t_ok")
        t_grant = self._round_robin(m, t_req, len(T_INPUTS), "arb_t", advance=t_ok)
        t_wants = Signal(5, name="t_wants")     # branches T asks the N/S outputs for
        t_wants_d = Signal(5, name="t_wants_d")  # branches T asks D for
        m.d.comb += [
            t_wants.eq(any_of(Mux(t_grant[k], request[p] & path_bits(p, ("T",)), 0)
                              for k, p in enumerate(T_INPUTS))),
            t_wants_d.eq(any_of(Mux(t_grant[k], request[p] & path_bits(p, ("TD",)), 0)
                                for k, p in enumerate(T_INPUTS))),
        ]
        t_data = Signal(layout, name="t_data")
        m.d.comb += t_data.eq(mux(t_grant, [data[p].as_value() for p in T_INPUTS]))

        # D: one flit per cycle from N, S or T that is delivered here or leaves by an edge
        # port it cannot reach directly.
        d_srcs = [request[p] & path_bits(p, ("D",)) for p in D_INPUTS] + [t_wants_d]
        d_req = Signal(len(d_srcs), name="d_req")
        m.d.comb += d_req.eq(Cat(r != 0 for r in d_srcs))
        d_ok = Signal(name="d_ok")
        d_grant = self._round_robin(m, d_req, len(d_srcs), "arb_d", advance=d_ok)
        d_wants = Signal(5, name="d_wants")
        m.d.comb += d_wants.eq(any_of(Mux(d_grant[k], r, 0) for k, r in enumerate(d_srcs)))
        d_data = Signal(layout, name="d_data")
        m.d.comb += d_data.eq(mux(d_grant, [data[p].as_value() for p in D_INPUTS]
                                  + [t_data.as_value()]))

        # Outputs. Sources: "direct" inputs, then T (N, S) or D (L, E, W).
        d_took = [Signal(name=f"d_took_{PORTS[o]}") for o in range(5)]
        t_took = [Signal(name=f"t_took_{PORTS[o]}") for o in range(5)]
        direct_took = [[Const(0)] * 5 for _ in range(5)]  # [input][output]
        m.d.comb += [outs[_L].valid.eq(d_wants[_L]), outs[_L].flit.eq(d_data),
                     d_took[_L].eq(d_wants[_L]), t_took[_L].eq(0)]
        for o in range(1, 5):
            direct = [p for p in range(5) if PATHS[p][o] == "direct"]
            reqs = [request[p][o] for p in direct]
            vals = [data[p].as_value() for p in direct]
            if o in T_OUTPUTS:
                reqs.append(t_wants[o])
                vals.append(t_data.as_value())
            if o in D_OUTPUTS:
                reqs.append(d_wants[o])
                vals.append(d_data.as_value())
            req = Signal(len(reqs), name=f"req_out_{PORTS[o]}")
            m.d.comb += req.eq(Cat(reqs))
            grant = self._round_robin(m, req, len(reqs), f"arb_{PORTS[o]}")
            for k, p in enumerate(direct):
                direct_took[p][o] = grant[k]
            m.d.comb += [
                t_took[o].eq(grant[len(direct)] if o in T_OUTPUTS else 0),
                d_took[o].eq(grant[-1] if o in D_OUTPUTS else 0),
                outs[o].valid.eq(req != 0),
                outs[o].flit.eq(mux(grant, vals)),
            ]
        d_took_any = reduce(lambda a, b: a | b, d_took)
        m.d.comb += [
            d_ok.eq(d_took_any),
            t_ok.eq(reduce(lambda a, b: a | b, t_took) | (d_grant[-1] & d_took_any)),
        ]
        t_took_v = Cat(t_took)
        d_took_v = Cat(d_took)
        for p in range(5):
            bits = []
            for o in range(5):
                kind = PATHS[p][o]
                if kind == "direct":
                    bits.append(direct_took[p][o])
                elif kind == "T":
                    bits.append(t_grant[T_INPUTS.index(p)] & t_took_v[o])
                elif kind == "TD":
                    bits.append(t_grant[T_INPUTS.index(p)] & d_grant[-1] & d_took_v[o])
                else:  # "D"
                    bits.append(d_grant[D_INPUTS.index(p)] & d_took_v[o])
            m.d.comb += granted[p].eq(Cat(bits))
        return m

    @staticmethod
    def _round_robin(m: Module, req: Signal, n: int, name: str, advance=None) -> Signal:
        """One-hot grant among ``req``, starting after the last granted index (fair).

        The pointer moves past the winner in every cycle with a grant, or only in the cycles
        where ``advance`` is high if it is given.
        """
        # keep: one grant wire per arbiter in the netlist (a hint to synthesis; the ECP5 LUT
        # count is the same within a few LUTs without it).
        grant = Signal(n, name=f"{name}_grant", attrs={"keep": 1})
        if n == 1:
            m.d.comb += grant.eq(req)
            return grant
        # prio: the indices after the last winner (none at reset: the lowest request wins).
        prio = Signal(n, name=f"{name}_prio")
        above = Signal(n, name=f"{name}_above")
        m.d.comb += above.eq(req & prio)
        pick = Signal(n, name=f"{name}_pick")
        m.d.comb += pick.eq(Mux(above != 0, above, req))
        m.d.comb += grant.eq(Cat(pick[k] & ~pick[:k].any() for k in range(n)))  # lowest bit
        with m.If((grant != 0) & (Const(1) if advance is None else advance)):
            m.d.sync += prio.eq(Cat(grant[:k].any() for k in range(n)))
        return grant
