"""The units of the tile cores: what an operation's row (:attr:`~.ops.Op.unit`) names.

A core instantiates the units its operations need from a map of unit name to unit class
(:data:`INT_UNITS`, :data:`FLOAT_UNITS`, overridden or extended by the core's ``units``
argument); two names mapped to the same class share one instance. The name ``"multiply"``
is the MAC's multiplier (``o = a * b`` of the weight and the activation, ``latency`` 1: a
register loaded while ``en``, which the core holds low for a zero operand); every other unit
is one of two kinds, by its class attribute ``kind``:

``"acc"`` (an accumulator unit)
    ``o = f(a, b)`` with ``a`` the accumulator the operation read and ``b`` its operand: the
    product ``weight * act`` for an operation of the MAC unit (a row with ``unit = "mac"``),
    the request's ``data`` for any other. The core writes ``o`` to the accumulator. Members
    ``a``, ``b`` (``In`` accumulator words), ``en`` (``In(1)``: the pipeline advances) and
    ``o`` (``Out`` accumulator word); ``latency`` cycles from ``a``, ``b`` to ``o``, a
    register stage loaded while ``en``. A core takes the latency of its accumulate step
    (:attr:`~.mac.MacCore.ACC_LATENCY`: 0 in the integer core, 1 in the float core) and
    refuses another.

    An accumulator unit may also compute an operation's output instead of its accumulator
    (GRAD, ``"grad"``: ``o = f(data, weight * act)``, the sum's first operand the request's
    ``data`` because the operation reads no accumulator), in a core that emits after its
    accumulator units' latency (the float core's last stage).

``"output"`` (an output unit)
    ``o = f(acc, registers)`` or ``o = f(acc, act)``: an output's data from the accumulator
    the operation read, the tile registers that SET writes (:class:`~wafertile.hdl.flit.Reg`)
    and, for a unit with an ``act`` member, the activation it read. The unit declares its
    registers (:meth:`registers`: width and reset value of each; none for FINISH_BACK's);
    the core keeps them and SET writes the low bits of ``data`` into register ``addr`` (a
    register the unit does not declare is not written). Members ``acc`` (``In`` accumulator
    word), one ``In`` per register (named after it: ``mult``, ``shift``, ``relu``),
    optionally ``act`` (``In``: the activation word), ``o`` (``Out``: the activation word);
    ``latency`` 0 (combinational, in the stage that reads the accumulator).

The arithmetic of the built-in units is ``docs/architecture.md``'s and ``docs/float.md``'s;
their numpy references are :mod:`wafertile.sim.models.core`'s units.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib.wiring import In, Out

from ...config import Config, Overflow
from .._util import ConfiguredComponent
from ..flit import MULT_WIDTH, Reg
from .fp import FpAdd, FpMul, FpToHalf, float_format, fp_relu

__all__ = ["FLOAT_UNITS", "INT_UNITS", "FpBackHandoff", "FpHandoff", "FpProduct", "FpSum",
           "IntProduct", "IntSum", "Requantizer", "Unit", "unit_kind"]


class Unit(ConfiguredComponent):
    """A unit of the cores: its ``kind`` and ``latency`` (class attributes) and its members
    for a configuration (:meth:`members`)."""

    kind: str
    latency: int

    @classmethod
    def members(cls, config: Config) -> dict:
        """The unit's members for ``config``."""
        raise NotImplementedError

    def __init__(self, config: Config):
        super().__init__(config, self.members(config))


def unit_kind(cls) -> str | None:
    """The kind of unit class ``cls`` (``"acc"``, ``"output"``, ``"multiply"``), or None if it
    is not a unit."""
    kind = getattr(cls, "kind", None)
    return kind if kind in ("acc", "output", "multiply") else None


class IntProduct(Unit):
    """The integer core's multiplier: ``o = a * b`` (two ``data_width`` words, exact in
    ``product_width`` bits) into a register loaded while ``en`` (``latency`` 1; the core holds
    ``en`` low for a zero operand: no multiply, the DSP's clock enable stays low).

    Members
    -------
    a, b : ``In(signed(data_width))`` (the weight and the activation)
    en : ``In(1)``
    o : ``Out(signed(product_width))``
    """

    kind = "multiply"
    latency = 1

    @classmethod
    def members(cls, config: Config) -> dict:
        dw = config.data_width
        return {"a": In(signed(dw)), "b": In(signed(dw)), "en": In(1),
                "o": Out(signed(config.product_width))}

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.o.eq(self.a * self.b)
        return m


