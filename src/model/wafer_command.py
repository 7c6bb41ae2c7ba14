"""``wafertile run --fidelity model --network NAME --train``: a GPT's training step at wafer
scale, predicted (:mod:`.wafer`, ``docs/wafer.md``).

No layer, no RTL and no weights: the model zoo's shape (or a TOML file's), the array's size
and the few figures of the system around it. Every flag is checked before anything is
predicted; one that does not apply is refused in one line (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import InputError
from .energy import ENERGY, EnergyTable, load_energy
from .wafer import BATCH_TOKENS, DEFAULTS, Fabric, WaferStep, predict_training, resolve
from .zoo import ZOO, load_shape, shape

__all__ = ["add_wafer_flags", "check_wafer_flags", "run_wafer", "wafer_text"]

_log = logging.getLogger(__name__)

#: The flags of this prediction (None when not given).
WAFER_FLAGS = ("seq", "sram_kib", "stream_gbps", "clock_mhz", "energy", "recompute")
#: ``wafertile run`` flags that --train does not use.
_OTHER_RUN_FLAGS = ("weights", "activations", "out", "force", "density", "size", "seed", "sim",
                    "device", "baud", "waves", "no_dense", "inputs", "labels", "images",
                    "calibration", "prune", "prompt", "tokens", "model_detail")
#: configuration flags that --train uses (the others shape an RTL tile it does not build)
_CONFIG_USED = ("rows", "cols", "dtype", "router_arch")
_CONFIG_OTHER = ("data_width", "acc_width", "overflow", "act_depth", "acc_depth", "num_vcs",
                 "buffer_depth", "phits", "link_slice", "handoff", "nonlinear", "config")


def add_wafer_flags(parser: argparse.ArgumentParser) -> None:
    """The options of the wafer-scale training prediction."""
    group = parser.add_argument_group(
        "wafer-scale training", "with --fidelity model and a GPT of the model zoo (or a "
        "TOML file of its shape): one training step by weight streaming, predicted with "
        "memory, bandwidth and energy (docs/wafer.md)")
    group.add_argument("--train", action="store_true",
                       help="predict a training step of --network (gpt3-xl, gpt-j-6b, "
                            "gpt3-13b, gpt-neox-20b or SHAPE.toml) on --rows x --cols tiles; "
                            "--batch is then sequences per step (default: whole batch groups "
                            f"of at least {BATCH_TOKENS} tokens)")
    group.add_argument("--seq", type=int, metavar="S",
                       help="positions per sequence (default: the model's context, at most "
                            "--rows: one position per row)")
    group.add_argument("--sram-kib", type=float, metavar="KIB",
                       help=f"SRAM per tile, KiB (default: {DEFAULTS['sram_kib']:g}, the "
                            "WSE-2's)")
    group.add_argument("--stream-gbps", type=float, metavar="GBPS",
                       help="bandwidth between the parameter store and the fabric, each way, "
                            f"Gb/s (default: {DEFAULTS['stream_gbps']:g}, the CS-2's 12 x 100 "
                            "Gb Ethernet)")
    group.add_argument("--clock-mhz", type=float, metavar="MHZ",
                       help=f"the fabric's clock (default: {DEFAULTS['clock_mhz']:g})")
    group.add_argument("--energy", type=Path, metavar="TABLE.toml",
                       help="an energy table of your own (picojoules per event; default: "
                            "published 45 nm figures, docs/wafer.md); also prices a run's "
                            "counters (with --counters true, docs/counters.md)")
    group.add_argument("--recompute", choices=["auto", "true", "false"],
                       help="keep only each block's input and run its forward again in the "
                            "backward pass (default: auto: if the step does not fit without, "
                            "or if it is faster with: longer chunks fit)")


def _given(args: argparse.Namespace, name: str) -> bool:
    value = getattr(args, name, None)
    return value is not None and value is not False


def check_wafer_flags(args: argparse.Namespace) -> None:
    """Refuse, in one line, a wafer flag without --train, and with --train every flag that
    does not apply."""
    if not args.train:
        for name in WAFER_FLAGS:
            if name == "energy":  # also prices a run's counters: run_energy_table checks
                continue
            if _given(args, name):
                raise InputError(f"--{name.replace('_', '-')} applies only with --train (the "
                                 f"wafer-scale training prediction)")
        return
    if args.fidelity != "model":
        raise InputError("--train predicts a training step with the performance model: add "
                         "--fidelity model (training on the RTL is `wafertile train`)")
    if args.network is None:
        raise InputError(f"--train needs --network: a GPT of the model zoo "
                         f"({', '.join(ZOO)}) or a TOML file of its shape")
    for name in _OTHER_RUN_FLAGS + _CONFIG_OTHER:
        if _given(args, name):
            raise InputError(f"--{name.replace('_', '-')} does not apply to --train (a "
                             f"prediction from the model's shape: no layer, no RTL)")
    for name in ("rows", "cols"):
        if args.__dict__.get(name) is None:
            raise InputError("--train needs --rows and --cols (the array's size has no "
                             "default here; a WSE-2 is about --rows 920 --cols 920)")


def run_energy_table(args: argparse.Namespace, config) -> EnergyTable:
    """The energy table that prices a run's counters (``--energy``, docs/counters.md): the
    default, or the file given, which needs ``counters = true`` (refused in one line
    otherwise, and a bad file too, before anything is built)."""
    if args.energy is None:
        return ENERGY
    if not config.counters:
        raise InputError("--energy prices the events of --train's prediction or of a run's "
                         "counters: add --counters true (or --train)")
    return load_energy(args.energy)


def _shape(name: str):
    if name.endswith(".toml"):
        return load_shape(name)
    if name in ZOO:
        return shape(name)
    raise InputError(f"--network {name!r} with --train must be a GPT of the model zoo "
                     f"({', '.join(ZOO)}) or a .toml file of a GPT's shape")


def run_wafer(args: argparse.Namespace) -> int:
    """Check, predict, print (text or ``--json``)."""
    check_wafer_flags(args)
    gpt = _shape(args.network)
    fabric = Fabric.given(args.rows, args.cols, dtype=args.dtype, sram_kib=args.sram_kib,
                          clock_mhz=args.clock_mhz, stream_gbps=args.stream_gbps,
                          router_arch=args.router_arch)
    energy = ENERGY if args.energy is None else load_energy(args.energy)
    recompute = {None: None, "auto": None, "true": True, "false": False}[args.recompute]
    resolve(gpt, fabric, args.batch, args.seq)  # refused before the work starts
    _log.info("predicting a training step of %s on %d x %d tiles", gpt.name, fabric.rows,
              fabric.cols)
    step = predict_training(gpt, fabric, batch=args.batch, seq=args.seq,
                            recompute=recompute, energy=energy)
    report = step.as_json()
    if args.json:
        print(json.dumps(report, default=_plain))
    else:
        print(wafer_text(step, report))
    return 0


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3g} s"


def wafer_text(step: WaferStep, r: dict[str, Any]) -> str:
    """The report for a reader."""
    lines = [
        f"{r['model']} ({r['parameters'] / 1e9:.2f}B parameters), one training step on "
        f"{r['rows']} x {r['cols']} {r['dtype']} tiles, {r['sram_kib']:g} KiB each, "
        f"{r['clock_mhz']:g} MHz, {r['stream_gbps']:g} Gb/s each way",
        f"batch: {r['batch']} sequences of {r['seq']} = {r['tokens']} tokens, in "
        f"{r['batch_groups']} groups of {r['sequences_per_group']} sequences (one position "
        f"per row)",
        f"step: {_time(r['step_seconds'])} ({_time(r['compute_seconds'])} of fabric cycles), "
        f"{r['tokens_per_s']:.4g} tokens/s, {100 * r['peak_fraction']:.3g}% of the peak "
        f"MAC rate ({100 * r['mac_utilization']:.3g}% while computing)",
        f"streamed per step: {r['stream_bytes_in'] / 1e12:.4g} TB in, "
        f"{r['stream_bytes_out'] / 1e12:.4g} TB out ({r['flit_bits']}-bit flits; the weights "
        f"are {r['weight_bytes'] / 1e9:.3g} GB); a busy fabric needs "
        f"{r['required_stream_gbps'] / 1e3:.4g} Tb/s",
        f"memory per tile: {r['bytes_per_tile']} of {r['sram_bytes']} bytes "
        f"({'fits' if r['fits'] else 'DOES NOT FIT'}; recomputation "
        f"{'on' if r['recompute'] else 'off'}; chunks of {r['chunk']} words, "
        f"{r['acc_depth']} accumulators); weights kept on the fabric would need "
        f"{r['resident_bytes_per_tile']:.4g} bytes a tile",
        f"energy: {r['energy_j'] / 1e3:.4g} kJ a step, {r['power_w'] / 1e3:.3g} kW on average "
        f"({r['power_compute_bound_w'] / 1e3:.3g} kW if the stream kept up)",
    ]
    lines += [f"to fit: {a}" for a in r["advice"]]
    lines.append("")
    lines.append(f"{'layer':<10} {'count':>5} {'cycles/group':>13} {'seconds':>10} "
                 f"{'bound':>8}  methods")
    for row in r["layers"]:
        lines.append(f"{row['layer']:<10} {row['count']:>5} {row['cycles']:>13} "
                     f"{row['seconds'] * row['count']:>10.4g} {row['bound']:>8}  "
                     f"{', '.join(row['methods'])}")
    lines.append(f"predicted in {r['predict_seconds']:.1f} s; docs/wafer.md says how")
    return "\n".join(lines)
