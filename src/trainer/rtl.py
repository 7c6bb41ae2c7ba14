"""Training steps on the RTL: each batch group's program (:mod:`.compiler`) played by the
compiled Verilator harness (:mod:`wafertile.sim.harness`), the gradients that leave the south
edge checked against the reference step bit for bit.

A step is made of groups of ``rows`` inputs, each a program of its own whose GRAD chains start
from +0; the host adds the groups' partial sums in group order
(:func:`wafertile.sim.models.training.sum_groups`). So the groups may run on one fabric one
after the other or on several at once (:mod:`.fabrics`): :func:`assemble` makes the same step
of the same groups' results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config
from ..formats import fp32_fields
from ..hdl.core.fp import FP32, float_format
from ..sim.harness import build_harness, run_harness
from ..sim.models.training import StepResult, sum_groups, training_step
from .compiler import StepCompiler, StepProgram, gradient_words

__all__ = ["ROLES", "GroupResult", "RtlFabric", "RtlStep", "assemble", "group_starts"]

#: The parts of a step the cycles are reported by (:attr:`~.compiler.StepProgram.roles`).
ROLES = ("forward", "loss", "gradients", "backward", "backward_handoff", "attention_grad")


@dataclass
class GroupResult:
    """What a fabric returns for one batch group.

    Attributes
    ----------
    logits : numpy.ndarray
        The logits of the group's real rows as FP32 words (``uint32``).
    dx : dict of int to numpy.ndarray
        With ``read_dx``: per layer ``l >= 1``, ``dY_{l-1}`` of the group's real rows as every
        tile of the row keeps it, format words (``rows x cols x J_l``); else empty.
    partials : list of (numpy.ndarray, numpy.ndarray) or None
        Per layer, the group's partial sums ``(dW, db)`` as FP32 words; None when a GRAD
        result was missing or came twice (``problems`` says which).
    cycles : dict of str to int
        Simulated cycles by part of the step (:data:`ROLES`), ``"total"`` (their sum: the
        step's) and ``"check"`` (the read-back of dX, not the step's).
    flits_in, flits_out : int
        Flits the host injected; flits that left the array (the step's, not the check's).
    seconds : float
        The simulator's wall time.
    problems : list of str
        What went wrong on the fabric (a tile's error flag, a GRAD result missing).
    """

    logits: np.ndarray
    partials: list | None
    cycles: dict[str, int]
    flits_in: int
    flits_out: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    dx: dict[int, np.ndarray] = field(default_factory=dict)
    #: per LayerNorm layer, the group's partial sums ``(dgamma, dbeta)`` as FP32 words
    norm: dict[int, tuple] = field(default_factory=dict)


def group_result(program: StepProgram, rows: int, logits, stats: dict,
                 shapes: list[tuple[int, int]]) -> GroupResult:
    """A :class:`GroupResult` from a played ``program`` of ``rows`` real rows: ``logits`` (the
    accumulators read back) and the player's ``stats`` (``"south"``: the GRAD results as
    arrays ``column``, ``addr``, ``addr_b``, ``data``; ``"phase_cycles"``,
    ``"total_cycles"``, ``"error"``, ``"seconds"`` where the player has them)."""
    south = stats["south"]
    problems = []
    norm: dict[int, tuple] = {}
    try:
        partials = gradient_words(program, south["column"], south["addr"], south["addr_b"],
                                  south["data"], shapes, norm)
    except ValueError as exc:
        partials = None
        problems.append(str(exc))
    if stats.get("error"):
        problems.append("a tile raised its error flag")
    # the step's cycles and flits leave the read-back of dX out (role "check")
    cycles = dict.fromkeys((*ROLES, "total", "check"), 0)
    for role, c in zip(program.roles, stats.get("phase_cycles", ()), strict=False):
        cycles[role] += c
    cycles["total"] = sum(cycles[r] for r in ROLES)
    step = [p for p, role in zip(program.phases, program.roles, strict=True) if role != "check"]
    flits_out = sum(p.expected_replies for p in step) + len(south["column"])
    words = np.asarray(logits)[:rows].astype(np.int64) & 0xFFFFFFFF
    C = program.config.cols
    I = program.shape[1] - sum(C * J for _, _, J in program.dx)
    dx = {n: words[:, col:col + C * J].reshape(rows, C, J) & 0xFFFF
          for n, col, J in program.dx}
    return GroupResult(words[:, :I], partials, cycles, sum(len(p) for p in step), flits_out,
                       float(stats.get("seconds", 0.0)), problems, dx, norm)


def group_starts(batch: int, rows: int) -> list[int]:
    """The first batch row of each group of a step of ``batch`` inputs."""
    return list(range(0, batch, rows))


@dataclass
class RtlStep:
    """One step on the RTL.

    Attributes
    ----------
    reference : StepResult
        The reference step (its loss, logits, gradients).
    dw, db : list of numpy.ndarray
        The gradients that left the array, summed over the groups (float32, times ``S``).
    dln : list
        Per layer, for a LayerNorm layer ``(dgamma, dbeta)`` as ``dw`` (else None).
    exact : bool
        Every logit and every gradient equal the reference's, bit for bit.
    mismatches : list of str
        What differed (empty when ``exact``).
    cycles : dict of str to int
        Simulated cycles by part of the step (:data:`ROLES`), ``"total"`` and ``"check"``
        (the read-back of dX), summed over the groups (the work of a single fabric running
        them one after the other).
    fabric_cycles : list of int
        Each fabric's total cycles (one element on one fabric).
    flits_in, flits_out : int
        Flits the host injected; flits that left the array (replies and GRAD results).
    seconds : float
        Wall time of the simulator runs, summed over the groups.
    """

    reference: StepResult
    dw: list[np.ndarray]
    db: list[np.ndarray]
    exact: bool
    mismatches: list[str] = field(default_factory=list)
    cycles: dict[str, int] = field(default_factory=dict)
    fabric_cycles: list[int] = field(default_factory=list)
    flits_in: int = 0
    flits_out: int = 0
    seconds: float = 0.0
    dln: list = field(default_factory=list)

    @property
    def step_cycles(self) -> int:
        """The step's cycles on its fabrics: the longest fabric's (they run at once)."""
        return max(self.fabric_cycles, default=self.cycles.get("total", 0))


def assemble(config: Config, ref: StepResult, masks, results: list[GroupResult],
             fabric_cycles: list[int] | None = None) -> RtlStep:
    """The step of the groups' ``results`` (in group order: group ``g`` is batch rows
    ``g x rows ...``): their logits checked against ``ref``, their partial sums added in
    group order (:func:`~wafertile.sim.models.training.sum_groups`) and checked against the
    reference's gradients, bit for bit."""
    R = config.rows
    fmt = float_format(config.dtype)
    mismatches: list[str] = []
    cycles = dict.fromkeys((*ROLES, "total", "check"), 0)
    for g, r in enumerate(results):
        g0 = g * R
        want = fp32_fields(ref.logits[g0:g0 + len(r.logits)]) & 0xFFFFFFFF
        if not np.array_equal(r.logits, want):
            mismatches.append(f"logits of the group at row {g0}")
        for n, got in sorted(r.dx.items(), reverse=True):
            want = fmt.bits(ref.dys[n - 1][g0:g0 + len(got)]).astype(np.int64)
            if not np.array_equal(got, np.broadcast_to(want[:, None, :], got.shape)):
                mismatches.append(f"dY_{n - 1} (dX of layer {n}) in the group at row {g0}")
        mismatches += [f"{p} (group at row {g0})" for p in r.problems]
        for k, c in r.cycles.items():
            cycles[k] += c
    L = len(masks)
    if any(r.partials is None for r in results) or not results:
        dw = [np.zeros(np.shape(m), np.float32) for m in masks]
        db = [np.zeros(np.shape(m)[0], np.float32) for m in masks]
    else:
        sums = [sum_groups(r.partials[n] for r in results) for n in range(L)]
        dw = [np.where(masks[n], FP32.values(w), np.float32(0)).astype(np.float32)
              for n, (w, _) in enumerate(sums)]
        db = [FP32.values(b).astype(np.float32) for _, b in sums]
    for n in range(L):
        if not np.array_equal(dw[n].view(np.uint32), ref.dw[n].view(np.uint32)):
            mismatches.append(f"dW_{n}")
        if not np.array_equal(db[n].view(np.uint32), ref.db[n].view(np.uint32)):
            mismatches.append(f"db_{n}")
    dln: list = [None] * L
    for n, want in enumerate(ref.dln or ()):
        if want is None:
            continue
        if any(n not in r.norm for r in results) or not results:
            mismatches.append(f"dgamma_{n} and dbeta_{n} (no GRAD results)")
            continue
        dln[n] = tuple(FP32.values(v).astype(np.float32)
                       for v in sum_groups(r.norm[n] for r in results))
        for name, got, w in zip(("dgamma", "dbeta"), dln[n], want, strict=True):
            if not np.array_equal(got.view(np.uint32), np.asarray(w, np.float32).view(np.uint32)):
                mismatches.append(f"{name}_{n}")
    return RtlStep(ref, dw, db, not mismatches, mismatches, cycles,
                   fabric_cycles or [cycles["total"]],
                   sum(r.flits_in for r in results), sum(r.flits_out for r in results),
                   sum(r.seconds for r in results), dln)


