"""Running a network on the RTL, and what the report says.

:func:`run_network` compiles the network (sparse, and dense for the speedup), plays both on
the array (:func:`wafertile.run.simulate`: the compiled Verilator harness, or the cocotb
bench on Icarus), and checks every output against the bit-exact reference (integer, or for
a float network FP32 words, any NaN equal to any NaN). The report gives accuracy (with
labels), cycles in all and per image, per layer (MAC stream, hand-off and the rest), MAC
utilization (over all the cycles, and over the MAC-stream phases' cycles), the dense run's
cycles and the speedup, and the flits that cross the array's edge.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..hdl.counters import events_line
from ..run import outputs_and_mismatches, simulate, waves_line
from ..sim.models.network import network_reference
from .compiler import NetworkProgram, compile_network, edge_flits
from .model import Network

__all__ = ["NetworkReport", "per_layer_cycles", "run_network", "run_network_device"]

_log = logging.getLogger(__name__)


@dataclass
class NetworkReport:
    """What ``wafertile run --network`` found (``as_json`` for ``--json``)."""

    passed: bool
    mismatches: int
    images: int
    layers: int
    accuracy: float | None
    float_accuracy: float | None
    #: every cycle of the sparse program (a network's cycles: loading, streams, hand-offs,
    #: read-back); ``total_cycles`` is the same count, under the name a layer's report gives it
    cycles: int | None
    cycles_per_image: float | None
    nnz: int
    macs: int
    #: ``macs / (tiles x cycles)``
    utilization: float | None
    dense_cycles: int | None
    speedup: float | None
    host_flits_in: int
    host_flits_out: int
    handoff_flits: int
    per_layer: list[dict[str, Any]]
    sim: str
    build_dir: str
    wall_seconds: float
    sim_cycles_per_s: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    name: str = ""
    #: the number format (``Config.dtype``)
    dtype: str = "int8"
    #: = ``cycles`` (None on a board)
    total_cycles: int | None = None
    #: the cycles of the MAC-stream phases only (the sum of ``per_layer`` ``stream_cycles``)
    stream_cycles: int | None = None
    #: ``macs / (tiles x stream_cycles)``: how busy the MACs are while weights stream
    stream_utilization: float | None = None
    #: with ``--waves``: the waveform files (:func:`~wafertile.run.waves_files`)
    waves: list[str] | None = None
    #: with ``--counters true``: the tiles' event counters of the sparse run, per event a
    #: list per tile (``docs/counters.md``)
    events: dict[str, list[int]] | None = None
    #: with ``--counters true``: the energy priced from the counters (``energy_j``,
    #: ``energy_parts_j``)
    energy: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.events is None:
            del out["events"]
        out.update(out.pop("energy") or {})
        out["pass"] = out.pop("passed")
        out["wall_seconds"] = round(self.wall_seconds, 2)
        out["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        return out

    def text(self, config: Config) -> str:
        kind = "floating-point" if config.is_float else "integer"
        head = (f"PASS: every output equals the {kind} reference bit for bit" if self.passed
                else f"FAIL: {self.mismatches} outputs differ from the {kind} reference")
        acc = ("" if self.accuracy is None else
               f"accuracy         {100 * self.accuracy:.1f}% on the fabric"
               + ("" if self.float_accuracy is None else
                  f" (float dense model {100 * self.float_accuracy:.1f}%)"))
        lines = [head, f"network          {self.name or 'network'}: {self.layers} layers, "
                 f"{self.nnz} nonzero weights, {self.images} inputs, {self.dtype}"]
        if acc:
            lines.append(acc)
        lines.append(f"array            {config.rows} x {config.cols} tiles, simulated on "
                     f"{self.sim}")
        if self.cycles is not None:
            lines.append(f"cycles           {self.cycles} ({self.cycles_per_image:.1f} per "
                         f"input)")
            lines.append(f"MACs             {self.macs} done; utilization "
                         f"{100 * self.utilization:.1f}% (MACs / (tiles x cycles)), "
                         f"{100 * self.stream_utilization:.1f}% over the {self.stream_cycles} "
                         f"MAC-stream cycles")
            if self.dense_cycles is not None:
                lines.append(f"dense stream     {self.dense_cycles} cycles; speedup "
                             f"{self.speedup:.2f}x from sparsity")
        lines.append(f"edge flits       {self.host_flits_in} in (weights and control), "
                     f"{self.host_flits_out} out (fences and outputs); "
                     f"{self.handoff_flits} hand-off flits stayed on the fabric")
        for n, layer in enumerate(self.per_layer):
            lines.append(f"  layer {n}: {layer['inputs']} -> {layer['outputs']}, "
                         f"{layer['nnz']} nonzeros, stream {layer['stream_cycles']} cycles "
                         f"(ideal {layer['ideal_stream_cycles']}), hand-off "
                         f"{layer['handoff_cycles']}, other {layer['other_cycles']}"
                         + "".join(f", {k} {layer[f'{k}_cycles']}" for k in ("layernorm",
                                                                             "softmax")
                                   if layer[f"{k}_cycles"]))
        if self.waves:
            lines.append(waves_line(self.waves, dense=self.dense_cycles is not None))
        if self.events is not None:
            lines.append(events_line(self.events, "the tiles' counters", self.energy))
        return "\n".join(lines)


def per_layer_cycles(net: Network, program: NetworkProgram, phase_cycles: list[int],
                     config: Config) -> list[dict[str, Any]]:
    """The report's ``per_layer``: each layer's cycles by kind of phase (``phase_cycles``:
    the cycles of each of ``program``'s phases)."""
    out = []
    batches = -(-program.shape[0] // config.rows)
    for n, layer in enumerate(net.layers):
        kinds: dict[str, int] = {}
        steps = {"layernorm": 0, "softmax": 0, "attention": 0, "residual": 0}  # apart
        for k, phase in enumerate(program.phases):
            if program.phase_layer[k] != n:
                continue
            step = program.phase_step[k]
            if step in steps:
                steps[step] += phase_cycles[k]
            else:
                kinds[phase.kind] = kinds.get(phase.kind, 0) + phase_cycles[k]
        out.append({
            "inputs": layer.inputs, "outputs": layer.outputs, "nnz": layer.nnz,
            "stream_cycles": kinds.get("stream", 0),
            # nonzeros / injection ports, once per batch group
            "ideal_stream_cycles": batches * -(-layer.nnz // config.rows),
            "handoff_cycles": kinds.get("handoff", 0),
            "reduce_cycles": kinds.get("reduce", 0),
            "other_cycles": sum(v for k, v in kinds.items() if k not in ("stream", "handoff")),
            # the LayerNorm of the layer's outputs (ln_g{n}), the softmax of the network's
            # outputs (the last layer of a network with softmax = 1)
            "layernorm_cycles": steps["layernorm"],
            "softmax_cycles": steps["softmax"],
            # the attention after the layer (attn{n}: docs/attention.md), from its
            # projection's accumulators to its outputs (their hand-off: handoff_cycles)
            "attention_cycles": steps["attention"],
            # the residual connections: this layer's MACs on the kept outputs it adds
            # (res{n}) and the hand-off that keeps its own outputs for a later layer
            "residual_cycles": steps["residual"],
        })
    return out


def run_network(config: Config, net: Network, x: np.ndarray, *, labels: np.ndarray | None = None,
                sim: str = "verilator", waves: bool = False, dense: bool = True,
                build_root: Path | None = None) -> tuple[NetworkReport, np.ndarray]:
    """Run ``net`` on inputs ``x`` on the RTL; return the report and the outputs (the last
    layer's accumulators, ``B x outputs``)."""
    start = time.perf_counter()
    programs = [compile_network(config, net, x)]  # NetworkError before anything is built
    if dense:
        programs.append(compile_network(config, net, x, dense=True))
    seconds = {"compile": time.perf_counter() - start}
    _log.info(f"{net.name or 'network'}: {len(net.layers)} layers, {net.nnz} nonzero weights, "
              f"{x.shape[0]} inputs on a {config.rows} x {config.cols} array")
    run = simulate(config, programs, sim=sim, waves=waves, build_root=build_root)
    seconds.update(run.seconds)
    t0 = time.perf_counter()
    expected, _ = network_reference(config, net, x)
    seconds["reference"] = time.perf_counter() - t0
    (y, stats), mismatches = outputs_and_mismatches(config, run.results[0], expected)
    dense_ok = not dense or outputs_and_mismatches(config, run.results[1], y)[1] == 0
    cycles = int(stats["total_cycles"])
    stream = int(stats["cycles"])
    macs = int(sum(stats["mac_done"]))
    tiles = config.rows * config.cols
    dense_cycles = int(run.results[1][1]["total_cycles"]) if dense else None
    edges = edge_flits(programs[0])
    report = NetworkReport(
        passed=mismatches == 0 and run.error_flags == 0 and dense_ok, mismatches=mismatches,
        images=int(x.shape[0]), layers=len(net.layers),
        accuracy=None if labels is None else float(np.mean(np.argmax(y, axis=1) == labels)),
        float_accuracy=net.meta.get("float_accuracy"), cycles=cycles,
        cycles_per_image=cycles / x.shape[0], nnz=net.nnz, macs=macs,
        utilization=macs / (tiles * cycles) if cycles else 0.0,
        dense_cycles=dense_cycles,
        speedup=dense_cycles / cycles if dense_cycles and cycles else None,
        host_flits_in=edges["host_flits_in"], host_flits_out=edges["host_flits_out"],
        handoff_flits=edges["handoff_flits"],
        per_layer=per_layer_cycles(net, programs[0], stats["phase_cycles"], config),
        sim=sim, build_dir=str(run.build_dir), wall_seconds=time.perf_counter() - start,
        sim_cycles_per_s=run.cycles_per_s, seconds=seconds, name=net.name, dtype=config.dtype,
        total_cycles=cycles, stream_cycles=stream,
        stream_utilization=macs / (tiles * stream) if stream else 0.0,
        waves=[str(f) for f in run.waves] if waves else None, events=stats.get("events"))
    return report, y


def run_network_device(config: Config, net: Network, x: np.ndarray, port: str, *,
                       labels: np.ndarray | None = None, baud: int = 115200
                       ) -> tuple[NetworkReport, np.ndarray]:
    """Run ``net`` on a board with the UART bridge (``wafertile synth --board``)."""
    from ..device import run_on_device

    start = time.perf_counter()
    program = compile_network(config, net, x)
    _log.info(f"playing {program.flits} frames on {port} at {baud} baud")
    expected, _ = network_reference(config, net, x)
    (y, stats), mismatches = outputs_and_mismatches(
        config, run_on_device(config, program, port, baud=baud), expected)
    edges = edge_flits(program)
    report = NetworkReport(
        passed=mismatches == 0 and stats["flags"] == 0, mismatches=mismatches,
        images=int(x.shape[0]), layers=len(net.layers),
        accuracy=None if labels is None else float(np.mean(np.argmax(y, axis=1) == labels)),
        float_accuracy=net.meta.get("float_accuracy"), cycles=None, cycles_per_image=None,
        nnz=net.nnz, macs=int(stats["macs"]), utilization=None, dense_cycles=None,
        speedup=None, host_flits_in=edges["host_flits_in"],
        host_flits_out=edges["host_flits_out"], handoff_flits=edges["handoff_flits"],
        per_layer=[], sim=f"device:{port}", build_dir="",
        wall_seconds=time.perf_counter() - start, name=net.name, dtype=config.dtype)
    return report, y
