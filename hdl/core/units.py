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

``"iterative"`` (an iterative unit, the float core only)
    ``o = f(a, b)`` over many cycles: ``a`` the accumulator the operation read, ``b`` its
    ``data`` field (a second operand), ``func`` which function (:meth:`FpNonlinear.function`:
    the row's own, or the low bits of ``data``). The core starts the unit (``start``, while
    ``ready``) when the operation reaches the stage that reads the accumulator, holds that
    stage and the ones before it until the unit's ``done`` (the stage after it drains), and
    writes ``o`` to the accumulator as any accumulator unit's result. Members ``a``, ``b``
    (``In`` accumulator word), ``func``, ``start`` (``In``), ``ready``, ``done``
    (``Out(1)``), ``o`` (``Out`` accumulator word, held from ``done`` until the next start);
    ``FUNCTIONS`` (the names of its functions, by code), ``DATA_BITS`` (the low bits of
    ``data`` that number a function of an operation whose data is a function),
    :meth:`cycles` (``func``) the cycles from ``start`` to ``done``, which the models count.
    One per core (:class:`FpNonlinear`: NONLINEAR, MUL and MAX, with ``config.nonlinear``).

The arithmetic of the built-in units is ``docs/architecture.md``'s and ``docs/float.md``'s;
their numpy references are :mod:`wafertile.sim.models.core`'s units.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib.wiring import In, Out

from ...config import Config, Overflow
from .._util import ConfiguredComponent, any_of
from ..flit import MULT_WIDTH, Reg
from .fp import FpAdd, FpMul, FpToHalf, float_format, fp_relu
from .nonlinear import FUNC_WIDTH, FUNCTIONS, UNARY, NonlinearUnit
from .nonlinear import cycles as nonlinear_cycles

__all__ = [
    "FLOAT_UNITS",
    "INT_UNITS",
    "LIMB",
    "SHARED_OPERAND",
    "FpBackHandoff",
    "FpHandoff",
    "FpNonlinear",
    "FpProduct",
    "FpSum",
    "IntProduct",
    "IntSum",
    "Requantizer",
    "Unit",
    "beside_pipeline",
    "core_units",
    "handoff_limbs",
    "limbs",
    "operand_width",
    "unit_kind",
]


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
    """The kind of unit class ``cls`` (``"acc"``, ``"output"``, ``"iterative"``,
    ``"multiply"``), or None if it is not a unit."""
    kind = getattr(cls, "kind", None)
    return kind if kind in ("acc", "output", "iterative", "multiply") else None


def beside_pipeline(unit) -> bool:
    """Whether output unit ``unit`` (a class or an instance) works beside the core's pipeline
    and offers its output itself, ``delay(config)`` cycles after its operation leaves the
    last stage (the integer hand-off, :class:`Requantizer`), instead of in that stage."""
    return hasattr(unit, "delay")


def core_units(config: Config) -> dict[str, type]:
    """The units of the core ``config`` makes, by name (:data:`INT_UNITS`,
    :data:`FLOAT_UNITS`)."""
    return FLOAT_UNITS if config.is_float else INT_UNITS


def handoff_limbs(config: Config) -> int:
    """Limbs the hand-off of ``config``'s core multiplies on the MAC's multiplier beside the
    pipeline (:func:`limbs`: 2 for accumulators of 19 to 35 bits), or 0 where the hand-off is
    absent or does not work beside the pipeline (the float core's, combinational)."""
    unit = core_units(config).get("handoff")
    return limbs(config.acc_width) if config.handoff and beside_pipeline(unit) else 0


#: Bits of each of the accumulator's low limbs that the hand-off multiplies on the MAC's
#: multiplier (unsigned, zero-extended to its 18-bit operand); the last limb is signed and at
#: most 18 bits: one ECP5 MULT18X18D per product, in one of its configurations.
LIMB = 17
#: The width of the integer multiplier's operands in a core with the hand-off unit, which
#: multiplies the accumulator's limbs on it (and of its product: twice that).
SHARED_OPERAND = 18


def limbs(acc_width: int) -> int:
    """How many limbs the hand-off splits an ``acc_width``-bit accumulator into: 17-bit
    unsigned limbs from the bottom and a last signed one of at most 18 bits."""
    return 1 if acc_width <= SHARED_OPERAND else 2 + (acc_width - SHARED_OPERAND - 1) // LIMB


