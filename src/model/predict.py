"""Predictions for whole programs: a compiled layer or network, phase by phase.

:func:`predict_program` walks a :class:`~wafertile.stream.LayerProgram` (or a
:class:`~wafertile.network.compiler.NetworkProgram`) the way the host plays it: each phase
starts when the one before has ended (its first flit at the next slot boundary) and is
predicted from its flit columns, at one of two levels:

- ``"mesh"``: played through the event-level model (:mod:`.mesh`: every router's buffers and
  arbiters, every core's pipeline), cycle for cycle;
- ``"analytic"``: the vectorized bounds of :mod:`.stream` (MAC streams) and :mod:`.phases`
  (load, read, reduce, hand-off), whose cost does not grow with the array.

``detail = "auto"`` (the default) takes the analytic model where it is exact (a stream in
which one port feeds each column; the load, read and reduce phases of ``compact`` and ``parallel``),
and the mesh for the other phases of a program while its estimated cost
(:func:`~wafertile.model.mesh.mesh_seconds` of the analytic estimate) stays within
:data:`~wafertile.model.mesh.MESH_BUDGET` seconds, the analytic model for the rest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..config import Config
from ..hdl.core.ops import OPS, codes
from ..hdl.flit import Opcode
from ..stream import LayerProgram, Phase
from .mesh import (
    MESH_BUDGET,
    Carry,
    PhaseFlits,
    iterative_cycles,
    mesh_seconds,
    simulate,
    weight_nonzero,
)
from .phases import grad_cycles, handoff_cycles, row_cycles
from .stream import column_slots, stream_cycles
from .timing import ModelError, Timing, UnmodelledConfigError

__all__ = ["DETAILS", "KINDS", "MissingActivationsError", "ModelError", "Prediction",
           "UnmodelledConfigError", "predict_phase", "predict_program",
           "timing_key"]

#: The phase kinds the model predicts (``"grad"``: training's GRAD chains).
KINDS = ("load", "stream", "reduce", "handoff", "read", "grad")
#: The levels of detail of a prediction (module docstring).
DETAILS = ("auto", "analytic", "mesh")


class MissingActivationsError(ModelError):
    """A float MAC stream predicted without the table of its nonzero activations."""


@dataclass
class Prediction:
    """The predicted cycles of a program.

    Attributes
    ----------
    kinds : list of str
        The kind of each phase, in order.
    phase_cycles : list of int
        The predicted cycles of each phase (as ``phase_cycles`` of the RTL harness).
    methods : list of str
        How each phase was predicted: ``"mesh"``; ``"exact"`` (analytic, in a case where it
        gives the mesh model's cycles); ``"analytic"``; or ``"bound"`` (analytic, and a lower
        bound: a stream whose columns back up into the rows, beyond the mesh budget).
    seconds : float
        Wall time of the prediction.
    """

    kinds: list[str]
    phase_cycles: list[int]
    methods: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def cycles(self) -> int:
        """Cycles of the stream phases (``cycles`` of ``wafertile run``)."""
        return sum(c for k, c in zip(self.kinds, self.phase_cycles, strict=True)
                   if k == "stream")

    @property
    def total_cycles(self) -> int:
        """Cycles of every phase."""
        return sum(self.phase_cycles)

    @property
    def cycles_by_kind(self) -> dict[str, int]:
        """Cycles summed per phase kind (as ``cycles_by_kind`` of the RTL harness)."""
        out: dict[str, int] = {}
        for k, c in zip(self.kinds, self.phase_cycles, strict=True):
            out[k] = out.get(k, 0) + c
        return out

    def as_json(self) -> dict[str, Any]:
        return {"cycles": self.cycles, "total_cycles": self.total_cycles,
                "cycles_by_kind": self.cycles_by_kind, "phase_cycles": self.phase_cycles,
                "methods": sorted(set(self.methods)),
                "predict_seconds": round(self.seconds, 3)}


def predict_phase(timing: Timing, phase: Phase, *, detail: str = "auto",
                  budget: float = MESH_BUDGET, arbiters: tuple = (),
                  nonzero: np.ndarray | None = None, carry: Carry | None = None,
                  gap: int = 0, carried: list | None = None, sent: np.ndarray | None = None
                  ) -> tuple[int, str, float, tuple]:
    """The cycles of one phase that starts at a slot boundary, how they were found
    (:attr:`Prediction.methods`), the estimated seconds of mesh model spent (``detail =
    "auto"``: the mesh where the analytic model is not exact, if that estimate is within
    ``budget``) and, after the mesh, its arbiters' pointers (the next phase starts from
    them, as in the RTL; ``arbiters``: the previous phase's). ``nonzero``: on float tiles,
    a MAC stream's nonzero activations per tile and address
    (:func:`~wafertile.model.mesh.simulate`); ``sent``: which words its FINISHes send
    nonzero (:meth:`~wafertile.model.mesh.PhaseFlits.from_phase`; the mesh then plays the
    whole array). ``carry``: what the previous phase's cores
    still held, ``gap`` cycles before this phase's first injection (the mesh then plays this
    phase on top of it, whatever the analytic model says); ``carried``: a list that gets
    what this phase's cores still hold at its end and the cycles from that snapshot to the
    end (the mesh only; nothing is appended otherwise).

    Raises
    ------
    ModelError
        For a phase kind the model does not know, or a MAC stream whose flits are not
        column multicasts (the analytic model's assumption).
    MissingActivationsError
        For a MAC stream on float tiles without ``nonzero``.
    """
    if phase.kind not in KINDS:
        raise ModelError(f"phase kind {phase.kind!r} cannot be predicted (known: "
                         f"{', '.join(KINDS)})")
    if not len(phase):
        return 1, "analytic", 0.0, arbiters  # the host sees at once that nothing is left
    if carry is not None and _harmless(timing, carry, gap):
        carry = None
    cfg = timing.config
    if timing.hazards and phase.kind == "stream" and nonzero is None:
        raise MissingActivationsError(
            "a MAC stream on float tiles needs its nonzero activations (the float core's "
            "hazard bubbles depend on them)")
    cycles, method = _analytic(timing, phase, nonzero)
    cost = mesh_seconds(cycles, cfg.rows * cfg.cols)
    # one row for all (rows alike): the same flits, the same work carried in, and the same
    # arbiter pointers (phases whose rows differ, as the attention's, leave them apart)
    row = (_one_row(cfg, phase) if phase.kind not in ("stream", "grad") and cfg.rows > 1
           and sent is None and (carry is None or _rows_alike(cfg, carry))
           and all(np.array_equal(a, np.tile(a[:, :cfg.cols], (1, cfg.rows)))
                   for a in arbiters) else None)
    if row is not None:  # every row alike: one row costs 1 / rows of the array
        cost /= cfg.rows
    if detail == "mesh" or (detail == "auto" and (method != "exact" or carry is not None)
                            and cost <= budget):
        if row is not None:
            # row 0's arbiters and carry in, the same state out for every row (the rows run
            # alike)
            first = tuple(a[:, :cfg.cols] for a in arbiters)
            result = simulate(Timing(cfg.replace(rows=1)), PhaseFlits.from_phase(cfg, row),
                              arbiters=first, carry=_row0(cfg, carry), gap=gap)
            end = _end(phase.kind, result)
            if carried is not None and result.carry is not None:
                tiled = _tile_rows(cfg, result.carry)
                if tiled is not None:
                    carried += [tiled, end + 1 - result.carry.at]
            return end + 1, "mesh", cost, tuple(np.tile(a, (1, cfg.rows))
                                                for a in result.arbiters)
        result = simulate(timing, PhaseFlits.from_phase(cfg, phase, sent), arbiters=arbiters,
                          nonzero=nonzero, carry=carry, gap=gap)
        end = _end(phase.kind, result)
        if carried is not None and result.carry is not None:
            carried += [result.carry, end + 1 - result.carry.at]
        return end + 1, "mesh", cost, result.arbiters
    return cycles, method, 0.0, ()


def _end(kind: str, result) -> int:
    """The cycle a phase ends in at the event level: its last MAC (a stream), activation
    write (a hand-off) or reply (the other kinds); a phase without that event (a load
    without its fence: the wafer model's embedding) at its last event of any kind, or
    when the mesh has nothing left."""
    end = {"stream": result.last_mac, "handoff": result.last_write}.get(kind,
                                                                        result.last_reply)
    if end >= 0:
        return end
    end = max(result.last_mac, result.last_write, result.last_reply)
    return end if end >= 0 else result.cycles - 1


def _harmless(timing: Timing, carry: Carry, gap: int) -> bool:
    """Whether the carried work is over in every core before the next phase's first flit can
    reach it (``gap`` cycles after the snapshot, then ``x + 1`` routers to column ``x``), and
    makes no output: it cannot change the phase, which is then predicted as from idle
    cores (the analytic level stays usable). Counted generously: every carried flit's
    remaining stages, the unit's cycles left and every waiting flit's unit cycles, and a
    bubble per flit."""
    if np.any(carry.rows["out"] >= 0) or np.any(carry.rx >= 0):
        return False
    stages = len(carry.pipe)
    held = carry.pipe >= 0
    if not held.any():
        return True
    depth = np.where(held, stages - np.arange(stages)[:, None], 0).max(axis=0)
    waiting = np.where(held[:3] if stages > 3 else held, carry.rows["iterates"][
        np.maximum(carry.pipe[:3] if stages > 3 else carry.pipe, 0)], 0).sum(axis=0)
    drain = depth + carry.it_left + waiting + held.sum(axis=0)
    x = np.arange(carry.pipe.shape[1]) % timing.config.cols
    return bool(np.all(drain <= gap + timing.to_core(x + 1)))


def _carry_key(carry: Carry | None, gap: int):
    """What a phase's timing depends on of the work it starts on (None: none)."""
    if carry is None:
        return None
    return (gap, carry.pipe.tobytes(), carry.rx.tobytes(), carry.it_flit.tobytes(),
            carry.it_left.tobytes(), *(v.tobytes() for v in carry.rows.values()))


def _rows_alike(config: Config, carry: Carry) -> bool:
    """Whether every row of the cores holds the same carried flits, as row 0 does (the rows
    of a row phase run alike)."""
    C = config.cols
    rows = carry.pipe.reshape(len(carry.pipe), -1, C)
    return bool(np.all(rows == rows[:, :1]) and np.all(
        carry.it_left.reshape(-1, C) == carry.it_left[:C]))


def _row0(config: Config, carry: Carry | None) -> Carry | None:
    """Row 0's part of ``carry`` (for the one-row model of a phase whose rows run alike)."""
    if carry is None:
        return None
    C = config.cols
    return replace(carry, pipe=carry.pipe[:, :C], rx=carry.rx[:C], it_flit=carry.it_flit[:C],
                   it_left=carry.it_left[:C])


def _tile_rows(config: Config, carry: Carry) -> Carry | None:
    """A one-row model's carry for every row (None if a carried flit still has an output to
    make: its route is row 0's)."""
    if np.any(carry.rows["out"] >= 0):
        return None
    R = config.rows
    return replace(carry, pipe=np.tile(carry.pipe, (1, R)), rx=np.tile(carry.rx, R),
                   it_flit=np.tile(carry.it_flit, R), it_left=np.tile(carry.it_left, R))


def _one_row(config: Config, phase: Phase) -> Phase | None:
    """Row 0's flits, if every row of a phase that stays in its rows (load, read, reduce,
    hand-off) carries the same sequence as far as timing goes (rectangles, opcodes, where
    the outputs go; not the values): the rows do not interact, so the phase takes as long as
    one row. None otherwise."""
    f = phase.flits
    port = phase.port
    counts = np.bincount(port, minlength=config.rows)
    used = np.flatnonzero(counts)
    if len(used) < 2 or used[0] != 0 or np.any(counts[used] != counts[0]):
        return None
    n = int(counts[0])
    order = np.argsort(port, kind="stable")
    op = f["payload.op"]
    # where an answering flit's output goes, without its row (the y fields)
    answers = np.isin(op, codes(OPS.emitting()))
    ymask = 0
    for table in (config.route_fields, config.handoff_fields):
        at = 0
        for name, width in table.items():
            if name == "y":
                ymask |= ((1 << width) - 1) << at
            at += width
    data = np.asarray(f["payload.data"], np.int64)
    # (a NONLINEAR's function sets how long it holds its core)
    where = np.where(answers, data & ~ymask, iterative_cycles(config, op, data))
    for column in (f["header.x0"], f["header.x1"], f["header.exit"], f["header.vc"], op,
                   where):
        rows = np.asarray(column)[order].reshape(len(used), n)
        if np.any(rows != rows[0]):
            return None
    mine = port == 0
    return Phase(phase.kind, port[mine], {k: v[mine] for k, v in f.items()},
                 phase.expected_macs, 0, *(getattr(phase, k)[phase.reply_row == 0] for k in
                                           ("reply_row", "reply_slot", "reply_x", "reply_b",
                                            "reply_i")))


def _analytic(timing: Timing, phase: Phase, nonzero: np.ndarray | None = None
              ) -> tuple[int, str]:
    """The analytic estimate, and ``"exact"`` where the analytic model gives the mesh
    model's (and the RTL's) cycles: a stream in which one port feeds each column (on float
    tiles: and no tile takes two MACs in a row into one accumulator with nonzero operands,
    the only way to a hazard bubble), and the load, read and reduce phases of ``compact``
    and ``parallel`` on integer tiles (``lite``'s delivery stage and one-flit local input
    make its tiles answer at rates that depend on the traffic); never on ``voq``
    (:attr:`~.timing.Timing.analytic_exact`)."""
    f = phase.flits
    if phase.kind == "stream":
        if np.any(f["header.x0"] != f["header.x1"]):
            raise ModelError("a stream phase whose MAC flits span several columns cannot be "
                             "predicted (the model assumes one column per MAC flit, as the "
                             "compiler emits)")
        est = stream_cycles(timing, phase.port, f["header.x0"], f["header.y0"],
                            f["header.y1"])
        # (host MACs only: a stream of FINISHes whose outputs are MACs, the attention's,
        # is the mesh model's to play)
        exact = timing.analytic_exact and est.shared <= 1 and np.all(
            f["payload.op"] == Opcode.MAC.value) and not (
            timing.hazards and _may_bubble(timing, phase, nonzero))
        how = "exact" if exact else "bound" if est.bound else "analytic"
        return est.cycles, how
    if phase.kind == "grad":
        return grad_cycles(timing, phase.port, f["header.x0"], f["header.y0"]), "analytic"
    if phase.kind == "handoff":
        return handoff_cycles(timing, phase.port, f["header.x0"], f["header.x1"],
                              f["payload.op"], f["payload.data"],
                              iterative_cycles(timing.config, f["payload.op"],
                                               f["payload.data"])), "analytic"
    exact = timing.analytic_exact and not (timing.lite or timing.hazards)
    return row_cycles(timing, phase.port, f["header.x0"], f["header.x1"],
                      f["payload.op"]), "exact" if exact else "analytic"


def _may_bubble(timing: Timing, phase: Phase, nonzero: np.ndarray | None) -> bool:
    """Whether a float core of a MAC stream (one port per column) meets a hazard in the
    free-flow schedule: a tile takes two MACs into one accumulator with nonzero pairs in
    consecutive cycles (one slot apart with one phit: with phits, slots are longer than a
    cycle and a tile never takes two flits in a row)."""
    if timing.slot > 1:
        return False
    cfg = timing.config
    f = phase.flits
    column = np.asarray(f["header.x0"], np.int64)
    port = np.asarray(phase.port, np.int64)
    served, _ = column_slots(port, column)
    order = np.lexsort((served, column))  # per column, in the order it passes them
    col, served = column[order], served[order]
    addr = np.asarray(f["payload.addr"], np.int64)[order] % cfg.acc_depth
    act = np.asarray(f["payload.addr_b"], np.int64)[order] % cfg.act_depth
    wnz = weight_nonzero(cfg, np.asarray(f["payload.data"], np.int64)[order])
    y0 = np.asarray(f["header.y0"], np.int64)[order]
    y1 = np.asarray(f["header.y1"], np.int64)[order]
    # one port per column: both flits reach every tile of the column one slot apart
    pair = np.flatnonzero((col[1:] == col[:-1]) & (served[1:] - served[:-1] == 1)
                          & (addr[1:] == addr[:-1]) & wnz[1:] & wnz[:-1])
    if not len(pair):
        return False
    if nonzero is None:
        return True
    rows = np.arange(cfg.rows)[:, None]
    a, b = pair, pair + 1
    tile = rows * cfg.cols + col[a][None, :]
    inside = (rows >= np.maximum(y0[a], y0[b])) & (rows <= np.minimum(y1[a], y1[b]))
    both = nonzero[tile, act[a][None, :]] & nonzero[tile, act[b][None, :]]
    return bool((inside & both).any())


def timing_key(config: Config, phase: Phase, *, addresses: bool = True) -> str:
    """A digest of what a phase's predicted cycles depend on: its kind and, per flit, its
    port, rectangle, VC, exit, opcode, addresses and, of its data, what the fabric's timing
    sees (an answering operation's route or hand-off; whether an operation that skips zeros
    has a nonzero weight; a NONLINEAR's function). Phases of equal keys take the same cycles
    (from the same arbiter pointers). ``addresses = False``: without the addresses, for
    phases known to differ only in addresses no timing of theirs reads (the rounds of GELU's
    derivative: each round the same operations on its own scratch accumulators)."""
    import hashlib

    f = phase.flits
    op = np.asarray(f.get("payload.op", np.zeros(len(phase), np.int64)), np.int64)
    data = np.asarray(f.get("payload.data", np.zeros(len(phase), np.int64)), np.int64)
    answers = np.isin(op, codes(OPS.emitting(config)))
    gated = np.isin(op, codes(OPS.where(lambda r: r.skips_zero, config)))
    seen = np.where(answers, data, np.where(gated, weight_nonzero(config, data),
                                            iterative_cycles(config, op, data)))
    digest = hashlib.blake2b(phase.kind.encode(), digest_size=16)
    for column in (np.asarray(phase.port, np.int64), *(
            np.asarray(f[k], np.int64) for k in ("header.x0", "header.x1", "header.y0",
                                                  "header.y1", "header.vc", "header.exit",
                                                  *(("payload.addr", "payload.addr_b")
                                                    if addresses else ()))
            if k in f), op, seen):
        digest.update(np.ascontiguousarray(column).tobytes())
    return digest.hexdigest()


def predict_program(config: Config, program: LayerProgram, *, detail: str = "auto",
                    nonzero: Mapping[int, np.ndarray] | None = None,
                    cache: dict | None = None,
                    sent: Mapping[int, np.ndarray] | None = None) -> Prediction:
    """Predict every phase of ``program`` on ``config``.

    Parameters
    ----------
    config : Config
        The fabric (the program must have been compiled for it).
    program : LayerProgram
        A compiled layer, network or training step.
    detail : str
        ``"auto"``, ``"analytic"`` or ``"mesh"`` (module docstring).
    nonzero : mapping of int to numpy.ndarray, optional
        On float tiles, for each MAC stream phase (by its index in ``program.phases``), which
        activations are nonzero per tile and address (:func:`~wafertile.model.mesh.simulate`;
        a training step's: :func:`wafertile.trainer.model.step_nonzero`).
    sent : mapping of int to numpy.ndarray, optional
        For a phase whose FINISHes send words the tiles made (the attention's keys and
        probabilities), which are nonzero per tile and accumulator
        (:meth:`~wafertile.model.mesh.PhaseFlits.from_phase`); a network's:
        :func:`~wafertile.model.layer.network_nonzero`. Without it they are taken as nonzero.
    cache : dict, optional
        Predictions of phases without a ``nonzero`` table kept across calls, by what their
        timing depends on (:func:`timing_key`): the phases a training step's batch groups and
        its later steps repeat are predicted once. Without it, phases are reused within the
        program by identity (a network's batch groups share phase objects).

    Raises
    ------
    MissingActivationsError
        For a MAC stream on float tiles without its table.
    ModelError
        If a phase cannot be predicted (its kind, or its flits).
    ValueError
        On an unknown ``detail``.
    """
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {', '.join(map(repr, DETAILS))}, not "
                         f"{detail!r}")
    start = time.perf_counter()
    timing = Timing(config)
    kinds, cycles, methods = [], [], []
    elapsed = 0  # cycles since reset: where the next phase starts in the slot
    # a network's batch groups share phase objects (by id), a training step's groups and
    # steps repeat phases with other values (by what the timing depends on)
    seen: dict = cache if cache is not None else {}
    nonzero, sent = nonzero or {}, sent or {}
    budget = MESH_BUDGET
    arbiters: tuple = ()
    carry, rest = None, 0  # the previous phase's cores' work left, and its cycles to the end
    for n, phase in enumerate(program.phases):
        table, words = nonzero.get(n), sent.get(n)
        key = None
        wait = timing.wait(elapsed) if len(phase) else 0
        if table is None and words is None:  # the phase, and the state it starts from
            key = ((detail, id(phase)) if cache is None else
                   (detail, timing_key(config, phase))) + (
                _carry_key(carry, rest + wait), tuple(a.tobytes() for a in arbiters))
        if key is None or key not in seen:
            carried: list = []
            c, how, spent, arbiters = predict_phase(timing, phase, detail=detail,
                                                    budget=budget, arbiters=arbiters,
                                                    nonzero=table, carry=carry,
                                                    gap=rest + wait, carried=carried,
                                                    sent=words)
            budget -= spent
            if key is not None:
                seen[key] = c, how, carried, arbiters
        else:
            c, how, carried, arbiters = seen[key]
        carry, rest = carried or (None, 0)
        c += wait
        kinds.append(phase.kind)
        cycles.append(int(c))
        methods.append(how)
        elapsed += int(c)
    return Prediction(kinds, cycles, methods, time.perf_counter() - start)
