"""Floating-point units for FP16 / BF16 tiles: the product, the FP32 sum, the hand-off to 16
bits, and ReLU.

The arithmetic of an FP tile (issue 14; ``docs/float.md``)::

    acc = fp32(acc + fp32(w) * fp32(a))        w, a in FP16 or BF16, acc in FP32

:class:`FpMul` forms ``fp32(w) * fp32(a)`` and :class:`FpAdd` the sum, each bit exact with
numpy's float32 arithmetic (IEEE 754 round-to-nearest-even, subnormals in and out, never
flushed); :class:`FpToHalf` rounds an FP32 word to the 16-bit format of the hand-off and
:func:`fp_relu` is ReLU on an FP32 word. Every NaN a unit produces is the canonical quiet NaN
of its output format (:attr:`FloatFormat.nan`, positive, top fraction bit set); the numpy
reference (:mod:`wafertile.sim.models.fp`) makes its NaNs canonical the same way, so a NaN
compares equal to a NaN whatever payload numpy left in it.

Nothing here holds state except the optional pipeline register of :class:`FpMul` and
:class:`FpAdd` (``stages = 2``, in the ``sync`` domain, loaded while ``en`` is high).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib.wiring import In, Out

from .._util import CheckedComponent, check_stages

__all__ = ["BF16", "FORMATS", "FP16", "FP32", "FloatFormat", "FpAdd", "FpMul", "FpToHalf",
           "float_format", "fp32_is_nan", "fp_relu"]


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE 754 style binary format: sign, ``exp_bits`` of biased exponent, ``frac_bits``
    of fraction, from the most significant bit down.

    Exponent 0 encodes zeros and subnormals (no hidden bit, exponent ``1 - bias``); the
    all-ones exponent encodes infinities (fraction 0) and NaNs (fraction not 0).

    The numpy helpers convert between arrays of raw bit patterns (``uint16`` for 16-bit
    formats, ``uint32`` for FP32) and ``float32`` values. Every FP16 and BF16 value is a
    float32, so :meth:`values` is exact; :meth:`bits` rounds to nearest even. BF16 has no numpy
    dtype: it is the top half of a float32, and :meth:`bits` applies the RNE rule to the
    float32 bit pattern itself (no ``ml_dtypes`` needed; the tests check it against
    ``ml_dtypes.bfloat16`` when that package is installed).

    Parameters
    ----------
    name : str
        ``"fp16"``, ``"bf16"`` or ``"fp32"`` for the three formats defined here.
    exp_bits, frac_bits : int
    """

    name: str
    exp_bits: int
    frac_bits: int

    @property
    def width(self) -> int:
        """Bits of a word: ``1 + exp_bits + frac_bits``."""
        return 1 + self.exp_bits + self.frac_bits

    @property
    def bias(self) -> int:
        """Exponent bias, ``2 ** (exp_bits - 1) - 1``."""
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def exp_max(self) -> int:
        """The all-ones exponent (infinities and NaNs)."""
        return (1 << self.exp_bits) - 1

    @property
    def inf(self) -> int:
        """Bit pattern of +infinity (OR ``sign_bit`` for -infinity)."""
        return self.exp_max << self.frac_bits

    @property
    def nan(self) -> int:
        """The canonical NaN: positive, quiet (top fraction bit set), payload 0."""
        return self.inf | (1 << (self.frac_bits - 1))

    @property
    def sign_bit(self) -> int:
        """The sign bit's weight, ``1 << (width - 1)``."""
        return 1 << (self.width - 1)

    @property
    def dtype(self) -> type:
        """numpy dtype of a raw bit pattern: ``np.uint16`` or ``np.uint32``."""
        return np.uint16 if self.width == 16 else np.uint32

    def values(self, bits) -> np.ndarray:
        """The float32 values of raw bit patterns ``bits`` (exact; NaN payloads are numpy's).
        """
        bits = np.asarray(bits).astype(self.dtype)
        if self is FP32 or self == FP32:
            return bits.view(np.float32)
        if self == FP16:
            with np.errstate(invalid="ignore"):   # signalling NaNs stay NaNs
                return bits.view(np.float16).astype(np.float32)
        if self == BF16:
            return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
        raise NotImplementedError(f"no numpy conversion for format {self.name!r}")

    def bits(self, values) -> np.ndarray:
        """Raw bit patterns of ``values`` rounded to this format, to nearest even.

        ``values`` are converted to float32 first (exact for float32 and float16 arrays).
        Overflow gives infinity, tiny values subnormals or a signed zero, and every NaN the
        canonical :attr:`nan`.
        """
        v = np.asarray(values).astype(np.float32)
        if self == FP32:
            out = v.view(np.uint32).copy()
        elif self == FP16:
            with np.errstate(over="ignore"):
                out = v.astype(np.float16).view(np.uint16)
        elif self == BF16:
            # RNE on the float32 pattern: add 0x7FFF plus the kept LSB, keep the top half. A
            # carry out of the fraction moves the exponent up, to infinity at the top.
            u = v.view(np.uint32).astype(np.uint64)
            out = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        else:
            raise NotImplementedError(f"no numpy conversion for format {self.name!r}")
        return np.where(np.isnan(v), self.dtype(self.nan), out).astype(self.dtype)


