"""Numpy reference of the floating-point units (:mod:`wafertile.hdl.core.fp`), bit for bit.

Words are raw bit patterns in numpy arrays (``uint16`` for FP16 / BF16, ``uint32`` for FP32)
or plain integers; every function works elementwise and returns an array of raw bits. The
arithmetic is numpy's float32 arithmetic (IEEE 754, round to nearest even, subnormals kept),
with one convention of the hardware on top: **every NaN result is the canonical quiet NaN**
of its format (``0x7FC00000`` FP32, ``0x7E00`` FP16, ``0x7FC0`` BF16), so comparing raw bits
compares any NaN as equal to any NaN, whatever payload numpy left in it.

The MAC rule of an FP tile (issue 14)::

    acc = fp32(acc + fp32(w) * fp32(a))     unless w or a is +0 or -0: then acc is unchanged

A zero weight or activation costs no multiply and no accumulator write (zero skipping, as in
the integer core). Two corners follow, and this reference has them too:

- ``-0 + +0``: an accumulator holding -0 stays -0 after a MAC with a zero operand (nothing is
  added), where IEEE addition of the +0 product would give +0. An accumulator reaches -0 only
  by a write of -0 or by a sum that is -0 (``-0 + -0``, e.g. a -0 accumulator plus a product
  that underflowed to -0, BF16 only).
- ``0 * inf``: a zero operand skips the MAC even when the other operand is infinity or NaN,
  where IEEE would give NaN.

ADD (the reduction of partial sums) is :func:`add`, with no skipping: ``-0 + +0 = +0``.
"""

from __future__ import annotations

import numpy as np

from ...hdl.core.fp import BF16, FP16, FP32, FloatFormat, float_format

__all__ = ["accumulate", "add", "canonical", "is_zero", "mac", "mul", "relu", "to_half"]


def canonical(bits, fmt: str | FloatFormat = FP32) -> np.ndarray:
    """``bits`` of format ``fmt`` with every NaN replaced by the canonical NaN."""
    fmt = float_format(fmt)
    bits = np.asarray(bits).astype(fmt.dtype)
    return np.where(np.isnan(fmt.values(bits)), fmt.dtype(fmt.nan), bits).astype(fmt.dtype)


def _fp32_bits(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float32)
    return np.where(np.isnan(values), np.uint32(FP32.nan), values.view(np.uint32))


def is_zero(bits, fmt: str | FloatFormat) -> np.ndarray:
    """True where the word ``bits`` of ``fmt`` is +0 or -0."""
    fmt = float_format(fmt)
    return (np.asarray(bits).astype(fmt.dtype) & fmt.dtype(fmt.sign_bit - 1)) == 0


def mul(a, b, fmt: str | FloatFormat) -> np.ndarray:
    """``float32(a) * float32(b)`` for FP16 or BF16 words ``a``, ``b``: FP32 bits.

    Exact for FP16; for BF16 the product may overflow to infinity or round (to nearest even)
    to an FP32 subnormal or zero, as numpy's float32 multiplication does.
    """
    fmt = float_format(fmt)
    with np.errstate(all="ignore"):
        return _fp32_bits(fmt.values(a) * fmt.values(b))


def add(a, b) -> np.ndarray:
    """``a + b`` for FP32 words, rounded to nearest even: FP32 bits."""
    with np.errstate(all="ignore"):
        return _fp32_bits(FP32.values(a) + FP32.values(b))


def to_half(x, fmt: str | FloatFormat) -> np.ndarray:
    """The FP32 words ``x`` rounded to nearest even in ``fmt`` (FP16 or BF16): 16-bit words.
    """
    fmt = float_format(fmt)
    if fmt not in (FP16, BF16):
        raise TypeError(f"to_half format must be 'fp16' or 'bf16', not {fmt.name!r}")
    return fmt.bits(FP32.values(x))


def relu(x) -> np.ndarray:
    """ReLU of FP32 words: ``x`` where it is a NaN or not negative, else +0 (so -0 gives +0,
    and a NaN passes unchanged whatever its sign bit)."""
    x = np.asarray(x).astype(np.uint32)
    v = x.view(np.float32)
    return np.where(np.isnan(v) | ((x >> np.uint32(31)) == 0), x, np.uint32(0))


def mac(acc, w, a, fmt: str | FloatFormat) -> np.ndarray:
    """One MAC per element: ``acc + w * a`` (FP32 ``acc``, ``fmt`` words ``w``, ``a``), or
    ``acc`` unchanged where ``w`` or ``a`` is a zero (zero skipping; see the module text)."""
    fmt = float_format(fmt)
    acc = np.asarray(acc).astype(np.uint32)
    skip = is_zero(w, fmt) | is_zero(a, fmt)
    return np.where(skip, acc, add(acc, mul(w, a, fmt))).astype(np.uint32)


def accumulate(w, a, fmt: str | FloatFormat, acc: int = 0) -> int:
    """The accumulator after the MACs ``acc += w[k] * a[k]``, ``k = 0, 1, ...`` in order
    (with zero skipping), starting from the FP32 word ``acc``: FP32 bits."""
    w, a = np.atleast_1d(w), np.atleast_1d(a)
    out = np.uint32(acc)
    for wk, ak in zip(w, a, strict=True):
        out = mac(out, wk, ak, fmt)
    return int(out)
