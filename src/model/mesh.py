"""The event-level model: one phase played through every router's buffers and arbiters and
every tile's core, one cycle per step, vectorized over the tiles.

What it keeps: every router's buffers and arbiters, in an object of the router
micro-architecture's class (:mod:`.routers`: :class:`~.routers.CompactRouter`,
:class:`~.routers.ParallelRouter`, :class:`~.routers.LiteRouter`, by ``Config.router_arch``
in :data:`~.routers.ROUTERS`); per tile core: the three pipeline stages. Each step (a router
moves once per slot, a core once per cycle):

1. every input offers the branches of a head that still have to go and whose next buffer
   had room at the start of the step (``compact`` and ``lite``: the head of one VC per
   input, chosen round-robin; ``parallel``: every VC's head);
2. every output grants one offer round-robin, its candidates in the order of the
   micro-architecture's switch (:attr:`~.routers.Router.orders`); the pointers carry over
   from one phase to the next, as in the RTL; a multicast head keeps its buffer until every
   branch has gone, one or several per step;
3. granted branches enter the next router's buffer (visible next step), the core, or
   leave by the west edge to the host; heads with nothing left leave their buffers;
4. each west port injects its next flit if the first router's buffer for its VC had room;
5. each core advances unless its third stage holds an output (a reply, ADD or hand-off
   activation) that its router's local input cannot take; a MAC is counted in stage 3, an
   activation write in stage 2.

Steps 1 to 3, but for what reaches a core or the host, are the routers'
(:meth:`~.routers.Router.step`), where the micro-architectures differ in a way the programs
see: the VC choice per input above (``lite``: the input's current VC, which moves on at the
end of a slot in which it sent its head, had nothing to send or is empty); the ``lite``
router's one-flit local input (a core output every other cycle with one phit); its delivery
stage ``D``, which on the west edge serves both the local port and the west exit (one flit
per slot for both). This module plays the rest, the same for all: the cores, the host, and
phits (a router step every ``phits`` cycles, a slot more for the serializer at the edge and
the deserializer in front of each core, whose register frees in the cycle the core takes the
flit). ``benchmarks/model.py`` compares it with the RTL: it gives the RTL's cycle count for
every phase of the validation set (193 pairs, 2 853 phases; ``docs/performance.md``). Not
modelled: the turn stages of ``compact`` and ``lite`` as stages of their own (the compiler's
phases never make two inputs compete for a turn), and edges other than the west one (nothing
the compiler emits leaves there).

Cost: a few dozen numpy operations on arrays of ``5 * num_vcs * rows * cols`` elements per
step; :mod:`.predict` uses it only for phases where the analytic bounds are not enough and
the array is small enough (:data:`MESH_BUDGET`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hdl.core.ops import OPS, codes
from ..hdl.flit import Port
from .routers import ROUTERS, Grants, Router, route_bits
from .timing import Timing

__all__ = ["MESH_BUDGET", "MeshResult", "PhaseFlits", "mesh_seconds", "route_bits", "simulate"]

#: Seconds of mesh model that :mod:`.predict` spends on one program at most (``detail =
#: "auto"``); phases beyond it are predicted analytically.
MESH_BUDGET = 60.0


def mesh_seconds(cycles: float, tiles: int) -> float:
    """About how long :func:`simulate` takes for a phase of ``cycles`` on ``tiles`` tiles (2
    shared cores: 0.3 ms per cycle on 4 x 4, 1.8 ms on 32 x 32)."""
    return cycles * (2.8e-4 + 1.5e-6 * tiles)


_L, _W = Port.LOCAL.value, Port.WEST.value

# what a core does with a flit (the kinds of :class:`PhaseFlits`)
_OTHER, _MAC, _WRITE, _ANSWER = 0, 1, 2, 3


def _kinds(config, op: np.ndarray, answers: bool = True) -> np.ndarray:
    """What the cores of ``config`` do with flits of opcodes ``op`` (of the operation table,
    :mod:`wafertile.hdl.core.ops`): a MAC (counted), an activation write (counted), an
    operation that answers (with ``answers``), or nothing counted."""
    kind = np.full(len(op), _OTHER, np.int64)
    kind[np.isin(op, codes(OPS.where(lambda r: r.counts_mac, config)))] = _MAC
    kind[np.isin(op, codes(OPS.where(lambda r: r.act_write is not None, config)))] = _WRITE
    if answers:
        kind[np.isin(op, codes(OPS.emitting(config)))] = _ANSWER
    return kind


def _output_ops(config) -> np.ndarray:
    """The opcode of the flit each opcode's operation emits (indexed by opcode; -1: none)."""
    out = np.full(max(row.code for row in OPS) + 1, -1, np.int64)
    for row in OPS.emitting(config):
        out[row.code] = row.emit.op.value
    return out


