"""The model against the RTL: the validation set and the comparison.

The set (``benchmarks/model.py`` runs it all, ``tests/test_model.py`` a sample) is
(configuration, workload) pairs: :data:`CONFIGS`, eighteen configurations from 1 x 1 to 8 x 8
with the four router micro-architectures (``lite`` with 1 to 4 phits; 2 to 4 VCs, buffers
of 2 to 8 flits); per
configuration, seeded random layers from :func:`layer_cases` (densities from 1% to 100%,
layers that need passes, on-fabric reduction, several batch groups, outputs of uneven
density) and the small networks of :func:`network_cases` that fit it. Each pair's program is
compiled once, played on Verilator (:func:`wafertile.run.simulate`, the compiled harness:
``phase_cycles``) and predicted (:func:`~wafertile.model.predict_program`, both at
``detail = "auto"`` and ``"analytic"``); :func:`compare` gives the errors.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..config import Config
from ..stream import LayerError, LayerProgram, compile_layer
from ..stream.attention import (
    GRAD_STEPS,
    STEPS,
    AttentionLayout,
    attention_grad_steps,
    attention_keep_phases,
    attention_program,
)
from .predict import predict_program
from .timing import Timing
from .wafer import Fabric, attention_grad_phases, attention_phases
from .zoo import GptShape

__all__ = ["CONFIGS", "LayerCase", "NetworkCase", "PairResult", "attention_estimate",
           "attention_grad_estimate", "compare", "layer_cases", "measure_pairs", "network_cases",
           "summarize"]

#: The validation configurations (name -> Config): sizes 1 x 1 .. 8 x 8 (rows or columns
#: alone too), every router micro-architecture, phits 1 to 4, 2 to 4 VCs, buffers of 2 to 8
#: flits, banks small enough that layers need passes and on-fabric reduction.
CONFIGS: dict[str, Config] = {
    "compact-1x1": Config(rows=1, cols=1, data_width=8, acc_width=24, act_depth=64,
                          acc_depth=16),
    "compact-2x2": Config(rows=2, cols=2, data_width=8, acc_width=24, act_depth=32,
                          acc_depth=16),
    "compact-4x4": Config(),
    "compact-8x8": Config(rows=8, cols=8, data_width=8, acc_width=24, act_depth=64,
                          acc_depth=32),
    "parallel-4x4": Config(rows=4, cols=4, data_width=8, acc_width=24, act_depth=64,
                           acc_depth=32, router_arch="parallel", num_vcs=4, buffer_depth=8),
    "parallel-3x5": Config(rows=3, cols=5, data_width=8, acc_width=24, act_depth=16,
                           acc_depth=16, router_arch="parallel"),
    "lite-4x4": Config(rows=4, cols=4, data_width=8, acc_width=24, act_depth=64, acc_depth=16,
                       router_arch="lite"),
    "lite-2x3-p2": Config(rows=2, cols=3, data_width=8, acc_width=24, act_depth=16,
                          acc_depth=16, router_arch="lite", phits=2, buffer_depth=2),
    "lite-4x4-p4": Config(rows=4, cols=4, act_depth=128, acc_depth=64, router_arch="lite",
                          phits=4, buffer_depth=2),
    "lite-8x8-p4": Config(rows=8, cols=8, act_depth=64, acc_depth=32, router_arch="lite",
                          phits=4, buffer_depth=2),
    "compact-3x2-v4": Config(rows=3, cols=2, data_width=8, acc_width=24, act_depth=16,
                             acc_depth=16, num_vcs=4, buffer_depth=2),
    "compact-5x1": Config(rows=5, cols=1, data_width=8, acc_width=24, act_depth=64,
                          acc_depth=16),
    "parallel-1x4": Config(rows=1, cols=4, data_width=8, acc_width=24, act_depth=16,
                           acc_depth=16, router_arch="parallel"),
    "lite-3x3-p3": Config(rows=3, cols=3, data_width=8, acc_width=24, act_depth=32,
                          acc_depth=16, router_arch="lite", phits=3, buffer_depth=2),
    "lite-2x4-p2-v3": Config(rows=2, cols=4, data_width=8, acc_width=24, act_depth=16,
                             acc_depth=32, router_arch="lite", phits=2, buffer_depth=4,
                             num_vcs=3),
    "voq-3x3": Config(rows=3, cols=3, data_width=8, acc_width=24, act_depth=32, acc_depth=16,
                      router_arch="voq"),
    "voq-4x4-d2": Config(rows=4, cols=4, data_width=8, acc_width=24, act_depth=64,
                         acc_depth=16, router_arch="voq", buffer_depth=2),
    "voq-2x5-v3": Config(rows=2, cols=5, data_width=8, acc_width=24, act_depth=16,
                         acc_depth=16, router_arch="voq", num_vcs=3, buffer_depth=4),
}


@dataclass(frozen=True)
class LayerCase:
    """A random layer: X is ``batch x inputs``, W ``outputs x inputs`` at ``density``;
    ``skew > 0`` makes the outputs' densities uneven (output ``i`` keeps its weights with
    probability ``u_i ** skew``, ``u`` uniform)."""

    batch: int
    outputs: int
    inputs: int
    density: float
    seed: int
    skew: float = 0.0
    tag: str = ""

    def arrays(self, config: Config) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        x = rng.integers(config.data_min, config.data_max + 1, (self.batch, self.inputs))
        w = rng.integers(config.data_min, config.data_max + 1, (self.outputs, self.inputs))
        keep = np.full(self.outputs, self.density)
        if self.skew:  # the same mean density (u ** skew has mean 1 / (skew + 1))
            keep = np.minimum(1.0, keep * (self.skew + 1) * rng.random(self.outputs)
                              ** self.skew)
        w[rng.random(w.shape) >= keep[:, None]] = 0
        x[rng.random(x.shape) < 0.1] = 0  # some zero activations: skipped MACs
        return x, w

    def label(self) -> str:
        text = (f"{self.batch}x{self.inputs} @ {self.outputs}x{self.inputs}.T, "
                f"density {self.density:g}")
        return text + (f", skew {self.skew:g}" if self.skew else "") + \
            (f" ({self.tag})" if self.tag else "")


@dataclass(frozen=True)
class NetworkCase:
    """A random network of ``sizes`` (inputs, hidden..., outputs) at ``density``, on
    ``batch`` inputs."""

    sizes: tuple[int, ...]
    density: float
    batch: int
    seed: int

    def build(self, config: Config):
        from ..network.model import Layer, Network

        rng = np.random.default_rng(self.seed)
        layers = []
        for n in range(len(self.sizes) - 1):
            J, I = self.sizes[n], self.sizes[n + 1]
            w = rng.integers(config.data_min, config.data_max + 1, (I, J))
            w[rng.random(w.shape) >= self.density] = 0
            b = rng.integers(-(1 << (config.data_width + 2)), 1 << (config.data_width + 2), I)
            if n == len(self.sizes) - 2:
                layers.append(Layer(w, b))
                continue
            shift = config.data_width + int(np.log2(max(J, 1))) + 2
            mult = np.full(I, int(rng.integers(1 << 12, 1 << 15)))
            layers.append(Layer(w, b, mult, np.full(I, shift), True))
        net = Network(layers, config.data_width, name="validation")
        x = rng.integers(config.data_min, config.data_max + 1, (self.batch, self.sizes[0]))
        return net, x

    def label(self) -> str:
        return (f"network {'-'.join(map(str, self.sizes))}, density {self.density:g}, "
                f"{self.batch} inputs")


def layer_cases(config: Config, count: int, seed: int) -> list[LayerCase]:
    """``count`` random layers for ``config`` (at least one each: dense, 1%, passes,
    reduction when the row can be split, several batch groups, uneven outputs), seeded."""
    rng = np.random.default_rng(seed)
    R, C, A, D = config.rows, config.cols, config.act_depth, config.acc_depth
    jmax = A * C
    cases: list[LayerCase] = []

    def pick(lo: int, hi: int) -> int:
        return int(rng.integers(lo, max(lo, hi) + 1))

    def add(b, i, j, d, skew=0.0, tag=""):
        cases.append(LayerCase(b, max(1, i), max(1, min(j, jmax)), float(d),
                               int(rng.integers(1 << 30)), skew, tag))

    limit = 160  # outputs: keeps a dense 8 x 8 run in seconds
    add(R, pick(8, min(limit, 2 * D)), pick(8, min(A, 96)), 1.0, tag="dense")
    add(R, pick(16, limit), pick(16, min(A, 128)), 0.01, tag="1%")
    add(R, min(limit, D * C + pick(1, D)), pick(4, min(A, 48)), 0.3, tag="passes")
    if C > 1:
        add(R, pick(4, min(limit, 3 * D)), pick(A + 1, min(jmax, 3 * A)), 0.2,
            tag="reduction")
    add(2 * R + pick(0, R), pick(4, 64), pick(4, min(A, 64)), 0.1, tag="batch groups")
    add(R, pick(8, limit), pick(8, min(A, 128)), 0.2, skew=3.0, tag="uneven outputs")
    while len(cases) < count:
        j = pick(1, min(jmax, 4 * A, 256))
        add(pick(1, 2 * R), pick(1, limit), j,
            float(rng.choice([0.01, 0.03, 0.1, 0.3, 0.6, 1.0])),
            skew=float(rng.choice([0.0, 0.0, 1.0, 3.0])))
    return cases[:count]


def network_cases(seed: int) -> list[NetworkCase]:
    """Small networks (hand-offs between layers; some need passes or reduction on the small
    configurations), seeded."""
    return [NetworkCase((12, 16, 14, 10, 6), 0.4, 5, seed),
            NetworkCase((20, 30, 9), 0.3, 4, seed + 1),
            NetworkCase((10, 12, 12), 0.6, 3, seed + 2)]


@dataclass
class PairResult:
    """One (configuration, workload) pair: measured and predicted cycles per phase."""

    config: str
    router_arch: str
    phits: int
    size: str
    workload: str
    kinds: list[str]
    rtl: list[int]
    model: list[int]
    analytic: list[int]
    methods: list[str]
    model_seconds: float
    rtl_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> float:
        """Relative error of the predicted total cycles."""
        return (sum(self.model) - sum(self.rtl)) / sum(self.rtl)

    @property
    def analytic_error(self) -> float:
        return (sum(self.analytic) - sum(self.rtl)) / sum(self.rtl)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(error=self.error, analytic_error=self.analytic_error)
        return out


def _programs(config: Config, workloads: list) -> list[tuple[str, Any]]:
    from ..network.compiler import compile_network
    from ..network.model import NetworkError

    out = []
    for case in workloads:
        try:
            if isinstance(case, NetworkCase):
                net, x = case.build(config)
                out.append((case.label(), compile_network(config, net, x)))
            else:
                x, w = case.arrays(config)
                out.append((case.label(), compile_layer(config, x, w)))
        except (LayerError, NetworkError):
            continue  # a workload this configuration cannot run
    return out


def measure_pairs(name: str, config: Config, workloads: list, *, build_root=None,
                  log=None) -> list[PairResult]:
    """Compile ``workloads`` for ``config``, play them on Verilator (one harness build,
    cached) and predict them; the workloads the configuration cannot run are left out."""
    from ..run import simulate

    programs = _programs(config, workloads)
    if not programs:
        return []
    start = time.perf_counter()
    sim = simulate(config, [p for _, p in programs], sim="verilator", build_root=build_root)
    rtl_seconds = sim.seconds.get("simulate", time.perf_counter() - start)
    out = []
    for (label, program), (_, stats) in zip(programs, sim.results, strict=True):
        t0 = time.perf_counter()
        auto = predict_program(config, program)
        seconds = time.perf_counter() - t0
        analytic = predict_program(config, program, detail="analytic")
        result = PairResult(
            name, config.router_arch, config.phits, f"{config.rows}x{config.cols}", label,
            [p.kind for p in program.phases], [int(c) for c in stats["phase_cycles"]],
            auto.phase_cycles, analytic.phase_cycles, auto.methods, seconds,
            rtl_seconds / len(programs))
        out.append(result)
        if log is not None:
            log(result)
    return out


def compare(pairs: list[PairResult], *, analytic: bool = False) -> dict[str, float]:
    """Mean and max absolute relative error of the predicted total cycles over ``pairs``."""
    errors = np.abs([p.analytic_error if analytic else p.error for p in pairs])
    return {"pairs": len(pairs), "mean": float(errors.mean()) if len(errors) else 0.0,
            "max": float(errors.max()) if len(errors) else 0.0}


def summarize(pairs: list[PairResult]) -> dict[str, Any]:
    """The errors overall, per router micro-architecture (and phits), per phase kind (each
    pair's cycles of that kind summed), for the model and for the analytic level alone."""
    out: dict[str, Any] = {"model": compare(pairs), "analytic": compare(pairs, analytic=True)}
    groups: dict[str, list[PairResult]] = {}
    for p in pairs:
        key = p.router_arch + (f" {p.phits} phits" if p.router_arch == "lite" else "")
        groups.setdefault(key, []).append(p)
    out["by_router"] = {k: {"model": compare(v), "analytic": compare(v, analytic=True)}
                        for k, v in groups.items()}
    kinds: dict[str, dict[str, list[float]]] = {}
    for p in pairs:
        for kind in dict.fromkeys(p.kinds):
            r = sum(c for k, c in zip(p.kinds, p.rtl, strict=True) if k == kind)
            m = sum(c for k, c in zip(p.kinds, p.model, strict=True) if k == kind)
            a = sum(c for k, c in zip(p.kinds, p.analytic, strict=True) if k == kind)
            entry = kinds.setdefault(kind, {"model": [], "analytic": []})
            entry["model"].append(abs(m - r) / r)
            entry["analytic"].append(abs(a - r) / r)
    out["by_kind"] = {k: {level: {"pairs": len(v[level]), "mean": float(np.mean(v[level])),
                                  "max": float(np.max(v[level]))} for level in v}
                      for k, v in kinds.items()}
    return out


def attention_estimate(rows: int, cols: int, T: int, heads: int, D: int,
                       rng: np.random.Generator) -> tuple[dict[str, int], dict[str, int]]:
    """The attention's cycles per step (:data:`~wafertile.stream.attention.STEPS`) on a
    ``rows x cols`` bf16 array, ``T`` positions, ``heads`` heads of ``D``: at the event
    level, on the compiled attention of random normal ``q``, ``k``, ``v`` (every activation
    nonzero), and as the wafer model estimates them (:func:`~.wafer.attention_phases`)."""
    cfg = Config(rows=rows, cols=cols, dtype="bf16", nonlinear=True, act_depth=1024,
                 acc_depth=512)
    layout = AttentionLayout(cfg, T, heads, D)
    q, k, v = (rng.normal(0, 1, (T, heads * D)).astype(np.float32).view(np.uint32)
               for _ in range(3))
    program, labels = attention_program(layout, q, k, v)
    table = np.ones((rows * cols, cfg.act_depth), bool)
    nonzero = {i: table for i, p in enumerate(program.phases) if p.kind == "stream"}
    pred = predict_program(cfg, program, nonzero=nonzero, detail="mesh")
    event = {n: int(sum(c for c, lab in zip(pred.phase_cycles, labels, strict=True)
                        if lab == n)) for n in STEPS}
    shape = GptShape("t", layers=1, d_model=heads * D, heads=heads, d_ff=4, context=T,
                     vocab=4)
    est = {n: int(c) for n, c, _, _ in attention_phases(shape, Fabric(rows, cols), T,
                                                        Timing(cfg))}
    return event, est


def attention_grad_estimate(rows: int, cols: int, T: int, heads: int, D: int,
                            sequences: int = 1) -> tuple[dict[str, int], dict[str, int]]:
    """The cycles per step of a training step's attention derivative and the forward pass's
    keeping hand-offs (``"kept"``, then :data:`~wafertile.stream.attention.GRAD_STEPS`) on
    a ``rows x cols`` bf16 array, ``sequences`` of ``T`` positions, ``heads`` heads of
    ``D``: at the event level, on the compiled phases of a training step's layout
    (:func:`~wafertile.stream.attention.attention_keep_phases`,
    :func:`~wafertile.stream.attention.attention_grad_steps`, every activation and every
    word a ``FINISH`` sends nonzero), and as the wafer model estimates them
    (:func:`~.wafer.attention_grad_phases`)."""
    cfg = Config(rows=rows, cols=cols, dtype="bf16", nonlinear=True, act_depth=1024,
                 acc_depth=512)
    layout = AttentionLayout(cfg, T, heads, D, sequences, act=0,
                             do=cfg.act_depth - heads * D)
    steps = [("kept", attention_keep_phases(layout)), *attention_grad_steps(layout)]
    phases = [p for _, ps in steps for p in ps]
    labels = [name for name, ps in steps for _ in ps]
    program = LayerProgram(cfg, (rows, 1, 0), phases, 0, 0)
    table = np.ones((rows * cols, cfg.act_depth), bool)
    nonzero = {i: table for i, p in enumerate(phases) if p.kind in ("stream", "reduce")}
    pred = predict_program(cfg, program, nonzero=nonzero, detail="mesh")
    event = {n: int(sum(c for c, lab in zip(pred.phase_cycles, labels, strict=True)
                        if lab == n)) for n in ("kept", *GRAD_STEPS)}
    shape = GptShape("t", layers=1, d_model=heads * D, heads=heads, d_ff=4, context=T,
                     vocab=4)
    est = {n: int(c) for n, c, _, _ in attention_grad_phases(shape, Fabric(rows, cols), T,
                                                             Timing(cfg))}
    return event, est
