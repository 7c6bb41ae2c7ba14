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


def model_macs(net, program, acts: list[np.ndarray], *, config: Config | None = None,
               nonzero: dict | None = None, sent: dict | None = None) -> int:
    """The MACs that update an accumulator in the MAC streams, as the harness counts them
    (``macs``: the row operations' few MACs, in their reduce phases, are left out): each
    layer's nonzero weights times its nonzero input activations ``acts`` (the reference's),
    and the MACs of ``program``'s other streams (the attention's products, the residuals).
    With ``config`` and the reference's tables (``nonzero`` and ``sent``,
    :func:`~wafertile.model.layer.network_nonzero`, which give every operand of theirs)
    those are counted as the tiles do them (:func:`~wafertile.model.events.phase_events`):
    the RTL's count. Without, every one of them is taken as done: the RTL's count unless an
    operand is +0 or -0, and never below it."""
    from .events import EVENTS, phase_events

    macs = sum(layer_macs(a, layer.weights) for a, layer in zip(acts, net.layers, strict=True))
    others = [n for n, step in enumerate(program.phase_step)
              if step != "layer" and program.phases[n].kind == "stream"]
    if config is None:
        return macs + sum(int(program.phases[n].expected_macs) for n in others)
    nonzero, sent = nonzero or {}, sent or {}
    bank = np.zeros((config.rows * config.cols, config.act_depth), bool)
    done = EVENTS.index("mac_done")
    return macs + sum(int(phase_events(config, program.phases[n], bank, nonzero.get(n),
                                       sent.get(n))[:, done].sum()) for n in others)


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
    nonzero, sent = result.tables(config, net, x)
    if config.counters:  # what the tiles' counters would count (docs/counters.md)
        from .events import program_events

        events["events"] = program_events(config, program, nonzero, sent)
    return {**events, "passed": None, "mismatches": None, "cycles": sum(cycles),
            "macs": model_macs(net, program, acts, config=config, nonzero=nonzero, sent=sent),
            **edge_flits(program),
            "per_layer": per_layer_cycles(net, program, cycles, config),
            "methods": result.sparse.methods,
            "seconds": {"predict": time.perf_counter() - start}}, y