@dataclass
class PhaseFlits:
    """The flits of one phase as the mesh model plays them: the host's, then the outputs
    their tiles make (a READ's reply, a SEND's ADD, a FINISH's activation), one table.

    Attributes
    ----------
    port : numpy.ndarray
        West port of each host flit (outputs: -1), in injection order per port.
    x0, x1, y0, y1, vc, exit : numpy.ndarray
        Every flit's rectangle, virtual channel and exit port.
    kind : numpy.ndarray
        What the core does with it: 0 nothing counted, 1 a MAC, 2 an activation write,
        3 it answers with flit ``out``.
    out : numpy.ndarray
        The output flit of an answering flit (-1 for the others).
    hosts : int
        The number of host flits (the first ``hosts`` rows of the table).
    """

    port: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    vc: np.ndarray
    exit: np.ndarray
    kind: np.ndarray
    out: np.ndarray
    hosts: int

    @classmethod
    def from_phase(cls, config, phase) -> PhaseFlits:
        """The table of a :class:`~wafertile.stream.Phase` for ``config``."""
        f = phase.flits
        n = len(phase)
        op = np.asarray(f["payload.op"], np.int64)
        data = np.asarray(f["payload.data"], np.int64)
        kind = _kinds(config, op)
        answers = np.flatnonzero(kind == _ANSWER)
        # an answer's data field carries its output's route, or a FINISH's hand-off
        finish = np.isin(op, codes(row for row in OPS.emitting(config)
                                   if row.data == "handoff"))
        out = np.full(n, -1, np.int64)
        out[answers] = n + np.arange(len(answers))
        # the outputs: a READ's / SEND's route, a FINISH's hand-off rectangle
        route = _unpack(config.route_fields, data[answers])
        hand = _unpack(config.handoff_fields, data[answers])
        fin = finish[answers]
        ox0 = np.where(fin, hand["x0"], route["x"])
        ox1 = np.where(fin, hand["x1"], route["x"])
        oy = np.where(fin, hand["y"], route["y"])
        ovc = np.where(fin, hand["vc"], route["vc"])
        oexit = np.where(fin, _L, route["exit"])
        okind = _kinds(config, _output_ops(config)[op[answers]], answers=False)
        cat = np.concatenate
        return cls(
            port=cat([np.asarray(phase.port, np.int64), np.full(len(answers), -1)]),
            x0=cat([f["header.x0"], ox0]).astype(np.int64),
            x1=cat([f["header.x1"], ox1]).astype(np.int64),
            y0=cat([f["header.y0"], oy]).astype(np.int64),
            y1=cat([f["header.y1"], oy]).astype(np.int64),
            vc=cat([f["header.vc"], ovc]).astype(np.int64),
            exit=cat([f["header.exit"], oexit]).astype(np.int64),
            kind=cat([kind, okind]), out=cat([out, np.full(len(answers), -1)]), hosts=n)


