"""What a Dask worker runs for one point: :func:`run_point`, which returns the point's row.

A point never raises: whatever goes wrong (a layer that does not fit the array, a build
that fails, a tool that is missing, a result that differs from numpy) becomes a row with
``status = "error"`` and the exception in one line, and the sweep goes on. The code of each
(measurement, fidelity) is one function of :data:`MEASURE`; a new measurement or fidelity
(:mod:`wafertile.sweep.measures`) adds one.

When it starts, a point announces itself on the Dask event topic :data:`START_TOPIC` (the
driver shows the slowest running point from these); outside a Dask worker it does not.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import error_text
from ..hdl.generate import verilog_text
from ..network.run import run_network
from ..run import run_layer
from ..synth.flow import TARGETS, run_synth
from .cache import (
    cache_root,
    design_key,
    locked,
    read_synth,
    synth_dir,
    synth_key,
    tool_versions,
    write_synth,
)
from .measures import derive
from .points import Point
from .workloads import GPT_FABRIC

__all__ = ["MEASURE", "START_TOPIC", "derive_point", "run_point"]

#: The Dask event topic on which a point says that it started (``{"id": ...}``).
START_TOPIC = "wafertile-sweep-start"

Arrays = tuple[np.ndarray, np.ndarray]


def _announce(point: Point) -> None:
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):  # not on a Dask worker
        return
    worker.log_event(START_TOPIC, {"id": point.id})


def run_point(point: Point, arrays: Arrays | None = None, cache: str | None = None,
              after: Any = None) -> dict[str, Any]:
    """Take ``point``'s measurement; return its row (never raises for the point's own
    failures).

    Parameters
    ----------
    point : Point
        The point.
    arrays : tuple of numpy.ndarray, optional
        ``(X, W)`` of a layer-file workload (read by the driver).
    cache : str, optional
        The cache root (:func:`wafertile.sweep.cache.cache_root`); default the worker's.
    after : object, optional
        Not used: the driver passes the previous point of the same design here, so that Dask
        runs a design's points one after the other (see :mod:`wafertile.sweep.driver`).

    Returns
    -------
    dict
        The row: the point's columns, the measurement's figures, ``status`` (``ok`` or
        ``error``), ``error``, ``cached``, ``seconds``, ``worker``, ``finished``.
    """
    _announce(point)
    start = time.perf_counter()
    row = point.columns()
    try:
        measure = MEASURE[(point.measurement, point.fidelity)]
        row.update(measure(point, arrays, cache_root(cache)))
        row["status"] = "ok"
    except _Failed as exc:  # a wrong result: the figures stay in the row
        row.update(exc.figures)
        row["status"] = "error"
        row["error"] = str(exc)
    except Exception as exc:  # the point failed; the sweep goes on
        row["status"] = "error"
        row["error"] = error_text(exc)
    row["seconds"] = round(time.perf_counter() - start, 2)
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    row["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return row


class _Failed(Exception):
    """A measurement that finished with a wrong result: its figures are kept in the row."""

    def __init__(self, message: str, figures: dict[str, Any]) -> None:
        super().__init__(message)
        self.figures = figures


def _run_rtl(point: Point, arrays: Arrays | None, root: Path) -> dict[str, Any]:
    """``run`` at fidelity ``rtl``: :func:`wafertile.run.run_layer` (a layer) or
    :func:`wafertile.network.run.run_network` (a network) on Verilator."""
    config = point.config
    extra: dict[str, Any] = {}
    if point.workload.kind == "network":
        net, x, labels = arrays
        if net.data_width != config.data_width:
            raise ValueError(f"network {point.workload.network!r} has {net.data_width}-bit "
                             f"weights, the configuration data_width {config.data_width}")
    else:
        x, w = point.workload.layer(config, arrays)
    # run_layer builds and runs in one directory per design: one point of a design at a time.
    with locked(root, design_key("run-verilator", config)):
        started = time.time()
        if point.workload.kind == "network":
            report, _ = run_network(config, net, x, labels=labels, sim="verilator",
                                    dense=point.options["dense"], build_root=root / "builds")
            extra = {"accuracy": report.accuracy, "cycles_per_input": report.cycles_per_image,
                     "total_cycles": report.total_cycles,
                     "stream_cycles": report.stream_cycles,
                     "stream_utilization": report.stream_utilization}
        else:
            report, _ = run_layer(config, x, w, sim="verilator", dense=point.options["dense"],
                                  build_root=root / "builds")
            # a layer's cycles are its weight stream's: stream_* repeat cycles, utilization
            extra = {"total_cycles": report.total_cycles,
                     "cycles_per_input": report.cycles / len(x) if report.cycles else None,
                     "stream_cycles": report.cycles,
                     "stream_utilization": report.utilization}
    # The harness binary is rebuilt only when its sources change: older than this point
    # means the build was reused.
    exe = Path(report.build_dir) / "obj" / "harness"
    if config.counters:  # the run's energy from the tiles' counters (docs/counters.md)
        from ..model.energy import price_report

        price_report(report, config)
        extra["energy_j"] = report.energy["energy_j"]
    figures = {"passed": report.passed, "mismatches": report.mismatches, "nnz": report.nnz,
               "macs": report.macs, "cycles": report.cycles, "dense_cycles": report.dense_cycles,
               "speedup": report.speedup, "utilization": report.utilization,
               "cached": exe.exists() and exe.stat().st_mtime < started, **extra}
    if not report.passed:
        raise _Failed(f"FAIL: {report.mismatches} outputs differ from numpy (or an error "
                      f"flag is set); build in {report.build_dir}", figures)
    return figures


def _run_model(point: Point, arrays: Arrays | None, root: Path) -> dict[str, Any]:
    """``run`` at fidelity ``model``: :func:`wafertile.model.predict_layer` or
    :func:`~wafertile.model.predict_network`, the cycles predicted without the RTL (no
    build, no lock; nothing to check against numpy: ``passed`` stays empty; a network's
    ``accuracy`` is its integer reference's, which the fabric computes bit for bit)."""
    from ..model.command import check_countable, layer_macs
    from ..model.layer import predict_layer, predict_network

    config = point.config
    dense = point.options["dense"]
    if point.workload.kind == "network":
        from ..sim.models.network import network_reference

        net, x, labels = arrays
        result = predict_network(config, net, x, dense=dense)
        outputs, acts = network_reference(config, net, x)
        macs = sum(layer_macs(a, layer.weights) for a, layer in zip(acts, net.layers,
                                                                     strict=True))
        # the fabric computes the integer reference bit for bit (tests/test_network.py)
        accuracy = None if labels is None else \
            float(np.mean(np.argmax(outputs, axis=1) == labels))
    else:
        x, w = point.workload.layer(config, arrays)
        check_countable(config, x, w)
        result = predict_layer(config, x, w, dense=dense)
        macs = layer_macs(x, w)
        accuracy = None
    energy = None
    if config.counters:  # the events the tiles would count, priced (docs/counters.md)
        from ..model.energy import program_energy
        from ..stream import compile_layer

        if point.workload.kind == "network":
            nonzero, sent = result.tables(config, net, x)
            energy = program_energy(config, result.program, nonzero, sent=sent)[1]
        else:
            energy = program_energy(config, compile_layer(config, x, w))[1]
    sparse, full = result.sparse, result.dense
    stream = sparse.cycles  # the MAC-stream phases
    network = point.workload.kind == "network"
    dense_cycles = None if full is None else (full.total_cycles if network else full.cycles)
    # as at rtl: a network's cycles are its whole program's, a layer's its weight stream's
    mine = sparse.total_cycles if network else stream
    tiles = config.rows * config.cols
    return {"nnz": result.nnz, "macs": macs, "cycles": mine,
            "total_cycles": sparse.total_cycles, "dense_cycles": dense_cycles,
            "speedup": dense_cycles / mine if dense_cycles and mine else None,
            "utilization": macs / (tiles * mine) if mine else 0.0,
            "stream_cycles": stream,
            "stream_utilization": macs / (tiles * stream) if stream else 0.0,
            "cycles_per_input": mine / len(x) if mine else None, "cached": False,
            "accuracy": accuracy, "model_methods": " ".join(sorted(set(sparse.methods))),
            **({"energy_j": energy["energy_j"]} if energy else {})}


def _synth_rtl(point: Point, arrays: Arrays | None, root: Path) -> dict[str, Any]:
    """``synth`` at fidelity ``rtl``: :func:`wafertile.synth.flow.run_synth`, cached; mode
    ``tile`` scales one tile's figures to the array."""
    opts, config = point.options, point.config
    block = "tile" if opts["mode"] == "tile" else "array"
    tools = tool_versions(TARGETS[opts["target"]].family)
    key = synth_key(block, config, verilog_text(block, config), opts, tools)
    with locked(root, f"synth-{key}"):
        report = read_synth(root, key)
        cached = report is not None
        if report is None:
            timeout = None if opts["pnr_timeout"] == 0 else opts["pnr_timeout"] * 60
            report = run_synth(block, config, opts["target"], freq=float(opts["freq"]),
                               build_dir=synth_dir(root, key) / "build", seed=opts["seed"],
                               router=opts["router"], pnr_timeout=timeout).as_json()
            write_synth(root, key, report)
    used = {k: report[k] for k in ("luts", "ffs", "brams", "dsps")}
    note = report["message"]
    if block == "tile":
        n = config.rows * config.cols
        used = {"luts": n * (used["luts"] - report["shell_luts"]),
                "ffs": n * (used["ffs"] - report["shell_ffs"]),
                "brams": n * used["brams"], "dsps": n * used["dsps"]}
        one = report["luts"] - report["shell_luts"], report["ffs"] - report["shell_ffs"]
        note = (f"estimate: {n} x one tile ({one[0]} LUT4, {one[1]} FFs, {report['brams']} "
                f"BRAM, {report['dsps']} DSP), fmax of the tile placed and routed alone"
                + (f"; tile: {report['message']}" if report["message"] else ""))
    available = report["available"]
    fits = report["fits"] and all(used[k] <= available[k] for k in used)
    fmax = report["fmax_mhz"]
    return {**used, "target": report["target"], "freq_mhz": report["freq_mhz"],
            "lut_share": round(used["luts"] / available["luts"], 4), "fits": fits,
            "fmax_mhz": fmax, "meets_timing": None if fmax is None else fmax >= report["freq_mhz"],
            "synth_note": note, "tools": ", ".join(f"{k} {v}" for k, v in tools.items()),
            "cached": cached}


def _train_model(point: Point, arrays: Any, root: Path) -> dict[str, Any]:
    """``train`` at fidelity ``model``: :func:`wafertile.model.wafer.predict_training` of the
    workload's GPT (``arrays``: its shape, read by the driver) on the point's array."""
    from ..model.wafer import Fabric, predict_training

    config, w = point.config, point.workload
    if arrays is None:
        raise ValueError(f"workload {w.name!r}: the GPT's shape was not sent")
    fabric = Fabric.given(config.rows, config.cols, dtype=config.dtype,
                          router_arch=config.router_arch,
                          **{k: getattr(w, k) for k in GPT_FABRIC})
    r = predict_training(arrays, fabric, batch=w.batch, seq=w.seq).as_json()
    return {"parameters": r["parameters"], "step_seconds": r["step_seconds"],
            "compute_seconds": r["compute_seconds"], "tokens_per_s": r["tokens_per_s"],
            "required_stream_gbps": r["required_stream_gbps"],
            "stream_bytes_in": r["stream_bytes_in"], "stream_bytes_out": r["stream_bytes_out"],
            "stream_bound_layers": sum(b == "stream" for b in r["bound"].values()),
            "bytes_per_tile": r["bytes_per_tile"], "memory_fits": r["fits"],
            "recompute": r["recompute"], "energy_j": r["energy_j"], "power_w": r["power_w"],
            "peak_fraction": r["peak_fraction"], "macs": r["macs"], "cached": False,
            "model_methods": " ".join(r["methods"]), "seq": r["seq"], "batch": r["batch"]}


#: The code of each (measurement, fidelity) a worker takes.
MEASURE: dict[tuple[str, str], Callable[[Point, Arrays | None, Path], dict[str, Any]]] = {
    ("run", "rtl"): _run_rtl,
    ("run", "model"): _run_model,
    ("synth", "rtl"): _synth_rtl,
    ("train", "model"): _train_model,
}


def derive_point(point: Point, run: Mapping[str, Any], synth: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """The row of a ``derived`` point from its ``run`` and ``synth`` rows (computed by the
    driver; a missing input makes an error row)."""
    row = point.columns()
    try:
        row.update(derive(run, synth))
        row["status"] = "ok"
    except ValueError as exc:
        row["status"] = "error"
        row["error"] = str(exc)
    row["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return row
