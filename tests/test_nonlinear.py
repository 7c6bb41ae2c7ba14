"""The nonlinear functions' reference (``wafertile.sim.models.nonlinear``) against
``docs/nonlinear.md``: a second implementation written from the document alone, one scalar
operation at a time in Python floats (each rounded to FP32 through ``struct``: a sum or
product of two FP32 numbers computed in double and rounded once more to FP32 is correctly
rounded), equal bit for bit on seeded random inputs and the special values; the errors within
the document's table; and the corners the document states."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from wafertile.hdl.core import programs as progs
from wafertile.sim.models import nonlinear as nl

from .conftest import seed_for

# -- the document's pseudo-code, one rounding per line -----------------------------------------


def f32(v: float) -> float:
    """``v`` rounded to FP32 (nearest even, subnormals kept; overflow to infinity)."""
    if math.isnan(v) or math.isinf(v):
        return v
    try:
        return struct.unpack("<f", struct.pack("<f", v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


def word(v: float) -> int:
    return struct.unpack("<I", struct.pack("<f", v))[0]


def number(w: int) -> float:
    return struct.unpack("<f", struct.pack("<I", w & 0xFFFFFFFF))[0]


K = {name: number(w) for name, w in {
    "EXP_MAX": 0x42B17217, "EXP_MIN": 0xC2AEAC50, "LOG2E": 0x3FB8AA3B,
    "ROUNDER": 0x4B400000, "C1": 0x3F318000, "C2": 0xB95E8083, "P0": 0x39506967,
    "P1": 0x3AB743CE, "P2": 0x3C088908, "P3": 0x3D2AA9C1, "P4": 0x3E2AAAAA,
    "P5": 0x3F000000, "GELU_K1": 0x3FCC4000, "GELU_K2": 0x388A67A8, "GELU_KA1": 0x3D922000,
    "GELU_KA2": 0x369E549B, "GELU_KA": 0x3D922279, "GELU_XMAX": 0x41100000,
    "GELU_XMIN": 0xC1300000, "SPLIT8": 0x47400000, "SPLIT4": 0x49400000,
    "VELTKAMP": 0x45800800, "GELU_K": 0x3FCC422A, "GELU_KA3": 0x3E5B33B6}.items()}


def doc_exp(x: float, zh: float | None = None, zl: float | None = None) -> float:
    """EXP(x); with ``zh`` and ``zl``, GELU's EXP2(x, zh, zl)."""
    if math.isnan(x):
        return math.nan
    if x > K["EXP_MAX"]:
        return math.inf
    if x < K["EXP_MIN"]:
        return 0.0
    t = f32(x * K["LOG2E"])
    k = f32(t + K["ROUNDER"])
    nf = f32(k - K["ROUNDER"])
    r = f32((x if zh is None else zh) - f32(nf * K["C1"]))
    r = f32(r - f32(nf * K["C2"]))
    if zl is not None:
        r = f32(r + zl)
    z = f32(r * r)
    p = K["P0"]
    for c in ("P1", "P2", "P3", "P4", "P5"):
        p = f32(f32(p * r) + K[c])
    y = f32(f32(p * z) + r)
    y = f32(y + 1.0)
    n = int(nf)
    if n == 128:
        y, n = f32(y * 2.0), 127
    return f32(y * number((n + 127) << 23))


def doc_recip(s: float) -> float:
    y = number(0x7EF311C3 - word(s))
    for _ in range(3):
        t = f32(s * y)
        t = f32(2.0 - t)
        y = f32(y * t)
    return y


def doc_rsqrt(v: float) -> float:
    y = number(0x5F375A86 - (word(v) >> 1))
    h = f32(v * 0.5)
    for _ in range(3):
        t = f32(y * y)
        t = f32(h * t)
        t = f32(1.5 - t)
        y = f32(y * t)
    return y


def doc_split(v: float) -> tuple[float, float]:
    s = f32(v * K["VELTKAMP"])
    h = f32(s - f32(s - v))
    return h, f32(v - h)


