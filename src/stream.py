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
  chunk and then adding is not the reference's saturation after every MAC). With a
  floating-point ``dtype`` the order of the additions matters, so there is one fenced reduce
  phase per block ``k = 1 .. K - 1``, in that order: ``((p0 + p1) + p2) + ...``
  (:func:`reduce_phases`).
- **Floating point** (``dtype`` fp16 / bf16): the weights and activations are the user's
  float arrays, exactly numbers of the format (:func:`wafertile.formats.float_words`), sent as
  their bits; the outputs are FP32 words (:func:`reference` gives them as ``float32``).

The result is a :class:`LayerProgram`: phases of (port, flit) injections and the expected
replies, which a driver (simulator or board) plays in order.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .config import Config, Overflow
from .errors import InputError
from .formats import float_words, fp32_values
from .hdl.core.ops import OPS, codes
from .hdl.flit import Opcode, Port, encode_route, flit_layout, leaf_names, pack_columns

__all__ = ["LayerError", "LayerPlan", "LayerProgram", "Phase", "PhaseBuilder", "add_activations",
           "add_zero", "check_layer", "compile_layer", "layer_words", "load_program", "plan_layer",
           "read_phase", "reduce_phase", "reduce_phases", "reference", "reply_route",
           "save_program", "stream_phase"]

# Virtual channels: requests from the host on 0, replies to the host on the last one.
REQUEST_VC = 0


class LayerError(InputError):
    """A layer's shapes or values cannot run on this configuration (sizes in the message)."""


@dataclass(eq=False)
class Phase:
    """Flits to inject, in order per port, before the next phase may start.

    ``kind`` is 'load' (activations and zeroed accumulators), 'stream' (MAC flits), 'reduce'
    (SEND flits that move partial sums across the row as ADDs, then fence READs), 'handoff'
    (SET and FINISH flits: the tiles turn their accumulators into the next layer's
    activations and write them into the tiles of their row) or 'read' (READ_ACC flits whose
    replies carry the outputs). A 'load' phase ends when the fence replies (one READ per row)
    are back; a 'stream' phase when every MAC has been done or skipped (``expected_macs``
    pulses of the tiles' ``mac_done | mac_skipped``); a 'handoff' phase when every activation
    it sends has been written (``expected_writes`` pulses of ``act_written``); a 'reduce'
    phase when its fence replies (one per sending tile) are back; a 'read' phase when all
    expected replies are back. ``expected_writes`` counts every activation write a phase
    causes (a host's WRITE_ACT to a rectangle of n tiles counts n), so that a host that counts
    ``act_written`` over a whole program knows what to expect.

    The flits are a column store: ``port[k]`` is the west port that injects flit ``k`` and
    ``flits[name][k]`` its field ``name`` (the dotted leaf names of
    :func:`~wafertile.hdl.flit.flit_layout`: ``"header.x0"`` ... ``"payload.data"``), so that
    a layer of millions of nonzeros is compiled, packed and written without a Python object
    per flit. Expected replies are arrays too: reply ``r`` comes back at west port
    ``reply_row[r]`` with ``addr = reply_slot[r]`` and ``addr_b = reply_x[r]``, and carries
    ``Y[reply_b[r], reply_i[r]]`` (``-1``: a fence, no output).
    """

    kind: str
    port: np.ndarray
    flits: dict[str, np.ndarray]
    #: 'stream': MAC operations that tiles will execute (done or skipped)
    expected_macs: int = 0
    #: activation writes (WRITE_ACT executions) the phase causes
    expected_writes: int = 0
    reply_row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reply_slot: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reply_x: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reply_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reply_i: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.port)

    @property
    def expected_replies(self) -> int:
        return len(self.reply_row)

    def words(self, layout) -> np.ndarray:
        """The flits packed for ``layout`` (``(n, words)`` uint32, :func:`pack_columns`)."""
        return pack_columns(layout, self.flits)

    @cached_property
    def replies(self) -> dict[tuple[int, int, int], tuple[int, int] | None]:
        """``{(row, slot, x): (b, i) or None}`` for the expected replies (small programs)."""
        return {(int(r), int(s), int(x)): (None if b < 0 else (int(b), int(i)))
                for r, s, x, b, i in zip(self.reply_row, self.reply_slot, self.reply_x,
                                         self.reply_b, self.reply_i, strict=True)}

    @property
    def injections(self) -> list[tuple[int, dict[str, Any]]]:
        """``(port, flit)`` pairs with the flit as nested dicts (``{"header": {...},
        "payload": {...}}``, ``op`` an :class:`Opcode`), in order: for small programs (the
        functional model, a board's frames, tests)."""
        names = list(self.flits)
        cols = [self.flits[n].tolist() for n in names]
        out = []
        for k, port in enumerate(self.port.tolist()):
            flit: dict[str, dict[str, Any]] = {"header": {}, "payload": {}}
            for name, col in zip(names, cols, strict=True):
                part, leaf = name.split(".")
                flit[part][leaf] = Opcode(col[k]) if leaf == "op" else col[k]
            out.append((port, flit))
        return out


