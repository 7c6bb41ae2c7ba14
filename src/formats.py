"""Floating-point numbers on the host side: the user's arrays as the words flits carry, and
the accumulators' words back as numbers (``dtype`` fp16 / bf16, ``docs/float.md``).

A float tile takes its weights and activations as raw FP16 or BF16 bits in the low 16 bits of a
flit's ``data`` field and keeps FP32 accumulators, whose bits travel in the 32-bit ``data``
field (ADD, WRITE_ACC, REPLY) as the signed 32-bit value of the bits (the field is signed).
The host never rounds a user's number: an input must be exactly a number of the tile's format,
or it is refused with the first value that is not.

- FP16: a ``float16`` array, or ``float32`` values that are FP16 numbers;
- BF16: numpy has no bfloat16 dtype, so ``float32`` values that are BF16 numbers (the float32
  bits with the low 16 bits zero), or an ``ml_dtypes.bfloat16`` array when that package is
  installed (it is not a dependency), or ``float16`` values that are BF16 numbers.

Infinities of either sign and NaNs are numbers of both formats (a NaN becomes the canonical
quiet NaN). Results come back as ``float32``: the FP32 accumulators exactly, every NaN the
canonical one.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .hdl.core.fp import FP32, float_format

__all__ = ["float_words", "fp32_fields", "fp32_values", "fp32_words", "same_bits"]


def _float32(name: str, values, what: str, error: type[InputError]) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.name == "bfloat16":  # ml_dtypes' type: every value is a float32
        return arr.astype(np.float32)
    if arr.dtype in (np.float16, np.float32):
        return arr.astype(np.float32)
    raise error(f"{name} must be {what}, not a {arr.dtype} array")


def float_words(dtype: str, name: str, values, *, error: type[InputError] = InputError
                ) -> np.ndarray:
    """The raw bits (``int64``, 0 .. 65535) of ``values`` in ``dtype`` (``"fp16"`` or
    ``"bf16"``).

    Raises
    ------
    InputError (``error``)
        If ``values`` is not a float16 / float32 (or bfloat16) array, or holds a value that is
        not exactly a number of the format (the message gives the first one, where it is and
        its nearest value in the format).
    """
    fmt = float_format(dtype)
    label = fmt.name.upper()
    what = (f"a float16 array or float32 values that are {label} numbers" if dtype == "fp16"
            else f"float32 values that are {label} numbers (numpy has no bfloat16; or an "
                 f"ml_dtypes.bfloat16 array)")
    arr = _float32(name, values, f"{what} (dtype {dtype!r})", error)
    bits = fmt.bits(arr)
    back = fmt.values(bits)
    bad = ~((back == arr) | np.isnan(arr))
    if bad.any():
        where = np.unravel_index(int(np.argmax(bad)), arr.shape)
        value, near = arr[where], back[where]
        raise error(f"{name}{list(map(int, where))} = {float(value)!r}, which {label} cannot "
                    f"represent exactly (nearest: {float(near)!r}); dtype {dtype!r} takes "
                    f"{what}")
    return bits.astype(np.int64)


def fp32_words(name: str, values, *, error: type[InputError] = InputError) -> np.ndarray:
    """The FP32 bits of ``values`` as ``data`` fields (:func:`fp32_fields`): float16, float32,
    or float64 values that are float32 numbers (an accumulator's starting value, a bias).

    Raises
    ------
    InputError (``error``)
        If ``values`` is not a float array, or a float64 value is not a float32 number.
    """
    arr = np.asarray(values)
    if arr.dtype == np.float64:
        single = arr.astype(np.float32)
        bad = ~((single.astype(np.float64) == arr) | np.isnan(arr))
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), arr.shape)
            raise error(f"{name}{list(map(int, where))} = {float(arr[where])!r}, which FP32 "
                        f"cannot represent exactly (nearest: {float(single[where])!r}); give "
                        f"float32 values")
        arr = single
    return fp32_fields(_float32(name, arr, "float32 values (FP32 accumulators)", error))


def fp32_fields(values) -> np.ndarray:
    """``float32`` values as the ``data`` fields that carry their bits: the signed 32-bit
    value of the bits (``int64``), every NaN the canonical one."""
    bits = FP32.bits(np.asarray(values, np.float32)).astype(np.int64)
    return bits - ((bits >> 31) << 32)


def fp32_values(fields) -> np.ndarray:
    """``data`` fields (their low 32 bits: FP32 bits) as ``float32`` values."""
    return (np.asarray(fields, np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.float32)


def same_bits(a, b) -> np.ndarray:
    """Elementwise: ``float32`` arrays ``a`` and ``b`` hold the same FP32 word, where any NaN
    equals any NaN (so +0 and -0 differ)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
