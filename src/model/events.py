"""The events of a program, counted per tile as the RTL's counters count them
(``Config.counters``, :mod:`wafertile.hdl.counters`, ``docs/counters.md``).

No event depends on timing: a flit's route (the XY-tree rule,
:func:`~wafertile.model.routers.route_bits`) gives the links it takes and the cores it
reaches, and the operation table (:data:`~wafertile.hdl.core.ops.OPS`) what each operation
reads and writes. Per phase (:class:`~wafertile.model.mesh.PhaseFlits`, the host's flits and
the outputs their tiles make) the host's flits start at their west port and every output at
each tile that made it; each walk is vectorized over the flits, a hop per step.

What only a value says is whether a MAC is skipped: a zero weight (in the flit) or a zero
activation (in the bank). The bank is followed through the program: a WRITE_ACT from the
host writes the word its flit carries; one a tile made (a FINISH's hand-off) writes a word
the model does not compute, and a FINISH's MAC (the attention's) carries one. Both are taken
as nonzero unless the reference gives them (:func:`~wafertile.model.layer.network_nonzero`):
``nonzero``, a stream's activations, and ``sent``, the words the FINISHes send. The counts
are then exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..hdl.core.ops import OPS
from ..hdl.counters import EVENTS, op_counts
from ..hdl.flit import Port
from ..stream import LayerProgram, Phase
from .mesh import PhaseFlits
from .routers import route_bits

__all__ = ["EVENTS", "EnergyEvents", "energy_events", "grad_events", "phase_events",
           "program_events", "stream_events"]

_L = Port.LOCAL.value
#: Per mesh output: its port (its bit in route_bits; the neighbour takes the flit on the
#: opposite port) and the step to the neighbour (dx, dy)
_STEPS = [(Port.NORTH, 0, -1), (Port.EAST, 1, 0), (Port.SOUTH, 0, 1), (Port.WEST, -1, 0)]


def _op_columns(config: Config) -> dict[str, np.ndarray]:
    """Per opcode (0 .. 15), what a legal operation does of each counted event."""
    cols: dict[str, np.ndarray] = {}
    for row in OPS.legal(config):
        for name, n in op_counts(row).items():
            cols.setdefault(name, np.zeros(16, np.int64))[row.code] = n
    return cols


def _per_delivery(cols: dict[str, np.ndarray], op: np.ndarray, done: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """What one delivery of each flit (legal opcode ``op``; ``done``: a MAC with a nonzero
    pair) adds to each core event: the operation's reads and writes by the table, a MAC's
    accumulator access only when done, and its output (``core_out``)."""
    mac = cols["mac"][op] != 0
    done = mac & done
    return {"mac_done": done.astype(np.int64), "mac_skipped": (mac & ~done).astype(np.int64),
            "act_reads": cols["act_reads"][op], "act_writes": cols["act_writes"][op],
            "acc_reads": cols["acc_reads"][op] + done, "acc_writes": cols["acc_writes"][op] + done,
            "core_in": np.ones(len(op), np.int64), "core_out": cols["emits"][op]}


def _walk(config: Config, f: PhaseFlits, fid: np.ndarray, x: np.ndarray, y: np.ndarray,
          port: np.ndarray, link_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walk flits ``fid`` from router (``x``, ``y``), arrived on ``port``, to the end;
    count their mesh outputs into ``link_out`` (per tile); return the (flit, tile) pairs of
    their local deliveries."""
    C, R = config.cols, config.rows
    got_f, got_t = [], []
    while len(fid):
        bits = route_bits(x, y, port, f.x0[fid], f.x1[fid], f.y0[fid], f.y1[fid],
                          f.exit[fid], R, C)
        tile = y * C + x
        here = (bits & 1) != 0
        got_f.append(fid[here])
        got_t.append(tile[here])
        nxt = ([], [], [], [])
        for p, dx, dy in _STEPS:
            go = (bits >> p.value) & 1 != 0
            np.add.at(link_out, tile[go], 1)
            nx, ny = x[go] + dx, y[go] + dy
            inside = (nx >= 0) & (nx < C) & (ny >= 0) & (ny < R)  # else out of the edge
            for k, v in enumerate((fid[go][inside], nx[inside], ny[inside],
                                   np.full(int(inside.sum()), p.opposite.value))):
                nxt[k].append(v)
        fid, x, y, port = (np.concatenate(v) for v in nxt)
    return np.concatenate(got_f), np.concatenate(got_t)


