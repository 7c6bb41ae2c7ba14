"""The event-level model: one phase played through every router's buffers and arbiters and
every tile's core, one cycle per step, vectorized over the tiles.

What it keeps: every router's buffers and arbiters, in an object of the router
micro-architecture's class (:mod:`.routers`: :class:`~.routers.CompactRouter`,
:class:`~.routers.ParallelRouter`, :class:`~.routers.LiteRouter`,
:class:`~.routers.VoqRouter`, by ``Config.router_arch`` in :data:`~.routers.ROUTERS`);
per tile core: its pipeline stages (three for the integer core, five for the float core).
Each step (a router moves once per slot, a core once per cycle):

1. every input offers the branches of a head that still have to go and whose next buffer
   had room at the start of the step (``compact`` and ``lite``: the head of one VC per
   input, chosen round-robin; ``parallel``: every VC's head; ``voq``: per (VC, output) the
   oldest flit with a branch for it, :class:`~.routers.VoqRouter`);
2. every output grants one offer round-robin, its candidates in the order of the
   micro-architecture's switch (:attr:`~.routers.Router.orders`; ``lite``: its stages,
   :meth:`~.routers.LiteRouter._grant`); the pointers carry over from one phase to the next,
   as in the RTL; a multicast head keeps its buffer until every branch has gone, one or
   several per step;
3. granted branches enter the next router's buffer (visible next step), the core, or
   leave by the west edge to the host or by the south edge (training's GRAD results); heads
   with nothing left leave their buffers;
4. each west port injects its next flit if the first router's buffer for its VC had room;
5. each core advances unless its last stage holds an output (a reply, ADD, hand-off
   activation or GRAD) that its router's local input cannot take; the integer core's
   hand-off works beside the pipeline (a FINISH leaves the last stage at once, its unit
   multiplies the accumulator's :attr:`~.timing.Timing.limbs` on the MAC's multiplier in
   cycles no MAC moves into the last stage and offers the activation two cycles after the
   last limb; an output or a FINISH waits in the last stage while the unit is busy); a MAC
   is counted in stage
   3 (the float core's S3), an activation write a cycle after the take. The float core's
   first three stages also hold for a cycle, and take no flit, when the flit in S2 reads the
   accumulator that the flit in S3 writes (a MAC only with a nonzero weight and activation:
   the ``nonzero`` table of :func:`simulate`); S3 then moves on empty (the hazard bubble of
   :class:`~wafertile.hdl.core.FpMacCore`). A NONLINEAR (``nonlinear = true``) holds
   S0 .. S3 from the cycle it reaches S3 for its iterative unit's cycles
   (:meth:`~wafertile.hdl.core.units.FpNonlinear.cycles`, by ``data[2:0]``), while S4 moves
   on and drains; it then moves on as any flit.

Steps 1 to 3, but for what reaches a core or the host, are the routers'
(:meth:`~.routers.Router.step`), where the micro-architectures differ in a way the programs
see: the VC choice per input above (``lite``: the input's current VC, which moves on at the
end of a slot in which it sent its head, had nothing to send or is empty); the ``lite``
router's one-flit local input (a core output every other cycle with one phit); its turn
stage ``T`` shared by the W, E and local inputs and its delivery stage ``D``, which on an
edge serves both the local port and the edge's exit (one flit per slot for both). This
module plays the rest, the same for all: the cores, the host, and phits (a router step every
``phits`` cycles, a slot more for the serializer at the edge and the deserializer in front
of each core, whose register frees in the cycle the core takes the flit).
``benchmarks/model.py`` compares it with the RTL: it gives the RTL's cycle count for every
phase of the validation set (193 pairs, 2 853 phases) and of the training set (``--training``:
23 training steps on float tiles, 779 phases; ``docs/performance.md``). Not modelled: the turn
stages of ``compact`` as stages of their own (the compiler's phases never make two inputs
compete for one), and the north and east edges (nothing the compiler emits leaves there).

Cost: a few dozen numpy operations on arrays of ``5 * num_vcs * rows * cols`` elements per
step; :mod:`.predict` uses it only for phases where the analytic bounds are not enough and
the array is small enough (:data:`MESH_BUDGET`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hdl.core.ops import OPS, codes
from ..hdl.core.units import beside_pipeline, core_units, unit_kind
from ..hdl.flit import Opcode, Port, finish_act
from .routers import ROUTERS, Grants, Router, route_bits
from .timing import Timing

__all__ = ["MESH_BUDGET", "Carry", "MeshResult", "PhaseFlits", "iterative_cycles", "mesh_seconds",
           "route_bits", "simulate", "weight_nonzero"]

#: Seconds of mesh model that :mod:`.predict` spends on one program at most (``detail =
#: "auto"``); phases beyond it are predicted analytically.
MESH_BUDGET = 60.0


def mesh_seconds(cycles: float, tiles: int) -> float:
    """About how long :func:`simulate` takes for a phase of ``cycles`` on ``tiles`` tiles (2
    shared cores: 0.3 ms per cycle on 4 x 4, 1.8 ms on 32 x 32)."""
    return cycles * (2.8e-4 + 1.5e-6 * tiles)


_L, _S, _W = Port.LOCAL.value, Port.SOUTH.value, Port.WEST.value

# what a core does with a flit (the kinds of :class:`PhaseFlits`)
_OTHER, _MAC, _WRITE, _ANSWER = 0, 1, 2, 3


def _kinds(config, op: np.ndarray) -> np.ndarray:
    """What the cores of ``config`` do with flits of opcodes ``op`` (of the operation table,
    :mod:`wafertile.hdl.core.ops`): a MAC (counted), an activation write (counted), an
    operation that answers, or nothing counted."""
    kind = np.full(len(op), _OTHER, np.int64)
    kind[np.isin(op, codes(OPS.where(lambda r: r.counts_mac, config)))] = _MAC
    kind[np.isin(op, codes(OPS.where(lambda r: r.act_write is not None, config)))] = _WRITE
    kind[np.isin(op, codes(OPS.emitting(config)))] = _ANSWER
    return kind


def weight_nonzero(config, data) -> np.ndarray:
    """Whether the weights in the low bits of ``data`` fields are nonzero, as the cores test
    them: every bit but the sign for a float format (+0 and -0 are zero), all ``data_width``
    bits for an integer one."""
    width = config.data_width - 1 if config.is_float else config.data_width
    return (np.asarray(data, np.int64) & ((1 << width) - 1)) != 0


def _output_ops(config) -> np.ndarray:
    """The opcode of the flit each opcode's operation emits (indexed by opcode; -1: none)."""
    out = np.full(max(row.code for row in OPS) + 1, -1, np.int64)
    for row in OPS.emitting(config):
        out[row.code] = row.emit.op.value
    return out