def doc_gelu_w(x: float) -> tuple[float, float, float]:
    xc = math.nan if math.isnan(x) else min(x, K["GELU_XMAX"])
    if x < K["GELU_XMIN"]:
        xc = K["GELU_XMIN"]
    xh = f32(f32(xc + K["SPLIT8"]) - K["SPLIT8"])
    xl = f32(xc - xh)
    p = f32(xh * xh)
    t = f32(xl * f32(xc + xh))
    a1 = f32(f32(p + K["SPLIT4"]) - K["SPLIT4"])
    a2 = f32(p - a1)
    gh = f32(f32(K["GELU_KA1"] * a1) + K["GELU_K1"])
    gl = f32(K["GELU_K2"] + f32(K["GELU_KA1"] * a2))
    gl = f32(gl + f32(K["GELU_KA2"] * p))
    gl = f32(gl + f32(K["GELU_KA"] * t))
    hh = f32(f32(gh + K["SPLIT8"]) - K["SPLIT8"])
    hl = f32(gh - hh)
    zh = f32(xh * hh)
    zl = f32(xh * hl)
    zl = f32(zl + f32(xl * gh))
    zl = f32(zl + f32(xc * gl))
    z = f32(zh + zl)
    e = doc_exp(z, zh, zl)
    d = f32(e + 1.0)
    q = doc_recip(d)
    w = f32(e * q)
    (wh, wl), (dh, dl) = doc_split(w), doc_split(d)
    m = f32(w * d)
    me = f32(f32(wh * dh) - m)
    me = f32(me + f32(wh * dl))
    me = f32(me + f32(wl * dh))
    me = f32(me + f32(wl * dl))
    rho = f32(f32(e - m) - me)
    w = f32(w + f32(rho * q))
    return xc, w, q


def doc_gelu(x: float) -> float:
    return f32(x * doc_gelu_w(x)[1])


def doc_gelu_grad(x: float) -> float:
    xc, w, q = doc_gelu_w(x)
    if xc < 0:
        q = f32(1.0 - w)
    c = f32(xc * f32(w * q))
    k3 = f32(f32(K["GELU_KA3"] * f32(xc * xc)) + K["GELU_K"])
    return f32(w + f32(c * k3))


def canonical(v: float) -> int:
    return 0x7FC00000 if math.isnan(v) else word(v)


CASES = {"exp": (doc_exp, -90.0, 90.0), "reciprocal": (doc_recip, 2.0 ** -125, 2.0 ** 125),
         "rsqrt": (doc_rsqrt, 2.0 ** -126, 3.4e38), "gelu": (doc_gelu, -12.0, 12.0),
         "gelu_grad": (doc_gelu_grad, -12.0, 12.0)}
SPECIALS = {"exp": [0.0, -0.0, 1.0, -1.0, 88.72283, 88.7229, -87.33655, -87.3366, 1e-30,
                    math.inf, -math.inf, math.nan, 0.34657359, -0.34657359],
            "reciprocal": [1.0, 2.0, 0.5, 3.0, 1.1754944e-38 * 2, 4.25e37, 1.5, 7.0],
            "rsqrt": [1.0, 4.0, 0.25, 2.0, 1.1754944e-38, 3.4e38, 1e-30, 1e30],
            "gelu": [0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 9.6, -9.6, -9.7, 50.0, 1e20, -1e20,
                     math.inf, math.nan, -math.inf],
            "gelu_grad": [0.0, -0.0, 1.0, -1.0, -0.75246, -0.7524614, 3.0, -3.0, 9.0, 9.6,
                          -9.6, -10.2, -11.0, -11.5, 50.0, 1e20, -1e20, 1e-40, -1e-40,
                          math.inf, math.nan, -math.inf]}


@pytest.mark.parametrize("name", list(CASES))
def test_the_reference_is_the_document(request, name):
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    doc, lo, hi = CASES[name]
    if lo > 0:  # logarithmic
        x = np.exp(rng.uniform(np.log(lo), np.log(hi), 3000))
    else:
        x = np.concatenate([rng.uniform(lo, hi, 2000), rng.uniform(-1, 1, 1000)])
    x = np.concatenate([x, SPECIALS[name]]).astype(np.float32)
    got = getattr(nl, name)(x.view(np.uint32))
    want = np.array([canonical(doc(float(v))) for v in x], np.uint32)
    bad = np.flatnonzero(got != want)
    assert not len(bad), (f"{name}: {len(bad)} differ, first x = {x[bad[0]]!r}: reference "
                          f"{got[bad[0]]:#010x}, document {want[bad[0]]:#010x} (seed {seed})")


def exact_gelu_grad(v: np.ndarray) -> np.ndarray:
    """d/dx of x sigmoid(z), z = 2 sqrt(2 / pi) (x + 0.044715 x^3), in float64."""
    k = 2 * np.sqrt(2 / np.pi)
    with np.errstate(over="ignore"):
        z = v * (k + 0.044715 * k * v * v)
        s, s1 = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(z))
    return s + v * s * s1 * (k + 3 * 0.044715 * k * v * v)


