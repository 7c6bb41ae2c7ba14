"""Progress messages of long work (builds, simulations, place-and-route).

Every module logs through the standard :mod:`logging` tree under ``"wafertile"``
(``logging.getLogger(__name__)``) at level INFO; the library prints nothing by itself. The
command line shows them on stderr, one line each, prefixed with the command
(``wafertile run: building with verilator ...``), so that stdout carries only the result
(the report, or the ``--json`` object). A program that uses wafertile as a library sees them
with ``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["EVERY", "show_progress", "ticking"]

#: Seconds between two progress lines of a step that is still running (:func:`ticking`):
#: no step of a command stays silent for much longer.
EVERY = 10.0

_ROOT = "wafertile"
_handler: logging.Handler | None = None


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message is emitted, not when the handler
    was made (a test runner that captures and closes stderr per test otherwise leaves a
    handler on a closed file)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def show_progress(command: str, *, stream=None, level: int = logging.INFO) -> None:
    """Print the ``wafertile`` loggers' messages on ``stream`` (default: the current
    ``sys.stderr``) as ``wafertile <command>: <message>``. Calling it again replaces the
    previous set-up (one handler, never two)."""
    global _handler
    logger = logging.getLogger(_ROOT)
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = _CurrentStderr() if stream is None else logging.StreamHandler(stream)
    _handler.setFormatter(logging.Formatter(f"wafertile {command}: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(level)
    logger.propagate = False


@contextmanager
def ticking(logger: logging.Logger, what: str | Callable[[float], str | None], *,
            every: float | None = None) -> Iterator[None]:
    """Log a progress line every ``every`` seconds (default :data:`EVERY`, read when the
    block starts) while the ``with`` block runs, and once the step has run for a minute or
    more, every fifth of the time so far (a ten-minute step: about 20 lines, not 60):
    ``what`` with the seconds so far (``"<what> (30 s so far)"``), or ``what(seconds)`` when
    it is a function (which may say where the step is, or return None to skip the line). A
    block shorter than ``every`` logs nothing; the lines come from a daemon thread that stops
    when the block ends."""
    every = EVERY if every is None else every
    start = time.perf_counter()
    stop = threading.Event()

    def line(elapsed: float) -> str | None:
        if callable(what):
            return what(elapsed)
        return f"{what} ({elapsed:.0f} s so far)"

    def tick() -> None:
        while not stop.wait(max(every, (time.perf_counter() - start) / 5)):
            try:
                message = line(time.perf_counter() - start)
            except Exception:  # a progress line never breaks the work it reports on
                continue
            if message:
                logger.info(message)

    thread = threading.Thread(target=tick, name="wafertile-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
