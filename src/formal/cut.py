"""The cut units of the formal core check: the cores' arithmetic taken out, control kept.

Proving a core's FP32 adder or its requantizer's multiplier equal to a second copy in the
specification is a multiplier (or adder) miter, which SAT solvers take hours on; the units'
arithmetic is checked bit for bit elsewhere (``tests/test_fp_units.py``, the cocotb
regressions). What the formal check is for is the control around the units: the decoder,
which operand reaches a unit in which cycle (the forwarding, the float core's hazard
bubble), zero skipping, the tile registers that SET writes and FINISH reads, the order and
fields of the outputs. So the check replaces each unit by a cheap function with the same
members, kind, latency and registers (:mod:`wafertile.hdl.core.units`) that still depends on
every bit of its operands and on their order, and the specification applies the same
functions (:func:`product`, :func:`accumulate`, :func:`handoff`):

- the float product ``a * b`` -> ``Cat(a, b)`` (the weight and the activation side by side);
- the float sum ``a + b`` -> ``rotate_left(a, 1) ^ b`` (not commutative: two additions
  into one accumulator applied in the wrong order, or one lost or doubled, give another
  word);
- the hand-off (requantization, or ReLU and rounding) -> the low ``data_width`` bits of the
  accumulator XOR the ``data_width``-bit slices of the registers (an accumulator from the
  wrong flit or stage differs in its low bits for some operands, which the solver picks; the
  low bits keep the integer adder's cone small);
- the backward hand-off (FINISH_BACK's ``act > 0 ? to_half(acc) : +0``) -> ``+0`` where the
  activation's sign bit is set, else the low 16 bits of the accumulator XOR the activation
  (:func:`backprop`). GRAD's unit is the float sum, cut as above;
- the nonlinear unit (NONLINEAR's exp, reciprocal, rsqrt or GELU, MUL, MAX: an iterative
  unit of 3 to 97 cycles) -> ``rotate_left(a, 7) ^ rotate_left(b, 13) ^ func``
  (:func:`nonlinear`: ``b`` the request's ``data``), done ``func + 2`` cycles after its start
  (2 to 7: the core must wait for ``done``, however long), its output junk (the complement)
  until then.

The integer core keeps its real multiplier and adder (the check bounds the weights instead,
:class:`~.core.CoreHarness`); only its requantizer is cut.
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from ..config import Config
from ..hdl.core.units import (
    FLOAT_UNITS,
    INT_UNITS,
    FpBackHandoff,
    FpHandoff,
    FpNonlinear,
    FpProduct,
    FpSum,
    Requantizer,
)

__all__ = ["CUT_UNITS", "accumulate", "backprop", "cut_units", "fold", "handoff", "nonlinear",
           "product"]


def fold(value: Value, width: int) -> Value:
    """The XOR of the ``width``-bit slices of ``value`` (the last one zero-padded)."""
    value = Value.cast(value).as_unsigned()
    slices = [value[k:k + width] for k in range(0, len(value), width)]
    return reduce(lambda a, b: a ^ b, slices)


def product(a: Value, b: Value) -> Value:
    """The cut float product of weight ``a`` and activation ``b``: ``Cat(a, b)``."""
    return Cat(a, b)


def accumulate(a: Value, b: Value) -> Value:
    """The cut float sum of accumulator ``a`` and operand ``b`` (32 bits):
    ``rotate_left(a, 1) ^ b``."""
    return Value.cast(a).as_unsigned().rotate_left(1) ^ Value.cast(b).as_unsigned()[:32]


def handoff(config: Config, acc: Value, registers: dict) -> Value:
    """The cut hand-off: the low ``data_width`` bits of ``acc`` XOR the ``data_width``-bit
    slices of the registers (``{Reg: value}``, in :class:`~wafertile.hdl.flit.Reg` order)."""
    regs = [registers[reg] for reg in sorted(registers, key=lambda r: r.value)]
    return Value.cast(acc)[:config.data_width] ^ fold(Cat(*regs), config.data_width)


def backprop(acc: Value, act: Value) -> Value:
    """The cut backward hand-off of accumulator ``acc`` and activation ``act`` (16 bits): +0
    where ``act``'s sign bit is set, else ``acc[:16] ^ act``."""
    act = Value.cast(act).as_unsigned()
    return Mux(act[15], 0, Value.cast(acc).as_unsigned()[:16] ^ act[:16])