def _exact(name, xd):
    return {"exp": np.exp, "reciprocal": lambda v: 1 / v, "rsqrt": lambda v: 1 / np.sqrt(v),
            "gelu": lambda v: v / (1 + np.exp(-2 * np.sqrt(2 / np.pi) *
                                              (v + 0.044715 * v ** 3))),
            "gelu_grad": exact_gelu_grad}[name](xd)


def _ulp(name, x):
    got = getattr(nl, name)(x.view(np.uint32)).view(np.float32).astype(np.float64)
    exact = _exact(name, x.astype(np.float64))
    return np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32))


def test_gelus_derivative_is_the_derivative():
    """The float64 derivative the errors are measured against is GELU's: central differences
    of float64 GELU agree to 1e-7."""
    x = np.linspace(-9.0, 9.0, 3001)
    h = 1e-5
    diff = (_exact("gelu", x + h) - _exact("gelu", x - h)) / (2 * h)
    assert np.abs(diff - exact_gelu_grad(x)).max() < 1e-7


@pytest.mark.parametrize(("name", "lo", "hi", "bound"), [
    ("exp", -87.33, 88.72, 1.0), ("exp", -1.0, 1.0, 1.0),
    ("reciprocal", 2.0 ** -125, 2.0 ** 125, 2.5), ("rsqrt", 2.0 ** -126, 3.4e38, 3.0),
    ("gelu", -4.0, 4.0, 4.0), ("gelu", -9.5, -4.0, 4.0), ("gelu", 4.0, 1e4, 1.0),
    ("gelu_grad", -0.5, 9.5, 4.5), ("gelu_grad", -9.5, -1.0, 8.0),
    ("gelu_grad", 9.5, 1e4, 0.0)])
def test_the_errors_are_within_the_table(request, name, lo, hi, bound):
    """docs/nonlinear.md, "Errors": each row's bound, on another seed's sample."""
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    x = np.exp(rng.uniform(np.log(lo), np.log(hi), 200_000)) if lo > 0 else \
        rng.uniform(lo, hi, 200_000)
    ulp = _ulp(name, x.astype(np.float32))
    assert ulp.max() <= bound, f"{name}: {ulp.max():.2f} ulp at {x[ulp.argmax()]} (seed {seed})"


def test_the_corners_the_document_states():
    def call(name, values):
        return getattr(nl, name)(np.asarray(values, np.float32).view(np.uint32))

    inf, nan = np.float32(np.inf), np.float32(np.nan)
    assert list(call("exp", [0.0, -0.0, 89.0, -88.0, inf, -inf, nan])) == \
        [0x3F800000, 0x3F800000, 0x7F800000, 0, 0x7F800000, 0, 0x7FC00000]
    # at EXP_MIN itself: a subnormal
    assert 0 < call("exp", [np.uint32(0xC2AEAC50).view(np.float32)])[0] < 0x00800000
    assert list(call("gelu", [0.0, -0.0, -10.01, inf, -inf, nan])) == \
        [0, 0x80000000, 0x80000000, 0x7F800000, 0x7FC00000, 0x7FC00000]
    assert -1e-36 < call("gelu", [-10.0]).view(np.float32)[0] < 0  # not yet flushed
    # large positive x: x itself (e / (e + 1) rounds to 1)
    assert call("gelu", [100.0])[0] == np.float32(100.0).view(np.uint32)
    one, half = 0x3F800000, 0x3F000000
    assert list(call("gelu_grad", [0.0, -0.0, 1e-40, inf, -inf, nan, 100.0, -12.0])) == \
        [half, half, half, one, 0, 0x7FC00000, one, 0]


def test_gelus_derivative_near_its_zero_is_within_its_absolute_bound(request):
    """docs/nonlinear.md, "Errors": on [-1, -0.5], around the derivative's zero at -0.7525,
    and everywhere, the absolute error is within its bound."""
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-1.0, -0.5, 100_000), rng.uniform(-12, 12, 100_000)])
    x = x.astype(np.float32)
    got = nl.gelu_grad(x.view(np.uint32)).view(np.float32).astype(np.float64)
    err = np.abs(got - exact_gelu_grad(x.astype(np.float64)))
    assert err[:100_000].max() <= 7e-8, f"{err[:100_000].max():.3g} (seed {seed})"
    assert err.max() <= 2.5e-7, f"{err.max():.3g} at {x[err.argmax()]} (seed {seed})"


# -- the programs (hdl/core/programs.py): what a tile will run, interpreted step by step -------

