"""Numpy reference of the nonlinear functions of the float tiles (``docs/nonlinear.md``), bit
for bit: ``exp``, the reciprocal, the reciprocal square root and GELU (tanh form), and the
two functions of two operands, ``mul`` and ``maximum`` (MUL and MAX), each a fixed
sequence of FP32 additions and multiplications (every one rounded to nearest even, subnormals
kept, as numpy's float32 arithmetic) and integer operations on FP32 words, in the order the
document gives.

Words in and out are FP32 bit patterns (``uint32`` arrays); every function is elementwise and
vectorized; every NaN result is the canonical quiet NaN (``0x7FC00000``), as in :mod:`.fp`.

:func:`run` is the other half: it interprets a function's program of steps
(:mod:`wafertile.hdl.core.programs`, what a tile will run) with numbered registers, as the
hardware will, one step at a time; the tests hold it equal to the functions above bit for bit.
"""

from __future__ import annotations

import numpy as np

from ...hdl.core.fp import FP32
from ...hdl.core.programs import CONSTANTS as _CONSTANTS
from ...hdl.core.programs import ITERATIONS as _ITERATIONS
from ...hdl.core.programs import PROGRAMS, Program, assemble

__all__ = ["CONSTANTS", "ITERATIONS", "RANGES", "REFERENCES", "exp", "gelu", "gelu_grad",
           "maximum", "mul", "reciprocal", "reference", "rsqrt", "run"]

#: The constants of ``docs/nonlinear.md`` as FP32 words (name -> word): the programs' table
#: (:data:`wafertile.hdl.core.programs.CONSTANTS`), which the tiles will hold.
CONSTANTS = _CONSTANTS
#: Newton iterations of the reciprocal and of the reciprocal square root (the programs').
ITERATIONS = _ITERATIONS
#: The input ranges over which each function is specified (and its error measured), FP32
#: values: ``(low, high)``.
RANGES = {"exp": (-87.3365479, 88.7228317), "reciprocal": (2.0 ** -125, 2.0 ** 125),
          "rsqrt": (2.0 ** -126, 3.4e38), "gelu": (-1e4, 1e4), "gelu_grad": (-1e4, 1e4)}


def _c(name: str) -> np.float32:
    return np.uint32(CONSTANTS[name]).view(np.float32)


def _values(words) -> np.ndarray:
    return np.asarray(words, np.uint32).view(np.float32)


def _words(values: np.ndarray) -> np.ndarray:
    out = np.asarray(values, np.float32).view(np.uint32)
    return np.where(np.isnan(values), np.uint32(FP32.nan), out).astype(np.uint32)


def _exp(x: np.ndarray, high: np.ndarray | None = None,
         low: np.ndarray | None = None) -> np.ndarray:
    """EXP on float32 values (``docs/nonlinear.md``, "exp"), float32 out; with ``high`` and
    ``low``, EXP2 (``docs/nonlinear.md``, "GELU"): ``r`` from them, not from ``x``."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        t = x * _c("LOG2E")
        k = t + _c("ROUNDER")
        nf = k - _c("ROUNDER")                     # rint(t), exact for |t| < 2^22
        r = (x if high is None else high) - nf * _c("C1")
        r = r - nf * _c("C2")
        if low is not None:
            r = r + low
        z = r * r
        p = _c("P0")
        for name in ("P1", "P2", "P3", "P4", "P5"):
            p = p * r + _c(name)
        y = p * z + r
        y = y + _c("ONE")
        n = np.clip(np.nan_to_num(nf), -126, 128).astype(np.int64)
        top = n == 128                             # 2^128 is not an FP32 number
        y = np.where(top, y * _c("TWO"), y)
        n = np.where(top, 127, n)
        scale = ((n + 127) << 23).astype(np.uint32).view(np.float32)
        out = y * scale
    out = np.where(x > _c("EXP_MAX"), np.float32(np.inf), out)
    out = np.where(x < _c("EXP_MIN"), np.float32(0), out)
    return np.where(np.isnan(x), np.float32(np.nan), out).astype(np.float32)


def _reciprocal(s: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        y = (np.uint32(CONSTANTS["RECIP_SEED"]) - s.view(np.uint32)).view(np.float32)
        for _ in range(ITERATIONS["reciprocal"]):
            t = s * y
            t = _c("TWO") - t
            y = y * t
    return y


def _rsqrt(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        y = (np.uint32(CONSTANTS["RSQRT_SEED"]) - (v.view(np.uint32) >> np.uint32(1))
             ).view(np.float32)
        h = v * _c("HALF")
        for _ in range(ITERATIONS["rsqrt"]):
            t = y * y
            t = h * t
            t = _c("THREE_HALVES") - t
            y = y * t
    return y


def exp(words) -> np.ndarray:
    """``exp(x)`` of FP32 words ``x`` (``docs/nonlinear.md``): FP32 words."""
    return _words(_exp(_values(words)))


def reciprocal(words) -> np.ndarray:
    """``1 / s`` of positive normal FP32 words ``s`` within :data:`RANGES` (outside it the
    result is not specified): FP32 words."""
    return _words(_reciprocal(_values(words)))


def rsqrt(words) -> np.ndarray:
    """``1 / sqrt(v)`` of positive normal FP32 words ``v``: FP32 words."""
    return _words(_rsqrt(_values(words)))


def _split(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split of float32 ``v`` into two parts of at most 12 significant bits."""
    s = v * _c("VELTKAMP")
    h = s - (s - v)
    return h, v - h


