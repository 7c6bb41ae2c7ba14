"""The tile core harness: :class:`~wafertile.hdl.core.TileCore` (MAC core + SRAM bank)
against a sequential specification.

The solver picks the operation flits (any opcode, addresses and data, in any cycle, within
the stream rule) and the output's ``ready`` in every cycle. The harness keeps its own copy of
both banks (registers, all addresses, starting at zero like the RTL's memories) and applies
each accepted operation to it at once, in order, with the semantics of its row of the
operation table (:mod:`wafertile.hdl.core.ops`: what it reads, which unit, what it writes and
emits; :class:`~wafertile.sim.models.CoreModel` in numpy), the units' arithmetic written out
here. Every output
flit must then equal the specification's output of the matching request, in order; a
``READ_ACC`` reads the accumulators, so "replies and accumulator contents equal the
sequential specification". The pipeline reads a bank in the cycle the flit ahead writes it
(transparent ports instead of forwarding registers): back-to-back MACs into one accumulator
are exactly what these checks exercise (and what a cover shows).
"""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Array, Module, Mux, Signal, Value, signed
from amaranth.lib import data

from ..config import Overflow
from ..hdl.core import TileCore
from ..hdl.core.ops import matches
from ..hdl.flit import payload_layout
from .harness import Harness
from .link import stream_rules
from .props import Properties

__all__ = ["CoreHarness"]

#: Outputs in flight at most (one per pipeline stage, and the one accepted).
_QUEUE = 4