def phase_events(config: Config, phase: Phase, bank: np.ndarray,
                 table: np.ndarray | None = None, sent: np.ndarray | None = None
                 ) -> np.ndarray:
    """The events of ``phase`` per tile: ``rows * cols`` x ``len(EVENTS)``. ``bank``: which
    activations the tiles hold nonzero (tiles x ``act_depth``), updated by the phase's
    activation writes; ``table``: a stream's nonzero activations, used for its MACs in place
    of ``bank`` where given; ``sent``: which words the tiles' FINISHes send nonzero
    (:meth:`~wafertile.model.mesh.PhaseFlits.from_phase`)."""
    tiles = config.rows * config.cols
    out = {name: np.zeros(tiles, np.int64) for name in EVENTS}
    if not len(phase):
        return np.stack([out[name] for name in EVENTS], axis=1)
    f = PhaseFlits.from_phase(config, phase, sent)
    cols = _op_columns(config)
    n = f.hosts
    fid = np.arange(n)
    x = np.zeros(n, np.int64)
    y = np.asarray(f.port[:n], np.int64)
    port = np.full(n, Port.WEST.value)
    acts = table if table is not None else bank
    while len(fid):
        got_f, got_t = _walk(config, f, fid, x, y, port, out["link_out"])
        op = f.op[got_f]
        legal = op >= 0
        got_f, got_t, op = got_f[legal], got_t[legal], op[legal]
        adds = _per_delivery(cols, op, f.wnz[got_f] & acts[got_t, f.act[got_f]])
        for name, v in adds.items():
            np.add.at(out[name], got_t, v)
        writes = cols["act_writes"][op] != 0
        # the host's words are known, a tile's (a hand-off's) with ``sent``; else nonzero
        w_f, w_t = got_f[writes], got_t[writes]
        bank[w_t, f.act_w[w_f]] = np.where(f.known[w_f], f.wnz[w_f], True)
        emits = cols["emits"][op] != 0
        # the outputs start at the tiles that made them, on their local input
        fid = f.out[got_f[emits]]
        x, y = got_t[emits] % config.cols, got_t[emits] // config.cols
        port = np.full(len(fid), _L)
    return np.stack([out[name] for name in EVENTS], axis=1)


def program_events(config: Config, program: LayerProgram,
                   nonzero: Mapping[int, np.ndarray] | None = None,
                   sent: Mapping[int, np.ndarray] | None = None) -> dict[str, list[int]]:
    """The events of every phase of ``program`` summed, per event (:data:`EVENTS`) a list
    per tile (``y * cols + x``), as the harness reports the RTL's counters. ``nonzero``: per
    stream phase index, its nonzero activations (tiles x ``act_depth``); ``sent``: per phase
    index, which words its FINISHes send nonzero (tiles x ``acc_depth``); as
    :func:`~wafertile.model.predict.predict_program` takes them
    (:func:`~wafertile.model.layer.network_nonzero` makes both)."""
    nonzero, sent = nonzero or {}, sent or {}
    bank = np.zeros((config.rows * config.cols, config.act_depth), bool)
    total = np.zeros((config.rows * config.cols, len(EVENTS)), np.int64)
    for n, phase in enumerate(program.phases):
        total += phase_events(config, phase, bank, nonzero.get(n), sent.get(n))
    return {name: [int(v) for v in total[:, e]] for e, name in enumerate(EVENTS)}


@dataclass(frozen=True)
class EnergyEvents:
    """What the energy of a phase is priced from (``docs/wafer.md``, "Energy"), all tiles
    together: MACs done, flit hops (each link a flit crosses: the one into the fabric from
    the host's edge port, then ``link_out``) and SRAM bits (the words read and written, of
    ``data_width`` and ``acc_width`` bits)."""

    macs: int = 0
    hops: int = 0
    sram_bits: int = 0

    def times(self, k: int) -> EnergyEvents:
        return EnergyEvents(self.macs * k, self.hops * k, self.sram_bits * k)