def _round_to(v: np.ndarray, rounder: str) -> np.ndarray:
    """``v`` rounded to the multiple of 2^-8 (SPLIT8) or 2^-4 (SPLIT4) nearest it."""
    return (v + _c(rounder)) - _c(rounder)


def _gelu_w(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xc, w, q)`` of GELU's steps on float32 ``x`` (``docs/nonlinear.md``, "GELU"): the
    clamped input, ``w = e / (e + 1)`` corrected once, and ``q = RECIP(e + 1)``."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        xc = np.minimum(x, _c("GELU_XMAX"))        # NaN stays NaN
        xc = np.where(x < _c("GELU_XMIN"), _c("GELU_XMIN"), xc)
        xh = _round_to(xc, "SPLIT8")
        xl = xc - xh
        p = xh * xh                                 # exact
        t = xl * (xc + xh)                          # xc^2 = p + t
        a1 = _round_to(p, "SPLIT4")
        a2 = p - a1
        gh = _c("GELU_KA1") * a1 + _c("GELU_K1")    # exact
        gl = _c("GELU_K2") + _c("GELU_KA1") * a2
        gl = gl + _c("GELU_KA2") * p
        gl = gl + _c("GELU_KA") * t                 # K + KA xc^2 = gh + gl
        hh = _round_to(gh, "SPLIT8")
        hl = gh - hh
        zh = xh * hh                                # exact
        zl = xh * hl
        zl = zl + xl * gh
        zl = zl + xc * gl                           # z = zh + zl
        e = _exp(zh + zl, zh, zl)
        d = e + _c("ONE")
        q = _reciprocal(d)
        w = e * q
        (wh, wl), (dh, dl) = _split(w), _split(d)
        m = w * d
        me = wh * dh - m
        me = me + wh * dl
        me = me + wl * dh
        me = me + wl * dl                           # w d = m + me
        rho = (e - m) - me
        w = w + rho * q
    return xc, w, q


def gelu(words) -> np.ndarray:
    """GELU, tanh form, ``x * e / (e + 1)`` with ``e = exp(2 sqrt(2 / pi) (x + 0.044715
    x^3))``, of FP32 words ``x`` (``docs/nonlinear.md``): FP32 words. The argument of exp is
    a sum of two FP32 numbers, and ``e / (e + 1)`` is corrected once with an exact residual."""
    x = _values(words)
    _, w, _ = _gelu_w(x)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return _words(x * w)


def gelu_grad(words) -> np.ndarray:
    """GELU's derivative, ``w + xc (w q) (K + 3 KA xc^2)`` from GELU's own ``xc``, ``w`` and
    ``q`` (``docs/nonlinear.md``, "GELU's derivative"), of FP32 words: FP32 words."""
    xc, w, q = _gelu_w(_values(words))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        q = np.where(xc < 0, _c("ONE") - w, q)          # 1 - w: q, or for xc < 0 1 - w
        c = xc * (w * q)
        k3 = _c("GELU_KA3") * (xc * xc) + _c("GELU_K")    # K + 3 KA xc^2
        return _words(w + c * k3)