class CoreHarness(Harness):
    """A :class:`TileCore` of ``config`` against the sequential specification (module
    documentation), by BMC."""

    def make_dut(self):
        """The core under test (a mutation replaces it)."""
        return TileCore(self.config)

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        dw, aw = cfg.data_width, cfg.acc_width
        layout = payload_layout(cfg)
        m.submodules.dut = dut = self.make_dut()
        width = len(dut.i.payload.as_value())
        m.d.comb += [dut.i.valid.eq(AnySeq(1)), dut.i.payload.eq(AnySeq(width)),
                     dut.o.ready.eq(AnySeq(1))]
        ops = dut.ops
        stream_rules(m, props, dut.i, "i", dut=False)
        # every operation of the table but those of the hand-off unit, and every code with no
        # operation (they must do nothing)
        handoff = ops.where(lambda r: r.handoff, cfg)
        props.assume("no_handoff_ops", ~dut.i.valid | ~matches(dut.i.payload.op, handoff),
                     f"the operations of the hand-off unit "
                     f"({', '.join(r.name for r in handoff) or 'none'}: the on-chip "
                     f"requantization) are left to the cocotb regressions")
        stream_rules(m, props, dut.o, "o", dut=True)
        spec = ops.where(lambda r: not r.handoff, cfg)
        for row in spec:  # what the specification below knows how to apply
            if row.unit not in (None, "mac", "add") or row.reg_write or \
                    (row.emit is not None and row.emit.data == "unit"):
                raise ValueError(f"the core's specification has no unit {row.unit!r} "
                                 f"(operation {row.name})")

        # The specification, for one activation address and one accumulator address chosen
        # by the solver (so for every address): their values, updated at each accepted flit.
        # An accumulator that a MAC with another activation address changed is unknown until
        # it is written again.
        watch_act = AnyConst(cfg.act_addr_width)
        watch_acc = AnyConst(cfg.acc_addr_width)
        act = Signal(signed(dw))
        acc = Signal(signed(aw))
        known = Signal(init=1)
        req = dut.i.payload
        take = dut.i.valid & dut.i.ready
        a_act = req.addr[:cfg.act_addr_width]
        b_act = req.addr_b[:cfg.act_addr_width]
        a_acc = req.addr[:cfg.acc_addr_width]
        act_at = {"addr": a_act, "addr_b": b_act}  # an activation, by the field of its row
        low = req.data[:dw].as_signed()
        # Two multipliers (the core's and the specification's) with operands that are equal
        # but come from different places are a miter that SAT solvers take hours on; small
        # weights keep the products cheap while every other bit (activations, addresses,
        # accumulators, the forwarding) stays free. The multiplier itself is checked bit for
        # bit by the cocotb regressions.
        macs = [row for row in spec if row.unit == "mac"]
        props.assume("small_weights", ~(dut.i.valid & matches(req.op, macs)) |
                     ((low >= -2) & (low <= 2)), "MAC weights are from -2 to 2")
        # the units: "mac" acc + weight * act, "add" acc + data (wrapped or saturated)
        addend = Signal(signed(aw + 1))
        total = Signal(signed(aw + 2))
        m.d.comb += [
            addend.eq(Mux(matches(req.op, macs), low * act, req.data)),
            total.eq(acc + addend),
        ]
        if cfg.overflow_mode is Overflow.SATURATE:
            summed = Mux(total > cfg.acc_max, cfg.acc_max,
                         Mux(total < cfg.acc_min, cfg.acc_min, total[:aw].as_signed()))
        else:
            summed = total[:aw].as_signed()
        with m.If(take), m.Switch(req.op):
            for row in spec:
                if not (row.act_write or row.acc_write):
                    continue
                with m.Case(row.code):
                    if row.act_write:
                        with m.If(act_at[row.act_write] == watch_act):
                            m.d.sync += act.eq(low)
                    if row.acc_write == "data":
                        with m.If(a_acc == watch_acc):
                            m.d.sync += [acc.eq(req.data), known.eq(1)]
                    elif row.acc_write and row.skips_zero:  # the weight times an activation
                        with m.If((a_acc == watch_acc) & (low != 0)):
                            with m.If(act_at[row.act_read] != watch_act):
                                m.d.sync += known.eq(0)
                            with m.Elif(act != 0):
                                m.d.sync += acc.eq(summed)
                    elif row.acc_write:
                        with m.If(a_acc == watch_acc):
                            m.d.sync += acc.eq(summed)

        # The outputs the specification expects, in order: a small queue.
        want = Signal(layout)
        sure = Signal()  # the specification knows the data of this output
        emitting = [row for row in spec if row.emit is not None]
        with m.Switch(req.op):
            for row in emitting:
                emit = row.emit
                with m.Case(row.code):
                    m.d.comb += [
                        want.op.eq(emit.op),
                        want.addr.eq(getattr(req, emit.addr) if emit.addr else 0),
                        want.addr_b.eq(getattr(req, emit.addr_b) if emit.addr_b else 0)]
                    if emit.data == "act":
                        m.d.comb += [want.data.eq(act),
                                     sure.eq(act_at[row.act_read] == watch_act)]
                    else:  # "acc": the accumulator's value
                        m.d.comb += [want.data.eq(acc), sure.eq((a_acc == watch_acc) & known)]
        emits = matches(req.op, emitting)
        queue = Array(Signal(layout, name=f"want{k}") for k in range(_QUEUE))
        tags = Array(Signal(aw, name=f"want_tag{k}") for k in range(_QUEUE))
        sures = Array(Signal(name=f"want_sure{k}") for k in range(_QUEUE))
        count = Signal(range(_QUEUE + 1))
        given = dut.o.valid & dut.o.ready
        push = take & emits
        with m.If(given):
            for k in range(_QUEUE - 1):
                m.d.sync += [queue[k].eq(queue[k + 1]), tags[k].eq(tags[k + 1]),
                             sures[k].eq(sures[k + 1])]
        slot = Mux(given, count - 1, count)
        with m.If(push):
            m.d.sync += [queue[slot].eq(want), tags[slot].eq(req.data.as_unsigned()),
                         sures[slot].eq(sure)]
        m.d.sync += count.eq(count + push - given)

        props.check("no_queue_overflow", count < _QUEUE,
                    f"fewer than {_QUEUE} outputs are ever owed (the harness's queue suffices)")
        props.check("no_spurious_output", ~dut.o.valid | (count != 0),
                    "the core offers an output only for an accepted READ or SEND")
        with m.If(dut.o.valid):
            head = data.View(layout, queue[0])
            for field in ("op", "addr", "addr_b"):
                props.check(f"output_{field}", Value.cast(getattr(dut.o.payload, field)) ==
                            Value.cast(getattr(head, field)),
                            f"every output's {field} equals the sequential specification's "
                            f"(in order)")
            with m.If(sures[0]):
                props.check("output_data", dut.o.payload.data == head.data,
                            "every output's data (an activation or accumulator read) equals "
                            "the sequential specification's")
            props.check("output_tag", dut.o_tag == tags[0],
                        "every output's tag equals its request's data")
        props.check("full_rate", dut.o.valid & ~dut.o.ready | dut.i.ready,
                    "the core takes a flit in every cycle unless an output waits (no bubble)")

        # Covers: back-to-back MACs into one accumulator, then its value read back.
        prev_mac = Signal()
        prev_addr = Signal(cfg.acc_addr_width)
        effective = take & matches(req.op, [r for r in macs if r.counts_mac]) & (low != 0) & \
            (act != 0) & (b_act == watch_act) & (a_acc == watch_acc)
        m.d.sync += [prev_mac.eq(effective), prev_addr.eq(a_acc)]
        chained = Signal()
        with m.If(effective & prev_mac & (prev_addr == a_acc)):
            m.d.sync += chained.eq(1)
        props.cover("back_to_back_macs", effective & prev_mac & (prev_addr == a_acc),
                    "two MACs that both change it go into one accumulator in consecutive cycles")
        props.cover("read_after_back_to_back", chained & given & sures[0] & (queue[0].data != 0),
                    "an accumulator updated by back-to-back MACs is read back")
        props.cover("output_waits", dut.o.valid & ~dut.o.ready,
                    "an output waits for ready (backpressure)")
