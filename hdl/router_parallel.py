"""The ``parallel`` router micro-architecture: every (input, VC) head competes at every output.

Selected with ``Config(router_arch="parallel")``; the default ``compact`` one is in
:mod:`wafertile.hdl.router`. Both have the same ports, link protocol, routing rule
(:func:`~wafertile.hdl.router.route_mask`), multicast rule and one cycle per router; they
differ in what an input may send per cycle and in area (``docs/router.md``):

- each (input, VC) has its own FIFO (a LUT RAM of ``buffer_depth`` flits with an asynchronous
  read), so the heads of all VCs of an input are visible at once;
- the route mask of every head is computed at the head (not stored);
- every output arbitrates round-robin among all ``5 * num_vcs`` heads that want it and whose
  VC has room downstream (a 5-way crossbar per VC, no turn or delivery stage), so one input
  may send two VC heads to two outputs in the same cycle. That removes most of the
  head-of-line blocking between VCs, at 2.4x (2 VCs x 4) to 5.3x (4 VCs x 8) the ECP5 LUT4
  sites of ``compact``.

A head flit may be forwarded on several outputs in the same cycle or in different cycles; a
mask records the branches already sent, and the flit leaves its buffer in the cycle its last
branch goes.
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import Module, Mux, Signal

from .flit import flit_layout

__all__ = ["elaborate_parallel"]


def elaborate_parallel(router) -> Module:
    """The body of :class:`~wafertile.hdl.router.Router` for ``router_arch = "parallel"``."""
    from amaranth.lib.memory import Memory

    from .router import PORTS, route_mask, vc_fifo_pointers

    cfg = router.config
    m = Module()
    nv = cfg.num_vcs
    depth = cfg.buffer_depth
    abits = (depth - 1).bit_length()  # depth is a power of two
    layout = flit_layout(cfg)
    ins = [getattr(router, f"in_{p}") for p in PORTS]
    outs = [getattr(router, f"out_{p}") for p in PORTS]

    heads = []      # k = (input, VC) -> (vc, head flit)
    remaining = []  # k -> Signal(5): outputs the head still has to be sent on
    granted = []    # k -> Signal(5): outputs that took the head this cycle
    for p in range(5):
        inp = ins[p]
        for v in range(nv):
            name = f"{PORTS[p]}{v}"
            buf = Memory(shape=layout, depth=depth, init=[])
            m.submodules[f"buf_{name}"] = buf
            wr = buf.write_port()
            rd = buf.read_port(domain="comb")
            wp, rp, push = vc_fifo_pointers(m, inp, v, abits, name)
            m.d.comb += [
                wr.addr.eq(wp[:abits]),
                wr.data.eq(inp.flit),
                wr.en.eq(push),
                rd.addr.eq(rp[:abits]),
            ]
            mask = route_mask(cfg, rd.data.header, router.x, router.y, p)
            sent = Signal(5, name=f"sent_{name}")
            rem = Signal(5, name=f"rem_{name}")
            m.d.comb += rem.eq(Mux(wp != rp, mask, 0) & ~sent)
            got = Signal(5, name=f"granted_{name}")
            pop = Signal(name=f"pop_{name}")
            # The head leaves when its last outstanding branch is sent this cycle.
            m.d.comb += pop.eq((got != 0) & ((rem & ~got) == 0))
            with m.If(pop):
                m.d.sync += [sent.eq(0), rp.eq(rp + 1)]
            with m.Else():
                m.d.sync += sent.eq(sent | got)
            with m.If(push):
                m.d.sync += wp.eq(wp + 1)
            heads.append((v, rd.data))
            remaining.append(rem)
            granted.append(got)

    n = len(heads)
    by_head = [[] for _ in range(n)]
    for o in range(5):
        req = Signal(n, name=f"req_{PORTS[o]}")
        m.d.comb += req.eq(reduce(
            lambda a, b: a | b,
            [(remaining[k][o] & outs[o].ready[heads[k][0]]) << k for k in range(n)]))
        grant = router._round_robin(m, req, n, f"arb_{PORTS[o]}")
        for k in range(n):
            by_head[k].append(grant[k])
        m.d.comb += [
            outs[o].valid.eq(req != 0),
            outs[o].flit.eq(reduce(lambda a, b: a | b, [
                Mux(grant[k], heads[k][1].as_value(), 0) for k in range(n)])),
        ]
    for k in range(n):
        m.d.comb += granted[k].eq(reduce(
            lambda a, b: a | b, [by_head[k][o] << o for o in range(5)]))
    return m
