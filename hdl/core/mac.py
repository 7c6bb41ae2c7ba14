"""The sparse-aware integer MAC core (``dtype`` int8 / int16) and the stream ports every tile
core shows the tile."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...config import Config, Overflow
from .._util import ConfiguredComponent, any_of
from ..flit import MULT_WIDTH, Opcode, Reg, payload_layout
from .ops import OPS, OpTable, matches, ordered
from .sram import bank_ports

__all__ = ["CORE_UNITS", "MacCore", "act_address", "check_ops", "core_ports",
           "last_stage_flags", "last_stage_output", "rows_of"]

#: The units a core has (``wafertile.hdl.core.ops``): an operation of another unit needs the
#: decoder step's unit interface first.
CORE_UNITS = frozenset({"mac", "add", "handoff"})


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


def check_ops(cls, config: Config, ops: OpTable) -> None:
    """A core's check of its operation table: an :class:`~.ops.OpTable` whose operations
    for ``config`` need only the units the cores have (:data:`CORE_UNITS`), every MAC-unit
    operation skipping a zero operand (the product register loads only for a nonzero pair).

    Raises
    ------
    TypeError
        If ``ops`` is not an :class:`~.ops.OpTable`.
    ValueError
        If an operation needs a unit the core does not have.
    """
    if not isinstance(ops, OpTable):
        raise TypeError(f"{cls.__name__} ops must be an OpTable, not {ops!r}")
    for row in ops.legal(config):
        if row.unit is not None and row.unit not in CORE_UNITS:
            raise ValueError(f"{cls.__name__} has no unit {row.unit!r} (operation "
                             f"{row.name}); its units: {', '.join(sorted(CORE_UNITS))}")
        if (row.unit == "mac") != row.skips_zero:
            raise ValueError(f"{cls.__name__} skips the zero operands of exactly the "
                             f"operations of its MAC unit (operation {row.name})")


def rows_of(core, test) -> tuple:
    """The operations of ``core``'s table that its configuration executes and for which
    ``test`` holds (:meth:`~.ops.OpTable.where`)."""
    return core.ops.where(test, core.config)


def act_address(core, p):
    """The activation address of the operation in payload ``p``: ``addr`` for the operations
    that address the activation by ``addr``, ``addr_b`` for the others (a MAC's)."""
    # the terms in the order the cores have always compared them: the Verilog's text
    by_addr = ordered(rows_of(core, lambda r: r.act_field == "addr"), first=(Opcode.READ_ACT,))
    return Mux(matches(p.op, by_addr), p.addr, p.addr_b)[:core.config.act_addr_width]


def last_stage_output(m: Module, core, stage, emits, sources) -> None:
    """A core's output flit, from the operation in its last stage (``stage``): the output
    (:class:`~.ops.Emit`) of its row, its data from ``sources`` (``"act"``: the activation
    it read, ``"acc"``: the accumulator, ``"unit"``: the unit's result). ``emits``: the stage
    holds an operation that emits."""
    m.d.comb += [core.o.valid.eq(emits), core.o_tag.eq(stage.data.as_unsigned())]
    out = core.o.p

    def drive(emit):
        m.d.comb += [out.op.eq(emit.op),
                     out.addr.eq(getattr(stage, emit.addr) if emit.addr else 0),
                     out.addr_b.eq(getattr(stage, emit.addr_b) if emit.addr_b else 0),
                     out.data.eq(sources[emit.data])]

    # One case per emitting operation, the last the default. The order of the cases is the
    # Verilog's text only (the one the cores have always had): the decoder step drops it.
    rows = ordered(core.ops.emitting(core.config),
                   first=(Opcode.FINISH, Opcode.READ_ACT, Opcode.SEND))
    if not rows:
        return
    with m.Switch(stage.op):
        for row in rows[:-1]:
            with m.Case(row.code):
                drive(row.emit)
        with m.Default():
            drive(rows[-1].emit)


def last_stage_flags(m: Module, core, fire, op, nonzero) -> None:
    """A core's last stage: ``mac_done`` / ``mac_skipped`` for an operation counted as a MAC
    that leaves it (``fire``) with or without a nonzero pair, and the sticky ``error`` for an
    opcode the core does not execute (:meth:`~.ops.OpTable.legal`: SET and FINISH only with
    the hand-off unit)."""
    macs = rows_of(core, lambda r: r.counts_mac)
    m.d.comb += [
        core.mac_done.eq(fire & matches(op, macs) & nonzero),
        core.mac_skipped.eq(fire & matches(op, macs) & ~nonzero),
    ]
    known = core.ops.legal(core.config)
    with m.If(fire & ~any_of(matches(op, [row]) for row in known)):
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
    ops : OpTable
        The operations (by default :data:`~.ops.OPS`): the core derives every per-opcode
        decision from it.

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

    def __init__(self, config: Config, ops: OpTable = OPS):
        self._ops = ops
        ports = core_ports(config)
        ports.update({name: member.flip() for name, member in bank_ports(config).items()})
        super().__init__(config, ports)

    @classmethod
    def check(cls, config: object, ops: OpTable = OPS) -> None:
        super().check(config)
        if config.is_float:
            raise TypeError(f"MacCore is the integer core, not for dtype {config.dtype!r} (use "
                            f"FpMacCore, or make_mac_core to pick by the configuration)")
        check_ops(cls, config, ops)

    @property
    def ops(self) -> OpTable:
        """The operation table the core executes."""
        return self._ops

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
        s2_emits = s2_valid & matches(s2.op, self.ops.emitting(cfg))
        advance = Signal()
        m.d.comb += [
            advance.eq(~s2_emits | self.o.ready),
            self.i.ready.eq(advance),
        ]

        with m.If(advance):
            m.d.sync += [s1.eq(self.i.payload), s1_valid.eq(self.i.valid)]

        # -- S0: activation read ----------------------------------------------------------------
        m.d.comb += [
            self.act_r.addr.eq(act_address(self, self.i.payload)),
            self.act_r.en.eq(advance),
        ]

        # -- S1: activation, WRITE_ACT, multiply, accumulator read ------------------------------
        s1_act_addr = act_address(self, s1)
        act = self.act_r.data

        weight = s1.data[:dw].as_signed()
        new_act = s1.data[:dw].as_signed()
        act_we = s1_valid & matches(s1.op, rows_of(self, lambda r: r.act_write))
        m.d.comb += [
            self.act_w.addr.eq(s1_act_addr),
            self.act_w.data.eq(new_act),
            self.act_w.en.eq(advance & act_we),
            self.act_written.eq(advance & act_we),
        ]

        nonzero = matches(s1.op, rows_of(self, lambda r: r.skips_zero)) & (weight != 0) & (act != 0)
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

        addend = Mux(matches(s2.op, rows_of(self, lambda r: r.unit == "mac")), s2_prod, s2.data)
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

        acc_value = Mux(matches(s2.op, rows_of(self, lambda r: r.acc_write == "data")), s2.data,
                        result)
        # every accumulator write, that of an operation that skips a zero operand only for a
        # nonzero pair
        always = matches(s2.op, rows_of(self, lambda r: r.acc_write and not r.skips_zero))
        unless_zero = matches(s2.op, rows_of(self, lambda r: r.acc_write and r.skips_zero))
        acc_we = s2_valid & (always | (unless_zero & s2_nonzero))
        m.d.comb += [
            self.acc_w.addr.eq(s2_acc_addr),
            self.acc_w.data.eq(acc_value),
            self.acc_w.en.eq(advance & acc_we),
        ]

        # The hand-off unit (SET, FINISH) only for a table and configuration that need it
        # (config.handoff): without it, both are unknown opcodes (no registers, no
        # requantization, the sticky error below).
        activation = self._requantize(m, acc, s2, advance & s2_valid) \
            if "handoff" in self.ops.units(cfg) else None
        last_stage_output(m, self, s2, s2_emits, {"act": s2_act, "acc": acc, "unit": activation})
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
        with m.If(fire & matches(s2.op, rows_of(self, lambda r: r.reg_write))):
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
        # RoundingDivideByPOT): floor, then +1 when the remainder is above half (or, for
        # p >= 0, exactly half: -2.5 -> -3, 2.5 -> 3).
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
