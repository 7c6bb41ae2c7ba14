"""The bit-exact reference of causal self-attention as the tiles make it (``docs/attention.md``).

:func:`attention` follows the page's arithmetic step by step: the queries, keys, values and
probabilities rounded to the tiles' format where a tile hands them on, every score summed over
the features in ascending order and every output over the positions in ascending order (the
orders the mapping fixes: each sum's MACs come from one tile), the masked scores never made,
and each row's softmax the fabric's softmax of one tile (:func:`.rows.softmax`). Vectorized
over heads, positions and features; a loop over the features of a head, then over the
positions (the sums' orders, and the rows' lengths).
"""

from __future__ import annotations

import numpy as np

from ...hdl.core.fp import float_format
from . import fp
from .rows import softmax

__all__ = ["attention"]


def _heads(words: np.ndarray, heads: int, sequences: int) -> np.ndarray:
    """``S T x (H D)`` words as ``S H x T x D`` (sequence after sequence)."""
    rows, width = words.shape
    T = rows // sequences
    return words.reshape(sequences, T, heads, width // heads).transpose(0, 2, 1, 3).reshape(
        sequences * heads, T, width // heads)


def attention(q, k, v, heads: int, dtype: str, sequences: int = 1) -> dict[str, np.ndarray]:
    """Causal self-attention of ``sequences`` sequences of ``T`` positions each from the
    projection's FP32 accumulators ``q``, ``k``, ``v`` (``S T x (H D)`` FP32 words, uint32,
    sequence after sequence; the scale already in ``q``): ``heads`` heads of ``D`` features,
    ``dtype`` the tiles' format. Each sequence attends to its own positions only.

    Returns the steps as FP32 words (uint32): ``scores`` (``S H x T x T``, sequence ``s``'s
    head ``h`` at ``s H + h``, the masked ones ``-inf``, never made on the fabric), ``probs``
    (likewise, the masked ones +0), ``out`` (``S T x (H D)``: the attention's FP32
    accumulators, before the hand-off rounds them); and what the tiles hand on, as words of
    the format: ``q``, ``k``, ``v`` (``S H x T x D``), each row's softmax's ``max`` and
    ``recip`` (``S H x T``, :func:`.rows.softmax`'s ``steps``) and ``p``, the
    probabilities rounded (``S H x T x T``), the weights of the outputs' MACs.

    Raises
    ------
    ValueError
        If the shapes differ, are not 2-D, ``H D`` is not a multiple of ``heads`` or the rows
        not a multiple of ``sequences``.
    """
    fmt = float_format(dtype)
    q, k, v = (np.asarray(a).astype(np.uint32) for a in (q, k, v))
    if q.ndim != 2 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k and v must be T x (H D) arrays of one shape, not "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if heads < 1 or q.shape[1] % heads:
        raise ValueError(f"{q.shape[1]} features do not split into {heads} heads")
    if sequences < 1 or q.shape[0] % sequences:
        raise ValueError(f"{q.shape[0]} positions do not split into {sequences} sequences")
    T = q.shape[0] // sequences
    # S H x T x D: the sequences' heads side by side (they never meet)
    Q, K, V = (fp.to_half(_heads(a, heads, sequences), fmt) for a in (q, k, v))
    H, _, D = Q.shape
    # the scores: S[h, i, j] from +0, one MAC per feature d in ascending order, j <= i only
    S = np.zeros((H, T, T), np.uint32)
    for d in range(D):
        S = fp.mac(S, K[:, None, :, d], Q[:, :, None, d], fmt)
    causal = np.tril(np.ones((T, T), bool))
    neg_inf = np.uint32(0xFF800000)
    scores = np.where(causal, S, neg_inf).astype(np.uint32)
    # each row's softmax over its i + 1 elements, in one tile (slot order j)
    probs = np.zeros((H, T, T), np.uint32)
    crossing = {"max": np.zeros((H, T), np.uint32), "recip": np.zeros((H, T), np.uint32)}
    for i in range(T):
        steps: dict = {}
        probs[:, i, :i + 1] = softmax(S[:, i, :i + 1], [np.arange(i + 1)], dtype, steps)
        for name, words in steps.items():
            crossing[name][:, i] = words
    # the outputs: O[h, i, e] from +0, one MAC per position j <= i in ascending order
    P = fp.to_half(probs, fmt)
    O = np.zeros((H, T, D), np.uint32)
    for j in range(T):
        step = fp.mac(O, P[:, :, j, None], V[:, None, j, :], fmt)
        O = np.where(causal[:, j][None, :, None], step, O).astype(np.uint32)
    out = O.reshape(sequences, heads, T, D).transpose(0, 2, 1, 3).reshape(
        sequences * T, heads * D)
    return {"scores": scores, "probs": probs, "out": out, "q": Q, "k": K, "v": V, "p": P,
            **crossing}