def _unpack(fields: dict[str, int], data: np.ndarray) -> dict[str, np.ndarray]:
    out, shift = {}, 0
    for name, width in fields.items():
        out[name] = (data >> shift) & ((1 << width) - 1)
        shift += width
    return out


@dataclass(frozen=True)
class MeshResult:
    """When the counted events of a phase happened.

    Attributes
    ----------
    last_mac, last_write, last_reply : int
        Cycle of the last MAC (stage 3), activation write (stage 2) and reply at the host
        (-1: none).
    cycles : int
        Cycles from the first injection to the last step.
    arbiters : tuple
        The round-robin pointers of every output and input at the end (what a next phase
        starts from: the RTL keeps them from phase to phase).
    """

    last_mac: int
    last_write: int
    last_reply: int
    cycles: int
    arbiters: tuple = ()


class _Mesh:
    """The state of a phase being played (see the module's docstring): the routers (an
    object of the micro-architecture's class), the cores and the host."""

    def __init__(self, timing: Timing, flits: PhaseFlits):
        cfg = timing.config
        self.t = timing
        self.R, self.C = cfg.rows, cfg.cols
        self.B = cfg.buffer_depth
        self.h = timing.slot
        self.f = flits
        self.routers: Router = ROUTERS[cfg.router_arch](timing, flits)
        nodes = self.R * self.C
        self.nodes = nodes
        # cores: stage 2, stage 3 (flit ids, -1 empty); with phits, the deserializer in
        # front of the core holds a delivered flit until the cycle it may be taken
        self.s2 = np.full(nodes, -1, np.int64)
        self.s3 = np.full(nodes, -1, np.int64)
        self.rx = np.full(nodes, -1, np.int64)
        self.rx_at = np.zeros(nodes, np.int64)
        # host injection per west port
        host = np.flatnonzero(flits.port[:flits.hosts] >= 0)
        order = host[np.argsort(flits.port[host], kind="stable")]
        counts = np.bincount(flits.port[host], minlength=self.R)
        self.queue = order
        self.next = np.r_[0, np.cumsum(counts)[:-1]]
        self.end = self.next + counts
        # what is left to count
        self.macs = int(np.sum((flits.kind == _MAC) * (flits.y1 - flits.y0 + 1)
                               * (flits.x1 - flits.x0 + 1)))
        self.writes = int(np.sum((flits.kind == _WRITE) * (flits.y1 - flits.y0 + 1)
                                 * (flits.x1 - flits.x0 + 1)))
        self.replies = int(np.sum(flits.exit == _W))
        self.last = {"mac": -1, "write": -1, "reply": -1}

    # -- one step --------------------------------------------------------------------------

    def core_ready(self, now: int) -> np.ndarray:
        """Whether each core advances in cycle ``now`` (its stage 3 output can go)."""
        f = self.f
        s3 = self.s3
        emits = (s3 >= 0) & (f.out[np.maximum(s3, 0)] >= 0)
        vcs = f.vc[f.out[np.maximum(s3, 0)]]
        return ~emits | self.routers.local_room(vcs, now)

    def route(self, now: int, advance: np.ndarray) -> np.ndarray:
        """One router step; returns the flit each core is given this cycle (-1: none)."""
        step = self.routers.step(self._local_room(advance))   # 1 to 3: offers, grants, buffers
        given = self._deliver(now, step.grants)               # 3: to the cores and the host
        self._inject(step.full)                               # 4: from the host
        self.routers.end_slot(step)                           # the VC pointers move on
        return given

    def _local_room(self, advance: np.ndarray) -> np.ndarray:
        """Whether each router's local output may send: its core advances (with phits: the
        deserializer in front of it is free, again in the cycle the core takes its flit)."""
        return (self.rx < 0) if self.h > 1 else advance

    def _deliver(self, now: int, grants: Grants) -> np.ndarray:
        """The granted branches to the cores (with phits: into their deserializers) and out
        by the west edge to the host; returns the flit each core is given (-1: none)."""
        given = np.full(self.nodes, -1, np.int64)
        local = (grants.bits & (1 << _L)) != 0
        if local.any():
            if self.h > 1:
                self.rx[grants.node[local]] = grants.fid[local]
                self.rx_at[grants.node[local]] = now + self.h
            else:
                given[grants.node[local]] = grants.fid[local]
        exits = ((grants.bits & (1 << _W)) != 0) & (self.routers.x[grants.node] == 0)
        if exits.any():
            self.replies -= int(exits.sum())
            self.last["reply"] = now + self.t.adapter
        return given

    def _inject(self, full: np.ndarray) -> None:
        """Each west port's next flit into the first router of its row, if the buffer for its
        VC was not ``full`` at the start of the step."""
        pending = self.next < self.end
        if pending.any():
            ports = np.flatnonzero(pending)
            fid = self.queue[self.next[ports]]
            west = ports * self.C
            ok = ~full[_W, self.f.vc[fid], west]
            self.next[ports[ok]] += 1
            self.routers.push(np.full(int(ok.sum()), _W), west[ok], fid[ok])

    def core(self, now: int, advance: np.ndarray, given: np.ndarray) -> None:
        """One cycle of every core (after the routers decided what they deliver)."""
        f = self.f
        self.routers.cycle(now)
        adv = np.flatnonzero(advance)
        s3 = self.s3[adv]
        s2 = self.s2[adv]
        mac = (s3 >= 0) & (f.kind[np.maximum(s3, 0)] == _MAC)
        if mac.any():
            self.macs -= int(mac.sum())
            self.last["mac"] = now
        write = (s2 >= 0) & (f.kind[np.maximum(s2, 0)] == _WRITE)
        if write.any():
            self.writes -= int(write.sum())
            self.last["write"] = now
        emits = (s3 >= 0) & (f.out[np.maximum(s3, 0)] >= 0)
        if emits.any():
            self.routers.push(_L, adv[emits], f.out[s3[emits]])
        self.s3[adv] = s2
        self.s2[adv] = given[adv]

    def take(self, now: int, advance: np.ndarray) -> np.ndarray:
        """With phits: the flit each core takes from its deserializer this cycle."""
        ready = (self.rx >= 0) & (self.rx_at <= now) & advance
        given = np.where(ready, self.rx, -1)
        self.rx = np.where(ready, -1, self.rx)
        return given

    def busy(self) -> bool:
        return self.macs > 0 or self.writes > 0 or self.replies > 0


