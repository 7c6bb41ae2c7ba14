"""The bit-exact reference of the row operations on the fabric (:mod:`wafertile.stream.rows`).

:func:`softmax` follows ``docs/nonlinear.md`` ("Softmax on the fabric") step by step, in the
orders the compiled phases fix: each tile's elements in slot order, the tiles in column
order. Vectorized over the batch (one numpy operation per element and step).
"""

from __future__ import annotations

import numpy as np

from ...hdl.core.fp import float_format
from . import fp
from . import nonlinear as nl

__all__ = ["softmax"]

#: The words of -1 and 1 in each 16-bit format (the MAC weights of the steps).
_MINUS_ONE = {"bf16": 0xBF80, "fp16": 0xBC00}
_ONE = {"bf16": 0x3F80, "fp16": 0x3C00}


def _fold(words: np.ndarray, step) -> np.ndarray:
    """``step(...step(step(w0, w1), w2)..., w_last)`` over the last axis (the first a copy)."""
    out = words[..., 0]
    for k in range(1, words.shape[-1]):
        out = step(out, words[..., k])
    return out.astype(np.uint32)


def softmax(words, parts: list[np.ndarray], dtype: str) -> np.ndarray:
    """The softmax of each row of ``words`` (``B x I`` FP32 words, uint32) as the tiles make
    it: ``parts[g]`` are the outputs tile ``g`` holds, in slot order (``LayerPlan.parts``);
    ``dtype`` the tiles' format (the maximum and the reciprocal sum cross the row as its
    numbers). FP32 words, ``B x I``."""
    fmt = float_format(dtype)
    x = np.asarray(words, np.uint32)
    tiles = [np.asarray(part, np.int64) for part in parts if len(part)]
    # 1. the maximum: per tile in slot order, then the tiles (the order of the tiles only
    # changes the sign of a zero maximum, which step 2 does not see)
    m = _fold(np.stack([_fold(x[:, part], nl.maximum) for part in tiles], axis=-1),
              nl.maximum)
    # 2. x - c, c = the maximum rounded to the format: a MAC with weight -1 (skipped if c is
    # a zero), then exp
    c = fp.to_half(m, fmt)
    e = nl.exp(fp.mac(x, _MINUS_ONE[dtype], c[:, None], fmt))
    # 3. the sum: per tile in slot order, then tile 0's plus tile 1's, plus tile 2's ...
    total = _fold(np.stack([_fold(e[:, part], fp.add) for part in tiles], axis=-1), fp.add)
    # 4. r = 1 / sum rounded to the format, copied into a zeroed accumulator by a MAC with
    # weight 1 (+0 if r is a zero), times every element
    r = fp.to_half(nl.reciprocal(total), fmt)
    z = fp.mac(np.zeros_like(r, np.uint32), _ONE[dtype], r, fmt)
    return nl.mul(e, z[:, None]).astype(np.uint32)
