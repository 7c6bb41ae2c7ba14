"""The on-fabric reduction of a layer whose activation row is split over ``K > 1`` tiles.

The tiles of column blocks ``k >= 1`` SEND their partial sums as ADD flits to block 0, then
answer a fence READ (:func:`reduce_phase`); with a floating-point ``dtype`` there is one fenced
phase per block, in block order, so that the additions happen in the reference's order
(:func:`reduce_phases`).
"""

from __future__ import annotations

import numpy as np

from ..hdl.flit import Opcode, Port
from .plan import LayerPlan, reply_route, route_to
from .program import Phase, PhaseBuilder

__all__ = ["reduce_phase", "reduce_phases"]


def reduce_phases(plan: LayerPlan, p: int, rows: int) -> list[Phase]:
    """The reduction of pass ``p``: one :func:`reduce_phase` of every block ``k >= 1`` for the
    integer formats (integer sums do not depend on the order); for a floating-point ``dtype``
    one phase per block, ``k = 1, 2, ...``, each fenced, so that output ``i``'s accumulator in
    block 0 adds the partial sums in that order: ``((p0 + p1) + p2) + ...``."""
    if plan.config.is_float:
        return [reduce_phase(plan, p, rows, block=k) for k in range(1, plan.K)]
    return [reduce_phase(plan, p, rows)]


def reduce_phase(plan: LayerPlan, p: int, rows: int, *, block: int | None = None) -> Phase:
    """Reduce: tile (k * G + g, y), k >= 1, SENDs each partial sum of pass ``p`` as an ADD to
    tile (g, y) on the reply VC, then gets a fence READ whose reply to the host leaves on the
    same VC along the same westward path: it is back only when every ADD has entered tile
    (g, y)'s core (docs/streaming.md). ``block``: only the tiles of block ``k = block``."""
    config, G = plan.config, plan.G
    to_host = reply_route(config, rows)
    reduce = PhaseBuilder()
    blocks = range(1, plan.K) if block is None else [block]
    for y in range(rows):
        for k in blocks:
            for g, part in enumerate(plan.parts(p)):
                n = len(part)
                if not n:
                    continue
                c = k * G + g
                reduce.add(y, n, x0=c, x1=c, y0=y, y1=y, op=Opcode.SEND.value,
                           addr=np.arange(n), addr_b=np.arange(n),
                           data=route_to(config, g, y, Port.LOCAL))
                reduce.add(y, 1, x0=c, x1=c, y0=y, y1=y, op=Opcode.READ_ACC.value, addr_b=c,
                           data=to_host[y])
                reduce.reply(y, 0, c)
    return reduce.phase("reduce")