class PhaseBuilder:
    """Collects blocks of flits (fields as arrays or scalars) and expected replies into a
    :class:`Phase`."""

    #: header field names; the rest of :data:`_LEAVES` is the payload
    HEADER = ("x0", "x1", "y0", "y1", "vc", "exit")

    def __init__(self):
        self.blocks: list[tuple[np.ndarray, dict[str, Any]]] = []
        self.replies: list[tuple[Any, ...]] = []

    def add(self, port, n: int, **fields) -> None:
        """``n`` flits: ``port`` and ``fields`` (``x0`` ... ``exit`` for the header, ``op``
        ... ``data`` for the payload; missing ones are 0) as arrays of ``n`` or scalars."""
        if n:
            self.blocks.append((np.broadcast_to(np.asarray(port, np.int64), (n,)), fields))

    def reply(self, row, slot, x, b=-1, i=-1) -> None:
        """Expected replies (arrays or scalars broadcast together); ``b = -1``: a fence."""
        self.replies.append(tuple(np.ravel(v) for v in np.broadcast_arrays(
            *(np.asarray(v, np.int64) for v in (row, slot, x, b, i)))))

    def phase(self, kind: str, expected_macs: int = 0, handoff_writes: int = 0) -> Phase:
        """The phase; ``handoff_writes``: the activation writes its FINISH flits cause (the
        host's own WRITE_ACTs are counted here)."""
        def cat(chunks):
            return np.concatenate(chunks) if chunks else np.zeros(0, np.int64)

        columns = {}
        for name in _LEAVES:
            leaf = name.split(".")[1]
            columns[name] = cat([np.broadcast_to(np.asarray(f.get(leaf, 0), np.int64),
                                                 (len(p),)) for p, f in self.blocks])
        h = {k: columns[f"header.{k}"] for k in ("x0", "x1", "y0", "y1")}
        # the flits that write an activation (the tiles' act_written), at every tile they reach
        writes = np.isin(columns["payload.op"], _ACT_WRITES) * \
            (h["x1"] - h["x0"] + 1) * (h["y1"] - h["y0"] + 1)
        replies = [cat([r[k] for r in self.replies]) for k in range(5)]
        return Phase(kind, cat([p for p, _ in self.blocks]), columns, expected_macs,
                     int(writes.sum()) + handoff_writes, *replies)


#: The leaf fields of every flit (the names do not depend on the configuration).
_LEAVES = tuple(leaf_names(flit_layout(Config())))
#: The opcodes of the operations that write an activation (:mod:`wafertile.hdl.core.ops`).
_ACT_WRITES = codes(OPS.where(lambda r: r.act_write is not None))


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
        return sum(len(p) for p in self.phases if p.kind == "stream")

    @property
    def flits(self) -> int:
        """Flits the host injects in all (load, stream, reduce and read phases)."""
        return sum(len(p) for p in self.phases)


_REPLY_FIELDS = ("reply_row", "reply_slot", "reply_x", "reply_b", "reply_i")


