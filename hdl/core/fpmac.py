"""The floating-point MAC core: FP16 / BF16 operands, FP32 accumulators (issue 14)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal

from ..flit import payload_layout
from .control import (
    Control,
    CoreBase,
    Decoder,
    acc_reads,
    acc_writes,
    act_address,
    make_units,
    output_flit,
    pick_output,
    pick_result,
    pipeline_hold,
    status_flags,
    tile_registers,
)
from .units import FLOAT_UNITS

__all__ = ["FpMacCore"]


class FpMacCore(CoreBase):
    """Executes operation flits against an :class:`~wafertile.hdl.core.SramBank` in a
    floating-point format (``dtype = "fp16"`` or ``"bf16"``): the same operations, ports,
    zero skipping and backpressure as :class:`~wafertile.hdl.core.MacCore`, with IEEE
    arithmetic bit exact with numpy's float32 (``docs/float.md``)::

        MAC          acc[addr] = fp32(acc + fp32(w) * fp32(act[addr_b]))   unless w or act is +-0
        ADD          acc[addr] = fp32(acc + data)
        FINISH       act = to_half(relu?(acc[addr]))                   round to nearest even
        GRAD         out = fp32(data + fp32(act[addr]) * fp32(act[addr_b]))   (training)
        FINISH_BACK  act = act[addr_b] > 0 ? to_half(acc[addr]) : +0        (training)
        NONLINEAR    acc[addr] = f(acc[addr]), f = data[2:0]: exp, 1/x, 1/sqrt(x), GELU, GELU'
                     (config.nonlinear; docs/nonlinear.md)

    Pipeline (one flit accepted per cycle, five stages)::

        S0  accept flit; issue the activation read (act[addr_b] for MAC, act[addr] for
            READ_ACT) and, for GRAD, the second one (act[addr], on the second read port)
        S1  activation arrives; WRITE_ACT writes; w * act on the DSP (FpMul's first stage: its
            register after the multiplier loads only when both are nonzero; GRAD's w is the
            second activation)
        S2  the product's normalization (FpMul's second stage) into the product register;
            issue the accumulator read acc[addr]; the hazard check
        S3  accumulator arrives; first half of the FP32 add (exponent difference, alignment,
            significand add: FpAdd's register; GRAD adds to its data, not to an accumulator);
            READ_*, SEND, FINISH and FINISH_BACK register their output flit; SET writes its
            register; NONLINEAR starts the nonlinear unit on the accumulator and holds S0 ..
            S3 until the unit is done
        S4  second half (normalization, rounding, specials); acc[addr] <= the sum (MAC, ADD),
            data (WRITE_ACC) or the nonlinear unit's result (NONLINEAR); the output flit is
            offered (GRAD's data: the sum, or its data unchanged when an activation was zero)

    The multiplier and the adder are each split over two stages (on an ECP5 a one-stage
    FP16 product runs at ~57 MHz from registers, BF16 ~43 MHz, an FP32 sum ~32 MHz; two
    stages: ~100, ~65 and ~57 MHz), so that the block RAMs' clock-to-out plus one half fits a
    cycle.

    **Throughput and the one hazard.** A flit reads its accumulator in S2, two stages before
    the flit ahead of it writes (S4). A read issued in the cycle of the write meets it
    through the bank's transparent read port (distance 2, as in the integer core); a read one
    flit behind a write of the same accumulator would not. The core then inserts **one
    bubble**: when the flit in S2 uses the accumulator that the flit in S3 will write (S2: a
    MAC with both operands nonzero, ADD, READ_ACC, SEND or FINISH; S3: a MAC with both
    operands nonzero, ADD or WRITE_ACC; same accumulator address), S0 .. S2 hold for one
    cycle while S3 moves on empty; the held flit's read is issued again in the cycle the
    write happens, and the transparent port returns the new sum. The check is a function of
    pipeline registers only (the zero tests of S1 are registered), so ``i.ready`` does not
    wait on a block RAM. Back-to-back MACs into one accumulator therefore take two cycles
    each; every other stream runs one flit per cycle. The stream compiler interleaves the
    outputs of each port, so such pairs are rare on real layers (measured in
    ``docs/float.md``). Additions into an accumulator happen in the order the flits arrive,
    never reordered.

    **Sparsity.** A MAC whose weight or activation is +0 or -0 (``(word & 0x7FFF) == 0``)
    does not load the product register (no multiply), does not write the accumulator, never
    causes a bubble and takes its one pipeline slot; ``mac_done`` / ``mac_skipped`` as in the
    integer core. So an accumulator holding -0 stays -0 after a skipped MAC (IEEE would add
    the +0 product: ``-0 + +0 = +0``), and ``0 * inf`` never makes a NaN.

    **Words.** Weights and WRITE_ACT activations are the low 16 bits of ``data`` (FP16 or
    BF16 bits); ADD and WRITE_ACC carry FP32 bits in the 32-bit ``data`` field; READ_ACT
    replies carry the activation's 16 bits (zero-extended), READ_ACC replies and SEND's ADD
    flits the accumulator's 32 bits. Every NaN the core makes is the canonical quiet NaN.

    **Finishing an output.** FINISH reads ``acc[addr]`` (S3), applies ReLU in FP32 when the
    RELU register is set (:func:`~wafertile.hdl.core.fp.fp_relu`: negatives and -0 to +0,
    NaNs pass) and rounds it to the tile's format (:class:`~wafertile.hdl.core.fp.FpToHalf`,
    round to nearest even), sent as a WRITE_ACT ``{addr: addr_b, data: act}`` like the
    integer core's. SET writes the RELU register (:class:`Reg`); MULT and SHIFT have no
    meaning in floating point (no requantization: the hand-off is the rounding) and a SET of
    them has no effect.

    **Training** (``docs/training.md``). GRAD reads two activations (the second on the bank's
    second read port ``act_r2``, there only when the table has GRAD), multiplies them on the
    MAC's multiplier and adds the product to its ``data`` on the MAC's adder (zero operands
    skipped: the data passes unchanged), and emits the sum; FINISH_BACK emits the rounded
    accumulator where the activation at ``addr_b`` is greater than 0, else +0
    (:class:`~.units.FpBackHandoff`).

    **The nonlinear unit** (``config.nonlinear``, ``docs/nonlinear.md``). NONLINEAR, MUL and
    MAX start the core's iterative unit (:class:`~.units.FpNonlinear`: a
    :class:`~.nonlinear.NonlinearUnit` at ``stages = 2``) with the accumulator, ``data`` (the
    second operand) and the function (NONLINEAR's low 3 bits of ``data``, MUL's or MAX's
    own) in its first cycle in S3. S0 .. S3 hold until the unit's ``done``; S4
    drains meanwhile (an output there leaves when taken; no write). In the cycle of ``done``
    (or later, if S4 holds an output that is not taken) the operation moves to S4 with the
    unit's result, which S4 writes as it writes a WRITE_ACC's data. The input therefore waits
    :meth:`~.units.FpNonlinear.cycles` cycles per operation (exp 59, reciprocal 21,
    reciprocal square root 31, GELU 187, GELU's derivative 203, MUL 3, MAX 7), plus the usual
    bubble when the flit after it reads its accumulator. Without ``config.nonlinear`` the
    core's logic is exactly as before the operations existed, and NONLINEAR, MUL and MAX are
    unknown opcodes.

    **Backpressure.** As in :class:`~wafertile.hdl.core.MacCore`: when S4 holds an output
    flit and ``o.ready`` is low, the whole pipeline holds (nothing is written, the read ports
    keep their data). A READ accepted in cycle *t* offers its reply in cycle *t* + 4 (or
    *t* + 5 after a bubble): the output leaves from S4, a stage after the accumulator read,
    so that GRAD's sum (ready in S4) and every other output leave from one stage.

    Parameters
    ----------
    config : Config
        With ``dtype`` ``"fp16"`` or ``"bf16"``.
    ops : OpTable
        As :class:`~wafertile.hdl.core.MacCore`'s.
    units : mapping of str to unit class, optional
        Units added to :data:`~.units.FLOAT_UNITS` or replacing them, by name
        (:mod:`.units`; an accumulator unit here has latency 1: it spans S3 and S4).

    Members
    -------
    i, o, o_tag, mac_done, mac_skipped, act_written, error
        As :class:`~wafertile.hdl.core.MacCore`.
    act_r, act_w, acc_r, acc_w : memory ports, flipped (connect to an ``SramBank``).

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config` with a floating-point ``dtype``.
    """

    UNITS = FLOAT_UNITS
    ACC_LATENCY = 1
    FLOAT = True
    EMITS_SUMS = True
    ITERATES = True
    _WRONG_FORMAT = ("FpMacCore needs a floating-point dtype ('fp16' or 'bf16'), not {dtype} "
                     "(MacCore is the integer core)")

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dw, aaw = cfg.data_width, cfg.acc_addr_width
        layout = payload_layout(cfg)
        units = self._units
        control = Control.of(self.ops, cfg, units)
        m.submodules.decoder = decoder = Decoder(control)
        made = make_units(self, m, units)
        mul = made.get(units.get("multiply"))
        handoff = made.get(units.get("handoff"))
        second = control.weight_field is not None

        s1, s2, s3 = (Signal(layout, name=f"s{k}") for k in (1, 2, 3))
        s1_ctrl, s2_ctrl, s3_ctrl = (Signal(control.layout, name=f"s{k}_ctrl")
                                     for k in (1, 2, 3))
        s1_valid, s2_valid, s3_valid = (Signal(name=f"s{k}_valid") for k in (1, 2, 3))
        s2_act, s3_act = Signal(dw, name="s2_act"), Signal(dw, name="s3_act")
        s2_nonzero, s3_nonzero = Signal(name="s2_nonzero"), Signal(name="s3_nonzero")
        s3_prod = Signal(32)
        # S4: what the second half of the accumulator unit needs to write the accumulator
        s4_we = Signal()
        s4_addr = Signal(aaw)
        s4_write_data = Signal()
        s4_unit = Signal.like(s3_ctrl.unit)
        s4_data = Signal(32)
        # S4: the output flit (registered in S3), and what GRAD's sum needs
        s4_out = Signal(layout, name="s4_out")
        s4_offers = Signal()
        s4_tag = Signal(cfg.acc_width)
        s4_emit_sum = Signal()
        s4_nonzero = Signal()

        # The hazard (a function of registers only): the flit in S2 uses the accumulator
        # that the flit in S3 will write.
        hazard = Signal()
        m.d.comb += hazard.eq(s2_valid & acc_reads(s2_ctrl, s2_nonzero) &
                              s3_valid & acc_writes(s3_ctrl, s3_nonzero) &
                              (s2.addr[:aaw] == s3.addr[:aaw]))
        # The pipeline moves as one (`advance`: it holds only while S4 offers a flit that is
        # not taken), except that S0 .. S2 hold for one cycle on the hazard (`move`), and
        # that S0 .. S3 hold while the iterative unit works on the operation in S3 (`stall`;
        # `step`: S3 moves on; S4 drains meanwhile).
        it = made.get(control.iter_unit) if control.iter_unit is not None else None
        if it is None:
            advance, move = pipeline_hold(m, self, s4_offers, hazard)
            step = advance
        else:
            stall, started, have = Signal(), Signal(), Signal()
            m.d.comb += stall.eq(s3_valid & s3_ctrl.iterate & ~(it.done | have))
            advance, move = pipeline_hold(m, self, s4_offers, hazard | stall)
            step = Signal()
            m.d.comb += step.eq(advance & ~stall)

        # -- S0: decode, activation read --------------------------------------------------------
        m.d.comb += [decoder.op.eq(self.i.payload.op),
                     self.act_r.addr.eq(act_address(cfg, self.i.payload, decoder.ctrl)),
                     self.act_r.en.eq(move)]
        if second:  # GRAD's second activation, the product's weight
            m.d.comb += [self.act_r2.addr.eq(getattr(self.i.payload, control.weight_field)
                                             [:cfg.act_addr_width]),
                         self.act_r2.en.eq(move)]
        with m.If(move):
            m.d.sync += [s1.eq(self.i.payload), s1_ctrl.eq(decoder.ctrl),
                         s1_valid.eq(self.i.valid)]

        # -- S1: activation, WRITE_ACT, the multiplier ------------------------------------------
        act = self.act_r.data.as_unsigned()
        word = s1.data.as_unsigned()[:dw]  # a MAC's weight, a WRITE_ACT's activation
        act_we = s1_valid & s1_ctrl.act_write
        m.d.comb += [
            self.act_w.addr.eq(act_address(cfg, s1, s1_ctrl)),
            self.act_w.data.eq(word),
            self.act_w.en.eq(move & act_we),
            self.act_written.eq(move & act_we),
        ]
        # +0 and -0 are zero: every bit but the sign. The multiplier's register (after the
        # DSP) loads only for a nonzero pair: a zero operand costs no multiply.
        weight = Mux(s1_ctrl.act_weight, self.act_r2.data.as_unsigned(), word) if second else word
        nonzero = s1_ctrl.mac & (weight[:dw - 1] != 0) & (act[:dw - 1] != 0)
        if mul is not None:
            m.d.comb += [mul.a.eq(weight), mul.b.eq(act), mul.en.eq(move & nonzero)]
        with m.If(move):
            m.d.sync += [s2.eq(s1), s2_ctrl.eq(s1_ctrl), s2_valid.eq(s1_valid), s2_act.eq(act),
                         s2_nonzero.eq(nonzero)]

        # -- S2: the product's second half, the accumulator read, the hazard ------------------
        # The read is issued whenever the pipeline advances, also in the bubble's cycle: the
        # read of the cycle in which S2 finally moves (the write's cycle) is the one kept.
        m.d.comb += [self.acc_r.addr.eq(s2.addr[:aaw]), self.acc_r.en.eq(step)]
        with m.If(move):
            m.d.sync += [s3.eq(s2), s3_ctrl.eq(s2_ctrl), s3_valid.eq(s2_valid),
                         s3_act.eq(s2_act), s3_nonzero.eq(s2_nonzero)]
            if mul is not None:
                with m.If(s2_nonzero):  # the product register, zero skipping as above
                    m.d.sync += s3_prod.eq(mul.o)
        with m.Elif(step):
            m.d.sync += s3_valid.eq(0)  # the bubble

        # -- S3: the accumulator unit's first half, outputs, registers --------------------------
        acc = self.acc_r.data.as_unsigned()
        operand = Mux(s3_ctrl.mac, s3_prod, s3.data.as_unsigned())
        base = Mux(s3_ctrl.sum_data, s3.data.as_unsigned(), acc)  # GRAD adds to its data
        for cls in control.acc_units:
            m.d.comb += [made[cls].a.eq(base), made[cls].b.eq(operand),
                         made[cls].en.eq(step)]
        with m.If(step):
            m.d.sync += [s4_we.eq(s3_valid & acc_writes(s3_ctrl, s3_nonzero)),
                         s4_addr.eq(s3.addr[:aaw]), s4_write_data.eq(s3_ctrl.acc_data),
                         s4_unit.eq(s3_ctrl.unit), s4_data.eq(s3.data),
                         s4_offers.eq(s3_valid & s3_ctrl.emits), s4_tag.eq(s3.data),
                         s4_emit_sum.eq(s3_ctrl.emit_sum), s4_nonzero.eq(s3_nonzero)]
        if it is not None:  # NONLINEAR, MUL, MAX: the result is written as a WRITE_ACC's is
            data_func = type(it).unary(s3.data)
            m.d.comb += [it.a.eq(acc), it.b.eq(s3.data[:32]),
                         it.func.eq(Mux(s3_ctrl.func_data, data_func, s3_ctrl.func)),
                         it.start.eq(s3_valid & s3_ctrl.iterate & ~started)]
            with m.If(step):
                m.d.sync += [s4_write_data.eq(s3_ctrl.acc_data | s3_ctrl.iterate),
                             s4_data.eq(Mux(s3_ctrl.iterate, it.o, s3.data))]
            with m.Elif(advance):  # S4 drains while S3 waits for the unit
                m.d.sync += [s4_we.eq(0), s4_offers.eq(0), s4_emit_sum.eq(0)]
            with m.If(it.start):
                m.d.sync += started.eq(1)
            with m.If(it.done):
                m.d.sync += have.eq(1)
            with m.If(step & s3_valid):
                m.d.sync += [started.eq(0), have.eq(0)]
        fire = step & s3_valid
        if handoff is not None:  # only with config.handoff: else SET and FINISH are unknown
            tile_registers(m, handoff, cfg, fire & s3_ctrl.reg_write, s3)
        for cls in control.out_units:  # the output units read the accumulator (and act)
            m.d.comb += made[cls].acc.eq(acc)
            if hasattr(made[cls], "act"):
                m.d.comb += made[cls].act.eq(s3_act)
        with m.If(step):
            output_flit(m.d.sync, m, control, s3, s3_ctrl,
                        {"act": s3_act, "acc": acc, "unit": pick_output(control, made,
                                                                         s3_ctrl.out_unit, 0)},
                        s4_out)
        status_flags(m, self, fire, s3_ctrl, s3_nonzero)

        # -- S4: the accumulator unit's second half, the accumulator write, the output --------
        result = pick_result(control, made, s4_unit, s4_data, s4_write_data)
        m.d.comb += [
            self.acc_w.addr.eq(s4_addr),
            self.acc_w.data.eq(result),
            self.acc_w.en.eq(advance & s4_we),
            self.o.valid.eq(s4_offers),
            self.o.p.eq(s4_out),
            self.o_tag.eq(s4_tag),
        ]
        with m.If(s4_emit_sum):  # GRAD: the sum, or its data where an activation was zero
            m.d.comb += self.o.p.data.eq(Mux(s4_nonzero, result, s4_data))
        return m
