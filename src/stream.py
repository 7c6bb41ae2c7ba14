"""The weight-streaming compiler: a sparse layer ``Y = X @ W.T`` as flits for the array.

Mapping (see docs/streaming.md):

- **Batch on rows, outputs on columns.** Tile (x, y) holds the whole activation row
  ``X[b, :]`` of batch element ``b = y + R * group`` in its activation bank (``act[j]``), and
  the accumulators of the outputs ``i`` assigned to column ``x`` (``acc[slot]``). Every output
  ``Y[b, i]`` is then complete in one tile: no partial sums cross the fabric.
- **Only nonzero weights are sent.** ``W[i, j] != 0`` becomes one MAC flit ``acc[slot(i)] +=
  W[i, j] * act[j]``, multicast to the column of ``i`` (rows ``0 .. R'-1``): one injection
  feeds one MAC in every tile of that column, one per batch element.
- **Balance.** Output rows are assigned to columns longest-first by their nonzero count, so
  every column receives about ``nnz / C`` flits; flits are dealt round-robin to the west-edge
  injection ports (one per row), so each port injects about ``nnz / R``.
- **Passes.** If a column's outputs do not fit the accumulator bank, they are split into
  passes over the same resident activations; batch elements beyond ``R`` are further groups,
  each reloading the activations. A layer is refused only if one activation row (``J``) does
  not fit a tile's activation bank.

The result is a :class:`LayerProgram`: phases of (port, flit) injections and the expected
replies, which a driver (simulator or board) plays in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Config, Overflow

__all__ = ["LayerError", "LayerProgram", "Phase", "compile_layer", "reference"]

# Virtual channels: requests from the host on 0, replies to the host on the last one.
REQUEST_VC = 0


class LayerError(ValueError):
    """A layer's shapes or values cannot run on this configuration (sizes in the message)."""


@dataclass
class Phase:
    """Flits to inject, in order per port, before the next phase may start.

    ``kind`` is 'load' (activations and zeroed accumulators), 'stream' (MAC flits) or 'read'
    (READ_ACC flits whose replies carry the outputs). A 'load' phase ends when the fence
    replies (one READ per row) are back; a 'stream' phase when every MAC has been done or
    skipped (``expected_macs`` pulses of the tiles' ``mac_done | mac_skipped``); a 'read'
    phase when all ``replies`` are back.
    """

    kind: str
    injections: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: 'stream': MAC operations that tiles will execute (done or skipped)
    expected_macs: int = 0
    #: 'read' / 'load': (row, slot, x) of each expected reply -> (b, i) or None for a fence
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
    if x.shape[1] > config.act_depth:
        raise LayerError(f"an activation row has {x.shape[1]} values (J) but a tile's "
                         f"activation bank holds act_depth = {config.act_depth}: the layer's "
                         f"activations do not fit")
    if config.cols > (1 << config.addr_width):
        raise LayerError(f"{config.cols} columns cannot be told apart in replies with "
                         f"{config.addr_width}-bit address fields (raise act_depth/acc_depth)")


def _hdr(config, x0, x1, y0, y1, vc=REQUEST_VC, exit_=0):
    return {"x0": x0, "x1": x1, "y0": y0, "y1": y1, "vc": vc, "exit": exit_}


def _route(config: Config, x: int, y: int, exit_: int) -> int:
    """The data field of a READ: reply to tile (x, y) on the reply VC, leaving by ``exit_``."""
    vc = config.num_vcs - 1
    return (x | (y << config.x_width) | (exit_ << (config.x_width + config.y_width)) |
            (vc << (config.x_width + config.y_width + 3)))


