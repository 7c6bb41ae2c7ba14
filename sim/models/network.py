"""The bit-exact reference of a whole network on the fabric.

Layer by layer, exactly as the tiles compute it: the accumulators start from the bias and take
the MACs with the configuration's overflow rule in ascending input order
(:func:`wafertile.stream.reference`); every layer but the last requantizes them into the next
layer's activations with FINISH's arithmetic (:func:`~wafertile.sim.models.core.requantize`);
the last layer's accumulators are the outputs.

A floating-point network (``dtype`` fp16 / bf16): the accumulators start from the FP32 bias
and take the MACs in FP32 in ascending input order, skipping zero operands, with the partial
sums of a split layer added in block order (:func:`wafertile.stream.reference`); the hand-off
is ReLU or GELU in FP32 if the layer has it (:func:`~wafertile.sim.models.fp.relu`,
:func:`~wafertile.sim.models.nonlinear.gelu`: NONLINEAR's, ``docs/nonlinear.md``) and the rounding
to the format, to nearest even (:func:`~wafertile.sim.models.fp.to_half`); the outputs are
the last layer's FP32 accumulators, as ``float32``, or with ``softmax`` their softmax along
each row as the tiles make it (:func:`~wafertile.sim.models.rows.softmax`). A residual
connection (``res``): the layer's accumulators, after its MACs, each take one more MAC, of
weight 1 on the kept output (the earlier layer's accumulator before its LayerNorm, rounded to
the format; :func:`~wafertile.sim.models.fp.mac`, zero skipping included).
"""

from __future__ import annotations

import numpy as np

from ...config import Config
from ...formats import fp32_fields, fp32_values, fp32_words
from ...hdl.core.fp import float_format
from ...stream import plan_layer, reference
from .attention import attention
from .core import requantize
from .fp import mac as fp_mac
from .fp import relu as fp_relu
from .fp import to_half as fp_to_half
from .nonlinear import gelu as nl_gelu
from .rows import layernorm, softmax

__all__ = ["network_reference"]


def network_reference(config: Config, net, x: np.ndarray, *, kept: dict | None = None,
                      steps: dict | None = None) -> tuple[np.ndarray, list]:
    """``(outputs, activations)``: the last layer's accumulators (``B x outputs``) and the
    activations that entered each layer (``activations[0]`` is ``x``; for a float network
    ``float32`` values of its format, the outputs ``float32``). ``kept``: a dict that takes
    the kept outputs of each layer a residual adds (its index -> ``B x outputs`` words of
    the format); ``steps``: a dict that takes, per layer with row operations (its index), the
    numbers they hand on, the whole batch: ``"attention"``, :func:`~.attention.attention`'s
    dict; ``"layernorm"`` and ``"softmax"``, the ``steps`` of :func:`~.rows.layernorm` and
    :func:`~.rows.softmax`."""
    if net.is_float:
        return _float_reference(config, net, x, {} if kept is None else kept,
                                {} if steps is None else steps)
    acts = [np.asarray(x, dtype=np.int64)]
    for n, layer in enumerate(net.layers):
        acc = reference(config, acts[-1], layer.weights, layer.bias)
        if n == len(net.layers) - 1:
            return acc, acts
        acts.append(requantize(acc, layer.mult[None, :], layer.shift[None, :], layer.relu,
                               config))
    raise AssertionError("a network has at least one layer")  # pragma: no cover


def _float_reference(config: Config, net, x: np.ndarray, store: dict, steps: dict
                     ) -> tuple[np.ndarray, list]:
    fmt = float_format(net.dtype)
    acts = [np.asarray(x, dtype=np.float32)]
    kept = None  # the outputs a later layer adds (res), rounded to the format: words
    one = fmt.bits(np.float32(1))
    for n, layer in enumerate(net.layers):
        acc = reference(config, acts[-1], np.asarray(layer.weights, np.float32),
                        fp32_words(f"b{n}", layer.bias))
        if layer.res is not None:  # one MAC of weight 1 on each kept output, after the rest
            acc = fp32_values(fp_mac(fp32_fields(acc), one, kept, fmt))
        if n in net.keeps:  # before the LayerNorm
            kept = store[n] = fp_to_half(fp32_fields(acc), fmt)
        if layer.layernorm:  # along each row, in the orders of the tiles that hold it
            parts = plan_layer(config, layer.weights, streams=False).parts(0)
            words = [fp32_words(k, v) & 0xFFFFFFFF for k, v in
                     (("ln_g", layer.ln_gamma), ("ln_b", layer.ln_beta),
                      ("ln_eps", np.float32(layer.ln_eps)))]
            steps.setdefault(n, {})["layernorm"] = {}
            acc = layernorm(acc.view(np.uint32), parts, net.dtype, *words,
                            steps[n]["layernorm"]).view(np.float32)
        if n == len(net.layers) - 1:
            if net.softmax:  # along each row, in the orders of the tiles that hold it
                parts = plan_layer(config, layer.weights, streams=False).parts(0)
                steps.setdefault(n, {})["softmax"] = {}
                acc = softmax(acc.view(np.uint32), parts, net.dtype,
                              steps[n]["softmax"]).view(np.float32)
            return acc, acts
        word = fp32_fields(acc) & 0xFFFFFFFF
        if layer.attn:  # over each sequence of the batch (docs/attention.md)
            width = layer.outputs // 3
            done = steps.setdefault(n, {})["attention"] = attention(
                *(word[:, k * width:(k + 1) * width] for k in range(3)), layer.attn,
                net.dtype, net.sequences(len(word))[0])
            word = done["out"].astype(word.dtype)
        if layer.relu:
            word = fp_relu(word)
        if layer.gelu:
            word = nl_gelu(word.astype(np.uint32)).astype(word.dtype)
        acts.append(fmt.values(fp_to_half(word, fmt)))
    raise AssertionError("a network has at least one layer")  # pragma: no cover
