"""cocotb testbench of the SRAM bank (``wafertile_sram``) against a cycle-level numpy model.

Every cycle the driver sets both banks' read port (``en``, ``addr``) and write port (``en``,
``addr``, ``data``); the checker compares each read port's ``data`` with
:class:`~wafertile.sim.model.SramCycleModel` in the next cycle. Cycles with ``en`` low are the
bank's idle insertion (data must hold). The environment carries ``WAFERTILE_CONFIG``,
``WAFERTILE_SEED`` and ``WAFERTILE_CYCLES``.
"""

from __future__ import annotations

import json
import os
from random import Random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from ..config import Config
from .model import SramCycleModel


def _config() -> Config:
    return Config.from_mapping(json.loads(os.environ.get("WAFERTILE_CONFIG", "{}")))


class _Bank:
    """Ports and model of one bank; ``prefix`` is 'act' or 'acc'."""

    def __init__(self, dut, prefix: str, depth: int, width: int):
        self.prefix = prefix
        self.r_en = getattr(dut, f"{prefix}_r__en")
        self.r_addr = getattr(dut, f"{prefix}_r__addr")
        self.r_data = getattr(dut, f"{prefix}_r__data")
        self.w_en = getattr(dut, f"{prefix}_w__en")
        self.w_addr = getattr(dut, f"{prefix}_w__addr")
        self.w_data = getattr(dut, f"{prefix}_w__data")
        self.model = SramCycleModel(depth, width)
        self.depth = depth
        self.width = width
        self._next: int | None = None  # model's read data after the last driven edge
        self.checked = 0

    def drive(self, ren: int, raddr: int, wen: int, waddr: int, wdata: int) -> None:
        self.r_en.value = ren
        self.r_addr.value = raddr
        self.w_en.value = wen
        self.w_addr.value = waddr
        self.w_data.value = wdata & ((1 << self.width) - 1)
        self._next = self.model.step(ren=ren, raddr=raddr, wen=wen, waddr=waddr, wdata=wdata)

    def check(self, where: str) -> None:
        """Compare the read data after the last edge with the model (at the falling edge)."""
        if self._next is not None:
            got = self.r_data.value.to_signed()
            assert got == self._next, \
                f"{self.prefix} read data {got}, model {self._next} {where}"
            self.checked += 1


async def _run(dut, ops):
    """``ops``: per cycle, a dict bank -> (ren, raddr, wen, waddr, wdata)."""
    cfg = _config()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    banks = {"act": _Bank(dut, "act", cfg.act_depth, cfg.data_width),
             "acc": _Bank(dut, "acc", cfg.acc_depth, cfg.acc_width)}
    dut.rst.value = 0
    for bank in banks.values():
        bank.drive(0, 0, 0, 0, 0)
        bank._next = None  # data before any read is not defined by the model
    await ClockCycles(dut.clk, 2)
    seed = os.environ.get("WAFERTILE_SEED", "?")
    # At each falling edge the outputs of the last rising edge are settled: check, then drive.
    for n, cycle in enumerate([*ops, {}]):
        await FallingEdge(dut.clk)
        for bank in banks.values():
            bank.check(f"after cycle {n - 1} (seed {seed})")
        for name, bank in banks.items():
            bank.drive(*cycle.get(name, (0, 0, 0, 0, 0)))
    return banks


def _directed(cfg: Config):
    ops = []
    for name, depth, width in (("act", cfg.act_depth, cfg.data_width),
                               ("acc", cfg.acc_depth, cfg.acc_width)):
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        last = depth - 1
        ops += [
            {name: (0, 0, 1, 0, hi)}, {name: (0, 0, 1, last, lo)},       # both ends of the bank
            {name: (1, 0, 0, 0, 0)}, {name: (1, last, 0, 0, 0)},          # read them back
            {name: (1, 5, 1, 5, -1)},                                      # read during write
            {name: (0, 5, 1, 5, 7)}, {name: (0, 0, 0, 0, 0)},             # en low: data holds
            {name: (1, 5, 0, 0, 0)},
            {name: (1, 6, 1, 5, 3)},                                       # write other address
            {name: (1, 5, 1, 6, 4)}, {name: (1, 6, 0, 0, 0)},
        ]
    # both banks at once, same addresses
    ops.append({"act": (1, 9, 1, 9, 12), "acc": (1, 9, 1, 9, -12)})
    ops.append({"act": (1, 9, 0, 0, 0), "acc": (1, 9, 0, 0, 0)})
    return ops


def _random(cfg: Config, rng: Random, cycles: int):
    ops = []
    for _ in range(cycles):
        cycle = {}
        for name, depth, width in (("act", cfg.act_depth, cfg.data_width),
                                   ("acc", cfg.acc_depth, cfg.acc_width)):
            hot = min(depth, 8)
            def addr(depth=depth, hot=hot):
                return rng.randrange(hot) if rng.random() < 0.7 else rng.randrange(depth)
            lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
            cycle[name] = (int(rng.random() < 0.7), addr(), int(rng.random() < 0.5), addr(),
                           rng.choice([lo, hi, 0, rng.randint(lo, hi)]))
        ops.append(cycle)
    return ops


@cocotb.test()
async def directed(dut):
    """Both ends of each bank, read-during-write, data held while en is low."""
    banks = await _run(dut, _directed(_config()))
    assert all(b.checked > 10 for b in banks.values())


@cocotb.test()
async def random_ports(dut):
    """Seeded random reads and writes on all four ports, 30% idle reads."""
    seed = int(os.environ.get("WAFERTILE_SEED", "1"))
    cycles = int(os.environ.get("WAFERTILE_CYCLES", "3000"))
    banks = await _run(dut, _random(_config(), Random(seed), cycles))
    # every cycle is checked from the first read on (no read in 10 cycles: p = 0.3 ** 10)
    assert all(b.checked >= cycles - 10 for b in banks.values())
