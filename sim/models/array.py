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
from ...hdl.core.ops import OPS, code_of, codes
from ...hdl.flit import Opcode, Port, decode_handoff, decode_route
from ...stream import LayerProgram
from .core import CoreModel

__all__ = ["ArrayModel", "collect_outputs", "collect_reply_arrays", "port_hazards"]


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
        tile = self.tiles[x, y]
        out = tile.step(payload)
        if out is None:
            return
        # the data field of an operation that emits is its output's route or hand-off
        if tile.ops[payload["op"]].data == "handoff":  # FINISH's output: a rectangle
            h = decode_handoff(self.config, int(payload.get("data", 0)))
            for ry in range(h["y"], h["y"] + h.get("dy", 0) + 1):
                for rx in range(h["x0"], h["x1"] + 1):
                    self.outputs.setdefault((x, y), []).append((rx, ry, Port.LOCAL, out))
            return
        route = decode_route(self.config, int(payload.get("data", 0)))
        self.outputs.setdefault((x, y), []).append((route["x"], route["y"], route["exit"],
                                                    out))

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
    """Place a phase's replies (payload dicts per west row) into ``y_out``; every expected one
    must be there (:func:`collect_reply_arrays` on the same replies as arrays)."""
    flat = [(row, f) for row, flits in replies.items() for f in flits]
    cols = [np.array([v for v in values], dtype=np.int64) for values in (
        [row for row, _ in flat], [code_of(f["op"]) for _, f in flat],
        [f["addr"] for _, f in flat], [f["addr_b"] for _, f in flat],
        [f["data"] for _, f in flat])]
    collect_reply_arrays(phase, *cols, y_out)


def collect_reply_arrays(phase, row: np.ndarray, op: np.ndarray, addr: np.ndarray,
                         addr_b: np.ndarray, data: np.ndarray, y_out: np.ndarray) -> None:
    """Place a phase's replies into ``y_out``: reply ``r`` arrived at west port ``row[r]``
    with payload ``op``, ``addr``, ``addr_b``, ``data``; it must be a REPLY to one of the
    phase's expected requests (:class:`~wafertile.stream.Phase`: ``reply_row``,
    ``reply_slot``, ``reply_x``), each of which must come back exactly once.

    Raises
    ------
    AssertionError
        On a flit that is not a reply, an unexpected, duplicated or missing reply.
    """
    bad = np.flatnonzero(op != Opcode.REPLY.value)
    assert not bad.size, f"unexpected flit at west port {int(row[bad[0]])}: op " \
                         f"{Opcode(int(op[bad[0]])).name}"
    width = int(max(addr.max(initial=0), phase.reply_slot.max(initial=0))) + 1
    height = int(max(addr_b.max(initial=0), phase.reply_x.max(initial=0))) + 1

    def key(r, s, x):
        return (r * width + s) * height + x

    want = key(phase.reply_row, phase.reply_slot, phase.reply_x)
    got = key(row, addr, addr_b)
    known = np.isin(got, want)
    if not known.all():
        k = int(np.argmin(known))
        raise AssertionError(f"unexpected reply {(int(row[k]), int(addr[k]), int(addr_b[k]))} "
                             f"in a {phase.kind} phase")
    uniq, first, counts = np.unique(got, return_index=True, return_counts=True)
    if (counts > 1).any():
        k = int(first[np.argmax(counts > 1)])
        raise AssertionError(f"duplicated reply {(int(row[k]), int(addr[k]), int(addr_b[k]))}")
    missing = ~np.isin(want, uniq)
    if missing.any():
        ex = [(int(r), int(s), int(x)) for r, s, x in zip(
            phase.reply_row[missing][:3], phase.reply_slot[missing][:3],
            phase.reply_x[missing][:3], strict=True)]
        raise AssertionError(f"{int(missing.sum())} replies missing in a {phase.kind} phase, "
                             f"e.g. {ex}")
    # each expected reply's data, in the order of the expected arrays
    where = np.searchsorted(uniq, want)
    values = data[first[where]]
    out = phase.reply_b >= 0
    y_out[phase.reply_b[out], phase.reply_i[out]] = values[out]


def port_hazards(program: LayerProgram) -> tuple[int, int]:
    """``(pairs, macs)`` of the stream phases of ``program``: ``macs`` the MAC flits the host
    injects, ``pairs`` the MAC flits that follow a MAC flit of the same port for the same
    column and accumulator slot, with no flit of that port for that column between them.

    Only such a pair can reach a tile back to back and cost a floating-point core its
    one-cycle bubble (``FpMacCore``: an accumulator read one flit behind its write): the
    outputs of a port are fed by that port alone, and a flit of the port for another column
    between the two puts a cycle between them unless backpressure closes the gap. So
    ``pairs`` bounds the bubbles of every tile of a column (a pair with a zero activation
    costs none).
    """
    pairs = macs = 0
    for phase in program.phases:
        if phase.kind != "stream":
            continue
        mac = np.isin(phase.flits["payload.op"], codes(OPS.where(lambda r: r.counts_mac)))
        macs += int(mac.sum())
        for q in np.unique(phase.port[mac]):
            mine = mac & (phase.port == q)
            column, slot = phase.flits["header.x0"][mine], phase.flits["payload.addr"][mine]
            order = np.argsort(column, kind="stable")  # each column's flits, in port order
            column, slot = column[order], slot[order]
            pairs += int(np.count_nonzero((column[1:] == column[:-1]) &
                                          (slot[1:] == slot[:-1])))
    return pairs, macs
