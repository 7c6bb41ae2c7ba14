"""Predicting a layer or a network from its arrays: what ``wafertile run --fidelity model``
does instead of building and simulating the RTL.

A program small enough to compile in full (:data:`LEAN_FLITS` flits) is compiled as
``wafertile run`` compiles it and predicted phase by phase (:func:`predict_program`). A
larger one, a wafer-size layer, is predicted from its plan without building the phases that
do not need to exist as flits: every row of a load, reduce or read phase carries the same
sequence, so one row is built (by the compiler's own functions) and predicted; each pass's
MAC stream is taken from the plan as two columns (port, column). The dense baseline of such
a layer has a flit per weight; its stream is predicted from its periodic structure
(:func:`dense_stream`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..hdl.flit import Opcode
from ..stream import (
    LayerPlan,
    LayerProgram,
    PhaseBuilder,
    add_activations,
    add_zero,
    check_layer,
    compile_layer,
    plan_layer,
    read_phase,
    reduce_phases,
)
from .flow import rank
from .phases import row_cycles
from .predict import (
    ModelError,
    Prediction,
    UnmodelledConfigError,
    predict_program,
)
from .stream import stream_cycles
from .timing import Timing

__all__ = ["LEAN_FLITS", "LayerPrediction", "dense_stream", "network_nonzero", "predict_layer",
           "predict_network"]

_log = logging.getLogger(__name__)

#: Flits of a program above which :func:`predict_layer` predicts from the plan instead of
#: compiling every phase (a compiled flit costs about 100 bytes in the column store).
LEAN_FLITS = 4_000_000


@dataclass
class LayerPrediction:
    """The predictions of a layer (or network) and of its dense stream.

    Attributes
    ----------
    sparse : Prediction
        The program as compiled (only nonzero weights).
    dense : Prediction or None
        Every weight streamed (None when not asked for).
    nnz : int
        Nonzero weights.
    macs : int
        MACs the tiles execute (done or skipped: a zero activation is skipped).
    seconds : float
        Wall time, compiling included.
    program : LayerProgram or None
        The sparse program predicted (a network's, with its phases' layers and steps), or
        None.
    nonzero, sent : dict or None
        A float network's: the sparse program's tables from the reference, as
        :func:`network_nonzero` makes them (:meth:`tables`).
    """

    sparse: Prediction
    dense: Prediction | None
    nnz: int
    macs: int
    seconds: float
    program: Any = None
    nonzero: dict | None = None
    sent: dict | None = None

    def tables(self, config: Config, net, x: np.ndarray) -> tuple[dict, dict]:
        """``(nonzero, sent)`` of the network ``net`` on ``x`` whose prediction this is
        (:func:`network_nonzero`): those the prediction made, or (an integer network's,
        which its timing does not need) made now."""
        if self.nonzero is None:
            sent: dict = {}
            return network_nonzero(config, net, x, self.program, sent=sent), sent
        return self.nonzero, self.sent

def activation_table(config: Config, plan: LayerPlan, base: int, values) -> np.ndarray:
    """Which activations the tiles hold nonzero when a layer of ``plan`` streams, for one
    batch group: ``values`` (the group's rows x ``J``, numbers of the tiles' format) as the
    compiler lays them out (:func:`~wafertile.stream.add_activations`, a hand-off: chunk
    ``k`` at ``base`` onwards in every tile of column block ``k`` of the row); bool, tiles
    (``row * cols + column``) x ``act_depth``."""
    C = config.cols
    table = np.zeros((config.rows * C, config.act_depth), bool)
    nz = np.asarray(values) != 0
    rows = np.arange(len(nz))
    for k in range(plan.K):
        j0, j1 = k * plan.chunk, min(plan.J, (k + 1) * plan.chunk)
        for c in range(k * plan.G, min(C, (k + 1) * plan.G)):
            table[rows * C + c, base:base + j1 - j0] = nz[:, j0:j1]
    return table


def phase_groups(config: Config, program: LayerProgram, batch: int) -> list[int]:
    """The batch group of each phase of a ``program`` compiled for ``batch`` inputs: its
    place in the program (every group compiles to as many phases)."""
    n_groups = max(1, -(-batch // config.rows))
    per, extra = divmod(len(program.phases), n_groups)
    if extra:  # pragma: no cover - the compilers give every group as many phases
        raise ModelError(f"{len(program.phases)} phases for {n_groups} batch groups")
    return [n // per for n in range(len(program.phases))]


def stream_tables(config: Config, program: LayerProgram, batch: int, layer_of, tables
                  ) -> dict[int, np.ndarray]:
    """The nonzero table of every MAC stream of a float ``program`` compiled for ``batch``
    inputs: its batch group is its place in the program (every group compiles to as many
    phases), its layer ``layer_of[n]``; ``tables(layer, group)`` makes the table."""
    group = phase_groups(config, program, batch)
    made: dict[tuple[int, int], np.ndarray] = {}
    out = {}
    for n, phase in enumerate(program.phases):
        if phase.kind != "stream":
            continue
        key = (layer_of[n], group[n])
        if key not in made:
            made[key] = tables(*key)
        out[n] = made[key]
    return out


def program_flits(config: Config, shape: tuple[int, int, int], nnz: int) -> int:
    """About how many flits compiling a layer of ``shape`` (B, I, J) with ``nnz`` nonzero
    weights makes: activations, zeroing and fences, MAC stream, reduction, reads."""
    B, I, J = shape
    R = config.rows
    groups = -(-max(B, 1) // R)
    K = max(1, -(-J // config.act_depth))
    return B * J + groups * nnz + B * I * (2 if K > 1 else 1) + groups * R * (I + 2)


def predict_layer(config: Config, x: np.ndarray, w: np.ndarray, *, dense: bool = True,
                  detail: str = "auto") -> LayerPrediction:
    """Predict ``Y = X @ W.T`` on ``config`` (and the dense stream of the same layer).

    Parameters
    ----------
    config : Config
        The fabric.
    x, w : numpy.ndarray
        Activations (B x J) and weights (I x J), checked as ``wafertile run`` checks them.
    dense : bool
        Also predict the dense stream (for the speedup).
    detail : str
        ``"auto"``, ``"analytic"`` or ``"mesh"`` (:func:`predict_program`); a program above
        :data:`LEAN_FLITS` flits is always analytic.

    Raises
    ------
    LayerError
        For a layer the compiler refuses (before anything is predicted).
    UnmodelledConfigError
        For a float layer above :data:`LEAN_FLITS` flits (a float layer is compiled in full:
        its streams are predicted with the tiles' nonzero activations): an
        :class:`~wafertile.errors.InputError` and a :class:`ModelError`.
    """
    start = time.perf_counter()
    x = np.asarray(x)
    w = np.asarray(w)
    nnz_rows = np.count_nonzero(w, axis=1)
    nnz = int(nnz_rows.sum())
    macs = nnz * x.shape[0]
    flits = program_flits(config, (x.shape[0], w.shape[0], w.shape[1]), nnz)
    if config.is_float and flits > LEAN_FLITS:
        raise UnmodelledConfigError(
            f"a float layer of about {flits} flits: the model predicts float layers of at "
            f"most {LEAN_FLITS} flits (compiled in full, for the tiles' activations); use "
            f"an integer dtype or --fidelity rtl")
    if flits <= LEAN_FLITS:
        def run(dense_: bool) -> Prediction:
            program = compile_layer(config, x, w, dense=dense_)
            nonzero = None
            if config.is_float:  # the hazard bubbles: the tiles' nonzero activations
                plan = plan_layer(config, w, dense=dense_, streams=False)
                R = config.rows
                nonzero = stream_tables(
                    config, program, x.shape[0], [0] * len(program.phases),
                    lambda _layer, g: activation_table(config, plan, 0, x[g * R:(g + 1) * R]))
            return predict_program(config, program, detail=detail, nonzero=nonzero)

        _log.info(f"compiling and predicting the sparse program ({nnz} nonzero weights)")
        sparse = run(False)
        full = None
        if dense:
            _log.info("compiling and predicting the dense program")
            full = run(True)
        return LayerPrediction(sparse, full, nnz, macs, time.perf_counter() - start)
    check_layer(config, x, w)
    _log.info(f"planning and predicting the sparse stream ({nnz} nonzero weights, "
              f"analytic: too large to compile in full)")
    sparse = _lean(config, x, w)
    if dense:
        _log.info("predicting the dense stream from its periodic structure")
    full = _lean(config, x, w, dense=True) if dense else None
    return LayerPrediction(sparse, full, nnz, macs, time.perf_counter() - start)


def _lean(config: Config, x: np.ndarray, w: np.ndarray, *, dense: bool = False
          ) -> Prediction:
    """The analytic prediction of a compiled layer, from its plan (module docstring)."""
    start = time.perf_counter()
    timing = Timing(config)
    plan = plan_layer(config, w, dense=dense, streams=not dense)
    for p, (port, fields) in enumerate(plan.streams):  # the model needs the columns only
        plan.streams[p] = (port, {"x0": fields["x0"]})
    R = config.rows
    B = x.shape[0]
    kinds: list[str] = []
    cycles: list[int] = []
    methods: list[str] = []
    elapsed = 0
    cache: dict[tuple, tuple[int, str]] = {}

    def add(kind: str, key: tuple, predict) -> None:
        nonlocal elapsed
        if key not in cache:
            cache[key] = predict()
        c, how = cache[key]
        if c > 1:  # a phase with flits starts at a slot boundary
            c += timing.wait(elapsed)
        kinds.append(kind)
        cycles.append(int(c))
        methods.append(how)
        elapsed += int(c)

    for g0 in range(0, max(B, 1), R):
        rows = min(R, B - g0)
        for p in range(plan.passes):
            def load(p=p):
                row = PhaseBuilder()
                if p == 0:
                    add_activations(row, plan, x[:1])  # every row alike
                add_zero(row, plan, p, 1)
                return _row(timing, row.phase("load"))
            add("load", ("load", p), load)
            if dense:
                add("stream", ("stream", p, rows), lambda p=p, rows=rows: dense_stream(
                    timing, plan, p, rows))
            else:
                add("stream", ("stream", p, rows), lambda p=p, rows=rows: _stream(
                    timing, plan, p, rows))
            if plan.K > 1:
                for k, phase in enumerate(reduce_phases(plan, p, 1)):
                    add("reduce", ("reduce", p, k), lambda phase=phase: _row(timing, phase))
            add("read", ("read", p), lambda p=p: _row(timing, read_phase(plan, p, 1)))
    return Prediction(kinds, cycles, methods, time.perf_counter() - start)


def _row(timing: Timing, phase) -> tuple[int, str]:
    f = phase.flits
    # exact on compact and parallel (predict._analytic says why)
    exact = timing.analytic_exact and not timing.lite
    return row_cycles(timing, phase.port, f["header.x0"], f["header.x1"],
                      f["payload.op"]), "exact" if exact else "analytic"


def _stream(timing: Timing, plan: LayerPlan, p: int, rows: int) -> tuple[int, str]:
    port, fields = plan.streams[p]
    est = stream_cycles(timing, port, fields["x0"], 0, max(rows - 1, 0))
    exact = timing.analytic_exact and est.shared <= 1
    return est.cycles, "exact" if exact else "bound" if est.bound else "analytic"


def dense_stream(timing: Timing, plan: LayerPlan, p: int, rows: int) -> tuple[int, str]:
    """The dense stream of pass ``p`` of a dense plan without its flits.

    Every output has one flit per weight and each port interleaves its outputs, flit ``n``
    of each then ``n + 1``, so port ``q``'s sequence repeats its ``m`` outputs' columns
    (chunk by chunk when a row is split). When every column is fed by one port only, no
    column queues and the free-flow result is the latest of each port's last round:
    ``(flits - m + r) + column + 1`` slots for its output of rank ``r``, plus the rows it
    reaches (``"exact"``, as the analytic stream is then). A split row whose ports move in
    lockstep, one port a column at a time: :func:`_lockstep` (``"lockstep"``). Otherwise the
    port and column bounds (``"bound"``).
    """
    cfg = timing.config
    port = plan.ports(p)
    parts = plan.parts(p)
    group = np.full(plan.I, -1, dtype=np.int64)
    for g, part in enumerate(parts):
        group[part] = g
    members = np.flatnonzero(port >= 0)
    if not len(members):
        return 1, "analytic"
    q = port[members]
    m = np.bincount(q, minlength=cfg.rows)
    J = plan.J
    flits = m * J
    # columns of each port (over all chunks)
    col = (np.arange(plan.K)[None, :] * plan.G + group[members][:, None])
    pairs = np.unique(np.repeat(q, plan.K) * cfg.cols + col.ravel())  # (port, column)
    fed = np.bincount(pairs % cfg.cols, minlength=cfg.cols)
    reach = np.maximum(q, rows - 1 - q)
    h = timing.slot
    if plan.K == 1 and fed.max() <= 1:
        # the rank of each output among its port's, in the order the plan deals them
        order = plan.longest[np.isin(plan.longest, members)]
        ranks = np.zeros(plan.I, dtype=np.int64)
        ranks[order] = rank(port[order])
        last = (flits[q] - m[q] + ranks[members]) + group[members] + 1 + reach
        return int(last.max()) * h + timing.adapter + timing.mac_stage + 1, (
            "exact" if timing.analytic_exact else "analytic")
    if plan.K > 1:
        lock = _lockstep(plan, p, port, q, group[members], flits, rows)
        if lock is not None:
            return lock * h + timing.adapter + timing.mac_stage + 1, "lockstep"
    # chunk k of every output goes to column k * G + g(output)
    columns = np.bincount(col.ravel(), weights=np.tile(plan.chunk_sizes, len(members)),
                          minlength=cfg.cols)
    busiest = max(int(flits.max()), int(columns.max()))
    last = busiest + cfg.cols + int(reach.max())
    return last * h + timing.adapter + timing.mac_stage + 1, "bound"


def _lockstep(plan: LayerPlan, p: int, port: np.ndarray, q: np.ndarray, g: np.ndarray,
              flits: np.ndarray, rows: int) -> int | None:
    """The last slot of a split dense stream whose ports move in lockstep, or None.

    Lockstep: every port's outputs are in one group, the chunks are equally long, and the
    ports of a group (at most ``K``) carry equally many flits and start on different chunks
    (the compiler's order, :meth:`~wafertile.stream.plan.LayerPlan.first_chunks`): then a
    column is fed by one port at a time. A port's last flit, injected in slot ``flits -
    1``, goes to its last chunk ``f - 1`` (mod ``K``) of its group, one slot a router, then
    to the ``rows`` rows of the rectangle. Each change of column costs the ports the slots
    in which the port they follow still has flits on their way along the column: ``(2 K -
    3) G`` slots a phase, measured on the event level (docs/performance.md), added here.
    ``port``: every output's port (:meth:`~wafertile.stream.plan.LayerPlan.ports`); ``q``,
    ``g``: the port and group of each of the pass's outputs; ``flits``: per port.
    """
    K, G = plan.K, plan.G
    sizes = plan.chunk_sizes
    if (sizes != sizes[0]).any():
        return None
    lead = np.full(plan.config.rows, -1, dtype=np.int64)
    lead[q] = g
    if (lead[q] != g).any():  # a port with outputs of two groups
        return None
    ports = np.unique(q)
    first = plan.first_chunks(p, port)[ports]
    if len(np.unique(lead[ports] * K + first)) < len(ports):  # two of a group on one chunk
        return None
    per_group = np.full(G, -1, dtype=np.int64)
    per_group[lead[ports]] = flits[ports]
    if (per_group[lead[ports]] != flits[ports]).any():  # unequal loads drift apart
        return None
    column = ((first - 1) % K) * G + lead[ports]
    last = flits[ports] - 1 + column + 1 + np.maximum(ports, rows - 1 - ports)
    return int(last.max()) + (2 * K - 3) * G


def predict_network(config: Config, net, x: np.ndarray, *, dense: bool = True,
                    detail: str = "auto") -> LayerPrediction:
    """Predict a network (:class:`~wafertile.network.model.Network`) on inputs ``x``, as
    ``wafertile run --network`` compiles it (and its dense stream). A float network's streams
    are predicted with the activations that enter each layer, as
    :func:`wafertile.sim.models.network.network_reference` computes them (the float core's
    hazard bubbles depend on which are zero).

    Raises
    ------
    NetworkError
        For a network the compiler refuses.
    """
    from ..network.compiler import NetworkProgram, compile_network

    start = time.perf_counter()

    def run(dense_: bool) -> tuple[Prediction, NetworkProgram, dict | None, dict]:
        program = compile_network(config, net, x, dense=dense_)
        # a float network's streams: the activations entering each layer, as the tiles hold
        # them (the float core's hazard bubbles depend on which are zero)
        sent: dict = {}
        nonzero = (network_nonzero(config, net, x, program, sent=sent) if config.is_float
                   else None)
        return predict_program(config, program, detail=detail, nonzero=nonzero,
                               sent=sent), program, nonzero, sent

    sparse, program, nonzero, sent = run(False)
    full = run(True)[0] if dense else None
    macs = sum(int(p.expected_macs) for p in program.phases)
    return LayerPrediction(sparse, full, net.nnz, macs, time.perf_counter() - start, program,
                           nonzero, sent if nonzero is not None else None)


def network_nonzero(config: Config, net, x: np.ndarray, program, *,
                    sent: dict | None = None) -> dict[int, np.ndarray]:
    """Which activations each tile holds nonzero when each MAC stream of a compiled
    network ``program`` runs (per phase index: tiles x ``act_depth``), from the activations
    that enter each layer as :func:`wafertile.sim.models.network.network_reference` computes
    them (a residual's kept outputs included). The attention's MACs (docs/attention.md)
    read queries and values that the tiles wrote themselves, with keys and probabilities
    that FINISHes send, and its softmax's MACs the maximum and reciprocal that FINISHes
    spread: all from the reference's attention. ``sent``: a dict that takes, per phase of a
    row operation (the attention, a LayerNorm, the softmax), which words its FINISHes send
    nonzero (tiles x ``acc_depth``,
    :meth:`~wafertile.model.mesh.PhaseFlits.from_phase`), for
    :func:`~wafertile.model.predict.predict_program` and
    :func:`~wafertile.model.events.program_events`; without it the model takes them as
    nonzero, exact unless one rounds to +0 or -0."""
    from ..network.compiler import output_places
    from ..sim.models.network import network_reference

    kept: dict[int, np.ndarray] = {}  # a residual's kept outputs (words), by source layer
    steps: dict[int, dict] = {}  # the numbers the row operations hand on, by layer
    acts = network_reference(config, net, np.asarray(x, np.float32 if config.is_float
                                                      else np.int64), kept=kept,
                             steps=steps)[1]
    R = config.rows

    def table(layer: int, g: int) -> np.ndarray:
        out = activation_table(config, program.plans[layer], program.bases[layer],
                               acts[layer][g * R:(g + 1) * R])
        k = net.layers[layer].res
        if k is not None:  # the kept outputs its residual's MACs read
            column, slot = output_places(program.plans[layer])
            words = kept[k][g * R:(g + 1) * R]
            nz = (words & 0x7FFF) != 0
            rows = np.arange(len(words))[:, None]
            out[rows * config.cols + column[None, :], program.keep_base + slot[None, :]] = nz
        return out

    nonzero = stream_tables(config, program, len(x), program.phase_layer, table)
    group = phase_groups(config, program, len(x))
    made: dict[tuple, Any] = {}
    for n, phase in enumerate(program.phases):
        step = program.phase_step[n]
        if step not in ("attention", "layernorm", "softmax"):
            continue
        layer, g = program.phase_layer[n], group[n]
        if step == "attention" and phase.kind == "stream":
            key = ("acts", layer, g)
            if key not in made:
                made[key] = attention_tables(config, net, len(x), layer, g,
                                             steps[layer]["attention"])[0]
            nonzero[n] = made[key]
        kind = spread_kind(phase, 1)
        if sent is None or kind is None:
            continue
        late, second = kind
        key = ("sent", step, layer, g, late, second)
        if key not in made:
            made[key] = sent_words(config, net, program, len(x), step, layer, g,
                                   steps[layer][step], late=late, second=second)
        sent[n] = made[key]
    return nonzero


def spread_kind(phase, second_act: int) -> tuple[bool, bool] | None:
    """Which number a row operation's ``phase`` spreads from its leader's scratch
    accumulator: ``(late, second)``, after a NONLINEAR the last one (the reciprocal, the
    reciprocal square root), into activation ``second_act`` LayerNorm's ``c2``, else the
    first; None for a phase without FINISHes."""
    if not len(phase):
        return None
    ops = np.asarray(phase.flits["payload.op"])
    finish = ops == Opcode.FINISH.value
    if not finish.any():
        return None
    return (bool(np.any(ops == Opcode.NONLINEAR.value)),
            bool(np.any(np.asarray(phase.flits["payload.addr_b"])[finish] == second_act)))


def sent_words(config: Config, net, program, batch: int, step: str, layer: int, group: int,
               steps: dict, *, late: bool, second: bool) -> np.ndarray:
    """Which words the FINISHes of layer ``layer``'s row operation ``step`` (``"attention"``,
    ``"layernorm"``, ``"softmax"``) send nonzero in batch ``group`` (tiles x ``acc_depth``),
    from the reference's ``steps`` of it (the whole batch;
    :func:`wafertile.sim.models.network.network_reference`): the attention's queries,
    keys, values and probabilities (:func:`attention_tables`), and what a row's leader
    spreads from its scratch accumulator: a LayerNorm's ``c1`` (``c2`` if ``second``, ``r``
    if ``late``) at column 0, the softmax's maximum (the reciprocal if ``late``) at column 0
    or, in the attention, at each head's tile."""
    from ..stream.rows import softmax_scratch

    R, C = config.rows, config.cols
    r0 = group * R
    rows = np.arange(min(R, batch - r0))
    if step == "attention":
        return attention_tables(config, net, batch, layer, group, steps, late=late)[1]
    words = np.zeros((R * C, config.acc_depth), bool)
    if step == "layernorm":
        numbers = steps["rsqrt" if late else "mean2" if second else "mean"]
    else:
        numbers = steps["recip" if late else "max"]
    z = softmax_scratch(program.plans[layer])
    words[rows * C, z] = (np.asarray(numbers)[r0 + rows] & 0x7FFF) != 0
    return words


