"""Functional (untimed) model of the tile array running a :class:`~wafertile.stream.LayerProgram`.

Each tile is a :class:`~wafertile.sim.models.core.CoreModel`. A flit injected at a west port is
delivered to every tile of its rectangle. A core's outputs (READ replies, SEND's ADD flits)
go, in the order the core emits them, to the route carried in the request's ``data`` field
(``route_layout``): a route with ``exit = WEST`` at ``x = 0`` is a reply to the host of that
row, collected per west port; any other route (``exit = LOCAL``) is delivered to tile
``(x, y)``'s core. The order in which the ports' flits and the tiles' outputs interleave is
drawn from a seeded generator (only the order within one port, and within one tile's
outputs, is guaranteed by the fabric, so the program must give the same result for every
interleaving); a phase ends when every injection and every output has been delivered. This
checks the compiler's mapping without any RTL; the cocotb array regression checks the RTL
against :func:`wafertile.stream.reference` the same way.
"""

from __future__ import annotations

import numpy as np

from ...config import Config
from ...hdl.flit import Opcode, Port, decode_route
from ...stream import LayerProgram
from .core import CoreModel

__all__ = ["ArrayModel", "collect_outputs"]


class ArrayModel:
    def __init__(self, config: Config):
        self.config = config
        self.tiles = {(x, y): CoreModel(config) for y in range(config.rows)
                      for x in range(config.cols)}
        self.replies: dict[int, list[dict]] = {y: [] for y in range(config.rows)}
        #: per tile, its outputs not yet delivered: (x, y, exit, flit), in emission order
        self.outputs: dict[tuple[int, int], list[tuple[int, int, int, dict]]] = {}

    def deliver(self, flit: dict) -> None:
        """Apply ``flit`` to every tile of its rectangle; queue the outputs they emit."""
        h = flit["header"]
        for y in range(h["y0"], h["y1"] + 1):
            for x in range(h["x0"], h["x1"] + 1):
                self._step(x, y, flit["payload"])

    def _step(self, x: int, y: int, payload: dict) -> None:
        out = self.tiles[x, y].step(payload)
        if out is not None:
            route = decode_route(self.config, int(payload.get("data", 0)))
            self.outputs.setdefault((x, y), []).append((route["x"], route["y"],
                                                        route["exit"], out))

    def _emit(self, rx: int, ry: int, exit_: Port, out: dict) -> None:
        if exit_ is Port.WEST and rx == 0:
            self.replies[ry].append(out)
        else:
            assert exit_ is Port.LOCAL, \
                f"output {out} routed out of the array by exit {exit_} at ({rx}, {ry})"
            self._step(rx, ry, out)

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
            self.outputs = {}
            while True:
                sources = [("port", q) for q in queues if queues[q]]
                sources += [("tile", t) for t in self.outputs if self.outputs[t]]
                if not sources:
                    break
                kind, key = sources[int(rng.integers(len(sources)))]
                if kind == "port":
                    self.deliver(queues[key].pop(0))
                else:
                    self._emit(*self.outputs[key].pop(0))
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