class IntSum(Unit):
    """The integer core's accumulator unit: ``o = a + b`` at ``acc_width + 1`` bits, then
    wrapped to ``acc_width`` (``overflow = "wrap"``) or clamped to the accumulator range
    (``"saturate"``). Combinational (``latency`` 0): the core's MAC and ADD.

    Members
    -------
    a, b : ``In(signed(acc_width))``
    en : ``In(1)`` (unused: no register)
    o : ``Out(signed(acc_width))``
    """

    kind = "acc"
    latency = 0

    @classmethod
    def members(cls, config: Config) -> dict:
        aw = config.acc_width
        return {"a": In(signed(aw)), "b": In(signed(aw)), "en": In(1), "o": Out(signed(aw))}

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        aw = cfg.acc_width
        total = Signal(signed(aw + 1))
        m.d.comb += total.eq(self.a + self.b)
        if cfg.overflow_mode is Overflow.SATURATE:
            with m.If(total > cfg.acc_max):
                m.d.comb += self.o.eq(cfg.acc_max)
            with m.Elif(total < cfg.acc_min):
                m.d.comb += self.o.eq(cfg.acc_min)
            with m.Else():
                m.d.comb += self.o.eq(total)
        else:
            m.d.comb += self.o.eq(total[:aw].as_signed())
        return m


class Requantizer(Unit):
    """The integer core's hand-off unit: FINISH's activation from an accumulator, with the
    registers MULT, SHIFT and RELU (reset values 1, 0, 0)::

        p   = acc * MULT                                   (exact, acc_width + 16 bits)
        r   = p / 2**SHIFT rounded to nearest, ties away from zero
        r   = max(r, 0) if RELU
        act = r clamped to data_min .. data_max

    Combinational (``latency`` 0). The rounding is gemmlowp's RoundingDivideByPOT: floor,
    then +1 when the remainder is above half (or, for ``p >= 0``, exactly half: -2.5 -> -3,
    2.5 -> 3).

    Members
    -------
    acc : ``In(signed(acc_width))``
    mult, shift, relu : ``In`` (:meth:`registers`)
    o : ``Out(signed(data_width))``
    """

    kind = "output"
    latency = 0

    @staticmethod
    def registers(config: Config) -> dict[Reg, tuple[int, int]]:
        """The tile registers the unit reads: ``{Reg: (width, reset value)}``."""
        return {Reg.MULT: (MULT_WIDTH, 1),
                Reg.SHIFT: (Signal(range(config.acc_width + MULT_WIDTH)).shape().width, 0),
                Reg.RELU: (1, 0)}

    @classmethod
    def members(cls, config: Config) -> dict:
        members = {"acc": In(signed(config.acc_width)), "o": Out(signed(config.data_width))}
        members.update({reg.name.lower(): In(width)
                        for reg, (width, _) in cls.registers(config).items()})
        return members

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        width = cfg.acc_width + MULT_WIDTH + 1
        shift = self.shift
        product = Signal(signed(width))
        m.d.comb += product.eq(self.acc * self.mult)
        floor = Signal(signed(width))
        m.d.comb += floor.eq(product >> shift)
        mask = Signal(width)
        # bit k of the mask: k < shift (a constant 0 where no value of shift's bits is above
        # k: written out, the comparison is one that lint calls constant)
        top = (1 << len(shift)) - 1
        m.d.comb += mask.eq(Cat(Const(k, range(width + 1)) < shift if k < top else Const(0)
                                for k in range(width)))
        remainder = product.as_unsigned() & mask
        threshold = (mask >> 1) + (product < 0)
        rounded = Signal(signed(width + 1))
        m.d.comb += rounded.eq(floor + (remainder > threshold))
        positive = Mux(self.relu & (rounded < 0), 0, rounded)
        with m.If(positive > cfg.data_max):
            m.d.comb += self.o.eq(cfg.data_max)
        with m.Elif(positive < cfg.data_min):
            m.d.comb += self.o.eq(cfg.data_min)
        with m.Else():
            m.d.comb += self.o.eq(positive)
        return m


