"""A GPT's generation by the performance model (``wafertile run --network tinygpt
--fidelity model``, docs/gpt.md): each step's tokens from the bit-exact reference, its cycles,
MACs and flits from the prediction of the same network on the same inputs.

:func:`predict_step` is what :func:`wafertile.network.generate.generate` calls instead of the
RTL when it is given as ``predict``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..config import Config
from ..network.compiler import edge_flits
from ..network.run import per_layer_cycles
from ..sim.models.network import network_reference
from .command import layer_macs
from .layer import predict_network

__all__ = ["model_macs", "predict_step"]


def model_macs(net, program, acts: list[np.ndarray]) -> int:
    """The MACs that update an accumulator, as the model plays them: each layer's nonzero
    weights times its nonzero input activations ``acts`` (the reference's), and every MAC
    of ``program``'s other steps (attention, residual, LayerNorm, softmax), whose operands
    the model takes as nonzero: the RTL's count unless one of those is +0 or -0, and never
    below it."""
    macs = sum(layer_macs(a, layer.weights) for a, layer in zip(acts, net.layers, strict=True))
    return macs + sum(int(p.expected_macs) for p, step in zip(program.phases,
                                                              program.phase_step, strict=True)
                      if step != "layer")


def predict_step(config: Config, net, x: np.ndarray, *, detail: str = "auto"
                 ) -> tuple[dict[str, Any], np.ndarray]:
    """One step of a generation without the RTL: the figures of a network report
    (``passed`` and ``mismatches`` None: nothing is checked; ``cycles``, ``macs``, the edge
    flits, ``per_layer``, ``methods``, ``seconds``; with ``config.counters`` the ``events``
    the tiles would count) and the outputs of the reference."""
    start = time.perf_counter()
    result = predict_network(config, net, x, dense=False, detail=detail)
    y, acts = network_reference(config, net, x)
    program = result.program
    cycles = result.sparse.phase_cycles
    events = {}
    if config.counters:  # what the tiles' counters would count (docs/counters.md)
        from .events import program_events
        from .layer import network_nonzero

        sent: dict = {}
        nonzero = network_nonzero(config, net, x, program, sent=sent)
        events["events"] = program_events(config, program, nonzero, sent)
    return {**events, "passed": None, "mismatches": None, "cycles": sum(cycles),
            "macs": model_macs(net, program, acts), **edge_flits(program),
            "per_layer": per_layer_cycles(net, program, cycles, config),
            "methods": result.sparse.methods,
            "seconds": {"predict": time.perf_counter() - start}}, y
