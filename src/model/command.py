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
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..errors import InputError
from ..files import gib_text, memory_budget_info
from ..hdl.counters import events_line
from ..run import LEAN_WEIGHTS
from ..stream import compile_layer
from .energy import ENERGY, EnergyTable, program_energy
from .layer import (
    LEAN_FLITS,
    LayerPrediction,
    predict_layer,
    predict_network,
    program_flits,
)
from .predict import DETAILS

__all__ = ["ModelReport", "add_model_flags", "check_layer_memory", "layer_memory",
           "run_model_layer", "run_model_network"]

_log = logging.getLogger(__name__)

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
    group.add_argument("--model-detail", choices=DETAILS, default=None,
                       help="with --fidelity model only: 'mesh' plays every phase through the "
                            "event-level model of the routers and cores (matches the RTL; "
                            "cost grows with tiles x cycles), 'analytic' uses the "
                            "vectorized queue bounds only (seconds at any size), 'auto' the "
                            "mesh where it costs under a minute (default: auto)")


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
    #: a network: the inputs predicted (all of them, or the first ``--images``)
    images: int | None = None
    #: the cycles of the MAC-stream phases (= ``cycles`` for a layer)
    stream_cycles: int | None = None
    #: ``macs / (tiles x stream_cycles)`` (= ``utilization`` for a layer)
    stream_utilization: float | None = None
    #: with ``--counters true``: the events the tiles' counters would count (the sparse
    #: run), per event a list per tile (:mod:`.events`, ``docs/counters.md``)
    events: dict[str, list[int]] | None = None
    #: with the events: the energy priced from them (``energy_j``, ``energy_parts_j``)
    energy: dict[str, Any] | None = None

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
            utilization=macs / (tiles * mine) if mine else 0.0,
            stream_cycles=cycles,
            stream_utilization=macs / (tiles * cycles) if cycles else 0.0,
            dense_cycles=dense_cycles,
            speedup=dense_cycles / mine if dense_cycles and mine else None,
            injection_ports=config.rows, methods=methods, predict_seconds=result.seconds,
            wall_seconds=wall, name=name, images=images or None,
            per_image=None if not images else sparse.total_cycles / images)

    def as_json(self) -> dict[str, Any]:
        out = {"fidelity": "model", "cycles": self.cycles, "total_cycles": self.total_cycles,
               "cycles_by_kind": self.cycles_by_kind, "nnz": self.nnz, "macs": self.macs,
               "utilization": self.utilization, "stream_cycles": self.stream_cycles,
               "stream_utilization": self.stream_utilization,
               "dense_cycles": self.dense_cycles,
               "speedup": self.speedup, "injection_ports": self.injection_ports,
               "methods": self.methods, "predict_seconds": round(self.predict_seconds, 3),
               "wall_seconds": round(self.wall_seconds, 2)}
        if self.per_image is not None:
            out["images"] = self.images
            out["cycles_per_image"] = self.per_image
            out["accuracy"] = self.accuracy
        if self.events is not None:
            out["events"] = self.events
            out.update(self.energy or {})
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
            lines.append(f"network          {self.name}"
                         + (f", {self.images} inputs" if self.images else ""))
        if self.accuracy is not None:
            lines.append(f"accuracy         {100 * self.accuracy:.1f}% (the integer reference, "
                         f"which the fabric computes bit for bit)")
        lines += [
            f"nonzeros         {self.nnz} weights streamed",
            what,
            f"phases           {kinds}",
            f"MACs             {self.macs} done, "
            f"{self.macs / (config.rows * config.cols):.1f} per tile",
            f"utilization      {100 * self.utilization:.1f}% (MACs / (tiles x cycles))"
            + ("" if self.per_image is None else
               f", {100 * self.stream_utilization:.1f}% over the {self.stream_cycles} "
               f"MAC-stream cycles"),
        ]
        if self.dense_cycles is not None:
            lines.append(f"dense stream     {self.dense_cycles} cycles")
            lines.append(f"speedup          {self.speedup:.2f}x from sparsity")
        if self.events is not None:
            lines.append(events_line(self.events, "the model's count", self.energy))
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


