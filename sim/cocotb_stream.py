"""cocotb parts for Amaranth stream interfaces: a driver and a monitor with idle/backpressure.

Both act once per clock cycle in two steps that work the same on Verilator and Icarus: inputs
are changed at the falling edge, then handshakes are sampled in the ReadOnly phase of the same
time step. Nothing changes between that sample and the next rising edge, so a sampled
``valid & ready`` is exactly a transfer at that edge.

Port names follow Amaranth's Verilog: member ``i`` of a component becomes ``i__valid``,
``i__ready`` and ``i__payload``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from random import Random

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["StreamDriver", "StreamMonitor"]


class StreamDriver:
    """Sends integer payloads on ``<name>__valid/ready/payload``.

    ``idle`` is the probability of a cycle with ``valid`` low before each payload. Once
    ``valid`` is high it stays high with the same payload until the transfer (stream rule).
    """

    def __init__(self, dut, name: str, clk, *, idle: float = 0.0, rng: Random | None = None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.idle = idle
        self.rng = rng or Random(0)
        self.sent = 0
        self.stall_cycles = 0  # cycles with valid high and ready low
        self.valid.value = 0

    async def send(self, words: Iterable[int]) -> None:
        words = list(words)
        k = 0
        while k < len(words):
            await FallingEdge(self.clk)
            if self.rng.random() < self.idle:
                self.valid.value = 0
                continue
            self.valid.value = 1
            self.payload.value = words[k]
            while True:
                await ReadOnly()
                if self.ready.value:
                    break
                self.stall_cycles += 1
                await FallingEdge(self.clk)
            k += 1
            self.sent = k
        await FallingEdge(self.clk)
        self.valid.value = 0


class StreamMonitor:
    """Receives integer payloads on ``<name>__valid/ready/payload``, calling ``callback``.

    ``backpressure`` is the probability that ``ready`` is low in a cycle. It also checks the
    stream rule on the sender: once ``valid`` is high, it and the payload hold until taken.
    """

    def __init__(self, dut, name: str, clk, callback: Callable[[int], None], *,
                 backpressure: float = 0.0, rng: Random | None = None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.callback = callback
        self.backpressure = backpressure
        self.rng = rng or Random(1)
        self.received = 0
        self.protocol_errors: list[str] = []
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        pending = None  # payload offered but not taken in the previous cycle
        while True:
            await FallingEdge(self.clk)
            ready = self.rng.random() >= self.backpressure
            self.ready.value = int(ready)
            await ReadOnly()
            if self.valid.value:
                word = int(self.payload.value)
                if pending is not None and word != pending:
                    self.protocol_errors.append(
                        f"payload changed from {pending:#x} to {word:#x} while valid")
                if ready:
                    self.received += 1
                    self.callback(word)
                    pending = None
                else:
                    pending = word
            elif pending is not None:
                self.protocol_errors.append(f"valid dropped with payload {pending:#x} untaken")
                pending = None

    def stop(self) -> None:
        self._task.cancel()