def _program_inputs(rng, name: str, n: int) -> np.ndarray:
    """Any 32-bit word (every NaN payload, subnormal and sign), values on the function's
    documented range and around it, the document's special values and the words at the range
    limits."""
    words = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    lo, hi = nl.RANGES[name]
    if lo > 0:
        values = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    else:
        values = rng.uniform(lo * 1.02, hi * 1.02, n)
    limits = np.array([lo, hi], np.float32).view(np.uint32)
    edges = np.concatenate([limits - 1, limits, limits + 1]).astype(np.uint32)
    specials = np.array(SPECIALS[name], np.float32).view(np.uint32)
    return np.concatenate([words, values.astype(np.float32).view(np.uint32), edges, specials])


@pytest.mark.parametrize("name", list(CASES))
def test_the_programs_are_the_reference(request, name):
    """Each function's program, run step by step with numbered registers, equals the
    reference bit for bit: on every kind of input word, not only the documented range."""
    seed = seed_for(request)
    x = _program_inputs(np.random.default_rng(seed), name, 200_000)
    got, want = nl.run(name, x), getattr(nl, name)(x)
    bad = np.flatnonzero(got != want)
    assert not len(bad), (f"{name}: {len(bad)} of {len(x)} differ, first x = {x[bad[0]]:#010x}:"
                          f" program {got[bad[0]]:#010x}, reference {want[bad[0]]:#010x} "
                          f"(seed {seed})")


@pytest.mark.parametrize(("name", "index"), [("exp", 22), ("exp", 23), ("exp", 27),
                                             ("exp", 28), ("gelu", 1), ("gelu", 36),
                                             ("gelu", 91), ("rsqrt", 14)])
def test_a_program_without_one_of_its_steps_is_caught(request, name, index):
    """Mutations: dropping the n == 128 fix-up (either half), either range check, GELU's
    clamp below, its EXP2's ``zl``, its correction of ``w`` or RSQRT's last Newton update
    changes results the test above compares."""
    program = progs.PROGRAMS[name]
    steps = program.steps[:index] + program.steps[index + 1:]
    mutant = progs.Program(name, steps, program.result)
    x = _program_inputs(np.random.default_rng(seed_for(request)), name, 200_000)
    differ = np.count_nonzero(nl.run(mutant, x) != getattr(nl, name)(x))
    assert differ, f"{name} without step {index} ({program.steps[index]}) still agrees"


#: Words for the functions of two operands: every sign of zero and infinity, NaNs with
#: payloads, the smallest subnormal and normal, the largest finite, and ordinary values.
PAIR_WORDS = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
                       0x7F800001, 0x00000001, 0x80000001, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,
                       0x3F800000, 0xBF800000, 0x40490FDB, 0xC0490FDB, 0x3F800001],
                      np.uint32)


