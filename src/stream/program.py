"""The containers of a compiled layer and their file format.

A :class:`LayerProgram` is a layer's phases in the order a driver plays them; a :class:`Phase`
holds its flits as a column store (one array per flit field) with the counts and replies that
end it; a :class:`PhaseBuilder` collects blocks of flits and expected replies into a phase.
:func:`save_program` and :func:`load_program` write and read a program as ``.npz``.
:class:`LayerError` is the error of a layer that cannot run on a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..config import Config
from ..errors import InputError
from ..hdl.core.ops import OPS, codes
from ..hdl.flit import Opcode, flit_layout, leaf_names, pack_columns

__all__ = ["LayerError", "LayerProgram", "Phase", "PhaseBuilder", "load_program", "save_program"]


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
        sizes = [len(p) for p, _ in self.blocks]
        for name in _LEAVES:
            leaf = name.split(".")[1]
            values = [f.get(leaf, 0) for _, f in self.blocks]
            if all(np.ndim(v) == 0 for v in values):  # scalars: one repeat for the phase
                columns[name] = np.repeat(np.asarray(values, np.int64), sizes)
                continue
            columns[name] = cat([np.broadcast_to(np.asarray(v, np.int64), (n,))
                                 for v, n in zip(values, sizes, strict=True)])
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

    @property
    def replies(self) -> int:
        """Flits the host gets back by the west edge in all (fences, read-back)."""
        return sum(p.expected_replies for p in self.phases)


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