def save_program(program: LayerProgram, path) -> None:
    """Write ``program`` (its phases' columns, counts and expected replies) as ``.npz``."""
    phases = program.phases
    arrays: dict[str, Any] = {
        "shape": np.array(program.shape), "totals": np.array([program.nnz,
                                                              program.dense_flits]),
        "kinds": np.array([p.kind for p in phases]),
        "counts": np.array([[len(p), p.expected_macs, p.expected_writes, p.expected_replies]
                            for p in phases], dtype=np.int64).reshape(-1, 4),
        "port": np.concatenate([p.port for p in phases]) if phases else np.zeros(0, np.int64),
    }
    for name in _LEAVES:
        arrays[name] = np.concatenate([p.flits[name] for p in phases]) if phases else \
            np.zeros(0, np.int64)
    for name in _REPLY_FIELDS:
        arrays[name] = np.concatenate([getattr(p, name) for p in phases]) if phases else \
            np.zeros(0, np.int64)
    np.savez(path, **arrays)


def load_program(path, config: Config) -> LayerProgram:
    """Read a program written by :func:`save_program`."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    phases, at, rat = [], 0, 0
    for kind, (n, macs, writes, replies) in zip(data["kinds"].tolist(), data["counts"],
                                                strict=True):
        n, replies = int(n), int(replies)
        phases.append(Phase(str(kind), data["port"][at:at + n],
                            {name: data[name][at:at + n] for name in _LEAVES}, int(macs),
                            int(writes), *(data[name][rat:rat + replies]
                                           for name in _REPLY_FIELDS)))
        at, rat = at + n, rat + replies
    nnz, dense = (int(v) for v in data["totals"])
    return LayerProgram(config, tuple(int(v) for v in data["shape"]), phases, nnz, dense)


def reference(config: Config, x: np.ndarray, w: np.ndarray,
              bias: np.ndarray | None = None) -> np.ndarray:
    """``X @ W.T`` (``+ bias``, the accumulators' starting values) with the accumulator's
    overflow rule, accumulating in the order of ``j``.

    With a floating-point ``dtype`` (``x`` and ``w`` as :func:`compile_layer` takes them,
    ``bias`` as ``data`` fields of FP32 words, :func:`wafertile.formats.fp32_fields`): the
    tiles' arithmetic, as ``float32`` values (every NaN the canonical one). Per chunk ``k`` of
    the activation row (``J`` split over ``K`` tiles, as the compiler splits it), the partial
    sum ``p_k`` starts from +0 (``p_0`` from the bias) and takes ``p = fp32(p + fp32(w) *
    fp32(a))`` for ``j`` ascending, skipping every ``j`` where ``w`` or ``a`` is +0 or -0;
    then ``Y = fp32(...fp32(fp32(p_0 + p_1) + p_2) ... + p_{K-1})`` (``docs/float.md``).

    With ``overflow = "wrap"`` the result is the exact product wrapped to ``acc_width`` bits
    (wrapping commutes with addition). With ``"saturate"`` the tiles clamp after every MAC, so
    the reference does the same, in the order the compiler streams the weights (ascending
    ``j`` per output): a zero weight or activation adds zero, which leaves a clamped sum
    unchanged, so skipping it (as the hardware does) and adding it are the same. Vectorized
    over the outputs (exact ``int64``: products of two 16-bit values summed over up to 2**17
    terms stay below 2**63; wider sums go through Python integers).
    """
    if config.is_float:
        x, w = layer_words(config, x, w)
        return fp32_values(_float_reference(config, x, w, bias))
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    bits = config.acc_width
    J = x.shape[1] if x.ndim == 2 else 0
    exact_int64 = J * (1 << (2 * config.data_width - 2)) < (1 << 62)
    start = np.zeros(w.shape[0], dtype=np.int64) if bias is None else \
        np.asarray(bias, dtype=np.int64)
    if config.overflow_mode is Overflow.SATURATE:
        lo, hi = config.acc_min, config.acc_max
        acc = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64) + start
        for j in range(J):  # one vector step per input: every output at once
            acc += np.multiply.outer(x[:, j], w[:, j])
            np.clip(acc, lo, hi, out=acc)
        return acc
    if not exact_int64:  # pragma: no cover - J beyond 2**(64 - 2 * data_width)
        raise LayerError(f"an activation row of {J} values is too long for the exact "
                         f"reference of {config.data_width}-bit data")
    y = x @ w.T + start  # exact: |y| < 2**62
    if bits == 64:
        return y
    y = y & ((1 << bits) - 1)
    return y - ((y >> (bits - 1)) & 1) * (1 << bits)


def _float_reference(config: Config, x: np.ndarray, w: np.ndarray,
                     bias: np.ndarray | None) -> np.ndarray:
    """:func:`reference` of a float layer on words (:func:`layer_words`): FP32 bits."""
    # imported here: the package wafertile.sim.models imports this module
    from .sim.models.fp import add, mac

    B, J = x.shape
    I = w.shape[0]
    K = _chunks(config, J)
    chunk = -(-J // K) if J else 1
    total = None
    for k in range(K):
        part = np.zeros((B, I), np.uint32)
        if k == 0 and bias is not None:
            part += (np.asarray(bias, np.int64) & 0xFFFFFFFF).astype(np.uint32)
        for j in range(k * chunk, min(J, (k + 1) * chunk)):
            part = mac(part, w[None, :, j], x[:, None, j], config.dtype)
        total = part if total is None else add(total, part)
    return total if total is not None else np.zeros((B, I), np.uint32)


def layer_words(config: Config, x: np.ndarray, w: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The activations and weights of a float layer as the words its flits carry: the bits of
    every value in ``config.dtype`` (:func:`wafertile.formats.float_words`), with a weight of
    -0 as +0 (a zero weight is never sent: it costs nothing either way).

    Raises
    ------
    LayerError
        If an array is not 2-D, not a float16 / float32 array, or holds a value that is not
        a number of the format (the first one is named).
    """
    out = []
    for name, arr in (("activations", x), ("weights", w)):
        arr = np.asarray(arr)
        if arr.ndim != 2:
            raise LayerError(f"{name} must be a 2-D float array, not {arr.ndim}-D "
                             f"(shape {arr.shape})")
        out.append(float_words(config.dtype, name, arr, error=LayerError))
    x, w = out
    return x, np.where((w & 0x7FFF) == 0, 0, w)


def check_layer(config: Config, x: np.ndarray, w: np.ndarray) -> None:
    """Check a layer as :func:`compile_layer` does before compiling it (shapes, values, sizes
    against the configuration; integer arrays, or a float format's words).

    Raises
    ------
    LayerError
        As :func:`compile_layer`.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if config.is_float:
        x, w = layer_words(config, x, w)
    _check_inputs(config, x, w)


def _check_inputs(config: Config, x: np.ndarray, w: np.ndarray) -> None:
    for name, arr in (("activations", x), ("weights", w)):
        if arr.ndim != 2:
            raise LayerError(f"{name} must be a 2-D integer array, not {arr.ndim}-D "
                             f"(shape {arr.shape})")
        if config.is_float:  # words: layer_words checked the values
            continue
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


def _reply_route(config: Config, x: int, y, exit_: Port):
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
    the outputs of group ``g`` (longest first); pass ``p`` takes slots ``p * acc_depth``
    onwards of every group (:meth:`parts`). ``streams[p]`` is pass ``p``'s MAC flits (port and
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

    def parts(self, p: int) -> list[np.ndarray]:
        """The outputs of every group in pass ``p`` (slot ``s`` of group ``g``:
        ``parts(p)[g][s]``)."""
        A = self.config.acc_depth
        return [m[p * A:(p + 1) * A] for m in self.groups]

    def ports(self, p: int) -> np.ndarray:
        """The west port of every output of pass ``p`` (indexed by output; -1 for the
        outputs of other passes): longest first to the least loaded port, as the stream of
        pass ``p`` deals them."""
        parts = self.parts(p)
        members = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        order = self.longest[np.isin(self.longest, members)]
        port = _lpt(self.nnz_row, order, self.config.rows, by_count=False)
        out = np.full(self.I, -1, dtype=np.int64)
        out[order] = port[order]
        return out


def plan_layer(config: Config, w: np.ndarray, *, dense: bool = False,
               streams: bool = True) -> LayerPlan:
    """Outputs to groups (longest first, LPT), to accumulator slots and passes; each pass's
    MAC flits (:func:`compile_layer`). ``dense``: every weight, zeros included; ``streams =
    False``: without the MAC flits (``streams`` is empty; for a model that needs only the
    assignment, :meth:`LayerPlan.ports`)."""
    I, J = w.shape
    A = config.acc_depth
    K = _chunks(config, J)
    chunk = -(-J // K) if J else 1
    G = config.cols // K
    nnz_row = np.full(I, J, dtype=np.int64) if dense else np.count_nonzero(w, axis=1)
    longest = np.lexsort((np.arange(I), -nnz_row))
    group = _lpt(nnz_row, longest, G, by_count=True)
    groups = [longest[group[longest] == g] for g in range(G)]
    passes = max(1, -(-max((len(m) for m in groups), default=0) // A))
    flits = [_stream(config, w, nnz_row, longest, [m[p * A:(p + 1) * A] for m in groups],
                     K=K, G=G, chunk=chunk, dense=dense) for p in range(passes)] if streams \
        else []
    return LayerPlan(config, I, J, K, chunk, G, groups, passes, flits,
                     int(nnz_row.sum()) if not dense else int(np.count_nonzero(w)),
                     nnz_row, longest)


def reply_route(config: Config, rows: int) -> np.ndarray:
    """The data field of a READ whose reply goes to the host at the west port of each row."""
    return _reply_route(config, 0, np.arange(rows), Port.WEST)


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
    _check_inputs(config, x, w)
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


def _stream(config: Config, w, nnz_row, longest, parts, *, K, G, chunk, dense):
    """The MAC flits of one pass: ``(port, fields)``.

    Each output's weights go through one port in ascending j (per chunk): flits from one port
    to one column keep their order, so every accumulator sees its MACs in order (the
    saturating mode needs that). Outputs are dealt to the ports longest-first, and each port
    interleaves its outputs so consecutive flits go to different columns: flit ``n`` of every
    output of the port, then flit ``n + 1``. With K > 1 an output has one accumulator per
    chunk, each fed in ascending j; port q takes the chunks in the order q, q + 1, ...
    (mod K), so that the ports do not all feed the same column block at the same time.
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
    port = _lpt(nnz_row, order, R, by_count=False).astype(np.int32)
    # position of each output in its port's list (the order it joined the port)
    rank = np.zeros(I, dtype=np.int64)
    rank[order] = _rank_within(port[order])
    # every MAC of the pass, by output then input: (output i, input j), i ascending
    rows = np.sort(members)
    ii, jj = _macs(w, rows, dense=dense)
    # n: the flit's position in its output's queue (ascending (turn, j), where the chunk
    # order of port q is q, q + 1, ... (mod K)): flits of one output are contiguous here, in
    # ascending j, so chunk by chunk
    start = np.searchsorted(ii, rows)  # the first flit of each member output
    count = np.diff(np.r_[start, len(ii)])
    if K == 1:
        n = np.arange(len(ii), dtype=np.int32) - np.repeat(start.astype(np.int32), count)
    else:
        n = _positions_by_turn(ii, jj // chunk, rows, start, port[rows], K)
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


def _positions_by_turn(ii, kk, rows, start, ports, K):
    """n for K > 1: a flit's position in its output's queue, the output's chunks taken in
    the order q, q + 1, ... (mod K) of its port q, each in ascending j."""
    # flits per (output, chunk); the output's flits are in ascending j, so chunk by chunk
    m = len(rows)
    out_index = np.repeat(np.arange(m), np.diff(np.r_[start, len(ii)]))
    per = np.bincount(out_index * K + kk, minlength=m * K).reshape(m, K)
    block_start = np.cumsum(per, axis=1) - per          # where chunk k starts, j order
    turn_of = (np.arange(K)[None, :] - ports[:, None] % K) % K  # turn of chunk k
    # the queue takes chunks by turn: offset of chunk k = flits of the chunks of lower turn
    by_turn = np.take_along_axis(per, (turn_of.argsort(axis=1)), axis=1)
    offset_by_turn = np.cumsum(by_turn, axis=1) - by_turn
    offset = np.take_along_axis(offset_by_turn, turn_of, axis=1)
    within = np.arange(len(ii)) - start[out_index] - block_start[out_index, kk]
    return offset[out_index, kk] + within


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
                           data=_reply_route(config, g, y, Port.LOCAL))
                reduce.add(y, 1, x0=c, x1=c, y0=y, y1=y, op=Opcode.READ_ACC.value, addr_b=c,
                           data=to_host[y])
                reduce.reply(y, 0, c)
    return reduce.phase("reduce")
