"""The analytic model of a MAC stream phase (free flow).

Each west port injects its flits in order, one per slot; flit ``k`` of port ``q`` reaches its
turn router ``(x, q)`` ``x + 1`` slots later at the earliest; each *column* is one server that
takes one flit per slot in arrival order (every tile of the column takes every flit of it
through its local port, one per slot); the flit then reaches the rows of its rectangle one
slot per router north and south; its MAC is counted three pipeline stages after the core
takes it. Vectorized: a sort and a segmented cumulative maximum over the flits.

This is exact when each column is fed by one port, as in the layers whose outputs the
compiler spreads evenly over rows and columns (the ports' and the columns' longest-first
assignments then pair port ``q`` with column ``q``): no two flits then meet anywhere in a
column. When a column's
queue grows longer than a router buffer, the real ports stall behind it (head-of-line
blocking) and the ports that share a column get unequal shares depending on their rows:
the free-flow figure is then a lower bound, and :attr:`StreamEstimate.backlog` says so;
:mod:`.mesh` plays such streams router by router.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .flow import rank, unit_server
from .timing import Timing

__all__ = ["StreamEstimate", "column_slots", "stream_cycles"]

@dataclass(frozen=True)
class StreamEstimate:
    """The predicted cycles of one stream phase and how they were found.

    Attributes
    ----------
    cycles : int
        From the phase's first cycle (at a slot boundary) to the cycle after the last MAC.
    bound : bool
        True when a column backs up into the rows (:attr:`backlog` longer than a buffer):
        the estimate is then a lower bound.
    port_bound, column_bound : int
        The largest number of flits of one port and one column (slots).
    backlog : int
        The longest wait of a flit at its column in the free-flow schedule (slots).
    shared : int
        The most ports that feed one column. With one, no two flits ever meet in a column
        and the estimate is exact (the mesh model's and the RTL's cycles).
    """

    cycles: int
    bound: bool
    port_bound: int
    column_bound: int
    backlog: int
    shared: int


def column_slots(port: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, int]:
    """The slot in which each MAC flit passes its column's server in the free-flow schedule
    (injected one per slot per port, turning at router ``(x, q)`` ``x + 1`` slots after its
    injection at the earliest, each column one flit per slot in arrival order), and the
    longest wait at a column (slots). Each tile of the column takes the flit as many slots
    later as it is rows away from the port's row."""
    turn = rank(port)
    turn += column
    turn += 1
    served = unit_server(column, turn, port)
    backlog = int((served - turn).max())
    return served, backlog


def stream_cycles(timing: Timing, port: np.ndarray, column: np.ndarray, y0, y1
                  ) -> StreamEstimate:
    """Predict one stream phase that starts at a slot boundary (free flow).

    Parameters
    ----------
    timing : Timing
        The fabric.
    port, column : numpy.ndarray
        Per MAC flit, in injection order per port: its west port and its column.
    y0, y1 : numpy.ndarray or int
        The rows of its rectangle.
    """
    n = len(port)
    if not n:
        return StreamEstimate(1, False, 0, 0, 0, 0)
    cfg = timing.config
    port = np.asarray(port)
    column = np.asarray(column)
    y0 = np.broadcast_to(np.asarray(y0), (n,))
    y1 = np.broadcast_to(np.asarray(y1), (n,))
    ports = np.bincount(port, minlength=cfg.rows)
    columns = np.bincount(column, minlength=cfg.cols)
    served, backlog = column_slots(port, column)
    served += np.maximum(port - y0, y1 - port)
    last = int(served.max())
    # the core takes the flit (stage 1) a slot (and the deserializer) after its router sent
    # it; the MAC is counted mac_stage cycles later, and the phase ends in the cycle after
    cycles = last * timing.slot + timing.adapter + timing.mac_stage + 1
    pairs = np.unique(column.astype(np.int64) * cfg.rows + port)
    shared = int(np.bincount(pairs // cfg.rows, minlength=cfg.cols).max())
    return StreamEstimate(int(cycles), backlog > timing.depth, int(ports.max()),
                          int(columns.max()), backlog, shared)
