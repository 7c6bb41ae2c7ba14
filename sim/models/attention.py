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
from . import nonlinear as nl
from .rows import softmax

__all__ = ["attention", "attention_grad"]


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


def _unheads(words: np.ndarray, heads: int, sequences: int) -> np.ndarray:
    """``S H x T x D`` as ``S T x (H D)`` (the inverse of :func:`_heads`)."""
    _, T, D = words.shape
    return words.reshape(sequences, heads, T, D).transpose(0, 2, 1, 3).reshape(
        sequences * T, heads * D)


def attention_grad(forward: dict, do, heads: int, dtype: str, sequences: int = 1
                   ) -> dict[str, np.ndarray]:
    """The derivative of causal self-attention as ``docs/attention.md`` ("The derivative")
    writes it: from the forward pass's words (``forward``: :func:`attention`'s result, whose
    ``q``, ``k``, ``v`` and ``p`` the tiles keep) and ``do``, the gradient of the outputs as
    words of the format (``S T x (H D)``). Every sum in the page's order: ``dP`` over the
    features ascending, ``c`` and ``dQ`` over ``j`` ascending, ``dK`` and ``dV`` over ``i``
    ascending; the masked pairs never made.

    Returns FP32 words (uint32): ``dq``, ``dk``, ``dv`` (``S T x (H D)``: the gradient of the
    projection's accumulators), ``dp`` and ``ds`` (``S H x T x T``, +0 where masked), and per
    row ``c`` (FP32) with ``c1``, ``c2`` (words of the format, ``S H x T``).
    """
    fmt = float_format(dtype)
    Q, K, V, P = (np.asarray(forward[k]).astype(np.uint32) for k in ("q", "k", "v", "p"))
    H, T, D = Q.shape
    dO = _heads(np.asarray(do).astype(np.uint32), heads, sequences)
    if dO.shape != Q.shape:
        raise ValueError(f"do must be {sequences * T} x {heads * D} words, not "
                         f"{np.shape(do)}")
    causal = np.tril(np.ones((T, T), bool))[None]
    one = fmt.bits(np.float32(1.0))
    minus = fmt.bits(np.float32(-1.0))
    zero = np.zeros((H, T, T), np.uint32)
    # dP[h, i, j]: e ascending, weights V[j, e] on dO[i, e]
    dP = zero
    for e in range(D):
        dP = fp.mac(dP, V[:, None, :, e], dO[:, :, None, e], fmt)
    dP = np.where(causal, dP, 0).astype(np.uint32)
    # the softmax's derivative in each head's tile, slot order j
    p = fp.mac(zero, one, P, fmt)
    t = nl.mul(dP, p).astype(np.uint32)
    c = t[:, :, 0].copy()
    for j in range(1, T):
        c = np.where(j <= np.arange(T)[None, :], fp.add(c, t[:, :, j]), c).astype(np.uint32)
    c1 = fp.to_half(c, fmt)
    c2 = fp.to_half(fp.mac(c, minus, c1, fmt), fmt)
    e_ = fp.mac(fp.mac(dP, minus, c1[:, :, None], fmt), minus, c2[:, :, None], fmt)
    dS = np.where(causal, nl.mul(e_, p), 0).astype(np.uint32)
    w = fp.to_half(dS, fmt)  # the weights the tiles send
    # dQ[h, i, d]: j ascending (j <= i), weights fmt(dS[i, j]) on K[j, d]
    dQ = np.zeros((H, T, D), np.uint32)
    for j in range(T):
        step = fp.mac(dQ, w[:, :, j, None], K[:, None, j, :], fmt)
        dQ = np.where(causal[0, :, j][None, :, None], step, dQ).astype(np.uint32)
    # dK[h, j, d] and dV[h, j, e]: i ascending (i >= j)
    dK = np.zeros((H, T, D), np.uint32)
    dV = np.zeros((H, T, D), np.uint32)
    for i in range(T):
        later = causal[0, i, :][None, :, None]  # rows j <= i take row i's terms
        dK = np.where(later, fp.mac(dK, w[:, i, :, None], Q[:, i, None, :], fmt), dK)
        dV = np.where(later, fp.mac(dV, dO[:, i, None, :], P[:, i, :, None], fmt), dV)
    return {"dq": _unheads(dQ, heads, sequences), "dk": _unheads(dK.astype(np.uint32), heads,
                                                                 sequences),
            "dv": _unheads(dV.astype(np.uint32), heads, sequences), "dp": dP, "ds": dS,
            "c": c, "c1": c1, "c2": c2}
