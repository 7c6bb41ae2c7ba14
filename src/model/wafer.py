"""A GPT's training step at wafer scale, predicted (issue 20; ``docs/wafer.md``).

The step is the one ``docs/training.md`` builds for chains of layers, applied to a GPT of the
model zoo (:mod:`.zoo`) on an ``R x C`` array of float tiles: per batch group of ``R`` token
rows (whole sequences side by side, one position per row), the weights stream in for the
forward pass and again for the backward pass, the GRAD chains make the weight gradients and
stream them out of the south edge, and the parameter store (outside the fabric) adds the
groups' partial sums and runs the optimizer. Nothing of the weights stays on the fabric;
what stays is each token's activations, in its row's tiles.

How each phase is predicted (``Phase.method``):

- ``"plan"``: the performance model's analytic level on the compiler's own plan of the
  layer (:func:`~wafertile.stream.plan_layer` on the dense shape,
  :func:`~wafertile.model.layer.dense_stream` for the MAC streams; the zeroing, reduction,
  hand-off, LayerNorm (forward and derivative) and read phases built by the compiler's
  functions for one row and
  predicted by :func:`~wafertile.model.predict.predict_phase`: their rows run alike). The
  same functions ``wafertile run --fidelity model`` uses at any size;
- ``"closed form"``: a GRAD phase, ``max(ceil(n / ports), ceil(n / C))`` slots plus the
  distance to the farthest column and the chain down the column (checked against the
  analytic level's :func:`~wafertile.model.phases.grad_cycles` in ``tests/test_wafer.py``);
- ``"estimate"``: what the RTL does not build yet, or builds with phases too large to
  compile at wafer size: the attention's phases (the costs of ``docs/attention.md``, "What
  it costs", as port and tile bounds), the residual adds, and the attention's backward
  pass, which the RTL does not have yet (written in ``docs/wafer.md`` as multiples of the
  forward phases);
- ``"plan (event level)"``: GELU's derivative (the training compiler's rounds for one row,
  ``docs/training.md``), played by the event level once per form of round.

Everything is per batch group (every group alike), times the groups of a step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from functools import cache
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..config import Config, ConfigError
from ..errors import InputError
from ..formats import fp32_fields
from ..hdl.core import nonlinear
from ..hdl.flit import Opcode
from ..network.compiler import handoff_phases, output_places
from ..stream import (
    PhaseBuilder,
    add_activations,
    add_zero,
    handoff_window,
    plan_layer,
    read_phase,
    reduce_phases,
)
from ..stream.attention import AttentionLayout
from ..stream.rows import (
    gelu_back_phases,
    gelu_back_scratch,
    layernorm_back_phases,
    layernorm_phases,
    slot_addresses,
    softmax_window,
)
from .energy import ENERGY, EnergyTable
from .events import energy_events, grad_events, stream_events
from .layer import dense_stream
from .predict import predict_phase, timing_key
from .stream import stream_cycles
from .timing import Timing
from .zoo import GptShape

__all__ = ["BATCH_TOKENS", "DEFAULTS", "KINDS", "Fabric", "GroupBuilder", "MemoryPlan",
           "WaferError", "WaferStep", "attention_grad_phases", "attention_phases",
           "attention_words", "grad_phase_cycles", "memory_plan", "plan_at", "predict_training",
           "resident_bytes_per_tile", "resolve"]

#: Tokens per step the default batch reaches at least (GPT-3 XL's batch, Brown et al. 2020).
BATCH_TOKENS = 1 << 20

#: The defaults of everything but the array's size (docs/wafer.md says where each is from).
DEFAULTS = {"dtype": "bf16", "sram_kib": 48.0, "clock_mhz": 1000.0, "stream_gbps": 1200.0}

_POW2 = [1 << k for k in range(16, 3, -1)]  # chunk sizes (act_depth) tried, largest first


class WaferError(InputError):
    """A wafer-scale prediction that cannot be made as asked (one line, exit status 2)."""


@dataclass(frozen=True)
class Fabric:
    """The array the prediction is for.

    Attributes
    ----------
    rows, cols : int
    dtype : str
        ``"bf16"`` or ``"fp16"`` (the float tiles; FP32 accumulators).
    sram_kib : float
        Each tile's SRAM, activations and accumulators together (KiB).
    clock_mhz : float
    stream_gbps : float
        The bandwidth between the parameter store and the fabric, each way (Gb/s).
    router_arch : str
        The routers (``Config.router_arch``).
    """

    rows: int
    cols: int
    dtype: str = DEFAULTS["dtype"]
    sram_kib: float = DEFAULTS["sram_kib"]
    clock_mhz: float = DEFAULTS["clock_mhz"]
    stream_gbps: float = DEFAULTS["stream_gbps"]
    router_arch: str = "compact"

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if type(value) is not int or value < 2:
                raise WaferError(f"{name} must be an integer >= 2 for a training step (GRAD "
                                 f"chains enter below row 0), not {value!r}")
        if self.dtype not in ("bf16", "fp16"):
            raise WaferError(f"a GPT trains on float tiles: dtype must be 'bf16' or 'fp16', "
                             f"not {self.dtype!r}")
        for name in ("sram_kib", "clock_mhz", "stream_gbps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value > 0):
                raise WaferError(f"--{name.replace('_', '-')} must be a number > 0, not "
                                 f"{value!r}")

    @classmethod
    def given(cls, rows: int, cols: int, **values: Any) -> Fabric:
        """The fabric with the values given (None: the default of :data:`DEFAULTS`)."""
        return cls(rows, cols, **{k: v for k, v in values.items() if v is not None})

    @property
    def sram_bytes(self) -> int:
        return int(self.sram_kib * 1024)

    @property
    def tiles(self) -> int:
        return self.rows * self.cols

    def config(self, act_depth: int = 1024, acc_depth: int = 1024, *, rows: int | None = None
               ) -> Config:
        """The tiles' configuration; with ``rows``, of a strip of that many rows (a row
        phase's model: its rows run alike), with the nonlinear unit. The whole array's has
        none: a FINISH's 32-bit data field cannot address a wafer-size array's rows with it
        (``docs/wafer.md``, "What the RTL would need")."""
        return Config(rows=rows or self.rows, cols=self.cols, dtype=self.dtype,
                      act_depth=act_depth, acc_depth=acc_depth,
                      router_arch=self.router_arch, nonlinear=rows is not None)


def _chunk(n: int, A: int) -> int:
    """The words of a vector of ``n`` a tile holds when it is split into chunks of at most
    ``A`` (the compiler's ``K = ceil(n / A)`` chunks of ``ceil(n / K)``)."""
    return -(-n // -(-n // A))


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _layers(shape: GptShape) -> list[tuple[str, int, int]]:
    """A block's streamed layers: (name, outputs I, inputs J)."""
    d, f = shape.d_model, shape.d_ff
    return [("qkv", 3 * d, d), ("proj", d, d), ("fc1", f, d), ("fc2", d, f)]


def _block_vectors(shape: GptShape) -> list[int]:
    """The vectors a token keeps per block from the forward pass to the backward pass (their
    lengths): the LayerNorms' inputs and outputs, the queries, keys and values, the
    attention's output, the MLP's hidden layer before and after GELU (docs/wafer.md)."""
    d, f = shape.d_model, shape.d_ff
    return [d] * (4 * shape.norms) + [d] * 4 + [f, f]


@dataclass(frozen=True)
class MemoryPlan:
    """Where a token's numbers live in its row's tiles (``docs/wafer.md``, "Memory").

    Attributes
    ----------
    chunk : int
        The most words of one vector a tile holds (``act_depth``): a vector of ``n`` is split
        into ``ceil(n / chunk)`` chunks over blocks of columns.
    acc_depth : int
        Accumulators per tile (FP32).
    recompute : bool
        Only each block's input is kept; the backward pass runs the block's forward again.
    stored_words, transient_words : int
        Activation words per tile kept across the step, and held while one layer runs.
    fits : bool
        Everything within the tile's SRAM.
    """

    chunk: int
    acc_depth: int
    recompute: bool
    stored_words: int
    transient_words: int
    word_bytes: int
    sram_bytes: int

    @property
    def act_bytes(self) -> int:
        return (self.stored_words + self.transient_words) * self.word_bytes

    @property
    def acc_bytes(self) -> int:
        return 4 * self.acc_depth

    @property
    def bytes_per_tile(self) -> int:
        return self.act_bytes + self.acc_bytes

    @property
    def fits(self) -> bool:
        return self.bytes_per_tile <= self.sram_bytes


@cache
def _attention_needs(heads: int, d_head: int, cols: int, seq: int) -> tuple[int, int]:
    """``(activations, accumulators)`` a head's tile needs for a training step's attention
    on a row of ``cols`` tiles (:class:`~wafertile.stream.attention.AttentionLayout`, which
    depends on the columns only): the larger of its forward pass's and its derivative's."""
    lay = AttentionLayout(Config(rows=1, cols=cols), seq, heads, d_head, do=0)
    return max(lay.activations, lay.grad_activations), lay.grad_accumulators


def _attention_accumulators(shape: GptShape, fabric: Fabric, seq: int) -> int:
    """A head's tile's accumulators for the attention's derivative (docs/attention.md, "The
    derivative": ``top + 3T + 1 + E + 2D`` with ``top = 2D + E``, more than the forward
    pass's ``2D + 2E + T + 1``; :attr:`~wafertile.stream.attention.AttentionLayout.
    grad_accumulators`) and the LayerNorm's three."""
    return _attention_needs(shape.heads, shape.d_head, fabric.cols, seq)[1] + 3


def attention_words(shape: GptShape, fabric: Fabric, seq: int) -> int:
    """The activation words a head's tile holds for a block's attention, from its forward
    pass to the end of its derivative (a training step's region ``AT_l``: docs/training.md,
    "Attention layers"; :class:`~wafertile.stream.attention.AttentionLayout`): the larger
    of the forward's (its queries, and the values of every earlier position of its column:
    ``1 + D + T E``) and the derivative's (``2 + 3D + 3T + E T + E``: what the forward pass
    keeps for it, its probabilities, those of its column's values' heads, its own keys,
    queries and values, over the forward's once they are spent; then ``c1``, ``c2`` and
    ``fmt(dS)`` twice); :class:`~wafertile.stream.attention.AttentionLayout`'s
    ``activations`` and ``grad_activations``."""
    return _attention_needs(shape.heads, shape.d_head, fabric.cols, seq)[0]


def plan_at(shape: GptShape, fabric: Fabric, seq: int, A: int, recompute: bool
             ) -> MemoryPlan | None:
    """The memory plan with chunks of ``A`` (None if a layer would need more column blocks
    than a row has, or if a row's strip with the nonlinear unit cannot address chunks of
    ``A``: a FINISH's data field, :meth:`Fabric.config`)."""
    C = fabric.cols
    d = shape.d_model
    layers = [*_layers(shape), ("head", shape.vocab, d)]
    layers += [(name, J, I) for name, I, J in layers]  # the backward pass's transposes
    if any(-(-J // A) > C for _, _, J in layers):
        return None
    block = sum(_chunk(n, A) for n in _block_vectors(shape))
    attention = attention_words(shape, fabric, seq)  # a head's tile's, per block
    if recompute:  # each block's input kept; one block's vectors while it runs again
        stored = shape.layers * _chunk(d, A) + 2 * _chunk(d, A)
        transient = block + attention
    else:
        stored = shape.layers * (block + attention) + 2 * _chunk(d, A)
        transient = 0
    # the gradient flowing back: a layer's output gradient and its input gradient
    widest = max(shape.d_ff, shape.vocab, 3 * d)
    transient += 2 * _chunk(widest, A)
    # accumulators: the attention's and the LayerNorm's, at least; one pass for the widest
    # layer if it fits, fewer (more passes) if not
    # a LayerNorm needs its d outputs in one pass (and three more accumulators)
    g_d = max(1, C // -(-d // A))
    need = _pow2_at_least(max(_attention_accumulators(shape, fabric, seq), -(-d // g_d) + 3))
    want = max(need, max(_pow2_at_least(-(-I // max(1, C // -(-J // A)))) for _, I, J
                         in layers))
    word = 2
    free = fabric.sram_bytes - (stored + transient) * word
    acc = want
    while acc > need and 4 * acc > free:
        acc //= 2
    try:  # a row phase's strip must be a configuration the RTL has (a FINISH's data field)
        fabric.config(act_depth=A, acc_depth=acc, rows=1)
    except ConfigError:
        return None
    return MemoryPlan(A, acc, recompute, stored, transient, word, fabric.sram_bytes)


def memory_plan(shape: GptShape, fabric: Fabric, seq: int, recompute: bool | None = None
                ) -> MemoryPlan:
    """The plan with the longest chunks that fits (``recompute`` None: without recomputation
    if any chunk length fits, with it otherwise); if none fits, the one that needs the least
    memory (:attr:`MemoryPlan.fits` false)."""
    options = [False, True] if recompute is None else [recompute]
    smallest = None
    for rc in options:
        for A in _POW2:
            plan = plan_at(shape, fabric, seq, A, rc)
            if plan is None:
                continue
            if plan.fits:
                return plan
            if smallest is None or plan.bytes_per_tile < smallest.bytes_per_tile:
                smallest = plan
    if smallest is None:
        raise WaferError(f"{shape.name}: no chunk length from 16 words up fits: either a "
                         f"layer of {max(shape.d_ff, shape.vocab)} inputs needs more column "
                         f"blocks than the {fabric.cols} columns of a row, or a FINISH's "
                         f"data field cannot address a row of {fabric.cols} tiles")
    return smallest


def resident_bytes_per_tile(shape: GptShape, fabric: Fabric) -> float:
    """The SRAM a tile would need for the weights alone if they stayed on the fabric (a
    weights-resident, layer-pipelined mapping: every parameter in the format, spread
    evenly); the report adds the activations and accumulators of the step's plan."""
    return shape.parameters()["total"] * 2 / fabric.tiles


@dataclass
class Phase:
    """One phase of a layer, per batch group."""

    layer: str
    kind: str
    cycles: int
    method: str
    flits_in: int = 0
    flits_out: int = 0
    macs: int = 0
    hops: float = 0.0
    sram_bits: int = 0


@dataclass
class WaferStep:
    """The predicted training step (``as_json`` for ``--json``)."""

    shape: GptShape
    fabric: Fabric
    seq: int
    batch: int
    groups: int
    memory: MemoryPlan
    memory_without_recompute: MemoryPlan
    phases: list[Phase]
    flit_bits: int
    energy: EnergyTable
    seconds: float = 0.0
    advice: list[str] = field(default_factory=list)

    # --- per group -------------------------------------------------------------------
    @property
    def group_cycles(self) -> int:
        return sum(p.cycles * _count(self, p) for p in self.phases)

    def _sum(self, name: str) -> float:
        return sum(getattr(p, name) * _count(self, p) for p in self.phases)

    # --- per step --------------------------------------------------------------------
    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def step_cycles(self) -> int:
        return self.groups * self.group_cycles

    @property
    def step_seconds(self) -> float:
        """Each layer the longer of its fabric time and its stream time, summed."""
        return sum(r["seconds"] * r["count"] for r in self.layer_table())

    def layer_table(self) -> list[dict[str, Any]]:
        """Per layer of the model (a block's layers once, with ``count`` = blocks), the
        cycles per kind of phase, the time, the bytes across the edge and what bounds it."""
        f = self.fabric
        out: dict[str, dict[str, Any]] = {}
        for p in self.phases:
            row = out.setdefault(p.layer, {"layer": p.layer, "count": _count(self, p),
                                           **dict.fromkeys(KINDS, 0), "flits_in": 0,
                                           "flits_out": 0, "methods": set()})
            row[p.kind] += p.cycles
            row["flits_in"] += p.flits_in
            row["flits_out"] += p.flits_out
            row["methods"].add(p.method)
        rows = []
        for row in out.values():
            cycles = sum(row[k] for k in KINDS)
            compute = self.groups * cycles / (f.clock_mhz * 1e6)
            bytes_in = self.groups * row["flits_in"] * self.flit_bits / 8
            bytes_out = self.groups * row["flits_out"] * self.flit_bits / 8
            stream = max(bytes_in, bytes_out) * 8 / (f.stream_gbps * 1e9)
            rows.append({**{k: v for k, v in row.items() if k != "methods"},
                         "methods": sorted(row["methods"]), "cycles": cycles,
                         "compute_seconds": compute, "stream_seconds": stream,
                         "seconds": max(compute, stream),
                         "bound": "stream" if stream > compute else "compute",
                         "required_stream_gbps": max(bytes_in, bytes_out) * 8 / 1e9
                         / compute if compute else 0.0,
                         "stream_bytes_in": bytes_in, "stream_bytes_out": bytes_out})
        return rows

    def as_json(self) -> dict[str, Any]:
        f, s, e = self.fabric, self.shape, self.energy
        table = self.layer_table()
        step_seconds = self.step_seconds
        compute_seconds = sum(r["compute_seconds"] * r["count"] for r in table)
        bytes_in = sum(r["stream_bytes_in"] * r["count"] for r in table)
        bytes_out = sum(r["stream_bytes_out"] * r["count"] for r in table)
        G = self.groups
        macs = G * self._sum("macs")
        flits_in, flits_out = G * self._sum("flits_in"), G * self._sum("flits_out")
        parts = {
            "macs": macs * e.mac_pj,
            "sram": G * self._sum("sram_bits") * e.sram_bit_pj * e.scale,
            "network": G * self._sum("hops") * self.flit_bits * e.hop_bit_pj,
            "stream": (flits_in + flits_out) * self.flit_bits * e.offchip_bit_pj,
        }
        energy_j = sum(parts.values()) * 1e-12
        kinds = {k: 0 for k in KINDS}
        for p in self.phases:
            kinds[p.kind] += G * p.cycles * _count(self, p)
        m, m0 = self.memory, self.memory_without_recompute
        peak = f.tiles * f.clock_mhz * 1e6
        return {
            "model": s.name, "parameters": s.parameters()["total"],
            "rows": f.rows, "cols": f.cols, "dtype": f.dtype, "sram_kib": f.sram_kib,
            "clock_mhz": f.clock_mhz, "stream_gbps": f.stream_gbps,
            "router_arch": f.router_arch,
            "seq": self.seq, "batch": self.batch, "tokens": self.tokens,
            "batch_groups": G, "sequences_per_group": f.rows // self.seq,
            "step_seconds": step_seconds, "compute_seconds": compute_seconds,
            "step_cycles": self.step_cycles, "tokens_per_s": self.tokens / step_seconds,
            "phase_cycles": kinds,
            "stream_bytes_in": bytes_in, "stream_bytes_out": bytes_out,
            "weight_bytes": s.parameters()["total"] * 2,
            "required_stream_gbps": max(r["required_stream_gbps"] for r in table),
            "average_stream_gbps": max(bytes_in, bytes_out) * 8 / 1e9 / step_seconds,
            "bound": {r["layer"]: r["bound"] for r in table},
            "layers": table,
            "act_bytes_per_tile": m.act_bytes, "acc_bytes_per_tile": m.acc_bytes,
            "bytes_per_tile": m.bytes_per_tile, "sram_bytes": m.sram_bytes,
            "fits": m.fits, "recompute": m.recompute, "chunk": m.chunk,
            "acc_depth": m.acc_depth,
            "fits_without_recompute": m0.fits,
            "bytes_per_tile_without_recompute": m0.bytes_per_tile,
            "advice": self.advice,
            "resident_bytes_per_tile": resident_bytes_per_tile(s, f) + m.bytes_per_tile,
            "resident_fits": resident_bytes_per_tile(s, f) + m.bytes_per_tile <= m.sram_bytes,
            "macs": macs, "mac_utilization": macs / (peak * compute_seconds),
            "peak_fraction": macs / (peak * step_seconds),
            "host_flits_in": flits_in, "host_flits_out": flits_out,
            "flit_bits": self.flit_bits,
            "energy_j": energy_j, "energy_parts_j": {k: v * 1e-12 for k, v in parts.items()},
            "power_w": energy_j / step_seconds,
            "power_compute_bound_w": energy_j / compute_seconds, "energy_table": e.as_dict(),
            "methods": sorted({p.method for p in self.phases}),
            "predict_seconds": round(self.seconds, 3),
        }


#: The kinds of phase a layer's cycles are reported by.
KINDS = ("forward", "backward_data", "reduce", "weight_gradients", "attention", "nonlinear",
         "handoffs", "edge")


def _count(step: WaferStep, p: Phase) -> int:
    """How many times a phase runs per group: a block's phases once per block."""
    return step.shape.layers if p.layer in BLOCK_LAYERS else 1


#: The layers of a block (their phases run once per block).
BLOCK_LAYERS = ("qkv", "attention", "proj", "fc1", "fc2", "norms", "residual")


# --------------------------------------------------------------------------------------
# the phases


class GroupBuilder:
    """Builds one batch group's phases (per block and for the model's ends)."""

    def __init__(self, shape: GptShape, fabric: Fabric, memory: MemoryPlan, seq: int):
        self.shape, self.fabric, self.memory, self.seq = shape, fabric, memory, seq
        self.config = fabric.config(act_depth=memory.chunk, acc_depth=memory.acc_depth)
        self.timing = Timing(self.config)
        self.row_config = fabric.config(act_depth=memory.chunk, acc_depth=memory.acc_depth,
                                        rows=1)
        self.row_timing = Timing(self.row_config)
        self.rows = (fabric.rows // seq) * seq  # the rows that hold positions
        self.phases: list[Phase] = []
        self._plans: dict[tuple[int, int], Any] = {}
        self._events: dict[str, int] = {}  # event-level cycles by a phase's form
        self._done: dict[Any, list[Phase]] = {}  # phases predicted, to repeat
        #: a list to keep every one-row phase predicted in (None: not kept), for checks of
        #: the analytic level against the event level (benchmarks/wafer.py)
        self.kept: list | None = None

    # -- helpers ---------------------------------------------------------------------
    def plan(self, I: int, J: int, *, row: bool = False, spare: int = 0):
        """The compiler's plan of a dense ``I x J`` layer on the array, or (``row``) on
        one row of it (the same groups and passes: only the ports differ); ``spare``
        accumulators a tile keeps free (GELU's derivative's scratch)."""
        key = (I, J, row, spare)
        if key not in self._plans:
            w = np.broadcast_to(np.ones(1, np.int8), (I, J))
            self._plans[key] = plan_layer(self.row_config if row else self.config, w,
                                          dense=True, streams=False, spare=spare)
        return self._plans[key]

    def row_phase(self, phase, *, events: bool = False) -> tuple[int, str, int, int]:
        """A one-row phase's cycles (every row alike), method, flits in and replies, each
        for all rows. ``events``: by the event level, once per form of phase (its
        :func:`~wafertile.model.predict.timing_key` without addresses: the rounds of GELU's
        derivative differ only in their outputs' slots and kept addresses, which no timing
        of theirs reads)."""
        if self.kept is not None:
            self.kept.append(phase)
        if events:
            key = timing_key(self.row_config, phase, addresses=False)
            if key not in self._events:
                self._events[key] = predict_phase(self.row_timing, phase, detail="mesh")[0]
            n, method = self._events[key], "plan (event level)"
        else:  # a MAC stream's activations all nonzero (the prediction's assumption)
            ones = (np.ones((self.row_config.cols, self.row_config.act_depth), bool)
                    if phase.kind == "stream" else None)
            n, method = predict_phase(self.row_timing, phase, detail="analytic",
                                      nonzero=ones)[0], "plan"
        replies = int(np.count_nonzero(np.isin(phase.flits["payload.op"], _REPLIES)))
        return int(n), method, len(phase) * self.rows, replies * self.rows

    def add(self, layer: str, kind: str, cycles: int, method: str, **counts) -> None:
        self.phases.append(Phase(layer, kind, int(cycles), method, **counts))

    def row_phases(self, layer: str, kind: str, phases, *, events: bool = False) -> None:
        for ph in phases:
            c, m, fin, fout = self.row_phase(ph, events=events)
            # the events of one row, counted flit by flit (model.events), every row alike
            ev = energy_events(self.row_config, ph).times(self.rows)
            self.add(layer, kind, c, m, flits_in=fin, flits_out=fout, macs=ev.macs,
                     hops=ev.hops, sram_bits=ev.sram_bits)

    # -- a linear layer ----------------------------------------------------------------
    def linear(self, layer: str, I: int, J: int, kind: str, *, handoff: str | None,
               gelu: bool = False, read: bool = False) -> list[Phase]:
        """Zeroing, MAC stream, reduction and hand-off (or read) of a dense layer: forward
        (``handoff = "finish"``; with ``gelu``, first the hand-off of its input ``U``, kept
        for the derivative) or the backward data pass (``"back"``: FINISH_BACK;
        ``"gelu_back"``: GELU's derivative into the accumulators and their FINISH, as the
        training compiler makes them, docs/training.md "GELU layers"); the phases added.
        The same layer again (a recomputed forward) takes the phases predicted before."""
        key = ("linear", I, J, kind, handoff, gelu, read)
        if key in self._done:
            return self._replay(layer, key)
        first = len(self.phases)
        # GELU's derivative takes scratch accumulators beside each pass's outputs
        spare = gelu_back_scratch(self.config) if handoff == "gelu_back" else 0
        plan, row_plan = self.plan(I, J, spare=spare), self.plan(I, J, row=True, spare=spare)
        R, C = self.rows, self.fabric.cols
        nxt = SimpleNamespace(chunk=_chunk(I, self.memory.chunk),
                              G=C // -(-I // self.memory.chunk))
        op = Opcode.FINISH_BACK if handoff == "back" else Opcode.FINISH
        layer_ns = SimpleNamespace(relu=False, gelu=gelu)
        keep = SimpleNamespace(relu=False, gelu=False)
        for p in range(plan.passes):
            row = PhaseBuilder()
            add_zero(row, row_plan, p, 1)
            self.row_phases(layer, kind, [row.phase("load")])
            cycles, how = dense_stream(self.timing, plan, p, R)
            # chunk k of group g's outputs goes down column k * G + g
            outputs = np.array([len(plan.parts(p)[g]) for g in range(plan.G)])
            columns = np.arange(plan.K)[:, None] * plan.G + np.arange(plan.G)[None, :]
            n = int(outputs.sum()) * J
            ev = stream_events(self.config, columns,
                               plan.chunk_sizes[:, None] * outputs[None, :], R)
            self.add(layer, kind, cycles, _STREAM_METHODS.get(how, "plan (bound)"),
                     flits_in=n, macs=ev.macs, hops=ev.hops, sram_bits=ev.sram_bits)
            if plan.K > 1:
                self.row_phases(layer, "reduce", reduce_phases(row_plan, p, 1))
            if read:
                self.row_phases(layer, "edge", [read_phase(row_plan, p, 1)])
            elif handoff == "gelu_back":  # the analytic level is 14-47% low on these
                self.row_phases(layer, "nonlinear", gelu_back_phases(row_plan, p, 1, 0),
                                events=True)
                self.row_phases(layer, "handoffs", handoff_phases(
                    self.row_config, row_plan, keep, p, 1, nxt, 0))
            elif handoff is not None:
                if gelu:  # U = half(Z), kept for GELU's derivative
                    self.row_phases(layer, "handoffs", handoff_phases(
                        self.row_config, row_plan, keep, p, 1, nxt, 0))
                self.row_phases(layer, "nonlinear" if gelu else "handoffs",
                                handoff_phases(self.row_config, row_plan, layer_ns, p, 1, nxt,
                                               0, op=op))
        self._done[key] = self.phases[first:]
        return self.phases[first:]

    def _replay(self, layer: str, key: tuple) -> list[Phase]:
        made = [replace(p, layer=layer) for p in self._done[key]]
        self.phases += made
        return made

    def grad(self, layer: str, I: int, J: int, bias: bool) -> None:
        """The GRAD phase of a layer's weights (and biases): closed form."""
        n = I * J + (I if bias else 0)
        R, C = self.rows, self.fabric.cols
        ev = grad_events(self.config, n, R)
        self.add(layer, "weight_gradients", grad_phase_cycles(self.timing, n, R, C),
                 "closed form", flits_in=n, flits_out=n, macs=ev.macs, hops=ev.hops,
                 sram_bits=ev.sram_bits)

    def layernorm_phases(self, backward: bool) -> list:
        """The compiler's phases of a LayerNorm of d outputs on one row, or (``backward``)
        of its derivative, each tile's normalized outputs at activations 4 onwards."""
        d = self.shape.d_model
        plan = self.plan(d, d, row=True)
        gamma = np.zeros(d, np.int64)
        if backward:
            return layernorm_back_phases(plan, 0, 1, gamma, xh=slot_addresses(plan, 4), ra=3)
        return layernorm_phases(plan, 0, 1, gamma, gamma, int(fp32_fields(np.float32(1e-5))))

    def layernorm(self, layer: str, *, backward: bool = False) -> None:
        """A LayerNorm of d outputs, or (``backward``) its derivative: the compiler's phases
        for one row (``layernorm_phases``, ``layernorm_back_phases``), each tile's normalized
        outputs at activations 4 onwards (docs/wafer.md). Where a tile's outputs do not fit
        its activations that way, the derivative cannot keep them where it needs them: it is
        estimated as twice the forward phases."""
        d = self.shape.d_model
        plan = self.plan(d, d, row=True)
        if backward and 4 + max(len(part) for part in plan.parts(0)) > self.row_config.act_depth:
            first = len(self.phases)
            for _ in range(2):
                self.layernorm(layer)
            for ph in self.phases[first:]:
                ph.method = "estimate"
            return
        key = ("layernorm", backward)
        if key not in self._done:
            first = len(self.phases)
            self.row_phases(layer, "nonlinear", self.layernorm_phases(backward))
            self._done[key] = self.phases[first:]
            del self.phases[first:]
        self._replay(layer, key)

    def residual(self, kind: str) -> None:
        """A residual add: one MAC of weight 1 per output of the d-wide layer, multicast
        down its column, the outputs dealt over the ports (the compiler's residual phase,
        predicted by the analytic stream)."""
        d, R = self.shape.d_model, self.rows
        plan = self.plan(d, d)
        column, _ = output_places(plan)
        est = stream_cycles(self.timing, np.arange(d) % R, column[np.argsort(column,
                                                                            kind="stable")],
                            0, R - 1)
        ev = stream_events(self.config, column, np.ones(d, np.int64), R)
        self.add("residual", kind, est.cycles, "plan", flits_in=d, macs=ev.macs, hops=ev.hops,
                 sram_bits=ev.sram_bits)

    def attention(self, backward: bool) -> None:
        """The attention's phases, estimated: the forward pass's (docs/attention.md, "The
        phases") and the words it keeps for the derivative, or the derivative's
        (docs/attention.md, "The derivative"; docs/wafer.md)."""
        phases = (attention_grad_phases if backward else attention_phases)(
            self.shape, self.fabric, self.seq, self.timing)
        n_seq = self.fabric.rows // self.seq
        for _, cycles, flits, macs in phases:
            self.add("attention", "attention", cycles, "estimate",
                     flits_in=int(flits * self.rows),
                     macs=macs * n_seq,
                     hops=flits * self.rows * (self.fabric.cols / 2 + self.seq / 2),
                     sram_bits=macs * n_seq * _MAC_BITS)


_REPLIES = np.array([Opcode.READ_ACC.value, Opcode.READ_ACT.value], np.int64)
#: how a dense stream was predicted (:func:`~wafertile.model.layer.dense_stream`) -> method
_STREAM_METHODS = {"exact": "plan", "lockstep": "plan (lockstep)"}
#: SRAM bits a MAC touches: its activation (16), its accumulator read and written (32 each).
_MAC_BITS = 16 + 32 + 32


def grad_phase_cycles(timing: Timing, n: int, rows: int, cols: int) -> int:
    """A GRAD phase of ``n`` GRADs dealt round-robin over the columns and over the ports of
    rows ``1 .. rows - 1`` (docs/training.md): the busier of a port and a column, one a slot,
    then the farthest column, the climb to row 0 and the chain down the column and out."""
    if n <= 0:
        return 1
    ports = max(1, rows - 1)
    busiest = max(-(-n // ports), -(-n // cols))
    h, a, o = timing.slot, timing.adapter, timing.out_stage
    last = (busiest - 1) * h + timing.to_core(min(n, cols) + rows - 1)
    return int(last + (rows - 1) * (o + 1 + h + a) + o + a + 2)


def attention_phases(shape: GptShape, fabric: Fabric, seq: int, timing: Timing
                     ) -> list[tuple[str, int, float, int]]:
    """The forward attention of one batch group, step by step (docs/attention.md, "The
    phases"): name, cycles (an estimate), the host's flits per row (the rows' mean) and the
    MACs per sequence.

    Each step is a sequence of rounds (at most ``handoff_window`` outputs per tile each, the
    compiler's :func:`~wafertile.stream.attention.attention_steps`), and each round costs
    the host flits of its busiest row (the last position's: the causal triangle gives it
    the most) or the work of its busiest tile, one flit a slot, plus what the round's end
    waits for: a hand-off round's last write ``x h + 6`` cycles after its last flit, a
    stream round's last MAC ``2 x h + 10``, a round that ends on fence replies ``2 x h +
    4``, where ``h`` is the slot and ``x`` the farthest column the round reaches (the
    heads' ``H`` columns for the queries, scores and softmax; the value columns for the
    values, whose writes also go ``T`` rows down). The softmax adds its units' cycles:
    ``w - 1`` maxima a round, ``T`` exponentials of ``exp + 4`` cycles, the reciprocal,
    ``w - 1`` products a round.
    Those end costs were measured on the event level of the compiled attention (16 x 16
    with 4 and 16 heads, 32 x 32 with 8); checked on the RTL's 8 x 4 and 8 x 8
    (``benchmarks/results-attention-cycles.json``) and on the event level of 24 x 24 and
    32 x 32 with 32 heads (``benchmarks/wafer.py``; the errors in docs/performance.md)."""
    T, H, D, C = seq, shape.heads, shape.d_head, fabric.cols
    d = shape.d_model
    E = -(-d // C)  # value features per column
    w = handoff_window(timing.config)
    h = timing.slot
    mean = (T + 1) / 2  # the mean row's causal length
    xh, xv = min(H, C), min(C, d)  # the heads' columns, the value columns

    def hand(x: int) -> int:  # a hand-off round: from its last flit to its last write
        return x * h + 6

    def trip(x: int) -> int:  # a round that ends on its fences' replies
        return 2 * x * h + 4

    exp, recip, mx, mul = (nonlinear.cycles(f, 2) for f in ("exp", "reciprocal", "max", "mul"))
    triangle = H * D * T * (T + 1) // 2
    # the softmax's rounds of w - 1 elements a tile (the last row's T), each with its fence
    sm = -(-T // max(1, w - 1))
    last = T - (sm - 1) * (w - 1)

    def rounds(count: int, unit: int) -> int:
        full = max(0, count - 1) * ((H * w) * h + trip(xh) + unit)
        return full + (H * (last + 1)) * h + trip(xh) + unit if count else 0

    softmax = (rounds(sm, (w - 1) * mx)                       # the maximum
               + 2 * H * h + hand(xh)                         # its FINISH to the tile itself
               + (H * T + H) * h + trip(xh)                   # the MACs of weight -1
               + T * (exp + 4) + trip(xh)                     # exp, and the sum's first round
               + rounds(sm - 1, 0)                            # the sum
               + 3 * H * h + recip + hand(xh)                 # the reciprocal
               + 3 * H * h + trip(xh)                         # its MUL operands
               + rounds(sm, (w - 1) * mul))                   # the scaling
    # the probabilities: head h's sends per probability, one per index of its value columns
    ks = _value_blocks(shape, C)
    n = -(-T * ks // w)  # each head's rounds (the last row's sends)
    active = n[None, :] > np.arange(int(n.max()))[:, None]
    ports = active.sum(axis=1) * w
    tiles = -(-(active * (w * D / ks)[None, :]).sum(axis=1) // C)
    vr = -(-E // w)
    return [
        # ReLU off, the score accumulators zeroed, then a FINISH per query feature to itself
        ("queries", (H * T + C + H * D) * h + -(-D // w) * hand(xh), d + H * mean + 1, 0),
        # each key feature as a MAC down its head's column: the last row's tile takes w a
        # round from each of the T rows
        ("scores", -(-D // w) * (max(H * w, T * w) * h + trip(xh) + 6), d, triangle),
        ("softmax", int(softmax), 8 * H * mean, H * T * (T + 1) // 2),
        # the outputs zeroed, then each value feature down its column to the later rows
        ("values", (C + C * E + C * min(E, w)) * h + (vr - 1) * max(C * w, T * w) * h
         + vr * ((xv + T) * h + 8), 2 * C * E + 4, 0),
        # each probability as a MAC to its head's value columns of its row
        ("outputs", int(((ports + tiles + C) * h + 1).sum()), mean * int(ks.sum()),
         triangle),
    ]


def _value_blocks(shape: GptShape, C: int) -> np.ndarray:
    """Per head, the indices of its value columns (1, or 2 where its features cross a
    multiple of ``C``; more when ``D > C``)."""
    first = np.arange(shape.heads) * shape.d_head
    return (first + shape.d_head - 1) // C - first // C + 1


def attention_grad_phases(shape: GptShape, fabric: Fabric, seq: int, timing: Timing
                          ) -> list[tuple[str, int, float, int]]:
    """The attention's derivative of one batch group and, first, the forward pass's keeping
    hand-offs, step by step (:data:`~wafertile.stream.attention.GRAD_STEPS` after
    ``"kept"``; docs/attention.md, "The derivative", docs/training.md, "Attention layers"):
    name, cycles (an estimate), the host's flits per row (the rows' mean) and the MACs per
    sequence, as :func:`attention_phases` gives the forward's.

    The forms follow the compiler's rounds (``w`` = ``handoff_window``, ``w'`` =
    ``softmax_window``, ``h`` the slot; ``x_v = min(C, d)`` the farthest value column):
    ``copies`` one phase of the last row's flits and a round trip across the row, exact;
    ``dp`` ``D`` fenced groups of ``1.02 T + 1.75 x_v + 1.17 H + 2.5`` slots; the softmax's
    derivative ``ceil(2T / w') + 2 ceil(T / w')`` rounds of ``H (w' + 1)`` flits and a fence
    over the heads' columns, two rounds of the ``H (T + 1)`` MACs of weight -1, two spreads
    and ``5 T``; ``ds`` ``ceil(2T / w)`` hand-off rounds of ``H w + 0.9 T + 5``; ``grads``
    a wavefront of ``T + r - 1`` rounds (``r = ceil((2D + E) / w)``, each row's own) of
    ``0.83 p + 0.9 T + 0.38 x_v + 7.8``, ``p = H w + (x_v - H) min(E, w)`` the flits of a
    row in its first round; ``kept`` ``ceil((T (1 + k) + 2D + E) / w)`` hand-off rounds
    of ``1.09 H w + 0.45 T E + 1.21 x_v - 0.8`` (``k`` the most value columns' indices of
    a head). The coefficients were fitted to the event level of the compiled phases on
    fourteen arrays from 8 x 8 to 32 x 32 (one and two sequences, 2 to 8 heads of 2 to 8,
    one to four value features a column) and checked on five others
    (``tests/test_wafer.py``; docs/wafer.md gives the errors)."""
    T, H, D, C = seq, shape.heads, shape.d_head, fabric.cols
    d = shape.d_model
    E = -(-d // C)
    w = handoff_window(timing.config)
    sw = softmax_window(timing.config)
    h = timing.slot
    mean = (T + 1) / 2
    xh, xv = min(H, C), min(C, d)
    tri = T * (T + 1) // 2  # a head's causal pairs

    def trip(x: int) -> float:
        return 2 * x * h + 4

    ks = int(_value_blocks(shape, C).max())
    kept = -(-(T * (1 + ks) + 2 * D + E) // w) * (1.09 * H * w + 0.45 * T * E + 1.21 * xv
                                                 - 0.8) * h
    copies = (2 * C + H * (3 * T + 2 * D) + 8 * H * D) * h + trip(C)
    dp = D * (1.02 * T + 1.75 * xv + 1.17 * H + 2.5) * h
    rounds = -(-2 * T // sw) + 2 * -(-T // sw)
    softmax = (rounds * (H * (sw + 1) * h + trip(xh) - 2) + 2 * (H * (T + 1) * h + trip(xh))
               + 2 * (2 * H * h + xh * h + 6) + 5 * T * h)
    ds = -(-2 * T // w) * (H * w + 0.9 * T + 5) * h
    r = -(-(2 * D + E) // w)
    port = H * w + max(0, xv - H) * min(E, w)  # a row's flits in its first round
    grads = (T + r - 1) * (0.83 * port + 0.9 * T + 0.38 * xv + 7.8) * h
    return [
        # each probability to its tile and to its key's row's value tiles; keys, queries,
        # values to their own tiles
        ("kept", int(kept), H * (mean * (1 + ks) + 2 * D) + d, 0),
        # ReLU off, the sums +0, p copied; K, Q, V and dO into their accumulators
        ("copies", int(copies), 2 * C + H * (3 * mean + 2 * D) + 8 * d,
         H * tri + 4 * d * T),
        # V[j, e] as the weights of dP's MACs, one group per feature
        ("dp", int(dp), H * D, H * D * tri),
        ("softmax", int(softmax), 8 * H * mean, 2 * H * tri),
        # fmt(dS) to the tile's activations and to the key row's
        ("ds", int(ds), 2 * H * mean, 0),
        # K, Q and dO as the weights of dQ's, dK's and dV's MACs, one group per row
        ("grads", int(grads), 3 * d, 3 * H * D * tri),
    ]


def resolve(shape: GptShape, fabric: Fabric, batch: int | None, seq: int | None
            ) -> tuple[int, int, int]:
    """The sequence length, the sequences per step and the batch groups of a request (the
    defaults of :func:`predict_training`), or a :class:`WaferError` naming what is wrong."""
    R, C = fabric.rows, fabric.cols
    if seq is None:
        seq = min(shape.context, R)
    if type(seq) is not int or seq < 1:
        raise WaferError(f"--seq must be an integer >= 1, not {seq!r}")
    if seq > shape.context:
        raise WaferError(f"--seq {seq} is longer than {shape.name}'s context of "
                         f"{shape.context} positions")
    if seq > R:
        raise WaferError(f"--seq {seq} needs {seq} rows: the fabric keeps one position of a "
                         f"sequence per row and a sequence in one batch group "
                         f"(docs/attention.md), and the array has {R} (use --seq <= {R} or "
                         f"more rows)")
    if shape.heads > C:
        raise WaferError(f"{shape.name} has {shape.heads} heads and the attention puts one "
                         f"per column: the array has {C} columns")
    per_group = R // seq
    if batch is None:
        batch = -(-BATCH_TOKENS // (per_group * seq)) * per_group
    if type(batch) is not int or batch < 1:
        raise WaferError(f"--batch must be an integer >= 1 (sequences per step), not "
                         f"{batch!r}")
    return seq, batch, -(-batch // per_group)


def predict_training(shape: GptShape, fabric: Fabric, *, batch: int | None = None,
                     seq: int | None = None, recompute: bool | None = None,
                     energy: EnergyTable = ENERGY) -> WaferStep:
    """Predict one training step of ``shape`` on ``fabric`` (module docstring).

    ``seq``: positions per sequence (default: the context, at most the rows); ``batch``:
    sequences per step (default: whole batch groups of at least :data:`BATCH_TOKENS`
    tokens); ``recompute``: None takes recomputation if the step does not fit without it,
    or if it lets longer chunks fit and the step is then faster (both are predicted)."""
    start = time.perf_counter()
    seq, batch, groups = resolve(shape, fabric, batch, seq)
    without = memory_plan(shape, fabric, seq, False)
    plans = [memory_plan(shape, fabric, seq, recompute)]
    if recompute is None and without.fits:
        # recomputation can still pay: longer chunks, fewer partial sums to move
        again = memory_plan(shape, fabric, seq, True)
        if again.fits and again.chunk > without.chunk:
            plans.append(again)
    steps = [_step(shape, fabric, seq, batch, groups, m, without, energy) for m in plans]
    step = min(steps, key=lambda s: (s.step_seconds, s.memory.recompute))
    step.seconds = time.perf_counter() - start
    return step


def _step(shape: GptShape, fabric: Fabric, seq: int, batch: int, groups: int,
          memory: MemoryPlan, without: MemoryPlan, energy: EnergyTable) -> WaferStep:
    """The step with one memory plan."""
    g = GroupBuilder(shape, fabric, memory, seq)
    d, V = shape.d_model, shape.vocab
    bias = shape.attention_bias
    # the embedding, looked up at the edge: each row's d values written by its port
    emb = PhaseBuilder()
    add_activations(emb, g.plan(d, d, row=True), np.zeros((1, d), np.int64))
    g.row_phases("embedding", "edge", [emb.phase("load")])
    # forward, per block (phases counted once per block)
    g.layernorm("norms")
    g.linear("qkv", 3 * d, d, "forward", handoff=None)
    g.attention(backward=False)
    g.linear("proj", d, d, "forward", handoff="finish")
    g.residual("forward")
    if shape.norms == 2:
        g.layernorm("norms")
    g.linear("fc1", shape.d_ff, d, "forward", handoff="finish", gelu=True)
    g.linear("fc2", d, shape.d_ff, "forward", handoff="finish")
    g.residual("forward")
    # the head: final LayerNorm, the output projection, the logits read out
    g.layernorm("head")
    g.linear("head", V, d, "forward", handoff=None, read=True)
    # the loss gradient written back: V values per row
    back = g.plan(d, V, row=True)
    dy = PhaseBuilder()
    add_activations(dy, back, np.zeros((1, V), np.int64))
    g.row_phases("head", "edge", [dy.phase("load")])
    g.grad("head", V, d, shape.output_bias)
    g.linear("head", d, V, "backward_data", handoff="back")
    g.layernorm("head", backward=True)
    # backward, per block
    if memory.recompute:  # the block's forward again (its activations were not kept)
        n = len(g.phases)
        g.layernorm("norms")
        g.linear("qkv", 3 * d, d, "forward", handoff=None)
        g.attention(backward=False)
        g.linear("proj", d, d, "forward", handoff="finish")
        if shape.norms == 2:
            g.layernorm("norms")
        g.linear("fc1", shape.d_ff, d, "forward", handoff="finish", gelu=True)
        for ph in g.phases[n:]:
            ph.method = "estimate" if ph.method == "estimate" else "plan (recomputed)"
    g.grad("fc2", d, shape.d_ff, True)
    # GELU's derivative in the hand-off of fc2's backward data (docs/training.md)
    g.linear("fc2", shape.d_ff, d, "backward_data", handoff="gelu_back")
    g.grad("fc1", shape.d_ff, d, True)
    g.linear("fc1", d, shape.d_ff, "backward_data", handoff="back")
    for _ in range(shape.norms):
        g.layernorm("norms", backward=True)
    g.residual("backward_data")
    g.grad("proj", d, d, bias)
    g.linear("proj", d, d, "backward_data", handoff="back")
    g.attention(backward=True)
    g.grad("qkv", 3 * d, d, bias)
    g.linear("qkv", d, 3 * d, "backward_data", handoff="back")
    g.residual("backward_data")
    # the embedding's gradient: the first block's input gradient read out, d per row
    g.row_phases("embedding", "edge", [read_phase(g.plan(d, d, row=True), 0, 1)])
    step = WaferStep(shape, fabric, seq, batch, groups, memory, without, g.phases,
                     g.config.flit_width, energy)
    step.advice = _advice(shape, fabric, seq, memory, without)
    return step


def _advice(shape: GptShape, fabric: Fabric, seq: int, memory: MemoryPlan,
            without: MemoryPlan) -> list[str]:
    """What makes the step fit, when it does not (the smallest change first)."""
    out = []
    if memory.fits and not memory.recompute:
        return out
    if memory.recompute and memory.fits:
        if without.fits:
            out.append(f"recomputation is on because the step is faster with it: chunks of "
                       f"{memory.chunk} words fit with it, of {without.chunk} without")
        else:
            out.append(f"recomputation: without it a tile needs {without.bytes_per_tile} "
                       f"bytes of its {without.sram_bytes}")
        return out
    # the batch does not change the memory: one token per row whatever the batch
    for s in range(seq - 1, 0, -max(1, seq // 64)):
        if memory_plan(shape, fabric, s, None).fits:
            out.append(f"--seq {s}: the longest sequence that fits (the attention's "
                       f"accumulators grow with it)")
            break
    for kib in (64, 96, 128, 192, 256, 384, 512, 768, 1024):
        if kib > fabric.sram_kib and memory_plan(shape, replace(fabric, sram_kib=kib), seq,
                                                 None).fits:
            out.append(f"--sram-kib {kib}")
            break
    out.append("the batch does not change a tile's memory: each group holds one token a row")
    return out