def nonlinear(a: Value, b: Value, func: Value) -> Value:
    """The cut nonlinear function of accumulator ``a``, second operand ``b`` (32 bits each:
    the request's ``data``) and function ``func`` (3 bits): ``rotate_left(a, 7) ^
    rotate_left(b, 13) ^ func``."""
    return (Value.cast(a).as_unsigned()[:32].rotate_left(7) ^
            Value.cast(b).as_unsigned()[:32].rotate_left(13) ^ Value.cast(func).as_unsigned())


class CutNonlinear(FpNonlinear):
    """The float core's nonlinear unit, cut: the protocol of
    :class:`~wafertile.hdl.core.units.FpNonlinear` (``start`` taken while ``ready``, one
    ``done`` pulse, ``o`` held from ``done`` until the next start) with ``o = nonlinear(a, b,
    func)`` done ``func + 2`` cycles after the start, and the complement of it on ``o``
    while busy."""

    @classmethod
    def cycles(cls, func: int) -> int:
        return func + 2

    def hasty(self) -> Value:
        """1 to say ``done`` the cycle after a start as well (a formal mutation); 0."""
        return Const(0)

    def elaborate(self, platform):
        m = Module()
        busy, left, value = Signal(), Signal(len(self.func)), Signal(32)
        m.d.comb += [self.ready.eq(~busy), self.o.eq(Mux(busy, ~value, value))]
        m.d.sync += self.done.eq(0)
        with m.If(~busy & self.start):
            m.d.sync += [busy.eq(1), left.eq(self.func),
                         value.eq(nonlinear(self.a, self.b, self.func)),
                         self.done.eq(self.hasty())]
        with m.Elif(busy):
            with m.If(left == 0):
                m.d.sync += [busy.eq(0), self.done.eq(1)]
            with m.Else():
                m.d.sync += left.eq(left - 1)
        return m


class CutProduct(FpProduct):
    """The float core's multiplier, cut: ``o = Cat(a, b)`` into a register loaded while
    ``en`` (the members and ``latency`` 1 of :class:`~wafertile.hdl.core.units.FpProduct`)."""

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.o.eq(product(self.a, self.b))
        return m


class CutSum(FpSum):
    """The float core's accumulator unit, cut: ``o = accumulate(a, b)`` into a register
    loaded while ``en`` (the members and ``latency`` 1 of
    :class:`~wafertile.hdl.core.units.FpSum`)."""

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.o.eq(accumulate(self.a, self.b))
        return m


class _CutHandoff:
    """A hand-off unit, cut (mixed in before the unit it stands for, whose members, kind,
    latency and registers it keeps): ``o = handoff(acc, registers)``, combinational."""

    def elaborate(self, platform):
        m = Module()
        regs = {reg: getattr(self, reg.name.lower()) for reg in self.registers(self.config)}
        m.d.comb += self.o.eq(handoff(self.config, self.acc, regs))
        return m


class CutRequantizer(Requantizer):
    """The integer core's requantizer, cut: its control kept (the copies it takes when a
    FINISH leaves the last stage, its steps beside the pipeline, the accumulator's limbs on
    the MAC's multiplier, the output it offers), its arithmetic ``o = handoff(acc,
    registers)`` of the copies."""

    def elaborate(self, platform):
        m = Module()
        _, _, copies = self.control(m)
        regs = {reg: copies[reg.name.lower()] for reg in self.registers(self.config)}
        m.d.comb += self.o.eq(handoff(self.config, copies["acc"], regs))
        return m


class CutFpHandoff(_CutHandoff, FpHandoff):
    """The float core's hand-off (ReLU and rounding), cut (:class:`_CutHandoff`)."""


class CutBackHandoff(FpBackHandoff):
    """The float core's backward hand-off, cut: ``o = backprop(acc, act)``, combinational."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(backprop(self.acc, self.act))
        return m


#: The units of the cores in the formal check, by format (``"int"``, ``"float"``).
CUT_UNITS = {
    "int": {**INT_UNITS, "handoff": CutRequantizer},
    "float": {**FLOAT_UNITS, "multiply": CutProduct, "mac": CutSum, "add": CutSum,
              "handoff": CutFpHandoff, "grad": CutSum, "backprop": CutBackHandoff,
              "nonlinear": CutNonlinear},
}


def cut_units(config: Config) -> dict[str, type]:
    """The units of ``config``'s core in the formal check (:data:`CUT_UNITS`)."""
    return dict(CUT_UNITS["float" if config.is_float else "int"])