def check_countable(config: Config, x: np.ndarray, w: np.ndarray) -> None:
    """With ``config.counters``, refuse (one line) a layer too large to count its events
    (they are counted on the compiled program, at most :data:`LEAN_FLITS` flits)."""
    if not config.counters:
        return
    flits = program_flits(config, (x.shape[0], w.shape[0], w.shape[1]),
                          int(np.count_nonzero(w)))
    if flits > LEAN_FLITS:
        raise InputError(f"counters = true with fidelity model counts the events of the "
                         f"compiled program, at most {LEAN_FLITS} flits; this layer makes "
                         f"about {flits} (leave counters out, or run a smaller layer)")


def run_model_layer(args: argparse.Namespace, config: Config, x: np.ndarray,
                    w: np.ndarray, *, table: EnergyTable = ENERGY) -> int:
    """``wafertile run --fidelity model`` for one layer: predict, print, exit status 0."""
    from ..log import ticking

    start = time.perf_counter()
    check_countable(config, x, w)
    _log.info(f"predicting the layer {x.shape[0]} x {x.shape[1]} @ {w.shape[0]} x "
              f"{w.shape[1]}.T on the {config.rows} x {config.cols} array"
              + ("" if args.no_dense else ", then its dense stream"))
    with ticking(_log, "predicting the layer"):
        result = predict_layer(config, x, w, dense=not args.no_dense, detail=args.model_detail)
        macs = layer_macs(x, w)
    report = ModelReport.make(config, result, macs, wall=time.perf_counter() - start)
    if config.counters:
        _log.info("counting the events (docs/counters.md)")
        _count_events(report, config, table, compile_layer(config, x, w))
    return _print(args, config, report)


def run_model_network(args: argparse.Namespace, config: Config, net, x: np.ndarray,
                      labels: np.ndarray | None = None, *, table: EnergyTable = ENERGY
                      ) -> int:
    """``wafertile run --network ... --fidelity model``: predict, print, exit status 0. With
    ``labels``, the accuracy of the integer reference (the fabric computes it bit for
    bit)."""
    from ..log import ticking
    from ..sim.models.network import network_reference

    start = time.perf_counter()
    _log.info(f"predicting {net.name or 'the network'} on {len(x)} inputs on the "
              f"{config.rows} x {config.cols} array"
              + ("" if args.no_dense else ", then its dense stream"))
    with ticking(_log, "predicting the network"):
        result = predict_network(config, net, x, dense=not args.no_dense,
                                 detail=args.model_detail)
        _log.info("computing the reference outputs (the MACs and the accuracy)")
        outputs, acts = network_reference(config, net, x)
    macs = sum(layer_macs(a, layer.weights) for a, layer in zip(acts, net.layers, strict=True))
    report = ModelReport.make(config, result, macs, wall=time.perf_counter() - start,
                              name=net.name or "network", images=len(x))
    if labels is not None:
        report.accuracy = float(np.mean(np.argmax(outputs, axis=1) == labels))
    if config.counters:
        _log.info("counting the events (docs/counters.md)")
        _count_events(report, config, table, result.program, *result.tables(config, net, x))
    return _print(args, config, report)


def _count_events(report: ModelReport, config: Config, table: EnergyTable, program,
                  nonzero=None, sent=None) -> None:
    """The report's events (:mod:`.events`) and their energy by ``table``."""
    report.events, report.energy = program_energy(config, program, nonzero, table, sent)


#: Bytes per nonzero weight of the performance model's plan of a layer too large to compile
#: in full: 62 measured (peak resident set less the layer) on 8192 x 8192 layers at 10% and
#: 30% density on a 512 x 512 array, and on the 16384 x 16384 wafer-size layer
#: (docs/performance.md).
_PLAN_BYTES = 64
#: Bytes per flit of a compiled program (the compiler's column store).
_FLIT_BYTES = 100
#: Bytes per phase of a prediction (its kind, cycles and method in three lists).
_PHASE_BYTES = 56