def _route_totals(config: Config, f: PhaseFlits, fid, sx, sy, local
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per flit ``fid`` starting at router (``sx``, ``sy``) on its local input (``local``)
    or its west input, in closed form: the links it takes out of routers (``link_out``) and
    the cores it reaches (``core_in``), by the XY-tree rule (:func:`_walk` walks the same;
    ``tests/test_events.py`` checks they agree). Needs well-formed rectangles."""
    R, C = config.rows, config.cols
    x0, x1, y0, y1, ex = f.x0[fid], f.x1[fid], f.y0[fid], f.y1[fid], f.exit[fid]
    lo = np.where(local, x0, np.maximum(x0, sx))  # the rectangle's columns it reaches
    cols = np.maximum(0, x1 - lo + 1)
    horizontal = np.maximum(0, x1 - sx) + np.where(local, np.maximum(0, sx - x0), 0)
    vertical = np.maximum(0, y1 - sy) + np.maximum(0, sy - y0)
    h = y1 - y0 + 1
    reached = cols > 0
    exits = reached * np.select(
        [ex == Port.NORTH.value, ex == Port.SOUTH.value, ex == Port.EAST.value,
         ex == Port.WEST.value],
        [cols * (y0 == 0), cols * (y1 == R - 1), h * (x1 == C - 1), h * (lo == 0)], 0)
    return horizontal + cols * vertical + exits, cols * h - exits


def _energy_totals(config: Config, f: PhaseFlits) -> dict[str, int] | None:
    """The phase's events summed over the tiles, every activation nonzero, in closed form
    (:func:`_route_totals`); None where it does not apply (a malformed rectangle, a flit
    that would reach nothing, or an answering flit that reaches more than one core)."""
    if np.any((f.x0 > f.x1) | (f.y0 > f.y1)):
        return None
    cols = _op_columns(config)
    t = dict.fromkeys(EVENTS, 0)
    n = f.hosts
    fid = np.arange(n)
    sx, sy, local = np.zeros(n, np.int64), np.asarray(f.port[:n], np.int64), np.zeros(n, bool)
    while len(fid):
        links, cores = _route_totals(config, f, fid, sx, sy, local)
        if np.any(links + cores == 0):
            return None
        op = f.op[fid]
        code = np.maximum(op, 0)
        k = np.where(op >= 0, cores, 0)  # each flit's deliveries, each an operation
        t["link_out"] += int(links.sum())
        for name, v in _per_delivery(cols, code, f.wnz[fid]).items():
            t[name] += int(np.dot(k, v))
        answers = (k > 0) & (cols["emits"][code] != 0)
        if np.any(k[answers] > 1):
            return None
        parent = fid[answers]
        if np.any((f.x0[parent] != f.x1[parent]) | (f.y0[parent] != f.y1[parent])):
            return None  # its core is not (x0, y0)
        fid = f.out[parent]
        sx, sy = f.x0[parent], f.y0[parent]
        local = np.ones(len(fid), bool)
    return t


def energy_events(config: Config, phase: Phase) -> EnergyEvents:
    """The :class:`EnergyEvents` of ``phase`` from its exact event count, every activation
    taken as nonzero (the wafer-scale prediction's assumption: its values are not
    computed): in closed form per flit where it applies, else by :func:`phase_events`."""
    t = _energy_totals(config, PhaseFlits.from_phase(config, phase)) if len(phase) else \
        dict.fromkeys(EVENTS, 0)
    if t is None:
        bank = np.ones((config.rows * config.cols, config.act_depth), bool)
        t = dict(zip(EVENTS, phase_events(config, phase, bank).sum(axis=0).tolist(),
                     strict=True))
    return EnergyEvents(
        t["mac_done"], len(phase) + t["link_out"],
        config.data_width * (t["act_reads"] + t["act_writes"])
        + config.acc_width * (t["acc_reads"] + t["acc_writes"]))


def stream_events(config: Config, columns: np.ndarray, weights: np.ndarray,
                  rows: int | None = None) -> EnergyEvents:
    """A MAC stream's :class:`EnergyEvents` in closed form: ``weights[k]`` flits multicast
    down column ``columns[k]`` (rows 0 .. ``rows - 1``, by default every row) from a west
    port among them, every activation nonzero. A flit crosses its edge link, ``column``
    links east, ``rows - 1`` links of its column; every tile of it does a MAC (an
    activation read, an accumulator read and write)."""
    R = config.rows if rows is None else rows
    n = int(np.sum(weights))
    macs = n * R
    hops = n + int(np.sum(np.multiply(columns, weights))) + n * (R - 1)
    return EnergyEvents(macs, hops, macs * (config.data_width + 2 * config.acc_width))


def grad_events(config: Config, n: int, rows: int | None = None) -> EnergyEvents:
    """A GRAD phase's :class:`EnergyEvents` in closed form (``docs/training.md``): GRAD
    ``i`` enters at row ``1 + i % (rows - 1)`` (row 0 on one row), goes east to column
    ``i % cols``, north to row 0, then its chain down every row and out of the south edge;
    each tile reads two activations and does a multiply-add (priced as a MAC, though the
    counters count it as no MAC); ``rows``: the rows used (by default every row)."""
    R, C = (config.rows if rows is None else rows), config.cols
    ports = n + _mod_sum(n, R - 1) if R > 1 else 0
    hops = n + _mod_sum(n, C) + ports + n * R
    return EnergyEvents(n * R, hops, n * R * 2 * config.data_width)


def _mod_sum(n: int, m: int) -> int:
    """``sum(i % m for i in range(n))``, in closed form (``n`` is a layer's weights)."""
    q, r = divmod(n, m)
    return q * m * (m - 1) // 2 + r * (r - 1) // 2