def operand_width(config: Config) -> int:
    """The integer multiplier's operand width: ``data_width``, or :data:`SHARED_OPERAND`
    when the hand-off unit shares it (``config.handoff``)."""
    return max(config.data_width, SHARED_OPERAND) if config.handoff else config.data_width


class IntProduct(Unit):
    """The integer core's multiplier: ``o = a * b`` (the weight and the activation, exact)
    into a register loaded while ``en`` (``latency`` 1; the core holds ``en`` low for a zero
    operand: no multiply, the DSP's clock enable stays low). With the hand-off unit
    (``config.handoff``) its operands are :data:`SHARED_OPERAND` bits wide: FINISH's hand-off
    multiplies the accumulator's limbs by MULT on it (:class:`Requantizer`) in cycles in which
    no MAC moves into the last stage.

    Members
    -------
    a, b : ``In(signed(operand_width(config)))`` (the weight and the activation)
    en : ``In(1)``
    o : ``Out(signed(2 * operand_width(config)))``
    """

    kind = "multiply"
    latency = 1

    @classmethod
    def members(cls, config: Config) -> dict:
        w = operand_width(config)
        return {"a": In(signed(w)), "b": In(signed(w)), "en": In(1), "o": Out(signed(2 * w))}

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

    The rounding is gemmlowp's RoundingDivideByPOT (-2.5 -> -3, 2.5 -> 3), computed as one
    addition and an arithmetic shift: ``r = (p + c) >> SHIFT`` with ``c = 2**(SHIFT-1) -
    [p < 0]`` for ``SHIFT >= 1``, ``c = 0`` for ``SHIFT = 0``.

    **Beside the pipeline, on the MAC's multiplier.** The unit has no multiplier of its own
    and does not hold the pipeline while it works. When a FINISH leaves the core's last stage
    (``start``) the unit takes its accumulator and the registers into registers of its own
    and is ``active``; the pipeline goes on (WRITE_ACTs, SETs, ADDs flow past). With ``n``
    limbs (:func:`limbs`: for 32 bits, ``acc[17:32]`` signed and ``acc[0:17]`` unsigned) it
    multiplies its limbs by MULT on the MAC's multiplier (``mul_en``, ``mul_a``, ``mul_b``;
    the product register back on ``product``), the top one first, one per cycle in which the
    multiplier is ``free`` (no MAC loads the product register at the clock edge: the core
    says so); in the cycle after each multiply it adds the product to the sum of the ones
    above it, shifted into place (the last into ``p``'s register); in the cycle after the
    last sum it rounds, applies RELU and clamps from ``p`` and offers the activation
    (``valid``) until ``ready``. So, with the multiplier free, the output is offered
    :meth:`delay` (``n + 2``) cycles after the start; each cycle in which a MAC takes the
    multiplier first puts it off by one. The core holds its pipeline only where the unit is
    in the way: an output or another FINISH in the last stage while the unit is active
    (outputs stay in order); a FINISH may start the unit in the cycle its output goes, so
    one tile finishes an output every :meth:`delay` cycles. Every path starts at a register
    or the accumulator RAM and ends at one, except the last step's rounding and clamp into
    the router.

    The rounding, from ``p``: ``y = p >> t`` with ``t = SHIFT - 1``, of which only the low
    ``data_width + 2`` bits are formed, with whether ``y`` fits them (else ``act``
    saturates) and whether ``p``'s low ``t`` bits are all zero; ``r = (y - d + 1) >> 1``
    with ``d = 1`` for a negative ``p`` whose low ``t`` bits are zero (then ``floor((p -
    1) / 2**t) = y - 1``), else 0. For ``SHIFT = 0``, ``r = p``.

    Members
    -------
    acc : ``In(signed(acc_width))``
    mult, shift, relu : ``In`` (:meth:`registers`)
    start, free, ready : ``In(1)``
    active, valid : ``Out(1)``
    mul_a, mul_b : ``Out(signed(operand_width(config)))``; mul_en : ``Out(1)``
    product : ``In(signed(2 * operand_width(config)))``
    o : ``Out(signed(data_width))``
    """

    kind = "output"
    latency = 0

    def __init__(self, config: Config):
        super().__init__(config)
        n = limbs(config.acc_width)
        width = config.acc_width + MULT_WIDTH + 1
        copies = {"acc": Signal(signed(config.acc_width), name="acc_copy")}
        copies.update({reg.name.lower(): Signal(w, name=f"{reg.name.lower()}_copy")
                       for reg, (w, _) in self.registers(config).items()})
        self._state = {
            "step": Signal(range(n + 1), name="step"),  # limbs multiplied so far
            "fresh": Signal(name="fresh"),  # the product register holds the last one's product
            "copies": copies,
            "high": Signal(signed(width), name="high"),  # the sum of the products so far
            "p": Signal(signed(width), name="p"),  # acc * MULT
            # the rounding's shift, SHIFT - 1 (0 for SHIFT = 0), taken at the start
            "t": Signal.like(copies["shift"], name="t"),
        }

    @property
    def state(self) -> dict:
        """The unit's registers, for proofs (``wafertile formal``): ``step`` (limbs multiplied
        since the start), ``fresh``, ``copies`` (``"acc"`` and the registers' names), ``high``
        (the sum of the limbs' products so far, before the last), ``p`` and ``t`` (the
        rounding's shift: ``SHIFT - 1``, or 0 for ``SHIFT = 0``)."""
        return {**self._state, "copies": dict(self._state["copies"])}

    @staticmethod
    def registers(config: Config) -> dict[Reg, tuple[int, int]]:
        """The tile registers the unit reads: ``{Reg: (width, reset value)}``."""
        return {Reg.MULT: (MULT_WIDTH, 1),
                Reg.SHIFT: (Signal(range(config.acc_width + MULT_WIDTH)).shape().width, 0),
                Reg.RELU: (1, 0)}

    @staticmethod
    def delay(config: Config) -> int:
        """Cycles from a FINISH leaving the last stage to its activation offered (``limbs +
        2``: 4 for accumulators of 19 to 35 bits)."""
        return limbs(config.acc_width) + 2

    @classmethod
    def members(cls, config: Config) -> dict:
        w = operand_width(config)
        members = {"acc": In(signed(config.acc_width)), "o": Out(signed(config.data_width)),
                   "start": In(1), "free": In(1), "ready": In(1), "active": Out(1),
                   "valid": Out(1),
                   "mul_a": Out(signed(w)), "mul_b": Out(signed(w)), "mul_en": Out(1),
                   "product": In(signed(2 * w))}
        members.update({reg.name.lower(): In(width)
                        for reg, (width, _) in cls.registers(config).items()})
        return members

    def may_multiply(self):
        """Whether the unit may take the multiplier this cycle: ``free`` (a formal mutation
        takes it regardless)."""
        return self.free

    def rounds_up(self, shift, sign, low_zero):
        """The one added to ``y`` before its last halving (the rounding, class docstring): 1
        for ``SHIFT >= 1`` unless ``p`` is negative with its low ``t`` bits zero (a formal
        mutation adds it always)."""
        return (shift != 0) & ~(sign & low_zero)

    def control(self, m: Module) -> tuple[Signal, Signal, dict]:
        """The counter of limbs multiplied, ``active`` and ``valid``, the copies of the
        accumulator and the registers taken at the start, and the limbs to the multiplier;
        returns the counter (0 .. ``n``), whether the product register holds the last limb's
        product (``fresh``: a cycle after its multiply) and the copies (``"acc"`` and the
        registers' names)."""
        cfg = self.config
        n = limbs(cfg.acc_width)
        k, fresh, copies = self._state["step"], self._state["fresh"], self._state["copies"]
        multiply = Signal(name="multiply")
        m.d.comb += multiply.eq(self.active & (k < n) & self.may_multiply())
        m.d.sync += fresh.eq(multiply)
        with m.If(self.start):
            m.d.sync += [self.active.eq(1), k.eq(0)]
            m.d.sync += [copy.eq(getattr(self, name)) for name, copy in copies.items()]
        with m.Elif(multiply):
            m.d.sync += k.eq(k + 1)
        with m.Elif(self.valid & self.ready):
            m.d.sync += self.active.eq(0)
        m.d.comb += self.valid.eq(self.active & (k == n) & ~fresh)
        acc = copies["acc"]
        parts = [acc[LIMB * j:LIMB * (j + 1)].as_unsigned() for j in range(n - 1)]
        parts.append(acc[LIMB * (n - 1):].as_signed())
        limb = parts[0]  # step k multiplies limb n - 1 - k: the top one first
        for j in range(1, n):
            limb = Mux(k == n - 1 - j, parts[j], limb)
        m.d.comb += [self.mul_a.eq(limb), self.mul_b.eq(copies["mult"]),
                     self.mul_en.eq(multiply)]
        return k, fresh, copies

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n = limbs(cfg.acc_width)
        k, fresh, copies = self.control(m)
        dw = cfg.data_width
        # p = acc * MULT from the limbs' products, the top limb first: the cycle after the
        # j-th multiply (fresh, k = j) adds its product; ``high`` the sum of the higher ones
        p, high = self._state["p"], self._state["high"]
        product = self.product
        for j in range(1, n + 1):
            # high * 2**17 + product, the low 17 bits the product's own
            below = Cat(product[:LIMB], high + (product >> LIMB)) if j > 1 else product
            with m.If(fresh & (k == j)):
                m.d.sync += (p if j == n else high).eq(below)
        # the rounding from p's register: r = floor((floor((p - [p < 0]) / 2**t) + 1) / 2) with
        # t = SHIFT - 1 (SHIFT >= 1; the same as the (p + c) >> SHIFT of the class docstring),
        # r = p for SHIFT = 0. Only y = p >> t's low dw + 2 bits are formed, with whether y
        # fits them (else r saturates) and whether p's low t bits are zero ([p < 0] then
        # takes one off y), both found in the shifter's stages (:func:`_shift_low`)
        shift = copies["shift"]
        t = self._state["t"]  # a register: the shifter's amount starts at one
        with m.If(self.start):
            m.d.sync += t.eq(Mux(self.shift == 0, 0, self.shift - 1))
        keep = dw + 2
        y = Signal(signed(keep), name="y")
        low, above, out = _shift_low(p, t, keep)
        m.d.comb += y.eq(low)
        sign = p[-1]
        overflow = Signal(name="overflow")  # y does not fit keep bits: p[t+keep-1:] not all sign
        m.d.comb += overflow.eq(any_of(b ^ sign for b in [y[-1], *above]))
        low_zero = Signal(name="low_zero")  # p's low t bits are all zero
        m.d.comb += low_zero.eq(~any_of(out))
        up = Signal(signed(keep + 1), name="up")
        m.d.comb += up.eq(y + self.rounds_up(shift, sign, low_zero))
        r = Signal(signed(keep), name="r")
        m.d.comb += r.eq(Mux(shift == 0, y, up >> 1))
        top = r[dw - 1:]  # r fits dw bits: these all equal
        with m.If(copies["relu"] & sign):
            m.d.comb += self.o.eq(0)
        with m.Elif(overflow | ~((top == 0) | (top == (1 << len(top)) - 1))):
            m.d.comb += self.o.eq(Mux(sign, cfg.data_min, cfg.data_max))
        with m.Else():
            m.d.comb += self.o.eq(r)
        return m


def _shift_low(value, amount, keep: int) -> tuple[Value, list, list]:
    """The low ``keep`` bits of ``value >> amount`` (arithmetic), as a mux per stage of the
    amount's bits (the largest first), each stage only as wide as the stages after it still
    need; and, found on the way, what the rounding needs of the bits not formed.

    Returns ``(low, above, out)``: ``low`` the ``keep`` bits; ``above`` the bits each stage
    forms beyond what the next stages read (each is a bit of the whole result at a place >=
    ``keep``, as every later stage shifts it by less than the bits it leaves; with the
    stage's input bits that were not formed read as the sign, which only matters where an
    earlier stage's ``above`` already differs from it): the whole result's bits from
    ``keep`` up all equal the sign iff every one of them does; ``out`` per stage that
    shifts, the OR of the bits it shifts out at the bottom (gated by its amount bit): all
    are zero iff ``value``'s low ``amount`` bits are (past the top, the sign bits shifted
    out are ones only for a negative value, which has a one among its own bits)."""
    value = value.as_signed()
    sign = value[-1]
    bits = list(value)
    above, out = [], []
    for b in reversed(range(len(amount))):
        step = 1 << b
        need = min(keep + step - 1, len(value))  # the bits the smaller stages still read
        assert step <= need <= len(bits)  # every stage forms at least what it keeps
        out.append(amount[b] & any_of(bits[:step]))
        shifted = [bits[i + step] if i + step < len(bits) else sign for i in range(len(bits))]
        new = [Mux(amount[b], shifted[i], bits[i]) for i in range(len(bits))]
        above += new[need:]
        bits = new[:need]
    return Cat(*bits[:keep]), above, out


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


class FpNonlinear(Unit):
    """The float core's nonlinear unit (NONLINEAR, MUL, MAX; ``config.nonlinear``): ``o =
    f(a, b)`` in FP32 for ``f`` exp, reciprocal, reciprocal square root, GELU, GELU's
    derivative (of ``a`` only), MUL or MAX (``func`` 0 .. 6, :data:`~.nonlinear.FUNCTIONS`),
    bit exact with
    ``docs/nonlinear.md``'s reference: a :class:`~.nonlinear.NonlinearUnit` with
    :attr:`STAGES` (2) stages per step, so that its adder and multiplier run at the core's
    clock. An iterative unit (module documentation): :meth:`cycles` from ``start`` to
    ``done`` (exp 59, reciprocal 21, reciprocal square root 31, GELU 187, GELU's derivative
    203, MUL 3, MAX 7).

    Members
    -------
    a, b : ``In(32)`` (FP32 bits)
    func : ``In(3)``
    start : ``In(1)``
    ready, done : ``Out(1)``
    o : ``Out(32)`` (FP32 bits)
    """

    kind = "iterative"
    latency = None
    #: Cycles per step of the programs.
    STAGES = 2
    #: The functions by code.
    FUNCTIONS = FUNCTIONS
    #: The low bits of ``data`` that number a function of one operand (NONLINEAR); a number
    #: past the last such function (5 to 7) is taken as the last (:meth:`unary`).
    DATA_BITS = (len(UNARY) - 1).bit_length()

    @classmethod
    def unary(cls, data: Value) -> Value:
        """NONLINEAR's function code from its request's ``data`` (an Amaranth value): the low
        :attr:`DATA_BITS`, at most the last function of one operand."""
        bits = data[:cls.DATA_BITS]
        return Mux(bits > len(UNARY) - 1, len(UNARY) - 1, bits)

    @classmethod
    def members(cls, config: Config) -> dict:
        return {"a": In(32), "b": In(32), "func": In(FUNC_WIDTH), "start": In(1),
                "ready": Out(1), "done": Out(1), "o": Out(32)}

    @classmethod
    def cycles(cls, func: int) -> int:
        """Cycles from ``start`` to ``done`` for function ``func`` (:attr:`FUNCTIONS`)."""
        return nonlinear_cycles(FUNCTIONS[func], cls.STAGES)

    @classmethod
    def function(cls, row, data):
        """The function code that ``row`` (an operation of this unit) runs for a request's
        ``data`` field (an int or a numpy array of them): its own :attr:`~.ops.Op.function`,
        or the low :attr:`DATA_BITS` of ``data``."""
        if row.function is not None:
            return data * 0 + FUNCTIONS.index(row.function)
        bits, last = data & ((1 << cls.DATA_BITS) - 1), len(UNARY) - 1
        return bits - (bits > last) * (bits - last)  # at most ``last``, ints or arrays

    def elaborate(self, platform):
        m = Module()
        m.submodules.nonlinear = unit = NonlinearUnit(stages=self.STAGES)
        m.d.comb += [unit.start.eq(self.start), unit.func.eq(self.func), unit.x.eq(self.a),
                     unit.d.eq(self.b), self.ready.eq(unit.ready), self.done.eq(unit.done),
                     self.o.eq(unit.o)]
        return m


#: The integer core's units (:class:`~.mac.MacCore`).
INT_UNITS = {"multiply": IntProduct, "mac": IntSum, "add": IntSum, "handoff": Requantizer}
#: The float core's units (:class:`~.fpmac.FpMacCore`); ``"multiply"`` is the MAC's product.
FLOAT_UNITS = {"multiply": FpProduct, "mac": FpSum, "add": FpSum, "handoff": FpHandoff,
               "grad": FpSum, "backprop": FpBackHandoff, "nonlinear": FpNonlinear}
