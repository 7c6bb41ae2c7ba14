"""Symmetric post-training quantization of a float MLP, and magnitude pruning.

Quantization (per tensor, zero point 0, so that zero stays zero and sparsity survives): the
inputs step ``s_0`` (given, or from the calibration set's largest magnitude), each layer's
weights step ``s_w = max|W| / qmax``, each hidden layer's output step ``s_{l+1}`` from the
calibration set (the largest magnitude of its float outputs after ReLU, over ``qmax``); biases
at accumulator scale ``round(b / (s_w * s_l))``; the requantization ``s_w * s_l / s_{l+1}``
as a 15-bit multiplier and a right shift (``mult / 2**shift``, the multiplier in
``[2**14, 2**15)`` where the shift allows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..hdl.flit import MULT_WIDTH
from .model import Layer, Network, NetworkError

__all__ = ["FloatLayer", "float_forward", "multiplier", "prune", "quantize", "quantize_inputs"]


@dataclass
class FloatLayer:
    """A float fully connected layer ``y = x @ weights.T + bias``, then ReLU if ``relu`` or
    GELU (the tanh form) if ``gelu``."""

    weights: np.ndarray
    bias: np.ndarray
    relu: bool
    gelu: bool = False
    #: a Softmax of the outputs follows (the network's last layer only)
    softmax: bool = False
    #: LayerNorm of the outputs before the activation: scale, shift (None: none) and eps
    ln_gamma: np.ndarray | None = None
    ln_beta: np.ndarray | None = None
    ln_eps: float = 1e-5


def float_forward(layers: list[FloatLayer], x: np.ndarray) -> list[np.ndarray]:
    """Every layer's output (after its LayerNorm and ReLU), float64; the last is the logits."""
    outs = []
    for layer in layers:
        x = x @ layer.weights.T + layer.bias
        if layer.ln_gamma is not None:
            x = (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(
                x.var(axis=-1, keepdims=True) + layer.ln_eps) * layer.ln_gamma + layer.ln_beta
        if layer.relu:
            x = np.maximum(x, 0.0)
        if layer.gelu:  # the tanh form (docs/nonlinear.md), in float64
            x = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
        outs.append(x)
    return outs


def prune(layers: list[FloatLayer], density: float) -> list[np.ndarray]:
    """Masks that keep the largest-magnitude ``density`` share of each layer's weights."""
    if not 0.0 < density <= 1.0:
        raise NetworkError(f"the pruned density must be in (0, 1], not {density}")
    masks = []
    for layer in layers:
        flat = np.abs(layer.weights).ravel()
        keep = max(1, round(density * flat.size))
        threshold = np.partition(flat, flat.size - keep)[flat.size - keep]
        masks.append(np.abs(layer.weights) >= threshold)
    return masks


def multiplier(real: float) -> tuple[int, int]:
    """``(mult, shift)`` with ``mult / 2**shift`` closest to ``real`` (> 0) and ``mult`` a
    15-bit unsigned integer as large as possible."""
    if not real > 0:
        raise NetworkError(f"a requantization scale must be positive, not {real}")
    top = (1 << MULT_WIDTH) - 1
    shift = max(0, MULT_WIDTH - 1 - math.floor(math.log2(real)))
    mult = round(real * (1 << shift))
    while mult > top and shift > 0:
        shift -= 1
        mult = round(real * (1 << shift))
    if mult > top:
        raise NetworkError(f"a requantization scale of {real:g} needs a multiplier beyond "
                           f"{top}")
    return max(mult, 1), shift


def quantize_inputs(x: np.ndarray, scale: float, data_width: int) -> np.ndarray:
    """Float inputs (finite) as the integers of a ``data_width``-bit network whose input step
    is ``scale``: ``round(x / scale)`` (to nearest, ties to even), clamped to the symmetric
    range ``-qmax .. qmax`` (``qmax = 2**(data_width - 1) - 1``: -127 .. 127 for int8), the
    range of the weights: zero stays zero and ``-x`` quantizes to exactly ``-q``."""
    qmax = (1 << (data_width - 1)) - 1
    with np.errstate(over="ignore"):  # beyond float64: +-inf, clamped like any large value
        steps = np.asarray(x, np.float64) / scale
    return np.clip(np.round(steps), -qmax, qmax).astype(np.int64)


def _finite(what: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        where = np.unravel_index(int(np.argmax(bad)), values.shape)
        raise NetworkError(f"{what} holds NaN or infinity ({float(values[where])} at "
                           f"{list(map(int, where))}, {int(bad.sum())} such value(s)); only "
                           f"finite values can be quantized")


def quantize(layers: list[FloatLayer], calibration: np.ndarray, *, data_width: int = 8,
             input_scale: float | None = None, name: str = "") -> Network:
    """The integer :class:`Network` of float ``layers`` (see the module documentation);
    ``calibration``: float inputs (``N x inputs``) that set the activation steps."""
    qmax = (1 << (data_width - 1)) - 1
    calibration = np.asarray(calibration, dtype=np.float64)
    if calibration.ndim != 2 or calibration.shape[1] != layers[0].weights.shape[1] or \
            not calibration.shape[0]:
        raise NetworkError(f"the calibration set must be N x {layers[0].weights.shape[1]} "
                           f"floats (N >= 1), not shape {calibration.shape}")
    _finite("the calibration set", calibration)
    for n, layer in enumerate(layers):
        _finite(f"layer {n}'s weights", np.asarray(layer.weights, np.float64))
        _finite(f"layer {n}'s bias", np.asarray(layer.bias, np.float64))
    if input_scale is not None and not (math.isfinite(input_scale) and input_scale > 0):
        raise NetworkError(f"input_scale must be a positive finite number, not {input_scale!r}")
    outs = float_forward(layers, calibration)
    s_in = input_scale or max(float(np.abs(calibration).max()), 1e-12) / qmax
    steps = [s_in] + [max(float(np.abs(o).max()), 1e-12) / qmax for o in outs[:-1]]
    qlayers = []
    for n, layer in enumerate(layers):
        s_w = max(float(np.abs(layer.weights).max()), 1e-12) / qmax
        w = np.clip(np.round(layer.weights / s_w), -qmax, qmax).astype(np.int64)
        with np.errstate(over="ignore"):  # beyond float64: inf, refused below
            b = np.round(np.asarray(layer.bias, np.float64) / (s_w * steps[n]))
        if np.abs(b).max(initial=0) >= 2.0 ** 63:
            raise NetworkError(f"layer {n}'s bias quantizes to {np.abs(b).max():.4g} "
                               f"accumulator steps, beyond any accumulator (64 bits)")
        b = b.astype(np.int64)
        if n == len(layers) - 1:
            qlayers.append(Layer(w, b))
            continue
        mult, shift = multiplier(s_w * steps[n] / steps[n + 1])
        qlayers.append(Layer(w, b, np.full(w.shape[0], mult), np.full(w.shape[0], shift),
                             layer.relu))
    return Network(qlayers, data_width, name=name, meta={"input_scale": s_in})
