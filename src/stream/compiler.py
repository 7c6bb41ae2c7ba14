"""One layer's compiler: the phases of a layer, and :func:`compile_layer`.

The phases' building blocks, which the network compiler (:mod:`wafertile.network.compiler`)
shares: the host's activation writes (:func:`add_activations`), a pass's zeroed accumulators
and fence (:func:`add_zero`), its MAC stream (:func:`stream_phase`) and the reads of its
outputs (:func:`read_phase`). :func:`compile_layer` checks a layer, plans it and puts them
together batch group by batch group and pass by pass, with the reduction
(:mod:`.reduction`) when an activation row is split over several tiles.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..hdl.flit import Opcode
from .numpy_reference import check_inputs, layer_words
from .plan import LayerPlan, plan_layer, reply_route
from .program import LayerProgram, Phase, PhaseBuilder
from .reduction import reduce_phases

__all__ = ["add_activations", "add_zero", "compile_layer", "read_phase", "stream_phase"]


def add_activations(flits: PhaseBuilder, plan: LayerPlan, x: np.ndarray, *,
                    base: int = 0) -> None:
    """The host's WRITE_ACTs of ``x`` (one batch row per array row): chunk ``k`` multicast
    along its block of the row from the row's own west port, at ``base`` onwards."""
    rows, J = x.shape
    if rows and J:
        ys = np.arange(rows)
        yy, jj = np.repeat(ys, J), np.tile(np.arange(J), rows)
        kk = jj // plan.chunk
        flits.add(yy, len(yy), x0=kk * plan.G, x1=kk * plan.G + plan.G - 1, y0=yy, y1=yy,
                  op=Opcode.WRITE_ACT.value, addr=base + jj - kk * plan.chunk,
                  data=x.reshape(-1))


def add_zero(flits: PhaseBuilder, plan: LayerPlan, p: int, rows: int, *,
             bias: np.ndarray | None = None) -> None:
    """Pass ``p``'s accumulators set to zero (``bias``: output ``i``'s accumulator in block 0
    starts from ``bias[i]``, the partial sums of the other blocks from zero), then each row's
    fence READ to its far end (same source, same VC: it arrives after them)."""
    C = plan.config.cols
    parts = plan.parts(p)
    slots = max(len(part) for part in parts)
    to_host = reply_route(plan.config, rows)
    for y in range(rows):
        if bias is None:  # one broadcast per slot
            flits.add(y, slots, x0=0, x1=C - 1, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                      addr=np.arange(slots))
        else:
            for g, part in enumerate(parts):
                full = np.zeros(slots, dtype=np.int64)
                full[:len(part)] = bias[part]
                flits.add(y, slots, x0=g, x1=g, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                          addr=np.arange(slots), data=full)
            if plan.K > 1:
                flits.add(y, slots, x0=plan.G, x1=C - 1, y0=y, y1=y,
                          op=Opcode.WRITE_ACC.value, addr=np.arange(slots))
        flits.add(y, 1, x0=C - 1, x1=C - 1, y0=y, y1=y, op=Opcode.READ_ACC.value,
                  addr_b=C - 1, data=to_host[y])
    flits.reply(np.arange(rows), 0, C - 1)


def stream_phase(plan: LayerPlan, p: int, rows: int, *, base: int = 0) -> Phase:
    """Pass ``p``'s MAC flits, multicast down each column to rows ``0 .. rows - 1``, reading
    activations at ``base`` onwards."""
    port, fields = plan.streams[p]
    stream = PhaseBuilder()
    fields = dict(fields, addr_b=fields["addr_b"] + base)
    stream.add(port, len(port), y0=0, y1=max(rows - 1, 0), **fields)
    return stream.phase("stream", expected_macs=len(port) * rows)


def read_phase(plan: LayerPlan, p: int, rows: int, *, batch0: int = 0) -> Phase:
    """READ_ACC of pass ``p``'s outputs (at block 0 after a reduction); the reply of output
    ``i`` of row ``y`` is ``Y[batch0 + y, i]``."""
    read = PhaseBuilder()
    to_host = reply_route(plan.config, rows)
    for y in range(rows):
        for g, part in enumerate(plan.parts(p)):
            n = len(part)
            read.add(y, n, x0=g, x1=g, y0=y, y1=y, op=Opcode.READ_ACC.value,
                     addr=np.arange(n), addr_b=g, data=to_host[y])
            read.reply(y, np.arange(n), g, batch0 + y, part)
    return read.phase("read")


def compile_layer(config: Config, x: np.ndarray, w: np.ndarray, *,
                  dense: bool = False) -> LayerProgram:
    """Compile ``Y = X @ W.T`` (X: B x J activations, W: I x J weights) for ``config``.

    With ``dense=True`` every weight is streamed, zeros included (the baseline that sparsity
    is measured against; the tiles skip the zero MACs, so Y is the same). Vectorized: the
    cost is a few numpy passes over the nonzeros, not Python per flit.

    With a floating-point ``dtype``, ``x`` and ``w`` are float arrays whose values are
    numbers of the format (:func:`layer_words`).

    Raises
    ------
    LayerError
        On shapes that do not match, values outside ``data_width`` (integers) or not numbers of
        the format (floats), a layer whose activation row does not fit one row of tiles
        (``ceil(J / act_depth) > cols``), or an activation row split over several tiles with
        ``overflow = "saturate"``.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if config.is_float:
        x, w = layer_words(config, x, w)
    check_inputs(config, x, w)
    R = config.rows
    B, J = x.shape
    I = w.shape[0]
    plan = plan_layer(config, w, dense=dense)
    phases: list[Phase] = []
    for g0 in range(0, max(B, 1), R):
        rows = min(R, B - g0)
        load = PhaseBuilder()
        add_activations(load, plan, x[g0:g0 + rows])
        for p in range(plan.passes):
            zero = PhaseBuilder() if p else load
            add_zero(zero, plan, p, rows)
            phases.append(zero.phase("load"))
            phases.append(stream_phase(plan, p, rows))
            if plan.K > 1:
                phases += reduce_phases(plan, p, rows)
            phases.append(read_phase(plan, p, rows, batch0=g0))
    return LayerProgram(config, (B, I, J), phases, plan.nnz, dense_flits=I * J)
