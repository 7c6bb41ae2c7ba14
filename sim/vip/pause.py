"""Pause and backpressure generators: iterators of booleans, one per clock cycle.

A :class:`~.link.LinkSource` or :class:`~.stream.StreamSource` skips a cycle (offers nothing)
when its pause generator yields ``True``; a sink refuses (ready low) in a cycle when its
backpressure generator yields ``True``. Any iterator of booleans works, e.g.
``itertools.cycle([False, True])`` for every other cycle.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from random import Random

__all__ = ["never", "random_pause"]


def never() -> Iterator[bool]:
    """Never pause (full rate)."""
    return itertools.repeat(False)


def random_pause(probability: float, rng: Random) -> Iterator[bool]:
    """Pause in each cycle with ``probability``, from ``rng`` (seeded by the test).

    Raises
    ------
    ValueError
        If ``probability`` is not from 0 to 1.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"pause probability must be from 0 to 1, not {probability!r}")
    if probability == 0.0:
        return never()

    def gen():
        while True:
            yield rng.random() < probability
    return gen()
