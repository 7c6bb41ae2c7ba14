"""The plan of a layer: where its outputs, inputs and MAC flits go on the array.

An activation row is split over ``K`` tiles of a row (:func:`row_chunks`); the outputs are
dealt to column groups, accumulator slots and passes longest first (:func:`plan_layer`, a
:class:`LayerPlan`), and each pass's MAC flits to the west ports, in the order the ports
inject them. :func:`reply_route` and :func:`route_to` are the routes on the reply VC that
READs (to the host) and SENDs (to a tile) carry in their data field.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..hdl.flit import Opcode, Port, encode_route

__all__ = ["LayerPlan", "handoff_window", "plan_layer", "reply_route", "route_to", "row_chunks",
           "stream_ports"]


def row_chunks(config: Config, J: int) -> int:
    """K: the number of tiles (columns) one activation row of ``J`` values is split over."""
    return max(1, -(-J // config.act_depth))


def stream_ports(config: Config, K: int, G: int) -> int:
    """The west ports a layer's MAC stream uses: every row's, but with ``K > 1`` at most
    ``K * G``, one per column the stream feeds (ports ``0 .. K * G - 1``). More would not
    help: the columns, each one flit a slot, carry the same flits; and ports that outnumber
    a group's ``K`` columns share them and slow each other down (docs/streaming.md)."""
    return config.rows if K == 1 else min(config.rows, K * G)


def handoff_window(config: Config) -> int:
    """Outputs a tile may have in flight at once without a wait on itself: what the router's
    local input holds on the reply VC (a VC buffer of ``buffer_depth`` flits; the ``lite``
    router's one-flit register). FINISHes per tile per hand-off round (docs/network.md);
    a row operation's self-SENDs and their fence (:mod:`.rows`)."""
    return 1 if config.router_arch == "lite" else config.buffer_depth


def route_to(config: Config, x: int, y, exit_: Port):
    """The data field of a READ or SEND: output to tile (x, y) on the reply VC, leaving by
    ``exit_`` (``Port.LOCAL``: into that tile's core); ``x`` and ``y`` may be arrays."""
    if np.ndim(x) or np.ndim(y):
        xs, ys = np.broadcast_arrays(np.asarray(x, np.int64), np.asarray(y, np.int64))
        return np.array([encode_route(config, x=int(a), y=int(b), exit=exit_,
                                      vc=config.num_vcs - 1) for a, b in zip(xs, ys,
                                                                             strict=True)],
                        dtype=np.int64)
    return encode_route(config, x=int(x), y=int(y), exit=exit_, vc=config.num_vcs - 1)


def _lpt(weights: np.ndarray, order: np.ndarray, bins: int, *, by_count: bool) -> np.ndarray:
    """Longest-processing-time assignment: items in ``order`` (already longest first) each to
    the bin with the least load so far (then, with ``by_count``, the fewest items; then the
    lowest index). Returns the bin of every item (indexed like ``weights``)."""
    heap = [(0, 0, b) for b in range(bins)] if by_count else [(0, b) for b in range(bins)]
    heapq.heapify(heap)
    out = np.zeros(len(weights), dtype=np.int64)
    for i in order.tolist():
        top = heapq.heappop(heap)
        out[i] = top[-1]
        load = top[0] + int(weights[i])
        heapq.heappush(heap, (load, top[1] + 1, top[2]) if by_count else (load, top[1]))
    return out


