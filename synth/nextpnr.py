"""The place-and-route step (nextpnr from YoWASP): run it, read what it found.

ECP5 designs are placed and routed with nextpnr's ``--out-of-context`` mode, without I/O
buffers: any number of ports is fine and nothing is added to the design. iCE40 has no such
mode; its designs come wrapped in the I/O shell (:mod:`wafertile.synth.shell`).

:func:`run_nextpnr` returns a :class:`PnrResult`: the resources used (from nextpnr's
``report.json``), fmax of the clock and the critical path; or why the design does not fit;
or, when the run was stopped after its time limit, what the log says of the placement and the
router's progress (:func:`unrouted`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ToolError
from .targets import Target
from .tools import log_tail, run_logged, tool

__all__ = ["LOG_NAME", "PLACED_BELS", "REPORT", "ROUTER2_ABOVE", "PnrResult", "critical_path",
           "nextpnr_command", "pick_router", "read_report", "run_nextpnr", "unrouted"]

_log = logging.getLogger(__name__)

#: The nextpnr log, in the build directory.
LOG_NAME = "nextpnr.log"
#: nextpnr's JSON report, in the build directory.
REPORT = "report.json"
#: ``router="auto"`` picks router2 above this many LUT4 sites (Yosys estimate), else router1.
ROUTER2_ABOVE = 20000

#: nextpnr's cell (BEL) names for LUT sites, flip-flops, block RAM and DSPs, as its report and
#: its "Device utilisation" log name them. iCE40 has no separate flip-flop cell (logic cells
#: hold a LUT and a flip-flop): its count stays Yosys'.
PLACED_BELS = {
    "ecp5": {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "brams": "DP16KD",
             "dsps": "MULT18X18D"},
    "ice40": {"luts": "ICESTORM_LC", "ffs": "", "brams": "ICESTORM_RAM", "dsps": "ICESTORM_DSP"},
}

#: Log lines that tell how far placement and routing got (progress messages).
_PROGRESS = (r"Info: (Running|Logic utilisation|Routing|iter|\s+\d+ \|)"
             r"|Info: Placed|HeAP|Legalis|Running (placer|router)|at iteration #")
#: nextpnr's errors that mean the design does not fit the device.
_OVERUSE = r"ERROR: .*(?:than available|no BELs remaining|Unable to place|overused).*"


@dataclass(frozen=True)
class PnrResult:
    """What place-and-route found.

    Attributes
    ----------
    used : dict
        LUT4 sites, flip-flops, block RAMs and DSPs used (keys ``luts``, ``ffs``, ``brams``,
        ``dsps``); the Yosys estimate where nextpnr did not tell.
    available : dict
        The device's capacity, as nextpnr reports it where it does.
    fits : bool
        True once the design is placed and routed.
    fmax_mhz : float or None
        fmax of the clock, unrounded; None when not routed.
    critical_path : dict or None
        See :func:`critical_path`.
    message : str
        Why the design does not fit, or did not finish; empty when it routed.
    routed : bool or None
        True when routed, False when stopped unfinished, None when nextpnr gave up.
    """

    used: dict[str, int]
    available: dict[str, int]
    fits: bool
    fmax_mhz: float | None = None
    critical_path: dict[str, Any] | None = None
    message: str = ""
    routed: bool | None = None


def pick_router(router: str, luts: int) -> str:
    """nextpnr's router for ``router`` (``auto``, ``router1`` or ``router2``): ``auto`` is
    router2 above :data:`ROUTER2_ABOVE` LUT4 sites, router1 below."""
    if router == "auto":
        return "router2" if luts > ROUTER2_ABOVE else "router1"
    return router


def nextpnr_command(target: Target, netlist: str, *, freq: float, seed: int,
                    router: str) -> list[str]:
    """The nextpnr command line for ``netlist`` on ``target``.

    ``freq`` is the requested clock in MHz, ``router`` ``router1`` or ``router2``. The report
    goes to :data:`REPORT`; timing failures do not stop the run; ECP5 runs out of context.
    """
    cmd = [tool(f"yowasp-nextpnr-{target.family}"), *target.nextpnr_args, "--json", netlist,
           "--freq", f"{freq:g}", "--timing-allow-fail", "--report", REPORT,
           "--seed", str(seed), "--router", router]
    cmd += ["--out-of-context"] if target.family == "ecp5" else ["--pcf-allow-unconstrained"]
    return cmd


def run_nextpnr(target: Target, build_dir: Path, netlist: str, estimate: dict[str, int], *,
                freq: float, seed: int = 1, router: str = "auto",
                timeout: float | None = None) -> PnrResult:
    """Place and route ``netlist`` (in ``build_dir``) on ``target``.

    Parameters
    ----------
    target : Target
        The device.
    build_dir : Path
        Where nextpnr runs; it writes :data:`LOG_NAME` and :data:`REPORT` there.
    netlist : str
        Yosys' JSON netlist, relative to ``build_dir``.
    estimate : dict
        Yosys' resource estimate (:func:`wafertile.synth.yosys.estimate`): picks the router
        of ``router="auto"`` and stands in for what nextpnr does not report.
    freq : float
        Requested clock in MHz.
    seed : int
        nextpnr's placement seed.
    router : str
        ``auto``, ``router1`` or ``router2``.
    timeout : float, optional
        Seconds after which nextpnr is stopped (its router never gives up on a congested
        design by itself); ``None`` waits without limit.

    Returns
    -------
    PnrResult
        Routed; or not fitting (nextpnr's message); or stopped unfinished (:func:`unrouted`).

    Raises
    ------
    ToolError
        If nextpnr is missing or fails for another reason than the design not fitting.
    """
    log = build_dir / LOG_NAME
    cmd = nextpnr_command(target, netlist, freq=freq, seed=seed,
                          router=pick_router(router, estimate["luts"]))
    _log.info(f"placing and routing with nextpnr-{target.family} ({target.device}, "
              f"{freq:g} MHz); log {log}")
    rc = run_logged(cmd, build_dir, log, f"nextpnr-{target.family}", pattern=_PROGRESS,
                    timeout=timeout)
    text = log.read_text(encoding="utf-8", errors="replace")
    if rc is None:
        return unrouted(estimate, text, target, timeout)
    if rc != 0:
        overuse = re.findall(_OVERUSE, text)
        if overuse:
            return PnrResult(estimate, target.capacity, False,
                             message=f"does not fit {target.device}: "
                                     f"{overuse[0].removeprefix('ERROR: ')}")
        raise ToolError(f"nextpnr-{target.family} failed (exit {rc}); log {log}:\n"
                        f"{log_tail(log)}")
    return read_report(json.loads((build_dir / REPORT).read_text(encoding="utf-8")), target,
                       estimate)


def read_report(rep: dict[str, Any], target: Target, estimate: dict[str, int]) -> PnrResult:
    """The :class:`PnrResult` of a routed design from nextpnr's ``report.json`` ``rep``:
    utilization (``estimate`` where nextpnr has no such cell), fmax and critical path."""
    util = rep.get("utilization", {})
    used, available = dict(estimate), target.capacity
    for key, bel in PLACED_BELS[target.family].items():
        if bel:
            used[key] = util.get(bel, {}).get("used", 0)
            available[key] = util.get(bel, {}).get("available", available[key])
    fmax = None
    for name, clock in rep.get("fmax", {}).items():
        if "clk" in name:
            fmax = clock.get("achieved")
    return PnrResult(used, available, True, fmax_mhz=fmax, critical_path=critical_path(rep),
                     routed=True)


def unrouted(estimate: dict[str, int], log_text: str, target: Target,
             timeout: float) -> PnrResult:
    """The :class:`PnrResult` of a place-and-route run stopped after ``timeout`` seconds.

    Read from nextpnr's log ``log_text``: the placed utilization (``estimate`` where the log
    has none), whether placement finished, and how far the router got.
    """
    used = dict(estimate)
    for key, bel in PLACED_BELS[target.family].items():
        found = re.findall(rf"^Info:\s+{bel}:\s+(\d+)/", log_text, flags=re.M) if bel else []
        if found:
            used[key] = int(found[-1])
    placed = "Running router" in log_text or "Routing globals" in log_text
    progress = ""
    overused = re.findall(r"overused=(\d+)", log_text)
    if overused:  # router2
        iters = len(re.findall(r"iter=\d+", log_text))
        progress = f"router2: {overused[-1]} wires still overused after {iters} iterations"
    else:  # router1: the last column of its table is the arcs still to route
        rows = re.findall(r"^Info:\s+\d+ \|.*\|\s+(\d+)\|", log_text, flags=re.M)
        if rows:
            progress = f"router1: {rows[-1]} arcs still to route or rip up"
    minutes = timeout / 60
    if placed:
        what = (f"placed ({used['luts']} LUT4 sites, {100 * used['luts'] / target.luts:.0f}%) "
                f"but routing did not finish in {minutes:g} min"
                + (f" ({progress})" if progress else "")
                + ": nextpnr cannot route it (congestion); try --router router1/router2, "
                  "another --seed or a smaller array; --pnr-timeout 0 waits without limit")
    else:
        what = (f"placement did not finish in {minutes:g} min; --pnr-timeout 0 waits without "
                f"limit")
    verb = "does not route on" if placed else "did not place on"
    return PnrResult(used, target.capacity, False, message=f"{verb} {target.device}: {what}",
                     routed=False)


def critical_path(rep: dict[str, Any]) -> dict[str, Any] | None:
    """The first critical path of nextpnr's report ``rep``.

    Returns
    -------
    dict or None
        ``from`` and ``to`` (cell names), ``delay_ns``, ``routing_ns`` (its share in wires)
        and ``logic_levels`` (cells on the path); None if the report has no path.
    """
    paths = rep.get("critical_paths") or []
    if not paths:
        return None
    path = paths[0]["path"]
    if not path:
        return None
    total = sum(step.get("delay", 0.0) for step in path)
    routing = sum(step.get("delay", 0.0) for step in path if step.get("type") == "routing")
    return {"from": path[0]["from"]["cell"], "to": path[-1]["to"]["cell"],
            "delay_ns": round(total, 3), "routing_ns": round(routing, 3),
            "logic_levels": sum(1 for step in path if step.get("type") == "logic")}
