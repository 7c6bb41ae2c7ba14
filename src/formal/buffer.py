"""Harnesses of the router's input buffer, :class:`~wafertile.hdl.noc.VcBuffer`.

The buffer is driven by free inputs in every cycle (``w_valid``, ``w_vc``, ``w_data``,
``w_head``, ``r_vc``, ``pop``), with the fabric's phase from a counter like the routers'.
The one promise of its user that is assumed: a VC is popped only when it holds a flit
(``pop[v]`` only with ``level[v] != 0``, in the slot's last phase) — the router's side of
the contract, whose breach would show in the router checks as a flit that was never
accepted.

- :class:`BufferCountHarness` (k-induction): occupancy, overflow and ready.
- :class:`BufferFifoHarness` (k-induction): a watched flit, chosen by the solver among the
  pushed ones, is read out of its VC unchanged, after exactly the flits that were ahead of
  it. Its invariants name the words stored behind a VC's head, which the buffer shows
  through its proof-only read ports (``peek``: :func:`stored_at`).
"""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from ..hdl.noc import VcBuffer, phase_counter
from .harness import Harness
from .props import Properties

__all__ = ["BufferCountHarness", "BufferFifoHarness", "stored_at"]


def stored_at(buf: VcBuffer, vc: Value, ahead: Value, word: Value | None = None) -> Value:
    """What a buffer built with ``peek`` holds ``ahead`` places behind VC ``vc``'s head:
    word ``word`` of that flit, or its sideband (``word=None``)."""
    out = None
    for v in range(len(buf.stored)):
        for a in range(len(buf.stored[v])):
            if word is None:
                here, value = (vc == v) & (ahead == a), buf.stored_head[v][a]
                out = value if out is None else Mux(here, value, out)
                continue
            for k, value in enumerate(buf.stored[v][a]):
                here = (vc == v) & (ahead == a) & (word == k)
                out = value if out is None else Mux(here, value, out)
    return out


class _BufferHarness(Harness):
    """The buffer of a router input of ``config`` (phits and sideband as the routers use it:
    the compact router's 5-bit route mask with whole flits, none with phits) and its free
    inputs. ``buffer_class`` replaces :class:`VcBuffer` (a mutation)."""

    buffer_class = VcBuffer
    #: build the buffer with its proof-only read port (:class:`VcBuffer` ``peek``)
    peek = False

    def _buffer(self, m: Module, props: Properties):
        cfg = self.config
        n = cfg.phits
        head = 5 if n == 1 else 0
        buf = self.buffer_class(num_vcs=cfg.num_vcs, depth=cfg.buffer_depth,
                                width=cfg.phit_width, phits=n, head_width=head,
                                peek=self.peek)
        m.submodules.dut = buf
        phase = phase_counter(m, cfg) if n > 1 else Const(0, 1)
        last = (phase == n - 1) if n > 1 else Const(1)
        ins = [buf.w_valid, buf.w_vc, buf.w_data, buf.r_vc, buf.pop]
        if head:
            ins.append(buf.w_head)
        if n > 1:
            m.d.comb += buf.phase.eq(phase)
        for sig in ins:
            m.d.comb += sig.eq(AnySeq(len(sig)))
        for v in range(cfg.num_vcs):
            props.assume(f"pop_nonempty_vc{v}", ~(buf.pop[v] & last) | (buf.level[v] != 0),
                         f"the user pops VC {v} only when it holds a flit")
        props.assume("vc_in_range", buf.w_vc < cfg.num_vcs,
                     "the incoming flit's VC is below num_vcs")
        if n > 1:  # the writer keeps the phit link's rule: valid for the whole slot
            before = Signal()
            m.d.sync += before.eq(buf.w_valid)
            with m.If(phase != 0):
                props.assume("write_whole_slot", buf.w_valid == before,
                             "the writer holds w_valid for the whole slot (phit link rule)")
        return buf, phase, last


class BufferCountHarness(_BufferHarness):
    """Occupancy equals pushes minus pops, never above the depth (no overflow); ``w_rdy``
    is exactly "has room" and is steady through a slot; a word is written only into a VC
    with room. All inductive: proved by k-induction."""

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        depth, n = cfg.buffer_depth, cfg.phits
        buf, phase, last = self._buffer(m, props)
        for v in range(cfg.num_vcs):
            count = Signal(range(2 * depth + 2), name=f"count{v}")
            pushed = buf.push[v] & last
            popped = buf.pop[v] & last
            m.d.sync += count.eq(count + pushed - popped)
            props.check(f"level_counts_vc{v}", buf.level[v] == count,
                        f"level[{v}] equals the flits pushed into VC {v} minus those popped")
            props.check(f"no_overflow_vc{v}", count <= depth,
                        f"VC {v} never holds more than buffer_depth = {depth} flits")
            props.check(f"ready_is_room_vc{v}", buf.w_rdy[v] == (buf.level[v] < depth),
                        f"w_rdy[{v}] is high exactly when VC {v} has room for a flit")
            props.check(f"push_needs_room_vc{v}", ~buf.push[v] | (buf.w_rdy[v] & buf.w_valid),
                        f"a word is written into VC {v} only when offered and VC {v} has room")
            props.cover(f"full_vc{v}", buf.level[v] == depth, f"VC {v} is full")
            if n > 1:
                before = Signal(name=f"rdy_before{v}")
                m.d.sync += before.eq(buf.w_rdy[v])
                with m.If(phase != 0):
                    props.check(f"ready_steady_vc{v}", buf.w_rdy[v] == before,
                                f"w_rdy[{v}] changes only between slots")
        props.cover("all_full", Cat(buf.level[v] == depth for v in range(cfg.num_vcs)).all(),
                    "every VC is full at once")


