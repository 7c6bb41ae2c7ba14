"""The tile core harness: :class:`~wafertile.hdl.core.TileCore` (MAC core + SRAM bank)
against a sequential specification, for every operation of the table, integer and float.

The solver picks the operation flits (any opcode, addresses and data, in any cycle, within
the stream rule) and the output's ``ready`` in every cycle. The harness keeps its own copy of
one activation and one accumulator (at addresses the solver picks, so any address, starting
at zero like the RTL's memories) and of the tile registers, and applies each accepted
operation to them at once, in order, with the semantics of its row of the operation table
(:mod:`wafertile.hdl.core.ops`: what it reads, which unit, what it writes and emits). Every
output flit must then equal the specification's output of the matching request, in order; a
``READ_ACC`` reads the accumulators, so "replies and accumulator contents equal the
sequential specification". The pipeline reads a bank in the cycle the flit ahead writes it
(transparent ports instead of forwarding registers; the float core adds one bubble where
that is not enough): back-to-back MACs into one accumulator are exactly what these checks
exercise (and what a cover shows).

The units' arithmetic is cut out (:mod:`.cut`): the core runs with the cut units and the
specification applies the same functions, so the check is of the control around them. The
integer core keeps its real multiplier and adder (the weights of the MACs are bounded to
-2 .. 2 instead).
"""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Array, Module, Mux, Signal, Value, signed
from amaranth.lib import data

from ..config import Overflow
from ..hdl.core import TileCore
from ..hdl.core.control import emit_opcode
from ..hdl.core.ops import matches
from ..hdl.core.units import beside_pipeline
from ..hdl.flit import Opcode, finish_act, payload_layout
from .cut import accumulate, backprop, cut_units, handoff, nonlinear, product
from .harness import Harness
from .link import stream_rules
from .props import Properties

__all__ = ["CoreHarness"]


