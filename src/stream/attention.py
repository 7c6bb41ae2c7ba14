"""Causal self-attention on the fabric (``docs/attention.md``): the phases from the
projection's accumulators ``q``, ``k``, ``v`` to the attention's outputs, tile to tile.

``S`` sequences of ``T`` positions each on the array's first ``S T`` rows (sequence ``s``'s
position ``t`` on row ``s T + t``), head ``h`` in column ``h``,
value feature ``f`` (of all heads, ``h D + e``) in column ``f mod cols``
(:class:`AttentionLayout` says which accumulator and activation holds what). The phases, in
order (:func:`attention_phases`):

1. the score accumulators of each row zeroed, ReLU off, and each query ``FINISH``ed into its
   own tile's activations (hand-off rounds, counted activation writes);
2. each key sent by its tile as the weight of a MAC down its column, to the rows of positions
   ``j .. T - 1`` of its sequence (a ``FINISH`` with ``pick = 1``, ``dy = T - 1 - j``),
   features in ascending order (rounds of counted MACs): the scores;
3. the softmax of each row of each head in its tile (:func:`.rows.local_softmax_phases`);
4. the output accumulators zeroed, and each value ``FINISH``ed down its column to the rows of
   positions ``j .. T - 1`` of its sequence as an activation (hand-off rounds);
5. each probability sent by its tile as the weight of a MAC to the row's tiles that hold its
   head's values, positions in ascending order (rounds of counted MACs): the outputs.

A tile has at most :func:`~.plan.handoff_window` ``FINISH``es of its own per round (the
hand-off's argument, docs/network.md), and every round ends on a count the host sees.
:func:`wafertile.sim.models.attention.attention` is the bit-exact reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..formats import fp32_fields
from ..hdl.core.fp import float_format
from ..hdl.flit import Opcode, Reg, encode_handoff
from .plan import reply_route
from .program import LayerError, LayerProgram, Phase, PhaseBuilder
from .rows import (
    ACT,
    finish_rounds,
    local_softmax_grad_phases,
    local_softmax_phases,
    softmax_window,
)

__all__ = ["GRAD_STEPS", "STEPS", "AttentionLayout", "attention_grad_program",
           "attention_grad_steps", "attention_keep_phases", "attention_phases",
           "attention_program", "attention_steps", "check_attention", "check_attention_grad"]


@dataclass(frozen=True)
class AttentionLayout:
    """Where causal self-attention of ``T`` positions, ``heads`` heads of ``D`` features
    keeps its numbers (``docs/attention.md``): accumulators and activations of tile ``(x,
    s T + t)`` for position ``t`` of sequence ``s`` (``sequences`` of them side by side on
    the rows, each attending to its own positions only).

    ``act``: the first activation of the attention's own (a training step's region
    ``AT_l``; inference's attention starts at 0). ``do``: where the derivative reads the
    outputs' gradient, ``dO[i, f]`` at activation ``do + f`` of every tile of row ``i`` (a
    training step's backward hand-off), its first phase then copying ``V`` (kept at
    :meth:`gv_act`) and ``dO`` into their accumulators; None: in the derivative's own
    activations and accumulators, as :func:`attention_grad_program` loads them
    (``docs/training.md``, "Attention layers")."""

    config: Config
    T: int
    heads: int
    D: int
    sequences: int = 1
    act: int = 0
    do: int | None = None

    @property
    def rows(self) -> int:
        """The rows the sequences take (``sequences * T``)."""
        return self.sequences * self.T

    def position(self, row: int) -> int:
        """The position within its sequence of the numbers of row ``row``."""
        return row % self.T

    @property
    def width(self) -> int:
        """The features of all heads (``heads * D``)."""
        return self.heads * self.D

    @property
    def E(self) -> int:
        """Value features per column (the most any column holds)."""
        return -(-self.width // self.config.cols)

    def q_slot(self, d):
        """Query feature ``d`` of head ``h``: accumulator of tile ``(h, t)``."""
        return np.asarray(d)

    def k_slot(self, d):
        """Key feature ``d`` of head ``h``: accumulator of tile ``(h, t)``."""
        return self.D + np.asarray(d)

    def column(self, f):
        """The column of value feature ``f`` (``h D + e``)."""
        return np.asarray(f) % self.config.cols

    def index(self, f):
        """The index ``k`` of value feature ``f`` among its column's."""
        return np.asarray(f) // self.config.cols

    def v_slot(self, c, k):
        """The ``k``-th value feature of column ``c``: accumulator of tile ``(c, t)`` (after
        the column's head's queries and keys, if it holds a head)."""
        return np.where(np.asarray(c) < self.heads, 2 * self.D, 0) + np.asarray(k)

    def groups(self) -> list[np.ndarray]:
        """The projection's outputs (``q`` features ``0 .. H D - 1``, then ``k``, then
        ``v``) that each column holds, in accumulator order: its head's queries and keys,
        then its value features (a :class:`~.plan.LayerPlan`'s ``groups``)."""
        HD, D = self.width, self.D
        f = np.arange(HD)
        out = []
        for c in range(self.config.cols):
            head = [c * D + np.arange(D), HD + c * D + np.arange(D)] if c < self.heads else []
            out.append(np.concatenate([*head, 2 * HD + f[self.column(f) == c]]).astype(
                np.int64))
        return out

    @property
    def top(self) -> int:
        """The first accumulator above every column's projection outputs."""
        return max(len(g) for g in self.groups())

    def s_slot(self, j):
        """Score (then probability) of key ``j``: accumulator of tile ``(h, i)``."""
        return self.top + np.asarray(j)

    def o_slot(self, k):
        """The output of the ``k``-th value feature of a column: accumulator of ``(c, i)``."""
        return self.top + self.T + np.asarray(k)

    @property
    def z(self) -> int:
        """The softmax's scratch accumulator."""
        return self.top + self.T + self.E

    def q_act(self, d):
        """Query feature ``d`` as an activation of tile ``(h, i)`` (activation 0 is the
        softmax's)."""
        return self.act + ACT + 1 + np.asarray(d)

    @property
    def scratch(self) -> int:
        """The softmax's scratch activation (its maximum, then its reciprocal)."""
        return self.act + ACT

    def v_act(self, j, k):
        """Value ``k`` of a column at position ``j``, as an activation of tile ``(c, i)``,
        ``i >= j``."""
        return self.act + ACT + 1 + self.D + np.asarray(j) * self.E + np.asarray(k)

    @property
    def accumulators(self) -> int:
        """Accumulators a tile needs."""
        return self.z + 1

    # -- the derivative (docs/attention.md, "The derivative") -------------------------------

    def gp_slot(self, j):
        """The derivative's copy of probability ``j`` (``p``): accumulator of tile ``(h, i)``
        (``dP``, then ``dS``, in :meth:`s_slot`)."""
        return self.top + self.T + np.asarray(j)

    def gt_slot(self, j):
        """The derivative's scratch ``t`` of element ``j``: accumulator of tile ``(h, i)``."""
        return self.top + 2 * self.T + np.asarray(j)

    @property
    def gz(self) -> int:
        """The derivative's sum ``c``: accumulator of each head's tile."""
        return self.top + 3 * self.T

    def gdo_slot(self, k):
        """``dO`` of the ``k``-th value feature of a column, the weight of ``dV``'s MACs:
        accumulator of tile ``(c, i)``."""
        return self.gz + 1 + np.asarray(k)

    def gkw_slot(self, d):
        """``K[j, d]`` as the weight of ``dQ``'s MACs: accumulator of tile ``(h, j)``."""
        return self.gz + 1 + self.E + np.asarray(d)

    def gqw_slot(self, d):
        """``Q[i, d]`` as the weight of ``dK``'s MACs: accumulator of tile ``(h, i)``."""
        return self.gz + 1 + self.E + self.D + np.asarray(d)

    @property
    def G_C(self) -> tuple[int, int]:
        """The derivative's activations ``c1``, ``c2`` of each head's tile."""
        return self.act, self.act + 1

    def gdo_act(self, e, h=0):
        """``dO[i, h D + e]``: activation of tile ``(h, i)`` (:attr:`do` + ``h D + e`` when
        the step's hand-off left it there)."""
        if self.do is not None:
            return self.do + np.asarray(h) * self.D + np.asarray(e)
        return self.act + 2 + np.asarray(e)

    def gp_act(self, j):
        """``P[i, j]``: activation of tile ``(h, i)``."""
        return self.act + 2 + self.D + np.asarray(j)

    def gds_act(self, j):
        """``fmt(dS[i, j])``, the activation of ``dQ``'s MACs: of tile ``(h, i)``."""
        return self.act + 2 + self.D + self.T + np.asarray(j)

    def gdst_act(self, i):
        """``fmt(dS[i, j])``, the activation of ``dK``'s MACs: of tile ``(h, j)``, ``j <=
        i``."""
        return self.act + 2 + self.D + 2 * self.T + np.asarray(i)

    def gk_act(self, d):
        """``K[j, d]``, kept by a training step's forward pass: activation of tile
        ``(h, j)``."""
        return self.act + 2 + self.D + 3 * self.T + np.asarray(d)

    def gq_act(self, d):
        """``Q[i, d]``, kept by a training step's forward pass: activation of tile
        ``(h, i)``."""
        return self.act + 2 + 2 * self.D + 3 * self.T + np.asarray(d)

    def gpt_act(self, k, i):
        """``P[i, j]`` of the head of a column's ``k``-th value feature: activation of tile
        ``(c, j)``, ``j <= i``."""
        return self.act + 2 + 3 * self.D + 3 * self.T + np.asarray(k) * self.T + np.asarray(i)

    def gv_act(self, k):
        """``V[j, k]``, a column's ``k``-th value, kept by a training step's forward pass for
        the derivative (with :attr:`do`): activation of tile ``(c, j)``."""
        return self.gpt_act(self.E, 0) + np.asarray(k)

    @property
    def grad_accumulators(self) -> int:
        """Accumulators a tile needs for the derivative."""
        return int(self.gqw_slot(self.D - 1)) + 1

    @property
    def grad_activations(self) -> int:
        """Activations a tile needs for the derivative (with :attr:`do`, the kept values
        too)."""
        if self.do is not None:
            return int(self.gv_act(self.E - 1)) + 1
        return int(self.gpt_act(self.E - 1, self.T - 1)) + 1

    @property
    def activations(self) -> int:
        """Activations a tile needs."""
        return int(self.v_act(self.T - 1, self.E - 1)) + 1


