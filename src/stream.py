"""The weight-streaming compiler: a sparse layer ``Y = X @ W.T`` as flits for the array.

Mapping (see docs/streaming.md):

- **Batch on rows, outputs on columns.** Tile (x, y) holds the whole activation row
  ``X[b, :]`` of batch element ``b = y + R * group`` in its activation bank (``act[j]``), and
  the accumulators of the outputs ``i`` assigned to column ``x`` (``acc[slot]``). Every output
  ``Y[b, i]`` is then complete in one tile: no partial sums cross the fabric (unless ``J``
  does not fit a tile: see *Reduction*).
- **Only nonzero weights are sent.** ``W[i, j] != 0`` becomes one MAC flit ``acc[slot(i)] +=
  W[i, j] * act[j]``, multicast to the column of ``i`` (rows ``0 .. R'-1``): one injection
  feeds one MAC in every tile of that column, one per batch element.
- **Balance.** Output rows are assigned to columns longest-first by their nonzero count, so
  every column receives about ``nnz / C`` flits; flits are dealt round-robin to the west-edge
  injection ports (one per row), so each port injects about ``nnz / R``.
- **Passes.** If a column's outputs do not fit the accumulator bank, they are split into
  passes over the same resident activations; batch elements beyond ``R`` are further groups,
  each reloading the activations.
- **Reduction.** If an activation row does not fit a tile (``J > act_depth``), it is split
  into ``K = ceil(J / act_depth)`` chunks and the columns into ``K`` blocks of ``G = C // K``
  columns: column ``k * G + g`` holds chunk ``k`` for output group ``g`` and accumulates the
  chunk's partial sums; a 'reduce' phase then has the tiles of blocks ``k >= 1`` SEND their
  partials as ADD flits to block 0 (tile ``(g, y)``), where the outputs are read. A layer is
  refused only if ``K > C`` (or with ``overflow = "saturate"`` and ``K > 1``: saturating per
  chunk and then adding is not the reference's saturation after every MAC).

The result is a :class:`LayerProgram`: phases of (port, flit) injections and the expected
replies, which a driver (simulator or board) plays in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Config, Overflow
from .errors import InputError
from .hdl.flit import Opcode, Port, encode_route

__all__ = ["LayerError", "LayerProgram", "Phase", "compile_layer", "reference"]

# Virtual channels: requests from the host on 0, replies to the host on the last one.
REQUEST_VC = 0


class LayerError(InputError):
    """A layer's shapes or values cannot run on this configuration (sizes in the message)."""


@dataclass
class Phase:
    """Flits to inject, in order per port, before the next phase may start.

    ``kind`` is 'load' (activations and zeroed accumulators), 'stream' (MAC flits), 'reduce'
    (SEND flits that move partial sums across the row as ADDs, then fence READs) or 'read'
    (READ_ACC flits whose replies carry the outputs). A 'load' phase ends when the fence
    replies (one READ per row) are back; a 'stream' phase when every MAC has been done or
    skipped (``expected_macs`` pulses of the tiles' ``mac_done | mac_skipped``); a 'reduce'
    phase when its fence replies (one per sending tile) are back; a 'read' phase when all
    ``replies`` are back.
    """

    kind: str
    injections: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: 'stream': MAC operations that tiles will execute (done or skipped)
    expected_macs: int = 0
    #: 'read' / 'load' / 'reduce': (row, slot, x) of each expected reply -> (b, i), or None
    #: for a fence
    replies: dict[tuple[int, int, int], tuple[int, int] | None] = field(default_factory=dict)


@dataclass
class LayerProgram:
    config: Config
    shape: tuple[int, int, int]  # (B, I, J)
    phases: list[Phase]
    nnz: int
    #: MAC flits a dense stream would send (every weight, zero or not)
    dense_flits: int

    @property
    def stream_flits(self) -> int:
        return sum(len(p.injections) for p in self.phases if p.kind == "stream")


