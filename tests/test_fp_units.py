"""The floating-point units (``wafertile.hdl.core.fp``) in Amaranth's Python simulator against
the numpy reference (``wafertile.sim.models.fp``), bit for bit; and the reference itself
against float64 arithmetic, an independent rounding model and ``ml_dtypes``.

Every comparison is of raw bits. The units and the reference make every NaN canonical, so a
NaN result equals a NaN result whatever payload numpy gave it.

Default run: about 100 000 random and mixed-magnitude cases per unit (FpAdd 100k; FpMul every
16-bit pattern once per format, 131k, and 6 000 FP32 products; FpToHalf every value and every
rounding midpoint of both formats, ~370k) plus directed corners; ``--run-slow`` adds a million
per unit (200 000 FP32 products).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, Fragment, Module, Signal
from amaranth.sim import Simulator

from wafertile.hdl.core.fp import (
    BF16,
    FORMATS,
    FP16,
    FP32,
    FloatFormat,
    FpAdd,
    FpMul,
    FpToHalf,
    float_format,
    fp_relu,
)
from wafertile.sim.models import fp as ref
from wafertile.synth.yosys import estimate, run_yosys

from .conftest import seed_for

HALF = {"fp16": FP16, "bf16": BF16}
U32 = np.uint32


# -- simulation ---------------------------------------------------------------------------------

def simulate(dut, ports, columns, out=None) -> np.ndarray:
    """Drive the combinational ``dut``: for each k, ``ports`` take ``columns[.][k]`` (one
    assignment to their concatenation), then ``out`` (default ``dut.o``) is read. Returns
    the outputs."""
    word = np.zeros(len(columns[0]), dtype=np.uint64)
    shift = 0
    for port, column in zip(ports, columns, strict=True):
        word |= np.asarray(column).astype(np.uint64) << np.uint64(shift)
        shift += len(port)
    words = word.tolist()
    both = Cat(*ports)
    out = dut.o if out is None else out
    got = []

    async def bench(ctx):
        for w in words:
            ctx.set(both, w)
            got.append(ctx.get(out))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.uint64)


def simulate_pipelined(dut, a, b, rng) -> tuple[np.ndarray, np.ndarray]:
    """Drive a ``stages = 2`` unit one operand pair per cycle with ``en`` low 30% of the
    cycles (the inputs then are garbage). After each cycle ``o`` must show the result of the
    last pair loaded: returns (index of that pair, ``o``) for every cycle after the first load.
    """
    n = len(a)
    wa, wb = len(dut.a), len(dut.b)
    load = rng.random(4 * n) >= 0.3
    junk_a = rng.integers(0, 1 << wa, 4 * n, dtype=np.uint64).tolist()
    junk_b = rng.integers(0, 1 << wb, 4 * n, dtype=np.uint64).tolist()
    a, b = np.asarray(a).tolist(), np.asarray(b).tolist()
    index, out = [], []

    async def bench(ctx):
        k, last, cycle = 0, -1, 0
        while k < n:
            en = bool(load[cycle])
            ctx.set(dut.a, a[k] if en else junk_a[cycle])
            ctx.set(dut.b, b[k] if en else junk_b[cycle])
            ctx.set(dut.en, en)
            await ctx.tick()
            if en:
                last, k = k, k + 1
            if last >= 0:
                index.append(last)
                out.append(ctx.get(dut.o))
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(index), np.array(out, dtype=np.uint64)


def assert_same(got, expected, *operands, fmt: FloatFormat = FP32, limit: int = 8):
    """``got`` equals ``expected`` (raw bits); on failure name the first cases in hex."""
    got = np.asarray(got).astype(np.uint64)
    expected = np.asarray(expected).astype(np.uint64)
    bad = np.nonzero(got != expected)[0]
    if len(bad):
        digits = fmt.width // 4
        lines = [" ".join(f"{int(op[i]):#x}" for op in operands)
                 + f" -> {int(got[i]):#0{digits + 2}x}, expected {int(expected[i]):#0{digits + 2}x}"
                 for i in bad[:limit]]
        pytest.fail(f"{len(bad)} of {len(got)} differ:\n" + "\n".join(lines))


# -- operands -----------------------------------------------------------------------------------

#: FP32 corner values: zeros, subnormals, the normal boundary, around 1, the top of the range,
#: infinities, NaNs (quiet, signalling, negative, with payloads).
SPECIAL32 = [
    0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x00000002, 0x00000003, 0x007FFFFF,
    0x807FFFFF, 0x00400000, 0x00800000, 0x80800000, 0x00800001, 0x00FFFFFF, 0x01000000,
    0x3F800000, 0xBF800000, 0x3F800001, 0xBF800001, 0x3F7FFFFF, 0x3FFFFFFF, 0x40000000,
    0x33800000, 0x33000000, 0x33C00000, 0x34000000, 0x4B800000, 0x4B7FFFFF, 0x4C000001,
    0x7F000000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFFE, 0x73800000, 0x73000000, 0x0C000000,
    0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF,
    0x7FD23456,
]


def special16(fmt: FloatFormat) -> list[int]:
    """16-bit corner values of ``fmt``: zeros, smallest and largest subnormal, smallest normal,
    1 and its neighbours, 1.5, 2, 0.5, the largest finite value, infinities and NaNs."""
    f, bias = fmt.frac_bits, fmt.bias
    one = bias << f
    top = (fmt.exp_max - 1) << f | ((1 << f) - 1)
    values = [0, 1, 2, 3, (1 << f) - 1, 1 << f, (1 << f) + 1, one, one + 1, one - 1,
              one | 1 << (f - 1), one + (1 << f), one - (1 << f), top, top - 1,
              fmt.inf, fmt.nan, fmt.inf | 1, fmt.nan | 5, (fmt.exp_max - 1) << f]
    return values + [v | fmt.sign_bit for v in values]


def fp32_pairs(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` FP32 operand pairs of mixed magnitudes: random bit patterns; exponents within 3
    of each other (carries, cancellation); 20 to 30 apart (the rounding window of the
    alignment); ``b = -a`` give or take 4 ulps (total cancellation); both tiny (subnormal
    results); both near the top (overflow); the order of each pair at random."""
    a, b = (rng.integers(0, 1 << 32, n, dtype=np.uint64) for _ in range(2))
    kind = rng.integers(0, 6, n)
    exp_a = (a >> np.uint64(23)) & np.uint64(0xFF)
    body = b & np.uint64(0x807FFFFF)

    def with_exp(word, exp):
        exp = np.clip(exp, 0, 255).astype(np.uint64)
        return (word & np.uint64(0x807FFFFF)) | (exp << np.uint64(23))

    near = with_exp(body, exp_a.astype(np.int64) + rng.integers(-3, 4, n))
    window = with_exp(body, exp_a.astype(np.int64) - rng.integers(20, 31, n))
    negated = ((a ^ np.uint64(0x80000000)) + rng.integers(-4, 5, n).astype(np.uint64)) \
        & np.uint64(0xFFFFFFFF)
    tiny_a, tiny_b = with_exp(a, rng.integers(0, 3, n)), with_exp(body, rng.integers(0, 3, n))
    top_a, top_b = with_exp(a, rng.integers(250, 255, n)), with_exp(body, rng.integers(250, 255, n))
    a = np.select([kind == 4, kind == 5], [tiny_a, top_a], a)
    b = np.select([kind == 1, kind == 2, kind == 3, kind == 4, kind == 5],
                  [near, window, negated, tiny_b, top_b], b)
    swap = rng.random(n) < 0.5
    return np.where(swap, b, a).astype(U32), np.where(swap, a, b).astype(U32)


