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
from ..sim.models.training import forward, training_step
from .compiler import StepCompiler, StepProgram
from .rtl import ROLES, RtlStep, group_starts

__all__ = ["GroupTables", "ModelFabric", "ModelStep", "step_nonzero"]


def step_nonzero(config: Config, program: StepProgram, acts: list[np.ndarray],
                 dys: list[np.ndarray], kept: list | None = None) -> dict[int, np.ndarray]:
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
        base = regions["G"] if n == L - 1 else regions[f"A{n + 1}"]
        bwd[:, base:base + np.shape(d)[1]] = np.asarray(d) != 0
    for n, u in enumerate(kept or ()):
        if u is not None:
            bwd[:, regions[f"U{n}"]:regions[f"U{n}"] + np.shape(u)[1]] = np.asarray(u) != 0
    tiles = {"forward": np.repeat(fwd, C, axis=0), "backward": np.repeat(bwd, C, axis=0)}
    tiles["backward_handoff"] = tiles["backward"]
    return {n: tiles[role] for n, (phase, role) in
            enumerate(zip(program.phases, program.roles, strict=True))
            if (phase.kind == "stream" and role in ("forward", "backward")) or
            (phase.kind == "reduce" and role == "backward_handoff")}


class GroupTables:
    """:func:`step_nonzero` for each batch group of a step: the forward pass of the step's
    inputs padded to whole groups (padding rows: zero inputs) and its gradients ``ref.dys``
    (padding rows: zero), made once; called with a group's program and first row."""

    def __init__(self, config: Config, weights, biases, x, ref, gelu=None):
        self.config = config
        R = config.rows
        padded = np.zeros((len(group_starts(len(x), R)) * R, np.shape(x)[1]), np.float32)
        padded[:len(x)] = x
        self.kept: list = []
        _, self.acts = forward(config, weights, biases, padded, gelu, self.kept)
        self.dys = [np.zeros((len(padded), np.shape(d)[1]), np.float32) for d in ref.dys]
        for d, r in zip(self.dys, ref.dys, strict=True):
            d[:len(x)] = r

    def __call__(self, program: StepProgram, g0: int) -> dict[int, np.ndarray]:
        rows = slice(g0, g0 + self.config.rows)
        return step_nonzero(self.config, program, [a[rows] for a in self.acts],
                            [d[rows] for d in self.dys],
                            [None if u is None else u[rows] for u in self.kept])


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

    def step(self, weights, biases, masks, x, labels, scale: float = 1.0, gelu=None
             ) -> ModelStep:
        """One step of the batch ``x`` (groups of ``rows``, the last padded); ``gelu``: per
        layer, GELU after it instead of ReLU."""
        from ..model import predict_program

        cfg = self.config
        R = cfg.rows
        start = time.perf_counter()
        ref = training_step(cfg, weights, biases, masks, x, labels, scale, gelu)
        tables = GroupTables(cfg, weights, biases, x, ref, gelu)
        compiler = StepCompiler(cfg, weights, biases, masks, gelu=gelu)
        cycles = dict.fromkeys((*ROLES, "total", "check"), 0)
        methods: Counter = Counter()
        flits_in = flits_out = 0
        for g0 in group_starts(len(x), R):
            program = compiler.group(x[g0:g0 + R], ref.dys[-1][g0:g0 + R])
            pred = predict_program(cfg, program, detail=self.detail,
                                   nonzero=tables(program, g0), cache=self.cache)
            for role, c in zip(program.roles, pred.phase_cycles, strict=True):
                cycles[role] += c
            methods.update(pred.methods)
            flits_in += program.flits
            flits_out += program.replies + sum(
                len(g.column) for g in program.grads if g is not None)
        cycles["total"] = sum(cycles[r] for r in ROLES)
        cycles["check"] = None  # the read-back of dX is the RTL's check: nothing to predict
        return ModelStep(ref, ref.dw, ref.db, None, [], cycles, [cycles["total"]], flits_in,
                         flits_out, time.perf_counter() - start, methods=dict(methods))