def check_attention(layout: AttentionLayout, what: str = "the attention", *,
                    depths: bool = True) -> None:
    """Raise :class:`LayerError` (one line) if :func:`attention_phases` cannot run
    ``layout`` (``depths = False``: but for the banks' depths)."""
    config, T, H, D, S = layout.config, layout.T, layout.heads, layout.D, layout.sequences
    if not (config.is_float and config.nonlinear):
        raise LayerError(f"{what} needs float tiles with the nonlinear unit (dtype fp16 or "
                         f"bf16, nonlinear = true), not dtype {config.dtype!r} with nonlinear "
                         f"= {str(config.nonlinear).lower()}")
    if min(T, H, D) < 1:
        raise LayerError(f"{what} needs at least one position, head and feature, not T = {T}, "
                         f"{H} heads of {D}")
    if S < 1:
        raise LayerError(f"{what} needs at least one sequence, not {S}")
    if config.rows < layout.rows:
        raise LayerError(f"{what} has {layout.rows} positions"
                         + (f" ({S} sequences of {T})" if S > 1 else "")
                         + f" and the array {config.rows} rows (one position per row)")
    if config.cols < H:
        raise LayerError(f"{what} has {H} heads and the array {config.cols} columns (one head "
                         f"per column)")
    if softmax_window(config) < 1:
        raise LayerError(f"{what} needs a router whose local input holds at least 2 flits "
                         f"per VC: router_arch = {config.router_arch!r} holds 1")
    if depths and layout.accumulators > config.acc_depth:
        raise LayerError(f"{what} ({T} positions, {H} heads of {D}) needs "
                         f"{layout.accumulators} accumulators per tile, acc_depth is "
                         f"{config.acc_depth}")
    if depths and layout.activations > config.act_depth:
        raise LayerError(f"{what} ({T} positions, {H} heads of {D}) needs "
                         f"{layout.activations} activations per tile, act_depth is "
                         f"{config.act_depth}")


