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
  activation to a range of its row. Each row is swept router by router, west to east,
  through the routers' west inputs (:func:`_row_round`): the host's flits and the
  activations going east share each input, one flit a slot in arrival order; a flit for the
  router's core waits until the core takes it (one a slot, none while a GELU unit works),
  and the flits behind it on its VC wait with it (head-of-line). A FINISH's activation
  leaves its tile ``out_stage`` cycles after the take (the integer hand-off: after
  :attr:`~.timing.Timing.finish_delay` more, one FINISH at a time), at the tile's output
  rate; it reaches its own tile and those west of it one slot per router, each taking those
  one a slot. The round ends in the cycle after the last activation is written (stage 2 of
  the receiving core). Not modelled: the west inputs' backpressure (buffers are taken as
  deep enough), and the cycles in which a tile's own activation, from its router's local
  input, takes the local and east outputs that the west input's head waits for (the rounds
  where every tile sends to the whole row are about 10% low).
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..hdl.core.ops import OPS, codes
from .flow import fifo_server, queue, rank, server
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
        :attr:`~wafertile.model.mesh.PhaseFlits.iterates`; default none): the core takes no
        flit from ``out_stage - 1`` cycles after the take for that many cycles.

    Returns
    -------
    int
        Cycles from the first injection to the cycle after the last activation write; 1
        for a round without FINISH.
    """
    cfg = timing.config
    op = np.asarray(op)
    finish = np.isin(op, _HANDOFFS)
    writes = np.isin(op, _WRITES)
    if not (finish.any() or writes.any()):
        return 1
    port = np.asarray(port)
    x0 = np.asarray(x0, np.int64)
    x1 = np.asarray(x1, np.int64)
    r0 = np.zeros(len(port), np.int64)
    r1 = np.full(len(port), -1, np.int64)
    if finish.any():
        r0[finish], r1[finish] = handoff_targets(cfg, np.asarray(data)[finish])
    work = np.zeros(len(port)) if iterates is None else np.asarray(iterates, np.float64)
    inject = rank(port) * timing.slot
    end = -np.inf
    for p in np.unique(port):
        k = np.flatnonzero(port == p)
        end = max(end, _row_round(timing, inject[k], x0[k], x1[k], finish[k], writes[k],
                                  work[k], r0[k], r1[k]))
    return int(np.ceil(end)) + 2


def _row_round(timing: Timing, inject, x0, x1, finish, writes, work, r0, r1) -> float:
    """One row's hand-off round (:func:`handoff_cycles`): the cycle of its last activation
    write. A sweep over the row's routers, west to east, through the west input of each:

    - the host's flits (one VC) and the activations going east (the other) share the
      input, one flit a slot, in the order they arrive;
    - a flit for the router's core (a host flit of its rectangle, an activation of its
      range) is taken when the core is free: one a slot, and none while its iterative unit
      works (from ``out_stage - 1`` cycles after the take, for the unit's cycles); the
      flits behind it on its VC wait for it (head-of-line), the other VC's do not;
    - a FINISH's activation is offered ``out_stage`` (+ the integer unit's
      ``finish_delay``) cycles after the take, at the sending tile's output rate; it goes
      east through the following routers' west inputs, and reaches its own tile and those
      west of it one slot per router, each receiving tile taking those one a slot.

    Routers where nothing meets (no delivery, one VC only) pass their flits on unchanged
    and are skipped."""
    cols = timing.config.cols
    h = float(timing.slot)
    adapter = timing.adapter
    n = len(inject)
    def covered(first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Whether each router lies in one of the ranges ``first .. last``."""
        diff = np.zeros(cols + 1, np.int64)
        np.add.at(diff, first, 1)
        np.add.at(diff, last + 1, -1)
        return np.cumsum(diff)[:cols] > 0

    # where something can happen: deliveries, or both VCs in the west input
    east = finish & (r1 > x0)
    busy = np.flatnonzero(covered(x0, x1) | covered(np.maximum(r0[east], x0[east] + 1), r1[east])
                          | (covered(np.zeros_like(x1), x1)
                             & covered(x0[east] + 1, r1[east])))
    # the flits in the sweep, one row each: the time it reaches the current router's core
    # less ``x h`` (so that passing a router changes nothing), the first and last router of
    # its deliveries or passage, its VC (0: the host's, 1: an activation), its unit's cycles
    # and its host flit (-1: an activation)
    t = inject + timing.to_core(1)
    lo = x0.copy()
    hi = x1.copy()
    vc = np.zeros(n, bool)
    kid = np.arange(n)
    west_to = []    # activations to their own tile and westwards: (tile, arrival)
    west_at = []
    end = -np.inf
    for x in busy:
        order = np.argsort(t, kind="stable")
        t, lo, hi, vc, work, kid = t[order], lo[order], hi[order], vc[order], work[order], \
            kid[order]
        d = queue(t, h)                                # one flit a slot, in arrival order
        new = None
        m = np.flatnonzero(lo <= x)                    # for this router's core
        if len(m):
            served = d[m]
            w = work[m]
            gap = np.where(w > 0, timing.out_stage - 1 + w, h)  # after each take
            take = queue(served, np.r_[0.0, gap[:-1]])     # the core, one at a time
            if np.any(take > served):  # the flits behind a waiting one on its VC wait
                d[m] = take
                for sel in (np.flatnonzero(~vc), np.flatnonzero(vc)):
                    held = np.full(len(d), -np.inf)
                    held[m] = take
                    before = np.maximum.accumulate(held[sel])
                    d[sel[1:]] = np.maximum(d[sel[1:]], before[:-1])
            own = kid[m]
            host = own >= 0
            counted = take[~host | (host & writes[np.maximum(own, 0)])]
            if len(counted):
                end = max(end, float(counted.max()) + x * h)
            # the FINISHes taken here: their activations
            fin = host & finish[np.maximum(own, 0)]
            if fin.any():
                fk = own[fin]
                took = take[fin] + x * h
                ready = timing.next_slot(took + timing.out_stage + timing.finish_delay + 1)
                rate = timing.west_service if x == 0 else timing.out_service
                if timing.limbs:  # one FINISH at a time in the unit
                    rate = max(rate, timing.finish_delay)
                sent = queue(ready, rate)
                lo_w, hi_w = r0[fk], np.minimum(r1[fk], x)
                width = np.maximum(hi_w - lo_w + 1, 0)
                which = np.repeat(np.arange(len(fk)), width)
                tile = lo_w[which] + (np.arange(len(which))
                                      - np.repeat(np.cumsum(width) - width, width))
                west_to.append(tile)
                west_at.append(sent[which] + (x - tile) * h + adapter)
                go = r1[fk] > x
                new = (sent[go] + adapter - x * h, np.maximum(r0[fk][go], x + 1), r1[fk][go])
        # on to the next router: what goes further east, and the new activations
        keep = hi > x
        t, lo, hi, vc, work, kid = d[keep], lo[keep], hi[keep], vc[keep], work[keep], \
            kid[keep]
        if new is not None:
            k = len(new[0])
            t = np.concatenate([t, new[0]])
            lo = np.concatenate([lo, new[1]])
            hi = np.concatenate([hi, new[2]])
            vc = np.concatenate([vc, np.ones(k, bool)])
            work = np.concatenate([work, np.zeros(k)])
            kid = np.concatenate([kid, np.full(k, -1)])
    if west_to:
        to = np.concatenate(west_to)
        if len(to):
            end = max(end, float(fifo_server(to, np.concatenate(west_at), h).max()))
    return end


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
