"""What a sweep can measure at each point: the measurements, their options, the fidelities
they run at, the table columns they fill, and the derived figures.

One registry, :data:`MEASUREMENTS`, says everything the spec, the table and the docs need to
know about a measurement; :mod:`wafertile.sweep.tasks` holds the code that takes it. A new
measurement (a network run, power, ...) or a new fidelity (``"model"``, the performance
model of issue 13 items 4-5) is an entry here plus a function there:

- ``run``: the workload weight-streamed through the array's RTL (Verilator;
  :func:`wafertile.run.run_layer`, or :func:`wafertile.network.run.run_network` for a network):
  cycles, MACs, utilization, speedup over the dense stream, accuracy of a network; one row per
  (configuration, workload);
- ``synth``: Yosys and nextpnr (:func:`wafertile.synth.flow.run_synth`): LUT4 sites,
  flip-flops, block RAMs, DSPs, fmax, whether it fits the target; one row per configuration.
  Mode ``tile`` places and routes one tile and multiplies by ``rows x cols``: an estimate,
  marked ``estimate = True``, for arrays too big to place and route in minutes;
- ``derived``: from the ``run`` and ``synth`` rows of the same configuration (and workload):
  time per inference at the measured fmax, MACs per second, and per LUT; computed by the
  driver as soon as both rows exist, never by a worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..synth.flow import TARGETS

__all__ = ["FIDELITIES", "MEASUREMENTS", "Column", "Measurement", "Option", "derive"]

#: The fidelities a measurement can be taken at, with what each means.
FIDELITIES: dict[str, str] = {
    "rtl": "the generated RTL: simulated on Verilator (run), synthesized, placed and routed "
           "with Yosys and nextpnr (synth)",
    "model": "the performance model (wafertile.model): the cycles of run predicted without "
             "the RTL, in seconds up to wafer-size arrays; synth has no model and is taken "
             "at rtl (derived combines the model's run with it)",
}


@dataclass(frozen=True)
class Column:
    """A column of the results table that a measurement fills."""

    name: str
    unit: str
    help: str


@dataclass(frozen=True)
class Option:
    """A key of a measurement's table in the spec (``[run]``, ``[synth]``)."""

    name: str
    kinds: tuple[type, ...]
    default: Any
    rule: str  # as it reads in an error message ("must be ...")
    check: Callable[[Any], bool]
    help: str

    def accepts(self, value: Any) -> bool:
        """True if ``value`` has one of :attr:`kinds` (a bool is no number) and passes the
        check."""
        if isinstance(value, bool) and bool not in self.kinds:
            return False
        return isinstance(value, self.kinds) and self.check(value)


@dataclass(frozen=True)
class Measurement:
    """A measurement a sweep can take at a point.

    Attributes
    ----------
    name : str
        Its name in the spec's ``measure`` list and in the table's ``measurement`` column.
    help : str
        One line for the docs and ``--help``.
    fidelities : tuple of str
        The :data:`FIDELITIES` it can run at.
    per_workload : bool
        One row per (configuration, workload) if True, one per configuration if False (the
        workload columns are then empty).
    needs : tuple of str
        Measurements it is computed from (``derived``: ``run`` and ``synth``); empty for
        measurements that a worker takes.
    options : tuple of Option
        Keys of its table in the spec (``[run]``, ``[synth]``), with defaults.
    columns : tuple of Column
        The table columns it fills.
    """

    name: str
    help: str
    fidelities: tuple[str, ...]
    per_workload: bool
    needs: tuple[str, ...]
    options: tuple[Option, ...]
    columns: tuple[Column, ...]

    def defaults(self) -> dict[str, Any]:
        """Every option at its default."""
        return {o.name: o.default for o in self.options}


def _positive(v: float) -> bool:
    return 0 < v < math.inf


#: ``run`` with ``counters = true`` and ``train`` both give it: one column of the table.
_ENERGY = Column("energy_j", "J", "run with counters = true: the events the tiles count (rtl) "
                                  "or the model counts (model), priced by the default energy "
                                  "table (docs/counters.md); train: the energy of a step "
                                  "(events x the energy table)")

