"""The floating-point MAC core: FP16 / BF16 operands, FP32 accumulators (issue 14)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal

from ...config import Config
from .._util import ConfiguredComponent
from ..flit import Opcode, Reg, payload_layout
from .fp import FpAdd, FpMul, FpToHalf, fp_relu
from .mac import (
    act_address,
    check_ops,
    core_ports,
    last_stage_flags,
    last_stage_output,
    rows_of,
)
from .ops import OPS, OpTable, matches, ordered
from .sram import bank_ports

__all__ = ["FpMacCore"]


class FpMacCore(ConfiguredComponent):
    """Executes operation flits against an :class:`~wafertile.hdl.core.SramBank` in a
    floating-point format (``dtype = "fp16"`` or ``"bf16"``): the same operations, ports,
    zero skipping and backpressure as :class:`~wafertile.hdl.core.MacCore`, with IEEE
    arithmetic bit exact with numpy's float32 (``docs/float.md``)::

        MAC     acc[addr] = fp32(acc + fp32(w) * fp32(act[addr_b]))   unless w or act is +-0
        ADD     acc[addr] = fp32(acc + data)
        FINISH  act = to_half(relu?(acc[addr]))                        round to nearest even

    Pipeline (one flit accepted per cycle, five stages)::

        S0  accept flit; issue the activation read (act[addr_b] for MAC, act[addr] for READ_ACT)
        S1  activation arrives; WRITE_ACT writes; w * act on the DSP (FpMul's first stage: its
            register after the multiplier loads only when both are nonzero)
        S2  the product's normalization (FpMul's second stage) into the product register;
            issue the accumulator read acc[addr]; the hazard check
        S3  accumulator arrives; first half of the FP32 add (exponent difference, alignment,
            significand add: FpAdd's register); READ_*, SEND and FINISH present their output
            flit; SET writes its register
        S4  second half (normalization, rounding, specials); acc[addr] <= the sum (MAC, ADD)
            or data (WRITE_ACC)

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

    **Backpressure.** As in :class:`~wafertile.hdl.core.MacCore`: when S2 holds an output
    flit and ``o.ready`` is low, the whole pipeline holds (nothing is written, the read ports
    keep their data). A READ accepted in cycle *t* offers its reply in cycle *t* + 3 (or
    *t* + 4 after a bubble).

    Parameters
    ----------
    config : Config
        With ``dtype`` ``"fp16"`` or ``"bf16"``.
    ops : OpTable
        As :class:`~wafertile.hdl.core.MacCore`'s.

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

    def __init__(self, config: Config, ops: OpTable = OPS):
        self._ops = ops
        ports = core_ports(config)
        ports.update({name: member.flip() for name, member in bank_ports(config).items()})
        super().__init__(config, ports)

    @classmethod
    def check(cls, config: object, ops: OpTable = OPS) -> None:
        super().check(config)
        if not config.is_float:
            raise TypeError(f"FpMacCore needs a floating-point dtype ('fp16' or 'bf16'), not "
                            f"{config.dtype!r} (MacCore is the integer core)")
        check_ops(cls, config, ops)

    @property
    def ops(self) -> OpTable:
        """The operation table the core executes."""
        return self._ops

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dw, aaw = cfg.data_width, cfg.acc_addr_width
        layout = payload_layout(cfg)
        handoff = "handoff" in self.ops.units(cfg)
        m.submodules.mul = mul = FpMul(cfg.dtype, stages=2)
        m.submodules.add = add = FpAdd(stages=2)
        if handoff:  # FINISH's rounding to the format (no hand-off unit: no FINISH)
            m.submodules.to_half = to_half = FpToHalf(cfg.dtype)

        s1, s2, s3 = Signal(layout), Signal(layout), Signal(layout)
        s1_valid, s2_valid, s3_valid = Signal(), Signal(), Signal()
        s2_act, s3_act = Signal(dw), Signal(dw)
        s2_nonzero, s3_nonzero = Signal(), Signal()
        s3_prod = Signal(32)
        # S4: what the second half of the add needs to write the accumulator
        s4_we = Signal()
        s4_addr = Signal(aaw)
        s4_write_acc = Signal()
        s4_data = Signal(32)

        # The pipeline moves as one (`advance`: it holds only while S3 offers a flit that is
        # not taken), except that S0 .. S2 hold for one cycle on the hazard (`move`: they
        # advance too). The hazard is a function of registers only.
        s3_emits = s3_valid & matches(s3.op, self.ops.emitting(cfg))
        advance = Signal()
        hazard = Signal()
        move = Signal()
        m.d.comb += [advance.eq(~s3_emits | self.o.ready), move.eq(advance & ~hazard),
                     self.i.ready.eq(move)]

        with m.If(move):
            m.d.sync += [s1.eq(self.i.payload), s1_valid.eq(self.i.valid)]

        # -- S0: activation read ----------------------------------------------------------------
        m.d.comb += [self.act_r.addr.eq(act_address(self, self.i.payload)), self.act_r.en.eq(move)]

        # -- S1: activation, WRITE_ACT, the multiplier ------------------------------------------
        act = self.act_r.data.as_unsigned()
        weight = s1.data.as_unsigned()[:dw]
        act_we = s1_valid & matches(s1.op, rows_of(self, lambda r: r.act_write))
        m.d.comb += [
            self.act_w.addr.eq(act_address(self, s1)),
            self.act_w.data.eq(weight),
            self.act_w.en.eq(move & act_we),
            self.act_written.eq(move & act_we),
        ]
        # +0 and -0 are zero: every bit but the sign. The multiplier's register (after the
        # DSP) loads only for a nonzero pair: a zero operand costs no multiply.
        nonzero = matches(s1.op, rows_of(self, lambda r: r.skips_zero)) & \
            (weight[:dw - 1] != 0) & (act[:dw - 1] != 0)
        m.d.comb += [mul.a.eq(weight), mul.b.eq(act), mul.en.eq(move & nonzero)]
        with m.If(move):
            m.d.sync += [s2.eq(s1), s2_valid.eq(s1_valid), s2_act.eq(act),
                         s2_nonzero.eq(nonzero)]

        # -- S2: the product's normalization, the accumulator read, the hazard ----------------
        # the accumulator's readers and writers, those that skip a zero operand only for a
        # nonzero pair (the order of the terms is the Verilog's text only: ADD first)
        s2_reads = s2_valid & matches(s2.op, ordered(
            rows_of(self, lambda r: r.acc_read and not r.skips_zero), first=(Opcode.ADD,)),
            lead=s2_nonzero)
        unless_zero = matches(s3.op, rows_of(self, lambda r: r.acc_write and r.skips_zero))
        s3_writes = s3_valid & matches(s3.op, ordered(
            rows_of(self, lambda r: r.acc_write and not r.skips_zero), first=(Opcode.ADD,)),
            lead=unless_zero & s3_nonzero)
        m.d.comb += hazard.eq(s2_reads & s3_writes & (s2.addr[:aaw] == s3.addr[:aaw]))
        # The read is issued whenever the pipeline advances, also in the bubble's cycle: the
        # read of the cycle in which S2 finally moves (the write's cycle) is the one kept.
        m.d.comb += [self.acc_r.addr.eq(s2.addr[:aaw]), self.acc_r.en.eq(advance)]
        with m.If(move):
            m.d.sync += [s3.eq(s2), s3_valid.eq(s2_valid), s3_act.eq(s2_act),
                         s3_nonzero.eq(s2_nonzero)]
            with m.If(s2_nonzero):  # the product register, zero skipping as above
                m.d.sync += s3_prod.eq(mul.o)
        with m.Elif(advance):
            m.d.sync += s3_valid.eq(0)  # the bubble

        # -- S3: the add's first half, outputs, SET -------------------------------------------
        acc = self.acc_r.data.as_unsigned()
        m.d.comb += [add.a.eq(acc),
                     add.b.eq(Mux(matches(s3.op, rows_of(self, lambda r: r.unit == "mac")),
                                  s3_prod, s3.data.as_unsigned())),
                     add.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [s4_we.eq(s3_writes), s4_addr.eq(s3.addr[:aaw]),
                         s4_write_acc.eq(matches(s3.op,
                                                 rows_of(self, lambda r: r.acc_write == "data"))),
                         s4_data.eq(s3.data)]

        fire3 = advance & s3_valid
        if handoff:  # the hand-off unit: the RELU register (SET) and FINISH's rounding
            relu = Signal()
            with m.If(fire3 & matches(s3.op, rows_of(self, lambda r: r.reg_write)) &
                      (s3.addr[:2] == Reg.RELU.value)):
                m.d.sync += relu.eq(s3.data[0])
            m.d.comb += to_half.i.eq(Mux(relu, fp_relu(acc), acc))

        last_stage_output(m, self, s3, s3_emits,
                          {"act": s3_act, "acc": acc, "unit": to_half.o if handoff else None})
        last_stage_flags(m, self, fire3, s3.op, s3_nonzero)

        # -- S4: the add's second half, the accumulator write -----------------------------------
        m.d.comb += [
            self.acc_w.addr.eq(s4_addr),
            self.acc_w.data.eq(Mux(s4_write_acc, s4_data, add.o)),
            self.acc_w.en.eq(advance & s4_we),
        ]
        return m