class FpSum(Unit):
    """The float core's accumulator unit: :class:`~.fp.FpAdd` in two stages (``latency``
    1), ``o = fp32(a + b)`` bit exact with numpy's float32 (``docs/float.md``).

    Members
    -------
    a, b : ``In(32)`` (FP32 bits)
    en : ``In(1)``: the register between the halves loads while ``en``
    o : ``Out(32)``
    """

    kind = "acc"
    latency = 1

    @classmethod
    def members(cls, config: Config) -> dict:
        return {"a": In(32), "b": In(32), "en": In(1), "o": Out(32)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = FpAdd(stages=2)
        m.d.comb += [add.a.eq(self.a), add.b.eq(self.b), add.en.eq(self.en),
                     self.o.eq(add.o)]
        return m


class FpProduct(Unit):
    """The float core's multiplier: :class:`~.fp.FpMul` of the tile's format in two stages
    (``latency`` 1): ``o = fp32(a) * fp32(b)``, its register after the DSP loaded while
    ``en`` (the core holds ``en`` low for a zero operand: no multiply).

    Members
    -------
    a, b : ``In(16)`` (the weight and the activation, FP16 or BF16 bits)
    en : ``In(1)``
    o : ``Out(32)`` (FP32 bits)
    """

    kind = "multiply"
    latency = 1

    @classmethod
    def members(cls, config: Config) -> dict:
        return {"a": In(16), "b": In(16), "en": In(1), "o": Out(32)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = FpMul(self.config.dtype, stages=2)
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b), mul.en.eq(self.en),
                     self.o.eq(mul.o)]
        return m


class FpHandoff(Unit):
    """The float core's hand-off unit: FINISH's activation ``to_half(relu?(acc))``: ReLU in
    FP32 when the RELU register is set (:func:`~.fp.fp_relu`: negatives and -0 to +0, NaNs
    pass), then rounded to the tile's format to nearest even (:class:`~.fp.FpToHalf`).
    Combinational (``latency`` 0). Its one register is RELU (MULT and SHIFT have no meaning
    in floating point: a SET of them has no effect).

    Members
    -------
    acc : ``In(32)`` (FP32 bits)
    relu : ``In(1)``
    o : ``Out(16)``
    """

    kind = "output"
    latency = 0

    @staticmethod
    def registers(config: Config) -> dict[Reg, tuple[int, int]]:
        """The tile registers the unit reads: ``{Reg: (width, reset value)}``."""
        return {Reg.RELU: (1, 0)}

    @classmethod
    def members(cls, config: Config) -> dict:
        return {"acc": In(32), "relu": In(1), "o": Out(16)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.to_half = to_half = FpToHalf(self.config.dtype)
        m.d.comb += [to_half.i.eq(Mux(self.relu, fp_relu(self.acc), self.acc)),
                     self.o.eq(to_half.o)]
        return m


class FpBackHandoff(Unit):
    """The float core's backward hand-off (FINISH_BACK, ``docs/training.md``): the input
    gradient ``to_half(acc)`` (rounded to the tile's format to nearest even,
    :class:`~.fp.FpToHalf`) where the forward activation ``act`` is greater than 0 (a
    positive number or +infinity: sign 0, not zero, not a NaN), else +0: ReLU's derivative
    taken from the activation the forward pass left in the tile. Combinational (``latency``
    0); no registers.

    Members
    -------
    acc : ``In(32)`` (FP32 bits)
    act : ``In(16)`` (the format's bits)
    o : ``Out(16)``
    """

    kind = "output"
    latency = 0

    @staticmethod
    def registers(config: Config) -> dict[Reg, tuple[int, int]]:
        """None: FINISH_BACK reads no tile register."""
        return {}

    @classmethod
    def members(cls, config: Config) -> dict:
        return {"acc": In(32), "act": In(16), "o": Out(16)}

    def elaborate(self, platform):
        m = Module()
        fmt = float_format(self.config.dtype)
        m.submodules.to_half = to_half = FpToHalf(self.config.dtype)
        magnitude = self.act[:15]
        positive = ~self.act[15] & (magnitude != 0) & (magnitude <= fmt.inf)
        m.d.comb += [to_half.i.eq(self.acc), self.o.eq(Mux(positive, to_half.o, 0))]
        return m


#: The integer core's units (:class:`~.mac.MacCore`).
INT_UNITS = {"multiply": IntProduct, "mac": IntSum, "add": IntSum, "handoff": Requantizer}
#: The float core's units (:class:`~.fpmac.FpMacCore`); ``"multiply"`` is the MAC's product.
FLOAT_UNITS = {"multiply": FpProduct, "mac": FpSum, "add": FpSum, "handoff": FpHandoff,
               "grad": FpSum, "backprop": FpBackHandoff}