class BufferFifoHarness(_BufferHarness):
    """A watched flit (the solver picks which push) comes out of its VC's head unchanged,
    word by word, with its sideband, after exactly the flits that were ahead of it, and is
    in the buffer until it is popped. Proved by k-induction, with the invariants it needs
    (:meth:`build`) stated as properties of their own."""

    peek = True

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        depth, n = cfg.buffer_depth, cfg.phits
        buf, phase, last = self._buffer(m, props)
        vc = AnyConst(buf.w_vc.shape())
        props.assume("watched_vc_in_range", vc < cfg.num_vcs, "the watched VC exists")
        # the word that the invariants and the read-back check: any one, chosen by the
        # solver once (a proof for every choice is a proof for every word)
        word = AnyConst(range(n)) if n > 1 else Const(0, 1)
        props.assume("watched_word_in_range", word < n, "the checked word is one of the flit's")
        pick = AnySeq(1)
        level = buf.level[0]
        for v in range(1, cfg.num_vcs):
            level = Mux(vc == v, buf.level[v], level)
        pushed_here = buf.push.bit_select(vc, 1)
        popped_here = buf.pop.bit_select(vc, 1) & last

        # state: idle -> filling (its slot) -> waiting (``ahead`` flits before it) -> done
        armed = Signal()      # the watched flit is being written or is in the buffer
        done = Signal()
        ahead = Signal(range(depth + 1))
        words = [Signal(buf.w_data.shape(), name=f"word{k}") for k in range(n)]
        side = Signal(len(buf.w_head)) if n == 1 else None
        start = ~armed & ~done & pick & pushed_here & (phase == 0)
        with m.If(start):
            m.d.sync += [armed.eq(1), ahead.eq(level - popped_here)]
            if side is not None:
                m.d.sync += side.eq(buf.w_head)
        # the words of the watched flit: phase k of its slot
        slot = Signal()  # inside the watched flit's write slot, after its phase 0
        with m.If(start & ~last):
            m.d.sync += slot.eq(1)
        with m.Elif(last):
            m.d.sync += slot.eq(0)
        for k in range(n):
            with m.If((start | slot) & (phase == k)):
                m.d.sync += words[k].eq(buf.w_data)
        with m.If(armed & popped_here):
            with m.If(ahead == 0):
                m.d.sync += [armed.eq(0), done.eq(1)]
            with m.Else():
                m.d.sync += ahead.eq(ahead - 1)
        watched = words[0]
        for k in range(1, n):
            watched = Mux(word == k, words[k], watched)

        # The invariants (each also a property): what the buffer holds for the watched flit.
        peek_data = stored_at(buf, vc, ahead, word)
        for v in range(cfg.num_vcs):
            props.check(f"inv_level_vc{v}", buf.level[v] <= depth,
                        f"invariant: VC {v} holds at most buffer_depth flits")
        props.check("inv_states", ~(armed & done) & (~slot | armed),
                    "invariant: the watched flit is in one state at a time")
        stored = armed & ~slot
        props.check("inv_stored_ahead", ~stored | (ahead < level),
                    "invariant: once written, the watched flit is among its VC's flits, "
                    "`ahead` places behind the head")
        props.check("inv_stored_word", ~stored | (peek_data == watched),
                    "invariant: the buffer holds the watched flit's words there")
        if side is not None:
            props.check("inv_stored_sideband", ~stored | (stored_at(buf, vc, ahead) == side),
                        "invariant: and its sideband")
        if n > 1:
            props.check("inv_writing", ~slot | ((ahead == level) & pushed_here & (phase != 0)),
                        "invariant: while the watched flit is written (its slot after phase "
                        "0) every VC's pointers stand still and its words go in behind the "
                        "flits ahead of it")
            props.check("inv_written_words", ~slot | (word >= phase) |
                        (peek_data == watched),
                        "invariant: the words of its slot written so far are in the buffer")

        at_head = armed & (ahead == 0) & ~slot & ~start
        props.check("watched_in_buffer", ~armed | (level > ahead) | slot | start,
                    "the watched flit stays in its VC until it is popped")
        with m.If(at_head & (buf.r_vc == vc) & (phase == word)):
            props.check("head_word", buf.r_data == watched,
                        "each word of the watched flit is read back unchanged, in its phase, "
                        "when the flit is at the head of its VC (FIFO order)")
        if side is not None:
            with m.If(at_head):
                head = buf.head[0]
                for v in range(1, cfg.num_vcs):
                    head = Mux(vc == v, buf.head[v], head)
                props.check("head_sideband", head == side,
                            "the watched flit's sideband (route mask) is at its VC's head "
                            "with it")
        props.cover("watched_popped", done,
                    "the watched flit is read out and popped")
        props.cover("watched_behind_full",
                    armed & (ahead == depth - 1) & ~slot & ~start,
                    "the watched flit entered a VC with buffer_depth - 1 flits ahead of it")