@dataclass
class LayerPlan:
    """How a layer ``W`` (I x J) maps onto the array (``docs/streaming.md``).

    ``J`` is split into ``K`` chunks of ``chunk`` inputs and the columns into ``K`` blocks of
    ``G``: column ``k * G + g`` holds chunk ``k`` of output group ``g``. ``groups[g]`` lists
    the outputs of group ``g`` (longest first); pass ``p`` takes slots ``p * slots`` onwards
    of every group (:meth:`parts`; ``slots``: ``acc_depth``, or fewer for a layer whose
    hand-off needs scratch accumulators). ``streams[p]`` is pass ``p``'s MAC flits (port and
    fields, activation addresses relative to the layer's base).
    """

    config: Config
    I: int
    J: int
    K: int
    chunk: int
    G: int
    groups: list[np.ndarray]
    passes: int
    streams: list[tuple[np.ndarray, dict[str, Any]]]
    nnz: int
    #: MAC flits of each output (its nonzero weights; every weight for a dense plan)
    nnz_row: np.ndarray = None
    #: the outputs, longest first (the order of the assignments)
    longest: np.ndarray = None
    #: a tile's accumulators that a pass's outputs take (0: all of them, ``acc_depth``)
    slots: int = 0

    @property
    def chunk_sizes(self) -> np.ndarray:
        """The inputs of each of the ``K`` chunks: ``chunk``, the last one the rest."""
        sizes = np.full(self.K, self.chunk)
        sizes[-1] = self.J - self.chunk * (self.K - 1)
        return sizes

    def parts(self, p: int) -> list[np.ndarray]:
        """The outputs of every group in pass ``p`` (slot ``s`` of group ``g``:
        ``parts(p)[g][s]``)."""
        A = self.slots or self.config.acc_depth
        return [m[p * A:(p + 1) * A] for m in self.groups]

    def ports(self, p: int) -> np.ndarray:
        """The west port of every output of pass ``p`` (indexed by output; -1 for the
        outputs of other passes): longest first to the least loaded port, as the stream of
        pass ``p`` deals them."""
        parts = self.parts(p)
        members = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        order = self.longest[np.isin(self.longest, members)]
        port = _lpt(self.nnz_row, order, stream_ports(self.config, self.K, self.G),
                    by_count=False)
        out = np.full(self.I, -1, dtype=np.int64)
        out[order] = port[order]
        return out

    def first_chunks(self, p: int, port: np.ndarray | None = None) -> np.ndarray:
        """The chunk each west port starts pass ``p``'s stream on (``K > 1``; 0 for a port
        without outputs): :func:`_first_turns`. ``port``: :meth:`ports` of ``p``, if the
        caller has it."""
        port = self.ports(p) if port is None else port
        group = np.full(self.I, -1, dtype=np.int64)
        for g, part in enumerate(self.parts(p)):
            group[part] = g
        order = self.longest[port[self.longest] >= 0]
        return _first_turns(port[order], group[order], self.config.rows, self.K)