_RUN_COLUMNS = (
    Column("passed", "bool", "Y matched numpy bit for bit, no error flag, dense = sparse"),
    Column("mismatches", "count", "outputs that differ from numpy"),
    Column("nnz", "count", "nonzero weights streamed"),
    Column("macs", "count", "MACs done by the tiles (a zero weight or activation is skipped)"),
    Column("cycles", "cycles", "a layer: clock cycles of the sparse weight stream; a network: "
                               "every cycle of its program (= total_cycles)"),
    Column("total_cycles", "cycles", "every cycle of the sparse program: with loading the "
                                     "activations and reading back Y"),
    Column("dense_cycles", "cycles", "cycles of the same workload streamed dense (every "
                                     "weight), counted as cycles is"),
    Column("speedup", "x", "dense_cycles / cycles: the speedup from sparsity"),
    Column("utilization", "fraction", "macs / (tiles x cycles)"),
    Column("stream_cycles", "cycles", "cycles of the MAC-stream phases only (a layer: = "
                                      "cycles)"),
    Column("stream_utilization", "fraction", "macs / (tiles x stream_cycles): how busy the "
                                             "MACs are while weights stream"),
    Column("cycles_per_input", "cycles", "cycles / batch"),
    Column("accuracy", "fraction", "network workloads with labels: share of inputs classified "
                                   "right by the fabric"),
    Column("model_methods", "", "fidelity model: how the phases were predicted (mesh, exact, "
                                "analytic, bound; docs/performance.md); empty at rtl"),
    _ENERGY,
)

_SYNTH_COLUMNS = (
    Column("target", "", "the FPGA target (ecp5-85k, ecp5-25k, ice40-up5k)"),
    Column("freq_mhz", "MHz", "the clock requested from nextpnr"),
    Column("luts", "LUT4 sites", "LUT4 sites used (ECP5: TRELLIS_COMB; iCE40: logic cells)"),
    Column("ffs", "count", "flip-flops"),
    Column("brams", "count", "block RAMs (ECP5 DP16KD, iCE40 SB_RAM40_4K)"),
    Column("dsps", "count", "multipliers (ECP5 MULT18X18D, iCE40 SB_MAC16)"),
    Column("lut_share", "fraction", "luts / LUT4 sites of the target"),
    Column("fits", "bool", "the design fits the target"),
    Column("fmax_mhz", "MHz", "nextpnr's fmax of clk (empty when not placed and routed)"),
    Column("meets_timing", "bool", "fmax_mhz >= freq_mhz"),
    Column("synth_note", "", "the flow's verdict in words (why it does not fit, what the "
                             "estimate is made of)"),
    Column("tools", "", "Yosys and nextpnr versions (PyPI YoWASP packages)"),
)

_DERIVED_COLUMNS = (
    Column("time_us", "us", "time per inference: cycles / fmax_mhz (the weight stream of the "
                            "workload, its whole batch, at the measured fmax)"),
    Column("total_time_us", "us", "total_cycles / fmax_mhz (with loading and read-back)"),
    Column("inferences_per_s", "1/s", "batch / time_us: inferences (batch rows) per second"),
    Column("macs_per_s", "MAC/s", "macs / time_us: MACs done per second"),
    Column("macs_per_s_per_lut", "MAC/s/LUT", "macs_per_s / luts"),
)

_TRAIN_COLUMNS = (
    Column("parameters", "count", "train: the GPT's parameters"),
    Column("step_seconds", "s", "train: one training step, each layer the longer of its "
                                "fabric time and its stream time (docs/wafer.md)"),
    Column("compute_seconds", "s", "train: the step's fabric cycles alone, at clock_mhz"),
    Column("tokens_per_s", "1/s", "train: tokens of a step / step_seconds"),
    Column("required_stream_gbps", "Gb/s", "train: the highest rate a layer needs to keep the "
                                           "fabric busy"),
    Column("stream_bytes_in", "bytes", "train: flits into the fabric per step, in bytes"),
    Column("stream_bytes_out", "bytes", "train: flits out of the fabric per step, in bytes"),
    Column("stream_bound_layers", "count", "train: layers whose stream takes longer than "
                                           "their cycles"),
    Column("bytes_per_tile", "bytes", "train: activations and accumulators a tile needs"),
    Column("memory_fits", "bool", "train: bytes_per_tile within the tile's SRAM"),
    Column("recompute", "bool", "train: each block's forward run again in the backward pass"),
    _ENERGY,
    Column("power_w", "W", "train: energy_j / step_seconds"),
    Column("peak_fraction", "fraction", "train: MACs / (tiles x clock x step_seconds)"),
)

#: The columns a ``derived`` row copies from its ``run`` and its ``synth`` row, so that one
#: derived row holds time and area together.
_FROM_RUN = ("cycles", "total_cycles", "macs")
_FROM_SYNTH = ("target", "freq_mhz", "luts", "ffs", "brams", "dsps", "lut_share", "fits",
               "fmax_mhz", "meets_timing")


def _pick(columns: tuple[Column, ...], names: tuple[str, ...]) -> tuple[Column, ...]:
    return tuple(c for c in columns if c.name in names)


