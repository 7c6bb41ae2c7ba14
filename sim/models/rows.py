"""The bit-exact reference of the row operations on the fabric (:mod:`wafertile.stream.rows`).

:func:`softmax` and :func:`layernorm` follow ``docs/nonlinear.md`` ("Softmax on the fabric",
"LayerNorm on the fabric") step by step, in the orders the compiled phases fix: each tile's
elements in slot order, the tiles in column order. Vectorized over the batch (one numpy
operation per element and step).
"""

from __future__ import annotations

import numpy as np

from ...hdl.core.fp import float_format
from . import fp
from . import nonlinear as nl

__all__ = ["layernorm", "layernorm_grad", "softmax"]

#: The words of -1 and 1 in each 16-bit format (the MAC weights of the steps).
_MINUS_ONE = {"bf16": 0xBF80, "fp16": 0xBC00}
_ONE = {"bf16": 0x3F80, "fp16": 0x3C00}


def _fold(words: np.ndarray, step) -> np.ndarray:
    """``step(...step(step(w0, w1), w2)..., w_last)`` over the last axis (the first a copy)."""
    out = words[..., 0]
    for k in range(1, words.shape[-1]):
        out = step(out, words[..., k])
    return out.astype(np.uint32)


def softmax(words, parts: list[np.ndarray], dtype: str, steps: dict | None = None
            ) -> np.ndarray:
    """The softmax of each row of ``words`` (``B x I`` FP32 words, uint32) as the tiles make
    it: ``parts[g]`` are the outputs tile ``g`` holds, in slot order (``LayerPlan.parts``);
    ``dtype`` the tiles' format (the maximum and the reciprocal sum cross the row as its
    numbers). FP32 words, ``B x I``. ``steps``: a dict that takes the two numbers that cross
    the row, per row, as words of the format: ``"max"`` (``c``, step 2) and ``"recip"``
    (``r``, step 4)."""
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
    total = _tile_sum(e, tiles)
    # 4. r = 1 / sum rounded to the format, copied into a zeroed accumulator by a MAC with
    # weight 1 (+0 if r is a zero), times every element
    r = fp.to_half(nl.reciprocal(total), fmt)
    z = fp.mac(np.zeros_like(r, np.uint32), _ONE[dtype], r, fmt)
    if steps is not None:
        steps["max"], steps["recip"] = c, r
    return nl.mul(e, z[:, None]).astype(np.uint32)


def _tile_sum(words: np.ndarray, tiles: list[np.ndarray]) -> np.ndarray:
    """Each tile's elements added in slot order (the first a copy), then the tiles' sums in
    column order: per row."""
    return _fold(np.stack([_fold(words[:, part], fp.add) for part in tiles], axis=-1), fp.add)


def _minus(x: np.ndarray, c: np.ndarray, dtype: str) -> np.ndarray:
    """``fp32(x + fp32(-1) * c)`` for a number ``c`` of the format (its words), or ``x`` if
    ``c`` is a zero: a MAC with weight -1."""
    return fp.mac(x, _MINUS_ONE[dtype], c, float_format(dtype))


