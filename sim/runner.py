"""Build and run a cocotb testbench on generated Verilog, on Verilator or Icarus.

Used by the pytest regressions and by the CLI. Each (simulator, design) pair gets its own build
directory; Verilator builds are reused when the Verilog has not changed (make decides), so a
rerun costs only the simulation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree

from .toolchain import apply_env, simulator_env

__all__ = ["LINT_WAIVERS", "run_cocotb", "verilog_digest"]

#: Verilator warnings waived on Amaranth's output, each with its reason (docs/simulation.md).
LINT_WAIVERS: dict[str, str] = {
    "DECLFILENAME": "Amaranth writes every module of a design into one file, named after the "
                    "top; submodule names (top.mac) cannot match the file name",
    "PROCASSINIT": "Amaranth gives each register its reset value as an initial value and also "
                   "assigns it in the always block; both agree, by construction",
    "UNUSEDSIGNAL": "Amaranth keeps named debug wires (struct fields, signature aliases) that "
                    "nothing reads; they cost nothing after synthesis",
    "WIDTHEXPAND": "Yosys writes casez/compare constants narrower than the selector; the "
                   "comparison zero-extends, which is what the source meant",
    "WIDTHTRUNC": "Yosys writes `!` on a multi-bit slice in its case conditions; it is the "
                  "reduction the source meant",
}


def verilog_digest(files: Sequence[Path]) -> str:
    """A short hash of the Verilog sources, to name a build directory by its content."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:12]


def run_cocotb(*, sim: str, sources: Sequence[Path], top: str, test_module: str,
               build_dir: Path, testcase: str | Sequence[str] | None = None,
               extra_env: Mapping[str, str] | None = None, waves: bool = False,
               seed: int | None = None, log_dir: Path | None = None) -> Path:
    """Build ``sources`` on ``sim`` (if needed) and run cocotb ``test_module`` against ``top``.

    Returns the path of the xUnit results file. Under pytest, cocotb's runner itself fails the
    calling test when a cocotb test fails. ``waves`` (or ``WAVES=1`` in the environment) dumps
    waveforms into ``build_dir``: ``<top>.fst`` from Icarus, ``dump.vcd`` from Verilator.
    With ``log_dir``, the tools' output goes to ``build.log`` and ``sim.log`` there instead of
    the terminal.
    """
    from cocotb_tools.runner import get_runner

    apply_env(simulator_env(sim))
    build_dir = Path(build_dir)
    runner = get_runner(sim)
    build_args: list[str] = []
    if sim == "verilator":
        build_args = [f"-Wno-{w}" for w in LINT_WAIVERS] + ["-Wno-fatal"]
    runner.build(
        sources=[str(s) for s in sources],
        hdl_toplevel=top,
        build_dir=str(build_dir),
        build_args=build_args,
        timescale=("1ns", "1ps"),
        waves=waves,
        always=False,
        log_file=str(log_dir / "build.log") if log_dir else None,
    )
    env = dict(extra_env or {})
    results = (build_dir / "results.xml").resolve()
    results.unlink(missing_ok=True)
    out = runner.test(
        test_module=test_module,
        hdl_toplevel=top,
        testcase=testcase,
        build_dir=str(build_dir),
        test_dir=str(build_dir),
        extra_env=env,
        waves=waves,
        seed=seed,
        timescale=("1ns", "1ps"),
        results_xml=str(results),
        log_file=str(log_dir / "sim.log") if log_dir else None,
    )
    # cocotb only warns when no test matches the filter, and an empty result counts as no
    # failure: a misspelt or renamed test case would then pass without checking anything.
    ran = ElementTree.parse(out).getroot().iter("testcase") if Path(out).exists() else ()
    if not any(True for _ in ran):
        raise RuntimeError(f"no cocotb test of {test_module} matched {testcase!r}: nothing "
                           f"was run (see {out})")
    return out


def default_build_root() -> Path:
    """Where builds go: ``$WAFERTILE_BUILD_DIR`` or ``./sim_build``."""
    return Path(os.environ.get("WAFERTILE_BUILD_DIR", "sim_build")).resolve()
