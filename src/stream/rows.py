"""Operations along a row of the array: the softmax and the LayerNorm of a layer's outputs,
on the fabric (:func:`softmax_phases`; :func:`layernorm_phases`, docs/nonlinear.md "LayerNorm
on the fabric", built from the same pieces).

A layer's outputs for one batch element are spread over the tiles of its array row (output
``i`` in accumulator ``s`` of tile ``g``: :meth:`LayerPlan.parts`). The softmax of that
vector needs every element; :func:`softmax_phases` makes it with the tiles' own operations
(``docs/nonlinear.md``, "Softmax on the fabric"), in fixed orders that
:func:`wafertile.sim.models.rows.softmax` follows bit for bit:

1. each tile's maximum in a scratch accumulator ``z`` (self-SENDs: the first a WRITE_ACC,
   the others MAX), the tiles' maxima into tile 0's ``z`` (SENDs west, as MAX);
2. tile 0's FINISH writes the maximum, rounded to the format, into activation 0 of every
   tile of the row; each element takes a MAC with weight -1 on it;
3. NONLINEAR exp on each element; each tile's sum in ``z`` (self-SENDs: WRITE_ACC, then
   ADD), the tiles' sums added at tile 0 in tile order (one fenced phase per tile);
4. NONLINEAR reciprocal of the sum at tile 0, whose FINISH writes it, rounded to the format,
   into activation 0 of every tile; each tile copies it into ``z`` (a MAC with weight 1 on a
   zeroed ``z``) and SENDs it to each element as a MUL.

Every phase ends at a fence: a READ whose reply leaves on the reply VC after the SENDs (the
same queue of the same router), or the count of the FINISH's activation writes. A tile has
at most :func:`handoff_window` - 1 of its own SENDs in flight in a phase (then its fence),
so that a core never waits on its own output (as the hand-off's rounds, docs/network.md).
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..hdl.core.nonlinear import FUNCTIONS
from ..hdl.flit import Opcode, Port, Reg, encode_handoff
from .plan import LayerPlan, handoff_window, reply_route, route_to
from .program import LayerError, LayerProgram, Phase, PhaseBuilder

__all__ = [
    "BACK_ACTS",
    "SEND_PICKS",
    "Turns",
    "back_addresses",
    "check_layernorm",
    "check_layernorm_back",
    "check_softmax",
    "finish_rounds",
    "gelu_back_phases",
    "gelu_back_scratch",
    "layernorm_back_phases",
    "layernorm_back_program",
    "layernorm_phases",
    "local_softmax_grad_phases",
    "local_softmax_phases",
    "slot_addresses",
    "softmax_phases",
    "softmax_scratch",
    "softmax_window",
    "sum_at_tile0",
]

#: The bits of a SEND's ``data`` right above the route that pick its output's opcode on a
#: float tile with the nonlinear unit (docs/architecture.md).
SEND_PICKS = {"ADD": 0, "MUL": 1, "MAX": 2, "WRITE_ACC": 3}
#: The activation address that carries the row's maximum, then its reciprocal sum.
ACT = 0
#: The words of the MAC weights -1 and 1 in each 16-bit format.
_WEIGHTS = {"bf16": (0xBF80, 0x3F80), "fp16": (0xBC00, 0x3C00)}


def softmax_window(config: Config) -> int:
    """Self-SENDs per tile per phase: one less than the router's local input holds on the
    reply VC (the fence READ's reply is the last)."""
    return handoff_window(config) - 1


def softmax_scratch(plan: LayerPlan, p: int = 0) -> int:
    """The scratch accumulator ``z`` of every tile: the first slot no output of pass ``p``
    uses."""
    return max(len(part) for part in plan.parts(p))


def check_softmax(plan: LayerPlan, what: str = "the softmax layer") -> None:
    """Raise :class:`LayerError` (one line) if :func:`softmax_phases` cannot run ``plan``."""
    config = plan.config
    if not (config.is_float and config.nonlinear):
        raise LayerError(f"{what} needs float tiles with the nonlinear unit (dtype fp16 or "
                         f"bf16, nonlinear = true), not dtype {config.dtype!r} with nonlinear "
                         f"= {str(config.nonlinear).lower()}")
    if softmax_window(config) < 1:
        raise LayerError(f"{what} needs a router whose local input holds at least 2 flits "
                         f"per VC (its SENDs and their fence): router_arch = "
                         f"{config.router_arch!r} holds 1")
    if plan.passes > 1:
        raise LayerError(f"{what} has {plan.I} outputs: they need {plan.passes} passes over "
                         f"{plan.G} columns of {config.acc_depth} accumulators, and a softmax "
                         f"needs them all at once (raise acc_depth or use more columns)")
    if softmax_scratch(plan) >= config.acc_depth:
        raise LayerError(f"{what} fills all {config.acc_depth} accumulators of a tile and the "
                         f"softmax needs one more per tile (raise acc_depth or use more "
                         f"columns)")


def _tiles(plan: LayerPlan, p: int) -> list[int]:
    """The columns that hold outputs of pass ``p`` (``0 .. n - 1``: the groups are dealt
    by count)."""
    return [g for g, part in enumerate(plan.parts(p)) if len(part)]


def _plan_elems(plan: LayerPlan, p: int, rows: int) -> list[dict[int, np.ndarray]]:
    """Each of the first ``rows`` rows' elements: tile ``g`` -> its accumulators holding
    pass ``p``'s outputs, in slot order (the same in every row)."""
    elems = {g: np.arange(len(part)) for g, part in enumerate(plan.parts(p)) if len(part)}
    return [elems] * rows


class Turns:
    """One row's flits, in order per tile, sent taking turns over the tiles (flit ``k`` of
    every tile, then flit ``k + 1``): a core busy in its unit then holds up the flits of the
    tiles behind it for one turn, not for all of its own (they share the row's first
    routers)."""

    def __init__(self):
        self.blocks: list = []
        self.count: dict[int, int] = {}

    def add(self, g: int, n: int, **fields) -> None:
        """``n`` flits to tile ``g`` of the row (fields as :meth:`PhaseBuilder.add`)."""
        k = self.count.get(g, 0)
        self.count[g] = k + n
        self.blocks.append((np.arange(k, k + n), g, n, fields))

    def emit(self, flits: PhaseBuilder, y: int) -> None:
        """Into ``flits`` at row ``y``'s port, taking turns."""
        if not self.blocks:
            return
        turn = np.concatenate([t for t, *_ in self.blocks])
        tile = np.concatenate([np.full(n, g, np.int64) for _, g, n, _ in self.blocks])
        order = np.lexsort((tile, turn))
        names = set().union(*(f.keys() for *_, f in self.blocks))
        cols = {name: np.concatenate([np.broadcast_to(np.asarray(f.get(name, 0), np.int64),
                                                      (n,)) for _, _, n, f in self.blocks])
                [order] for name in names}
        flits.add(y, len(turn), x0=tile[order], x1=tile[order], y0=y, y1=y, **cols)


def _self_rounds(config: Config, elems: list[dict[int, np.ndarray]], z: int, first: str,
                 rest: str, before=None, *, into_z: bool = True) -> list[Phase]:
    """Each tile SENDs its elements (``elems[y][g]``: the accumulators of tile ``g`` of row
    ``y``), in order, into its own ``z``: the first as ``first``, the others as ``rest``;
    :func:`softmax_window` per tile per phase, each tile's fence READ last. ``into_z =
    False``: ``z`` into each element instead. ``before(turns, g, slots)``: flits for tile
    ``g`` at the start of the first phase."""
    pairs = [{g: [((int(s), z) if into_z else (z, int(s))) + (first if k == 0 else rest,)
                  for k, s in enumerate(slots)] for g, slots in row.items()} for row in elems]
    return _pair_rounds(config, pairs, None if before is None else
                        lambda turns, y, g: before(turns, g, elems[y][g]))


def _to_tile0(config: Config, rows: int, z: int, tiles: list[int], how: str,
              into: list[int] | None = None) -> Phase:
    """Tiles ``tiles`` (columns >= 1) SEND their ``z`` into tile 0's ``z`` (or each into its
    own ``into``) as ``how``, each then its fence READ (whose reply follows the SEND west)."""
    to_host = reply_route(config, rows)
    flits = PhaseBuilder()
    data = route_to(config, 0, np.arange(rows), Port.LOCAL) | \
        (SEND_PICKS[how] << config.route_width)
    for y in range(rows):
        for k, g in enumerate(tiles):
            flits.add(y, 1, x0=g, x1=g, y0=y, y1=y, op=Opcode.SEND.value, addr=z,
                      addr_b=z if into is None else into[k], data=data[y])
            flits.add(y, 1, x0=g, x1=g, y0=y, y1=y, op=Opcode.READ_ACC.value, addr_b=g,
                      data=to_host[y])
            flits.reply(y, 0, g)
    return flits.phase("reduce")


def _spread(config: Config, leaders: list[list[tuple[int, int, int]]], z: int,
            function: str | None, *, ops: tuple = (), act: int = ACT) -> Phase:
    """Each leader ``(g, x0, x1)`` of row ``y`` (``leaders[y]``: tile 0 of a row softmax,
    or every tile of a softmax in one tile), after the host's operations ``ops`` on its
    ``z`` (``(opcode, data)`` each) and NONLINEAR ``function``, if given, FINISHes ``z`` into
    activation ``act`` of tiles ``x0 .. x1`` of its row, rounded to the format (ReLU off)."""
    flits = PhaseBuilder()
    vc = config.num_vcs - 1
    writes = 0
    for y, row in enumerate(leaders):
        for g, x0, x1 in row:
            for op, data in ops:
                flits.add(y, 1, x0=g, x1=g, y0=y, y1=y, op=op.value, addr=z, data=data)
            if function is not None:
                flits.add(y, 1, x0=g, x1=g, y0=y, y1=y, op=Opcode.NONLINEAR.value, addr=z,
                          data=FUNCTIONS.index(function))
            flits.add(y, 1, x0=g, x1=g, y0=y, y1=y, op=Opcode.SET.value,
                      addr=Reg.RELU.value, data=0)
            flits.add(y, 1, x0=g, x1=g, y0=y, y1=y, op=Opcode.FINISH.value, addr=z,
                      addr_b=act, data=encode_handoff(config, x0=x0, x1=x1, y=y, vc=vc))
            writes += x1 - x0 + 1
    return flits.phase("handoff", handoff_writes=writes)


def sum_at_tile0(config: Config, rows: int, z: int, others: list[int]) -> list[Phase]:
    """The tiles' sums in ``z`` added at tile 0 in tile order: ``fp32(...fp32(z_0 + z_1) ...
    + z_last)``. With room in tile 0 (``z + len(others) < acc_depth``) and fewer phases so,
    every other tile first copies its sum into an accumulator of its own at tile 0 (``z + 1
    ..``, one phase: the copies do not race), and tile 0 adds them to its ``z`` in order by
    its own SENDs; else a chain, one fenced phase per tile."""
    window = softmax_window(config)
    spare = [z + 1 + k for k in range(len(others))]
    if len(others) <= 1 + -(-len(others) // window) or spare[-1] >= config.acc_depth:
        return [_to_tile0(config, rows, z, [g], "ADD") for g in others]
    return [_to_tile0(config, rows, z, others, "WRITE_ACC", into=spare),
            *_self_rounds(config, [{0: np.array(spare)}] * rows, z, "ADD", "ADD")]


def _row_leaders(rows: int, tiles: list[int]) -> list[list[tuple[int, int, int]]]:
    """Tile 0 of each row spreads to the row's ``tiles`` (columns 0 .. n - 1)."""
    return [[(0, 0, len(tiles) - 1)]] * rows


def _macs(config: Config, elems: list[dict[int, np.ndarray]], z: int, *,
          scale: bool, act: int = ACT, negate: bool = False) -> Phase:
    """MACs on activation ``act``, each tile's fence READ last: with weight -1 into every
    element (``x - c``), or (``scale``) with weight 1 (``negate``: -1) into ``z`` zeroed
    first (a copy)."""
    minus, one = _WEIGHTS[config.dtype]
    if scale:
        return _per_element(config, elems, lambda g, slots: [
            (1, {"op": Opcode.WRITE_ACC.value, "addr": z}),
            (1, {"op": Opcode.MAC.value, "addr": z, "addr_b": act,
                 "data": minus if negate else one})])
    return _per_element(config, elems, lambda g, slots: [
        (len(slots), {"op": Opcode.MAC.value, "addr": slots, "addr_b": act, "data": minus})])


def _per_element(config: Config, elems: list[dict[int, np.ndarray]], blocks) -> Phase:
    """Host operations on each tile's accumulators, each tile's fence READ last: ``blocks(g,
    slots)`` gives tile ``g``'s (its elements' accumulators ``slots``) as ``[(count,
    fields), ...]``, in that order."""
    rows = len(elems)
    to_host = reply_route(config, rows)
    flits = PhaseBuilder()
    for y in range(rows):
        turns = Turns()
        for g, slots in elems[y].items():
            for count, fields in blocks(g, slots):
                turns.add(g, count, **fields)
            turns.add(g, 1, op=Opcode.READ_ACC.value, addr_b=g, data=to_host[y])
            flits.reply(y, 0, g)
        turns.emit(flits, y)
    return flits.phase("reduce")


def _softmax(config: Config, elems: list[dict[int, np.ndarray]], z: int,
             leaders: list[list[tuple[int, int, int]]], others: list[int], act: int = ACT
             ) -> list[Phase]:
    """The module's steps on ``elems``: ``others`` (the row's tiles but tile 0) send their
    maximum and sum to tile 0, whose ``leaders`` spread them (into activation ``act``); none
    for a softmax in one tile (each tile its own leader)."""
    rows = len(elems)
    phases = _self_rounds(config, elems, z, "WRITE_ACC", "MAX")
    if others:  # the maximum does not depend on the order: the tiles at once
        phases.append(_to_tile0(config, rows, z, others, "MAX"))
    phases.append(_spread(config, leaders, z, None, act=act))
    phases.append(_macs(config, elems, z, scale=False, act=act))

    def exp_first(turns, g, slots):
        turns.add(g, len(slots), op=Opcode.NONLINEAR.value, addr=slots,
                  data=FUNCTIONS.index("exp"))

    phases += _self_rounds(config, elems, z, "WRITE_ACC", "ADD", before=exp_first)
    phases += sum_at_tile0(config, rows, z, others)  # in tile order
    phases.append(_spread(config, leaders, z, "reciprocal", act=act))
    phases.append(_macs(config, elems, z, scale=True, act=act))
    phases += _self_rounds(config, elems, z, "MUL", "MUL", into_z=False)
    return phases


def gelu_back_scratch(config: Config) -> int:
    """The scratch accumulators :func:`gelu_back_phases` uses per tile at most (one per
    output of a round: :func:`softmax_window`), which a layer's plan leaves free
    (``plan_layer(spare=)``)."""
    return softmax_window(config)


def gelu_back_phases(plan: LayerPlan, p: int, rows: int, kept: int) -> list[Phase]:
    """GELU's derivative applied to pass ``p``'s accumulators of ``plan`` (``docs/training.md``,
    "GELU layers"): for output ``i`` in accumulator ``s`` of its tile, a scratch accumulator
    ``z`` written +0, a MAC of weight 1.0 on activation ``kept + i`` (the layer's kept input
    ``U``), NONLINEAR ``gelu_grad`` on ``z``, and a SEND of ``z`` into ``s`` as a MUL. At
    most :func:`softmax_window` outputs per tile a phase, each with its own scratch (the
    first accumulators no output uses), each tile's fence READ last; the tiles take turns.

    Raises
    ------
    LayerError
        If a tile has no accumulator to spare for a scratch.
    """
    config = plan.config
    z = softmax_scratch(plan, p)
    window = min(gelu_back_scratch(config), config.acc_depth - z)
    if window < 1:
        raise LayerError(f"GELU's derivative needs a scratch accumulator per tile: the "
                         f"{plan.I} outputs fill all {config.acc_depth} of a tile (raise "
                         f"acc_depth or use more columns)")
    one = _WEIGHTS[config.dtype][1]
    parts = plan.parts(p)
    longest = max(len(part) for part in parts)
    to_host = reply_route(config, rows)
    mul = SEND_PICKS["MUL"] << config.route_width
    phases = []
    for r in range(-(-longest // window)):
        flits = PhaseBuilder()
        for y in range(rows):
            turns = Turns()
            for g, part in enumerate(parts):
                s = np.arange(r * window, min((r + 1) * window, len(part)))
                if not len(s):
                    continue
                zs = z + s - r * window
                ops = np.array([Opcode.WRITE_ACC.value, Opcode.MAC.value,
                                Opcode.NONLINEAR.value, Opcode.SEND.value])
                turns.add(g, 4 * len(s), op=np.tile(ops, len(s)), addr=np.repeat(zs, 4),
                          addr_b=np.stack([zs, kept + np.asarray(part)[s], zs, s],
                                          axis=1).reshape(-1),
                          data=np.stack([np.zeros(len(s), np.int64), np.full(len(s), one),
                                         np.full(len(s), FUNCTIONS.index("gelu_grad")),
                                         np.full(len(s), route_to(config, g, y, Port.LOCAL)
                                                 | mul)], axis=1).reshape(-1))
                turns.add(g, 1, op=Opcode.READ_ACC.value, addr_b=g, data=to_host[y])
                flits.reply(y, 0, g)
            turns.emit(flits, y)
        phases.append(flits.phase("reduce"))
    return phases


def finish_rounds(config: Config, rows: int, sends, kind: str, before=None, delay=None
                  ) -> list[Phase]:
    """FINISH rounds over the first ``rows`` rows: ``sends(i)`` lists row ``i``'s ``(tile,
    fields, count)`` in each tile's
    order (``count``: the activation writes or MACs it causes); at most
    :func:`handoff_window` per tile per round, taking turns over the tiles; ``before(turns,
    i)``: flits of row ``i`` at the start of the first round. ``kind``: ``"handoff"``
    (counted writes) or ``"stream"`` (counted MACs). ``delay(i)``: the rounds row ``i``
    waits before its first (a wavefront: row ``i``'s ``k``-th window in round ``delay(i) +
    k``)."""
    window = handoff_window(config)
    per_row = [sends(i) for i in range(rows)]
    late = [0 if delay is None else int(delay(i)) for i in range(rows)]
    longest = max((late[i] * window + sum(1 for t, *_ in row if t == g)
                   for i, row in enumerate(per_row) for g in {t for t, *_ in row}), default=0)
    phases = []
    for r in range(max(1, -(-longest // window))):
        flits = PhaseBuilder()
        count = 0
        for i, row in enumerate(per_row):
            turns = Turns()
            if r == 0 and before is not None:
                before(turns, i)
            seen: dict[int, int] = {}
            for g, fields, n in row:
                k = seen[g] = seen.get(g, -1) + 1
                if (r - late[i]) * window <= k < (r - late[i] + 1) * window:
                    turns.add(g, 1, op=Opcode.FINISH.value, **fields)
                    count += n
            turns.emit(flits, i)
        phases.append(flits.phase("handoff", handoff_writes=count) if kind == "handoff"
                      else flits.phase("stream", expected_macs=count))
    return phases


def _pair_rounds(config: Config, pairs: list[dict[int, list[tuple[int, int, str]]]],
                 before=None) -> list[Phase]:
    """Self-``SEND`` rounds: ``pairs[y][g]`` lists tile ``g`` of row ``y``'s ``(source,
    target, pick)``, each a ``SEND`` of accumulator ``source`` into its own accumulator
    ``target`` with that pick, in order; :func:`softmax_window` per tile per phase, each
    tile's fence READ last. ``before(turns, y, g)``: flits for tile ``g`` of row ``y`` at the
    start of the first phase."""
    window = softmax_window(config)
    rows = len(pairs)
    longest = max((len(s) for row in pairs for s in row.values()), default=0)
    at = config.route_width
    to_host = reply_route(config, rows)
    phases = []
    for r in range(-(-longest // window)):
        flits = PhaseBuilder()
        for y in range(rows):
            turns = Turns()
            for g, sends in pairs[y].items():
                if r == 0 and before is not None:
                    before(turns, y, g)
                part = sends[r * window:(r + 1) * window]
                if not part:
                    continue
                src, dst, pick = zip(*part, strict=True)
                turns.add(g, len(part), op=Opcode.SEND.value, addr=np.array(src),
                          addr_b=np.array(dst), data=route_to(config, g, y, Port.LOCAL) | (
                              np.array([SEND_PICKS[p] for p in pick]) << at))
                turns.add(g, 1, op=Opcode.READ_ACC.value, addr_b=g, data=to_host[y])
                flits.reply(y, 0, g)
            turns.emit(flits, y)
        phases.append(flits.phase("reduce"))
    return phases


def local_softmax_grad_phases(config: Config, elems: list[dict[int, tuple]], z: int,
                              acts: tuple[int, int]) -> list[Phase]:
    """The softmax's derivative in each tile of ``elems`` (docs/attention.md, "The
    derivative"): ``elems[y][g] = (d, p, t)``, tile ``g`` of row ``y``'s accumulators of
    ``dP`` (which end holding ``dS``), of the probabilities ``p`` and of scratch ``t``, each
    in element order; scratch accumulator ``z`` and activations ``acts`` (``c1``, ``c2``) of
    each such tile. ``t = dP``, ``t = MUL(t, p)``; ``c`` = the ``t`` summed in order;
    ``c1``, ``c2`` to the tile itself; ``dP - c1 - c2`` (MACs of weight -1); ``MUL`` by
    ``p``."""
    leaders = [[(g, g, g) for g in row] for row in elems]
    t_elems = [{g: np.asarray(t) for g, (_, _, t) in row.items()} for row in elems]
    d_elems = [{g: np.asarray(d) for g, (d, _, _) in row.items()} for row in elems]
    phases = _pair_rounds(config, [{g: [x for j in range(len(d)) for x in (
        (int(d[j]), int(t[j]), "WRITE_ACC"), (int(p[j]), int(t[j]), "MUL"))]
        for g, (d, p, t) in row.items()} for row in elems])
    phases += _self_rounds(config, t_elems, z, "WRITE_ACC", "ADD")
    phases += _minus_c(config, d_elems, z, leaders, acts)
    phases += _pair_rounds(config, [{g: [(int(p[j]), int(d[j]), "MUL") for j in range(len(d))]
                                     for g, (d, p, _) in row.items()} for row in elems])
    return phases


def local_softmax_phases(config: Config, elems: list[dict[int, np.ndarray]], z: int,
                         act: int = ACT) -> list[Phase]:
    """A softmax in each tile of ``elems`` (row ``y``: tile ``g`` -> its elements'
    accumulators, in order), in place, with scratch accumulator ``z`` and activation ``act``
    of each such tile: the module's steps with one tile (docs/attention.md);
    :func:`wafertile.sim.models.rows.softmax` with one part is its reference."""
    leaders = [[(g, g, g) for g in row] for row in elems]
    return _softmax(config, elems, z, leaders, [], act)


def softmax_phases(plan: LayerPlan, p: int, rows: int) -> list[Phase]:
    """The softmax of pass ``p``'s outputs along each of the first ``rows`` array rows, in
    place (the module's steps); :func:`check_softmax` first. The layer's activations must be
    dead (its MACs done): activation 0 of its tiles is overwritten."""
    check_softmax(plan)
    tiles = _tiles(plan, p)
    return _softmax(plan.config, _plan_elems(plan, p, rows), softmax_scratch(plan, p),
                    _row_leaders(rows, tiles), tiles[1:])


def check_layernorm(plan: LayerPlan, what: str = "the LayerNorm layer") -> None:
    """Raise :class:`LayerError` (one line) if :func:`layernorm_phases` cannot run
    ``plan``."""
    check_softmax(plan, what)
    config = plan.config
    if softmax_window(config) < 3:
        raise LayerError(f"{what} needs a router whose local input holds at least 4 flits per "
                         f"VC (three SENDs and their fence): buffer_depth = "
                         f"{config.buffer_depth} with router_arch = {config.router_arch!r}")
    if softmax_scratch(plan) + 3 > config.acc_depth:
        raise LayerError(f"{what} leaves {config.acc_depth - softmax_scratch(plan)} of a "
                         f"tile's {config.acc_depth} accumulators free and LayerNorm needs 3 "
                         f"(raise acc_depth or use more columns)")


def _squares(config: Config, elems: list[dict[int, np.ndarray]], z: int) -> list[Phase]:
    """Step 3's squares and tile sums: phase ``k`` SENDs each tile's element ``k`` into
    scratch ``z + 1 + k % 2`` (WRITE_ACC, then MUL: its square) and the square of phase
    ``k - 1`` into ``z`` (the first a WRITE_ACC, then ADD); each tile's fence READ last."""
    at = config.route_width
    rows = len(elems)
    longest = max((len(s) for row in elems for s in row.values()), default=0)
    to_host = reply_route(config, rows)
    phases = []
    for k in range(longest + 1):
        flits = PhaseBuilder()
        for y in range(rows):
            turns = Turns()
            for g, slots in elems[y].items():
                n = len(slots)
                if k > n:
                    continue
                local = route_to(config, g, y, Port.LOCAL)
                if k < n:
                    q = z + 1 + k % 2
                    turns.add(g, 2, op=Opcode.SEND.value, addr=slots[k], addr_b=q, data=local | (
                        np.array([SEND_PICKS["WRITE_ACC"], SEND_PICKS["MUL"]]) << at))
                if k:
                    how = "WRITE_ACC" if k == 1 else "ADD"
                    turns.add(g, 1, op=Opcode.SEND.value, addr=z + 1 + (k - 1) % 2, addr_b=z,
                              data=local | (SEND_PICKS[how] << at))
                turns.add(g, 1, op=Opcode.READ_ACC.value, addr_b=g, data=to_host[y])
                flits.reply(y, 0, g)
            turns.emit(flits, y)
        phases.append(flits.phase("reduce"))
    return phases


def _row_setup(plan: LayerPlan, p: int, rows: int) -> tuple:
    """A LayerNorm's numbers on pass ``p``'s outputs of ``plan`` over ``rows`` rows: the
    scratch ``z``, the tiles that hold outputs, ``n = fp32(1 / I)`` as a ``data`` field, the
    parts, the elements and the rows' leaders."""
    from ..formats import fp32_fields

    tiles = _tiles(plan, p)
    return (softmax_scratch(plan, p), tiles,
            int(fp32_fields(np.float32(1.0) / np.float32(plan.I))), plan.parts(p),
            _plan_elems(plan, p, rows), _row_leaders(rows, tiles))


def _minus_mean(config: Config, elems: list[dict[int, np.ndarray]], z: int, leaders, others,
                n: int, acts: tuple[int, int]) -> list[Phase]:
    """LayerNorm's steps 1 and 2 (docs/nonlinear.md) on ``elems``: their mean ``mu`` (the
    tiles' sums into ``z``, added at tile 0 in tile order, times ``n``) as ``c1 + c2``,
    numbers of the format spread to activations ``acts`` of the row, and each element less
    ``c1``, then less ``c2``."""
    rows = len(elems)
    phases = _self_rounds(config, elems, z, "WRITE_ACC", "ADD")
    phases += sum_at_tile0(config, rows, z, others)  # in tile order
    return phases + _minus_c(config, elems, z, leaders, acts, ((Opcode.MUL, n),))


def _minus_c(config: Config, elems: list[dict[int, np.ndarray]], z: int, leaders,
             acts: tuple[int, int], ops: tuple = ()) -> list[Phase]:
    """A number ``c`` in each leader's ``z`` (after the host's ``ops`` on it) spread as two
    numbers of the format, ``c1 = fmt(c)`` to activation ``acts[0]`` and ``c2 = fmt(c -
    c1)`` to ``acts[1]`` of the leader's tiles (each leader holds ``c1`` as they do), then
    each element less ``c1``, then less ``c2`` (MACs of weight -1)."""
    minus = _WEIGHTS[config.dtype][0]
    return [_spread(config, leaders, z, None, ops=ops, act=acts[0]),
            _per_element(config, [{g: [z] for g, _, _ in row} for row in leaders],
                         lambda g, slots: [(1, {"op": Opcode.MAC.value, "addr": z,
                                                "addr_b": acts[0], "data": minus})]),
            _spread(config, leaders, z, None, act=acts[1]),
            _per_element(config, elems, lambda g, slots: [
                (len(slots), {"op": Opcode.MAC.value, "addr": slots, "addr_b": acts[0],
                              "data": minus}),
                (len(slots), {"op": Opcode.MAC.value, "addr": slots, "addr_b": acts[1],
                              "data": minus})])]


def layernorm_phases(plan: LayerPlan, p: int, rows: int, gamma, beta, eps: int, *,
                     acts: tuple[int, int] = (0, 1), ra: int | None = None,
                     kept: list[Phase] | tuple = ()) -> list[Phase]:
    """LayerNorm of pass ``p``'s outputs along each of the first ``rows`` array rows, in
    place (docs/nonlinear.md, "LayerNorm on the fabric"); ``gamma``, ``beta`` (FP32 words,
    one per output of the layer) and ``eps`` (an FP32 word) as ``data`` fields.
    :func:`check_layernorm` first. Activations ``acts`` (``c1`` and ``c2``) of the layer's
    tiles are overwritten (its MACs must be done), and ``r`` goes to activation ``acts[0]``
    of the tiles that hold outputs; or, with ``ra``, to activation ``ra`` of every tile of
    the row (a training step keeps it: docs/training.md, "LayerNorm layers"). ``kept``:
    phases played after the normalized outputs ``d r`` are made, before gamma and beta (a
    training step's hand-off that keeps them)."""
    check_layernorm(plan)
    config = plan.config
    z, tiles, n, parts, elems, leaders = _row_setup(plan, p, rows)
    others = tiles[1:]

    # 1. the mean; 2. d = (x - c1) - c2
    phases = _minus_mean(config, elems, z, leaders, others, n, acts)
    # 3. the squares and their sum; v = V * n + eps; r = fmt(rsqrt(v))
    phases += _squares(config, elems, z)
    phases += sum_at_tile0(config, rows, z, others)  # in tile order
    at = acts[0] if ra is None else ra
    phases.append(_spread(config, leaders if ra is None else
                          _row_leaders(rows, list(range(config.cols))), z, "rsqrt",
                          ops=((Opcode.MUL, n), (Opcode.ADD, int(eps))), act=at))
    # 4. d * r (r copied into z), then gamma and beta
    phases.append(_macs(config, elems, z, scale=True, act=at))
    phases += _self_rounds(config, elems, z, "MUL", "MUL", into_z=False)
    phases += kept
    gamma, beta = np.asarray(gamma, np.int64), np.asarray(beta, np.int64)
    phases.append(_per_element(config, elems, lambda g, slots: [
        (len(slots), {"op": Opcode.MUL.value, "addr": slots, "data": gamma[parts[g]]}),
        (len(slots), {"op": Opcode.ADD.value, "addr": slots, "data": beta[parts[g]]})]))
    return phases


#: The scratch activations of :func:`layernorm_back_phases` by default (``c1``, ``c2``, ``k``).
BACK_ACTS = (0, 1, 2)


def back_addresses(plan: LayerPlan, xh) -> np.ndarray:
    """The activation of each output's normalized value in its tile: ``xh + i`` for an int
    ``xh``, else ``xh[i]``."""
    if np.ndim(xh) == 0:
        return int(xh) + np.arange(plan.I)
    xh = np.asarray(xh, np.int64)
    if xh.shape != (plan.I,):
        raise LayerError(f"LayerNorm's derivative needs one address per output ({plan.I}), "
                         f"not {xh.shape}")
    return xh


def slot_addresses(plan: LayerPlan, base: int, p: int = 0) -> np.ndarray:
    """Each of pass ``p``'s outputs' address ``base + s``, ``s`` its slot in its tile (per
    output: a :func:`back_addresses` ``xh`` that keeps a tile's normalized outputs in its
    own slots' order)."""
    at = np.zeros(plan.I, np.int64)
    for part in plan.parts(p):
        at[np.asarray(part, np.int64)] = base + np.arange(len(part))
    return at


def check_layernorm_back(plan: LayerPlan, xh, ra: int, acts: tuple = BACK_ACTS,
                         what: str = "LayerNorm's derivative") -> None:
    """Raise :class:`LayerError` (one line) if :func:`layernorm_back_phases` cannot run
    ``plan`` with the normalized outputs at activations ``xh`` (:func:`back_addresses`),
    ``r`` at ``ra`` and the scratch activations ``acts``."""
    check_softmax(plan, what)
    config = plan.config
    if softmax_scratch(plan) + 2 > config.acc_depth:
        raise LayerError(f"{what} leaves {config.acc_depth - softmax_scratch(plan)} of a "
                         f"tile's {config.acc_depth} accumulators free and needs 2 (raise "
                         f"acc_depth or use more columns)")
    if len(acts) != 3:
        raise LayerError(f"{what} needs 3 scratch activations, not {len(acts)}")
    singles = {"r": ra, **{f"scratch {k}": a for k, a in enumerate(acts)}}
    for name, a in singles.items():
        if not 0 <= a < config.act_depth:
            raise LayerError(f"{what}: {name} at activation {a}, outside the bank (act_depth "
                             f"= {config.act_depth})")
    at = back_addresses(plan, xh)
    if at.min() < 0 or at.max() >= config.act_depth:
        raise LayerError(f"{what}: the {plan.I} normalized outputs at activations "
                         f"{at.min()} .. {at.max()} do not fit act_depth = "
                         f"{config.act_depth}")
    for part in plan.parts(0):  # in each tile: its outputs' apart, and from the others
        taken = set(at[np.asarray(part, np.int64)].tolist())
        if len(taken) < len(part):
            raise LayerError(f"{what}: two outputs of one tile at the same activation")
        for name, a in singles.items():
            if a in taken:
                raise LayerError(f"{what}: {name} at activation {a} overlaps another of its "
                                 f"activations")
            taken.add(a)


def layernorm_back_phases(plan: LayerPlan, p: int, rows: int, gamma, *, xh, ra: int,
                          acts: tuple = BACK_ACTS) -> list[Phase]:
    """LayerNorm's derivative of pass ``p``'s accumulators of ``plan`` along each of the
    first ``rows`` array rows, in place (``docs/nonlinear.md``, "LayerNorm's derivative on
    the fabric"): the accumulators hold ``dY`` and end with ``dX``; ``gamma`` (FP32 words,
    one per output, as ``data`` fields); the forward pass's normalized outputs, rounded to
    the format, output ``i`` at activation ``xh + i`` of its tile (or ``xh[i]``:
    :func:`back_addresses`), and its ``r`` at activation ``ra`` of every tile of the row;
    ``acts``: three scratch activations of every tile, overwritten.
    :func:`check_layernorm_back` first."""
    check_layernorm_back(plan, xh, ra, acts)
    config = plan.config
    at = back_addresses(plan, xh)
    z, tiles, n, parts, elems, leaders = _row_setup(plan, p, rows)
    q = z + 1  # the products' sums
    others = tiles[1:]
    gamma = np.asarray(gamma, np.int64)
    vc = config.num_vcs - 1

    def finishes(source, target):
        """Per element ``s`` of each tile, a FINISH of ``source(s)`` sending a MAC into
        ``target(s)`` of the tile itself on the element's normalized output."""
        def sends(y):
            return [(g, {"addr": int(source(s)), "addr_b": int(target(s)),
                         "data": encode_handoff(config, x0=g, x1=g, y=y, vc=vc, mac=True,
                                                act=int(at[parts[g][s]]))}, 1)
                    for g in tiles for s in range(len(parts[g]))]
        return finish_rounds(config, rows, sends, "stream")

    # 1. ReLU off and q = +0 in every tile; g = dY gamma
    phases = [_per_element(config, elems, lambda g, slots: [
        (1, {"op": Opcode.SET.value, "addr": Reg.RELU.value, "data": 0}),
        (1, {"op": Opcode.WRITE_ACC.value, "addr": q}),
        (len(slots), {"op": Opcode.MUL.value, "addr": slots, "data": gamma[parts[g]]})])]
    # 2. the sum of fmt(g) X^ in each tile's q, at tile 0 in tile order; k = fmt(sum n)
    phases += finishes(lambda s: s, lambda s: q)
    phases += sum_at_tile0(config, rows, q, others)
    phases.append(_spread(config, leaders, q, None, ops=((Opcode.MUL, n),), act=acts[2]))
    # 3. e = (g - c1) - c2, the mean of g as the forward pass's
    phases += _minus_mean(config, elems, z, leaders, others, n, acts[:2])
    # 4. e + (-k) X^: -k into each tile's z, a FINISH of it per element
    phases.append(_macs(config, elems, z, scale=True, act=acts[2], negate=True))
    phases += finishes(lambda s: z, lambda s: s)
    # 5. times r (copied into z)
    phases.append(_macs(config, elems, z, scale=True, act=ra))
    phases += _self_rounds(config, elems, z, "MUL", "MUL", into_z=False)
    return phases


def layernorm_back_program(plan: LayerPlan, dy, xhat, r, gamma, *, xh, ra: int,
                           acts: tuple = BACK_ACTS) -> LayerProgram:
    """A program that writes ``dy`` (``B x I`` FP32 words, ``B`` at most ``rows``) into
    pass 0's accumulators of ``plan``, the normalized outputs ``xhat`` (``B x I`` words of
    the format) into activations ``xh + i`` of each output's tile and ``r`` (``B`` words of
    the format) into activation ``ra`` of every tile of its row, runs
    :func:`layernorm_back_phases` and reads ``dX`` back (its Y: ``B x I`` FP32 words,
    :func:`wafertile.sim.models.rows.layernorm_grad`'s)."""
    from .compiler import read_phase

    config = plan.config
    dy = np.asarray(dy, np.int64)
    rows = len(dy)
    if dy.shape != (rows, plan.I) or np.shape(xhat) != dy.shape or np.shape(r) != (rows,):
        raise LayerError(f"dy and xhat must be B x {plan.I} arrays and r B words, not "
                         f"{dy.shape}, {np.shape(xhat)}, {np.shape(r)}")
    if not 1 <= rows <= config.rows:
        raise LayerError(f"{rows} rows of dy, the array has {config.rows}")
    check_layernorm_back(plan, xh, ra, acts)
    at = back_addresses(plan, xh)
    signed = ((dy & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
    xhat, r = np.asarray(xhat, np.int64), np.asarray(r, np.int64)
    to_host = reply_route(config, rows)
    load = PhaseBuilder()
    parts = plan.parts(0)
    for y in range(rows):
        for g, part in enumerate(parts):
            if not len(part):
                continue
            part = np.asarray(part)
            load.add(y, len(part), x0=g, x1=g, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                     addr=np.arange(len(part)), data=signed[y, part])
            load.add(y, len(part), x0=g, x1=g, y0=y, y1=y, op=Opcode.WRITE_ACT.value,
                     addr=at[part], data=xhat[y, part])
        load.add(y, 1, x0=0, x1=config.cols - 1, y0=y, y1=y, op=Opcode.WRITE_ACT.value,
                 addr=ra, data=r[y])
        load.add(y, 1, x0=config.cols - 1, x1=config.cols - 1, y0=y, y1=y,
                 op=Opcode.READ_ACC.value, addr_b=config.cols - 1, data=to_host[y])
        load.reply(y, 0, config.cols - 1)
    phases = [load.phase("load"), *layernorm_back_phases(plan, 0, rows, gamma, xh=xh, ra=ra,
                                                         acts=acts),
              read_phase(plan, 0, rows)]
    return LayerProgram(config, (rows, plan.I, 0), phases, 0, 0)
