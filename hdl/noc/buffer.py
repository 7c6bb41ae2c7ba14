"""The input buffer of a router port: one FIFO per virtual channel, all in one LUT RAM."""

from __future__ import annotations

from itertools import product

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .._util import CheckedComponent, any_of, index_bits, pick

__all__ = ["VcBuffer"]


class VcBuffer(CheckedComponent):
    """FIFOs of ``depth`` flits for each of ``num_vcs`` virtual channels, sharing one LUT RAM.

    The RAM's address is ``{vc, pointer, phase}``: choosing which VC to read is the read
    address, not a multiplexer, and a flit of ``phits`` words takes ``phits`` consecutive
    words (one per phase of a slot, :mod:`.phit`). The read is asynchronous (the head word is
    visible in the cycle its address is set), as in a LUT RAM.

    Each VC has a write and a read pointer with one wrap bit, so its occupancy is their
    difference and it is full when they differ only in that bit. ``w_rdy`` depends on this
    state only (it is a link's ``ready``: :mod:`.link`). With ``phits > 1`` the pointers
    move only in the slot's last phase, so ``w_rdy`` and ``level`` change only between
    slots.

    Parameters
    ----------
    num_vcs : int
        Virtual channels (>= 1).
    depth : int
        Flits per VC (a power of two).
    width : int
        Bits of a stored word (a flit, or a phit with anything stored beside it).
    phits : int
        Words per flit (>= 1); with more than one, ``phase`` addresses the word.
    head_width : int
        Bits of a sideband word stored with each flit and readable for the head of every VC
        at once (``head``), in a small RAM per VC (0: none).
    sliced : bool
        With ``phits > 1``: the words come through a one-cycle register slice (the router's
        link slice, ``Config.link_slice``), so word ``k`` of a flit is offered in phase ``k +
        1`` and the last one in the next slot's phase 0. The flit is pushed (its VC's
        pointer moves) in the slot's last phase as without the slice, and its last word is
        written in the next phase 0 at the address it had (registered); ``w_rdy_next`` gives
        in the last phase the room the VCs will have once the pointers moved (the register
        slice's ``ready``: the value ``w_rdy`` has in the next phase 0).
    peek : bool
        Show every stored word, in FIFO order, for proofs only (``wafertile formal``: the
        invariants of a k-induction name the flits behind a VC's head). The fabric never
        sets it; it adds read ports and changes nothing else.

    Members
    -------
    w_valid : ``In(1)``
        A word of an incoming flit is offered.
    w_vc : ``In(vc bits)``
        Its VC (with ``phits > 1``: looked at in phase 0, kept for the slot).
    w_data : ``In(width)``
    w_head : ``In(head_width)`` (with ``head_width``)
        The sideband word of the incoming flit.
    w_rdy : ``Out(num_vcs)``
        Bit ``v``: VC ``v`` has room for a whole flit.
    w_rdy_next : ``Out(num_vcs)`` (with ``sliced``)
        ``w_rdy`` after this cycle's pointer moves.
    push : ``Out(num_vcs)``
        Bit ``v``: the offered word is written into VC ``v`` in this cycle.
    r_vc : ``In(vc bits)``
        The VC whose head is read.
    r_data : ``Out(width)``
        The head word of VC ``r_vc`` (of the current phase).
    head : ``Out(head_width).array(num_vcs)`` (with ``head_width``)
        The sideband word of each VC's head.
    level : ``Out(range(depth + 1)).array(num_vcs)``
        Flits in each VC.
    pop : ``In(num_vcs)``
        Bit ``v``: remove VC ``v``'s head (in the slot's last phase).
    phase : ``In(range(phits))`` (with ``phits > 1``)
        The phase of the slot, shared by the whole fabric.
    stored : ``Out(width).array(num_vcs, depth, phits)`` (with ``peek``)
        ``stored[v][a][k]``: word ``k`` of the flit ``a`` places behind VC ``v``'s head (0:
        the head; what is there beyond ``level[v]`` means nothing).
    stored_head : ``Out(head_width).array(num_vcs, depth)`` (with ``peek`` and ``head_width``)
        The sideband stored with each of those flits.

    Raises
    ------
    TypeError
        For a parameter that is not a positive integer (``head_width``: non-negative).
    ValueError
        If ``depth`` is not a power of two, or a sideband is asked for with ``phits > 1``.
    """

    def __init__(self, *, num_vcs: int, depth: int, width: int, phits: int = 1,
                 head_width: int = 0, sliced: bool = False, peek: bool = False):
        self._num_vcs, self._depth, self._width = num_vcs, depth, width
        self._phits, self._head_width, self._peek = phits, head_width, bool(peek)
        self._sliced = bool(sliced)
        vbits = index_bits(num_vcs)
        members = {
            "w_valid": In(1), "w_vc": In(vbits), "w_data": In(width),
            "w_rdy": Out(num_vcs), "push": Out(num_vcs),
            "r_vc": In(vbits), "r_data": Out(width),
            "level": Out(range(depth + 1)).array(num_vcs),
            "pop": In(num_vcs),
        }
        if head_width:
            members["w_head"] = In(head_width)
            members["head"] = Out(head_width).array(num_vcs)
        if phits > 1:
            members["phase"] = In(range(phits))
        if sliced:
            members["w_rdy_next"] = Out(num_vcs)
        if peek:
            members["stored"] = Out(width).array(num_vcs, depth, phits)
            if head_width:
                members["stored_head"] = Out(head_width).array(num_vcs, depth)
        super().__init__(members)

    @classmethod
    def check(cls, *, num_vcs, depth, width, phits=1, head_width=0, sliced=False,
              peek=False) -> None:
        for name, value, low in (("num_vcs", num_vcs, 1), ("depth", depth, 1),
                                 ("width", width, 1), ("phits", phits, 1),
                                 ("head_width", head_width, 0)):
            if type(value) is not int or value < low:
                kind = "a positive" if low else "a non-negative"
                raise TypeError(f"VcBuffer {name} must be {kind} integer, not {value!r}")
        if depth & (depth - 1):
            raise ValueError(f"VcBuffer depth must be a power of two, not {depth}")
        if sliced and phits < 2:
            raise ValueError(f"VcBuffer sliced needs phits > 1 (the slice's cycle hides in the "
                             f"slot), not phits = {phits}")
        if head_width and phits > 1:
            raise ValueError(f"VcBuffer head_width needs phits = 1 (a sideband is written once "
                             f"per flit), not phits = {phits}")

    def elaborate(self, platform):
        m = Module()
        nv, depth, n = self._num_vcs, self._depth, self._phits
        abits = (depth - 1).bit_length()
        pbits = (n - 1).bit_length()
        vbits = index_bits(nv)
        sliced = self._sliced
        if n > 1:
            phase = self.phase
            last = phase == n - 1
            # the phase of the word offered: one behind with the slice (the last word comes
            # in the next slot's phase 0)
            wphase = Mux(phase == 0, n - 1, phase - 1)[:max(1, pbits)] if sliced else phase
            # The flit's VC is in its first phit (phase 0); keep it for the slot.
            held_vc = Signal(vbits)
            with m.If(wphase == 0):
                m.d.sync += held_vc.eq(self.w_vc)
            vc_in = Mux(wphase == 0, self.w_vc, held_vc)
        else:
            phase, wphase, last, vc_in = Const(0, 1), Const(0, 1), Const(1), self.w_vc

        # Pointers with a wrap bit; ready and occupancy from them alone.
        wps = [Signal(abits + 1, name=f"wp{v}") for v in range(nv)]
        rps = [Signal(abits + 1, name=f"rp{v}") for v in range(nv)]
        def is_full(wp, rp):
            return (wp[abits] != rp[abits]) & (wp[:abits] == rp[:abits])

        for v in range(nv):
            wp, rp = wps[v], rps[v]
            full = is_full(wp, rp)
            m.d.comb += [
                self.w_rdy[v].eq(~full),
                self.push[v].eq(self.w_valid & (vc_in == v) & ~full),
                self.level[v].eq(wp - rp),
            ]
            with m.If(self.push[v] & last):
                m.d.sync += wp.eq(wp + 1)
            with m.If(self.pop[v] & last):
                m.d.sync += rp.eq(rp + 1)
            if sliced:
                m.d.comb += self.w_rdy_next[v].eq(~is_full(wp + (self.push[v] & last),
                                                           rp + (self.pop[v] & last)))

        def at(ptrs, vc, ahead=0, word=phase):
            """Address of word ``word`` (default: the current phase's) of the flit ``ahead``
            places behind ``ptrs[vc]`` in VC ``vc``."""
            ptr = pick([vc == v for v in range(nv)], [p[:abits] for p in ptrs]) + ahead
            return Cat(word[:pbits], ptr[:abits], vc[:vbits]) if n > 1 else \
                Cat(ptr[:abits], vc[:vbits])

        m.submodules.ram = ram = Memory(shape=unsigned(self._width), depth=nv << (pbits + abits),
                                        init=[])
        wr = ram.write_port()
        rd = ram.read_port(domain="comb")
        write = any_of(self.push[v] for v in range(nv))
        addr = at(wps, vc_in, word=wphase)
        if sliced:
            # the last word, in the next slot's phase 0: where the flit was pushed (the
            # pointer has moved since), if it was
            tail_en = Signal(name="tail_en")
            tail_addr = Signal(len(addr), name="tail_addr")
            with m.If(last):
                m.d.sync += [tail_en.eq(write), tail_addr.eq(at(wps, vc_in, word=wphase + 1))]
            write = Mux(phase == 0, tail_en, write)
            addr = Mux(phase == 0, tail_addr, addr)
        m.d.comb += [
            wr.en.eq(write),
            wr.addr.eq(addr),
            wr.data.eq(self.w_data),
            rd.addr.eq(at(rps, self.r_vc)),
            self.r_data.eq(rd.data),
        ]
        for v, a, k in product(range(nv), range(depth), range(n)) if self._peek else ():
            pk = ram.read_port(domain="comb")
            m.d.comb += [pk.addr.eq(at(rps, Const(v, vbits), a, Const(k, max(1, pbits)))),
                         self.stored[v][a][k].eq(pk.data)]

        # The sideband: one small RAM per VC, so that every VC's head is visible at once.
        for v in range(self._head_width and nv):
            side = Memory(shape=unsigned(self._head_width), depth=depth, init=[])
            m.submodules[f"head{v}"] = side
            swr = side.write_port()
            srd = side.read_port(domain="comb")
            m.d.comb += [
                swr.addr.eq(wps[v][:abits]), swr.data.eq(self.w_head), swr.en.eq(self.push[v]),
                srd.addr.eq(rps[v][:abits]), self.head[v].eq(srd.data),
            ]
            for a in range(depth) if self._peek else ():
                spk = side.read_port(domain="comb")
                m.d.comb += [spk.addr.eq(rps[v][:abits] + a),
                             self.stored_head[v][a].eq(spk.data)]
        return m