#: IEEE binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits.
FP16 = FloatFormat("fp16", 5, 10)
#: bfloat16: 1 sign, 8 exponent (bias 127), 7 fraction bits (the top half of an FP32 word).
BF16 = FloatFormat("bf16", 8, 7)
#: IEEE binary32: 1 sign, 8 exponent (bias 127), 23 fraction bits.
FP32 = FloatFormat("fp32", 8, 23)
#: The formats by name.
FORMATS: dict[str, FloatFormat] = {f.name: f for f in (FP16, BF16, FP32)}


def float_format(fmt: object) -> FloatFormat:
    """The :class:`FloatFormat` named ``fmt`` (``"fp16"``, ``"bf16"``, ``"fp32"``), or ``fmt``
    itself if it is one.

    Raises
    ------
    TypeError
        If ``fmt`` is neither a format nor one of their names.
    """
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, str) and fmt in FORMATS:
        return FORMATS[fmt]
    raise TypeError(f"float format must be one of {', '.join(map(repr, FORMATS))}, "
                    f"not {fmt!r}")


# -- gateware helpers ---------------------------------------------------------------------------

class _Fields:
    """The fields and classes of one word of ``fmt``: sign, biased exponent (with subnormals
    at 1, as their value has it), significand (hidden bit included), zero / inf / NaN."""

    def __init__(self, fmt: FloatFormat, word: Value):
        f, e = fmt.frac_bits, fmt.exp_bits
        self.sign = word[f + e]
        exp = word[f:f + e]
        frac = word[:f]
        normal = exp != 0
        top = exp == fmt.exp_max
        self.exp = Mux(normal, exp, 1)
        self.sig = Cat(frac, normal)
        self.zero = ~normal & (frac == 0)
        self.inf = top & (frac == 0)
        self.nan = top & (frac != 0)


def _leading_zeros(value: Value) -> Value:
    """The number of leading zeros of ``value`` (``len(value)`` when it is 0), as a tree of
    2:1 selections, ``log2`` levels deep."""
    w = len(value)
    n = 1 << w.bit_length()  # a power of two > w: the padding below stops an all-zero count
    padded = Cat(Const((1 << (n - w)) - 1, n - w), value)

    def count(bits):  # (all zero, leading zeros): a pair of halves picks one of its counts
        if len(bits) == 1:
            return ~bits[0], None  # no count bits (not a zero-width value: Verilog lint)
        half = len(bits) // 2
        zero_hi, n_hi = count(bits[half:])
        zero_lo, n_lo = count(bits[:half])
        low = [] if n_hi is None else [Mux(zero_hi, n_lo, n_hi)]
        return zero_hi & zero_lo, Cat(*low, zero_hi)

    return count(padded)[1]


