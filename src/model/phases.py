"""The cycles of the phases around the stream: load, read, reduce and hand-off.

All of them keep their traffic inside a row (the host's west port of row ``y`` feeds the
tiles of row ``y``), so each row is predicted on its own and the phase takes as long as its
slowest row:

- **load / read / reduce** (:func:`row_cycles`): the row's flits leave the port in order,
  one per slot. A flit that makes its tile answer (a READ: a reply to the host; a SEND: an
  ADD to a tile further west; the fence READ that ends every load and reduce) produces its
  output three pipeline stages after it reaches the core, and the output travels west one
  slot per router. The row is one server in the order of its flits: a flit that answers
  takes :attr:`~.timing.Timing.out_service` cycles of it (a tile cannot answer faster),
  any other flit one slot. The phase ends in the cycle after its last reply reaches the
  host.
- **hand-off** (:func:`handoff_cycles`): every FINISH makes its tile multicast one
  activation to a range of its row. The host's flits pass the west inputs of the row's
  routers in order, one a slot per router, and a flit stays at the head of the input of the
  router whose core it goes to until that core takes it: the flits behind it wait
  (head-of-line). A core takes one flit a slot, and none while its iterative unit works (a
  GELU's ``NONLINEAR``). The integer hand-off offers a FINISH's activation
  :attr:`~.timing.Timing.finish_delay` cycles after the FINISH leaves the core, one FINISH
  at a time. The activations reach each tile of their range one slot per router from the
  sender, each receiving tile a server of one a slot over their arrivals (after each
  sending tile's own output rate); the round ends in the cycle after the last activation is
  written (stage 2 of the receiving core). Not modelled: the activations that go east share
  the routers' west inputs with the host's flits (one head an input a cycle), which holds
  the host's flits up; docs/performance.md gives what that costs.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..hdl.core.ops import OPS, codes
from .flow import fifo_server, rank, server
from .timing import Timing

__all__ = ["grad_cycles", "handoff_cycles", "handoff_targets", "row_cycles"]

#: The operations whose output is routed by its request's route (a READ's reply, a SEND's
#: ADD), and those whose output goes to a hand-off rectangle (FINISH's activation).
_ANSWERS = codes(row for row in OPS.emitting() if row.data == "route")
_HANDOFFS = codes(row for row in OPS.emitting() if row.data == "handoff")
_WRITES = codes(row for row in OPS.operations() if row.act_write is not None)


def row_cycles(timing: Timing, port: np.ndarray, x0: np.ndarray, x1: np.ndarray,
               op: np.ndarray) -> int:
    """Predict a load, read or reduce phase (see the module's docstring).

    Parameters
    ----------
    timing : Timing
        The fabric.
    port, x0, x1, op : numpy.ndarray
        Per flit, in injection order per port: its west port (row), its rectangle's columns
        (a row multicast of a load spans several) and its opcode.

    Returns
    -------
    int
        Cycles from the first injection (at a slot boundary) to the cycle after the last
        reply; 1 for a phase without flits (the host sees at once that nothing is left).
    """
    n = len(port)
    if not n:
        return 1
    h = timing.slot
    inject = rank(port) * h
    x0 = np.asarray(x0)
    x1 = np.asarray(x1)
    answers = np.isin(op, _ANSWERS)
    # the far end of the rectangle is the last tile the flit reaches; an answering flit is
    # a unicast to tile x0
    stage3 = inject + timing.to_core(x1 + 1) + timing.out_stage
    back = timing.from_core(stage3, x0 + 1)
    arrival = np.where(answers, back, inject)
    service = np.where(answers, np.where(x0 == 0, timing.west_service, timing.out_service),
                       float(h))
    done = server(port, arrival, service)
    replies = done[answers]
    end = replies.max() if len(replies) else done.max()
    return int(np.ceil(end)) + 1


def handoff_targets(config: Config, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns ``x0 .. x1`` a FINISH's activation goes to (its ``data`` field,
    :func:`~wafertile.hdl.flit.handoff_layout`), vectorized."""
    fields = config.handoff_fields
    out = {}
    shift = 0
    data = np.asarray(data, np.int64)
    for name, width in fields.items():
        out[name] = (data >> shift) & ((1 << width) - 1)
        shift += width
    return out["x0"], out["x1"]


def handoff_cycles(timing: Timing, port: np.ndarray, x0: np.ndarray, x1: np.ndarray,
                   op: np.ndarray, data: np.ndarray, iterates: np.ndarray | None = None
                   ) -> int:
    """Predict one hand-off round (see the module's docstring).

    Parameters
    ----------
    timing : Timing
        The fabric.
    port, x0, x1, op, data : numpy.ndarray
        Per flit, in injection order per port: west port (row), rectangle columns, opcode
        and ``data`` field (a FINISH's hand-off rectangle).
    iterates : numpy.ndarray, optional
        Per flit, the cycles its core's iterative unit holds the core (NONLINEAR,
        :attr:`~wafertile.model.mesh.PhaseFlits.iterates`; default none): every later flit
        of the same tile is taken that much later (an estimate: the core's first stages
        still take two flits behind it).

    Returns
    -------
    int
        Cycles from the first injection to the cycle after the last activation write; 1
        for a round without FINISH.
    """
    cfg = timing.config
    finish = np.isin(op, _HANDOFFS)
    writes = np.isin(op, _WRITES)
    if not (finish.any() or writes.any()):
        return 1
    h = timing.slot
    port = np.asarray(port)
    inject = rank(port) * h
    span = np.asarray(x1) - np.asarray(x0) + 1
    flit = np.repeat(np.arange(len(port)), span)
    tile_x = np.asarray(x0)[flit] + (np.arange(len(flit)) - np.repeat(np.cumsum(span) - span,
                                                                      span))
    tile = port[flit] * cfg.cols + tile_x
    taken = _chain_takes(timing, port, np.asarray(x0), np.asarray(x1), inject, iterates)
    # the host's own activation writes (the loss gradient of a training step), a cycle after
    # the take
    own = taken[writes[flit]]
    last = float(own.max()) if len(own) else -np.inf
    fin = np.flatnonzero(finish[flit])
    if not len(fin):
        return int(np.ceil(last)) + 2
    # the FINISHes: their output out_stage cycles after their core takes them, then the
    # sending tile's output rate
    sender = tile[fin]
    stage3 = taken[fin] + timing.out_stage + timing.finish_delay
    service = np.where(tile_x[fin] == 0, timing.west_service, timing.out_service)
    if timing.limbs:  # one FINISH at a time in the unit, every finish_delay cycles
        service = np.maximum(service, timing.finish_delay)
    sent = server(sender, timing.next_slot(stage3 + 1), service)
    # every activation to every tile of its range, one slot per router from the sender
    tx0, tx1 = handoff_targets(cfg, np.asarray(data)[flit[fin]])
    width = tx1 - tx0 + 1
    which = np.repeat(np.arange(len(fin)), width)
    target = tx0[which] + (np.arange(len(which)) - np.repeat(np.cumsum(width) - width, width))
    hops = np.abs(target - tile_x[fin][which])
    arrive = sent[which] + hops * h + timing.adapter
    receiver = port[flit[fin]][which] * cfg.cols + target
    written = fifo_server(receiver, arrive, float(h))
    return int(np.ceil(max(written.max(), last))) + 2


def grad_cycles(timing: Timing, port: np.ndarray, column: np.ndarray, row: np.ndarray
                ) -> int:
    """Predict a gradient phase of a training step (``docs/training.md``): each GRAD goes
    from its west port (row ``port``) east to its column and north to the column's tile in
    ``row``; that tile takes its column's GRADs one per slot in arrival order; each tile
    below takes the result of the one above (its output ``out_stage`` cycles after the
    take, one router down) in the same order, and the last row's leaves by the south edge.
    The phase ends in the cycle after the last result leaves. Analytic: GRADs of several
    rows meet on the way north, which this takes in arrival order.
    """
    n = len(port)
    if not n:
        return 1
    cfg = timing.config
    h = timing.slot
    port = np.asarray(port, np.int64)
    column = np.asarray(column, np.int64)
    row = np.broadcast_to(np.asarray(row, np.int64), (n,))
    inject = rank(port) * h
    arrive = inject + timing.to_core(column + 1 + np.abs(port - row))
    t = fifo_server(column, arrive, float(h))
    # down the column: from each tile's take to the next one's, and out of the last row
    for _ in range(cfg.rows - 1 - int(row.min())):
        t = timing.from_core(t + timing.out_stage, 2)
    return int(np.ceil(timing.from_core(t + timing.out_stage, 1).max())) + 1


def _chain_takes(timing: Timing, port: np.ndarray, x0: np.ndarray, x1: np.ndarray,
                 inject: np.ndarray, iterates: np.ndarray | None) -> np.ndarray:
    """The cycle each host flit is taken by each core of its rectangle ``x0 .. x1`` (flit
    by flit, its columns in order, as :func:`handoff_cycles` spans them).

    Each row's flits pass the west inputs of the row's routers in injection order, one a
    slot per input, one slot per router; a flit keeps its place in the input of a router
    whose core it goes to until that core takes it, so the flits behind it wait
    (head-of-line). A core takes one flit a slot, and after a flit with an iterative unit
    (``iterates``) none until the unit is done (it holds the first stages from the cycle the
    flit reaches its last but one, :attr:`~.timing.Timing.out_stage` - 1 cycles after the
    take). Per flit, the times along its path are one running maximum."""
    cols = timing.config.cols
    h = timing.slot
    span = x1 - x0 + 1
    at = np.cumsum(span) - span
    out = np.empty(int(span.sum()))
    work = np.zeros(len(port)) if iterates is None else np.asarray(iterates, np.float64)
    xs = np.arange(cols) * h
    first = timing.to_core(1)
    for p in np.unique(port):
        left = np.full(cols, -np.inf)   # when the last flit left each router's west input
        free = np.full(cols, -np.inf)   # when each core takes its next flit
        for k in np.flatnonzero(port == p):
            a, b = int(x0[k]), int(x1[k]) + 1
            t = left[:b] + h
            t[0] = max(t[0], inject[k] + first)
            t = np.maximum.accumulate(t - xs[:b]) + xs[:b]
            take = np.maximum(t[a:], free[a:b])
            out[at[k]:at[k] + b - a] = take
            free[a:b] = take + (timing.out_stage - 1 + work[k] if work[k] else h)
            t[a:] = take
            left[:b] = t
    return out
