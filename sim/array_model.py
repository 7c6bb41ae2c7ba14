"""Functional (untimed) model of the tile array running a :class:`~wafertile.stream.LayerProgram`.

Each tile is a :class:`~wafertile.sim.model.CoreModel`. A flit injected at a west port is
delivered to every tile of its rectangle; the order in which ports' flits interleave is drawn
from a seeded generator (only the order within a port is guaranteed by the fabric, so the
program must give the same result for every interleaving). Replies to the host are collected
per west port. This checks the compiler's mapping without any RTL; the cocotb array
regression checks the RTL against :func:`wafertile.stream.reference` the same way.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..hdl.flit import Opcode
from ..stream import LayerProgram
from .model import CoreModel

__all__ = ["ArrayModel", "collect_outputs"]


class ArrayModel:
    def __init__(self, config: Config):
        self.config = config
        self.tiles = {(x, y): CoreModel(config) for y in range(config.rows)
                      for x in range(config.cols)}
        self.replies: dict[int, list[dict]] = {y: [] for y in range(config.rows)}

    def deliver(self, flit: dict) -> None:
        h = flit["header"]
        cfg = self.config
        for y in range(h["y0"], h["y1"] + 1):
            for x in range(h["x0"], h["x1"] + 1):
                out = self.tiles[x, y].step(flit["payload"])
                if out is not None:
                    tag = int(flit["payload"].get("data", 0)) & ((1 << cfg.acc_width) - 1)
                    ry = (tag >> cfg.x_width) & ((1 << cfg.y_width) - 1)
                    self.replies[ry].append(out)

    def run(self, program: LayerProgram, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        B, I, _ = program.shape
        y_out = np.zeros((B, I), dtype=np.int64)
        for phase in program.phases:
            queues: dict[int, list[dict]] = {}
            for port, flit in phase.injections:
                queues.setdefault(port, []).append(flit)
            for r in self.replies.values():
                r.clear()
            while queues:
                port = list(queues)[int(rng.integers(len(queues)))]
                self.deliver(queues[port].pop(0))
                if not queues[port]:
                    del queues[port]
            collect_outputs(phase, self.replies, y_out)
        return y_out


def collect_outputs(phase, replies: dict[int, list[dict]], y_out: np.ndarray) -> None:
    """Place a phase's replies (per west row) into ``y_out``; every expected one must be there.

    Raises
    ------
    AssertionError
        On a missing, unexpected or duplicated reply.
    """
    seen = set()
    for row, flits in replies.items():
        for f in flits:
            assert f["op"] == Opcode.REPLY, f"unexpected flit at west port {row}: {f}"
            key = (row, int(f["addr"]), int(f["addr_b"]))
            assert key in phase.replies, f"unexpected reply {key} in a {phase.kind} phase"
            assert key not in seen, f"duplicated reply {key}"
            seen.add(key)
            target = phase.replies[key]
            if target is not None:
                y_out[target] = f["data"]
    missing = set(phase.replies) - seen
    assert not missing, f"{len(missing)} replies missing in a {phase.kind} phase, e.g. " \
                        f"{sorted(missing)[:3]}"