def _shift_right_sticky(value: Value, amount: Value, *,
                        mask_sticky: bool = False) -> tuple[Value, Value, Value]:
    """``value >> amount`` and the guard bit (the last bit shifted out) and sticky bit (any
    bit below it) of the shift, for any ``amount``.

    The sticky bit comes from a shifter twice as wide (its low half ORed), or with
    ``mask_sticky`` from a mask decoded from ``amount`` ANDed with ``value``. Neither is
    smaller everywhere (Yosys, ECP5: the mask saves about 30 LUT4 in :class:`FpToHalf` and
    costs about 30 in :class:`FpAdd`)."""
    w = len(value)
    # Shifts of w + 1 and more all leave 0, guard 0 and sticky "value != 0": clamp to a
    # power of two minus one (an OR per bit, where a compare would take a carry chain).
    bits = (w + 1).bit_length()
    amount = Value.cast(amount)
    if len(amount) > bits:
        amount = amount[:bits] | amount[bits:].any().replicate(bits)
    if not mask_sticky:
        limit = (1 << bits) - 1
        wide = Cat(Const(0, limit), value) >> amount
        return wide[limit:limit + w], wide[limit - 1], wide[:limit - 1] != 0
    shifted = Cat(Const(0, 1), value) >> amount
    # Bit k is below the guard bit when k < amount - 1: bit k + 1 of ones << amount is 0.
    below = ~(Const((1 << (w + 1)) - 1, w + 1) << amount)[1:w + 1]
    return shifted[1:w + 1], shifted[0], (value & below) != 0


def _register(m: Module, en: Value, values: dict[str, Value], stages: int) -> dict[str, Value]:
    """``values`` as they are (``stages == 1``) or through a register loaded while ``en``
    (``stages == 2``), each a signal named after its key."""
    out = {}
    for name, v in values.items():
        if stages == 1:
            out[name] = v
            continue
        reg = Signal(v.shape(), name=name)
        with m.If(en):
            m.d.sync += reg.eq(v)
        out[name] = reg
    return out


def fp32_is_nan(word: Value) -> Value:
    """Whether the FP32 word ``word`` is a NaN (any sign, any payload)."""
    return _Fields(FP32, Value.cast(word)).nan


def fp_relu(word: Value) -> Value:
    """ReLU of an FP32 word: ``word`` if it is a NaN or not negative, else +0.

    -0 and every negative number (-inf and negative subnormals included) give +0
    (``0x00000000``); +0, positive numbers, +inf and every NaN, whatever its sign bit, pass
    unchanged. One 2:1 selection per bit plus a NaN test: no pipeline stage of its own.
    """
    word = Value.cast(word)
    if len(word) != 32:
        raise TypeError(f"fp_relu word must be 32 bits (FP32), not {len(word)}")
    return Mux(word[31] & ~fp32_is_nan(word), Const(0, 32), word)


class _FpUnit(CheckedComponent):
    """What :class:`FpMul` and :class:`FpAdd` share: the ``stages`` parameter and its ``en``."""

    @classmethod
    def check(cls, *args, **kwargs) -> None:
        check_stages(cls.__name__, kwargs.get("stages", 1))

    @property
    def stages(self) -> int:
        return self._stages

    @property
    def latency(self) -> int:
        """Clock cycles from an input to its output: ``stages - 1``."""
        return self._stages - 1

    @staticmethod
    def _members(stages: int, members: dict) -> dict:
        if stages == 2:
            members["en"] = In(1, init=1)
        return members