class CoreHarness(Harness):
    """A :class:`TileCore` of ``config`` with the cut units (:mod:`.cut`) against the
    sequential specification (module documentation), by BMC."""

    def units(self) -> dict[str, type]:
        """The units of the core under test (a mutation replaces one)."""
        return cut_units(self.config)

    def make_dut(self):
        """The core under test (a mutation replaces it)."""
        return TileCore(self.config, units=self.units())

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        fp = cfg.is_float
        dw, aw = cfg.data_width, cfg.acc_width
        layout = payload_layout(cfg)
        m.submodules.dut = dut = self.make_dut()
        width = len(dut.i.payload.as_value())
        m.d.comb += [dut.i.valid.eq(AnySeq(1)), dut.i.payload.eq(AnySeq(width)),
                     dut.o.ready.eq(AnySeq(1))]
        ops = dut.ops
        units = cut_units(cfg)  # what the specification applies: the correct units
        stream_rules(m, props, dut.i, "i", dut=False)
        stream_rules(m, props, dut.o, "o", dut=True)
        # every operation of the table and every code with no operation (they must do nothing)
        spec = ops.legal(cfg)
        for row in spec:  # what the specification below knows how to apply
            if row.unit not in (None, "mac", "add", "handoff", "grad", "backprop", "nonlinear"):
                raise ValueError(f"the core's specification has no unit {row.unit!r} "
                                 f"(operation {row.name})")

        # The specification, for one activation address and one accumulator address chosen
        # by the solver (so for every address): their values, updated at each accepted flit.
        # An accumulator that a MAC with another activation address changed is unknown until
        # it is written again.
        watch_act = AnyConst(cfg.act_addr_width)
        watch_acc = AnyConst(cfg.acc_addr_width)
        act = Signal(dw) if fp else Signal(signed(dw))
        # a second activation, for the operations that read two (GRAD)
        two = any(row.act_weight for row in spec)
        watch_act2 = AnyConst(cfg.act_addr_width) if two else watch_act
        act2 = Signal(dw, name="act2") if two else act
        acc = Signal(32) if fp else Signal(signed(aw))
        known = Signal(init=1)
        regs = {reg: Signal(width, init=init, name=f"reg_{reg.name.lower()}")
                for reg, (width, init) in units["handoff"].registers(cfg).items()}
        req = dut.i.payload
        take = dut.i.valid & dut.i.ready
        a_act = req.addr[:cfg.act_addr_width]
        b_act = req.addr_b[:cfg.act_addr_width]
        a_acc = req.addr[:cfg.acc_addr_width]
        act_at = {"addr": a_act, "addr_b": b_act}  # an activation, by the field of its row
        word = req.data.as_unsigned()[:dw] if fp else req.data[:dw].as_signed()
        # zero skipping: a float's +0 and -0 are zero (every bit but the sign)
        word_nonzero = (word[:dw - 1] != 0) if fp else (word != 0)
        act_nonzero = (act[:dw - 1] != 0) if fp else (act != 0)
        macs = [row for row in spec if row.unit == "mac"]
        if not fp:
            # Two multipliers (the core's and the specification's) with operands that are
            # equal but come from different places are a miter that SAT solvers take hours
            # on; small weights keep the products cheap while every other bit (activations,
            # addresses, accumulators, the forwarding) stays free. The multiplier itself is
            # checked bit for bit by the cocotb regressions.
            props.assume("small_weights", ~(dut.i.valid & matches(req.op, macs)) |
                         ((word >= -2) & (word <= 2)), "MAC weights are from -2 to 2")
        # the units: "mac" acc + weight * act, "add" acc + data (the float core's cut)
        is_mac = matches(req.op, macs)
        if fp:
            summed = Signal(32)
            m.d.comb += summed.eq(accumulate(acc, Mux(is_mac, product(word, act),
                                                       req.data.as_unsigned())))
        else:
            addend = Signal(signed(aw + 1))
            total = Signal(signed(aw + 2))
            m.d.comb += [addend.eq(Mux(is_mac, word * act, req.data)), total.eq(acc + addend)]
            if cfg.overflow_mode is Overflow.SATURATE:
                summed = Mux(total > cfg.acc_max, cfg.acc_max,
                             Mux(total < cfg.acc_min, cfg.acc_min, total[:aw].as_signed()))
            else:
                summed = total[:aw].as_signed()
        set_seen = Signal()  # a SET was taken (for a cover)
        nl_seen = Signal()  # a NONLINEAR of the watched accumulator was taken (for a cover)
        with m.If(take), m.Switch(req.op):
            for row in spec:
                if not (row.act_write or row.acc_write or row.reg_write):
                    continue
                with m.Case(row.code):
                    if row.act_write:
                        with m.If(act_at[row.act_write] == watch_act):
                            m.d.sync += act.eq(word)
                        if two:
                            with m.If(act_at[row.act_write] == watch_act2):
                                m.d.sync += act2.eq(word)
                    if row.reg_write:
                        m.d.sync += set_seen.eq(1)
                        with m.Switch(req.addr[:2]):
                            for reg, value in regs.items():
                                with m.Case(reg.value):
                                    m.d.sync += value.eq(req.data[:len(value)])
                    if row.acc_write == "data":
                        with m.If(a_acc == watch_acc):
                            m.d.sync += [acc.eq(req.data), known.eq(1)]
                    elif row.acc_write and row.skips_zero:  # the weight times an activation
                        with m.If((a_acc == watch_acc) & word_nonzero):
                            with m.If(act_at[row.act_read] != watch_act):
                                m.d.sync += known.eq(0)
                            with m.Elif(act_nonzero):
                                m.d.sync += acc.eq(summed)
                    elif row.unit == "nonlinear":  # f(acc, data): its function or data[2:0]
                        unit = units["nonlinear"]
                        func = (unit.FUNCTIONS.index(row.function) if row.function else
                                unit.unary(req.data))
                        with m.If(a_acc == watch_acc):
                            m.d.sync += [acc.eq(nonlinear(acc, req.data, func)),
                                         nl_seen.eq(1)]
                    elif row.acc_write:
                        with m.If(a_acc == watch_acc):
                            m.d.sync += acc.eq(summed)

        # Back-to-back MACs into the watched accumulator, both changing it (covers).
        prev_mac = Signal()
        prev_addr = Signal(cfg.acc_addr_width)
        effective = take & matches(req.op, [r for r in macs if r.counts_mac]) & \
            word_nonzero & act_nonzero & (b_act == watch_act) & (a_acc == watch_acc)
        m.d.sync += [prev_mac.eq(effective), prev_addr.eq(a_acc)]
        chained = Signal()  # they happened (set the cycle after the second)
        with m.If(effective & prev_mac & (prev_addr == a_acc)):
            m.d.sync += chained.eq(1)

        def act_value(address):
            """The watched activation at ``address`` (meaningful where act_known)."""
            return Mux(address == watch_act, act, act2)

        def act_known(address):
            return (address == watch_act) | (address == watch_act2)

        # The outputs the specification expects, in order: a small queue.
        want = Signal(layout)
        sure = Signal()  # the specification knows the data of this output
        watched = Signal()  # the output is the watched accumulator's value
        emitting = [row for row in spec if row.emit is not None]
        with m.Switch(req.op):
            for row in emitting:
                emit = row.emit
                with m.Case(row.code):
                    # SEND / FINISH with the unit: the bits above the route or hand-off
                    # pick the opcode; a FINISH's MAC takes its addr_b from its data's act
                    emit_opcode(m.d.comb, m, want.op, emit.opcodes(cfg), req.data,
                                emit.choice_at(cfg))
                    m.d.comb += [want.addr.eq(_spec_field(cfg, emit, emit.addr, req)),
                                 want.addr_b.eq(_spec_field(cfg, emit, emit.addr_b, req))]
                    if emit.data == "act":
                        m.d.comb += [want.data.eq(act),
                                     sure.eq(act_at[row.act_read] == watch_act)]
                    elif row.unit == "grad":  # data + act[addr] * act[addr_b], zeros skipped
                        weight = act_value(act_at[row.act_weight])
                        operand = act_value(act_at[row.act_read])
                        skip = (weight[:dw - 1] == 0) | (operand[:dw - 1] == 0)
                        m.d.comb += [
                            want.data.eq(Mux(skip, req.data.as_unsigned(), accumulate(
                                req.data, product(weight, operand)))),
                            sure.eq(act_known(act_at[row.act_weight]) &
                                    act_known(act_at[row.act_read]))]
                    elif row.unit == "backprop":  # the accumulator, masked by act[addr_b]
                        m.d.comb += [
                            want.data.eq(backprop(acc, act_value(act_at[row.act_read]))),
                            sure.eq((a_acc == watch_acc) & known &
                                    act_known(act_at[row.act_read]))]
                    else:  # "acc" the accumulator's value, "unit" the hand-off's of it
                        activation = handoff(cfg, acc, regs)
                        activation = activation if fp else activation.as_signed()
                        m.d.comb += [want.data.eq(acc if emit.data == "acc" else activation),
                                     sure.eq((a_acc == watch_acc) & known),
                                     watched.eq(int(emit.data == "acc") & (a_acc == watch_acc))]
        emits = matches(req.op, emitting)
        depth = 7 if fp else 4  # outputs in flight at most: one per stage, and the accepted
        queue = Array(Signal(layout, name=f"want{k}") for k in range(depth))
        tags = Array(Signal(aw, name=f"want_tag{k}") for k in range(depth))
        sures = Array(Signal(name=f"want_sure{k}") for k in range(depth))
        # the output reads the watched accumulator after back-to-back MACs into it (a cover)
        after = Array(Signal(name=f"want_after{k}") for k in range(depth))
        # the output's request was accepted after a SET (a cover)
        post_set = Array(Signal(name=f"want_post_set{k}") for k in range(depth))
        # the output's request was accepted after a NONLINEAR of the watched accumulator
        post_nl = Array(Signal(name=f"want_post_nl{k}") for k in range(depth))
        count = Signal(range(depth + 1))
        given = dut.o.valid & dut.o.ready
        push = take & emits
        with m.If(given):
            for k in range(depth - 1):
                m.d.sync += [queue[k].eq(queue[k + 1]), tags[k].eq(tags[k + 1]),
                             sures[k].eq(sures[k + 1]), after[k].eq(after[k + 1]),
                             post_set[k].eq(post_set[k + 1]), post_nl[k].eq(post_nl[k + 1])]
        slot = Mux(given, count - 1, count)
        with m.If(push):
            m.d.sync += [queue[slot].eq(want), tags[slot].eq(req.data.as_unsigned()),
                         sures[slot].eq(sure), after[slot].eq(watched & chained),
                         post_set[slot].eq(set_seen), post_nl[slot].eq(nl_seen)]
        m.d.sync += count.eq(count + push - given)

        props.check("no_queue_overflow", count < depth,
                    f"fewer than {depth} outputs are ever owed (the harness's queue suffices)")
        props.check("no_spurious_output", ~dut.o.valid | (count != 0),
                    "the core offers an output only for an accepted READ, SEND or FINISH")
        with m.If(dut.o.valid):
            head = data.View(layout, queue[0])
            for field in ("op", "addr", "addr_b"):
                props.check(f"output_{field}", Value.cast(getattr(dut.o.payload, field)) ==
                            Value.cast(getattr(head, field)),
                            f"every output's {field} equals the sequential specification's "
                            f"(in order)")
            with m.If(sures[0]):
                props.check("output_data", dut.o.payload.data == head.data,
                            "every output's data (an activation or accumulator read, a "
                            "FINISH's activation) equals the sequential specification's")
            props.check("output_tag", dut.o_tag == tags[0],
                        "every output's tag equals its request's data")
        waits = dut.o.valid & ~dut.o.ready
        if not fp:
            # the hand-off works beside the pipeline (units.Requantizer): an output or a
            # FINISH waits in the last stage while it is active, a MAC while it multiplies;
            # the only cycles the input may wait with no output waiting, never more of them
            # in a row than the unit takes to offer its activation
            unit = units.get("handoff")
            hold = unit.delay(cfg) if beside_pipeline(unit) else 0
            finishing = [row for row in emitting if row.emit.data == "unit"]
            pending = Signal(range(4))  # FINISHes accepted whose output has not gone
            run = Signal(range(hold + 2))  # cycles the input has waited, in a row, so far
            took = take & matches(req.op, finishing) if finishing else 0
            went = dut.o.valid & dut.o.ready & (dut.o.payload.op == finishing[0].emit.op) \
                if finishing else 0
            stalled = ~dut.i.ready & ~waits
            m.d.sync += [pending.eq(pending + took - went),
                         run.eq(Mux(stalled, Mux(run > hold, run, run + 1), 0))]
            props.check("full_rate", waits | dut.i.ready | ((pending != 0) & (run < hold)),
                        f"the core takes a flit in every cycle unless an output waits or the "
                        f"hand-off is in the way of a FINISH's (at most {hold} cycles in a row: "
                        f"no other bubble)")

        # Covers: back-to-back MACs into one accumulator, then its value read by a read
        # accepted after them; a FINISH after a SET; the float core's bubble.
        props.cover("back_to_back_macs", effective & prev_mac & (prev_addr == a_acc),
                    "two MACs that both change it go into one accumulator in consecutive cycles")
        props.cover("read_after_back_to_back",
                    given & after[0] & sures[0] & (queue[0].data != 0),
                    "an accumulator updated by back-to-back MACs is read back")
        props.cover("output_waits", waits, "an output waits for ready (backpressure)")
        finishes = [row for row in emitting if row.emit.data == "unit"]
        if finishes and regs:
            props.cover("finish_after_set", post_set[0] & given & sures[0] &
                        (queue[0].op == finishes[0].emit.op),
                        "an output of the hand-off unit for a request accepted after a SET, "
                        "its data known")
        if any(row.unit == "nonlinear" for row in spec):
            props.cover("read_after_nonlinear",
                        given & sures[0] & post_nl[0] & (queue[0].op == Opcode.REPLY) &
                        (queue[0].addr[:cfg.acc_addr_width] == watch_acc),
                        "the watched accumulator, after a NONLINEAR of it, is read back")
        if fp:
            props.cover("bubble", dut.i.valid & ~dut.i.ready & ~waits,
                        "the input waits with no output waiting (the hazard's bubble)")


def _spec_field(cfg, emit, source, req):
    """The output's ``addr`` / ``addr_b`` the specification expects: the request's field,
    the ``act`` bits of a FINISH's ``data`` above its hand-off, pick and ``dy``
    (``Config.finish_fields``, on a core whose FINISH has choices), or 0."""
    if source is None or (source == "data_act" and not emit.chooses(cfg)):
        return 0
    if source == "data_act":
        at, width = finish_act(cfg)
        return req.data.as_unsigned()[at:at + width]
    return getattr(req, source)