#: Every measurement, in the order of the table's columns.
MEASUREMENTS: dict[str, Measurement] = {m.name: m for m in (
    Measurement(
        "run", "the workload on the array's RTL (Verilator): cycles, MACs, utilization, "
               "speedup over the dense stream",
        fidelities=("rtl", "model"), per_workload=True, needs=(),
        options=(
            Option("dense", (bool,), True, "must be true or false", lambda v: True,
                   "also stream the dense weights, for dense_cycles and speedup"),
        ),
        columns=_RUN_COLUMNS),
    Measurement(
        "synth", "Yosys + nextpnr: LUTs, FFs, BRAM, DSP, fmax, fits on the target (mode "
                 "'tile': one tile x rows x cols, an estimate)",
        fidelities=("rtl",), per_workload=False, needs=(),
        options=(
            Option("target", (str,), "ecp5-85k", f"must be one of {', '.join(TARGETS)}",
                   lambda v: v in TARGETS, "the FPGA"),
            Option("freq", (int, float), 50.0, "must be a positive frequency in MHz",
                   _positive, "the clock to place and route for, MHz"),
            Option("mode", (str,), "full", "must be one of 'full', 'tile'",
                   lambda v: v in ("full", "tile"),
                   "'full': the whole array; 'tile': one tile placed and routed, its "
                   "resources x rows x cols and its fmax (estimate = true)"),
            Option("seed", (int,), 1, "must be an integer >= 0", lambda v: v >= 0,
                   "nextpnr's placement seed"),
            Option("router", (str,), "auto", "must be one of 'auto', 'router1', 'router2'",
                   lambda v: v in ("auto", "router1", "router2"), "nextpnr's router"),
            Option("pnr_timeout", (int, float), 60, "must be a number of minutes >= 0",
                   lambda v: 0 <= v < math.inf,
                   "minutes after which nextpnr is stopped (the point is then reported as "
                   "not routed); 0 = no limit"),
        ),
        columns=_SYNTH_COLUMNS),
    Measurement(
        "derived", "from run and synth: time per inference at fmax, MACs per second, and "
                   "per LUT",
        fidelities=("rtl", "model"), per_workload=True, needs=("run", "synth"), options=(),
        columns=(*_pick(_RUN_COLUMNS, _FROM_RUN), *_pick(_SYNTH_COLUMNS, _FROM_SYNTH),
                 *_DERIVED_COLUMNS)),
    Measurement(
        "train", "a GPT's training step at wafer scale, predicted: time, bandwidth, memory, "
                 "energy (kind 'gpt' workloads, fidelity model; docs/wafer.md)",
        fidelities=("model",), per_workload=True, needs=(), options=(),
        columns=_TRAIN_COLUMNS),
)}


def _number(row: Mapping[str, Any], key: str) -> float | None:
    """``row[key]`` as a number (rows read back from the CSV hold strings), None if empty."""
    value = row.get(key)
    if value is None or value == "":
        return None
    return float(value)


def derive(run: Mapping[str, Any], synth: Mapping[str, Any]) -> dict[str, Any]:
    """The derived figures of one (configuration, workload) from its ``run`` and ``synth``
    rows (fresh dicts or rows read back from the table).

    Returns
    -------
    dict
        The columns of ``derived``: the run's ``cycles``, ``total_cycles``, ``macs``, the
        synth's resources, ``fmax_mhz`` and verdict, and ``time_us``, ``total_time_us``,
        ``inferences_per_s``, ``macs_per_s``, ``macs_per_s_per_lut``.

    Raises
    ------
    ValueError
        With one line saying which input is missing: a failed run or synth, no fmax (the
        design was not placed and routed), no cycles.
    """
    for name, row in (("run", run), ("synth", synth)):
        if row.get("status") != "ok":
            raise ValueError(f"the {name} point {row.get('id', '?')} failed: "
                             f"{row.get('error') or 'no result'}")
    fmax = _number(synth, "fmax_mhz")
    if not fmax:
        raise ValueError(f"the synth point {synth.get('id', '?')} has no fmax (not placed "
                         f"and routed: {synth.get('synth_note') or 'no note'})")
    cycles, total, macs = (_number(run, k) for k in ("cycles", "total_cycles", "macs"))
    if not cycles:
        raise ValueError(f"the run point {run.get('id', '?')} has no cycles")
    luts = _number(synth, "luts")
    batch = _number(run, "batch")
    time_us = cycles / fmax
    out: dict[str, Any] = {k: run.get(k) for k in _FROM_RUN}
    out.update({k: synth.get(k) for k in _FROM_SYNTH})
    out.update(
        time_us=time_us,
        total_time_us=None if total is None else total / fmax,
        inferences_per_s=None if batch is None else batch / (time_us * 1e-6),
        macs_per_s=None if macs is None else macs / (time_us * 1e-6),
    )
    out["macs_per_s_per_lut"] = (None if out["macs_per_s"] is None or not luts
                                 else out["macs_per_s"] / luts)
    return out
