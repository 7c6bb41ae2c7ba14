"""What every wafertile testbench sets up the same way: its case from the environment, the
clock and reset, and the stepping of its parts once per cycle.

Parts (sources, sinks, monitors) act in two steps per clock cycle that behave the same on
Verilator and Icarus: :meth:`Part.drive` at the falling edge (inputs change), then
:meth:`Part.sample` in the ReadOnly phase of the same time step (handshakes are read).
Nothing changes between that sample and the next rising edge, so a sampled ``valid & ready``
is exactly a transfer at that edge. :class:`TB` steps all its parts from one coroutine, so
a bench with dozens of links costs one trigger pair per cycle, not one per link.

The pytest side passes the case to a cocotb test in environment variables:
``WAFERTILE_CONFIG`` (JSON of :meth:`Config.as_dict`), ``WAFERTILE_SEED`` and any
test-specific ``WAFERTILE_*`` values (:func:`env_float`, :func:`env_int`, :func:`env_json`).
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from random import Random
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from ...config import Config
from .pause import never
from .signals import Element, forget_writes

__all__ = ["TB", "Part", "Source", "TieOff", "env_config", "env_float", "env_int", "env_json",
           "env_seed"]


def env_config() -> Config:
    """The :class:`Config` of ``WAFERTILE_CONFIG`` (defaults when unset)."""
    return Config.from_mapping(json.loads(os.environ.get("WAFERTILE_CONFIG", "{}")),
                               source="WAFERTILE_CONFIG")


def env_seed() -> int:
    """``WAFERTILE_SEED`` (1 when unset): the seed of every random choice of the test."""
    return int(os.environ.get("WAFERTILE_SEED", "1"))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_json(name: str, default: Any = None) -> Any:
    value = os.environ.get(name)
    return default if value is None else json.loads(value)


class Part:
    """A verification part stepped by :class:`TB` once per cycle.

    Subclasses override :meth:`idle` (inputs to a quiet state, before and during reset),
    :meth:`drive` (falling edge) and :meth:`sample` (ReadOnly). Each part logs to
    ``cocotb.<dut>.<name>``.
    """

    def __init__(self, dut, name: str):
        self.dut = dut
        self.name = name
        self.log = logging.getLogger(f"cocotb.{dut._name}.{name}")

    def idle(self) -> None:
        """Drive this part's inputs of the DUT to their idle values."""

    def drive(self) -> None:
        """Set this cycle's inputs (called at the falling edge)."""

    def sample(self) -> None:
        """Read this cycle's handshakes (called in the ReadOnly phase)."""


class Source(Part):
    """A part that offers words from a queue, one at a time, holding each until it is taken.

    Subclasses give the ``valid`` and word elements and :meth:`accepts` (whether the DUT takes
    the offered word in this cycle). ``pause``: before each word, the cycles for which it yields
    True are skipped. ``on_sent(word)`` is called in the cycle a word is taken.

    Attributes
    ----------
    sent : int
        Words taken so far.
    stall_cycles : int
        Cycles in which a word was offered and not taken.
    """

    def __init__(self, dut, name: str, valid: Element, word: Element, *,
                 pause: Iterator[bool] | None = None,
                 on_sent: Callable[[int], None] | None = None):
        super().__init__(dut, name)
        self._valid, self._word = valid, word
        self.queue: deque[int] = deque()
        self.pause = pause if pause is not None else never()
        self.on_sent = on_sent
        self.offer: int | None = None
        self.sent = 0
        self.stall_cycles = 0

    def send(self, words: int | Iterable[int]) -> None:
        """Queue one word or several; they are offered in order."""
        self.queue.extend([words] if isinstance(words, int) else words)

    @property
    def idle_now(self) -> bool:
        """Nothing queued and nothing offered."""
        return self.offer is None and not self.queue

    def accepts(self, word: int) -> bool:
        """Whether the DUT takes ``word`` in this cycle (read in the ReadOnly phase)."""
        raise NotImplementedError

    def idle(self) -> None:
        self._valid.set(0)

    def drive(self) -> None:
        if self.offer is None and self.queue and not next(self.pause):
            self.offer = self.queue.popleft()
            self._word.set(self.offer)
            self._valid.set(1)
        elif self.offer is None:
            self._valid.set(0)

    def sample(self) -> None:
        if self.offer is None:
            return
        if self.accepts(self.offer):
            word, self.offer = self.offer, None
            self.sent += 1
            self.log.debug("sent %#x", word)
            if self.on_sent is not None:
                self.on_sent(word)
        else:
            self.stall_cycles += 1


