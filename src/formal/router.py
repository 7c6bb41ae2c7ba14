"""The router harness: link rules on every port, and watched flits through the router, for
every micro-architecture (``compact``, ``parallel``, ``lite``).

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

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import data, wiring

from ..config import Config
from ..hdl.flit import Port, flit_layout
from ..hdl.noc import PhitRx, PhitTx, make_router, phase_counter
from .harness import Harness
from .link import flit_link_rules, flit_transfer, phit_link_rules
from .props import Properties
from .route import spec_route

__all__ = ["RouterHarness", "drain_cycles"]


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
        owed = [Signal(range(2 * self.depth_hint + 1), name=f"owed_{Port(o).letter}")
                for o in range(5)]
        gone = [Signal(range(2 * self.depth_hint + 1), name=f"gone_{Port(o).letter}")
                for o in range(5)]
        owed_now = [[] for _ in range(5)]
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
            total = owed[o] + sum(owed_now[o])
            m.d.sync += [owed[o].eq(total), gone[o].eq(gone[o] + flit_transfer(out))]
        props.check("nothing_appears",
                    Cat(gone[o] <= owed[o] for o in range(5)).all(),
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