def _emitted_ops(config, op: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The opcode of the flit each request of opcode ``op`` (that emits) and ``data`` field
    emits: :func:`_output_ops`, or for an output with choices on this configuration (SEND with
    the nonlinear unit) the one the bits above the route pick (:meth:`~wafertile.hdl.core.ops.
    Emit.opcode`)."""
    out = _output_ops(config)[op]
    for row in OPS.emitting(config):
        ops = row.emit.opcodes(config)
        if len(ops) > 1:
            pick = (data >> row.emit.choice_at(config)) & (len(ops) - 1)
            out = np.where(op == row.code, np.array([o.value for o in ops])[pick], out)
    return out


def _flags(config, op: np.ndarray) -> dict[str, np.ndarray]:
    """Per flit of opcode ``op``, what the float core's hazard check sees of its operation
    (``docs/float.md``): it reads / writes ``acc[addr]`` (``reads``, ``writes``), and only
    for a nonzero pair (``gated``: an operation that skips zeros); and whether its output
    comes from the integer core's hand-off unit beside the pipeline (``holds``: FINISH)."""
    def has(test):
        return np.isin(op, codes(OPS.where(test, config)))
    units = core_units(config)
    return {"reads": has(lambda r: r.acc_read), "writes": has(lambda r: r.acc_write is not None),
            "gated": has(lambda r: r.skips_zero),
            "holds": has(lambda r: r.unit is not None and beside_pipeline(units[r.unit]))}


@dataclass
class PhaseFlits:
    """The flits of one phase as the mesh model plays them: the host's, then the outputs
    their tiles make (a READ's reply, a SEND's ADD, a FINISH's activation, each GRAD of a
    chain down its column and the chain's result out of the south edge), one table.

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
    addr, act : numpy.ndarray
        The accumulator it reads or writes (``addr``) and the activation a MAC multiplies
        (``addr_b``), for the float core's hazard check.
    reads, writes, gated, wnz : numpy.ndarray
        It reads / writes ``acc[addr]``, only for a nonzero pair (``gated``), and its weight
        (the low bits of ``data``) is nonzero.
    holds : numpy.ndarray
        Its output comes from the integer core's hand-off unit (FINISH).
    iterates : numpy.ndarray
        The cycles its core's iterative unit works on it, holding S0 .. S3 (NONLINEAR:
        :meth:`~wafertile.hdl.core.units.FpNonlinear.cycles` of ``data[2:0]``; 0 for the
        others).
    op, act_w : numpy.ndarray
        Its opcode (-1: it leaves the fabric and reaches no core) and the activation its
        ``addr`` addresses (a WRITE_ACT's), for the event counts (:mod:`.events`).
    known : numpy.ndarray
        Whether ``wnz`` is the value's own: a host flit's, or a FINISH's output where the
        phase was made with ``sent`` (:meth:`from_phase`); else it is taken as nonzero.
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
    addr: np.ndarray | None = None
    act: np.ndarray | None = None
    reads: np.ndarray | None = None
    writes: np.ndarray | None = None
    gated: np.ndarray | None = None
    wnz: np.ndarray | None = None
    holds: np.ndarray | None = None
    iterates: np.ndarray | None = None
    op: np.ndarray | None = None
    act_w: np.ndarray | None = None
    known: np.ndarray | None = None

    @classmethod
    def from_phase(cls, config, phase, sent: np.ndarray | None = None) -> PhaseFlits:
        """The table of a :class:`~wafertile.stream.Phase` for ``config``. ``sent``: which
        words a FINISH sends nonzero, per tile (``y * cols + x``) and accumulator (the
        accumulator's value after ReLU, rounded to the format; from the reference): the
        weight of a FINISH's MAC and the activation its WRITE_ACT writes are then known, for
        a FINISH sent to one tile. Without it they are taken as nonzero."""
        f = phase.flits
        n = len(phase)
        op = np.asarray(f["payload.op"], np.int64)
        data = np.asarray(f["payload.data"], np.int64)
        cols = {"x0": f["header.x0"], "x1": f["header.x1"], "y0": f["header.y0"],
                "y1": f["header.y1"], "vc": f["header.vc"], "exit": f["header.exit"],
                "op": op, "addr": f["payload.addr"], "addr_b": f["payload.addr_b"],
                "data": data}
        parts = [{k: np.asarray(v, np.int64) for k, v in cols.items()}]
        outs = [np.full(n, -1, np.int64)]
        known = [np.ones(n, bool)]
        emit_op = _output_ops(config)
        # per opcode: its output goes to a hand-off rectangle / down the column, and where
        # the output's addr and addr_b come from (0: none, 1: the request's addr, 2: addr_b)
        size = len(emit_op)
        handoff, down = np.zeros(size, bool), np.zeros(size, bool)
        source = np.zeros((2, size), np.int64)
        for row in OPS.emitting(config):
            handoff[row.code] = row.data == "handoff"
            down[row.code] = row.emit.route == "down"
            for k, name in enumerate(("addr", "addr_b")):
                where = getattr(row.emit, name)
                if where == "data_act" and not row.emit.chooses(config):
                    where = None
                source[k, row.code] = {None: 0, "addr": 1, "addr_b": 2, "data_act": 3}[where]
        wide = config.handoff and config.nonlinear  # a FINISH's rows y .. y + dy, its act
        act_at, act_width = finish_act(config)
        total = n
        while True:
            level = parts[-1]
            answers = np.flatnonzero((level["op"] >= 0) & (emit_op[np.maximum(level["op"], 0)]
                                                          >= 0))
            if not len(answers):
                break
            o = {k: v[answers] for k, v in level.items()}
            m = len(answers)
            outs[-1][answers] = total + np.arange(m)
            # where the output goes: a FINISH's hand-off rectangle, a GRAD's tile below (the
            # south edge from the last row), else the route in the request's data
            route = _unpack(config.route_fields, o["data"])
            hand = _unpack(config.finish_fields if wide else config.handoff_fields,
                           o["data"])
            hand_y1 = hand["y"] + hand["dy"] if wide else hand["y"]
            how, dn = handoff[o["op"]], down[o["op"]]
            last = o["y0"] == config.rows - 1
            below = np.where(last, o["y0"], o["y0"] + 1)
            nxt = {
                "x0": np.select([how, dn], [hand["x0"], o["x0"]], route["x"]),
                "x1": np.select([how, dn], [hand["x1"], o["x0"]], route["x"]),
                "y0": np.select([how, dn], [hand["y"], below], route["y"]),
                "y1": np.select([how, dn], [hand_y1, below], route["y"]),
                "vc": np.select([how, dn], [hand["vc"], 0], route["vc"]),
                "exit": np.select([how, dn & last, dn], [_L, _S, _L], route["exit"]),
                "op": _emitted_ops(config, o["op"], o["data"]),
                "data": np.zeros(m, np.int64),
            }
            for k, name in enumerate(("addr", "addr_b")):
                pick = source[k, o["op"]]
                act = (o["data"] >> act_at) & ((1 << act_width) - 1)
                nxt[name] = np.select([pick == 1, pick == 2, pick == 3],
                                      [o["addr"], o["addr_b"], act], 0)
            # a FINISH's MAC (docs/attention.md): its weight is a value the model does not
            # compute; it takes it as nonzero, as it takes every activation of a phase
            # without a table, unless ``sent`` gives it (the reference's words)
            nxt["data"] = np.where(how & (nxt["op"] == Opcode.MAC.value), 1, nxt["data"])
            mine = np.zeros(m, bool)
            if sent is not None:  # the word a FINISH sends, where the reference gives it
                mine = ((o["op"] == Opcode.FINISH.value) & (o["x0"] == o["x1"])
                        & (o["y0"] == o["y1"]))
                tile = (np.clip(o["y0"], 0, config.rows - 1) * config.cols
                        + np.clip(o["x0"], 0, config.cols - 1))
                nxt["data"] = np.where(mine, sent[tile, o["addr"] % config.acc_depth],
                                       nxt["data"]).astype(np.int64)
            # what leaves the fabric reaches no core: no operation
            nxt["op"] = np.where(nxt["exit"] != _L, -1, nxt["op"])
            parts.append(nxt)
            outs.append(np.full(m, -1, np.int64))
            known.append(mine)
            total += m
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        op_all = cat["op"]
        kind = _kinds(config, np.maximum(op_all, 0))
        kind[op_all < 0] = _OTHER
        flags = _flags(config, np.maximum(op_all, 0))
        for v in flags.values():
            v[op_all < 0] = False
        iterates = iterative_cycles(config, op_all, cat["data"])
        return cls(
            port=np.concatenate([np.asarray(phase.port, np.int64),
                                 np.full(total - n, -1, np.int64)]),
            x0=cat["x0"], x1=cat["x1"], y0=cat["y0"], y1=cat["y1"], vc=cat["vc"],
            exit=cat["exit"], kind=kind, out=np.concatenate(outs), hosts=n,
            addr=cat["addr"] % config.acc_depth, act=cat["addr_b"] % config.act_depth,
            wnz=weight_nonzero(config, cat["data"]), iterates=iterates, op=op_all,
            act_w=cat["addr"] % config.act_depth, known=np.concatenate(known), **flags)


#: The per-flit columns of a :class:`PhaseFlits` (all but ``port``, ``out`` and ``hosts``).
_COLUMNS = ("x0", "x1", "y0", "y1", "vc", "exit", "kind", "addr", "act", "reads", "writes",
            "gated", "wnz", "holds", "iterates")


@dataclass(frozen=True)
class Carry:
    """What the cores still hold when a phase ends (its last count): the flits in their
    stages, with their outputs, and their iterative units' work left. The RTL's next phase
    starts on top of it (the phase's end is the host's count; a SEND's MAX or MUL may still
    be in its receiving core's unit), so :func:`simulate` starts the next phase from it.

    Attributes
    ----------
    rows : dict of str to numpy.ndarray
        The carried flits' columns (:class:`PhaseFlits`), ``out`` pointing into them.
    pipe : numpy.ndarray
        Stages x nodes: the carried flit in each core stage (-1: empty).
    rx : numpy.ndarray
        With phits: the carried flit in each core's deserializer (-1: empty).
    it_flit, it_left : numpy.ndarray
        The carried flit each iterative unit works on (-1: none) and its cycles left.
    at : int
        The cycle of the snapshot, counted from the phase's first injection.
    """

    rows: dict
    pipe: np.ndarray
    rx: np.ndarray
    it_flit: np.ndarray
    it_left: np.ndarray
    at: int


def _with_carry(flits: PhaseFlits, carry: Carry) -> PhaseFlits:
    """``flits`` with the carried flits appended (after every flit of the phase), uncounted:
    their MAC or write was counted in the phase that took them."""
    n = len(flits.port)
    rows = carry.rows
    m = len(rows["kind"])
    extra = {k: np.concatenate([getattr(flits, k), rows[k]]) for k in _COLUMNS}
    extra["kind"][n:] = np.where(rows["kind"] == _ANSWER, _ANSWER, _OTHER)
    out = np.concatenate([flits.out, np.where(rows["out"] >= 0, rows["out"] + n, -1)])
    return PhaseFlits(port=np.concatenate([flits.port, np.full(m, -1, np.int64)]), out=out,
                      hosts=flits.hosts, **extra)


def iterative_cycles(config, op, data) -> np.ndarray:
    """Per flit of opcode ``op`` and ``data`` field, the cycles its core's iterative unit holds
    the core (NONLINEAR, MUL, MAX: :meth:`~wafertile.hdl.core.units.FpNonlinear.cycles` of
    the function the flit runs, :meth:`~wafertile.hdl.core.units.FpNonlinear.function`); 0
    for every other flit."""
    op, data = np.asarray(op, np.int64), np.asarray(data, np.int64)
    out = np.zeros(len(op), np.int64)
    units = core_units(config)
    for row in OPS.where(lambda r: r.unit is not None and
                         unit_kind(units[r.unit]) == "iterative", config):
        unit = units[row.unit]
        at = op == row.code
        cycles = np.array([unit.cycles(k) for k in range(len(unit.FUNCTIONS))], np.int64)
        out[at] = cycles[unit.function(row, data[at])]
    return out


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
        Cycle of the last MAC (counted in stage 3), activation write (stage 2; the float
        core's S1) and reply at the host or result out of the south edge (-1: none).
    cycles : int
        Cycles from the first injection to the last step.
    arbiters : tuple
        The round-robin pointers of every output and input at the end (what a next phase
        starts from: the RTL keeps them from phase to phase).
    carry : Carry or None
        The cores' unfinished work at the end (what a next phase starts on top of).
    """

    last_mac: int
    last_write: int
    last_reply: int
    cycles: int
    arbiters: tuple = ()
    #: what the cores still hold at the end (None: nothing)
    carry: Carry | None = None


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
        # cores: the stages behind the first (flit ids, -1 empty): ``pipe[k]`` holds the flit
        # taken k + 1 cycles ago (integer core: stages 2 and 3; float core: S1 .. S4); with
        # phits, the deserializer in front of the core holds a delivered flit until the cycle
        # it may be taken
        self.pipe = np.full((timing.out_stage, nodes), -1, np.int64)
        # the integer hand-off beside the pipeline: the output flit of the FINISH it works
        # on (-1: idle), the limbs it has multiplied, whether it multiplied last cycle
        self.u_out = np.full(nodes, -1, np.int64)
        self.u_k = np.zeros(nodes, np.int64)
        self.u_fresh = np.zeros(nodes, bool)
        self.u_go = np.zeros(nodes, bool)
        # the iterative unit (NONLINEAR): the flit it works on (-1: none) and the cycles left
        self.it_flit = np.full(nodes, -1, np.int64)
        self.it_left = np.zeros(nodes, np.int64)
        self.stall = None  # per node: S0 .. S3 wait for the iterative unit (core_ready)
        self.nonzero = None  # per node and activation address (set by simulate)
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
        self.replies = int(np.sum((flits.exit == _W) | (flits.exit == _S)))
        self.last = {"mac": -1, "write": -1, "reply": -1}

    # -- one step --------------------------------------------------------------------------

    def core_ready(self, now: int) -> tuple[np.ndarray, np.ndarray]:
        """Whether each core's pipeline advances in cycle ``now`` (its last stage's output can
        go) and whether its first stages move and take a flit (they do not in a hazard
        bubble of the float core)."""
        f = self.f
        last = self.pipe[-1]
        out = f.out[np.maximum(last, 0)]
        emits = (last >= 0) & (out >= 0)
        if self.t.limbs:  # the integer hand-off: FINISH's output comes from the unit
            active = self.u_out >= 0
            holds = f.holds[np.maximum(last, 0)]
            offers = active & (self.u_k == self.t.limbs) & ~self.u_fresh
            self.u_go = offers & self.routers.local_room(f.vc[np.maximum(self.u_out, 0)], now)
            # a FINISH may start the unit in the cycle its last output goes
            blocked = active & emits & ~(holds & self.u_go)
            advance = (~(emits & ~holds) | self.routers.local_room(f.vc[out], now)) & ~blocked
            return advance, advance
        advance = ~emits | self.routers.local_room(f.vc[out], now)
        self.stall = None
        if not self.t.hazards:
            return advance, advance
        # the flit in S2 reads the accumulator the flit in S3 writes (a MAC: a nonzero pair)
        s2, s3 = self.pipe[1], self.pipe[2]
        hazard = ((s2 >= 0) & (s3 >= 0) & f.reads[np.maximum(s2, 0)]
                  & f.writes[np.maximum(s3, 0)] & (f.addr[np.maximum(s2, 0)]
                                                   == f.addr[np.maximum(s3, 0)]))
        if hazard.any():
            at = np.flatnonzero(hazard)
            hazard[at] = self._effective(s2[at], at) & self._effective(s3[at], at)
        iterating = (s3 >= 0) & (f.iterates[np.maximum(s3, 0)] > 0)
        if iterating.any():  # NONLINEAR in S3: its unit starts there, S0 .. S3 wait for it
            fresh = iterating & (self.it_flit != s3)
            self.it_flit[fresh] = s3[fresh]
            self.it_left[fresh] = f.iterates[s3[fresh]]
            stall = iterating & (self.it_left > 0)
            self.it_left[iterating] -= stall[iterating]  # the unit works on, held or not
            if stall.any():
                self.stall = stall
                return advance, advance & ~hazard & ~stall
        return advance, advance & ~hazard

    def _effective(self, fid: np.ndarray, node: np.ndarray) -> np.ndarray:
        """Whether flits ``fid`` at cores ``node`` touch their accumulator: an operation that
        skips zeros only for a nonzero weight and activation."""
        f = self.f
        gated = f.gated[fid]
        pair = f.wnz[fid]
        if self.nonzero is not None:
            pair = pair & self.nonzero[node, f.act[fid]]
        return ~gated | pair

    def route(self, now: int, move: np.ndarray) -> np.ndarray:
        """One router step; returns the flit each core is given this cycle (-1: none)."""
        step = self.routers.step(self._local_room(move))   # 1 to 3: offers, grants, buffers
        given = self._deliver(now, step.grants)               # 3: to the cores and the host
        self._inject(step.full)                               # 4: from the host
        self.routers.end_slot(step)                           # the VC pointers move on
        return given

    def _local_room(self, move: np.ndarray) -> np.ndarray:
        """Whether each router's local output may send: its core takes a flit (with phits:
        the deserializer in front of it is free, again in the cycle the core takes its
        flit)."""
        return (self.rx < 0) if self.h > 1 else move

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
        exits = (((grants.bits & (1 << _W)) != 0) & (self.routers.x[grants.node] == 0)) | (
            ((grants.bits & (1 << _S)) != 0) & (self.routers.y[grants.node] == self.R - 1))
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

    def core(self, now: int, advance: np.ndarray, move: np.ndarray, given: np.ndarray
             ) -> None:
        """One cycle of every core (after the routers decided what they deliver)."""
        f = self.f
        t = self.t
        self.routers.cycle(now)
        adv = np.flatnonzero(advance)
        pipe = self.pipe
        fired = pipe[t.mac_stage - 1, adv]
        mac = (fired >= 0) & (f.kind[np.maximum(fired, 0)] == _MAC)
        if mac.any():
            self.macs -= int(mac.sum())
            self.last["mac"] = now
        moving = np.flatnonzero(move)
        written = pipe[t.write_stage - 1, moving]
        write = (written >= 0) & (f.kind[np.maximum(written, 0)] == _WRITE)
        if write.any():
            self.writes -= int(write.sum())
            self.last["write"] = now
        last = pipe[-1, adv]
        emits = (last >= 0) & (f.out[np.maximum(last, 0)] >= 0)
        if t.limbs:
            self._handoff(advance, adv, last, emits)
            emits &= ~f.holds[np.maximum(last, 0)]
        if emits.any():
            self.routers.push(_L, adv[emits], f.out[last[emits]])
        if len(moving) == len(adv):
            pipe[1:, adv] = pipe[:-1, adv]
            pipe[0, adv] = given[adv]
            return
        # a bubble: S3 and S4 move on (S3 empty), S0 .. S2 hold; the others move as one; a
        # NONLINEAR's wait: S4 moves on (empty), S0 .. S3 hold
        stall = self.stall if self.stall is not None else np.zeros(self.nodes, bool)
        held = np.flatnonzero(advance & ~move & ~stall)
        waiting = np.flatnonzero(advance & stall)
        pipe[1:, moving] = pipe[:-1, moving]
        pipe[0, moving] = given[moving]
        pipe[3, held] = pipe[2, held]
        pipe[2, held] = -1
        pipe[3, waiting] = -1

    def _handoff(self, advance: np.ndarray, adv: np.ndarray, last: np.ndarray,
                 emits: np.ndarray) -> None:
        """One cycle of the integer hand-off units: an offered activation into the router,
        a limb multiplied where no MAC moves into the last stage, a FINISH leaving it
        starts its unit (idle: a FINISH waits while it is active)."""
        f = self.f
        go = np.flatnonzero(self.u_go)
        if len(go):
            self.routers.push(_L, go, self.u_out[go])
            self.u_out[go] = -1
        s1 = self.pipe[0]
        mac_moves = (s1 >= 0) & f.gated[np.maximum(s1, 0)] & advance
        multiply = (self.u_out >= 0) & (self.u_k < self.t.limbs) & ~mac_moves
        self.u_k += multiply
        self.u_fresh = multiply
        start = emits & f.holds[np.maximum(last, 0)]
        if start.any():
            at = adv[start]
            self.u_out[at] = f.out[last[start]]
            self.u_k[at] = 0

    def take(self, now: int, move: np.ndarray) -> np.ndarray:
        """With phits: the flit each core takes from its deserializer this cycle."""
        ready = (self.rx >= 0) & (self.rx_at <= now) & move
        given = np.where(ready, self.rx, -1)
        self.rx = np.where(ready, -1, self.rx)
        return given

    def busy(self) -> bool:
        return self.macs > 0 or self.writes > 0 or self.replies > 0

    def snapshot(self, now: int) -> Carry | None:
        """The cores' flits and units at cycle ``now`` (None if every core is empty)."""
        held = np.concatenate([self.pipe.ravel(), self.rx])
        ids = np.unique(held[held >= 0])
        if not len(ids):
            return None
        f = self.f
        outs = f.out[ids]
        ids = np.unique(np.concatenate([ids, outs[outs >= 0]]))
        index = np.full(len(f.port), -1, np.int64)
        index[ids] = np.arange(len(ids))
        rows = {k: getattr(f, k)[ids] for k in _COLUMNS}
        out = f.out[ids]
        rows["out"] = np.where(out >= 0, index[np.maximum(out, 0)], -1)

        def remap(a):
            return np.where(a >= 0, index[np.maximum(a, 0)], -1)
        # the unit's flit while it is in S3 (done or not: a done one moves on, it does not
        # start again)
        mine = (self.it_flit >= 0) & (self.it_flit == self.pipe[2]) if len(self.pipe) > 2 \
            else np.zeros(self.nodes, bool)
        return Carry(rows, remap(self.pipe), remap(self.rx),
                     np.where(mine, remap(self.it_flit), -1), np.where(mine, self.it_left, 0),
                     now)

    def restore(self, carry: Carry) -> None:
        """Start from ``carry`` (its flits appended to the table by :func:`_with_carry`)."""
        n = len(self.f.port) - len(carry.rows["kind"])

        def shift(a):
            return np.where(a >= 0, a + n, -1)
        self.pipe[:] = shift(carry.pipe)
        self.rx[:] = shift(carry.rx)
        self.it_flit[:] = shift(carry.it_flit)
        self.it_left[:] = carry.it_left

    def idle_cycle(self, now: int) -> None:
        """A cycle between two phases: the cores work on what they hold; nothing is injected
        and the routers do not step (what a core outputs waits in its router's local input)."""
        advance, move = self.core_ready(now)
        self.core(now, advance, move, np.full(self.nodes, -1, np.int64))


def simulate(timing: Timing, flits: PhaseFlits, *, limit: int | None = None,
             arbiters: tuple = (), nonzero: np.ndarray | None = None,
             carry: Carry | None = None, gap: int = 0) -> MeshResult:
    """Play one phase from an empty fabric, its first injection at cycle 0 (a slot
    boundary), until every MAC, activation write and reply it causes is counted (a reply:
    a flit out of the west edge, or a GRAD chain's result out of the south edge).
    ``arbiters``: the round-robin pointers the previous phase left
    (:attr:`MeshResult.arbiters`; default: reset). ``nonzero``: for the float core, which
    activations are nonzero, per tile (``row * cols + column``) and activation address
    (bool, ``tiles x act_depth``): a MAC with a zero operand skips its accumulator and never
    makes a hazard bubble (default: every activation nonzero). ``carry``: what the previous
    phase's cores still held at its snapshot (:attr:`MeshResult.carry`), ``gap`` cycles
    before this phase's first injection; the cores play those cycles first. The result's
    ``carry`` is taken at the phase's end as the host sees it (the last count, and a reply's
    ``adapter`` cycles).

    Raises
    ------
    RuntimeError
        If the phase does not finish within ``limit`` cycles (default: generous for the
        phase's size; only a bug in the model can reach it).
    """
    if carry is not None:
        flits = _with_carry(flits, carry)
    mesh = _Mesh(timing, flits)
    if nonzero is not None:
        mesh.nonzero = np.asarray(nonzero, bool)
    if arbiters:
        mesh.routers.arbiters = arbiters
    h = timing.slot
    if carry is not None:
        mesh.restore(carry)
        for now in range(-gap, 0):
            mesh.idle_cycle(now)
    if limit is None:
        limit = 8 * h * (flits.hosts + len(flits.port) + 1) * (mesh.R + mesh.C + mesh.B) + \
            1000 + int(flits.iterates.sum() if flits.iterates is not None else 0)
    now = 0
    while mesh.busy():
        if now > limit:
            raise RuntimeError(f"the mesh model of a phase of {flits.hosts} flits did not "
                               f"finish in {limit} cycles")
        advance, move = mesh.core_ready(now)
        if h > 1:
            given = mesh.take(now, move)
            if now % h == 0:
                mesh.route(now, move)
        else:
            given = mesh.route(now, move)
        mesh.core(now, advance, move, given)
        now += 1
    return MeshResult(mesh.last["mac"], mesh.last["write"], mesh.last["reply"], now,
                      mesh.routers.arbiters, mesh.snapshot(now))
