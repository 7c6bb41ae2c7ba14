"""Vectorized max-plus recursions: the queues of the performance model, without a Python loop.

Every resource of the model (an injection port, a column of tiles, a tile's local port, the
westward path of a row) is a *server* that takes one item per ``service`` cycles in a given
order. The time item ``k`` of a server leaves is the max-plus recursion::

    e[k] = max(a[k], e[k - 1] + s[k])

with ``a`` the time it could leave if the server were free. Unrolled, ``e[k] = S[k] +
max_{j <= k} (a[j] - S[j])`` with ``S`` the running sum of the service times: a cumulative
maximum, computed for every server at once by :func:`server` (servers are the groups of a
key; one segmented ``np.maximum.accumulate``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fifo_server", "queue", "rank", "server", "unit_server"]


def rank(group: np.ndarray) -> np.ndarray:
    """The position of each item among the items of its group, in array order (0, 1, ...).

    Parameters
    ----------
    group : numpy.ndarray
        Non-negative integers (the port, the column, ...).
    """
    group = np.asarray(group)
    if not len(group):
        return np.zeros(0, np.int64)
    if group.max() < (1 << 15) and group.min() >= 0:  # numpy radix-sorts 16-bit keys
        group = group.astype(np.int16)
    order = np.argsort(group, kind="stable")
    sorted_ = group[order]
    first = np.searchsorted(sorted_, sorted_, side="left")
    out = np.empty(len(group), np.int64)
    out[order] = np.arange(len(group)) - first
    return out


def _segmented_cummax(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``np.maximum.accumulate`` restarted at every index where ``starts`` is True."""
    if not len(values):
        return values
    seg = np.cumsum(starts) - 1
    # Lift each segment above all earlier ones so that one global cumulative maximum never
    # carries a value across a segment boundary.
    span = float(values.max() - values.min()) + 1.0
    lifted = values + seg * span
    return np.maximum.accumulate(lifted) - seg * span


def queue(arrival: np.ndarray, service) -> np.ndarray:
    """:func:`server` for one server, its items in array order (no grouping, no sort):
    ``e[k] = max(arrival[k], e[k - 1] + service[k])``."""
    arrival = np.asarray(arrival, dtype=np.float64)
    total = np.cumsum(np.broadcast_to(np.asarray(service, dtype=np.float64), arrival.shape))
    return np.maximum.accumulate(arrival - total) + total


def server(group: np.ndarray, arrival: np.ndarray, service) -> np.ndarray:
    """Leave times of items queued at the server of their ``group``, served in array order.

    Parameters
    ----------
    group : numpy.ndarray
        The server of each item (integers).
    arrival : numpy.ndarray
        The time each item could leave if its server were idle.
    service : numpy.ndarray or float
        Time the server spends on each item (cycles between two leaves).

    Returns
    -------
    numpy.ndarray
        ``e[k] = max(arrival[k], e[previous item of the same group] + service[k])`` (float).
    """
    group = np.asarray(group)
    n = len(group)
    if not n:
        return np.zeros(0)
    arrival = np.asarray(arrival, dtype=np.float64)
    service = np.broadcast_to(np.asarray(service, dtype=np.float64), (n,))
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.r_[True, g[1:] != g[:-1]]
    s = service[order]
    total = np.cumsum(s)
    # the running sum restarted per group
    base = np.maximum.accumulate(np.where(starts, total - s, -np.inf))
    within = total - base
    e = _segmented_cummax(arrival[order] - within, starts) + within
    out = np.empty(n)
    out[order] = e
    return out


def fifo_server(group: np.ndarray, arrival: np.ndarray, service, *,
                tie: np.ndarray | None = None) -> np.ndarray:
    """As :func:`server`, with each group's items served in the order they arrive (then by
    ``tie``, then in array order)."""
    group = np.asarray(group)
    if not len(group):
        return np.zeros(0)
    arrival = np.asarray(arrival, dtype=np.float64)
    keys = (arrival, group) if tie is None else (tie, arrival, group)
    order = np.lexsort(keys)
    service = np.broadcast_to(np.asarray(service, dtype=np.float64), (len(group),))
    e = server(group[order], arrival[order], service[order])
    out = np.empty(len(group))
    out[order] = e
    return out


def unit_server(group: np.ndarray, arrival: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """:func:`fifo_server` with a service of 1 and integer times, for tens of millions of
    items: one 64-bit sort key instead of a three-key sort, integer arithmetic throughout.

    Parameters
    ----------
    group, arrival, tie : numpy.ndarray
        Non-negative integers; ``(group, arrival, tie)`` must identify each item.
    """
    n = len(group)
    if not n:
        return np.zeros(0, np.int64)
    t_span = int(arrival.max()) + 1
    k_span = int(tie.max()) + 1
    key = group.astype(np.int64) * t_span
    key += arrival
    key *= k_span
    key += tie
    order = np.argsort(key)
    del key
    g = group[order]
    a = np.asarray(arrival, dtype=np.int64)[order]
    starts = np.r_[True, g[1:] != g[:-1]]
    del g
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    within = np.arange(n) - first
    del first
    a -= within
    # a segmented cumulative maximum: lift each segment above the ones before it
    seg = np.cumsum(starts)
    del starts
    lift = int(a.max() - a.min()) + 1
    seg *= lift
    a += seg
    np.maximum.accumulate(a, out=a)
    a -= seg
    a += within
    out = np.empty(n, np.int64)
    out[order] = a
    return out