def mul(words, operand) -> np.ndarray:
    """MUL: ``fp32(x * d)`` of FP32 words ``x`` and ``d`` (``docs/nonlinear.md``, "Multiply
    and maximum"): FP32 words."""
    with np.errstate(all="ignore"):
        return _words(_values(words) * _values(operand))


def maximum(words, operand) -> np.ndarray:
    """MAX: NaN if ``x`` or ``d`` is NaN, else ``d`` if ``d > x``, else ``x`` (of equal values,
    ``x``: ``MAX(-0, +0) = -0``), of FP32 words: FP32 words."""
    x, d = np.broadcast_arrays(np.asarray(words, np.uint32), np.asarray(operand, np.uint32))
    fx, fd = x.view(np.float32), d.view(np.float32)
    out = np.where(fd > fx, d, x)
    return np.where(np.isnan(fx) | np.isnan(fd), np.uint32(FP32.nan), out).astype(np.uint32)


#: The reference of each function of the nonlinear unit, by its program's name
#: (:data:`~wafertile.hdl.core.programs.PROGRAMS`): ``f(x)``, or ``f(x, d)`` for MUL and MAX.
REFERENCES = {"exp": exp, "reciprocal": reciprocal, "rsqrt": rsqrt, "gelu": gelu,
              "gelu_grad": gelu_grad, "mul": mul, "max": maximum}


def reference(name: str, words, operand=None) -> np.ndarray:
    """The reference of the unit's function ``name`` (:data:`REFERENCES`) on FP32 words, with
    ``operand`` the second operand's words of MUL and MAX, as :func:`run` takes them (a
    function of one ignores it)."""
    if PROGRAMS[name].operand is None:
        return REFERENCES[name](words)
    if operand is None:
        raise ValueError(f"{name} takes a second operand")
    return REFERENCES[name](words, operand)


def _step(op: str, a, b) -> np.ndarray:
    """One arithmetic or integer step on ``uint32`` words (``docs/nonlinear.md``, "The
    programs"): its result word, NaNs canonical."""
    if op in ("isub", "shr1", "shl23"):
        if op == "isub":
            return (a - b).astype(np.uint32)          # modulo 2^32
        return (a >> np.uint32(1)) if op == "shr1" else (a << np.uint32(23))
    fa, fb = a.view(np.float32), b.view(np.float32)
    with np.errstate(all="ignore"):
        if op == "min":
            v = np.where(np.isnan(fa) | np.isnan(fb), np.float32(np.nan),
                         np.where(fb < fa, fb, fa))
        else:
            v = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op](fa, fb)
    return _words(v)


def _condition(op: str, a, b) -> np.ndarray:
    fa, fb = a.view(np.float32), b.view(np.float32)
    return {"gt": np.greater, "lt": np.less, "eq": np.equal}[op](fa, fb)


def run(program: str | Program, words, operand=None) -> np.ndarray:
    """Run ``program`` (a :class:`~wafertile.hdl.core.programs.Program` or a name of
    :data:`~wafertile.hdl.core.programs.PROGRAMS`) on FP32 words, vectorized over them, with
    the registers :func:`~wafertile.hdl.core.programs.assemble` numbers: FP32 words.
    ``operand`` is the second operand's words (a function of two: MUL, MAX), broadcast to
    ``words``; a function of one ignores it."""
    if isinstance(program, str):
        program = PROGRAMS[program]
    code = assemble(program)
    x = np.asarray(words, np.uint32).ravel()
    if code.operand is not None and operand is None:
        raise ValueError(f"{program.name} takes a second operand")
    d = (np.broadcast_to(np.asarray(operand, np.uint32), np.shape(words)).ravel()
         if code.operand is not None else None)
    regs = np.zeros((code.registers, len(x)), np.uint32)
    regs[0] = x

    def operand_words(o):
        if o == code.operand:
            return d
        return np.uint32(CONSTANTS[o]) if isinstance(o, str) else regs[o]

    for op, dst, a, b, c in code.steps:
        va = np.broadcast_to(operand_words(a), x.shape)
        vb = None if b is None else np.broadcast_to(operand_words(b), x.shape)
        if c is None:
            regs[dst] = _step(op, va, vb)
        else:
            regs[dst] = np.where(_condition(op, va, vb), operand_words(c), regs[dst])
    return regs[code.result].reshape(np.shape(words))
