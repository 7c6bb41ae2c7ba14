"""Training steps on the RTL: each batch group's program (:mod:`.compiler`) played by the
compiled Verilator harness (:mod:`wafertile.sim.harness`), the gradients that leave the south
edge checked against the reference step bit for bit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config
from ..formats import fp32_fields
from ..hdl.core.fp import FP32
from ..sim.harness import build_harness, run_harness
from ..sim.models.training import StepResult, training_step
from .compiler import StepCompiler, gradient_words

__all__ = ["RtlFabric", "RtlStep"]

#: The parts of a step the cycles are reported by (:attr:`~.compiler.StepProgram.roles`).
ROLES = ("forward", "loss", "gradients", "backward", "backward_handoff")


@dataclass
class RtlStep:
    """One step on the RTL.

    Attributes
    ----------
    reference : StepResult
        The reference step (its loss, logits, gradients).
    dw, db : list of numpy.ndarray
        The gradients that left the array (float32, times ``S``).
    exact : bool
        Every logit and every gradient equal the reference's, bit for bit.
    mismatches : list of str
        What differed (empty when ``exact``).
    cycles : dict of str to int
        Simulated cycles by part of the step (:data:`ROLES`) and ``"total"``.
    flits_in, flits_out : int
        Flits the host injected; flits that left the array (replies and GRAD results).
    seconds : float
        Wall time of the harness runs.
    """

    reference: StepResult
    dw: list[np.ndarray]
    db: list[np.ndarray]
    exact: bool
    mismatches: list[str] = field(default_factory=list)
    cycles: dict[str, int] = field(default_factory=dict)
    flits_in: int = 0
    flits_out: int = 0
    seconds: float = 0.0


class RtlFabric:
    """A float array of ``config`` built once for training steps (Verilator harness, cached
    with the other builds of the same design)."""

    def __init__(self, config: Config, *, build_root: Path | None = None):
        from ..run import array_build

        self.config = config
        self.build, source = array_build(config, "verilator", build_root)
        self.exe = build_harness(config, source, self.build,
                                 log=self.build / "harness-build.log")
        self.workdir = self.build / "train"
        self.workdir.mkdir(exist_ok=True)

    def step(self, weights, biases, masks, x, labels, scale: float = 1.0) -> RtlStep:
        """One step of the batch ``x`` (any number of rows: groups of ``rows``, the last
        padded), the loss gradient taken from the reference's logits (checked equal to the
        fabric's)."""
        cfg = self.config
        ref = training_step(cfg, weights, biases, masks, x, labels, scale)
        shapes = [np.shape(w) for w in weights]
        carry = None
        cycles = dict.fromkeys((*ROLES, "total"), 0)
        mismatches: list[str] = []
        flits_in = flits_out = 0
        seconds = 0.0
        R = cfg.rows
        compiler = StepCompiler(cfg, weights, biases, masks)
        for g0 in range(0, len(x), R):
            program = compiler.group(x[g0:g0 + R], ref.dys[-1][g0:g0 + R], carry)
            logits, stats = run_harness(self.exe, cfg, program, self.workdir)
            seconds += stats["seconds"]
            rows = min(R, len(x) - g0)
            want = fp32_fields(ref.logits[g0:g0 + rows]) & 0xFFFFFFFF
            if not np.array_equal(logits[:rows] & 0xFFFFFFFF, want):
                mismatches.append(f"logits of the group at row {g0}")
            south = stats["south"]
            results = {(int(c), int(a), int(b)): int(d) for c, a, b, d in zip(
                south["column"], south["addr"], south["addr_b"], south["data"], strict=True)}
            if len(results) != len(south["column"]):
                mismatches.append(f"a GRAD result came twice in the group at row {g0}")
            carry = gradient_words(program, results, shapes)
            for role, c in zip(program.roles, stats["phase_cycles"], strict=True):
                cycles[role] += c
            cycles["total"] += stats["total_cycles"]
            flits_in += program.flits
            flits_out += sum(p.expected_replies for p in program.phases) + len(south["column"])
            if stats["error"]:
                mismatches.append(f"a tile raised its error flag (group at row {g0})")
        dw = [FP32.values(np.where(m, w, 0)).astype(np.float32)
              for m, (w, _) in zip(masks, carry, strict=True)]
        db = [FP32.values(b).astype(np.float32) for _, b in carry]
        for n in range(len(weights)):
            if not np.array_equal(dw[n].view(np.uint32), ref.dw[n].view(np.uint32)):
                mismatches.append(f"dW_{n}")
            if not np.array_equal(db[n].view(np.uint32), ref.db[n].view(np.uint32)):
                mismatches.append(f"db_{n}")
        return RtlStep(ref, dw, db, not mismatches, mismatches, cycles, flits_in, flits_out,
                       seconds)