def plan_layer(config: Config, w: np.ndarray, *, dense: bool = False,
               streams: bool = True, groups: list[np.ndarray] | None = None,
               spare: int = 0) -> LayerPlan:
    """Outputs to groups (longest first, LPT), to accumulator slots and passes; each pass's
    MAC flits (:func:`compile_layer`). ``dense``: every weight, zeros included; ``streams =
    False``: without the MAC flits (``streams`` is empty; for a model that needs only the
    assignment, :meth:`LayerPlan.ports`). ``groups``: the outputs of each column, in slot
    order, given (a layer whose inputs fit one tile, ``K = 1``: the attention's projection,
    :meth:`~.attention.AttentionLayout.groups`) instead of dealt. ``spare``: accumulators of
    every tile that no output takes (scratch for the hand-off: GELU's derivative), at the
    cost of more passes.

    Raises
    ------
    ValueError
        If ``spare`` leaves no accumulator for the outputs.
    """
    I, J = w.shape
    A = config.acc_depth - spare
    if not 1 <= A <= config.acc_depth:
        raise ValueError(f"{spare} spare accumulators of {config.acc_depth} leave none for "
                         f"the outputs")
    K = row_chunks(config, J)
    chunk = -(-J // K) if J else 1
    G = config.cols // K
    nnz_row = np.full(I, J, dtype=np.int64) if dense else np.count_nonzero(w, axis=1)
    longest = np.lexsort((np.arange(I), -nnz_row))
    if groups is not None:
        groups = [np.asarray(m, np.int64) for m in groups]
        if K != 1 or len(groups) != G or not np.array_equal(np.sort(np.concatenate(groups)),
                                                            np.arange(I)):
            raise ValueError(f"given groups need a layer of one chunk (K = {K}) and each of "
                             f"its {I} outputs in one of {G} groups")
    else:
        group = _lpt(nnz_row, longest, G, by_count=True)
        groups = [longest[group[longest] == g] for g in range(G)]
    passes = max(1, -(-max((len(m) for m in groups), default=0) // A))
    flits = [_stream(config, w, nnz_row, longest, [m[p * A:(p + 1) * A] for m in groups],
                     K=K, G=G, chunk=chunk, dense=dense) for p in range(passes)] if streams \
        else []
    return LayerPlan(config, I, J, K, chunk, G, groups, passes, flits,
                     int(nnz_row.sum()) if not dense else int(np.count_nonzero(w)),
                     nnz_row, longest, A if spare else 0)


def reply_route(config: Config, rows: int) -> np.ndarray:
    """The data field of a READ whose reply goes to the host at the west port of each row."""
    return route_to(config, 0, np.arange(rows), Port.WEST)


def _stream(config: Config, w, nnz_row, longest, parts, *, K, G, chunk, dense):
    """The MAC flits of one pass: ``(port, fields)``.

    Each output's weights go through one port in ascending j (per chunk): flits from one port
    to one column keep their order, so every accumulator sees its MACs in order (the
    saturating mode needs that). Outputs are dealt to the ports longest-first, and each port
    interleaves its outputs so consecutive flits go to different columns: flit ``n`` of every
    output of the port, then flit ``n + 1``. With K > 1 an output has one accumulator per
    chunk, each fed in ascending j; the stream uses ``K * G`` ports at most
    (:func:`stream_ports`), and each port takes the chunks in the order f, f + 1, ... (mod
    K) from its first chunk f (:func:`_first_turns`): the ports of one output group start on
    different chunks, so that they feed different columns at the same time.
    """
    R = config.rows
    I = len(nnz_row)
    members = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    # per-output tables, and per-flit index arrays in 32 bits: a wafer-size layer has tens
    # of millions of flits (outputs, inputs and positions all fit)
    group = np.full(I, -1, dtype=np.int32)
    slot = np.zeros(I, dtype=np.int32)
    for g, part in enumerate(parts):
        group[part] = g
        slot[part] = np.arange(len(part))
    order = longest[np.isin(longest, members)]
    port = _lpt(nnz_row, order, stream_ports(config, K, G), by_count=False).astype(np.int32)
    # position of each output in its port's list (the order it joined the port)
    rank = np.zeros(I, dtype=np.int64)
    rank[order] = _rank_within(port[order])
    # every MAC of the pass, by output then input: (output i, input j), i ascending
    rows = np.sort(members)
    ii, jj = _macs(w, rows, dense=dense)
    # n: the flit's position in its output's queue (ascending (turn, j), where the chunk
    # order of a port is f, f + 1, ... (mod K) from its first chunk f): flits of one output
    # are contiguous here, in ascending j, so chunk by chunk
    start = np.searchsorted(ii, rows)  # the first flit of each member output
    count = np.diff(np.r_[start, len(ii)])
    if K == 1:
        n = np.arange(len(ii), dtype=np.int32) - np.repeat(start.astype(np.int32), count)
    else:
        first = _first_turns(port[order], group[order], R, K)
        n = _positions_by_turn(ii, jj // chunk, rows, start, first[port[rows]], K)
    # the port's sequence: flit n of each of its outputs (in the order they joined), then
    # n + 1: sort by (port, n, rank), one key (each (port, n, rank) is one flit)
    span_n = int(n.max(initial=0)) + 1
    span_r = int(rank.max(initial=0)) + 1
    if R * span_n * span_r < (1 << 62):
        key = port[ii].astype(np.int64)
        key *= span_n
        key += n
        del n
        key *= span_r
        key += rank[ii]
        seq = np.argsort(key)
        del key
    else:  # pragma: no cover - beyond int64 keys
        seq = np.lexsort((rank[ii], n, port[ii]))
    # the weights in (i, j) order first: a sequential read of w, then one permutation
    data = w[ii, jj][seq]
    ii = ii[seq]
    jj = jj[seq]
    del seq
    if K > 1:
        kk = jj // chunk
        column = kk * G + group[ii]
        addr_b = jj - kk * chunk
        del kk
    else:
        column = group[ii]
        addr_b = jj
    return port[ii], {"x0": column, "x1": column, "op": Opcode.MAC.value, "addr": slot[ii],
                      "addr_b": addr_b, "data": data}


def _rank_within(group: np.ndarray) -> np.ndarray:
    """The position of each item among the earlier items of the same group."""
    order = np.argsort(group, kind="stable")
    first = np.searchsorted(group[order], group[order], side="left")
    out = np.empty(len(group), dtype=np.int64)
    out[order] = np.arange(len(group)) - first
    return out


def _macs(w: np.ndarray, rows: np.ndarray, *, dense: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)`` of every MAC of outputs ``rows`` (ascending), by ``i`` then ``j``: every
    weight with ``dense``, else the nonzero ones; without a temporary of ``w``'s size."""
    J = w.shape[1]
    if dense:
        return (np.repeat(rows.astype(np.int32), J),
                np.tile(np.arange(J, dtype=np.int32), len(rows)))
    if not w.size or not len(rows):
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    whole = len(rows) == w.shape[0]
    r, jj = np.nonzero(w if whole else w[rows])
    r = r.astype(np.int32)
    jj = jj.astype(np.int32)
    return (r if whole else rows.astype(np.int32)[r]), jj


def _first_turns(port: np.ndarray, group: np.ndarray, R: int, K: int) -> np.ndarray:
    """The chunk each of the ``R`` ports starts on (K > 1), from its outputs in dealing
    order (``port`` and ``group`` of each): a port's lead group is the group of its first
    output; the ports that share a lead group start on chunks ``0, 1, 2, ...`` (mod K) in
    port order, so that ports feeding the same output group begin on different columns."""
    lead = np.full(R, -1, dtype=np.int64)
    seen, at = np.unique(port, return_index=True)
    lead[seen] = group[at]
    out = np.zeros(R, dtype=np.int64)
    out[seen] = _rank_within(lead[seen]) % K
    return out


def _positions_by_turn(ii, kk, rows, start, first, K):
    """n for K > 1: a flit's position in its output's queue, the output's chunks taken in
    the order f, f + 1, ... (mod K) from its port's first chunk f, each in ascending j."""
    # flits per (output, chunk); the output's flits are in ascending j, so chunk by chunk
    m = len(rows)
    out_index = np.repeat(np.arange(m), np.diff(np.r_[start, len(ii)]))
    per = np.bincount(out_index * K + kk, minlength=m * K).reshape(m, K)
    block_start = np.cumsum(per, axis=1) - per          # where chunk k starts, j order
    turn_of = (np.arange(K)[None, :] - first[:, None]) % K  # turn of chunk k
    # the queue takes chunks by turn: offset of chunk k = flits of the chunks of lower turn
    by_turn = np.take_along_axis(per, (turn_of.argsort(axis=1)), axis=1)
    offset_by_turn = np.cumsum(by_turn, axis=1) - by_turn
    offset = np.take_along_axis(offset_by_turn, turn_of, axis=1)
    within = np.arange(len(ii)) - start[out_index] - block_start[out_index, kk]
    return offset[out_index, kk] + within