class RtlFabric:
    """A float array of ``config`` built once for training steps (Verilator harness, cached
    with the other builds of the same design). With ``read_dx`` (the default) every step
    also reads back every tile's ``dX`` and checks it (cycles apart, as ``"check"``)."""

    def __init__(self, config: Config, *, build_root: Path | None = None,
                 read_dx: bool = True):
        from ..run import array_build

        self.config, self.read_dx = config, read_dx
        self.build, source = array_build(config, "verilator", build_root)
        self.exe = build_harness(config, source, self.build,
                                 log=self.build / "harness-build.log")
        # one directory per process: fabrics of several processes share the build
        self.workdir = self.build / f"train-{os.getpid()}"
        self.workdir.mkdir(exist_ok=True)

    def groups(self, weights, biases, masks, x, dy, gelu=None, ln=None, res=None, attn=None
               ) -> list[GroupResult]:
        """Run the groups of ``x`` (``rows`` inputs each, the last padded) with their loss
        gradient ``dy``, one harness run per group."""
        cfg = self.config
        R = cfg.rows
        shapes = [np.shape(w) for w in weights]
        compiler = StepCompiler(cfg, weights, biases, masks, read_dx=self.read_dx, gelu=gelu,
                                ln=ln, res=res, attn=attn)
        out = []
        for g0 in group_starts(len(x), R):
            program = compiler.group(x[g0:g0 + R], dy[g0:g0 + R])
            logits, stats = run_harness(self.exe, cfg, program, self.workdir,
                                        packed=compiler.packed)
            out.append(group_result(program, min(R, len(x) - g0), logits, stats, shapes))
        return out

    def step(self, weights, biases, masks, x, labels, scale: float = 1.0, gelu=None, ln=None,
             res=None, attn=None) -> RtlStep:
        """One step of the batch ``x`` (any number of rows: groups of ``rows``, the last
        padded), the loss gradient taken from the reference's logits (checked equal to the
        fabric's); ``gelu``: per layer, GELU after it instead of ReLU; ``ln``: per layer, a
        LayerNorm instead (None or ``(gamma, beta, eps)``); ``res``: per layer, None or the
        earlier LayerNorm layer whose accumulators it adds; ``attn``: per layer, None or
        ``(heads, T)``, the attention after it."""
        ref = training_step(self.config, weights, biases, masks, x, labels, scale, gelu, ln,
                            res, attn)
        results = self.groups(weights, biases, masks, x, ref.dys[-1], gelu, ln, res, attn)
        return assemble(self.config, ref, masks, results)
