"""The performance model against the RTL on training steps: float tiles, the loss gradient
written in, GRAD chains out of the south edge, backward streams and hand-offs.

The set (``benchmarks/model.py --training`` runs it all, ``tests/test_training_rtl.py`` a
sample): the float configurations of :data:`TRAIN_CONFIGS` (compact, parallel and lite
routers, phits 1 and 2, 2 to 4 VCs), each with the random chains of :func:`training_cases`
(densities 0.1 to 1, one to three layers, several batch groups, the last one padded; on
the configurations with the nonlinear unit also GPT-like chains: LayerNorm, GELU, a residual
and a second LayerNorm, docs/training.md). Each
case's step is compiled per batch group (:class:`~.compiler.StepCompiler`), played on the
Verilator harness (``phase_cycles``) and predicted with the tiles' nonzero activations
(:func:`~.model.step_nonzero`), at ``detail = "auto"`` and ``"analytic"``; the results are
:class:`wafertile.model.validation.PairResult` rows, summarized as the inference set's are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..hdl.core.fp import float_format
from ..model.validation import PairResult
from .workload import random_network

__all__ = ["TRAIN_CONFIGS", "TrainCase", "measure_training", "training_cases"]

#: The float configurations of the training set (name -> Config).
TRAIN_CONFIGS: dict[str, Config] = {
    "compact-2x2-fp16": Config(rows=2, cols=2, dtype="fp16", act_depth=32, acc_depth=16),
    "compact-4x4-bf16": Config(dtype="bf16"),
    "compact-3x2-v4-bf16": Config(rows=3, cols=2, dtype="bf16", act_depth=64, acc_depth=16,
                                  num_vcs=4, buffer_depth=2),
    "parallel-4x4-bf16": Config(rows=4, cols=4, dtype="bf16", act_depth=64, acc_depth=32,
                                router_arch="parallel", num_vcs=4, buffer_depth=8),
    "lite-3x3-fp16": Config(rows=3, cols=3, dtype="fp16", act_depth=64, acc_depth=32,
                            router_arch="lite"),
    "lite-2x3-p2-bf16": Config(rows=2, cols=3, dtype="bf16", act_depth=64, acc_depth=16,
                               router_arch="lite", phits=2, buffer_depth=2),
    "compact-2x3-nl-bf16": Config(rows=2, cols=3, dtype="bf16", act_depth=64, acc_depth=16,
                                  nonlinear=True),
    "parallel-3x3-nl-fp16": Config(rows=3, cols=3, dtype="fp16", act_depth=64, acc_depth=32,
                                   router_arch="parallel", num_vcs=4, buffer_depth=8,
                                   nonlinear=True),
}


@dataclass(frozen=True)
class TrainCase:
    """A random chain of ``sizes`` at ``density`` (:func:`~.workload.random_network`, biases
    drawn small), one step on ``batch`` inputs (uniform in [0, 1), a tenth of them zero);
    LayerNorms on the layers ``norms`` (gamma near 1, beta near 0), GELU after the layers
    ``gelu``, and residuals ``res`` (per layer None or its source)."""

    sizes: tuple[int, ...]
    density: float
    batch: int
    seed: int
    norms: tuple[int, ...] = ()
    gelu: tuple[int, ...] = ()
    res: tuple = ()

    def chain(self) -> dict:
        """The step's ``gelu``, ``ln`` and ``res`` (as ``training_step`` takes them)."""
        L = len(self.sizes) - 1
        rng = np.random.default_rng(self.seed + 7)
        ln = [None] * L
        for n in self.norms:
            I = self.sizes[n + 1]
            ln[n] = (rng.normal(1, 0.2, I).astype(np.float32),
                     rng.normal(0, 0.2, I).astype(np.float32), 1e-5)
        return {"gelu": tuple(n in self.gelu for n in range(L)),
                "ln": ln if self.norms else None, "res": self.res or None}

    def arrays(self, config: Config):
        """``(weights, biases, masks, x, labels)``, numbers of the tiles' format."""
        fmt = float_format(config.dtype)
        rng = np.random.default_rng(self.seed)
        w, _, m = random_network(self.sizes, self.density, self.seed)
        w = [fmt.values(fmt.bits(a)).astype(np.float32) for a in w]
        b = [(rng.normal(size=n) * 0.1).astype(np.float32) for n in self.sizes[1:]]
        x = rng.random((self.batch, self.sizes[0])).astype(np.float32)
        x[rng.random(x.shape) < 0.1] = 0
        x = fmt.values(fmt.bits(x)).astype(np.float32)
        labels = rng.integers(0, self.sizes[-1], self.batch)
        return w, b, m, x, labels

    def label(self) -> str:
        extra = "".join([f", LayerNorm {list(self.norms)}" if self.norms else "",
                         f", GELU {list(self.gelu)}" if self.gelu else "",
                         f", residual {list(self.res)}" if self.res else ""])
        return (f"train {'-'.join(map(str, self.sizes))}, density {self.density:g}, "
                f"{self.batch} inputs{extra}")