def layernorm(words, parts: list[np.ndarray], dtype: str, gamma, beta, eps,
              steps: dict | None = None) -> np.ndarray:
    """LayerNorm of each row of ``words`` (``B x I`` FP32 words, uint32) as the tiles make it
    (``parts`` and ``dtype`` as :func:`softmax`): ``gamma``, ``beta`` (``I`` FP32 words) and
    ``eps`` (one FP32 word). FP32 words, ``B x I``. ``steps``: a dict that takes the three
    numbers that cross the row, per row, as words of the format: ``"mean"`` (``c1``),
    ``"mean2"`` (``c2``) and ``"rsqrt"`` (``r``); and ``"xhat"``, the normalized outputs
    ``fmt(d z)`` before gamma and beta (``B x I``: what a training step keeps)."""
    fmt = float_format(dtype)
    x = np.asarray(words, np.uint32)
    tiles = [np.asarray(part, np.int64) for part in parts if len(part)]
    n = np.float32(1.0) / np.float32(x.shape[1])
    n_word = np.array([n], np.float32).view(np.uint32)[0]
    # 1. the mean
    mu = nl.mul(_tile_sum(x, tiles), n_word)
    # 2. mu as c1 + c2, numbers of the format; d = (x - c1) - c2
    c1 = fp.to_half(mu, fmt)
    c2 = fp.to_half(_minus(mu, c1, dtype), fmt)
    d = _minus(_minus(x, c1[:, None], dtype), c2[:, None], dtype)
    # 3. the variance: d * d, summed as in step 1
    v = fp.add(nl.mul(_tile_sum(nl.mul(d, d), tiles), n_word), np.uint32(eps))
    r = fp.to_half(nl.rsqrt(v), fmt)
    if steps is not None:
        steps["mean"], steps["mean2"], steps["rsqrt"] = c1, c2, r
    # 4. d * r (r copied into a zeroed accumulator), then gamma and beta
    z = fp.mac(np.zeros_like(r, np.uint32), _ONE[dtype], r, fmt)
    xhat = nl.mul(d, z[:, None])
    if steps is not None:
        steps["xhat"] = fp.to_half(xhat, fmt)
    y = nl.mul(xhat, np.asarray(gamma, np.uint32)[None, :])
    return fp.add(y, np.asarray(beta, np.uint32)[None, :]).astype(np.uint32)


def layernorm_grad(dy, parts: list[np.ndarray], dtype: str, gamma, xhat, r,
                   steps: dict | None = None) -> np.ndarray:
    """LayerNorm's derivative along each row as the tiles make it (``docs/nonlinear.md``,
    "LayerNorm's derivative on the fabric"; ``parts`` and ``dtype`` as :func:`softmax`):
    ``dy`` the gradient of the outputs (``B x I`` FP32 words, uint32), ``gamma`` (``I`` FP32
    words), ``xhat`` the forward pass's normalized outputs as words of the format (``B x
    I``) and ``r`` its reciprocal square roots (``B`` words of the format). The gradient of
    the inputs: FP32 words, ``B x I``. ``steps``: a dict that takes what the FINISHes send,
    as words of the format: ``"g"`` (``fmt(g)``, ``B x I``), and per row ``"k"``, ``"c1"``,
    ``"c2"`` and ``"w"``."""
    fmt = float_format(dtype)
    dy = np.asarray(dy, np.uint32)
    xhat = np.asarray(xhat).astype(np.uint32)
    tiles = [np.asarray(part, np.int64) for part in parts if len(part)]
    n = np.float32(1.0) / np.float32(dy.shape[1])
    n_word = np.array([n], np.float32).view(np.uint32)[0]
    zero = np.zeros(len(dy), np.uint32)
    # 1. g = dY gamma
    g = nl.mul(dy, np.asarray(gamma, np.uint32)[None, :]).astype(np.uint32)
    # 2. k = fmt(mean(fmt(g) X^)): each tile's products into p in slot order, then the tiles
    g_half = fp.to_half(g, fmt)
    sums = []
    for part in tiles:
        p = zero
        for i in part:
            p = fp.mac(p, g_half[:, i], xhat[:, i], fmt)
        sums.append(p)
    k = fp.to_half(nl.mul(_fold(np.stack(sums, axis=-1), fp.add), n_word), fmt)
    # 3. e = (g - c1) - c2, mean(g) = c1 + c2 as the forward pass's mean
    m = nl.mul(_tile_sum(g, tiles), n_word)
    c1 = fp.to_half(m, fmt)
    c2 = fp.to_half(_minus(m, c1, dtype), fmt)
    e = _minus(_minus(g, c1[:, None], dtype), c2[:, None], dtype)
    # 4. e + w X^, w = fmt(+0 - k) (+0 if k is a zero)
    w = fp.to_half(_minus(zero, k, dtype), fmt)
    e = fp.mac(e, w[:, None], xhat, fmt)
    if steps is not None:
        steps.update(g=g_half, k=k, c1=c1, c2=c2, w=w)
    # 5. times r (copied into a zeroed accumulator)
    z = fp.mac(zero, _ONE[dtype], np.asarray(r).astype(np.uint32), fmt)
    return nl.mul(e, z[:, None]).astype(np.uint32)