def simulate(timing: Timing, flits: PhaseFlits, *, limit: int | None = None,
             arbiters: tuple = ()) -> MeshResult:
    """Play one phase from an empty fabric, its first injection at cycle 0 (a slot
    boundary), until every MAC, activation write and reply it causes is counted.
    ``arbiters``: the round-robin pointers the previous phase left
    (:attr:`MeshResult.arbiters`; default: reset).

    Raises
    ------
    RuntimeError
        If the phase does not finish within ``limit`` cycles (default: generous for the
        phase's size; only a bug in the model can reach it).
    """
    mesh = _Mesh(timing, flits)
    if arbiters:
        mesh.routers.arbiters = arbiters
    h = timing.slot
    if limit is None:
        limit = 8 * h * (flits.hosts + len(flits.port) + 1) * (mesh.R + mesh.C + mesh.B) + 1000
    now = 0
    while mesh.busy():
        if now > limit:
            raise RuntimeError(f"the mesh model of a phase of {flits.hosts} flits did not "
                               f"finish in {limit} cycles")
        advance = mesh.core_ready(now)
        if h > 1:
            given = mesh.take(now, advance)
            if now % h == 0:
                mesh.route(now, advance)
        else:
            given = mesh.route(now, advance)
        mesh.core(now, advance, given)
        now += 1
    return MeshResult(mesh.last["mac"], mesh.last["write"], mesh.last["reply"], now,
                      mesh.routers.arbiters)
