"""The bit-exact integer reference of a whole network on the fabric.

Layer by layer, exactly as the tiles compute it: the accumulators start from the bias and take
the MACs with the configuration's overflow rule in ascending input order
(:func:`wafertile.stream.reference`); every layer but the last requantizes them into the next
layer's activations with FINISH's arithmetic (:func:`~wafertile.sim.models.core.requantize`);
the last layer's accumulators are the outputs.
"""

from __future__ import annotations

import numpy as np

from ...config import Config
from ...stream import reference
from .core import requantize

__all__ = ["network_reference"]


def network_reference(config: Config, net, x: np.ndarray) -> tuple[np.ndarray, list]:
    """``(outputs, activations)``: the last layer's accumulators (``B x outputs``) and the
    activations that entered each layer (``activations[0]`` is ``x``)."""
    acts = [np.asarray(x, dtype=np.int64)]
    for n, layer in enumerate(net.layers):
        acc = reference(config, acts[-1], layer.weights, layer.bias)
        if n == len(net.layers) - 1:
            return acc, acts
        acts.append(requantize(acc, layer.mult[None, :], layer.shift[None, :], layer.relu,
                               config))
    raise AssertionError("a network has at least one layer")  # pragma: no cover
