"""Numpy reference of the nonlinear functions of the float tiles (``docs/nonlinear.md``), bit
for bit: ``exp``, the reciprocal, the reciprocal square root and GELU (tanh form), each a fixed
sequence of FP32 additions and multiplications (every one rounded to nearest even, subnormals
kept, as numpy's float32 arithmetic) and integer operations on FP32 words, in the order the
document gives.

Words in and out are FP32 bit patterns (``uint32`` arrays); every function is elementwise and
vectorized; every NaN result is the canonical quiet NaN (``0x7FC00000``), as in :mod:`.fp`.
"""

from __future__ import annotations

import numpy as np

from ...hdl.core.fp import FP32

__all__ = ["CONSTANTS", "ITERATIONS", "RANGES", "exp", "gelu", "reciprocal", "rsqrt"]

#: The constants of ``docs/nonlinear.md`` as FP32 words (name -> word).
CONSTANTS: dict[str, int] = {
    "EXP_MAX": 0x42B17217,    # 88.7228317: above it exp overflows
    "EXP_MIN": 0xC2AEAC50,    # -87.3365479: below it exp is below 2^-126 (flushed to +0)
    "LOG2E": 0x3FB8AA3B,      # 1.44269502
    "ROUNDER": 0x4B400000,    # 12582912 = 1.5 x 2^23: t + ROUNDER - ROUNDER = rint(t)
    "C1": 0x3F318000,         # 0.693359375 (9 significant bits: n x C1 is exact)
    "C2": 0xB95E8083,         # -2.12194440e-4 (ln 2 = C1 + C2, to FP32's precision)
    "P0": 0x39506967,         # 1.9875691500e-4
    "P1": 0x3AB743CE,         # 1.3981999507e-3
    "P2": 0x3C088908,         # 8.3334519073e-3
    "P3": 0x3D2AA9C1,         # 4.1665795894e-2
    "P4": 0x3E2AAAAA,         # 1.6666665459e-1
    "P5": 0x3F000000,         # 5.0000001201e-1 rounds to 0.5
    "ONE": 0x3F800000,
    "TWO": 0x40000000,
    "HALF": 0x3F000000,
    "THREE_HALVES": 0x3FC00000,
    "RECIP_SEED": 0x7EF311C3,
    "RSQRT_SEED": 0x5F375A86,
    "GELU_A": 0x3D372713,     # 0.044715
    "GELU_K": 0x3FCC422A,     # 1.59576912 = 2 sqrt(2 / pi)
    "GELU_ZMAX": 0x42A00000,  # 80: keeps e + 1 within the reciprocal's range
}
#: Newton iterations of the reciprocal and of the reciprocal square root.
ITERATIONS = {"reciprocal": 3, "rsqrt": 3}
#: The input ranges over which each function is specified (and its error measured), FP32
#: values: ``(low, high)``.
RANGES = {"exp": (-87.3365479, 88.7228317), "reciprocal": (2.0 ** -125, 2.0 ** 125),
          "rsqrt": (2.0 ** -126, 3.4e38), "gelu": (-1e4, 1e4)}


def _c(name: str) -> np.float32:
    return np.uint32(CONSTANTS[name]).view(np.float32)


def _values(words) -> np.ndarray:
    return np.asarray(words, np.uint32).view(np.float32)


def _words(values: np.ndarray) -> np.ndarray:
    out = np.asarray(values, np.float32).view(np.uint32)
    return np.where(np.isnan(values), np.uint32(FP32.nan), out).astype(np.uint32)


def _exp(x: np.ndarray) -> np.ndarray:
    """EXP on float32 values (``docs/nonlinear.md``, "exp"), float32 out."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        t = x * _c("LOG2E")
        k = t + _c("ROUNDER")
        nf = k - _c("ROUNDER")                     # rint(t), exact for |t| < 2^22
        r = x - nf * _c("C1")
        r = r - nf * _c("C2")
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


def gelu(words) -> np.ndarray:
    """GELU, tanh form, ``x * e / (e + 1)`` with ``e = exp(2 sqrt(2 / pi) (x + 0.044715
    x^3))``, of FP32 words ``x`` (``docs/nonlinear.md``): FP32 words."""
    x = _values(words)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        c = x * x
        c = c * x
        c = c * _c("GELU_A")
        u = x + c
        z = u * _c("GELU_K")
        z = np.minimum(z, _c("GELU_ZMAX"))  # NaN stays NaN; below EXP_MIN, e = +0
        e = _exp(z)
        d = e + _c("ONE")
        q = _reciprocal(d)
        w = e * q
        g = x * w
    return _words(g)