def compile_layer(config: Config, x: np.ndarray, w: np.ndarray, *,
                  dense: bool = False) -> LayerProgram:
    """Compile ``Y = X @ W.T`` (X: B x J activations, W: I x J weights) for ``config``.

    With ``dense=True`` every weight is streamed, zeros included (the baseline that sparsity
    is measured against; the tiles skip the zero MACs, so Y is the same).

    Raises
    ------
    LayerError
        On shapes that do not match, values outside ``data_width``, or a layer whose
        activation row does not fit a tile.
    """
    from .hdl.flit import Exit, Opcode

    x = np.asarray(x)
    w = np.asarray(w)
    _check_inputs(config, x, w)
    R, C = config.rows, config.cols
    B, J = x.shape
    I = w.shape[0]
    west = Exit.WEST.value
    to_host = {y: _route(config, 0, y, west) for y in range(R)}

    # Outputs to columns, longest first (LPT), then to accumulator slots and passes.
    nnz_row = np.full(I, J) if dense else np.count_nonzero(w, axis=1)
    load = [0] * C
    cols: list[list[int]] = [[] for _ in range(C)]
    for i in sorted(range(I), key=lambda i: (-nnz_row[i], i)):
        c = min(range(C), key=lambda c: (load[c], len(cols[c]), c))
        cols[c].append(i)
        load[c] += int(nnz_row[i])
    passes = max(1, -(-max(len(c) for c in cols) // config.acc_depth))

    phases: list[Phase] = []
    for g0 in range(0, max(B, 1), R):
        rows = min(R, B - g0)
        # Load: each row's activations, multicast along the row from its own west port; then
        # a fence READ to the row's far end (same source, same VC: it arrives after them).
        ph = Phase("load")
        for y in range(rows):
            for j in range(J):
                ph.injections.append((y, {"header": _hdr(config, 0, C - 1, y, y), "payload": {
                    "op": Opcode.WRITE_ACT, "addr": j, "data": int(x[g0 + y, j])}}))
        phases_for_group = []
        for p in range(passes):
            zero = Phase("load") if p else ph
            slots = max(len(c[p * config.acc_depth:(p + 1) * config.acc_depth]) for c in cols)
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
            # Each output's weights go through one port in ascending j: flits from one port to
            # one column keep their order, so every accumulator sees its MACs in the order the
            # reference uses (this matters for saturation). Outputs are dealt to the ports
            # longest-first, and each port interleaves its outputs so consecutive flits go to
            # different columns.
            where = {}
            for c in range(C):
                for s_, i in enumerate(cols[c][p * config.acc_depth:(p + 1) * config.acc_depth]):
                    where[i] = (c, s_)
            port_load = [0] * R
            per_port: list[list[int]] = [[] for _ in range(R)]
            for i in sorted(where, key=lambda i: (-nnz_row[i], i)):
                q = min(range(R), key=lambda q: (port_load[q], q))
                per_port[q].append(i)
                port_load[q] += int(nnz_row[i])
            for q in range(R):
                queues = [list(range(J)) if dense else list(np.nonzero(w[i])[0])
                          for i in per_port[q]]
                for k in range(max((len(qu) for qu in queues), default=0)):
                    for i, qu in zip(per_port[q], queues, strict=True):
                        if k < len(qu):
                            c, s_ = where[i]
                            j = int(qu[k])
                            stream.injections.append((q, {
                                "header": _hdr(config, c, c, 0, rows - 1),
                                "payload": {"op": Opcode.MAC, "addr": s_, "addr_b": j,
                                            "data": int(w[i, j])}}))
                            stream.expected_macs += rows
            read = Phase("read")
            for y in range(rows):
                for c in range(C):
                    part = cols[c][p * config.acc_depth:(p + 1) * config.acc_depth]
                    for s, i in enumerate(part):
                        read.injections.append((y, {
                            "header": _hdr(config, c, c, y, y),
                            "payload": {"op": Opcode.READ_ACC, "addr": s, "addr_b": c,
                                        "data": to_host[y]}}))
                        read.replies[(y, s, c)] = (g0 + y, i)
            phases_for_group += [zero, stream, read]
        phases += phases_for_group
    nnz = int(np.count_nonzero(w))
    return LayerProgram(config, (B, I, J), phases, nnz, dense_flits=I * J)
