"""The ``lite`` router micro-architecture: the smallest one, for FPGA arrays.

Selected with ``Config(router_arch="lite")``, usually with ``phits > 1``. Same routing rule
(:func:`~wafertile.hdl.router.route_mask`), multicast rule, VCs and deadlock argument as the
other two; what changes (``docs/router.md``, "lite"):

- **Phits.** A flit crosses a link in ``phits`` cycles, ``phit_width`` bits at a time, in
  lockstep slots (:mod:`wafertile.hdl.phit`), so the links, the input buffers and the switch
  are ``1/phits`` of a flit wide. Allocation is done in phase 0 of a slot and held for the
  slot; every pointer moves in the slot's last phase. One slot per router at zero load.
- **A one-flit local input.** The local port takes whole flits (the tile core's outputs, which
  it sends in order anyway) into one register, read one phit per phase: no serializer, no
  buffer RAM, no VC bookkeeping on the input that carries only READ replies and SEND results.
- **One VC looked at per input.** Each mesh input has one LUT RAM (address ``{vc, pointer,
  phase}``) that keeps the route mask beside phit 0, so the allocator sees only the head of
  the input's *current* VC; the current VC moves on (round-robin among the non-empty VCs)
  when its head leaves, or when it had nothing it could send, so a blocked VC never holds up
  another for more than one slot.
- **A switch of 2:1 and 3:1 multiplexers.** ``XE`` (W, L -> E), ``XW`` (E, L -> W), the turn
  stage ``T`` (W, E, L), ``N`` (S, T), ``S`` (N, T) and the delivery stage ``D`` (N, S, T),
  which feeds the local port and, on a router at the array's edge, that edge's port (exits,
  U-turns and flits running off the array all leave through ``D``). With the constant
  coordinates of an array those edge multiplexers reduce to wires.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data

from ._util import any_of as _any
from ._util import pick as _pick
from .flit import flit_layout, header_layout
from .phit import phase_counter

__all__ = ["elaborate_lite"]

_L, _N, _E, _S, _W = range(5)
#: Inputs of the stages: XE, XW, T, N (direct), S (direct), D (direct).
XE_IN, XW_IN, T_IN = (_W, _L), (_E, _L), (_W, _E, _L)


def elaborate_lite(router) -> Module:
    """The body of :class:`~wafertile.hdl.router.Router` for ``router_arch = "lite"``."""
    from amaranth.lib.memory import Memory

    from .router import PORTS, Router, route_mask, vc_fifo_pointers

    cfg = router.config
    m = Module()
    n, w, nv, depth = cfg.phits, cfg.phit_width, cfg.num_vcs, cfg.buffer_depth
    abits = (depth - 1).bit_length()
    pbits = (n - 1).bit_length()
    vbits = (nv - 1).bit_length()
    field = "phit" if n > 1 else "flit"
    ins = [getattr(router, f"in_{p}") for p in PORTS]
    outs = [getattr(router, f"out_{p}") for p in PORTS]
    x, y = router.x, router.y

    phase = phase_counter(m, cfg)
    first = (phase == 0) if n > 1 else Const(1)
    last = (phase == n - 1) if n > 1 else Const(1)
    edge = Signal(5, name="edge")  # bit o: this router is on the array's edge on side o
    m.d.comb += edge.eq(Cat(Const(0), y == 0, x == cfg.cols - 1, y == cfg.rows - 1, x == 0))

    held = {}  # name -> the register behind hold(), read directly where a path must not loop

    def hold(sig, name):
        """``sig`` in phase 0, then the value it had in phase 0 for the rest of the slot."""
        if not isinstance(sig, Signal):
            wire = Signal(len(sig), name=name)
            m.d.comb += wire.eq(sig)
            sig = wire
        if n == 1:
            return sig
        reg = Signal.like(sig, name=f"{name}_held")
        eff = Signal.like(sig, name=f"{name}_eff")
        with m.If(first):
            m.d.sync += reg.eq(sig)
        m.d.comb += eff.eq(Mux(first, sig, reg))
        held[name] = reg
        return eff

    # The local input: one whole flit from the tile core in a register (the core sends its
    # outputs in order anyway), read one phit per phase. With phits, a new flit may enter in
    # the last phase of the slot where the one before leaves (full rate); its ready then uses
    # the registered decision, so no combinational path runs from the allocation back into
    # the core. With phits = 1 the register takes a flit every other cycle.
    lin = ins[_L]
    l_leaving = Signal(name="l_leaving")  # the register empties at the end of this cycle
    lflit = Signal(flit_layout(cfg), name="l_flit")
    lfull = Signal(name="l_full")
    lmask = Signal(5, name="l_mask")
    lsent = Signal(5, name="l_sent")
    l_room = ~lfull | l_leaving
    m.d.comb += lin.ready.eq(l_room.replicate(nv))  # the receiver's state only
    with m.If(lin.valid & l_room & (lin.flit.header.vc < nv)):
        m.d.sync += [lflit.eq(lin.flit), lfull.eq(1),
                     lmask.eq(route_mask(cfg, lin.flit.header, x, y, _L))]
    lraw = Cat(lflit.as_value(), Const(0, n * w - cfg.flit_width))
    lphits = [lraw[k * w:(k + 1) * w] for k in range(n)]
    lrem = Signal(5, name="rem_l")
    m.d.comb += lrem.eq(Mux(lfull, lmask & ~lsent, 0))
    lreq = Signal(5, name="req_l")
    m.d.comb += lreq.eq(lrem & Cat(outs[o].ready.bit_select(lflit.header.vc, 1)
                                   for o in range(5)))
    heads, reqs, ctl = [_pick([phase == k for k in range(n)], lphits)], [lreq], [None]
    for p in range(1, 5):
        name = PORTS[p]
        inp = ins[p]
        word = Value.cast(getattr(inp, field))
        in_hdr = data.View(header_layout(cfg), word[:cfg.header_width])
        if n > 1:
            rx_vc = Signal(cfg.vc_width, name=f"rx_vc_{name}")
            with m.If(first):
                m.d.sync += rx_vc.eq(in_hdr.vc)
            vc_now = Mux(first, in_hdr.vc, rx_vc)
        else:
            vc_now = in_hdr.vc

        buf = Memory(shape=unsigned(w + 5), depth=1 << (pbits + abits + vbits), init=[])
        m.submodules[f"buf_{name}"] = buf
        wr = buf.write_port()
        rd = buf.read_port(domain="comb")

        wps, rps, counts, pushes = [], [], [], []
        for v in range(nv):
            # `ready` (room for a whole flit) and the pointers only change at the slot's end
            wp, rp, push = vc_fifo_pointers(m, inp, v, abits, f"{name}{v}", vc=vc_now)
            with m.If(push & last):
                m.d.sync += wp.eq(wp + 1)
            count = Signal(abits + 1, name=f"count_{name}{v}")
            m.d.comb += count.eq(wp - rp)
            wps.append(wp)
            rps.append(rp)
            counts.append(count)
            pushes.append(push)

        def by_vc(values, sel):
            return _pick([sel == v for v in range(nv)], values)

        mask_in = route_mask(cfg, in_hdr, x, y, p)
        m.d.comb += [
            wr.en.eq(_any(pushes)),
            wr.addr.eq(Cat(phase[:pbits], by_vc(wps, vc_now)[:abits], vc_now[:vbits])),
            wr.data.eq(Cat(word[:w], mask_in)),
        ]

        cur = Signal(range(nv), name=f"cur_{name}")  # the VC whose head this input offers
        sents = [Signal(5, name=f"sent_{name}{v}") for v in range(nv)]
        m.d.comb += rd.addr.eq(Cat(phase[:pbits], by_vc(rps, cur)[:abits], cur[:vbits]))
        head_ok = by_vc(counts, cur) != 0
        rem = Signal(5, name=f"rem_{name}")
        m.d.comb += rem.eq(Mux(head_ok, rd.data[w:] & ~by_vc(sents, cur), 0))
        req = Signal(5, name=f"req_{name}")
        m.d.comb += req.eq(rem & Cat(outs[o].ready.bit_select(cur, 1) for o in range(5)))
        heads.append(rd.data[:w])
        reqs.append(req)
        ctl.append((cur, sents, rps, counts, pushes, rem))

    # Which stage each branch takes (phase 0). A branch to the local port, or to the edge port
    # of a router on that edge, goes through D; the others by XE / XW / N / S directly or
    # through T (see the module documentation).
    inner = ~edge
    d_bits = [reqs[p] & (edge | 1) for p in range(5)]  # bit 0 (local) always, edges when on one
    xe_req = Cat(reqs[p][_E] & inner[_E] for p in XE_IN)
    xw_req = Cat(reqs[p][_W] & inner[_W] for p in XW_IN)
    t_n = [reqs[p][_N] & inner[_N] for p in T_IN]
    t_s = [reqs[p][_S] & inner[_S] for p in T_IN]
    t_req = Cat((t_n[k] | t_s[k] | (d_bits[p] != 0)) for k, p in enumerate(T_IN))

    rr = Router._round_robin
    t_ok = Signal(name="t_ok")
    xe_g = rr(m, xe_req, 2, "arb_xe", advance=first)
    xw_g = rr(m, xw_req, 2, "arb_xw", advance=first)
    t_g = rr(m, t_req, 3, "arb_t", advance=first & t_ok)
    t_wants_n = _any(t_g[k] & t_n[k] for k in range(3))
    t_wants_s = _any(t_g[k] & t_s[k] for k in range(3))
    t_wants_d = _any(t_g[k] & (d_bits[p] != 0) for k, p in enumerate(T_IN))
    n_g = rr(m, Cat(reqs[_S][_N] & inner[_N], t_wants_n), 2, "arb_n", advance=first)
    s_g = rr(m, Cat(reqs[_N][_S] & inner[_S], t_wants_s), 2, "arb_s", advance=first)
    d_g = rr(m, Cat(d_bits[_N] != 0, d_bits[_S] != 0, t_wants_d), 3, "arb_d", advance=first)
    m.d.comb += t_ok.eq((n_g[1] & t_wants_n) | (s_g[1] & t_wants_s) | (d_g[2] & t_wants_d))

    # Branches each input got this slot.
    got = []
    for p in range(5):
        bits = Const(0, 5)
        if p in XE_IN:
            bits = bits | Mux(xe_g[XE_IN.index(p)], 1 << _E, 0)
        if p in XW_IN:
            bits = bits | Mux(xw_g[XW_IN.index(p)], 1 << _W, 0)
        if p in T_IN:
            k = T_IN.index(p)
            bits = bits | Mux(t_g[k] & n_g[1] & t_n[k], 1 << _N, 0)
            bits = bits | Mux(t_g[k] & s_g[1] & t_s[k], 1 << _S, 0)
            bits = bits | Mux(t_g[k] & d_g[2], d_bits[p], 0)
        if p == _S:
            bits = bits | Mux(n_g[0], 1 << _N, 0) | Mux(d_g[1], d_bits[p], 0)
        if p == _N:
            bits = bits | Mux(s_g[0], 1 << _S, 0) | Mux(d_g[0], d_bits[p], 0)
        g = Signal(5, name=f"got_{PORTS[p]}")
        m.d.comb += g.eq(bits)
        got.append(g)

    # Held for the slot: the grants that steer the switch and what each input got.
    xe_h, xw_h, t_h = hold(xe_g, "xe"), hold(xw_g, "xw"), hold(t_g, "t")
    n_h, s_h, d_h = hold(n_g, "n"), hold(s_g, "s"), hold(d_g, "d")
    got_h = [hold(got[p], f"got_{PORTS[p]}") for p in range(5)]

    # Switch (one phit per cycle).
    xe_data = _pick(xe_h, [heads[p] for p in XE_IN])
    xw_data = _pick(xw_h, [heads[p] for p in XW_IN])
    t_data = _pick(t_h, [heads[p] for p in T_IN])
    n_data = _pick(n_h, [heads[_S], t_data])
    s_data = _pick(s_h, [heads[_N], t_data])
    d_data = Signal(w, name="d_data")
    m.d.comb += d_data.eq(_pick(d_h, [heads[_N], heads[_S], t_data]))
    own = {_L: d_data, _N: n_data, _E: xe_data, _S: s_data, _W: xw_data}
    for o in range(5):
        out_word = Value.cast(getattr(outs[o], field))
        m.d.comb += [
            outs[o].valid.eq(_any(got_h[p][o] for p in range(5))),
            out_word.eq(own[o] if o == _L else Mux(edge[o], d_data, own[o])),
        ]

    # End of the slot: pop heads whose last branch went, remember partial multicasts, move
    # the write pointers (above) and choose each input's next VC.
    lpop = hold((got[_L] != 0) & ((lrem & ~got[_L]) == 0), "pop_l")
    m.d.comb += l_leaving.eq(last & held["pop_l"] if n > 1 else 0)
    with m.If(last & lpop):
        m.d.sync += lsent.eq(0)
        with m.If(~(lin.valid & l_leaving & (lin.flit.header.vc < nv))):
            m.d.sync += lfull.eq(0)
    with m.Elif(last):
        m.d.sync += lsent.eq(lsent | got_h[_L])
    for p in range(1, 5):
        cur, sents, rps, counts, pushes, rem = ctl[p]
        pop = hold((got[p] != 0) & ((rem & ~got[p]) == 0), f"pop_{PORTS[p]}")
        idle = hold(reqs[p] == 0, f"idle_{PORTS[p]}")
        pops = [pop & (cur == v) for v in range(nv)]
        ne_next = Cat(pushes[v] | ((counts[v] != 0) & ~(pops[v] & (counts[v] == 1)))
                      for v in range(nv))
        nxt = cur
        for k in reversed(range(1, nv)):
            cand = Mux(cur + k >= nv, cur + k - nv, cur + k)[:max(1, vbits)]
            nxt = Mux(ne_next.bit_select(cand, 1), cand, nxt)
        with m.If(last):
            for v in range(nv):
                with m.If(pops[v]):
                    m.d.sync += [sents[v].eq(0), rps[v].eq(rps[v] + 1)]
                with m.Elif(cur == v):
                    m.d.sync += sents[v].eq(sents[v] | got_h[p])
            with m.If(pop | idle | ~ne_next.bit_select(cur, 1)):
                m.d.sync += cur.eq(nxt)
    return m