#: The steps of :func:`attention_steps`, in order.
STEPS = ("queries", "scores", "softmax", "values", "outputs")


def attention_phases(layout: AttentionLayout) -> list[Phase]:
    """The phases of causal self-attention (the module's steps), from ``q``, ``k``, ``v`` in
    their accumulators (:class:`AttentionLayout`) to the outputs in theirs;
    :func:`check_attention` first. ReLU is off in every tile of the first ``S T`` rows after."""
    return [phase for _, phases in attention_steps(layout) for phase in phases]


def attention_program(layout: AttentionLayout, q, k, v) -> tuple[LayerProgram, list[str]]:
    """A program that writes ``q``, ``k``, ``v`` (``S T x (H D)`` FP32 words: the projection's
    accumulators, sequence after sequence) into their accumulators, runs the attention's
    phases and reads the outputs (its Y: ``S T x (H D)`` FP32 words,
    :func:`wafertile.sim.models.attention.attention`'s ``out`` of each sequence); and each
    phase's step (``"load"``, :data:`STEPS`, ``"read"``)."""
    cfg, N, H, D = layout.config, layout.rows, layout.heads, layout.D
    check_attention(layout)
    words = [np.asarray(a, np.int64) for a in (q, k, v)]
    if any(w.shape != (N, layout.width) for w in words):
        raise LayerError(f"q, k and v must be {N} x {layout.width} arrays, not "
                         f"{', '.join(str(w.shape) for w in words)}")
    q, k, v = (((w & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000 for w in words)  # signed fields
    to_host = reply_route(cfg, N)
    f = np.arange(layout.width)
    cols, slots = layout.column(f), layout.o_slot(layout.index(f))
    load, read = PhaseBuilder(), PhaseBuilder()
    for i in range(N):
        for h in range(H):
            head = slice(h * D, (h + 1) * D)
            load.add(i, D, x0=h, x1=h, y0=i, y1=i, op=Opcode.WRITE_ACC.value,
                     addr=layout.q_slot(np.arange(D)), data=q[i, head])
            load.add(i, D, x0=h, x1=h, y0=i, y1=i, op=Opcode.WRITE_ACC.value,
                     addr=layout.k_slot(np.arange(D)), data=k[i, head])
        load.add(i, len(f), x0=cols, x1=cols, y0=i, y1=i, op=Opcode.WRITE_ACC.value,
                 addr=layout.v_slot(cols, layout.index(f)), data=v[i])
        load.add(i, 1, x0=0, x1=0, y0=i, y1=i, op=Opcode.READ_ACC.value, data=to_host[i])
        load.reply(i, 0, 0)
        read.add(i, len(f), x0=cols, x1=cols, y0=i, y1=i, op=Opcode.READ_ACC.value,
                 addr=slots, addr_b=cols, data=to_host[i])
        read.reply(i, slots, cols, i, f)
    steps = attention_steps(layout)
    phases = [load.phase("load"), *(p for _, ps in steps for p in ps), read.phase("read")]
    labels = ["load", *(name for name, ps in steps for _ in ps), "read"]
    return LayerProgram(cfg, (N, layout.width, 0), phases, 0, 0), labels


def attention_steps(layout: AttentionLayout) -> list[tuple[str, list[Phase]]]:
    """:func:`attention_phases` by step (:data:`STEPS`)."""
    check_attention(layout)
    cfg, T, H, D, E = layout.config, layout.T, layout.heads, layout.D, layout.E
    C, N, at = cfg.cols, layout.rows, layout.position
    vc = cfg.num_vcs - 1
    features = np.arange(layout.width)

    def clear(slots):
        def before(turns, i):
            # ReLU off in the row's tiles (one multicast from tile 0's view: each tile's
            # SET), the row's accumulators ``slots(i)`` written +0 in the tiles of its heads
            for g in range(C):
                turns.add(g, 1, op=Opcode.SET.value, addr=Reg.RELU.value, data=0)
            for g, s in slots(at(i)):
                turns.add(g, len(s), op=Opcode.WRITE_ACC.value, addr=s, data=0)
        return before

    def queries(i):
        return [(h, {"addr": int(layout.q_slot(d)), "addr_b": int(layout.q_act(d)),
                     "data": encode_handoff(cfg, x0=h, x1=h, y=i, vc=vc)}, 1)
                for h in range(H) for d in range(D)]

    def keys(y):  # row y's keys, to the rows of its sequence's later positions
        j = at(y)
        return [(h, {"addr": int(layout.k_slot(d)), "addr_b": int(layout.s_slot(j)),
                     "data": encode_handoff(cfg, x0=h, x1=h, y=y, dy=T - 1 - j, vc=vc,
                                            mac=True, act=int(layout.q_act(d)))}, T - j)
                for h in range(H) for d in range(D)]

    def values(y):
        j = at(y)
        return [(int(layout.column(f)), {
            "addr": int(layout.v_slot(layout.column(f), layout.index(f))),
            "addr_b": int(layout.v_act(j, layout.index(f))),
            "data": encode_handoff(cfg, x0=int(layout.column(f)), x1=int(layout.column(f)),
                                   y=y, dy=T - 1 - j, vc=vc)}, T - j) for f in features]

    def probabilities(y):
        i = at(y)
        out = []
        for h in range(H):
            head = features[h * D:(h + 1) * D]
            ks = np.unique(layout.index(head))
            for j in range(i + 1):
                for k in ks:
                    cols = layout.column(head[layout.index(head) == k])
                    x0, x1 = int(cols.min()), int(cols.max())
                    out.append((h, {"addr": int(layout.s_slot(j)),
                                    "addr_b": int(layout.o_slot(k)),
                                    "data": encode_handoff(cfg, x0=x0, x1=x1, y=y, vc=vc,
                                                           mac=True,
                                                           act=int(layout.v_act(j, k)))},
                                x1 - x0 + 1))
        return out

    return list(zip(STEPS, [
        finish_rounds(cfg, N, queries, "handoff",
                clear(lambda i: [(h, layout.s_slot(np.arange(i + 1))) for h in range(H)])),
        finish_rounds(cfg, N, keys, "stream"),
        local_softmax_phases(
            cfg, [{h: layout.s_slot(np.arange(at(y) + 1)) for h in range(H)}
                  for y in range(N)], layout.z, layout.scratch),
        finish_rounds(cfg, N, values, "handoff",
                clear(lambda i: [(g, layout.o_slot(np.arange(E))) for g in range(C)])),
        finish_rounds(cfg, N, probabilities, "stream")], strict=True))


#: The steps of :func:`attention_grad_steps`, in order.
GRAD_STEPS = ("copies", "dp", "softmax", "ds", "grads")


def check_attention_grad(layout: AttentionLayout, what: str = "the attention's derivative"
                         ) -> None:
    """Raise :class:`LayerError` (one line, naming ``what``) if :func:`attention_grad_steps`
    cannot run."""
    check_attention(layout, what, depths=False)  # its own depths below
    config = layout.config
    if softmax_window(config) < 3:
        raise LayerError(f"{what} needs a router whose local input holds at least 4 flits per "
                         f"VC: buffer_depth = {config.buffer_depth} with router_arch = "
                         f"{config.router_arch!r}")
    for name, need, have in (("accumulators", layout.grad_accumulators, config.acc_depth),
                             ("activations", layout.grad_activations, config.act_depth)):
        if need > have:
            raise LayerError(f"{what} ({layout.T} positions, {layout.heads} heads of "
                             f"{layout.D}) needs {need} {name} per tile, "
                             f"{'acc' if name == 'accumulators' else 'act'}_depth is {have}")


def attention_grad_steps(layout: AttentionLayout) -> list[tuple[str, list[Phase]]]:
    """The phases of the attention's derivative (docs/attention.md, "The derivative") by step
    (:data:`GRAD_STEPS`), from what :func:`attention_grad_program` loads (or, with
    ``layout.do``, what a training step's forward pass kept) to ``dQ``, ``dK``, ``dV`` in the
    projection's accumulators: the copies ``p`` and the zeroed sums (``dP``, then ``dQ``,
    ``dK``, ``dV``), ``dP`` in one fenced group of rounds per feature, the softmax's
    derivative in each head's tile, ``fmt(dS)`` handed to the head's tile's activations
    and, transposed, to those of the key's row, then ``dQ``, ``dK`` and ``dV`` in one group
    of rounds per source row (the keys, queries and ``dO`` of row ``n`` sent as the MACs'
    weights in group ``n``)."""
    check_attention_grad(layout)
    cfg, T, H, D = layout.config, layout.T, layout.heads, layout.D
    C, N, at = cfg.cols, layout.rows, layout.position
    vc = cfg.num_vcs - 1
    one = int(float_format(cfg.dtype).bits(np.float32(1.0)))
    features = np.arange(layout.width)
    to_host = reply_route(cfg, N)
    d_all = np.arange(D)

    copies = PhaseBuilder()  # ReLU off, p = mac(+0, 1, P), the sums +0
    for y in range(N):
        i = at(y)
        for g in range(C):
            copies.add(y, 1, x0=g, x1=g, y0=y, y1=y, op=Opcode.SET.value,
                       addr=Reg.RELU.value, data=0)
        for h in range(H):
            j = np.arange(i + 1)
            for slots in (layout.s_slot(j), layout.gp_slot(j), layout.q_slot(d_all),
                          layout.k_slot(d_all)):
                copies.add(y, len(slots), x0=h, x1=h, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                           addr=slots, data=0)
            copies.add(y, i + 1, x0=h, x1=h, y0=y, y1=y, op=Opcode.MAC.value,
                       addr=layout.gp_slot(j), addr_b=layout.gp_act(j), data=one)
            if layout.do is not None:  # the kept K and Q into their weights' accumulators
                for slots, acts in ((layout.gkw_slot(d_all), layout.gk_act(d_all)),
                                    (layout.gqw_slot(d_all), layout.gq_act(d_all))):
                    copies.add(y, D, x0=h, x1=h, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                               addr=slots, data=0)
                    copies.add(y, D, x0=h, x1=h, y0=y, y1=y, op=Opcode.MAC.value,
                               addr=slots, addr_b=acts, data=one)
        if layout.do is not None:  # V and dO into their accumulators, from the activations
            for c, k, f in _column_values(layout):
                for slot, act in ((layout.v_slot(c, k), layout.gv_act(k)),
                                  (layout.gdo_slot(k), layout.do + f)):
                    copies.add(y, 1, x0=c, x1=c, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                               addr=int(slot), data=0)
                    copies.add(y, 1, x0=c, x1=c, y0=y, y1=y, op=Opcode.MAC.value,
                               addr=int(slot), addr_b=int(act), data=one)
        for g in range(C):
            copies.add(y, 1, x0=g, x1=g, y0=y, y1=y, op=Opcode.READ_ACC.value, addr_b=g,
                       data=to_host[y])
            copies.reply(y, 0, g)

    def dp(e):  # feature e of every head: V[j, e] from its column down to rows j ..
        def sends(y):
            j = at(y)
            out = []
            for h in range(H):
                f = h * D + e
                c, k = int(layout.column(f)), int(layout.index(f))
                out.append((c, {"addr": int(layout.v_slot(c, k)), "addr_b": int(
                    layout.s_slot(j)), "data": encode_handoff(
                        cfg, x0=h, x1=h, y=y, dy=T - 1 - j, vc=vc, mac=True,
                        act=int(layout.gdo_act(e, h)))}, T - j))
            return out
        return sends

    def ds(y):  # fmt(dS[i, j]) to the tile's own activations and to row j's head tile
        i = at(y)
        base = y - i  # the sequence's first row
        return [(h, {"addr": int(layout.s_slot(j)), "addr_b": int(act),
                     "data": encode_handoff(cfg, x0=h, x1=h, y=row, vc=vc)}, 1)
                for h in range(H) for j in range(i + 1)
                for row, act in ((y, layout.gds_act(j)), (base + j, layout.gdst_act(i)))]

    def grads(y):  # row y's keys and queries (head tiles) and dO (value tiles)
        n = at(y)
        base = y - n
        out = []
        for h in range(H):
            out += [(h, {"addr": int(layout.gkw_slot(d)), "addr_b": int(layout.q_slot(d)),
                         "data": encode_handoff(cfg, x0=h, x1=h, y=y, dy=T - 1 - n, vc=vc,
                                                mac=True, act=int(layout.gds_act(n)))},
                     T - n) for d in range(D)]
            out += [(h, {"addr": int(layout.gqw_slot(d)), "addr_b": int(layout.k_slot(d)),
                         "data": encode_handoff(cfg, x0=h, x1=h, y=base, dy=n, vc=vc,
                                                mac=True, act=int(layout.gdst_act(n)))},
                     n + 1) for d in range(D)]
        out += [(int(layout.column(f)), {
            "addr": int(layout.gdo_slot(layout.index(f))),
            "addr_b": int(layout.v_slot(layout.column(f), layout.index(f))),
            "data": encode_handoff(cfg, x0=int(layout.column(f)), x1=int(layout.column(f)),
                                   y=base, dy=n, vc=vc, mac=True,
                                   act=int(layout.gpt_act(layout.index(f), n)))}, n + 1)
            for f in features]
        return out

    def clear_v(turns, y):  # dV's sums +0 (V, dP's weights, is spent)
        for c in range(C):
            k = np.unique(layout.index(features[layout.column(features) == c]))
            turns.add(c, len(k), op=Opcode.WRITE_ACC.value, addr=layout.v_slot(c, k), data=0)

    elems = [{h: (layout.s_slot(np.arange(at(y) + 1)), layout.gp_slot(np.arange(at(y) + 1)),
                  layout.gt_slot(np.arange(at(y) + 1))) for h in range(H)} for y in range(N)]
    return list(zip(GRAD_STEPS, [
        [copies.phase("reduce")],
        [ph for e in range(D) for ph in finish_rounds(cfg, N, dp(e), "stream")],
        local_softmax_grad_phases(cfg, elems, layout.gz, layout.G_C),
        finish_rounds(cfg, N, ds, "handoff"),
        # a wavefront: row n's k-th round in round n + k, so that every sum takes its terms
        # in source order (each accumulator's term sits at the same place in every source's
        # list) while the rows' rounds overlap
        finish_rounds(cfg, N, grads, "stream", clear_v, delay=at)], strict=True))


def _column_values(layout: AttentionLayout) -> list[tuple[int, int, int]]:
    """``(column, k, f)`` of every value feature ``f``: its column and its index there."""
    f = np.arange(layout.width)
    return [(int(c), int(k), int(g)) for c, k, g in zip(layout.column(f), layout.index(f), f,
                                                        strict=True)]


def attention_keep_phases(layout: AttentionLayout) -> list[Phase]:
    """A training step's forward pass keeps what the attention's derivative reads
    (``docs/training.md``, "Attention layers"): after :func:`attention_phases`, hand-off
    rounds of ``FINISH``es of the words still in the accumulators (ReLU off) into the
    derivative's activations: each probability to its own tile (:meth:`~AttentionLayout.
    gp_act`) and to the rows of its key in the columns of its head's values
    (:meth:`~AttentionLayout.gpt_act`), each key, query and value to its own tile
    (:meth:`~AttentionLayout.gk_act`, :meth:`~AttentionLayout.gq_act`,
    :meth:`~AttentionLayout.gv_act`)."""
    check_attention_grad(layout)
    cfg, H, D = layout.config, layout.heads, layout.D
    N, at = layout.rows, layout.position
    vc = cfg.num_vcs - 1
    features = np.arange(layout.width)
    values = _column_values(layout)

    def sends(y):
        i = at(y)
        base = y - i  # the sequence's first row
        out = []
        for h in range(H):
            for j in range(i + 1):
                out.append((h, {"addr": int(layout.s_slot(j)), "addr_b": int(layout.gp_act(j)),
                                "data": encode_handoff(cfg, x0=h, x1=h, y=y, vc=vc)}, 1))
            for d in range(D):
                for slot, act in ((layout.k_slot(d), layout.gk_act(d)),
                                  (layout.q_slot(d), layout.gq_act(d))):
                    out.append((h, {"addr": int(slot), "addr_b": int(act),
                                    "data": encode_handoff(cfg, x0=h, x1=h, y=y, vc=vc)}, 1))
            head = features[h * D:(h + 1) * D]
            for k in np.unique(layout.index(head)):
                cols = layout.column(head[layout.index(head) == k])
                x0, x1 = int(cols.min()), int(cols.max())
                for j in range(i + 1):
                    out.append((h, {"addr": int(layout.s_slot(j)), "addr_b": int(
                        layout.gpt_act(k, i)), "data": encode_handoff(
                            cfg, x0=x0, x1=x1, y=base + j, vc=vc)}, x1 - x0 + 1))
        for c, k, _ in values:
            out.append((c, {"addr": int(layout.v_slot(c, k)), "addr_b": int(layout.gv_act(k)),
                            "data": encode_handoff(cfg, x0=c, x1=c, y=y, vc=vc)}, 1))
        return out

    return finish_rounds(cfg, N, sends, "handoff")


def attention_grad_program(layout: AttentionLayout, forward: dict, do
                           ) -> tuple[LayerProgram, list[str]]:
    """A program that loads what the attention's derivative starts from (the forward pass's
    kept words, :func:`wafertile.sim.models.attention.attention`'s ``q``, ``k``, ``v``,
    ``p``, and ``do``, the outputs' gradient, ``S T x (H D)`` words of the format) where
    :class:`AttentionLayout` keeps them, runs :func:`attention_grad_steps` and reads ``dQ``,
    ``dK``, ``dV`` (its Y: ``S T x 3 H D`` FP32 words, :func:`wafertile.sim.models.attention.
    attention_grad`'s ``dq``, ``dk``, ``dv`` side by side); and each phase's step."""
    cfg, N, H, D, T = layout.config, layout.rows, layout.heads, layout.D, layout.T
    check_attention_grad(layout)

    do = np.asarray(do, np.int64)
    if do.shape != (N, layout.width):
        raise LayerError(f"do must be {N} x {layout.width} words, not {do.shape}")
    S = layout.sequences
    # S H x T x D (p: x T), words of the format
    Q, K, V, P = (np.asarray(forward[n], np.int64) for n in ("q", "k", "v", "p"))
    dO = do.reshape(S, T, H, D).transpose(0, 2, 1, 3).reshape(S * H, T, D)
    fmt = float_format(cfg.dtype)

    def f32(words):  # words of the format as the FP32 data fields of their value
        return fp32_fields(fmt.values(np.asarray(words)).astype(np.float32))
    to_host = reply_route(cfg, N)
    f = np.arange(layout.width)
    cols, idx = layout.column(f), layout.index(f)
    load, read = PhaseBuilder(), PhaseBuilder()
    for y in range(N):
        s, i = divmod(y, T)
        for h in range(H):
            sh = s * H + h
            load.add(y, D, x0=h, x1=h, y0=y, y1=y, op=Opcode.WRITE_ACT.value,
                     addr=layout.gdo_act(np.arange(D)), data=dO[sh, i])
            load.add(y, i + 1, x0=h, x1=h, y0=y, y1=y, op=Opcode.WRITE_ACT.value,
                     addr=layout.gp_act(np.arange(i + 1)), data=P[sh, i, :i + 1])
            for slots, words in ((layout.gkw_slot(np.arange(D)), K[sh, i]),
                                 (layout.gqw_slot(np.arange(D)), Q[sh, i])):
                load.add(y, D, x0=h, x1=h, y0=y, y1=y, op=Opcode.WRITE_ACC.value, addr=slots,
                         data=f32(words))
        head, e = f // D, f % D
        sh = s * H + head
        load.add(y, len(f), x0=cols, x1=cols, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                 addr=layout.v_slot(cols, idx), data=f32(V[sh, i, e]))
        load.add(y, len(f), x0=cols, x1=cols, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                 addr=layout.gdo_slot(idx), data=f32(dO[sh, i, e]))
        for later in range(i, T):  # P[later, i] of each feature's head, at row i's tiles
            load.add(y, len(f), x0=cols, x1=cols, y0=y, y1=y, op=Opcode.WRITE_ACT.value,
                     addr=layout.gpt_act(idx, later), data=P[sh, later, i])
        load.add(y, 1, x0=0, x1=0, y0=y, y1=y, op=Opcode.READ_ACC.value, data=to_host[y])
        load.reply(y, 0, 0)
        for n, slots, where in ((0, layout.q_slot(e), head), (1, layout.k_slot(e), head),
                                (2, layout.v_slot(cols, idx), cols)):
            read.add(y, len(f), x0=where, x1=where, y0=y, y1=y, op=Opcode.READ_ACC.value,
                     addr=slots, addr_b=where, data=to_host[y])
            read.reply(y, slots, where, y, n * layout.width + f)
    steps = attention_grad_steps(layout)
    phases = [load.phase("load"), *(p for _, ps in steps for p in ps), read.phase("read")]
    labels = ["load", *(name for name, ps in steps for _ in ps), "read"]
    return LayerProgram(cfg, (N, 3 * layout.width, 0), phases, 0, 0), labels
