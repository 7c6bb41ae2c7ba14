"""``wafertile run --fidelity model``: the command-line side of the performance model.

The layer or network is checked and compiled exactly as for the RTL, then predicted instead
of simulated (:func:`~wafertile.model.layer.predict_layer`,
:func:`~wafertile.model.layer.predict_network`); no Verilog is generated. The report has the
RTL run's figures that do not need the outputs' values: cycles (stream and total, per phase
kind), MACs, utilization, the dense stream predicted the same way and the speedup.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from .layer import LayerPrediction, predict_layer, predict_network
from .predict import DETAILS

__all__ = ["ModelReport", "add_model_flags", "run_model_layer", "run_model_network"]

#: The fidelities of ``wafertile run``.
FIDELITIES = ("rtl", "model")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--fidelity`` options of ``wafertile run``."""
    group = parser.add_argument_group(
        "fidelity", "simulate the RTL, or predict the cycles with the performance model "
                    "(docs/performance.md)")
    group.add_argument("--fidelity", choices=FIDELITIES, default="rtl",
                       help="rtl: generate, build and simulate the array; model: predict "
                            "the cycles of every phase without the RTL, in seconds up to "
                            "wafer-size arrays (no outputs: no --out, --waves, --device) "
                            "(default: %(default)s)")
    group.add_argument("--model-detail", choices=DETAILS, default="auto",
                       help="with --fidelity model: 'mesh' plays every phase through the "
                            "event-level model of the routers and cores (matches the RTL; "
                            "cost grows with tiles x cycles), 'analytic' uses the "
                            "vectorized queue bounds only (seconds at any size), 'auto' the "
                            "mesh where it costs under a minute (default: %(default)s)")


@dataclass
class ModelReport:
    """What ``wafertile run --fidelity model`` predicts (``as_json`` for ``--json``)."""

    cycles: int
    total_cycles: int
    cycles_by_kind: dict[str, int]
    nnz: int
    macs: int
    utilization: float
    dense_cycles: int | None
    speedup: float | None
    injection_ports: int
    methods: list[str]
    predict_seconds: float
    wall_seconds: float
    name: str = ""
    per_image: float | None = None
    #: a network with labels: the integer reference's accuracy
    accuracy: float | None = None

    @classmethod
    def make(cls, config: Config, result: LayerPrediction, macs: int, *, wall: float,
             name: str = "", images: int | None = None) -> ModelReport:
        """The report of ``result``; ``macs``: the MACs that update an accumulator."""
        sparse, dense = result.sparse, result.dense
        tiles = config.rows * config.cols
        cycles = sparse.cycles
        dense_cycles = None if dense is None else (dense.total_cycles if images else
                                                    dense.cycles)
        mine = sparse.total_cycles if images else cycles
        methods = sorted(set(sparse.methods) | (set(dense.methods) if dense else set()))
        return cls(
            cycles=mine, total_cycles=sparse.total_cycles,
            cycles_by_kind=sparse.cycles_by_kind, nnz=result.nnz, macs=macs,
            utilization=macs / (tiles * cycles) if cycles else 0.0,
            dense_cycles=dense_cycles,
            speedup=dense_cycles / mine if dense_cycles and mine else None,
            injection_ports=config.rows, methods=methods, predict_seconds=result.seconds,
            wall_seconds=wall, name=name,
            per_image=None if not images else sparse.total_cycles / images)

    def as_json(self) -> dict[str, Any]:
        out = {"fidelity": "model", "cycles": self.cycles, "total_cycles": self.total_cycles,
               "cycles_by_kind": self.cycles_by_kind, "nnz": self.nnz, "macs": self.macs,
               "utilization": self.utilization, "dense_cycles": self.dense_cycles,
               "speedup": self.speedup, "injection_ports": self.injection_ports,
               "methods": self.methods, "predict_seconds": round(self.predict_seconds, 3),
               "wall_seconds": round(self.wall_seconds, 2)}
        if self.per_image is not None:
            out["cycles_per_image"] = self.per_image
            out["accuracy"] = self.accuracy
        return out

    def text(self, config: Config) -> str:
        how = ", ".join(self.methods)
        kinds = ", ".join(f"{k} {v}" for k, v in self.cycles_by_kind.items())
        what = (f"cycles           {self.cycles} ({self.per_image:.1f} per input)"
                if self.per_image is not None else
                f"cycles           {self.cycles} (weight stream; {self.total_cycles} with "
                f"loading and read-back)")
        lines = [
            f"MODEL: predicted by the performance model ({how}); no RTL simulated",
            f"array            {config.rows} x {config.cols} tiles, {self.injection_ports} "
            f"injection ports, {config.router_arch} router"
            + (f" ({config.phits} phits)" if config.phits > 1 else ""),
        ]
        if self.name:
            lines.append(f"network          {self.name}")
        if self.accuracy is not None:
            lines.append(f"accuracy         {100 * self.accuracy:.1f}% (the integer reference, "
                         f"which the fabric computes bit for bit)")
        lines += [
            f"nonzeros         {self.nnz} weights streamed",
            what,
            f"phases           {kinds}",
            f"MACs             {self.macs} done, "
            f"{self.macs / (config.rows * config.cols):.1f} per tile",
            f"utilization      {100 * self.utilization:.1f}% (MACs / (tiles x stream "
            f"cycles))",
        ]
        if self.dense_cycles is not None:
            lines.append(f"dense stream     {self.dense_cycles} cycles")
            lines.append(f"speedup          {self.speedup:.2f}x from sparsity")
        return "\n".join(lines)


def _print(args: argparse.Namespace, config: Config, report: ModelReport) -> int:
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.text(config))
        print(f"(predicted in {report.wall_seconds:.1f} s)")
    return 0


def layer_macs(x: np.ndarray, w: np.ndarray) -> int:
    """MACs that update an accumulator: a nonzero weight times a nonzero activation, summed
    over the inputs ``j`` without a ``B x I`` product."""
    return int(np.dot(np.count_nonzero(w, axis=0).astype(np.int64),
                      np.count_nonzero(x, axis=0).astype(np.int64)))


def run_model_layer(args: argparse.Namespace, config: Config, x: np.ndarray,
                    w: np.ndarray) -> int:
    """``wafertile run --fidelity model`` for one layer: predict, print, exit status 0."""
    start = time.perf_counter()
    result = predict_layer(config, x, w, dense=not args.no_dense, detail=args.model_detail)
    report = ModelReport.make(config, result, layer_macs(x, w),
                              wall=time.perf_counter() - start)
    return _print(args, config, report)


def run_model_network(args: argparse.Namespace, config: Config, net, x: np.ndarray,
                      labels: np.ndarray | None = None) -> int:
    """``wafertile run --network ... --fidelity model``: predict, print, exit status 0. With
    ``labels``, the accuracy of the integer reference (the fabric computes it bit for
    bit)."""
    from ..sim.models.network import network_reference

    start = time.perf_counter()
    result = predict_network(config, net, x, dense=not args.no_dense, detail=args.model_detail)
    outputs, acts = network_reference(config, net, x)
    macs = sum(layer_macs(a, layer.weights) for a, layer in zip(acts, net.layers, strict=True))
    report = ModelReport.make(config, result, macs, wall=time.perf_counter() - start,
                              name=net.name or "network", images=len(x))
    if labels is not None:
        report.accuracy = float(np.mean(np.argmax(outputs, axis=1) == labels))
    return _print(args, config, report)
