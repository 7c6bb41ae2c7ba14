"""The numpy reference of a layer and the checks of its inputs.

:func:`reference` computes ``Y = X @ W.T`` as the tiles do (the accumulator's overflow rule,
or the FP32 arithmetic of a floating-point ``dtype``), the outputs a run is compared with word
for word; :func:`layer_words` turns a float layer into the words its flits carry;
:func:`check_layer` (and :func:`check_inputs` on the words) refuses, with a
:class:`~wafertile.stream.LayerError`, a layer that cannot run on a configuration.
"""

from __future__ import annotations

import numpy as np

from ..config import Config, Overflow
from ..formats import float_words, fp32_values
from .plan import row_chunks
from .program import LayerError

__all__ = ["check_inputs", "check_layer", "layer_words", "reference"]


def reference(config: Config, x: np.ndarray, w: np.ndarray,
              bias: np.ndarray | None = None) -> np.ndarray:
    """``X @ W.T`` (``+ bias``, the accumulators' starting values) with the accumulator's
    overflow rule, accumulating in the order of ``j``.

    With a floating-point ``dtype`` (``x`` and ``w`` as :func:`compile_layer` takes them,
    ``bias`` as ``data`` fields of FP32 words, :func:`wafertile.formats.fp32_fields`): the
    tiles' arithmetic, as ``float32`` values (every NaN the canonical one). Per chunk ``k`` of
    the activation row (``J`` split over ``K`` tiles, as the compiler splits it), the partial
    sum ``p_k`` starts from +0 (``p_0`` from the bias) and takes ``p = fp32(p + fp32(w) *
    fp32(a))`` for ``j`` ascending, skipping every ``j`` where ``w`` or ``a`` is +0 or -0;
    then ``Y = fp32(...fp32(fp32(p_0 + p_1) + p_2) ... + p_{K-1})`` (``docs/float.md``).

    With ``overflow = "wrap"`` the result is the exact product wrapped to ``acc_width`` bits
    (wrapping commutes with addition). With ``"saturate"`` the tiles clamp after every MAC, so
    the reference does the same, in the order the compiler streams the weights (ascending
    ``j`` per output): a zero weight or activation adds zero, which leaves a clamped sum
    unchanged, so skipping it (as the hardware does) and adding it are the same. Vectorized
    over the outputs (exact ``int64``: products of two 16-bit values summed over up to 2**17
    terms stay below 2**63; wider sums go through Python integers).
    """
    if config.is_float:
        x, w = layer_words(config, x, w)
        return fp32_values(_float_reference(config, x, w, bias))
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    bits = config.acc_width
    J = x.shape[1] if x.ndim == 2 else 0
    exact_int64 = J * (1 << (2 * config.data_width - 2)) < (1 << 62)
    start = np.zeros(w.shape[0], dtype=np.int64) if bias is None else \
        np.asarray(bias, dtype=np.int64)
    if config.overflow_mode is Overflow.SATURATE:
        lo, hi = config.acc_min, config.acc_max
        acc = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64) + start
        for j in range(J):  # one vector step per input: every output at once
            acc += np.multiply.outer(x[:, j], w[:, j])
            np.clip(acc, lo, hi, out=acc)
        return acc
    if not exact_int64:  # pragma: no cover - J beyond 2**(64 - 2 * data_width)
        raise LayerError(f"an activation row of {J} values is too long for the exact "
                         f"reference of {config.data_width}-bit data")
    y = x @ w.T + start  # exact: |y| < 2**62
    if bits == 64:
        return y
    y = y & ((1 << bits) - 1)
    return y - ((y >> (bits - 1)) & 1) * (1 << bits)


