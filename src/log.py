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

__all__ = ["show_progress"]

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