def training_cases(config: Config, seed: int) -> list[TrainCase]:
    """Chains that fit ``config``'s activation bank (every layer's inputs, the loss gradient
    and a 1.0: :func:`~.compiler.step_layout`), seeded: a deep sparse one, a dense one, a
    very sparse one, one layer alone."""
    from ..stream.rows import softmax_window
    from ..train import TrainError
    from .compiler import step_layout

    R = config.rows
    cases = [TrainCase((12, 16, 9, 5), 0.4, 2 * R + 1, seed),
             TrainCase((8, 10, 4), 1.0, R, seed + 1),
             TrainCase((10, 14, 6), 0.1, R + 1, seed + 2),
             TrainCase((9, 7), 0.6, 2 * R, seed + 3)]
    if config.nonlinear and softmax_window(config) >= 3:  # LayerNorm's rows fit the router
        cases += [TrainCase((6, 8, 5, 8, 3), 0.7, 2 * R + 1, seed + 4, norms=(0, 2),
                            gelu=(1,), res=(None, None, 0, None)),
                  TrainCase((6, 9, 5, 3), 0.5, R + 1, seed + 5, norms=(0, 1))]
    out = []
    for c in cases:
        chain = c.chain()
        try:
            step_layout(config, list(c.sizes), chain["gelu"],
                        [n in c.norms for n in range(len(c.sizes) - 1)])
        except TrainError:
            continue
        out.append(c)
    return out


def measure_training(name: str, config: Config, cases: list[TrainCase], *, build_root=None,
                     log=None) -> list[PairResult]:
    """Play each case's step on the Verilator harness (one build per configuration, cached)
    and predict it, group by group; one :class:`~wafertile.model.validation.PairResult` per
    case (its phases: every group's, in order)."""
    from ..model import predict_program
    from ..sim.harness import run_harness
    from ..sim.models.training import training_step
    from .compiler import StepCompiler
    from .model import GroupTables
    from .rtl import RtlFabric, group_starts

    fabric = RtlFabric(config, build_root=build_root, read_dx=False)
    R = config.rows
    out = []
    for case in cases:
        w, b, m, x, labels = case.arrays(config)
        chain = case.chain()
        gelu, ln, res = chain["gelu"], chain["ln"], chain["res"]
        ref = training_step(config, w, b, m, x, labels, 1.0, gelu, ln, res)
        starts = group_starts(len(x), R)
        group_tables = GroupTables(config, w, b, x, ref, gelu, ln, res)
        compiler = StepCompiler(config, w, b, m, gelu=gelu, ln=ln, res=res)
        kinds, rtl, auto, analytic, methods = [], [], [], [], []
        model_seconds = rtl_seconds = 0.0
        for g0 in starts:
            program = compiler.group(x[g0:g0 + R], ref.dys[-1][g0:g0 + R])
            t0 = time.perf_counter()
            _, stats = run_harness(fabric.exe, config, program, fabric.workdir,
                                   packed=compiler.packed)
            rtl_seconds += time.perf_counter() - t0
            sent: dict = {}
            tables = group_tables(program, g0, sent)
            t0 = time.perf_counter()
            pred = predict_program(config, program, nonzero=tables, sent=sent)
            model_seconds += time.perf_counter() - t0
            fast = predict_program(config, program, detail="analytic", nonzero=tables,
                                   sent=sent)
            kinds += [p.kind for p in program.phases]
            rtl += [int(c) for c in stats["phase_cycles"]]
            auto += pred.phase_cycles
            analytic += fast.phase_cycles
            methods += pred.methods
        result = PairResult(name, config.router_arch, config.phits,
                            f"{config.rows}x{config.cols}", case.label(), kinds, rtl, auto,
                            analytic, methods, model_seconds, rtl_seconds,
                            extra={"dtype": config.dtype, "groups": len(starts)})
        out.append(result)
        if log is not None:
            log(result)
    return out