class FpMul(_FpUnit):
    """The product of two FP16, two BF16 or two FP32 numbers as an FP32 word, bit exact with
    numpy's ``float32(a) * float32(b)``.

    The significands (hidden bit included, subnormals as they are) go through one unsigned
    multiplier, 11 x 11 bits for FP16 and 8 x 8 for BF16: one DSP. The product is normalized
    by a leading-zero count (a subnormal operand has leading zeros) and placed in an FP32
    word. For FP16 that is all: the product of two FP16 numbers always fits an FP32 normal
    number exactly (22 significant bits, 2**-48 <= |p| < 2**32). A BF16 product has FP32's
    exponent range twice over: above the FP32 range it becomes infinity, below it an FP32
    subnormal or zero, rounded to nearest even (with a tie to even at half the smallest
    subnormal). For BF16 one right shift with guard and sticky bits both normalizes and
    denormalizes (a marker bit from the exponent sum limits the leading-zero count); that
    logic is generated only for formats whose products leave FP32's normal range.

    FP32 operands (the nonlinear functions of ``docs/nonlinear.md``) take the BF16 datapath
    with a 24 x 24 multiplier: the product has 48 significant bits, so the same right shift's
    guard and sticky bits round every product, normal or not, to nearest even (a rounding
    carry out of the significand increments the exponent, up to infinity).

    Specials: a NaN operand or infinity times zero gives the canonical NaN ``0x7FC00000``;
    infinity times a nonzero number is infinity; a zero times a finite number is a zero. Every
    non-NaN result has the sign ``a.sign ^ b.sign``, zeros included (``-0 * 3 = -0``).

    **Timing.** ``stages = 1``: combinational, ``o`` follows ``a`` and ``b`` in the same cycle
    (decode, multiplier, leading-zero count, shift, specials; for BF16 also the rounding
    increment): on ECP5 ~57 MHz register to register for FP16, ~43 MHz for BF16.
    ``stages = 2``: a register right after the multiplier holds the product, the exponent sum
    and the special flags (and for BF16 the normal-range flag and the marker, formed beside
    the multiplier); ``o`` is valid one cycle after ``a`` and ``b`` (~100 MHz FP16, ~65 MHz
    BF16), and the register loads only while ``en`` is high (a core's clock enable:
    zero-skipped MACs leave it alone). FP32 takes four DSPs and reaches ~30 MHz (``stages =
    1``) or ~46 MHz (``stages = 2``). Measured sizes and fmax: ``docs/float.md``.

    Parameters
    ----------
    fmt : str or FloatFormat
        ``"fp16"``, ``"bf16"`` or ``"fp32"`` (or :data:`FP16`, :data:`BF16`, :data:`FP32`).
    stages : int
        1 (combinational) or 2 (one register).

    Members
    -------
    a, b : ``In(fmt.width)``
        The operands, raw bits of ``fmt`` (16 bits, 32 for FP32).
    o : ``Out(32)``
        The product, raw FP32 bits.
    en : ``In(1, init=1)``, only with ``stages = 2``
        Load the pipeline register.

    Raises
    ------
    TypeError
        If ``fmt`` is not FP16, BF16 or FP32, or ``stages`` is not 1 or 2.
    """

    def __init__(self, fmt: str | FloatFormat = "fp16", *, stages: int = 1):
        self._fmt = float_format(fmt)
        self._stages = stages
        w = self._fmt.width
        super().__init__(self._members(stages, {"a": In(w), "b": In(w), "o": Out(32)}))

    @classmethod
    def check(cls, fmt: object = "fp16", *, stages: object = 1) -> None:
        try:
            ok = float_format(fmt) in (FP16, BF16, FP32)
        except TypeError:
            ok = False
        if not ok:
            raise TypeError(f"FpMul format must be 'fp16', 'bf16' or 'fp32', not {fmt!r}")
        super().check(stages=stages)

    @property
    def fmt(self) -> FloatFormat:
        return self._fmt

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        a, b = _Fields(fmt, self.a), _Fields(fmt, self.b)
        sw = fmt.frac_bits + 1          # significand bits of an operand
        pw = 2 * sw                     # of the product

        # FP32 biased exponent of the product when its leading one is at bit pw - 1: the
        # operands' unbiased exponents, plus one for a product in [2, 4).
        exp_offset = FP32.bias - 2 * fmt.bias + 1
        exp_sum = Signal(signed(12))
        m.d.comb += exp_sum.eq(a.exp + b.exp + exp_offset)
        prod = Signal(pw)
        m.d.comb += prod.eq(a.sig * b.sig)

        # Which FP32 exponents the product of two finite nonzero operands can have: only
        # outside 1..254 is there an overflow or an underflow to handle.
        tiny = 2 * (1 - fmt.bias - fmt.frac_bits) + FP32.bias
        huge = 2 * fmt.bias + 1 + FP32.bias

        nan = a.nan | b.nan | (a.inf & b.zero) | (a.zero & b.inf)
        values = {"prod": prod, "exp_sum": exp_sum, "sign": a.sign ^ b.sign, "nan": nan,
                  "inf": a.inf | b.inf, "zero": a.zero | b.zero}
        if tiny < 1:
            # Beside the multiplier: whether the product can be normal, and a marker bit at
            # pw - exp_sum that will stop the leading-zero count there (see below).
            above = exp_sum >= 1
            values["above"] = above
            values["marker"] = Mux(above, Const(1 << (pw - 1), pw) >> (exp_sum - 1)[:9], 0)
        r = _register(m, getattr(self, "en", None), values, self._stages)

        magnitude = Signal(31)
        exp = Signal(signed(12))        # of the result, if normal
        if tiny >= 1:
            # Always a normal FP32 number (FP16): normalize, done.
            lz = _leading_zeros(r["prod"])
            norm = Signal(pw)           # leading one at bit pw - 1 (unless the product is 0)
            m.d.comb += [norm.eq(r["prod"] << lz), exp.eq(r["exp_sum"] - lz),
                         magnitude.eq(Cat(Const(0, 23 - (pw - 1)), norm[:pw - 1], exp[:8]))]
        else:
            # One right shift of the product placed at bits 23 + pw - 1 .. 23 does both: by
            # pw - 1 - lz it normalizes (leading one at bit 23); by pw - exp_sum, which is more
            # when the normalized exponent would be below 1, it leaves the subnormal
            # significand (value / 2^-149), with guard and sticky bits for the rounding. A
            # marker bit at pw - exp_sum stops the leading-zero count there, which picks the
            # smaller of the two shifts with no compare after the count.
            lz = _leading_zeros(r["prod"] | r["marker"])
            amount = Signal(8)          # pw - exp_sum <= pw + 139 (BF16), 48 + 124 (FP32)
            m.d.comb += [amount.eq(Mux(r["above"], (pw - 1) - lz, pw - r["exp_sum"])),
                         exp.eq(r["exp_sum"] - lz)]
            q, guard, sticky = _shift_right_sticky(Cat(Const(0, 23), r["prod"]), amount)
            # A carry of the rounding into bit 23 is exponent 1, the smallest normal number.
            up = guard & (sticky | q[0])
            m.d.comb += magnitude.eq(Cat(q[:23], Mux(q[23], exp[:8], 0)) + up)
        overflow = exp >= FP32.exp_max if huge >= FP32.exp_max else Const(0)

        magnitude = Mux(r["inf"] | overflow, FP32.inf, Mux(r["zero"], 0, magnitude))
        m.d.comb += self.o.eq(Mux(r["nan"], FP32.nan, Cat(magnitude, r["sign"])))
        return m


