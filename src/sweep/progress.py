"""The progress of a running sweep, on stderr: points done and failed, how many are running,
and the slowest running point with its elapsed time.

On a terminal it is one bar redrawn in place (failures are printed above it as they come);
elsewhere (a log file, CI) one log line per finished point and one every ``every`` seconds
while nothing finishes, through the ``wafertile`` logger (shown by the CLI on stderr). The
driver feeds it from ``as_completed`` (finished points) and from the workers' start events
(running points); it never polls the workers.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]

_log = logging.getLogger(__name__)

_BAR = 24


class Progress:
    """Progress of ``total`` points.

    Parameters
    ----------
    total : int
        Points to run.
    labels : dict
        Point id -> its short description.
    stream : file, optional
        Where the bar goes on a terminal (default: the current ``sys.stderr``).
    every : float
        Seconds between log lines while nothing finishes (not on a terminal).
    """

    def __init__(self, total: int, labels: dict[str, str], *, stream: TextIO | None = None,
                 every: float = 30.0) -> None:
        self.total = total
        self.labels = labels
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.done = 0
        self.failed = 0
        self._running: dict[str, float] = {}
        self._ended: set[str] = set()
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def started(self, point_id: str) -> None:
        """Point ``point_id`` started on a worker (called from the Dask client's thread)."""
        with self._lock:
            if point_id not in self._ended:
                self._running.setdefault(point_id, time.monotonic())

    def finished(self, point_id: str, ok: bool, seconds: float | None = None,
                 error: str = "") -> None:
        """Point ``point_id`` finished (``ok``) or failed with ``error``."""
        with self._lock:
            self._running.pop(point_id, None)
            self._ended.add(point_id)
            self.done += 1
            self.failed += not ok
        label = self.labels.get(point_id, point_id)
        took = "" if seconds is None else f" in {seconds:.1f} s"
        if self.tty:
            if not ok:
                self._clear()
                self.stream.write(f"FAILED {label}: {error}\n")
            self._draw()
        else:
            what = f"finished {label}{took}" if ok else f"FAILED {label}: {error}"
            _log.info(f"{self.status()}: {what}")
            self._last = time.monotonic()

    def status(self) -> str:
        """``12/48 done, 1 failed, 2 running (slowest 35 s: <point>)``."""
        with self._lock:
            running = dict(self._running)
        text = f"{self.done}/{self.total} done, {self.failed} failed, {len(running)} running"
        if running:
            slowest = min(running, key=running.get)
            text += (f" (slowest {time.monotonic() - running[slowest]:.0f} s: "
                     f"{self.labels.get(slowest, slowest)})")
        return text

    def tick(self) -> None:
        """Redraw the bar, or log the status if nothing was said for ``every`` seconds."""
        if self.tty:
            self._draw()
        elif time.monotonic() - self._last >= self.every:
            _log.info(self.status())
            self._last = time.monotonic()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _clear(self) -> None:
        self.stream.write("\r" + " " * (self._width() - 1) + "\r")

    def _width(self) -> int:
        return shutil.get_terminal_size((100, 20)).columns

    def _draw(self) -> None:
        filled = _BAR * self.done // self.total if self.total else _BAR
        line = f"[{'#' * filled}{'.' * (_BAR - filled)}] {self.status()}"
        width = self._width() - 1
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()