def _float_reference(config: Config, x: np.ndarray, w: np.ndarray,
                     bias: np.ndarray | None) -> np.ndarray:
    """:func:`reference` of a float layer on words (:func:`layer_words`): FP32 bits."""
    # imported here: the package wafertile.sim.models imports this module
    from ..sim.models.fp import add, mac

    B, J = x.shape
    I = w.shape[0]
    K = row_chunks(config, J)
    chunk = -(-J // K) if J else 1
    total = None
    for k in range(K):
        part = np.zeros((B, I), np.uint32)
        if k == 0 and bias is not None:
            part += (np.asarray(bias, np.int64) & 0xFFFFFFFF).astype(np.uint32)
        for j in range(k * chunk, min(J, (k + 1) * chunk)):
            part = mac(part, w[None, :, j], x[:, None, j], config.dtype)
        total = part if total is None else add(total, part)
    return total if total is not None else np.zeros((B, I), np.uint32)


def layer_words(config: Config, x: np.ndarray, w: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The activations and weights of a float layer as the words its flits carry: the bits of
    every value in ``config.dtype`` (:func:`wafertile.formats.float_words`), with a weight of
    -0 as +0 (a zero weight is never sent: it costs nothing either way).

    Raises
    ------
    LayerError
        If an array is not 2-D, not a float16 / float32 array, or holds a value that is not
        a number of the format (the first one is named).
    """
    out = []
    for name, arr in (("activations", x), ("weights", w)):
        arr = np.asarray(arr)
        if arr.ndim != 2:
            raise LayerError(f"{name} must be a 2-D float array, not {arr.ndim}-D "
                             f"(shape {arr.shape})")
        out.append(float_words(config.dtype, name, arr, error=LayerError))
    x, w = out
    return x, np.where((w & 0x7FFF) == 0, 0, w)


def check_layer(config: Config, x: np.ndarray, w: np.ndarray) -> None:
    """Check a layer as :func:`compile_layer` does before compiling it (shapes, values, sizes
    against the configuration; integer arrays, or a float format's words).

    Raises
    ------
    LayerError
        As :func:`compile_layer`.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if config.is_float:
        x, w = layer_words(config, x, w)
    check_inputs(config, x, w)


def check_inputs(config: Config, x: np.ndarray, w: np.ndarray) -> None:
    """The checks of :func:`check_layer` on the layer's words (integers, or a float
    format's words from :func:`layer_words`)."""
    for name, arr in (("activations", x), ("weights", w)):
        if arr.ndim != 2:
            raise LayerError(f"{name} must be a 2-D integer array, not {arr.ndim}-D "
                             f"(shape {arr.shape})")
        if config.is_float:  # words: layer_words checked the values
            continue
        if not np.issubdtype(arr.dtype, np.integer):
            raise LayerError(f"{name} must be integers, not {arr.dtype}")
        if arr.size and (arr.min() < config.data_min or arr.max() > config.data_max):
            raise LayerError(
                f"{name} must be within the {config.data_width}-bit signed range "
                f"{config.data_min}..{config.data_max}, found {arr.min()}..{arr.max()}")
    if x.shape[1] != w.shape[1]:
        raise LayerError(f"activations are {x.shape[0]} x {x.shape[1]} and weights "
                         f"{w.shape[0]} x {w.shape[1]}: Y = X @ W.T needs the same number of "
                         f"columns (J)")
    J = x.shape[1]
    chunks = row_chunks(config, J)
    if chunks > config.cols:
        raise LayerError(f"an activation row has {J} values (J) but a tile's activation bank "
                         f"holds act_depth = {config.act_depth}: the row needs {chunks} tiles "
                         f"of a row and the array has cols = {config.cols}, so the layer's "
                         f"activations do not fit")
    if chunks > 1 and config.overflow_mode is Overflow.SATURATE:
        raise LayerError(f"an activation row has {J} values (J) and a tile's activation bank "
                         f"holds act_depth = {config.act_depth}: splitting it over {chunks} "
                         f"tiles adds partial sums, which overflow = 'saturate' would clamp "
                         f"per tile (not after every MAC); use overflow = 'wrap' or "
                         f"act_depth >= {J}")
    if config.cols > (1 << config.addr_width):
        raise LayerError(f"{config.cols} columns cannot be told apart in replies with "
                         f"{config.addr_width}-bit address fields (raise act_depth/acc_depth)")