def _layout(config: Config, net, batch: int, layer: int, group: int):
    """The attention's layout in batch ``group``, its first row in the batch and its first
    sequence among the batch's."""
    from ..network.compiler import attention_layout

    r0 = group * config.rows
    lay = attention_layout(config, net.layers[layer], min(config.rows, batch - r0), net.seq)
    return lay, r0 // lay.T


def attention_tables(config: Config, net, batch: int, layer: int, group: int, steps: dict,
                     *, late: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """What the attention after ``layer`` hands on in batch ``group``, nonzero, from the
    reference's ``steps`` (:func:`wafertile.sim.models.attention.attention`, the whole
    batch), as the compiler lays it out (:class:`~wafertile.stream.attention.AttentionLayout`):
    the activations its MACs read (queries, values: tiles x ``act_depth``) and the words its
    FINISHes send (tiles x ``acc_depth``: queries, keys, values, probabilities, and each
    head's softmax's maximum, or with ``late`` its reciprocal, in the scratch
    accumulator)."""
    lay, s0 = _layout(config, net, batch, layer, group)
    return layout_tables(lay, s0, steps, late=late)


def layout_tables(lay, s0: int, steps: dict, *, late: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`attention_tables` of the attention on layout ``lay`` whose first sequence is
    the ``s0``-th of the reference's ``steps``."""
    config = lay.config
    C, T, H, D = config.cols, lay.T, lay.heads, lay.D
    nz = {k: (np.asarray(v) & 0x7FFF) != 0 for k, v in steps.items()
          if k in ("q", "k", "v", "p", "max", "recip")}
    acts = np.zeros((config.rows * C, config.act_depth), bool)
    words = np.zeros((config.rows * C, config.acc_depth), bool)
    d, t = np.arange(D), np.arange(T)
    for s in range(lay.sequences):
        y = s * T + t  # the sequence's rows in the group
        for h in range(H):
            at = (s0 + s) * H + h  # the sequence's head in the batch's steps
            head = (y * C + h)[:, None]
            acts[head, lay.q_act(d)[None, :]] = nz["q"][at]
            words[head, lay.q_slot(d)[None, :]] = nz["q"][at]
            words[head, lay.k_slot(d)[None, :]] = nz["k"][at]
            words[head, lay.s_slot(t)[None, :]] = nz["p"][at]  # the masked ones +0
            words[head[:, 0], lay.z] = nz["recip" if late else "max"][at]
            f = h * D + d
            c, k = lay.column(f), lay.index(f)
            tiles = y[:, None] * C + c[None, :]
            words[tiles, lay.v_slot(c, k)[None, :]] = nz["v"][at]
            for j in range(T):  # value j at every later position's tiles
                acts[tiles[j:], lay.v_act(j, k)[None, :]] = nz["v"][at][j][None, :]
    return acts, words


def attention_grad_tables(layout, program, labels: list[str], grad: dict
                          ) -> tuple[dict, dict]:
    """What the model needs of the attention's derivative's ``program`` on ``layout``
    (:func:`~wafertile.stream.attention.attention_grad_program`, its phases' ``labels``), from
    the reference's ``grad`` (:func:`wafertile.sim.models.attention.attention_grad`): per MAC
    stream, the activations the load wrote nonzero and ``fmt(dS)`` as the ``ds`` step
    hands it on; per phase with FINISHes, which words they send nonzero: the values
    (``dp``), the keys, queries and ``dO`` (``grads``) as the load wrote them, ``fmt(dS)``
    (``ds``), and each head's ``c1``, then ``c2`` (the softmax's derivative), as
    :func:`~wafertile.model.predict.predict_program` takes them."""
    config = program.config
    C = config.cols
    load = program.phases[0].flits

    def written(op: Opcode, depth: int, mask: int) -> np.ndarray:
        at = np.asarray(load["payload.op"]) == op.value
        x, y, addr, data = (np.asarray(load[k])[at] for k in (
            "header.x0", "header.y0", "payload.addr", "payload.data"))
        table = np.zeros((config.rows * C, depth), bool)
        table[y * C + x, addr] = (data & mask) != 0
        return table

    return grad_tables(layout, program.phases, labels, grad,
                       written(Opcode.WRITE_ACT, config.act_depth, 0x7FFF),
                       written(Opcode.WRITE_ACC, config.acc_depth, 0x7FFFFFFF))


def kept_tables(layout, steps: dict, do, s0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """What a training step's attention derivative on ``layout`` starts from, nonzero
    (``docs/training.md``, "Attention layers"): the activations (tiles x ``act_depth``: the
    kept ``P``, ``K``, ``Q``, ``P`` of a value's head and ``V``, and ``dO`` at
    ``layout.do`` in every tile of the row) and the accumulators its first phase copies
    ``V``, ``dO``, ``K`` and ``Q`` into (tiles x ``acc_depth``), from the reference's attention
    ``steps`` (whose ``s0``-th sequence is the layout's first) and ``do`` (the group's rows,
    words of the format)."""
    config = layout.config
    C, T, H, D = config.cols, layout.T, layout.heads, layout.D
    nz = {k: (np.asarray(steps[k]).astype(np.int64) & 0x7FFF) != 0 for k in "qkvp"}
    dO = (np.asarray(do).astype(np.int64) & 0x7FFF) != 0
    bank = np.zeros((config.rows * C, config.act_depth), bool)
    loaded = np.zeros((config.rows * C, config.acc_depth), bool)
    rows = np.arange(len(dO))
    bank[(rows[:, None] * C + np.arange(C)[None, :]).ravel()[:, None],
         layout.do + np.arange(layout.width)[None, :]] = np.repeat(dO, C, axis=0)
    t, d = np.arange(T), np.arange(D)
    for s in range(layout.sequences):
        y = s * T + t
        for h in range(H):
            at = (s0 + s) * H + h
            P, K, Q, V = nz["p"][at], nz["k"][at], nz["q"][at], nz["v"][at]
            head = y * C + h
            bank[head[:, None], layout.gp_act(t)[None, :]] = P
            bank[head[:, None], layout.gk_act(d)[None, :]] = K
            bank[head[:, None], layout.gq_act(d)[None, :]] = Q
            loaded[head[:, None], layout.gkw_slot(d)[None, :]] = K
            loaded[head[:, None], layout.gqw_slot(d)[None, :]] = Q
            f = h * D + d
            c, k = layout.column(f), layout.index(f)
            tiles = y[:, None] * C + c[None, :]
            for i in range(T):  # P[i, j] of the head, at row j's value tiles, j <= i
                bank[tiles[:i + 1], layout.gpt_act(k, i)[None, :]] = P[i, :i + 1][:, None]
            bank[tiles, layout.gv_act(k)[None, :]] = V
            loaded[tiles, layout.v_slot(c, k)[None, :]] = V
            loaded[tiles, layout.gdo_slot(k)[None, :]] = dO[y[:, None], f[None, :]]
    return bank, loaded


def grad_tables(layout, phases: list, labels: list[str], grad: dict, bank: np.ndarray,
                loaded: np.ndarray, s0: int = 0) -> tuple[dict, dict]:
    """:func:`attention_grad_tables` of the derivative's ``phases`` (their steps
    ``labels``) given what they start from: ``bank``, the activations, and ``loaded``, the
    words of ``V`` and ``dO`` in their accumulators (tiles x depth, nonzero), with ``grad``
    whose ``s0``-th sequence is the layout's first."""
    from ..hdl.core.fp import float_format
    from ..sim.models.fp import to_half

    config = layout.config
    C, T, H = config.cols, layout.T, layout.heads
    fmt = float_format(config.dtype)
    first = s0 * H
    ds = (to_half(np.asarray(grad["ds"]).astype(np.uint32), fmt).astype(np.int64)
          & 0x7FFF) != 0
    ds = ds[first:first + layout.sequences * H]                           # S H x T x T
    c = [((np.asarray(grad[k]).astype(np.int64) & 0x7FFF) != 0)[first:first + len(ds)]
         for k in ("c1", "c2")]
    with_ds = loaded.copy()
    bank = bank.copy()  # and fmt(dS) as the "ds" step hands it to the activations
    for sh in range(ds.shape[0]):
        s, h = divmod(sh, H)
        rows = s * T + np.arange(T)
        head = (rows * C + h)[:, None]
        with_ds[head, layout.s_slot(np.arange(T))[None, :]] = ds[sh]
        bank[head, layout.gds_act(np.arange(T))[None, :]] = ds[sh]
        bank[head, layout.gdst_act(np.arange(T))[None, :]] = ds[sh].T
    nonzero, sent = {}, {}
    spreads = 0
    for n, (phase, label) in enumerate(zip(phases, labels, strict=True)):
        if phase.kind == "stream" or label == "copies":
            nonzero[n] = bank
        if not len(phase) or not (np.asarray(phase.flits["payload.op"])
                                  == Opcode.FINISH.value).any():
            continue
        if label == "softmax":  # each head's tile spreads c1, then c2, from its scratch
            words = loaded.copy()
            for sh in range(ds.shape[0]):
                s, h = divmod(sh, H)
                words[(s * T + np.arange(T)) * C + h, layout.gz] = c[spreads][sh]
            spreads += 1
            sent[n] = words
        else:
            sent[n] = with_ds
    return nonzero, sent


def layernorm_back_tables(plan: LayerPlan, phases: list, steps: dict, xhat, *, xh,
                          acts: tuple | None = None) -> tuple[dict, dict]:
    """What the model needs of LayerNorm's derivative's ``phases`` on pass 0 of ``plan``
    (:func:`~wafertile.stream.rows.layernorm_back_phases` on the rows of ``xhat``: the
    normalized outputs as words of the format, ``B x I``, at activations ``xh``
    (:func:`~wafertile.stream.rows.back_addresses`); scratch
    activations ``acts``), from the reference's ``steps``
    (:func:`wafertile.sim.models.rows.layernorm_grad`): per phase index in
    ``phases``, the nonzero activations of its MAC streams (the FINISHes' MACs read the
    normalized outputs) and which words its FINISHes send nonzero (each element's ``fmt(g)``;
    at tile 0 ``k``, ``c1``, ``c2``; each tile's ``w``), as
    :func:`~wafertile.model.predict.predict_program` takes them."""
    from ..stream.rows import BACK_ACTS, back_addresses, softmax_scratch

    acts = BACK_ACTS if acts is None else acts
    config = plan.config
    C = config.cols
    z = softmax_scratch(plan)
    at = back_addresses(plan, xh)
    nz = {k: (np.asarray(v) & 0x7FFF) != 0 for k, v in {**steps, "xhat": xhat}.items()}
    y = np.arange(len(nz["xhat"]))
    table = np.zeros((config.rows * C, config.act_depth), bool)
    slots = np.zeros((config.rows * C, config.acc_depth), bool)
    for g, part in enumerate(plan.parts(0)):
        part = np.asarray(part, np.int64)
        if len(part):
            table[(y * C + g)[:, None], at[part][None, :]] = nz["xhat"][:, part]
            slots[(y * C + g)[:, None], np.arange(len(part))[None, :]] = nz["g"][:, part]
    nonzero, sent = {}, {}
    for n, phase in enumerate(phases):
        if phase.kind == "stream":
            nonzero[n] = table
        f = phase.flits
        finish = np.asarray(f["payload.op"]) == Opcode.FINISH.value if len(phase) else []
        if not np.any(finish):
            continue
        addr = int(np.asarray(f["payload.addr"])[finish][0])
        addr_b = int(np.asarray(f["payload.addr_b"])[finish][0])
        words = slots.copy()
        if phase.kind == "stream":  # MACs: each tile's w, or the elements' fmt(g)
            number = nz["w"] if addr == z else None
        elif addr == z + 1:  # tile 0 spreads k, c1 (into acts[0]), then c2
            number = nz["k"]
        else:
            number = nz["c1"] if addr_b == acts[0] else nz["c2"]
        if number is not None:
            words[(y[:, None] * C + np.arange(C)[None, :]), addr] = number[:, None]
        sent[n] = words
    return nonzero, sent
