"""The two kinds of failure a wafertile command reports in one line.

- :class:`InputError`: something the user gave is wrong (a parameter, a file, a flag); the
  command stops before any build or simulation and exits with status 2.
  :class:`~wafertile.config.ConfigError` and :class:`~wafertile.stream.LayerError` are kinds
  of it.
- :class:`ToolError`: a tool the command needs is missing or failed for a reason that is not
  the design's (the message says how to fix it); exit status 1.
"""

from __future__ import annotations

__all__ = ["InputError", "ToolError"]


class InputError(ValueError):
    """A value, file or flag the user gave was rejected. The message is one line."""


class ToolError(RuntimeError):
    """A tool that a command needs is missing or unusable. The message says how to fix it."""