class TieOff(Part):
    """Holds inputs of the DUT at zero (a link's ``valid`` into the DUT: no flit; a link's
    ``ready`` out of it: never ready). Other parts may still drive elements of the same
    packed inputs: writes share one value per signal.

    Parameters
    ----------
    dut
    names : list of str
        The input ports to hold at zero.
    """

    def __init__(self, dut, names):
        super().__init__(dut, "tieoff")
        self.elements = []
        for name in names:
            handle = getattr(dut, name)
            self.elements.append(Element(handle, len(handle)))

    def idle(self) -> None:
        for element in self.elements:
            element.set(0)


class TB:
    """A testbench: the DUT, its configuration and seed, a clock, a reset, and its parts.

    Parameters
    ----------
    dut
        The cocotb handle of the top-level.
    config : Config, optional
        Default: :func:`env_config`.
    seed : int, optional
        Default: :func:`env_seed`. :attr:`rng` is seeded with it.
    clock, reset : str
        Names of the clock and (active-high, synchronous) reset inputs.
    period_ns : int
        Clock period.
    """

    def __init__(self, dut, config: Config | None = None, *, seed: int | None = None,
                 clock: str = "clk", reset: str = "rst", period_ns: int = 10):
        self.dut = dut
        self.config = env_config() if config is None else config
        self.seed = env_seed() if seed is None else seed
        self.rng = Random(self.seed)
        self.clk = getattr(dut, clock)
        self.rst = getattr(dut, reset) if reset else None
        self.period_ns = period_ns
        self.parts: list[Part] = []
        self.cycle = 0
        self.log = logging.getLogger(f"cocotb.{dut._name}.tb")
        self._stepper = None
        self._clock_started = False
        forget_writes()  # a new test: nothing driven yet

    def add(self, part: Part) -> Part:
        """Step ``part`` every cycle from now on; returns it."""
        self.parts.append(part)
        return part

    def start_clock(self) -> None:
        if not self._clock_started:
            cocotb.start_soon(Clock(self.clk, self.period_ns, unit="ns").start())
            self._clock_started = True

    async def reset(self, cycles: int = 3) -> None:
        """Start the clock, idle every part, hold reset for ``cycles`` cycles, release it at a
        falling edge, and start stepping the parts."""
        self.start_clock()
        for part in self.parts:
            part.idle()
        if self.rst is not None:
            self.rst.value = 1
            await ClockCycles(self.clk, cycles)
            await FallingEdge(self.clk)
            self.rst.value = 0
        if self._stepper is None:
            self._stepper = cocotb.start_soon(self._step())

    async def _step(self) -> None:
        while True:
            await FallingEdge(self.clk)
            for part in self.parts:
                part.drive()
            await ReadOnly()
            for part in self.parts:
                part.sample()
            self.cycle += 1

    async def cycles(self, n: int) -> None:
        """Wait ``n`` clock cycles (rising edges)."""
        await ClockCycles(self.clk, n)

    async def wait_until(self, done, *, timeout: int, what: str, stall=None) -> None:
        """Wait, cycle by cycle, until ``done()`` is true; fail after ``timeout`` cycles with a
        message naming ``what`` (and ``stall()``'s description of the state, if given)."""
        for _ in range(timeout):
            if done():
                return
            await ClockCycles(self.clk, 1)
        detail = f"; {stall()}" if stall is not None else ""
        raise AssertionError(f"timeout after {timeout} cycles waiting for {what} "
                             f"(seed {self.seed}){detail}")
