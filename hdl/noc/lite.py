"""The ``lite`` router micro-architecture: the smallest one, for FPGA arrays.

Selected with ``Config(router_arch="lite")``, usually with ``phits > 1``. Same routing rule
(:func:`~.route.route_mask`), multicast rule, VCs and deadlock argument as the other two;
what changes (``docs/router.md``, "lite"):

- **Phits.** A flit crosses a link in ``phits`` cycles, ``phit_width`` bits at a time, in
  lockstep slots (:mod:`.phit`), so the links, the input buffers and the switch are
  ``1/phits`` of a flit wide. Allocation is done in phase 0 of a slot and held for the slot;
  every pointer moves in the slot's last phase. One slot per router at zero load.
- **A one-flit local input.** The local port takes whole flits (the tile core's outputs, which
  it sends in order anyway) into one register, read one phit per phase: no serializer, no
  buffer RAM, no VC bookkeeping on the input that carries only READ replies and SEND results.
- **One VC looked at per input.** Each mesh input has one :class:`~.buffer.VcBuffer`
  (address ``{vc, pointer, phase}``) that keeps the route mask beside phit 0, so the
  allocator sees only the head of the input's *current* VC; the current VC moves on
  (round-robin among the non-empty VCs) when its head leaves, or when it had nothing it could
  send, so a blocked VC never holds up another for more than one slot.
- **A switch of 2:1 and 3:1 multiplexers.** ``XE`` (W, L -> E), ``XW`` (E, L -> W), the turn
  stage ``T`` (W, E, L), ``N`` (S, T), ``S`` (N, T) and the delivery stage ``D`` (N, S, T),
  which feeds the local port and, on a router at the array's edge, that edge's port (exits,
  U-turns and flits running off the array all leave through ``D``). With the constant
  coordinates of an array those edge multiplexers reduce to wires.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring

from ...config import Config
from .._util import any_of, pick
from ..flit import Port, flit_layout, header_layout
from .arbiter import arbitrate
from .base import Router
from .buffer import VcBuffer
from .link import LinkSignature
from .phit import phase_counter
from .route import route_mask

__all__ = ["LiteRouter"]

_L, _N, _E, _S, _W = (p.value for p in Port)
#: Inputs of the stages: XE, XW, T (N, S and D take their direct inputs by name).
_XE_IN, _XW_IN, _T_IN = (_W, _L), (_E, _L), (_W, _E, _L)


class _Slot:
    """The slot timing of one router: phase, first and last phase, and :meth:`hold`."""

    def __init__(self, m: Module, config: Config):
        self.m, self.n = m, config.phits
        self.phase = phase_counter(m, config)
        self.first = (self.phase == 0) if self.n > 1 else Const(1)
        self.last = (self.phase == self.n - 1) if self.n > 1 else Const(1)
        self.held: dict[str, Signal] = {}

    def at_end(self, sig, name: str):
        """``sig`` as it was in phase 0, for what happens in the slot's last phase: with
        phits the register :meth:`hold` keeps (equal to :meth:`hold`'s value there), so no
        combinational path runs from phase 0's allocation into the last phase's updates (a
        path static timing analysis would count, though the two phases never meet)."""
        return self.ended(name, self.hold(sig, name))

    def ended(self, name: str, held):
        """The register behind ``held`` (what :meth:`hold` gave for ``name``), or ``held``
        itself with one phit."""
        return self.held.get(name, held)

    def hold(self, sig, name: str):
        """``sig`` in phase 0, then the value it had in phase 0 for the rest of the slot."""
        m = self.m
        if not isinstance(sig, Signal):
            wire = Signal(len(sig), name=name)
            m.d.comb += wire.eq(sig)
            sig = wire
        if self.n == 1:
            return sig
        reg = Signal.like(sig, name=f"{name}_held")
        eff = Signal.like(sig, name=f"{name}_eff")
        with m.If(self.first):
            m.d.sync += reg.eq(sig)
        m.d.comb += eff.eq(Mux(self.first, sig, reg))
        self.held[name] = reg
        return eff


@dataclass
class _Input:
    head: Value        # the phit of this phase of the offered flit
    request: Value     # outputs the offered flit asks for (phase 0)
    remaining: Value   # outputs it still has to be sent on
    cur: Signal | None = None      # mesh inputs: the VC looked at
    sents: list | None = None      # mesh inputs: branches already sent, per VC
    buf: VcBuffer | None = None


class LiteRouter(Router):
    """The ``lite`` micro-architecture (module documentation); members as
    :class:`~.base.Router`, with a whole-flit ``in_l``."""

    arch = "lite"

    @classmethod
    def input_signature(cls, config: Config, port: Port) -> wiring.Signature:
        # The local input takes whole flits from the tile core (no serializer).
        if port is Port.LOCAL:
            return LinkSignature(config)
        return super().input_signature(config, port)

    def elaborate(self, platform):
        m = Module()
        slot = _Slot(m, self.config)
        # bit o: this router is on the array's edge on side o
        self._edge = Signal(5, name="edge")
        cfg, x, y = self.config, self.x, self.y
        m.d.comb += self._edge.eq(Cat(Const(0), y == 0, x == cfg.cols - 1, y == cfg.rows - 1,
                                      x == 0))
        local = self._local_input(m, slot)
        ins = [local] + [self._mesh_input(m, slot, Port(p)) for p in range(1, 5)]
        got = self._allocate(m, slot, ins)
        self._switch(m, slot, ins, got)
        self._end_of_slot(m, slot, ins, got)
        return m

    def _local_input(self, m: Module, slot: _Slot) -> _Input:
        """One whole flit from the tile core in a register (the core sends its outputs in
        order anyway), read one phit per phase. With phits, a new flit may enter in the last
        phase of the slot where the one before leaves (full rate); its ready then uses the
        registered decision, so no combinational path runs from the allocation back into the
        core. With phits = 1 the register takes a flit every other cycle."""
        cfg, nv, n, w = self.config, self.config.num_vcs, self.config.phits, \
            self.config.phit_width
        lin = self.in_l
        self._l_leaving = Signal(name="l_leaving")  # the register empties at the end of the cycle
        self._l_flit = Signal(flit_layout(cfg), name="l_flit")
        self._l_full = Signal(name="l_full")
        lmask = Signal(5, name="l_mask")
        self._l_sent = Signal(5, name="l_sent")
        l_room = ~self._l_full | self._l_leaving
        m.d.comb += lin.ready.eq(l_room.replicate(nv))  # the receiver's state only
        with m.If(lin.valid & l_room & (lin.flit.header.vc < nv)):
            m.d.sync += [self._l_flit.eq(lin.flit), self._l_full.eq(1),
                         lmask.eq(route_mask(cfg, lin.flit.header, self.x, self.y, Port.LOCAL))]
        raw = Cat(self._l_flit.as_value(), Const(0, n * w - cfg.flit_width))
        phits = [raw[k * w:(k + 1) * w] for k in range(n)]
        rem = Signal(5, name="rem_l")
        m.d.comb += rem.eq(Mux(self._l_full, lmask & ~self._l_sent, 0))
        req = Signal(5, name="req_l")
        m.d.comb += req.eq(rem & Cat(out.ready.bit_select(self._l_flit.header.vc, 1)
                                     for out in self.outputs))
        return _Input(head=pick([slot.phase == k for k in range(n)], phits), request=req,
                      remaining=rem)

    def _mesh_input(self, m: Module, slot: _Slot, port: Port) -> _Input:
        """A mesh input's buffer (the route mask stored beside phit 0) and the head of its
        current VC."""
        cfg, nv, w = self.config, self.config.num_vcs, self.config.phit_width
        name = port.letter
        inp = self.inputs[port.value]
        valid, word = inp.valid, inp.word
        sliced = cfg.link_slice
        if sliced:
            # the link slice: the phits a cycle late, ready from a register loaded in the
            # slot's last phase with the room the next slot has (what w_rdy then says)
            valid = Signal(name=f"valid_{name}_slice")
            word = Signal.like(inp.word, name=f"word_{name}_slice")
            ready = Signal(nv, name=f"ready_{name}_slice", init=(1 << nv) - 1)
            m.d.sync += [valid.eq(inp.valid), word.eq(inp.word)]
        in_hdr = data.View(header_layout(cfg), word[:cfg.header_width])
        buf = VcBuffer(num_vcs=nv, depth=cfg.buffer_depth, width=w + 5, phits=cfg.phits,
                       sliced=sliced)
        m.submodules[f"buf_{name}"] = buf
        m.d.comb += [
            buf.w_valid.eq(valid), buf.w_vc.eq(in_hdr.vc),
            buf.w_data.eq(Cat(word[:w], route_mask(cfg, in_hdr, self.x, self.y, port))),
        ]
        if sliced:
            with m.If(slot.last):
                m.d.sync += ready.eq(buf.w_rdy_next)
            m.d.comb += inp.ready.eq(ready)
        else:
            m.d.comb += inp.ready.eq(buf.w_rdy)
        if cfg.phits > 1:
            m.d.comb += buf.phase.eq(slot.phase)

        cur = Signal(range(nv), name=f"cur_{name}")  # the VC whose head this input offers
        sents = [Signal(5, name=f"sent_{name}{v}") for v in range(nv)]
        by_cur = [cur == v for v in range(nv)]
        m.d.comb += buf.r_vc.eq(cur)
        head_ok = pick(by_cur, [buf.level[v] for v in range(nv)]) != 0
        rem = Signal(5, name=f"rem_{name}")
        m.d.comb += rem.eq(Mux(head_ok, buf.r_data[w:] & ~pick(by_cur, sents), 0))
        req = Signal(5, name=f"req_{name}")
        m.d.comb += req.eq(rem & Cat(out.ready.bit_select(cur, 1) for out in self.outputs))
        return _Input(head=buf.r_data[:w], request=req, remaining=rem, cur=cur, sents=sents,
                      buf=buf)

    def _allocate(self, m: Module, slot: _Slot, ins: list[_Input]) -> list[Signal]:
        """Which stage each branch takes (phase 0), the arbiters, and the branches each input
        got this slot. A branch to the local port, or to the edge port of a router on that
        edge, goes through D; the others by XE / XW / N / S directly or through T."""
        reqs = [i.request for i in ins]
        edge = self._edge
        inner = ~edge
        d_bits = [reqs[p] & (edge | 1) for p in range(5)]  # local always, edges when on one
        xe_req = Cat(reqs[p][_E] & inner[_E] for p in _XE_IN)
        xw_req = Cat(reqs[p][_W] & inner[_W] for p in _XW_IN)
        t_n = [reqs[p][_N] & inner[_N] for p in _T_IN]
        t_s = [reqs[p][_S] & inner[_S] for p in _T_IN]
        t_req = Cat((t_n[k] | t_s[k] | (d_bits[p] != 0)) for k, p in enumerate(_T_IN))

        first = slot.first
        t_ok = Signal(name="t_ok")
        self._xe_g = arbitrate(m, "arb_xe", xe_req, advance=first)
        self._xw_g = arbitrate(m, "arb_xw", xw_req, advance=first)
        self._t_g = t_g = arbitrate(m, "arb_t", t_req, advance=first & t_ok)
        t_wants_n = any_of(t_g[k] & t_n[k] for k in range(3))
        t_wants_s = any_of(t_g[k] & t_s[k] for k in range(3))
        t_wants_d = any_of(t_g[k] & (d_bits[p] != 0) for k, p in enumerate(_T_IN))
        self._n_g = n_g = arbitrate(m, "arb_n", Cat(reqs[_S][_N] & inner[_N], t_wants_n),
                                    advance=first)
        self._s_g = s_g = arbitrate(m, "arb_s", Cat(reqs[_N][_S] & inner[_S], t_wants_s),
                                    advance=first)
        self._d_g = d_g = arbitrate(m, "arb_d", Cat(d_bits[_N] != 0, d_bits[_S] != 0,
                                                    t_wants_d), advance=first)
        m.d.comb += t_ok.eq((n_g[1] & t_wants_n) | (s_g[1] & t_wants_s) | (d_g[2] & t_wants_d))

        got = []
        for p in range(5):
            bits = Const(0, 5)
            if p in _XE_IN:
                bits = bits | Mux(self._xe_g[_XE_IN.index(p)], 1 << _E, 0)
            if p in _XW_IN:
                bits = bits | Mux(self._xw_g[_XW_IN.index(p)], 1 << _W, 0)
            if p in _T_IN:
                k = _T_IN.index(p)
                bits = bits | Mux(t_g[k] & n_g[1] & t_n[k], 1 << _N, 0)
                bits = bits | Mux(t_g[k] & s_g[1] & t_s[k], 1 << _S, 0)
                bits = bits | Mux(t_g[k] & d_g[2], d_bits[p], 0)
            if p == _S:
                bits = bits | Mux(n_g[0], 1 << _N, 0) | Mux(d_g[1], d_bits[p], 0)
            if p == _N:
                bits = bits | Mux(s_g[0], 1 << _S, 0) | Mux(d_g[0], d_bits[p], 0)
            g = Signal(5, name=f"got_{Port(p).letter}")
            m.d.comb += g.eq(bits)
            got.append(g)
        return got

    def _switch(self, m: Module, slot: _Slot, ins: list[_Input], got: list[Signal]) -> None:
        """One phit per cycle through the stages, steered by the grants held for the slot."""
        w, hold = self.config.phit_width, slot.hold
        heads = [i.head for i in ins]
        xe_h, xw_h, t_h = hold(self._xe_g, "xe"), hold(self._xw_g, "xw"), hold(self._t_g, "t")
        n_h, s_h, d_h = hold(self._n_g, "n"), hold(self._s_g, "s"), hold(self._d_g, "d")
        self._got_h = got_h = [hold(got[p], f"got_{Port(p).letter}") for p in range(5)]
        xe_data = pick(xe_h, [heads[p] for p in _XE_IN])
        xw_data = pick(xw_h, [heads[p] for p in _XW_IN])
        t_data = pick(t_h, [heads[p] for p in _T_IN])
        n_data = pick(n_h, [heads[_S], t_data])
        s_data = pick(s_h, [heads[_N], t_data])
        d_data = Signal(w, name="d_data")
        m.d.comb += d_data.eq(pick(d_h, [heads[_N], heads[_S], t_data]))
        own = {_L: d_data, _N: n_data, _E: xe_data, _S: s_data, _W: xw_data}
        for o, out in enumerate(self.outputs):
            m.d.comb += [
                out.valid.eq(any_of(got_h[p][o] for p in range(5))),
                out.word.eq(own[o] if o == _L else Mux(self._edge[o], d_data, own[o])),
            ]

    def _end_of_slot(self, m: Module, slot: _Slot, ins: list[_Input],
                     got: list[Signal]) -> None:
        """Pop heads whose last branch went, remember partial multicasts, choose each mesh
        input's next VC (the buffers move their pointers in the last phase)."""
        cfg, nv, end, last = self.config, self.config.num_vcs, slot.at_end, slot.last
        vbits = (nv - 1).bit_length()
        # the grants as held for the slot, from their registers (all is updated in the last
        # phase: :meth:`_Slot.at_end`)
        got_h = [slot.ended(f"got_{Port(p).letter}", self._got_h[p]) for p in range(5)]
        lin = self.in_l
        lrem = ins[_L].remaining
        lpop = end((got[_L] != 0) & ((lrem & ~got[_L]) == 0), "pop_l")
        m.d.comb += self._l_leaving.eq(last & lpop if cfg.phits > 1 else 0)
        with m.If(last & lpop):
            m.d.sync += self._l_sent.eq(0)
            with m.If(~(lin.valid & self._l_leaving & (lin.flit.header.vc < nv))):
                m.d.sync += self._l_full.eq(0)
        with m.Elif(last):
            m.d.sync += self._l_sent.eq(self._l_sent | got_h[_L])

        for p in range(1, 5):
            inp = ins[p]
            cur, sents, buf = inp.cur, inp.sents, inp.buf
            letter = Port(p).letter
            pop = end((got[p] != 0) & ((inp.remaining & ~got[p]) == 0), f"pop_{letter}")
            idle = end(inp.request == 0, f"idle_{letter}")
            pops = [pop & (cur == v) for v in range(nv)]
            m.d.comb += buf.pop.eq(Cat(pops))
            counts = [buf.level[v] for v in range(nv)]
            ne_next = Cat(buf.push[v] | ((counts[v] != 0) & ~(pops[v] & (counts[v] == 1)))
                          for v in range(nv))
            nxt = cur
            for k in reversed(range(1, nv)):
                cand = Mux(cur + k >= nv, cur + k - nv, cur + k)[:max(1, vbits)]
                nxt = Mux(ne_next.bit_select(cand, 1), cand, nxt)
            with m.If(last):
                for v in range(nv):
                    with m.If(pops[v]):
                        m.d.sync += sents[v].eq(0)
                    with m.Elif(cur == v):
                        m.d.sync += sents[v].eq(sents[v] | got_h[p])
                with m.If(pop | idle | ~ne_next.bit_select(cur, 1)):
                    m.d.sync += cur.eq(nxt)
