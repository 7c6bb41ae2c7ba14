"""The router harness: link rules on every port, and watched flits through the router, for
every micro-architecture (``compact``, ``parallel``, ``lite``, ``voq``).

The router's coordinates are chosen by the solver (any position of the array). Every input
offers any flit in any cycle, within the link rule (a flit only on a VC that is ready: the
upstream router's promise); every output's ``ready`` is free. A ``lite`` router with phits
is checked inside its mesh endpoints: a :class:`~wafertile.hdl.noc.PhitTx` in front of each
phit input and a per-VC :class:`~wafertile.hdl.noc.PhitRx` behind each output (as in a mesh),
so that flits are compared whole; the router's own phit ports are checked against the phit
link rule in between.

Two watched flits ``w1`` and ``w2`` (any header and payload, chosen by the solver) may be
accepted at one input ``src`` (also chosen), each at most once, ``w2`` after ``w1``. They are
marked by two payload bits (1 and 2; every other flit carries 0 or 3 there): the router never
looks at the payload, so the mark costs no behaviour, and the solver tells them apart without
comparing whole flits (comparing every flit with a free constant made the check intractable).
Then, on every output:

- ``nothing_appears``: no output sends more flits than the inputs accepted for it (by the
  routing rule);
- ``watched_accepted_first``: ``w1`` leaves only after it was accepted;
- ``watched_unchanged_<port>``: it leaves unchanged, header and payload;
- ``watched_routed``: ``w1`` leaves only on the outputs the routing rule
  (:func:`~.route.spec_route`, written independently) names for it;
- ``watched_once``: ``w1`` leaves each output at most once;
- ``watched_order``: if ``w2`` has the same VC and also goes to that output, it does not
  leave before ``w1`` has left there;
- ``watched_delivered`` (with ``drain > 0``): once the environment goes quiet (no new flit
  offered, every downstream VC ready), ``w1`` has left on every output of its route within
  ``drain`` cycles (bounded liveness). A bound that covers a full router draining needs a
  BMC depth out of reach (``docs/formal.md``), so the checks of ``wafertile formal`` run
  with ``drain=0``.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring

from ..config import Config
from ..hdl.flit import Port, flit_layout
from ..hdl.noc import PhitRx, PhitTx, make_router, phase_counter
from ..hdl.noc.compact import CompactRouter
from ..hdl.noc.voq import VoqRouter
from .buffer import stored_at
from .harness import Harness
from .link import flit_link_rules, flit_transfer, phit_link_rules
from .props import Properties
from .route import spec_route

__all__ = ["CompactRouterProof", "RouterHarness", "VoqRouterProof", "drain_cycles"]


@dataclass
class _Watch:
    """What the router harness keeps about the watched flits, for the invariants."""

    dut: object
    x: Value
    y: Value
    src: Value
    w: tuple          # the watched flits' words
    headers: tuple    # their headers
    accepted: tuple   # accepted already (registers)
    taken: tuple      # accepted in this cycle
    route1: Value     # w1's route (the spec's)
    sent1: Value      # the outputs w1 has left on
    pending: list     # per output: flits owed to it, not yet gone


def _pick(index: Value, values: list) -> Value:
    """``values[index]`` (``values[0]`` for an index past the end)."""
    out = values[0]
    for k in range(1, len(values)):
        out = Mux(index == k, values[k], out)
    return out


def drain_cycles(config: Config) -> int:
    """A bound on the cycles a full router of ``config`` (and its endpoint adapters) needs to
    send everything it holds when every downstream VC is ready and nothing new comes in:
    every buffered flit may need a cycle (a slot, with phits) of its own at the busiest
    output, plus the pipeline."""
    flits = 5 * config.num_vcs * config.buffer_depth
    return (flits + 4) * config.phits


class RouterHarness(Harness):
    """Watched flits through one router of ``config`` (module documentation).

    Parameters
    ----------
    config : Config
    drain : int, optional
        The liveness bound (default :func:`drain_cycles`); 0 leaves ``watched_delivered``
        out.
    """

    def __init__(self, config: Config, *, drain: int | None = None):
        super().__init__(config)
        self.drain = drain_cycles(config) if drain is None else drain
        #: flits counted per output (``nothing_appears``): more than any check's depth
        self.depth_hint = 64

    def make_dut(self):
        """The router under test (a mutation replaces it)."""
        return make_router(self.config)

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        nv, fw = cfg.num_vcs, cfg.flit_width
        m.submodules.dut = dut = self.make_dut()
        x, y = AnyConst(cfg.x_width), AnyConst(cfg.y_width)
        props.assume("x_in_array", x < cfg.cols, "the router's column is in the array")
        props.assume("y_in_array", y < cfg.rows, "the router's row is in the array")
        m.d.comb += [dut.x.eq(x), dut.y.eq(y)]
        ins, outs = self._ports(m, props, dut)

        # The environment: any flit on any input (link rule assumed), any ready downstream,
        # except when quiet (liveness).
        quiet = Signal()
        m.d.sync += quiet.eq(quiet | AnySeq(1))
        for p, link in enumerate(ins):
            name = f"in_{Port(p).letter}"
            m.d.comb += [link.valid.eq(AnySeq(1)), link.flit.eq(AnySeq(fw))]
            flit_link_rules(m, props, cfg, link, name, dut=False)
            with m.If(quiet):
                props.assume(f"{name}_quiet", ~link.valid, "quiet: no new flit is offered")
        for o, link in enumerate(outs):
            name = f"out_{Port(o).letter}"
            m.d.comb += link.ready.eq(AnySeq(nv))
            flit_link_rules(m, props, cfg, link, name, dut=True)
            with m.If(quiet):
                props.assume(f"{name}_quiet", link.ready.all(),
                             "quiet: every downstream VC is ready")

        # The watched flits: marked by the two low payload bits (1: w1, 2: w2; every other
        # flit has 0 or 3 there), so that the router, which never looks at the payload,
        # carries them like any other, and they are told apart without comparing whole flits.
        hw = cfg.header_width
        w1, w2 = AnyConst(fw), AnyConst(fw)
        src = AnyConst(3)
        props.assume("src_is_a_port", src < 5, "the watched input is one of the five")
        props.assume("w1_marked", w1[hw:hw + 2] == 1, "w1 carries mark 1")
        props.assume("w2_marked", w2[hw:hw + 2] == 2, "w2 carries mark 2")
        acc1, acc2 = Signal(), Signal()
        # flits accepted for each output (by the routing rule) that have not left on it yet
        pending = [Signal(range(self.depth_hint + 1), name=f"pending_{Port(o).letter}")
                   for o in range(5)]
        owed_now = [[] for _ in range(5)]
        taken_w = [[], []]  # per input: w1 / w2 accepted in this cycle
        for p, link in enumerate(ins):
            taken = flit_transfer(link)
            word = link.flit.as_value()
            mark = word[hw:hw + 2]
            letter = Port(p).letter
            props.assume(f"w1_at_src_{letter}", ~(taken & (mark == 1)) | (
                (src == p) & ~acc1 & (word == w1)),
                "w1 is accepted at most once, at the watched input only")
            props.assume(f"w2_at_src_{letter}", ~(taken & (mark == 2)) | (
                (src == p) & acc1 & ~acc2 & (word == w2)),
                "w2 is accepted at most once, at the watched input, after w1")
            with m.If(taken & (mark == 1)):
                m.d.sync += acc1.eq(1)
            with m.If(taken & (mark == 2)):
                m.d.sync += acc2.eq(1)
            taken_w[0].append(taken & (mark == 1))
            taken_w[1].append(taken & (mark == 2))
            route = spec_route(cfg, link.flit.header, x, y, Port(p))
            for o in range(5):
                owed_now[o].append(taken & route[o])

        h1 = data.View(flit_layout(cfg), w1).header
        h2 = data.View(flit_layout(cfg), w2).header
        route1 = Signal(5)
        for p in Port:
            with m.If(src == p.value):
                m.d.comb += route1.eq(spec_route(cfg, h1, x, y, p))
        sent1 = Signal(5)
        same_vc = Value.cast(h1.vc) == Value.cast(h2.vc)
        leaves1 = Signal(5)
        leaves2 = Signal(5)
        m.d.comb += [
            leaves1.eq(Cat(flit_transfer(out) & (out.flit.as_value()[hw:hw + 2] == 1)
                           for out in outs)),
            leaves2.eq(Cat(flit_transfer(out) & (out.flit.as_value()[hw:hw + 2] == 2)
                           for out in outs)),
        ]
        m.d.sync += sent1.eq(sent1 | leaves1)
        for o, out in enumerate(outs):
            owed = sum(owed_now[o])
            m.d.sync += pending[o].eq(pending[o] + owed - flit_transfer(out))
        props.check("nothing_appears",
                    Cat(flit_transfer(out) <= pending[o] + sum(owed_now[o])
                        for o, out in enumerate(outs)).all(),
                    "no output sends more flits than were accepted for it by the routing "
                    "rule: no flit appears that was not accepted")
        props.check("watched_accepted_first", (leaves1 == 0) | acc1,
                    "the watched flit leaves only after it was accepted")
        for o, out in enumerate(outs):
            with m.If(leaves1[o]):
                props.check(f"watched_unchanged_{Port(o).letter}", out.flit.as_value() == w1,
                            f"the watched flit leaves {Port(o).name.lower()} unchanged "
                            f"(header and payload)")
        props.check("watched_routed", (leaves1 & ~route1) == 0,
                    "a flit leaves only on outputs that the routing rule names for it")
        props.check("watched_once", (leaves1 & sent1) == 0,
                    "a flit leaves each output at most once")
        props.check("watched_order", ~same_vc | ((leaves2 & route1 & ~sent1) == 0),
                    "a later flit of the same input and VC never leaves an output before an "
                    "earlier one that goes there too")
        if self.drain:
            waited = Signal(range(self.drain + 1))
            with m.If(quiet & acc1 & (waited != self.drain)):
                m.d.sync += waited.eq(waited + 1)
            with m.If(waited == self.drain):
                props.check("watched_delivered", sent1 == route1,
                            f"in a quiet environment, a flit has left on every output of its "
                            f"route within {self.drain} cycles of its acceptance")

        # Covers: a multicast on all five outputs in one cycle; every input buffer full.
        props.cover("multicast_all_outputs", leaves1 == 0b11111,
                    "one flit leaves on all five outputs in the same cycle")
        props.cover("watched_order_seen", acc2 & same_vc & ((sent1 & route1) != 0) & (
            leaves2 != 0), "a second flit of the same input and VC follows the first out")
        fulls = []
        phase = self._phase
        for p, link in enumerate(dut.inputs):
            for v in range(nv):
                full = ~link.ready[v] & (phase == 0)
                fulls.append(full)
                props.cover(f"full_{Port(p).letter}_vc{v}", full,
                            f"input {Port(p).name.lower()}'s VC {v} buffer is full")
        props.cover("all_buffers_full", Cat(fulls).all(), "every input buffer is full at once")
        self.invariants(m, props, _Watch(
            dut=dut, x=x, y=y, src=src, w=(w1, w2), headers=(h1, h2), accepted=(acc1, acc2),
            taken=(Cat(taken_w[0]) != 0, Cat(taken_w[1]) != 0), route1=route1, sent1=sent1,
            pending=pending))

    def invariants(self, m: Module, props: Properties, watch: _Watch) -> None:
        """Add the invariants a k-induction needs (none: the checks of this harness are
        bounded; :class:`CompactRouterProof` adds them)."""

    def _ports(self, m: Module, props: Properties, dut):
        """The whole-flit links the environment drives and reads: the router's own, or for a
        ``lite`` router with phits, those of its endpoint adapters (with the phit link rules
        checked on the router's phit ports)."""
        cfg = self.config
        if cfg.phits == 1:
            self._phase = Const(0, 1)
            return dut.inputs, dut.outputs
        self._phase = phase = phase_counter(m, cfg, name="fabric_phase")
        ins, outs = [dut.in_l], []
        for p in range(1, 5):
            tx = PhitTx(cfg)
            m.submodules[f"tx_{Port(p).letter}"] = tx
            wiring.connect(m, tx.o, dut.inputs[p])
            ins.append(tx.i)
        for o in range(5):
            rx = PhitRx(cfg, per_vc=True)
            m.submodules[f"rx_{Port(o).letter}"] = rx
            wiring.connect(m, dut.outputs[o], rx.i)
            phit_link_rules(m, props, cfg, dut.outputs[o], f"phit_out_{Port(o).letter}", phase,
                            dut=True)
            outs.append(rx.o)
        return ins, outs


class _RouterProof(RouterHarness):
    """The router harness around a router of class :attr:`router` built for proofs
    (``peek=True``), with whole flits and no liveness bound; a subclass adds the invariants."""

    #: The router class (its ``arch`` is the micro-architecture the proof takes).
    router: type

    def __new__(cls, config: Config, *args, **kwargs):
        # refused before the object exists (Amaranth warns of an elaboratable never used)
        if config.router_arch != cls.router.arch or config.phits != 1:
            raise ValueError(f"{cls.__name__} needs the {cls.router.arch} router with whole "
                             f"flits, not {config.router_arch!r} with {config.phits} phits")
        return super().__new__(cls)

    def __init__(self, config: Config):
        super().__init__(config, drain=0)

    def make_dut(self):
        return self.router(self.config, peek=True)


class CompactRouterProof(_RouterProof):
    """The router harness around a ``compact`` router built for proofs (``peek``), with the
    invariants that make its properties inductive: proved by k-induction.

    - every VC of every input holds at most ``buffer_depth`` flits;
    - a watched flit, once accepted and until its buffer pops it, is ``ahead`` places behind
      the head of its VC at the watched input, stored unchanged with the route the rule
      gives it; no other stored flit carries its mark; ``w2`` is behind ``w1`` in one VC;
    - at the head, the router's ``sent`` register of that VC is what has left (``sent1``);
      when the buffer pops ``w1``, it has left on its whole route;
    - a VC's ``sent`` is empty when the VC is and a part of its head's route;
    - the flits owed to each output are the stored ones whose route names it, less the
      branches their heads have sent.
    """

    router = CompactRouter

    def invariants(self, m: Module, props: Properties, watch: _Watch) -> None:
        cfg = self.config
        nv, depth, hw = cfg.num_vcs, cfg.buffer_depth, cfg.header_width
        state = watch.dut.state
        bufs, sents = state["buffers"], state["sent"]
        src = watch.src

        def at_src(values):
            return _pick(src, values)

        def by_vc(values, vc):
            return _pick(vc, values)

        for p, buf in enumerate(bufs):
            for v in range(nv):
                props.check(f"inv_level_{Port(p).letter}{v}", buf.level[v] <= depth,
                            f"invariant: input {Port(p).name.lower()}'s VC {v} holds at most "
                            f"buffer_depth flits")

        # where the watched flits are: like the buffer's FIFO proof, per watched flit
        stored, ahead = [Signal(name=f"stored{i + 1}") for i in range(2)], \
            [Signal(range(depth + 1), name=f"ahead{i + 1}") for i in range(2)]
        vcs = [Value.cast(h.vc) for h in watch.headers]
        for i in range(2):
            level = by_vc([at_src([b.level[v] for b in bufs]) for v in range(nv)], vcs[i])
            popped = by_vc([at_src([b.pop[v] for b in bufs]) for v in range(nv)], vcs[i])
            with m.If(watch.taken[i]):
                m.d.sync += [stored[i].eq(1), ahead[i].eq(level - popped)]
            with m.Elif(stored[i] & popped):
                with m.If(ahead[i] == 0):
                    m.d.sync += stored[i].eq(0)
                with m.Else():
                    m.d.sync += ahead[i].eq(ahead[i] - 1)
            # w1's whole word (it must leave unchanged); w2's mark is enough (inv_stored_*)
            same = Const(1) if i else \
                at_src([stored_at(b, vcs[i], ahead[i], Const(0)) for b in bufs]) == watch.w[i]
            props.check(f"inv_w{i + 1}_stored", ~stored[i] | (
                watch.accepted[i] & (ahead[i] < level) & same),
                f"invariant: once accepted and until popped, w{i + 1} is stored "
                f"{'unchanged ' if i == 0 else ''}behind the flits ahead of it in its VC")
        route = at_src([stored_at(b, vcs[0], ahead[0]) for b in bufs])
        sent_head = by_vc([at_src([s[v] for s in sents]) for v in range(nv)], vcs[0])
        acc1, acc2 = watch.accepted
        sent1, route1 = watch.sent1, watch.route1
        props.check("inv_w1_route", ~stored[0] | (route == route1),
                    "invariant: w1 is stored with the route the rule gives it")
        props.check("inv_w1_sent", ((sent1 & ~route1) == 0) & (acc1 | (sent1 == 0)) &
                    (~stored[0] | (ahead[0] == 0) | (sent1 == 0)) &
                    (~stored[0] | (ahead[0] != 0) | (sent_head == sent1)) &
                    (~acc1 | stored[0] | (sent1 == route1)),
                    "invariant: w1 has left on part of its route; at its VC's head the "
                    "router's sent register says which part; popped, on all of it")
        props.check("inv_order", (~acc2 | acc1) & ~(
            stored[0] & stored[1] & (vcs[0] == vcs[1]) & (ahead[1] <= ahead[0])),
            "invariant: w2 is accepted after w1, and behind it in one VC")

        counts = [[] for _ in range(5)]
        for p, buf in enumerate(bufs):
            for v in range(nv):
                for a in range(depth):
                    here = a < buf.level[v]
                    word = buf.stored[v][a][0]
                    mark = word[hw:hw + 2]
                    good = Value.cast(data.View(flit_layout(cfg), word).header.vc) == v
                    for i in range(2):
                        mine = stored[i] & (src == p) & (vcs[i] == v) & (ahead[i] == a)
                        good &= (mark == i + 1) == mine
                    props.check(f"inv_stored_{Port(p).letter}{v}_{a}", ~here | good,
                                f"invariant: a flit stored in input {Port(p).name.lower()}'s "
                                f"VC {v} is of VC {v}, and carries a watched flit's mark "
                                f"exactly where that flit is")
                    head = buf.stored_head[v][a]
                    left = sents[p][v] if a == 0 else Const(0, 5)
                    for o in range(5):
                        counts[o].append(here & head[o] & ~left[o])
                sent = sents[p][v]
                props.check(f"inv_sent_{Port(p).letter}{v}", Mux(
                    buf.level[v] == 0, sent == 0, (sent & ~buf.stored_head[v][0]) == 0),
                    "invariant: a VC's sent register is empty when the VC is, else a part of "
                    "its head's route")
        for o in range(5):
            props.check(f"inv_pending_{Port(o).letter}", watch.pending[o] == sum(counts[o]),
                        f"invariant: the flits owed to {Port(o).name.lower()} are the stored "
                        f"ones whose route names it, less the branches their heads have sent")


class VoqRouterProof(_RouterProof):
    """The router harness around a ``voq`` router built for proofs (``peek``), with the
    invariants that make its properties inductive: proved by k-induction.

    The harness follows each watched flit to its slot: the lowest free slot of its VC at the
    watched input when it is accepted (the router's rule), held while the slot's remaining
    branches (``rem``) are not all gone. The invariants:

    - a watched flit is accepted before it is followed; ``w2`` only after ``w1``;
    - ``w1``, while followed, is stored unchanged in its slot, whose ``rem`` is its route (the
      rule's) less the outputs it has left on; once no longer followed it has left on all of
      its route, and never on an output outside it;
    - ``w2`` and ``w1`` followed in one VC: ``w1``'s slot is older than ``w2``'s;
    - any two occupied slots of one VC are ordered by the age matrix (one is older);
    - every occupied slot holds a flit of its VC, carrying a watched flit's mark exactly where
      that flit is followed;
    - the flits owed to each output are the occupied slots whose ``rem`` names it.
    """

    router = VoqRouter

    def invariants(self, m: Module, props: Properties, watch: _Watch) -> None:
        cfg = self.config
        nv, depth, hw = cfg.num_vcs, cfg.buffer_depth, cfg.header_width
        state = watch.dut.state
        rems, olders, words = state["rem"], state["older"], state["stored"]
        src = watch.src
        vcs = [Value.cast(h.vc) for h in watch.headers]

        def at(table, vc, slot):
            """``table[src][vc][slot]``."""
            return _pick(src, [_pick(vc, [_pick(slot, row) for row in per_port])
                               for per_port in table])

        # Follow each watched flit to its slot.
        held = [Signal(name=f"held{i + 1}") for i in range(2)]
        slots = [Signal(range(depth), name=f"slot{i + 1}") for i in range(2)]
        followed = []
        for i in range(2):
            rem_here = at(rems, vcs[i], slots[i])
            lowest_free = Const(depth - 1, range(depth))
            for s in reversed(range(depth)):
                lowest_free = Mux(at(rems, vcs[i], Const(s, range(depth))) == 0, s,
                                  lowest_free)
            with m.If(watch.taken[i]):
                m.d.sync += [held[i].eq(1), slots[i].eq(lowest_free)]
            with m.Elif(rem_here == 0):
                m.d.sync += held[i].eq(0)
            here = Signal(name=f"followed{i + 1}")
            m.d.comb += here.eq(held[i] & (rem_here != 0))
            followed.append(here)
            props.check(f"inv_w{i + 1}_accepted", ~held[i] | watch.accepted[i],
                        f"invariant: w{i + 1} is followed only once accepted")

        acc1, acc2 = watch.accepted
        sent1, route1 = watch.sent1, watch.route1
        props.check("inv_w1_stored", ~followed[0] | (
            (at(rems, vcs[0], slots[0]) == (route1 & ~sent1)) &
            (at(words, vcs[0], slots[0]) == watch.w[0])),
            "invariant: while followed, w1 is stored unchanged in its slot, whose remaining "
            "branches are its route less the outputs it has left on")
        props.check("inv_w1_sent", ((sent1 & ~route1) == 0) & (acc1 | (sent1 == 0)) &
                    (~acc1 | followed[0] | (sent1 == route1)),
                    "invariant: w1 has left on part of its route, nothing before it was "
                    "accepted, and all of it once no longer followed")
        older_12 = _pick(src, [_pick(vcs[0], [
            _pick(slots[0], [_pick(slots[1], [Const(0) if o is None else o for o in row])
                             for row in per_vc])
            for per_vc in per_port]) for per_port in olders])
        props.check("inv_order", (~acc2 | acc1) & ~(
            followed[0] & followed[1] & (vcs[0] == vcs[1]) & ~older_12),
            "invariant: w2 is accepted after w1, and in one VC its slot is younger than w1's")

        counts = [[] for _ in range(5)]
        for p in range(5):
            letter = Port(p).letter
            for v in range(nv):
                rem, older, word = rems[p][v], olders[p][v], words[p][v]
                for a in range(depth):
                    full = rem[a] != 0
                    mark = word[a][hw:hw + 2]
                    good = Value.cast(data.View(flit_layout(cfg), word[a]).header.vc) == v
                    for i in range(2):
                        mine = followed[i] & (src == p) & (vcs[i] == v) & (slots[i] == a)
                        good &= (mark == i + 1) == mine
                    props.check(f"inv_stored_{letter}{v}_{a}", ~full | good,
                                f"invariant: an occupied slot of input "
                                f"{Port(p).name.lower()}'s VC {v} holds a flit of VC {v}, "
                                f"with a watched flit's mark exactly where that flit is")
                    for b in range(a + 1, depth):
                        props.check(f"inv_age_{letter}{v}_{a}{b}",
                                    (rem[a] == 0) | (rem[b] == 0) | (older[a][b] != older[b][a]),
                                    f"invariant: of two occupied slots of input "
                                    f"{Port(p).name.lower()}'s VC {v}, one is older")
                    for o in range(5):
                        counts[o].append(rem[a][o])
        for o in range(5):
            props.check(f"inv_pending_{Port(o).letter}", watch.pending[o] == sum(counts[o]),
                        f"invariant: the flits owed to {Port(o).name.lower()} are the "
                        f"occupied slots whose remaining branches name it")