class FpAdd(_FpUnit):
    """The sum of two FP32 numbers, rounded to nearest even: bit exact with numpy's float32
    addition.

    Datapath (one path for every case, no near/far split): order the operands by exponent
    (both differences are formed at once, the borrow of one picks it), shift the smaller
    one's significand right by the difference into 3 extra bits (guard, round, sticky: every
    bit shifted further is ORed into the sticky bit, which keeps the rounding exact), add or
    subtract (for equal exponents ``y - x`` is formed beside ``x - y`` and taken when that is
    negative), normalize (left by the leading-zero count, limited so that the exponent stays
    at least 1, which leaves a subnormal result; a carry is a shift of one to the right), round
    to nearest even by one increment of the packed exponent-and-fraction word (a carry moves
    the exponent), and pick the specials.

    Specials: a NaN operand or ``inf - inf`` gives the canonical NaN ``0x7FC00000``; infinity
    plus a finite number is that infinity; an overflow is infinity. An exact zero sum is +0,
    except ``-0 + -0 = -0`` (IEEE, round to nearest: ``x + (-x) = +0``, ``-0 + +0 = +0``).
    Subnormal operands and results are exact (a sum that is subnormal never rounds).

    **Timing.** ``stages = 1``: combinational, ``o`` follows ``a`` and ``b`` in the same cycle
    (on ECP5 about 31 ns register to register, ~32 MHz: too slow for one tile pipeline stage
    at the tile's 47-60 MHz). ``stages = 2``: a register after the add (a 28-bit raw sum, the
    larger exponent, the signs and the special flags: 41 bits) splits it into exponent
    difference, alignment and add | leading-zero count, normalization, rounding and specials
    (~57 MHz); ``o`` is valid one cycle after ``a`` and ``b``, and the register loads only
    while ``en`` is high. The second half depends on the first only through the register, so
    the result of one addition cannot be forwarded into the next one's first half in the same
    cycle without the whole depth again: back-to-back accumulation into one accumulator needs
    a bubble or interleaved accumulators (``docs/float.md``).

    Parameters
    ----------
    stages : int
        1 (combinational) or 2 (one register, after the add).

    Members
    -------
    a, b : ``In(32)``
        The addends, raw FP32 bits.
    o : ``Out(32)``
        The sum, raw FP32 bits.
    en : ``In(1, init=1)``, only with ``stages = 2``
        Load the pipeline register.

    Raises
    ------
    TypeError
        If ``stages`` is not 1 or 2.
    """

    def __init__(self, *, stages: int = 1):
        self._stages = stages
        super().__init__(self._members(stages, {"a": In(32), "b": In(32), "o": Out(32)}))

    @classmethod
    def check(cls, *, stages: object = 1) -> None:
        super().check(stages=stages)

    def elaborate(self, platform):
        m = Module()
        a, b = _Fields(FP32, self.a), _Fields(FP32, self.b)

        # Order by exponent (x: the larger), both differences at once: the borrow of one picks
        # it. Equal exponents are not ordered; the add sorts them out (below).
        d_ab, d_ba = Signal(9), Signal(9)
        m.d.comb += [d_ab.eq(a.exp - b.exp), d_ba.eq(b.exp - a.exp)]
        swap = d_ab[8]
        diff = Mux(swap, d_ba[:8], d_ab[:8])
        exp_x, sign_x = Mux(swap, b.exp, a.exp), Mux(swap, b.sign, a.sign)
        sig_x, sig_y = Mux(swap, b.sig, a.sig), Mux(swap, a.sig, b.sig)

        # Three bits below the significand: guard, round, sticky (every bit shifted past the
        # round bit is ORed into the sticky bit, which keeps the rounding exact).
        y_al, g, s = _shift_right_sticky(Cat(Const(0, 3), sig_y), diff, mask_sticky=True)
        y_al = Cat(y_al[0] | g | s, y_al[1:])
        subtract = a.sign ^ b.sign
        # x - y as x + ~y + 1 on 28 bits: one carry chain.
        forward = Signal(28)
        m.d.comb += forward.eq(Cat(Const(0, 3), sig_x, Const(0, 1))
                               + (Cat(y_al, Const(0, 1)) ^ subtract.replicate(28)) + subtract)
        # x - y < 0 (bit 27 set) only for equal exponents and |y| > |x|: then y - x, formed
        # beside it with no shift, is the sum and y's sign the result's.
        backward = Signal(24)
        m.d.comb += backward.eq(sig_y - sig_x)
        negative = subtract & forward[27]
        total = Signal(28)
        m.d.comb += total.eq(Mux(negative, Cat(Const(0, 3), backward, Const(0, 1)), forward))

        nan = a.nan | b.nan | (a.inf & b.inf & subtract)
        r = _register(m, getattr(self, "en", None), {
            "total": total, "exp_x": exp_x, "sign": sign_x ^ negative,
            "zero_sign": a.sign & b.sign, "nan": nan, "inf": a.inf | b.inf,
            "inf_sign": Mux(a.inf, a.sign, b.sign)}, self._stages)

        total, exp_x = r["total"], r["exp_x"]
        # Normalize: shift left until the leading one is at bit 27 (a carry out of the add
        # is already there), but by at most exp_x, which leaves exponent 1 (a subnormal
        # result); keep bits 27..1: a shift of 0 is the carry's one bit right, 1 leaves the
        # sum as it is. The limit is a marker bit at 27 - exp_x that stops the count.
        shift = Signal(5)
        m.d.comb += shift.eq(_leading_zeros(total | (Const(1 << 27, 28) >> exp_x)))
        norm = Signal(27)
        m.d.comb += norm.eq((total << shift)[1:28])
        exp = Signal(8)                 # at most 254 + 1
        m.d.comb += exp.eq(exp_x + 1 - shift)

        # Round to nearest even by one increment of the packed exponent and fraction: a
        # subnormal (no hidden bit) packs as exponent 0, and a carry out of the fraction moves
        # the exponent up (a subnormal to the smallest normal). Bit 0 of the sum leaves the
        # window only on a carry; with a shift of 3 or more (exponents 0 or 1 apart) it is 0,
        # so it may always join the sticky bit.
        sig, guard, sticky = norm[3:27], norm[2], norm[1] | norm[0] | total[0]
        up = guard & (sticky | sig[0])
        packed = Signal(31)
        m.d.comb += packed.eq(Cat(sig[:23], Mux(sig[23], exp, 0)) + up)
        # Overflow, known beside the increment: a carry into exponent 255, or a round up of
        # the largest significand at exponent 254.
        overflow = (exp == FP32.exp_max) | ((exp == FP32.exp_max - 1) & sig.all() & up)

        # An exact zero sum takes the sign of the zero rule.
        sign = Mux(r["inf"], r["inf_sign"], Mux(total == 0, r["zero_sign"], r["sign"]))
        magnitude = Mux(r["inf"] | overflow, FP32.inf, packed)
        m.d.comb += self.o.eq(Mux(r["nan"], FP32.nan, Cat(magnitude, sign)))
        return m