def layer_memory(config: Config, *, size: int, batch: int | None, density: float,
                 fidelity: str = "rtl", dense: bool = True) -> list[tuple[str, str, int]]:
    """About how much memory the built-in layer (:func:`~wafertile.run.default_layer`) and
    the work on it take, before anything is made: ``(flag, what, bytes)`` per part, the flag
    being the one whose value sets the part (``"size"`` or ``"batch"``). The layer's arrays at
    their types (with the temporaries of making them), then at ``fidelity`` ``"model"`` the
    model's plan of the nonzero weights (or the compiled programs of a layer small enough
    to compile), at ``"rtl"`` the compiled sparse (and ``dense``) programs."""
    j = min(size, config.act_depth)
    b = config.rows if batch is None else batch
    weights = size * j
    if config.is_float:  # float64 draws, their float32 numbers and the mask
        kind, made, per = "float32", 4, 40
    elif weights > LEAN_WEIGHTS:
        kind = "int8" if config.data_width <= 8 else "int16"
        made = per = 1 if config.data_width <= 8 else 2
    else:  # int64 and a float64 mask of every weight
        kind, made, per = "int64", 8, 17
    parts = [("size", f"W is {size} x {j} {kind} weights", weights * per),
             ("batch", f"X is {b} x {j} {kind} activations", b * j * made)]
    nnz = int(density * weights)
    shape = (b, size, j)
    flits = program_flits(config, shape, nnz)
    dense_flits = program_flits(config, shape, weights) if dense else 0
    if fidelity == "model" and flits > LEAN_FLITS:
        parts.append(("size", f"the model's plan of its {nnz} nonzero weights",
                      nnz * _PLAN_BYTES))
        # a load, stream and read phase per batch group and pass (J <= act_depth: no
        # reduction), each three list entries of the prediction (sparse, and dense)
        groups = -(-b // config.rows)
        passes = -(-size // (config.cols * config.acc_depth))
        phases = 3 * groups * passes
        parts.append(("batch" if groups > passes else "size",
                      f"the model's {phases} predicted phases",
                      phases * _PHASE_BYTES * (2 if dense else 1)))
    else:
        parts.append(("size" if size >= b else "batch",
                      f"the compiled program{'s' if dense else ''} of {flits + dense_flits} "
                      f"flits", (flits + dense_flits) * _FLIT_BYTES))
    return parts


def check_layer_memory(config: Config, *, size: int, batch: int | None, density: float,
                       fidelity: str = "rtl", dense: bool = True) -> None:
    """Refuse a built-in layer that would not fit the memory budget (half of the machine's
    memory, :func:`~wafertile.files.memory_budget_info`), before anything is made: an
    :class:`~wafertile.errors.InputError` naming the flag, the estimate and its parts.

    Raises
    ------
    InputError
        With one line: ``--size 100000000 at --fidelity model needs about 401 GiB of
        memory (W is 100000000 x 512 int16 weights: 95 GiB; ...), more than the memory
        budget of 12 GiB, half of this machine's 24 GiB``.
    """
    parts = layer_memory(config, size=size, batch=batch, density=density,
                         fidelity=fidelity, dense=dense)
    total = sum(n for _, _, n in parts)
    budget, what = memory_budget_info()
    if total <= budget:
        return
    by_flag: dict[str, int] = {}
    for flag, _, n in parts:
        by_flag[flag] = by_flag.get(flag, 0) + n
    flag = max(by_flag, key=by_flag.get)
    value = size if flag == "size" else (config.rows if batch is None else batch)
    detail = "; ".join(f"{text}: {gib_text(n)}" for _, text, n in parts if n >= total / 100)
    raise InputError(f"--{flag} {value} at --fidelity {fidelity} needs about {gib_text(total)} of "
                     f"memory ({detail}), more than the memory budget of {what}")
