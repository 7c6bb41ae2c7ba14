"""Training steps predicted by the performance model (``wafertile train --fidelity model``):
the reference's numerics (:func:`wafertile.sim.models.training.training_step`) and, for each
batch group, the cycles of the program the RTL would play (:mod:`.compiler`), phase by
phase (:func:`wafertile.model.predict_program`).

The float core's one data-dependent delay is its hazard bubble (``docs/float.md``): two MACs
in a row into one accumulator cost a cycle more, unless an operand is zero. So the model is
told which activations every tile holds nonzero when each MAC stream runs
(:func:`step_nonzero`): in the forward stream of layer ``l``, ``X_l`` (region ``A_l``); in
the backward stream of layer ``l``, ``dY_l`` (region ``G`` for the last layer, else region
``A_{l+1}``, where the backward hand-off of layer ``l + 1`` wrote it); every tile of a row
holds its row's vectors (``docs/training.md``, "What a tile keeps"). A group's padding rows
hold the forward pass of zero inputs and a zero loss gradient.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..hdl.core.fp import float_format
from ..model.layer import (
    grad_tables,
    kept_tables,
    layernorm_back_tables,
    layout_tables,
    spread_kind,
)
from ..network.compiler import output_places
from ..sim.models.attention import attention_grad
from ..sim.models.fp import to_half
from ..sim.models.training import (
    attentions,
    backward_data,
    forward,
    layernorm_back,
    norms,
    residuals,
    training_step,
)
from .compiler import StepCompiler, StepProgram
from .rtl import ROLES, RtlStep, group_starts

__all__ = ["GroupTables", "ModelFabric", "ModelStep", "step_nonzero"]


def step_nonzero(config: Config, program: StepProgram, acts: list[np.ndarray],
                 dys: list[np.ndarray], kept: list | None = None, norm: list | None = None,
                 sent: dict | None = None, held: dict | None = None,
                 att: tuple[list, int] | None = None) -> dict[int, np.ndarray]:
    """Which activations each tile holds nonzero when each MAC stream of a group's
    ``program`` runs, and each phase of GELU's derivative (whose MACs read the kept ``U``)
    (the module's docstring): per such phase index, a bool array of ``rows * cols`` tiles x
    ``act_depth`` addresses.

    Parameters
    ----------
    acts : list of numpy.ndarray
        ``X_l`` of the group's ``rows`` rows (padding rows included), layer by layer: the
        format's words or values (zero: ``+0`` or ``-0``).
    dys : list of numpy.ndarray
        ``dY_l`` of the same rows, values.
    kept : list, optional
        Per layer, ``U_l`` of the same rows (values) for a GELU layer, else None.
    norm : list, optional
        Per layer, for a LayerNorm layer what its row operations make on the same rows
        (:func:`wafertile.sim.models.training.forward`'s ``norm``, with ``"back"``:
        :func:`~wafertile.sim.models.training.layernorm_back`'s steps), else None: the
        tables of its derivative's MAC streams (their MACs read the kept ``fmt(x^)``).
    sent : dict, optional
        Takes, per phase of a LayerNorm's row operations whose FINISHes send words the
        tiles made (the numbers that cross the row, the normalized outputs kept), which
        are nonzero (:func:`~wafertile.model.predict.predict_program`'s ``sent``).
    held : dict, optional
        Per layer that adds a residual, the kept outputs it adds (words of the format, the
        same rows), which its residual's MACs read in the tiles that hold its outputs.
    att : tuple, optional
        ``(steps, g0)``: per layer, for an attention layer the reference's words of the
        whole (padded) batch (:attr:`~wafertile.sim.models.training.StepResult.attn`'s,
        with ``"do"`` and ``"grad"``), else None; and the group's first row. The tables of
        the attention's streams and derivative and the words their FINISHes send
        (:func:`wafertile.model.layer.layout_tables`, :func:`~wafertile.model.layer.
        kept_tables`, :func:`~wafertile.model.layer.grad_tables`).
    """
    R, C = config.rows, config.cols
    regions = program.regions
    L = len(dys)
    fwd = np.zeros((R, config.act_depth), bool)
    bwd = np.zeros((R, config.act_depth), bool)
    for n, a in enumerate(acts[:L]):
        a = np.asarray(a)
        nz = (a.astype(np.int64) & 0x7FFF) != 0 if a.dtype.kind in "iu" else a != 0
        fwd[:, regions[f"A{n}"]:regions[f"A{n}"] + a.shape[1]] = nz
    for n, d in enumerate(dys):
        base = regions["G"] if n == L - 1 else regions.get(f"DA{n}", regions[f"A{n + 1}"])
        bwd[:, base:base + np.shape(d)[1]] = np.asarray(d) != 0
    for n, u in enumerate(kept or ()):
        if u is not None:
            bwd[:, regions[f"U{n}"]:regions[f"U{n}"] + np.shape(u)[1]] = np.asarray(u) != 0
    tiles = {"forward": np.repeat(fwd, C, axis=0), "backward": np.repeat(bwd, C, axis=0)}
    tiles["backward_handoff"] = tiles["backward"]
    for n, base, plan in program.residuals:  # the kept outputs, in the tiles that add them
        column, slot = output_places(plan)
        words = np.asarray((held or {})[n]).astype(np.int64)
        y = np.arange(len(words))[:, None]
        tiles["forward"][y * C + column[None, :], base + slot[None, :]] = \
            (words & 0x7FFF) != 0
    out = {n: tiles[role] for n, (phase, role) in
           enumerate(zip(program.phases, program.roles, strict=True))
           if (phase.kind == "stream" and role in ("forward", "backward", "backward_handoff"))
           or (phase.kind == "reduce" and role == "backward_handoff")}
    for span in program.norms:
        at = range(span.first, span.first + span.count)
        for n in at:  # their reduce phases' MACs read numbers the FINISHes spread
            out.pop(n, None)
        steps = (norm or [None] * L)[span.layer]
        if steps is None:
            continue
        phases = program.phases[span.first:span.first + span.count]
        if span.backward:
            ls = regions["LS"]
            tables, words = layernorm_back_tables(
                span.plan, phases, steps["back"], steps["xhat"],
                xh=regions[f"XH{span.layer}"], acts=(ls, ls + 1, ls + 2))
            out.update({span.first + k: t for k, t in tables.items()})
        else:
            words = _norm_sent(config, span.plan, phases, steps, regions["LS"] + 1)
        if sent is not None:
            sent.update({span.first + k: w for k, w in words.items()})
    for a in program.attention:
        phases = program.phases[a.first:a.first + len(a.labels)]
        for n in range(a.first, a.first + len(phases)):
            out.pop(n, None)
        if att is None or att[0][a.layer] is None:
            continue
        steps, g0 = att[0][a.layer], att[1]
        lay = a.layout
        s0 = g0 // lay.T
        if a.backward:
            bank, loaded = kept_tables(lay, steps, steps["do"][g0:g0 + R], s0)
            tables, words = grad_tables(lay, phases, a.labels, steps["grad"], bank, loaded, s0)
        else:
            acts, early = layout_tables(lay, s0, steps)
            late = layout_tables(lay, s0, steps, late=True)[1]
            tables = {k: acts for k, phase in enumerate(phases) if phase.kind == "stream"}
            words = {k: late if kind[0] else early for k, phase in enumerate(phases)
                     if (kind := spread_kind(phase, 1)) is not None}
        out.update({a.first + k: t for k, t in tables.items()})
        if sent is not None:
            sent.update({a.first + k: w for k, w in words.items()})
    return out


def _norm_sent(config: Config, plan, phases: list, steps: dict, second: int
               ) -> dict[int, np.ndarray]:
    """Which words the FINISHes of a LayerNorm's forward ``phases`` send nonzero, per phase
    index in ``phases`` (tiles x ``acc_depth``): what tile 0 spreads from its scratch ``z``
    (``c1``; ``c2`` into activation ``second``; ``r`` after the NONLINEAR), and the
    normalized outputs the hand-off keeps (``steps``: the group's rows'
    :func:`~wafertile.sim.models.rows.layernorm` steps)."""
    from ..hdl.flit import Opcode
    from ..stream.rows import softmax_scratch

    C = config.cols
    z = softmax_scratch(plan)
    nz = {k: (np.asarray(v).astype(np.int64) & 0x7FFF) != 0 for k, v in steps.items()
          if k in ("mean", "mean2", "rsqrt", "xhat")}
    y = np.arange(len(nz["xhat"]))
    outputs = np.zeros((config.rows * C, config.acc_depth), bool)
    for g, part in enumerate(plan.parts(0)):
        part = np.asarray(part, np.int64)
        outputs[(y * C + g)[:, None], np.arange(len(part))[None, :]] = nz["xhat"][:, part]
    out = {}
    for k, phase in enumerate(phases):
        kind = spread_kind(phase, second)
        if kind is None:
            continue
        f = phase.flits
        finish = np.asarray(f["payload.op"]) == Opcode.FINISH.value
        if int(np.asarray(f["payload.addr"])[finish][0]) != z:  # the kept x^, not a spread
            out[k] = outputs
            continue
        late, into_second = kind
        number = nz["rsqrt" if late else "mean2" if into_second else "mean"]
        words = np.zeros_like(outputs)
        words[y * C, z] = number
        out[k] = words
    return out


class GroupTables:
    """:func:`step_nonzero` for each batch group of a step: the forward pass of the step's
    inputs padded to whole groups (padding rows: zero inputs) and its gradients ``ref.dys``
    (padding rows: zero), made once; called with a group's program and first row."""

    def __init__(self, config: Config, weights, biases, x, ref, gelu=None, ln=None,
                 res=None, attn=None):
        self.config = config
        R = config.rows
        padded = np.zeros((len(group_starts(len(x), R)) * R, np.shape(x)[1]), np.float32)
        padded[:len(x)] = x
        self.kept: list = []
        self.norm: list = []
        self.held: dict = {}
        self.att: list = []
        _, self.acts = forward(config, weights, biases, padded, gelu, self.kept, ln=ln,
                               norm=self.norm, res=res, held=self.held, attn=attn,
                               att=self.att)
        targets = {k: n for n, k in enumerate(residuals(res, len(weights), ln))
                   if k is not None}
        self.dys = [np.zeros((len(padded), np.shape(d)[1]), np.float32) for d in ref.dys]
        for d, r in zip(self.dys, ref.dys, strict=True):
            d[:len(x)] = r
        fmt = float_format(config.dtype)
        for n, a in enumerate(attentions(attn, weights)):
            if a is not None:  # the derivative on the padded rows
                steps = self.att[n]
                d = backward_data(config, weights[n + 1], fmt.bits(self.dys[n + 1]))
                steps["do"] = to_half(d, fmt).astype(fmt.dtype)
                steps["grad"] = attention_grad(steps, steps["do"], a[0], config.dtype,
                                               len(d) // a[1])
        for n, (steps, words) in enumerate(zip(self.norm, norms(ln, len(weights)),
                                               strict=True)):
            if steps is not None:  # the derivative's steps on the padded rows
                d = backward_data(config, weights[n + 1], fmt.bits(self.dys[n + 1]))
                steps["back"] = {}
                layernorm_back(config, weights[n + 1], d, words, steps["xhat"],
                               steps["rsqrt"], steps["back"],
                               fmt.bits(self.dys[targets[n]]) if n in targets else None)

    def __call__(self, program: StepProgram, g0: int, sent: dict | None = None
                 ) -> dict[int, np.ndarray]:
        rows = slice(g0, g0 + self.config.rows)

        def cut(steps):
            return {k: cut(v) if isinstance(v, dict) else v[rows] for k, v in steps.items()}

        return step_nonzero(self.config, program, [a[rows] for a in self.acts],
                            [d[rows] for d in self.dys],
                            [None if u is None else u[rows] for u in self.kept],
                            [None if s is None else cut(s) for s in self.norm], sent,
                            {n: v[rows] for n, v in self.held.items()}, (self.att, g0))


@dataclass
class ModelStep(RtlStep):
    """One step predicted by the model: an :class:`~.rtl.RtlStep` whose gradients are the
    reference's (``exact`` None: nothing was simulated), with how its phases were predicted
    (:attr:`wafertile.model.Prediction.methods`, counted over the groups)."""

    methods: dict[str, int] = field(default_factory=dict)


class ModelFabric:
    """Steps on the reference's numerics with the performance model's cycles.

    Parameters
    ----------
    config : Config
        The float array the steps are predicted for.
    detail : str
        :func:`~wafertile.model.predict_program`'s level: ``"auto"`` (analytic where exact,
        the event-level mesh elsewhere within its budget), ``"analytic"`` or ``"mesh"``.
    """

    def __init__(self, config: Config, *, detail: str = "auto"):
        self.config, self.detail = config, detail
        #: the predictions of the phases whose timing does not depend on the values, kept
        #: from step to step (:func:`wafertile.model.predict.timing_key`)
        self.cache: dict = {}

    def step(self, weights, biases, masks, x, labels, scale: float = 1.0, gelu=None, ln=None,
             res=None, attn=None) -> ModelStep:
        """One step of the batch ``x`` (groups of ``rows``, the last padded); ``gelu``: per
        layer, GELU after it instead of ReLU; ``ln``: per layer, a LayerNorm instead (None or
        ``(gamma, beta, eps)``); ``res``: per layer, None or the earlier LayerNorm layer whose
        accumulators it adds; ``attn``: per layer, None or ``(heads, T)``, the attention after
        it."""
        from ..model import predict_program

        cfg = self.config
        R = cfg.rows
        start = time.perf_counter()
        ref = training_step(cfg, weights, biases, masks, x, labels, scale, gelu, ln, res, attn)
        tables = GroupTables(cfg, weights, biases, x, ref, gelu, ln, res, attn)
        compiler = StepCompiler(cfg, weights, biases, masks, gelu=gelu, ln=ln, res=res,
                                attn=attn)
        cycles = dict.fromkeys((*ROLES, "total", "check"), 0)
        methods: Counter = Counter()
        flits_in = flits_out = 0
        for g0 in group_starts(len(x), R):
            program = compiler.group(x[g0:g0 + R], ref.dys[-1][g0:g0 + R])
            sent: dict = {}
            pred = predict_program(cfg, program, detail=self.detail,
                                   nonzero=tables(program, g0, sent), cache=self.cache,
                                   sent=sent)
            for role, c in zip(program.roles, pred.phase_cycles, strict=True):
                cycles[role] += c
            methods.update(pred.methods)
            flits_in += program.flits
            flits_out += program.replies + sum(
                len(g.column) for g in program.grads if g is not None)
        cycles["total"] = sum(cycles[r] for r in ROLES)
        cycles["check"] = None  # the read-back of dX is the RTL's check: nothing to predict
        return ModelStep(ref, ref.dw, ref.db, None, [], cycles, [cycles["total"]], flits_in,
                         flits_out, time.perf_counter() - start, dln=ref.dln,
                         methods=dict(methods))