def _pair_inputs(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of :data:`PAIR_WORDS`, random words (any bit pattern), random pairs of
    near values (the comparison's and the rounding's hard cases) and equal pairs."""
    a, b = (w.ravel() for w in np.meshgrid(PAIR_WORDS, PAIR_WORDS))
    x = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    d = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    near = (x.astype(np.int64) + rng.integers(-2, 3, n)).astype(np.uint32)
    return np.concatenate([a, x, x, x]), np.concatenate([b, d, near, x])


def test_mul_and_max_are_the_document(request):
    """MUL and MAX (docs/nonlinear.md, "Multiply and maximum"): the reference against float64
    arithmetic and comparisons computed here, and the programs against the reference, bit for
    bit, on every kind of pair."""
    seed = seed_for(request)
    x, d = _pair_inputs(np.random.default_rng(seed), 100_000)
    with np.errstate(all="ignore"):
        fx, fd = x.view(np.float32).astype(np.float64), d.view(np.float32).astype(np.float64)
        # a float64 product of two FP32 numbers is exact; one rounding to FP32 follows
        product = (fx * fd).astype(np.float32).view(np.uint32)
        want_mul = np.where(np.isnan(fx * fd), np.uint32(0x7FC00000), product)
    nan = np.isnan(fx) | np.isnan(fd)
    want_max = np.where(nan, np.uint32(0x7FC00000), np.where(fd > fx, d, x))
    for name, ref, want in (("mul", nl.mul, want_mul), ("max", nl.maximum, want_max)):
        got = ref(x, d)
        bad = np.flatnonzero(got != want)
        assert not len(bad), (f"{name}: {len(bad)} differ, first ({x[bad[0]]:#010x}, "
                              f"{d[bad[0]]:#010x}): {got[bad[0]]:#010x} (seed {seed})")
        ran = nl.run(name, x, d)
        bad = np.flatnonzero(ran != want)
        assert not len(bad), (f"{name} program: {len(bad)} differ, first ({x[bad[0]]:#010x}, "
                              f"{d[bad[0]]:#010x}): {ran[bad[0]]:#010x} (seed {seed})")
    # the corners the document states: of equal values x, -inf leaves x, NaN wins
    assert list(nl.maximum([0x80000000, 0, 0x3F800000, 0xFF800000], [0, 0x80000000,
                                                                     0xFF800000, 0x7FC00123])) \
        == [0x80000000, 0, 0x3F800000, 0x7FC00000]
    with pytest.raises(ValueError, match="mul takes a second operand"):
        nl.run("mul", x)
    with pytest.raises(ValueError, match="max takes a second operand"):
        nl.reference("max", x)
    assert (nl.reference("exp", x[:100], d[:100]) == nl.exp(x[:100])).all()


@pytest.mark.parametrize("index", [0, 1, 2])
def test_max_without_one_of_its_steps_is_caught(request, index):
    """Mutations: MAX without its NaN step, its select or its NaN guard differs from the
    reference on the pairs above."""
    program = progs.MAX
    steps = program.steps[:index] + program.steps[index + 1:]
    result = "x" if index == 0 else program.result
    steps = tuple(s for s in steps if not (index == 0 and "m" in (s.dst, s.a)))
    mutant = progs.Program("max", steps, result, operand="d")
    x, d = _pair_inputs(np.random.default_rng(seed_for(request)), 20_000)
    assert (nl.run(mutant, x, d) != nl.maximum(x, d)).any()


def test_the_programs_table_in_the_document():
    """docs/nonlinear.md, "The programs": steps, registers and each step's listing."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "nonlinear.md").read_text()
    for name, program in progs.PROGRAMS.items():
        code = progs.assemble(program)
        row = f"| {name} | {len(program.steps)} | {code.registers} |"
        assert row in text, f"docs/nonlinear.md lacks the row {row!r}"
    listing = text.split("```steps-exp\n", 1)[1].split("```", 1)[0].split("\n")
    written = [line.split("#")[0].split() for line in listing if line.split("#")[0].strip()]
    steps = [[s.op, s.dst, *(o for o in (s.a, s.b, s.c) if o is not None)]
             for s in progs.EXP.steps]
    assert written == steps
    for word in ("F128", "K127", "K_SCALE", "INF", "ZERO", "GELU_K1", "GELU_K2", "GELU_KA1",
                 "GELU_KA2", "GELU_KA", "GELU_XMAX", "GELU_XMIN", "SPLIT8", "SPLIT4",
                 "VELTKAMP"):
        assert f"| `{word}` | `{progs.CONSTANTS[word]:#010X}`".replace("0X", "0x") in text, word


def test_assemble_numbers_and_checks():
    code = progs.assemble(progs.RECIPROCAL)
    assert code.steps[0] == ("isub", 1, "RECIP_SEED", 0, None)
    assert code.registers == 3 and code.result == 1
    assert max(progs.assemble(p).registers for p in progs.PROGRAMS.values()) == 11
    bad = progs.Program("bad", (progs.Step("add", "y", "x", "t"),), "y")
    with pytest.raises(ValueError, match=r"^bad: step 0 \(add y\) reads t before it is "
                                         r"written$"):
        progs.assemble(bad)
    select = progs.Program("sel", (progs.Step("gt", "y", "x", "ONE", "ONE"),), "y")
    with pytest.raises(ValueError, match=r"^sel: step 0 \(gt y\) reads y before it is "):
        progs.assemble(select)
    writes_d = progs.Program("wd", (progs.Step("add", "d", "x", "d"),), "d", operand="d")
    with pytest.raises(ValueError, match=r"^wd: step 0 \(add\) writes the operand d$"):
        progs.assemble(writes_d)
    assert progs.assemble(progs.MAX).steps == (("min", 1, 0, "d", None), ("gt", 0, "d", 0, "d"),
                                               ("eq", 1, 1, 1, 0))
    with pytest.raises(ValueError, match=r"^none: the result r is never written$"):
        progs.assemble(progs.Program("none", (progs.Step("shr1", "y", "x"),), "r"))


@pytest.mark.parametrize(("args", "message"), [
    (("div", "y", "x", "x"), r"^unknown step operation 'div' \(one of add, sub, mul, min, "),
    (("add", "y", "x"), r"^step add takes operand b$"),
    (("shr1", "y", "x", "x"), r"^step shr1 has no operand b$"),
    (("gt", "y", "x", "ONE"), r"^step gt takes operand c$"),
    (("mul", "ONE", "x", "x"), r"^step mul writes the constant ONE$"),
])
def test_bad_steps(args, message):
    with pytest.raises(ValueError, match=message):
        progs.Step(*args)
