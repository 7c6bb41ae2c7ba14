"""The sparse-aware integer MAC core (``dtype`` int8 / int16)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed

from ..flit import payload_layout
from .control import (
    Control,
    CoreBase,
    Decoder,
    acc_writes,
    act_address,
    core_ports,
    drive_output,
    make_units,
    output_flit,
    pick_result,
    pipeline_hold,
    status_flags,
    tile_registers,
)
from .units import INT_UNITS, beside_pipeline

__all__ = ["MacCore", "core_ports"]


class MacCore(CoreBase):
    """Executes operation flits against an :class:`~wafertile.hdl.core.SramBank`.

    Pipeline (one flit accepted per cycle, three stages)::

        S0  accept flit; issue the activation read (act[addr_b] for MAC, act[addr] for READ_ACT)
        S1  activation arrives; WRITE_ACT writes; weight * activation into the product register,
            only when both are nonzero; issue the accumulator read acc[addr]
        S2  accumulator arrives; acc[addr] <= acc + product / data, wrapped or saturated;
            READ_* and SEND present their output flit; FINISH starts the hand-off unit,
            which offers its output later; SET writes its register

    **Throughput.** One flit per cycle in and, for READ/SEND, one per cycle out, including back-
    to-back MACs into the same accumulator (but where the hand-off unit is in the way: below). A
    flit's reads are issued in the cycle the previous flit writes (S0 reads act while S1 writes
    act; S1 reads acc while S2 writes acc), and the bank's read ports are transparent, so the
    read returns the word being written. While the pipeline holds, the read ports are disabled
    (they keep their data) and nothing is written, so the data stays current. No cycle is ever
    spent on a hazard.

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
    ``o_tag``). ``requant`` is the hand-off unit (:class:`~.units.Requantizer`), which works
    beside the pipeline on the MAC's multiplier: the FINISH leaves S2 at once and the unit
    offers its activation ``delay`` cycles later (4 with 32-bit accumulators; more when MACs
    take the multiplier first); while it is active, an output or another FINISH waits in S2.
    It uses the tile registers that SET writes (:class:`~wafertile.hdl.flit.Reg`: MULT,
    SHIFT, RELU; reset values 1, 0, 0)::

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
        decision from it (decoded once in S0 into a control word, :mod:`.control`).
    units : mapping of str to unit class, optional
        Units added to :data:`~.units.INT_UNITS` or replacing them, by name (:mod:`.units`).

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

    UNITS = INT_UNITS
    ACC_LATENCY = 0
    FLOAT = False
    _WRONG_FORMAT = ("MacCore is the integer core, not for dtype {dtype} (use FpMacCore, or "
                     "make_mac_core to pick by the configuration)")

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dw = cfg.data_width
        layout = payload_layout(cfg)
        units = self._units
        control = Control.of(self.ops, cfg, units)
        m.submodules.decoder = decoder = Decoder(control)
        made = make_units(self, m, units)
        mul = made.get(units.get("multiply"))
        handoff = made.get(units.get("handoff"))

        s1, s2 = Signal(layout, name="s1"), Signal(layout, name="s2")
        s1_ctrl = Signal(control.layout, name="s1_ctrl")
        s2_ctrl = Signal(control.layout, name="s2_ctrl")
        s1_valid, s2_valid = Signal(name="s1_valid"), Signal(name="s2_valid")
        s2_act = Signal(signed(dw))
        s2_nonzero = Signal()

        # The pipeline moves as one; it holds while S2 offers a flit that is not taken, and
        # while the hand-off unit, working beside it on the MAC's multiplier, is active and
        # an output or a FINISH is in S2 (outputs stay in order; one FINISH at a time).
        holder = handoff if beside_pipeline(handoff) else None
        blocked = Signal()
        offers = s2_valid & s2_ctrl.emits
        if holder is not None:
            offers = offers & ~s2_ctrl.holds  # FINISH's output comes from the unit
            # (a FINISH may start the unit in the cycle the unit's last output goes)
            done = holder.valid & self.o.ready
            m.d.comb += blocked.eq(holder.active & s2_valid & s2_ctrl.emits
                                   & ~(s2_ctrl.holds & done))
        advance, _ = pipeline_hold(m, self, offers, busy=blocked)

        # -- S0: decode, activation read --------------------------------------------------------
        m.d.comb += [
            decoder.op.eq(self.i.payload.op),
            self.act_r.addr.eq(act_address(cfg, self.i.payload, decoder.ctrl)),
            self.act_r.en.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += [s1.eq(self.i.payload), s1_ctrl.eq(decoder.ctrl),
                         s1_valid.eq(self.i.valid)]

        # -- S1: activation, WRITE_ACT, multiply, accumulator read ------------------------------
        act = self.act_r.data
        word = s1.data[:dw].as_signed()  # a MAC's weight, a WRITE_ACT's activation
        act_we = s1_valid & s1_ctrl.act_write
        m.d.comb += [
            self.act_w.addr.eq(act_address(cfg, s1, s1_ctrl)),
            self.act_w.data.eq(word),
            self.act_w.en.eq(advance & act_we),
            self.act_written.eq(advance & act_we),
            self.acc_r.addr.eq(s1.addr[:cfg.acc_addr_width]),
            self.acc_r.en.eq(advance),
        ]
        nonzero = s1_ctrl.mac & (word != 0) & (act != 0)
        if mul is not None:
            # The product register loads only for a nonzero pair: a zero operand costs no
            # multiply (the DSP's clock enable stays low).
            a, b, en = word, act, advance & nonzero
            if holder is not None:
                # FINISH's limbs in the cycles no MAC loads the product register (a MAC
                # moving from S1 to S2 takes the multiplier first; the one in S2 has used
                # its product by the clock edge, as it always moves on)
                m.d.comb += holder.free.eq(~(s1_valid & s1_ctrl.mac & advance))
                a, b = Mux(holder.mul_en, holder.mul_a, a), Mux(holder.mul_en, holder.mul_b, b)
                en = holder.mul_en | en
            m.d.comb += [mul.a.eq(a), mul.b.eq(b), mul.en.eq(en)]
        with m.If(advance):
            m.d.sync += [s2.eq(s1), s2_ctrl.eq(s1_ctrl), s2_valid.eq(s1_valid), s2_act.eq(act),
                         s2_nonzero.eq(nonzero)]

        # -- S2: accumulate, write back, output, registers --------------------------------------
        acc = self.acc_r.data
        fire = advance & s2_valid
        operand = Mux(s2_ctrl.mac, mul.o, s2.data) if mul is not None else s2.data
        for cls in control.acc_units:
            m.d.comb += [made[cls].a.eq(acc), made[cls].b.eq(operand), made[cls].en.eq(advance)]
        m.d.comb += [
            self.acc_w.addr.eq(s2.addr[:cfg.acc_addr_width]),
            self.acc_w.data.eq(pick_result(control, made, s2_ctrl.unit, s2.data,
                                           s2_ctrl.acc_data)),
            self.acc_w.en.eq(fire & acc_writes(s2_ctrl, s2_nonzero)),
        ]
        if handoff is not None:  # only with config.handoff: else SET and FINISH are unknown
            m.d.comb += handoff.acc.eq(acc)
            tile_registers(m, handoff, cfg, fire & s2_ctrl.reg_write, s2)
        sources = {"act": s2_act, "acc": acc, "unit": handoff.o if handoff else None}
        if holder is None:
            drive_output(m, self, control, s2, s2_ctrl, s2_valid, sources)
        else:
            # the FINISH the unit works on: its request and control word, for its output
            held = Signal(layout, name="finishing")
            held_ctrl = Signal(control.layout, name="finishing_ctrl")
            start = fire & s2_ctrl.holds
            with m.If(start):
                m.d.sync += [held.eq(s2), held_ctrl.eq(s2_ctrl)]
            m.d.comb += [holder.start.eq(start), holder.ready.eq(self.o.ready),
                         holder.product.eq(mul.o),
                         self.o.valid.eq(holder.valid | (offers & ~holder.active))]
            with m.If(holder.valid):
                m.d.comb += self.o_tag.eq(held.data.as_unsigned())
                output_flit(m.d.comb, m, control, held, held_ctrl, sources, self.o.p)
            with m.Else():
                m.d.comb += self.o_tag.eq(s2.data.as_unsigned())
                output_flit(m.d.comb, m, control, s2, s2_ctrl, sources, self.o.p)
        status_flags(m, self, fire, s2_ctrl, s2_nonzero)
        return m