def half_partners(rng, a: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """A second operand for each of ``a``: random bit patterns, subnormals, values near 1, and
    for BF16 values whose product with ``a`` lands in the FP32 subnormal rounding window or at
    the overflow boundary."""
    n = len(a)
    f = fmt.frac_bits
    b = rng.integers(0, 1 << 16, n, dtype=np.uint64)
    body = b & np.uint64(fmt.sign_bit | ((1 << f) - 1))
    exp_a = (a.astype(np.int64) >> f) & fmt.exp_max
    kind = rng.integers(0, 5, n)
    targets = [rng.integers(0, 3, n), fmt.bias + rng.integers(-2, 3, n)]
    if fmt == BF16:
        # product exponent exp_a + exp_b - 127: -25..1 is FP32's subnormal range, 254..256
        # the top of its normal range
        targets += [FP32.bias + rng.integers(-25, 2, n) - exp_a,
                    FP32.bias + rng.integers(253, 257, n) - exp_a]
    for k, exp in enumerate(targets, start=1):
        exp = np.clip(exp, 0, fmt.exp_max - 1).astype(np.uint64)
        b = np.where(kind == k, body | (exp << np.uint64(f)), b)
    return b.astype(np.uint16)


# -- FpAdd --------------------------------------------------------------------------------------

def check_add(a, b, dut=None):
    dut = dut or FpAdd()
    got = simulate(dut, [dut.a, dut.b], [a, b])
    assert_same(got, ref.add(a, b), a, b)


def test_add_special_pairs():
    s = np.array(SPECIAL32, dtype=U32)
    a, b = np.repeat(s, len(s)), np.tile(s, len(s))
    check_add(a, b)


def test_add_exponent_differences():
    # 1.f + 2^-k * 1.g for k = 0..40 with both signs: every alignment distance, the ties
    # (k = 24 with g = 0 is exactly half an ulp), the sticky bit and far shifts (k > 26).
    rng = np.random.default_rng(1)
    k = np.repeat(np.arange(41), 48)
    frac_a = rng.integers(0, 1 << 23, len(k)) & np.where(np.arange(len(k)) % 3 == 0, 0, -1)
    frac_b = rng.integers(0, 1 << 23, len(k)) & np.where(np.arange(len(k)) % 4 == 0, 0, -1)
    exp_a = rng.integers(27, 228, len(k))
    a = (exp_a << 23 | frac_a).astype(U32)
    sign = rng.integers(0, 2, len(k)) << 31
    b = (np.clip(exp_a - k, 0, None) << 23 | frac_b | sign).astype(U32)
    check_add(np.concatenate([a, b]), np.concatenate([b, a]))


def test_add_rules():
    """The IEEE rules themselves, written out (not taken from numpy)."""
    cases = {  # a, b: expected sum
        (0x00000000, 0x00000000): 0x00000000,   # +0 + +0 = +0
        (0x80000000, 0x80000000): 0x80000000,   # -0 + -0 = -0
        (0x80000000, 0x00000000): 0x00000000,   # -0 + +0 = +0
        (0x3F800000, 0xBF800000): 0x00000000,   # x + (-x) = +0
        (0x00000001, 0x80000001): 0x00000000,   # the same for subnormals
        (0xC0490FDB, 0x40490FDB): 0x00000000,
        (0x80000000, 0x3F800000): 0x3F800000,   # -0 + x = x
        (0x00000001, 0x00000001): 0x00000002,   # subnormals add exactly
        (0x007FFFFF, 0x00000001): 0x00800000,   # into the normal range
        (0x00800000, 0x80000001): 0x007FFFFF,   # out of it
        (0x3F800000, 0x33800000): 0x3F800000,   # 1 + half an ulp: tie to even, down
        (0x3F800001, 0x33800000): 0x3F800002,   # (1 + ulp) + half an ulp: tie to even, up
        (0x3F800000, 0x33800001): 0x3F800001,   # above the tie
        (0x3F800000, 0xB3800000): 0x3F7FFFFF,   # 1 - 2^-24: below 1 (ulp 2^-24), exact
        (0x3F800000, 0xB3000000): 0x3F800000,   # 1 - 2^-25: tie, to even (1)
        (0x3F800000, 0xB3400000): 0x3F7FFFFF,   # 1 - 3 * 2^-26: above the tie, down
        (0x3F800000, 0xB2800000): 0x3F800000,   # 1 - 2^-26: below the tie, 1
        (0x7F7FFFFF, 0x7F7FFFFF): 0x7F800000,   # overflow
        (0x7F7FFFFF, 0x73000000): 0x7F800000,   # max + half an ulp: tie to even is infinity
        (0x7F7FFFFF, 0x72FFFFFF): 0x7F7FFFFF,   # just below the tie
        (0xFF7FFFFF, 0xFF7FFFFF): 0xFF800000,
        (0x7F800000, 0xFF7FFFFF): 0x7F800000,   # inf + finite
        (0x7F800000, 0xFF800000): FP32.nan,     # inf - inf
        (0xFF800000, 0xFF800000): 0xFF800000,
        (0x7FC00000, 0x3F800000): FP32.nan,     # NaN in, canonical NaN out
        (0xFFFFFFFF, 0x7F800000): FP32.nan,
        (0x3F800000, 0x7F800001): FP32.nan,
    }
    a = np.array([k[0] for k in cases], dtype=U32)
    b = np.array([k[1] for k in cases], dtype=U32)
    expected = np.array(list(cases.values()), dtype=U32)
    assert_same(ref.add(a, b), expected, a, b)   # the reference agrees with the rules
    dut = FpAdd()
    assert_same(simulate(dut, [dut.a, dut.b], [a, b]), expected, a, b)
    assert_same(simulate(dut, [dut.a, dut.b], [b, a]), expected, b, a)


@pytest.mark.parametrize("n", [20_000, *(pytest.param(n, marks=pytest.mark.slow)
                                          for n in (100_000, 1_000_000))])
def test_add_random(request, n):
    rng = np.random.default_rng(seed_for(request))
    a, b = fp32_pairs(rng, n)
    check_add(a, b)


def test_add_pipelined(request):
    rng = np.random.default_rng(seed_for(request))
    a, b = fp32_pairs(rng, 4000)
    dut = FpAdd(stages=2)
    index, got = simulate_pipelined(dut, a, b, rng)
    assert_same(got, ref.add(a, b)[index], a[index], b[index])


# -- FpMul --------------------------------------------------------------------------------------

def check_mul(fmt, a, b, dut=None):
    dut = dut or FpMul(fmt)
    got = simulate(dut, [dut.a, dut.b], [a, b])
    assert_same(got, ref.mul(a, b, fmt), a, b)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_mul_special_pairs(fmt):
    s = np.array(special16(HALF[fmt]), dtype=np.uint16)
    check_mul(fmt, np.repeat(s, len(s)), np.tile(s, len(s)))


def test_mul_bf16_underflow_and_overflow():
    # Significands 1, 1 + 2^-7, 1.5 and the largest, at exponent sums that put the product
    # from 2^-152 (below half the smallest subnormal) through the subnormals (ties at each
    # rounding position) into the normal range, and across 2^128.
    sigs = [0x00, 0x01, 0x40, 0x7F]
    pairs = []
    for ea in (1, 30, 60, 127 - 64):
        for total in list(range(-27, 4)) + list(range(252, 258)):
            eb = total + 127 - ea
            if 0 <= eb <= 254:
                pairs += [(ea << 7 | sa, eb << 7 | sb) for sa in sigs for sb in sigs]
    pairs += [(0x0001, 0x3F80), (0x0001, 0x3F00), (0x0001, 0x3EFF), (0x0003, 0x3F00),
              (0x007F, 0x3F00), (0x007F, 0x3F01), (0x0040, 0x4000), (0x0001, 0x0001),
              (0x7F7F, 0x3F81), (0x7F7F, 0x3F80), (0x7F00, 0x4000)]
    a = np.array([p[0] for p in pairs], dtype=np.uint16)
    b = np.array([p[1] for p in pairs], dtype=np.uint16)
    a = np.concatenate([a, a | 0x8000, b])
    b = np.concatenate([b, b, a[:len(b)]])
    check_mul("bf16", a, b)


def test_mul_rules():
    cases = {  # (fmt, a, b): expected product
        ("fp16", 0x3C00, 0x3C00): 0x3F800000,   # 1 * 1
        ("fp16", 0x8000, 0x4200): 0x80000000,   # -0 * 3 = -0
        ("fp16", 0x8000, 0x8000): 0x00000000,   # -0 * -0 = +0
        ("fp16", 0x7C00, 0x0000): FP32.nan,     # inf * 0
        ("fp16", 0xFC00, 0x3C00): 0xFF800000,   # -inf * 1
        ("fp16", 0xFC00, 0x8001): 0x7F800000,   # -inf * -subnormal
        ("fp16", 0x7E00, 0x3C00): FP32.nan,
        ("fp16", 0x0001, 0x0001): 0x27800000,   # 2^-24 * 2^-24 = 2^-48, a normal FP32
        ("fp16", 0x7BFF, 0x7BFF): 0x4F7FC004,   # 65504^2 = 2^32 - 2^22 + 2^10, exact
        ("fp16", 0x03FF, 0x3C00): 0x387FC000,   # largest subnormal, normalized
        ("bf16", 0x0001, 0x3F80): 0x00010000,   # a BF16 subnormal is an FP32 subnormal
        ("bf16", 0x7F7F, 0x4000): 0x7F800000,   # overflow
        ("bf16", 0x0001, 0x3F00): 0x00008000,   # halving a subnormal is exact
        ("bf16", 0x0001, 0x3400): 0x00000000,   # 2^-133 * 2^-23 = 2^-156: zero
        ("bf16", 0x8001, 0x3400): 0x80000000,   # -0 from underflow
        ("bf16", 0x0001, 0x3700): 0x00000000,   # 2^-133 * 2^-17 = 2^-150: tie, to even (0)
        ("bf16", 0x0001, 0x3701): 0x00000001,   # above the tie
        ("bf16", 0x0003, 0x3700): 0x00000002,   # 1.5 * 2^-149: tie, to even (2)
        ("bf16", 0x0005, 0x3700): 0x00000002,   # 2.5 * 2^-149: tie, to even (2)
        ("bf16", 0x3F80, 0x0080): 0x00800000,   # the smallest normal, exact
    }
    for fmt in ("fp16", "bf16"):
        keys = [k for k in cases if k[0] == fmt]
        a = np.array([k[1] for k in keys], dtype=np.uint16)
        b = np.array([k[2] for k in keys], dtype=np.uint16)
        expected = np.array([cases[k] for k in keys], dtype=U32)
        assert_same(ref.mul(a, b, fmt), expected, a, b)
        dut = FpMul(fmt)
        assert_same(simulate(dut, [dut.a, dut.b], [a, b]), expected, a, b)
        assert_same(simulate(dut, [dut.a, dut.b], [b, a]), expected, b, a)


# both with --run-slow (about 31 s for fp16); the default run multiplies every class of
# operand (test_mul_special_pairs, test_mul_bf16_underflow_and_overflow) and random pairs
# (test_mul_pipelined)
@pytest.mark.parametrize("fmt", [pytest.param("fp16", marks=pytest.mark.slow),
                                 pytest.param("bf16", marks=pytest.mark.slow)])
def test_mul_every_operand(request, fmt):
    """Every 16-bit pattern as ``a`` once (every NaN payload, subnormal and sign), each with a
    partner of :func:`half_partners`: 65 536 products per format."""
    rng = np.random.default_rng(seed_for(request))
    a = rng.permutation(1 << 16).astype(np.uint16)
    check_mul(fmt, a, half_partners(rng, a, HALF[fmt]))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_mul_random_long(request, fmt):
    rng = np.random.default_rng(seed_for(request))
    a = rng.integers(0, 1 << 16, 1_000_000).astype(np.uint16)
    check_mul(fmt, a, half_partners(rng, a, HALF[fmt]))


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_mul_pipelined(request, fmt):
    rng = np.random.default_rng(seed_for(request))
    a = rng.integers(0, 1 << 16, 4000).astype(np.uint16)
    b = half_partners(rng, a, HALF[fmt])
    dut = FpMul(fmt, stages=2)
    index, got = simulate_pipelined(dut, a, b, rng)
    assert_same(got, ref.mul(a, b, fmt)[index], a[index], b[index])


# -- FpMul on FP32 operands (the multiplier of the nonlinear functions, docs/nonlinear.md) -----

def fp32_mul_partners(rng, a: np.ndarray) -> np.ndarray:
    """A second FP32 operand for each of ``a``: random bit patterns; subnormals; values near 1;
    values whose product with ``a`` lands in FP32's subnormal rounding window (biased product
    exponent -24 .. 1) or at the overflow boundary (253 .. 256); and significands of three
    random top bits (products with few bits below the rounding point: ties)."""
    n = len(a)
    b = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    body = b & np.uint64(0x807FFFFF)
    exp_a = np.maximum((a.astype(np.int64) >> 23) & 0xFF, 1)
    kind = rng.integers(0, 6, n)
    targets = {1: np.zeros(n, np.int64), 2: 127 + rng.integers(-2, 3, n),
               3: rng.integers(-24, 2, n) + 127 - exp_a,
               4: rng.integers(253, 257, n) + 127 - exp_a,
               5: rng.integers(1, 255, n)}
    short = b & np.uint64(0x80700000)
    for k, exp in targets.items():
        exp = np.clip(exp, 0, 254).astype(np.uint64)
        b = np.where(kind == k, (short if k == 5 else body) | (exp << np.uint64(23)), b)
    return b.astype(U32)


def test_mul_fp32_special_pairs():
    s = np.array(SPECIAL32, dtype=U32)
    check_mul("fp32", np.repeat(s, len(s)), np.tile(s, len(s)))


def test_mul_fp32_rules():
    cases = {  # (a, b): expected product
        (0x3F800000, 0x3F800000): 0x3F800000,   # 1 * 1
        (0x3F800001, 0x3FC00000): 0x3FC00002,   # 1.5 + 1.5 * 2^-23: tie, to even (up)
        (0x3F800003, 0x3FC00000): 0x3FC00004,   # 1.5 + 4.5 * 2^-23: tie, to even (down)
        (0x3F7FFFFF, 0x3F800001): 0x3F800000,   # 1 + 2^-24 - 2^-47: below the tie
        (0x3F7FFFFE, 0x3F800001): 0x3F800000,   # 1 - 2^-46 rounds up into the next binade
        (0x7F7FFFFF, 0x3F800000): 0x7F7FFFFF,   # the largest finite, unchanged
        (0x7F7FFFFE, 0x3F800001): 0x7F800000,   # (2 - 2^-45) 2^127 rounds up to infinity
        (0x7F7FFFFF, 0x40000000): 0x7F800000,   # overflow
        (0x00000001, 0x3F800000): 0x00000001,   # the smallest subnormal, unchanged
        (0x00000001, 0x3F000000): 0x00000000,   # 2^-150: tie, to even (0)
        (0x00000001, 0x3F000001): 0x00000001,   # above the tie
        (0x00000003, 0x3F000000): 0x00000002,   # 1.5 * 2^-149: tie, to even (2)
        (0x80000001, 0x3F000000): 0x80000000,   # -0 from underflow
        (0x00800000, 0x3F000000): 0x00400000,   # 2^-126 / 2: a subnormal, exact
        (0x00000001, 0x4B000000): 0x00800000,   # 2^-149 * 2^23: the smallest normal
        (0x007FFFFF, 0x3F800001): 0x00800000,   # the largest subnormal rounds up to normal
        (0x007FFFFF, 0x007FFFFF): 0x00000000,   # subnormal squared: +0
        (0x807FFFFF, 0x007FFFFF): 0x80000000,
        (0x7F800000, 0x00000000): FP32.nan,     # inf * 0
        (0xFF800000, 0xC0000000): 0x7F800000,   # -inf * -2
        (0x80000000, 0x40A00000): 0x80000000,   # -0 * 5 = -0
        (0x7F800001, 0x3F800000): FP32.nan,     # signalling NaN: canonical
    }
    a = np.array([k[0] for k in cases], dtype=U32)
    b = np.array([k[1] for k in cases], dtype=U32)
    expected = np.array(list(cases.values()), dtype=U32)
    assert_same(ref.mul(a, b, "fp32"), expected, a, b)
    dut = FpMul("fp32")
    assert_same(simulate(dut, [dut.a, dut.b], [a, b]), expected, a, b)
    assert_same(simulate(dut, [dut.a, dut.b], [b, a]), expected, b, a)


# Amaranth's simulator takes about 2 ms a product: 6 000 by default, 200 000 with --run-slow
@pytest.mark.parametrize("n", [6_000, pytest.param(200_000, marks=pytest.mark.slow)])
def test_mul_fp32_random(request, n):
    rng = np.random.default_rng(seed_for(request))
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(U32)
    check_mul("fp32", a, fp32_mul_partners(rng, a))


def test_mul_fp32_pipelined(request):
    rng = np.random.default_rng(seed_for(request))
    a = rng.integers(0, 1 << 32, 2000, dtype=np.uint64).astype(U32)
    b = fp32_mul_partners(rng, a)
    dut = FpMul("fp32", stages=2)
    index, got = simulate_pipelined(dut, a, b, rng)
    assert_same(got, ref.mul(a, b, "fp32")[index], a[index], b[index])


# -- FpToHalf -----------------------------------------------------------------------------------

def check_to_half(fmt, x):
    dut = FpToHalf(fmt)
    got = simulate(dut, [dut.i], [x])
    assert_same(got, ref.to_half(x, fmt), x, fmt=HALF[fmt])


def midpoints(fmt: FloatFormat) -> np.ndarray:
    """The FP32 words exactly halfway between two neighbouring finite values of ``fmt`` (and
    between the largest and the next power of two: the overflow tie), each with a random sign,
    and the FP32 words one ulp on either side of each."""
    rng = np.random.default_rng(7)
    k = np.arange(fmt.inf, dtype=np.uint32)          # 0 .. largest finite, positive
    lo = fmt.values(k).astype(np.float64)
    hi = fmt.values(k + 1).astype(np.float64)
    hi[-1] = 2.0 ** (fmt.bias + 1)                    # the "next" value after the largest
    mid = ((lo + hi) / 2).astype(np.float32).view(U32)
    mid = mid | (rng.integers(0, 2, len(mid)).astype(U32) << U32(31))
    return np.concatenate([mid, mid + U32(1), np.where(mid & U32(0x7FFFFFFF), mid - U32(1),
                                                       mid)]).astype(U32)


# fp16 in the default run; bf16 (the same rounding, another exponent width) with --run-slow
@pytest.mark.parametrize("fmt", ["fp16", pytest.param("bf16", marks=pytest.mark.slow)])
def test_to_half_every_value_and_midpoint(fmt):
    """Every value of the format (converted to FP32: must come back unchanged, NaNs
    canonical), every rounding tie and its FP32 neighbours."""
    f = HALF[fmt]
    every = f.values(np.arange(1 << 16)).view(U32)   # NaN payloads as numpy widens them
    x = np.concatenate([every, midpoints(f)])
    check_to_half(fmt, x)
    back = ref.to_half(every, fmt)
    assert_same(back, ref.canonical(np.arange(1 << 16), f), every, fmt=f)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
@pytest.mark.parametrize("n", [50_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
def test_to_half_random(request, fmt, n):
    rng = np.random.default_rng(seed_for(request))
    x = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    # half of them with exponents around the format's range (subnormals, overflow)
    f = HALF[fmt]
    offset = FP32.bias - f.bias
    exp = np.clip(rng.integers(offset - 14, offset + f.exp_max + 2, n), 0, 255)
    near = (x & np.uint64(0x807FFFFF)) | (exp.astype(np.uint64) << np.uint64(23))
    check_to_half(fmt, np.where(rng.random(n) < 0.5, near, x).astype(U32))


def test_to_half_rules():
    cases = {  # (fmt, FP32 word): expected
        ("fp16", 0x477FE000): 0x7BFF,   # 65504, the largest
        ("fp16", 0x477FEFFF): 0x7BFF,   # just below the overflow tie
        ("fp16", 0x477FF000): 0x7C00,   # 65520: the tie rounds to even, infinity
        ("fp16", 0xC77FF000): 0xFC00,
        ("fp16", 0x33800000): 0x0001,   # 2^-24, the smallest subnormal
        ("fp16", 0x33000000): 0x0000,   # 2^-25: tie, to even (0)
        ("fp16", 0x33000001): 0x0001,   # above the tie
        ("fp16", 0xB3000000): 0x8000,   # -2^-25 gives -0
        ("fp16", 0x33C00000): 0x0002,   # 1.5 * 2^-24: tie, to even (2)
        ("fp16", 0x387FC000): 0x03FF,   # the largest subnormal
        ("fp16", 0x387FE000): 0x0400,   # its tie with the smallest normal rounds up
        ("fp16", 0x00000001): 0x0000,   # FP32 subnormals vanish
        ("fp16", 0x3F801000): 0x3C00,   # 1 + 2^-11: tie, to even (1)
        ("fp16", 0x3F803000): 0x3C02,   # 1 + 3 * 2^-11: tie, to even (1 + 2^-9)
        ("fp16", 0x7F800000): 0x7C00,
        ("fp16", 0xFFC00001): 0x7E00,   # NaN
        ("fp16", 0x7F800001): 0x7E00,   # signalling NaN: quiet, canonical
        ("bf16", 0x3F808000): 0x3F80,   # tie, to even
        ("bf16", 0x3F818000): 0x3F82,
        ("bf16", 0x3F808001): 0x3F81,
        ("bf16", 0x7F7F8000): 0x7F80,   # overflow tie: infinity
        ("bf16", 0x7F7F7FFF): 0x7F7F,
        ("bf16", 0x00008000): 0x0000,   # subnormal tie, to even
        ("bf16", 0x00018000): 0x0002,
        ("bf16", 0x007FFFFF): 0x0080,   # rounds up into the normal range
        ("bf16", 0x80000000): 0x8000,
        ("bf16", 0xFF800000): 0xFF80,
        ("bf16", 0x7F800001): 0x7FC0,   # a NaN whose top 16 bits would read infinity
        ("bf16", 0xFFFFFFFF): 0x7FC0,
    }
    for fmt in ("fp16", "bf16"):
        keys = [k for k in cases if k[0] == fmt]
        x = np.array([k[1] for k in keys], dtype=U32)
        expected = np.array([cases[k] for k in keys], dtype=np.uint16)
        assert_same(ref.to_half(x, fmt), expected, x, fmt=HALF[fmt])
        dut = FpToHalf(fmt)
        assert_same(simulate(dut, [dut.i], [x]), expected, x, fmt=HALF[fmt])


# -- fp_relu ------------------------------------------------------------------------------------

def test_relu(request):
    rng = np.random.default_rng(seed_for(request))
    x = np.concatenate([np.array(SPECIAL32, dtype=U32),
                        rng.integers(0, 1 << 32, 20_000, dtype=np.uint64).astype(U32)])
    m = Module()
    i, o = Signal(32), Signal(32)
    m.d.comb += o.eq(fp_relu(i))
    got = simulate(m, [i], [x], out=o)
    assert_same(got, ref.relu(x), x)
    rules = {0x80000000: 0, 0x00000000: 0, 0xBF800000: 0, 0x80000001: 0, 0xFF800000: 0,
             0x3F800000: 0x3F800000, 0x7F800000: 0x7F800000, 0xFFC00000: 0xFFC00000,
             0x7FC00001: 0x7FC00001}
    keys = np.array(list(rules), dtype=U32)
    assert_same(ref.relu(keys), np.array(list(rules.values()), dtype=U32), keys)


# -- the reference model ------------------------------------------------------------------------

def test_formats():
    assert [(f.name, f.width, f.bias, f.exp_max, f.inf, f.nan, f.sign_bit) for f in
            FORMATS.values()] == [
        ("fp16", 16, 15, 31, 0x7C00, 0x7E00, 0x8000),
        ("bf16", 16, 127, 255, 0x7F80, 0x7FC0, 0x8000),
        ("fp32", 32, 127, 255, 0x7F800000, 0x7FC00000, 0x80000000)]
    assert float_format("bf16") is BF16 and float_format(FP16) is FP16
    assert FP16.values(np.array([0x3C00, 0x0001, 0xFBFF])).tolist() == [1.0, 2.0 ** -24, -65504]
    assert BF16.values(np.array([0x3F80, 0x0001])).tolist() == [1.0, 2.0 ** -133]
    assert FP16.bits(np.array([1.0, 65520.0, np.nan, -0.0])).tolist() == [
        0x3C00, 0x7C00, 0x7E00, 0x8000]
    for f in (FP16, BF16):  # every pattern: values() then bits() is the identity (NaN aside)
        every = np.arange(1 << 16)
        assert_same(f.bits(f.values(every)), ref.canonical(every, f), every, fmt=f)


def _round_exact(v: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Round float64 values (no NaN) to ``fmt`` by an independent rule: the quantum at the
    value's binade (at least the subnormal quantum), np.round (half to even) on the exact
    quotient, infinity at or above 2^(emax + 1). Returns the rounded values as float64."""
    emin = 1 - fmt.bias
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.abs(v)))
    e = np.maximum(np.where(np.isfinite(e), e, emin), emin)
    q = 2.0 ** (e - fmt.frac_bits)
    r = np.round(v / q) * q
    return np.where(np.abs(r) >= 2.0 ** (fmt.bias + 1), np.copysign(np.inf, v), r)


def _as_bits(v64: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    return fmt.bits(v64.astype(np.float32))   # exact: v64 holds a value of fmt


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_reference_to_half_against_exact_rounding(request, fmt):
    f = HALF[fmt]
    rng = np.random.default_rng(seed_for(request))
    x = np.concatenate([rng.integers(0, 1 << 32, 1_000_000, dtype=np.uint64).astype(U32),
                        midpoints(f)])
    with np.errstate(invalid="ignore"):   # signalling NaNs
        v = FP32.values(x).astype(np.float64)
    keep = ~np.isnan(v)
    exact = _as_bits(_round_exact(v[keep], f), f)
    assert_same(ref.to_half(x[keep], fmt), exact, x[keep], fmt=f)


def test_reference_bf16_matches_ml_dtypes(request):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(seed_for(request))
    x = np.concatenate([rng.integers(0, 1 << 32, 1_000_000, dtype=np.uint64).astype(U32),
                        midpoints(BF16)])
    with np.errstate(all="ignore"):
        theirs = x.view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    assert_same(ref.to_half(x, "bf16"), ref.canonical(theirs, BF16), x, fmt=BF16)
    every = np.arange(1 << 16, dtype=np.uint16)
    assert_same(BF16.values(every).view(U32),
                every.view(ml_dtypes.bfloat16).astype(np.float32).view(U32), every)


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp32"])
def test_reference_mul_against_float64(request, fmt):
    """float32(a) * float32(b) in numpy is the exact product (a float64 holds it: 48 bits of
    significand at most, exponents far inside float64's range) rounded once to float32."""
    f = float_format(fmt)
    rng = np.random.default_rng(seed_for(request))
    if f == FP32:
        a = rng.integers(0, 1 << 32, 1_000_000, dtype=np.uint64).astype(U32)
        b = fp32_mul_partners(rng, a)
    else:
        a = rng.integers(0, 1 << 16, 1_000_000).astype(np.uint16)
        b = half_partners(rng, a, f)
    with np.errstate(all="ignore"):   # signalling NaNs, overflow
        exact = f.values(a).astype(np.float64) * f.values(b).astype(np.float64)
        expected = FP32.bits(exact.astype(np.float32))
    assert_same(ref.mul(a, b, fmt), expected, a, b)
    if fmt == "fp16":   # exact in FP32: no FP16 product rounds
        finite = np.isfinite(exact)
        assert np.array_equal(exact[finite].astype(np.float32).astype(np.float64), exact[finite])


def test_reference_add_against_float64(request):
    """float32 + float32 in numpy is the float64 sum rounded to float32: double rounding is
    harmless for addition since 53 >= 2 * 24 + 2 (and a subnormal float32 sum is exact)."""
    rng = np.random.default_rng(seed_for(request))
    a, b = fp32_pairs(rng, 1_000_000)
    with np.errstate(all="ignore"):
        exact = FP32.values(a).astype(np.float64) + FP32.values(b).astype(np.float64)
        expected = FP32.bits(exact.astype(np.float32))
    assert_same(ref.add(a, b), expected, a, b)


def test_reference_canonical_nan():
    nans = np.array([0x7F800001, 0xFFC00000, 0x7FFFFFFF, 0xFFFFFFFF], dtype=U32)
    assert ref.add(nans, np.zeros(4, U32)).tolist() == [FP32.nan] * 4
    assert ref.canonical(nans).tolist() == [FP32.nan] * 4
    assert ref.canonical(np.array([0x7C01, 0xFE00, 0x3C00]), "fp16").tolist() == [
        0x7E00, 0x7E00, 0x3C00]


def test_reference_mac_rules():
    one, two, inf, nan = 0x3C00, 0x4000, 0x7C00, 0x7E00   # FP16
    neg_zero = 0x80000000
    # a zero operand skips the MAC: no write, so a -0 accumulator stays -0 (IEEE would give
    # -0 + +0 = +0), and 0 * inf is not NaN
    assert ref.mac(neg_zero, 0x0000, one, "fp16") == neg_zero
    assert ref.mac(neg_zero, one, 0x8000, "fp16") == neg_zero
    assert ref.mac(0x3F800000, 0x0000, inf, "fp16") == 0x3F800000
    assert ref.mac(0x3F800000, nan, 0x8000, "fp16") == 0x3F800000
    # ADD does not skip: -0 + +0 = +0
    assert ref.add(neg_zero, 0) == 0
    # otherwise acc + w * a with one rounding each
    assert ref.mac(0x3F800000, two, two, "fp16") == 0x40A00000           # 1 + 4 = 5
    assert ref.mac(0x3F800000, inf, 0x3C00, "fp16") == 0x7F800000
    assert ref.mac(0x7F800000, 0xFC00, one, "fp16") == FP32.nan          # inf - inf
    assert ref.mac(neg_zero, 0x8001, 0x0001, "bf16") == neg_zero         # -0 + (-0 product)
    w = np.array([one, 0, two, 0x8000, 0xBC00], np.uint16)
    a = np.array([two, inf, two, nan, one], np.uint16)
    assert ref.accumulate(w, a, "fp16") == 0x40A00000                   # 2 + 4 - 1 = 5
    assert ref.accumulate([0], [one], "fp16", acc=neg_zero) == neg_zero


def test_reference_rejects_fp32_target():
    with pytest.raises(TypeError, match=r"^to_half format must be 'fp16' or 'bf16', not 'fp32'$"):
        ref.to_half(np.zeros(1, U32), "fp32")


# -- parameters ---------------------------------------------------------------------------------

def test_members_and_latency():
    mul, add, half = FpMul("bf16", stages=2), FpAdd(), FpToHalf("fp16")
    assert (mul.fmt, mul.stages, mul.latency) == (BF16, 2, 1)
    assert (add.stages, add.latency) == (1, 0)
    assert sorted(mul.signature.members) == ["a", "b", "en", "o"]
    assert sorted(add.signature.members) == ["a", "b", "o"]
    assert (half.fmt, len(half.i), len(half.o)) == (FP16, 32, 16)
    wide = FpMul("fp32")
    assert (len(wide.a), len(wide.b), len(wide.o), len(mul.a)) == (32, 32, 32, 16)
    for unit in (mul, add, half, wide):
        Fragment.get(unit, None)   # they elaborate (and are not left unused)


@pytest.mark.parametrize(("make", "exc", "message"), [
    (lambda: FpMul("e4m3"), TypeError,
     r"^FpMul format must be 'fp16', 'bf16' or 'fp32', not 'e4m3'$"),
    (lambda: FpMul(FloatFormat("e5m2", 5, 2)), TypeError,
     r"^FpMul format must be 'fp16', 'bf16' or 'fp32', not "
     r"FloatFormat\(name='e5m2', exp_bits=5, frac_bits=2\)$"),
    (lambda: FpMul("fp16", stages=3), TypeError, r"^FpMul stages must be 1 or 2, not 3$"),
    (lambda: FpMul("fp16", stages="2"), TypeError, r"^FpMul stages must be 1 or 2, not '2'$"),
    (lambda: FpAdd(stages=0), TypeError, r"^FpAdd stages must be 1 or 2, not 0$"),
    (lambda: FpAdd(stages=True), TypeError, r"^FpAdd stages must be 1 or 2, not True$"),
    (lambda: FpToHalf("fp32"), TypeError,
     r"^FpToHalf format must be 'fp16' or 'bf16', not 'fp32'$"),
    (lambda: FpToHalf(16), TypeError, r"^FpToHalf format must be 'fp16' or 'bf16', not 16$"),
    (lambda: float_format("half"), TypeError,
     r"^float format must be one of 'fp16', 'bf16', 'fp32', not 'half'$"),
    (lambda: fp_relu(Signal(16)), TypeError, r"^fp_relu word must be 32 bits \(FP32\), not 16$"),
])
def test_rejects_bad_parameters(make, exc, message):
    with pytest.raises(exc, match=message):
        make()


# -- synthesis ----------------------------------------------------------------------------------

@pytest.mark.synth
def test_synthesis_fp16_multiplier_is_one_dsp():
    """The significand product maps to one ECP5 DSP; the adder and converter use none (Yosys,
    the command of ``wafertile synth``). Sizes in docs/float.md."""
    counts = {}
    for name, unit in {"mul": FpMul("fp16"), "add": FpAdd(), "half": FpToHalf("fp16")}.items():
        # YoWASP tools see a private /tmp: work below the current directory
        work = Path(tempfile.mkdtemp(prefix="wafertile-fp-", dir=".")).resolve()
        try:
            (work / "unit.v").write_text(verilog.convert(unit, name="unit"))
            counts[name] = estimate(run_yosys(["unit.v"], "unit", "ecp5", work, netlist=None),
                                    "ecp5")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    assert counts["mul"]["dsps"] == 1, counts
    assert counts["add"]["dsps"] == counts["half"]["dsps"] == 0, counts
    # within 15% of docs/float.md: a regression in size shows here
    assert counts["mul"]["luts"] < 210 and counts["add"]["luts"] < 830, counts
    assert counts["half"]["luts"] < 170, counts