def reference(config: Config, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``X @ W.T`` with the accumulator's overflow rule, accumulating in the order of ``j``.

    With ``overflow = "wrap"`` the result is the exact product wrapped to ``acc_width`` bits
    (wrapping commutes with addition). With ``"saturate"`` the tiles clamp after every MAC, so
    the reference does the same, in the order the compiler streams the weights (ascending
    ``j`` per output), skipping zero weights and zero activations like the hardware.
    """
    x = np.asarray(x, dtype=object)
    w = np.asarray(w, dtype=object)
    bits = config.acc_width
    lo, hi = config.acc_min, config.acc_max
    B, I = x.shape[0], w.shape[0]
    y = np.zeros((B, I), dtype=np.int64)
    for b in range(B):
        for i in range(I):
            acc = 0
            for j in np.nonzero(w[i])[0]:
                if x[b, j] == 0:
                    continue
                acc += int(w[i, j]) * int(x[b, j])
                if config.overflow_mode is Overflow.SATURATE:
                    acc = min(max(acc, lo), hi)
            if config.overflow_mode is Overflow.WRAP:
                acc &= (1 << bits) - 1
                acc -= (1 << bits) if acc >> (bits - 1) else 0
            y[b, i] = acc
    return y


def _check_inputs(config: Config, x: np.ndarray, w: np.ndarray) -> None:
    for name, arr in (("activations", x), ("weights", w)):
        if arr.ndim != 2:
            raise LayerError(f"{name} must be a 2-D integer array, not {arr.ndim}-D "
                             f"(shape {arr.shape})")
        if not np.issubdtype(arr.dtype, np.integer):
            raise LayerError(f"{name} must be integers, not {arr.dtype}")
        if arr.size and (arr.min() < config.data_min or arr.max() > config.data_max):
            raise LayerError(
                f"{name} must be within the {config.data_width}-bit signed range "
                f"{config.data_min}..{config.data_max}, found {arr.min()}..{arr.max()}")
    if x.shape[1] != w.shape[1]:
        raise LayerError(f"activations are {x.shape[0]} x {x.shape[1]} and weights "
                         f"{w.shape[0]} x {w.shape[1]}: Y = X @ W.T needs the same number of "
                         f"columns (J)")
    J = x.shape[1]
    chunks = _chunks(config, J)
    if chunks > config.cols:
        raise LayerError(f"an activation row has {J} values (J) but a tile's activation bank "
                         f"holds act_depth = {config.act_depth}: the row needs {chunks} tiles "
                         f"of a row and the array has cols = {config.cols}, so the layer's "
                         f"activations do not fit")
    if chunks > 1 and config.overflow_mode is Overflow.SATURATE:
        raise LayerError(f"an activation row has {J} values (J) and a tile's activation bank "
                         f"holds act_depth = {config.act_depth}: splitting it over {chunks} "
                         f"tiles adds partial sums, which overflow = 'saturate' would clamp "
                         f"per tile (not after every MAC); use overflow = 'wrap' or "
                         f"act_depth >= {J}")
    if config.cols > (1 << config.addr_width):
        raise LayerError(f"{config.cols} columns cannot be told apart in replies with "
                         f"{config.addr_width}-bit address fields (raise act_depth/acc_depth)")


def _chunks(config: Config, J: int) -> int:
    """K: the number of tiles (columns) one activation row of ``J`` values is split over."""
    return max(1, -(-J // config.act_depth))


def _hdr(config, x0, x1, y0, y1, vc=REQUEST_VC, exit_=0):
    return {"x0": x0, "x1": x1, "y0": y0, "y1": y1, "vc": vc, "exit": exit_}


def _reply_route(config: Config, x: int, y: int, exit_: Port) -> int:
    """The data field of a READ or SEND: output to tile (x, y) on the reply VC, leaving by
    ``exit_`` (``Port.LOCAL``: into that tile's core)."""
    return encode_route(config, x=x, y=y, exit=exit_, vc=config.num_vcs - 1)


def compile_layer(config: Config, x: np.ndarray, w: np.ndarray, *,
                  dense: bool = False) -> LayerProgram:
    """Compile ``Y = X @ W.T`` (X: B x J activations, W: I x J weights) for ``config``.

    With ``dense=True`` every weight is streamed, zeros included (the baseline that sparsity
    is measured against; the tiles skip the zero MACs, so Y is the same).

    Raises
    ------
    LayerError
        On shapes that do not match, values outside ``data_width``, a layer whose activation
        row does not fit one row of tiles (``ceil(J / act_depth) > cols``), or an activation
        row split over several tiles with ``overflow = "saturate"``.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    _check_inputs(config, x, w)
    R, C = config.rows, config.cols
    B, J = x.shape
    I = w.shape[0]
    to_host = {y: _reply_route(config, 0, y, Port.WEST) for y in range(R)}
    A = config.acc_depth
    # J in K chunks; the columns in K blocks of G (column k * G + g: chunk k, output group g).
    K = _chunks(config, J)
    chunk = -(-J // K) if J else 1
    G = C // K

    def col(k: int, g: int) -> int:
        return k * G + g

    # Outputs to groups, longest first (LPT), then to accumulator slots and passes.
    nnz_row = np.full(I, J) if dense else np.count_nonzero(w, axis=1)
    load = [0] * G
    groups: list[list[int]] = [[] for _ in range(G)]
    for i in sorted(range(I), key=lambda i: (-nnz_row[i], i)):
        g = min(range(G), key=lambda g: (load[g], len(groups[g]), g))
        groups[g].append(i)
        load[g] += int(nnz_row[i])
    passes = max(1, -(-max(len(c) for c in groups) // A))

    phases: list[Phase] = []
    for g0 in range(0, max(B, 1), R):
        rows = min(R, B - g0)
        # Load: each row's activations, chunk k multicast along its block of the row from the
        # row's own west port; then a fence READ to the row's far end (same source, same VC:
        # it arrives after them).
        ph = Phase("load")
        for y in range(rows):
            for j in range(J):
                k = j // chunk
                ph.injections.append((y, {
                    "header": _hdr(config, col(k, 0), col(k, G - 1), y, y),
                    "payload": {"op": Opcode.WRITE_ACT, "addr": j - k * chunk,
                                "data": int(x[g0 + y, j])}}))
        phases_for_group = []
        for p in range(passes):
            parts = [grp[p * A:(p + 1) * A] for grp in groups]
            zero = Phase("load") if p else ph
            slots = max(len(part) for part in parts)
            for y in range(rows):
                for s in range(slots):
                    zero.injections.append((y, {"header": _hdr(config, 0, C - 1, y, y),
                                                "payload": {"op": Opcode.WRITE_ACC, "addr": s,
                                                            "data": 0}}))
                zero.injections.append((y, {"header": _hdr(config, C - 1, C - 1, y, y),
                                            "payload": {"op": Opcode.READ_ACC, "addr": 0,
                                                        "addr_b": C - 1, "data": to_host[y]}}))
                zero.replies[(y, 0, C - 1)] = None
            stream = Phase("stream")
            # Each output's weights go through one port in ascending j (per chunk): flits from
            # one port to one column keep their order, so every accumulator sees its MACs in
            # the order the reference uses (this matters for saturation). Outputs are dealt to
            # the ports longest-first, and each port interleaves its outputs so consecutive
            # flits go to different columns.
            where = {}
            for g in range(G):
                for s_, i in enumerate(parts[g]):
                    where[i] = (g, s_)
            port_load = [0] * R
            per_port: list[list[int]] = [[] for _ in range(R)]
            for i in sorted(where, key=lambda i: (-nnz_row[i], i)):
                q = min(range(R), key=lambda q: (port_load[q], q))
                per_port[q].append(i)
                port_load[q] += int(nnz_row[i])
            for q in range(R):
                # With K > 1 an output has one accumulator per chunk, each fed in ascending j;
                # port q takes the chunks in the order q, q + 1, ... (mod K), so that the ports
                # do not all feed the same column block at the same time.
                queues = [sorted(range(J) if dense else np.nonzero(w[i])[0].tolist(),
                                 key=lambda j: ((j // chunk - q) % K, j))
                          for i in per_port[q]]
                for n in range(max((len(qu) for qu in queues), default=0)):
                    for i, qu in zip(per_port[q], queues, strict=True):
                        if n < len(qu):
                            g, s_ = where[i]
                            j = int(qu[n])
                            c = col(j // chunk, g)
                            stream.injections.append((q, {
                                "header": _hdr(config, c, c, 0, rows - 1),
                                "payload": {"op": Opcode.MAC, "addr": s_,
                                            "addr_b": j - (j // chunk) * chunk,
                                            "data": int(w[i, j])}}))
                            stream.expected_macs += rows
            phases_for_group += [zero, stream]
            if K > 1:
                # Reduce: tile (k * G + g, y), k >= 1, SENDs each partial sum as an ADD to tile
                # (g, y) on the reply VC, then gets a fence READ whose reply to the host leaves
                # on the same VC along the same westward path: it is back only when every ADD
                # has entered tile (g, y)'s core (docs/streaming.md).
                reduce = Phase("reduce")
                for y in range(rows):
                    for k in range(1, K):
                        for g in range(G):
                            if not parts[g]:
                                continue
                            c = col(k, g)
                            to_g = _reply_route(config, g, y, Port.LOCAL)
                            for s in range(len(parts[g])):
                                reduce.injections.append((y, {
                                    "header": _hdr(config, c, c, y, y),
                                    "payload": {"op": Opcode.SEND, "addr": s, "addr_b": s,
                                                "data": to_g}}))
                            reduce.injections.append((y, {
                                "header": _hdr(config, c, c, y, y),
                                "payload": {"op": Opcode.READ_ACC, "addr": 0, "addr_b": c,
                                            "data": to_host[y]}}))
                            reduce.replies[(y, 0, c)] = None
                phases_for_group.append(reduce)
            read = Phase("read")
            for y in range(rows):
                for g in range(G):
                    for s, i in enumerate(parts[g]):
                        read.injections.append((y, {
                            "header": _hdr(config, g, g, y, y),
                            "payload": {"op": Opcode.READ_ACC, "addr": s, "addr_b": g,
                                        "data": to_host[y]}}))
                        read.replies[(y, s, g)] = (g0 + y, i)
            phases_for_group.append(read)
        phases += phases_for_group
    nnz = int(np.count_nonzero(w))
    return LayerProgram(config, (B, I, J), phases, nnz, dense_flits=I * J)
