"""The sparse-aware integer MAC core (``dtype`` int8 / int16) and the stream ports every tile
core shows the tile."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...config import Config, Overflow
from .._util import ConfiguredComponent, any_of
from ..flit import MULT_WIDTH, Opcode, Reg, payload_layout
from .sram import bank_ports

__all__ = ["MacCore", "core_ports"]


def core_ports(config: Config) -> dict[str, wiring.Member]:
    """The stream and status members a tile core shows the tile (``i``, ``o``, ``o_tag``, ...)."""
    return {
        "i": In(stream.Signature(payload_layout(config))),
        "o": Out(stream.Signature(payload_layout(config))),
        "o_tag": Out(config.acc_width),
        "mac_done": Out(1),
        "mac_skipped": Out(1),
        "act_written": Out(1),
        "error": Out(1),
    }


def last_stage_output(m: Module, core, stage, emits, acc, act, activation=None) -> None:
    """A core's output flit, from the operation in its last stage (``stage``): READ_ACT's
    REPLY of ``act``, SEND's ADD of ``acc`` to ``addr_b`` (the partner's address in ``addr``),
    READ_ACC's REPLY of ``acc``, and with the hand-off unit FINISH's WRITE_ACT of
    ``activation`` to ``addr_b``. ``emits``: the stage holds an operation that replies."""
    m.d.comb += [core.o.valid.eq(emits), core.o_tag.eq(stage.data.as_unsigned())]
    with m.Switch(stage.op):
        if core.config.handoff:
            with m.Case(Opcode.FINISH):
                m.d.comb += [core.o.p.op.eq(Opcode.WRITE_ACT), core.o.p.addr.eq(stage.addr_b),
                             core.o.p.addr_b.eq(0), core.o.p.data.eq(activation)]
        with m.Case(Opcode.READ_ACT):
            m.d.comb += [core.o.p.op.eq(Opcode.REPLY), core.o.p.addr.eq(stage.addr),
                         core.o.p.addr_b.eq(stage.addr_b), core.o.p.data.eq(act)]
        with m.Case(Opcode.SEND):
            m.d.comb += [core.o.p.op.eq(Opcode.ADD), core.o.p.addr.eq(stage.addr_b),
                         core.o.p.addr_b.eq(stage.addr), core.o.p.data.eq(acc)]
        with m.Default():
            m.d.comb += [core.o.p.op.eq(Opcode.REPLY), core.o.p.addr.eq(stage.addr),
                         core.o.p.addr_b.eq(stage.addr_b), core.o.p.data.eq(acc)]


def last_stage_flags(m: Module, core, fire, op, nonzero) -> None:
    """A core's last stage: ``mac_done`` / ``mac_skipped`` for a MAC that leaves it (``fire``)
    with or without a nonzero pair, and the sticky ``error`` for an opcode the core does not
    know (SET and FINISH only with the hand-off unit)."""
    m.d.comb += [
        core.mac_done.eq(fire & (op == Opcode.MAC) & nonzero),
        core.mac_skipped.eq(fire & (op == Opcode.MAC) & ~nonzero),
    ]
    known = [Opcode.WRITE_ACT, Opcode.WRITE_ACC, Opcode.READ_ACT, Opcode.READ_ACC, Opcode.MAC,
             Opcode.ADD, Opcode.SEND]
    if core.config.handoff:
        known += [Opcode.SET, Opcode.FINISH]
    with m.If(fire & ~any_of(op == o for o in known)):
        m.d.sync += core.error.eq(1)


class MacCore(ConfiguredComponent):
    """Executes operation flits against an :class:`~wafertile.hdl.core.SramBank`.

    Pipeline (one flit accepted per cycle, three stages)::

        S0  accept flit; issue the activation read (act[addr_b] for MAC, act[addr] for READ_ACT)
        S1  activation arrives; WRITE_ACT writes; weight * activation into the product register,
            only when both are nonzero; issue the accumulator read acc[addr]
        S2  accumulator arrives; acc[addr] <= acc + product / data, wrapped or saturated;
            READ_*, SEND and FINISH present their output flit; SET writes its register

    **Throughput.** One flit per cycle in and, for READ/SEND, one per cycle out, including
    back-to-back MACs into the same accumulator. A flit's reads are issued in the cycle the
    previous flit writes (S0 reads act while S1 writes act; S1 reads acc while S2 writes acc),
    and the bank's read ports are transparent, so the read returns the word being written. While
    the pipeline holds, the read ports are disabled (they keep their data) and nothing is
    written, so the data stays current. No cycle is ever spent on a hazard.

    **Sparsity.** A MAC whose weight or activation is zero does not load the product register
    (no multiply), does not write the accumulator, and takes its one pipeline slot like any
    other flit: it never stalls the input. ``mac_done`` pulses for each MAC that updated an
    accumulator, ``mac_skipped`` for each MAC skipped for a zero operand.

    **Overflow.** Sums are formed at ``acc_width + 1`` bits and then wrapped to ``acc_width``
    bits (``overflow = "wrap"``) or clamped to the accumulator range (``"saturate"``). The
    product of two ``data_width`` words always fits ``acc_width`` (it is at least twice as wide).

    **Operands.** MAC weights and WRITE_ACT activations are the low ``data_width`` bits of the
    flit's ``data`` field; addresses use the low ``act_addr_width`` / ``acc_addr_width`` bits of
    the address fields. Both are documented truncations: the flit encoder
    (:func:`wafertile.hdl.flit.pack` with the host's range checks) rejects values that would be
    cut.

    **Backpressure.** ``o`` follows the stream rules (``valid`` never waits for ``ready``). When
    S2 holds an output flit and ``o.ready`` is low, the whole pipeline holds: ``i.ready`` is low,
    nothing is written, the read ports keep their data. A READ accepted in cycle *t* offers
    its reply in cycle *t* + 2.

    **Finishing an output.** FINISH reads ``acc[addr]`` (in S2, like SEND) and sends the
    activation ``requant(acc)`` as a WRITE_ACT ``{addr: addr_b, data: act}``; the ``data``
    field of the FINISH carries where (a :func:`~wafertile.hdl.flit.handoff_layout`, echoed on
    ``o_tag``). ``requant`` uses the tile registers that SET writes (:class:`Reg`: MULT, SHIFT,
    RELU; reset values 1, 0, 0)::

        p   = acc * MULT                                   (exact, acc_width + 16 bits)
        r   = p / 2**SHIFT rounded to nearest, ties away from zero
        r   = max(r, 0) if RELU
        act = r clamped to data_min .. data_max

    ``round(-v) = -round(v)`` and ``requant(0) = 0``: the quantization is symmetric and keeps
    zeros zero (the sparsity of the next layer's activations survives). A SET takes effect for
    the flits after it. ``act_written`` pulses for each WRITE_ACT executed (S1): the host counts
    them to know that a hand-off has landed (``docs/architecture.md``).

    A REPLY flit, or an opcode with no operation (10 .. 15), on ``i`` is consumed with no
    effect and sets the sticky ``error`` output.

    Parameters
    ----------
    config : Config

    Members
    -------
    i : ``In(stream.Signature(payload_layout(config)))``
        Operation flits.
    o : ``Out(stream.Signature(payload_layout(config)))``
        REPLY flits (READ_ACT, READ_ACC), ADD flits (SEND) and WRITE_ACT flits (FINISH).
    o_tag : ``Out(acc_width)``
        With ``o``: the ``data`` field (raw bits) of the READ, SEND or FINISH flit that made the
        output flit. READ and SEND use no data, so a sender puts the output's route there
        (:func:`~wafertile.hdl.flit.route_layout`); a FINISH its hand-off rectangle. The tile
        builds the output's routing header from it.
    act_r, act_w, acc_r, acc_w : memory ports, flipped (connect to an ``SramBank``).
    mac_done, mac_skipped, act_written, error : ``Out(1)``
    """

    def __init__(self, config: Config):
        ports = core_ports(config)
        ports.update({name: member.flip() for name, member in bank_ports(config).items()})
        super().__init__(config, ports)

    @classmethod
    def check(cls, config: object, *args, **kwargs) -> None:
        super().check(config)
        if config.is_float:
            raise TypeError(f"MacCore is the integer core, not for dtype {config.dtype!r} (use "
                            f"FpMacCore, or make_mac_core to pick by the configuration)")

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dw, aw = cfg.data_width, cfg.acc_width
        layout = payload_layout(cfg)

        s1 = Signal(layout)
        s1_valid = Signal()
        s2 = Signal(layout)
        s2_valid = Signal()
        s2_act = Signal(signed(dw))
        s2_prod = Signal(signed(cfg.product_width))
        s2_nonzero = Signal()

        # The pipeline moves as one; it holds only while S2 offers a flit that is not taken.
        emits = (s2.op == Opcode.READ_ACT) | (s2.op == Opcode.READ_ACC) | (s2.op == Opcode.SEND)
        if cfg.handoff:
            emits = emits | (s2.op == Opcode.FINISH)
        s2_emits = s2_valid & emits
        advance = Signal()
        m.d.comb += [
            advance.eq(~s2_emits | self.o.ready),
            self.i.ready.eq(advance),
        ]

        def act_addr(p):
            # READ_ACT and WRITE_ACT address the activation bank with `addr`; a MAC with `addr_b`.
            is_act_op = (p.op == Opcode.READ_ACT) | (p.op == Opcode.WRITE_ACT)
            return Mux(is_act_op, p.addr, p.addr_b)[:cfg.act_addr_width]

        with m.If(advance):
            m.d.sync += [s1.eq(self.i.payload), s1_valid.eq(self.i.valid)]

        # -- S0: activation read ----------------------------------------------------------------
        m.d.comb += [
            self.act_r.addr.eq(act_addr(self.i.payload)),
            self.act_r.en.eq(advance),
        ]

        # -- S1: activation, WRITE_ACT, multiply, accumulator read ------------------------------
        s1_act_addr = act_addr(s1)
        act = self.act_r.data

        weight = s1.data[:dw].as_signed()
        new_act = s1.data[:dw].as_signed()
        act_we = s1_valid & (s1.op == Opcode.WRITE_ACT)
        m.d.comb += [
            self.act_w.addr.eq(s1_act_addr),
            self.act_w.data.eq(new_act),
            self.act_w.en.eq(advance & act_we),
            self.act_written.eq(advance & act_we),
        ]

        nonzero = (s1.op == Opcode.MAC) & (weight != 0) & (act != 0)
        m.d.comb += [
            self.acc_r.addr.eq(s1.addr[:cfg.acc_addr_width]),
            self.acc_r.en.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += [s2.eq(s1), s2_valid.eq(s1_valid), s2_act.eq(act),
                         s2_nonzero.eq(nonzero)]
            # The product register loads only for a nonzero pair: a zero operand costs no
            # multiply (the DSP's clock enable stays low).
            with m.If(nonzero):
                m.d.sync += s2_prod.eq(weight * act)

        # -- S2: accumulate, write back, reply --------------------------------------------------
        s2_acc_addr = s2.addr[:cfg.acc_addr_width]
        acc = self.acc_r.data

        addend = Mux(s2.op == Opcode.MAC, s2_prod, s2.data)
        total = Signal(signed(aw + 1))
        m.d.comb += total.eq(acc + addend)
        result = Signal(signed(aw))
        if cfg.overflow_mode is Overflow.SATURATE:
            with m.If(total > cfg.acc_max):
                m.d.comb += result.eq(cfg.acc_max)
            with m.Elif(total < cfg.acc_min):
                m.d.comb += result.eq(cfg.acc_min)
            with m.Else():
                m.d.comb += result.eq(total)
        else:
            m.d.comb += result.eq(total[:aw].as_signed())

        acc_value = Mux(s2.op == Opcode.WRITE_ACC, s2.data, result)
        acc_we = s2_valid & ((s2.op == Opcode.WRITE_ACC) | (s2.op == Opcode.ADD) |
                             ((s2.op == Opcode.MAC) & s2_nonzero))
        m.d.comb += [
            self.acc_w.addr.eq(s2_acc_addr),
            self.acc_w.data.eq(acc_value),
            self.acc_w.en.eq(advance & acc_we),
        ]

        # The hand-off unit (SET, FINISH) only with config.handoff: without it, both are
        # unknown opcodes (no registers, no requantization, the sticky error below).
        activation = self._requantize(m, acc, s2, advance & s2_valid) if cfg.handoff else None
        last_stage_output(m, self, s2, s2_emits, acc, s2_act, activation)
        last_stage_flags(m, self, advance & s2_valid, s2.op, s2_nonzero)
        return m

    def _requantize(self, m: Module, acc, s2, fire):
        """The tile registers (written by SET in S2) and FINISH's activation from ``acc``."""
        cfg = self.config
        aw = cfg.acc_width
        mult = Signal(MULT_WIDTH, init=1)
        shift = Signal(range(aw + MULT_WIDTH))
        relu = Signal()
        reg = s2.addr[:2]
        with m.If(fire & (s2.op == Opcode.SET)):
            with m.If(reg == Reg.MULT.value):
                m.d.sync += mult.eq(s2.data[:MULT_WIDTH])
            with m.Elif(reg == Reg.SHIFT.value):
                m.d.sync += shift.eq(s2.data[:len(shift)])
            with m.Elif(reg == Reg.RELU.value):
                m.d.sync += relu.eq(s2.data[0])
        width = aw + MULT_WIDTH + 1
        product = Signal(signed(width))
        m.d.comb += product.eq(acc * mult)
        # p / 2**shift rounded to nearest, ties away from zero (gemmlowp's
        # RoundingDivideByPOT): floor, then +1 when the remainder is above half (or, for a
        # negative p, at least half).
        floor = Signal(signed(width))
        m.d.comb += floor.eq(product >> shift)
        mask = Signal(width)
        m.d.comb += mask.eq(Cat(Const(k, range(width + 1)) < shift for k in range(width)))
        remainder = product.as_unsigned() & mask
        threshold = (mask >> 1) + (product < 0)
        rounded = Signal(signed(width + 1))
        m.d.comb += rounded.eq(floor + (remainder > threshold))
        positive = Mux(relu & (rounded < 0), 0, rounded)
        activation = Signal(signed(cfg.data_width))
        with m.If(positive > cfg.data_max):
            m.d.comb += activation.eq(cfg.data_max)
        with m.Elif(positive < cfg.data_min):
            m.d.comb += activation.eq(cfg.data_min)
        with m.Else():
            m.d.comb += activation.eq(positive)
        return activation