class FpToHalf(CheckedComponent):
    """An FP32 word rounded to FP16 or BF16, to nearest even: bit exact with numpy's
    ``astype(np.float16)`` (FP16) and with RNE on the top 16 bits of the FP32 word (BF16, the
    rule of ``ml_dtypes.bfloat16``).

    Values above the format's range become infinity, values below its normal range subnormals
    or a signed zero (rounded, ties to even); infinities and zeros keep their sign; every NaN
    becomes the format's canonical NaN (``0x7E00`` FP16, ``0x7FC0`` BF16). One shifter
    serves both cases: right by the fraction bits dropped, plus the distance below the normal
    range for a subnormal result.

    **Timing.** Combinational: ``o`` follows ``i`` in the same cycle (a 10-bit exponent
    subtract, a 24-bit right shift with sticky, a 16-bit rounding increment, the specials).

    Parameters
    ----------
    fmt : str or FloatFormat
        ``"fp16"`` or ``"bf16"``.

    Members
    -------
    i : ``In(32)``
        FP32 raw bits.
    o : ``Out(16)``
        ``i`` rounded to ``fmt``, raw bits.

    Raises
    ------
    TypeError
        If ``fmt`` is not FP16 or BF16.
    """

    def __init__(self, fmt: str | FloatFormat = "fp16"):
        self._fmt = float_format(fmt)
        super().__init__({"i": In(32), "o": Out(16)})

    @classmethod
    def check(cls, fmt: object = "fp16") -> None:
        try:
            ok = float_format(fmt) in (FP16, BF16)
        except TypeError:
            ok = False
        if not ok:
            raise TypeError(f"FpToHalf format must be 'fp16' or 'bf16', not {fmt!r}")

    @property
    def fmt(self) -> FloatFormat:
        return self._fmt

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        x = _Fields(FP32, self.i)
        f = fmt.frac_bits
        dropped = FP32.frac_bits - f
        offset = FP32.bias - fmt.bias   # exponent in the target = FP32 exponent - offset

        # Below the target's normal range the result is subnormal: the significand shifts
        # right by the distance too (and packs with exponent 0, having no hidden bit).
        amount = Signal(8)
        m.d.comb += amount.eq(dropped)
        if offset > 0:
            with m.If(x.exp < offset + 1):
                m.d.comb += amount.eq(offset + 1 + dropped - x.exp)
        q, guard, sticky = _shift_right_sticky(x.sig, amount, mask_sticky=True)

        # Round to nearest even by one increment of the packed word: a carry out of the
        # fraction moves the exponent up (to the smallest normal, or to infinity).
        packed = Signal(16)
        m.d.comb += packed.eq(Cat(q[:f], Mux(q[f], (x.exp - offset)[:fmt.exp_bits], 0))
                              + (guard & (sticky | q[0])))
        # At and above the target's top exponent: infinity (NaNs are picked out first).
        big = x.exp >= offset + fmt.exp_max
        magnitude = Mux(big, fmt.inf, packed[:15])
        m.d.comb += self.o.eq(Mux(x.nan, fmt.nan, Cat(magnitude, x.sign)))
        return m
