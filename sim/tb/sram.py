"""cocotb testbench of the SRAM bank (``wafertile_sram``) against a cycle-level numpy model.

Every cycle each bank's part sets the read port (``en``, ``addr``) and the write port
(``en``, ``addr``, ``data``) from a list of operations, and compares the read port's ``data``
with :class:`~wafertile.sim.models.SramCycleModel` in the next cycle. Cycles with ``en`` low
are the bank's idle insertion (data must hold). Environment: ``WAFERTILE_CONFIG``,
``WAFERTILE_SEED`` and ``WAFERTILE_CYCLES``.
"""

from __future__ import annotations

from random import Random

import cocotb

from ...config import Config
from ..models import SramCycleModel
from ..vip import TB, Part, env_int


class BankPort(Part):
    """The read and write port of one bank (``prefix`` 'act' or 'acc') and its model.

    ``ops`` holds, per cycle, ``(ren, raddr, wen, waddr, wdata)``; an exhausted list idles.
    """

    def __init__(self, dut, prefix: str, depth: int, width: int, seed: int):
        super().__init__(dut, prefix)
        self.r_en = getattr(dut, f"{prefix}_r__en")
        self.r_addr = getattr(dut, f"{prefix}_r__addr")
        self.r_data = getattr(dut, f"{prefix}_r__data")
        self.w_en = getattr(dut, f"{prefix}_w__en")
        self.w_addr = getattr(dut, f"{prefix}_w__addr")
        self.w_data = getattr(dut, f"{prefix}_w__data")
        self.model = SramCycleModel(depth, width)
        self.depth, self.width, self.seed = depth, width, seed
        self.ops: list[tuple] = []
        self.expect: int | None = None  # the model's read data after the last edge
        self.checked = 0
        self.errors: list[str] = []
        self._cycle = 0

    def idle(self) -> None:
        for sig in (self.r_en, self.r_addr, self.w_en, self.w_addr, self.w_data):
            sig.value = 0

    def drive(self) -> None:
        # the outputs of the last rising edge are settled at the falling edge: check, then drive
        if self.expect is not None:
            got = self.r_data.value.to_signed()
            if got != self.expect:
                self.errors.append(f"{self.name} read data {got}, model {self.expect} after "
                                   f"cycle {self._cycle - 1} (seed {self.seed})")
            self.checked += 1
        ren, raddr, wen, waddr, wdata = self.ops.pop(0) if self.ops else (0, 0, 0, 0, 0)
        self.r_en.value, self.r_addr.value = ren, raddr
        self.w_en.value, self.w_addr.value = wen, waddr
        self.w_data.value = wdata & ((1 << self.width) - 1)
        data = self.model.step(ren=ren, raddr=raddr, wen=wen, waddr=waddr, wdata=wdata)
        self.expect = data
        self._cycle += 1


class SramTB(TB):
    def __init__(self, dut):
        super().__init__(dut, reset="")
        cfg = self.config
        self.banks = {
            "act": self.add(BankPort(dut, "act", cfg.act_depth, cfg.data_width, self.seed)),
            "acc": self.add(BankPort(dut, "acc", cfg.acc_depth, cfg.acc_width, self.seed)),
        }

    async def run(self, ops: list[dict]) -> None:
        """``ops``: per cycle, a dict bank -> (ren, raddr, wen, waddr, wdata)."""
        self.dut.rst.value = 0
        await self.reset()
        for bank in self.banks.values():
            bank.ops = [cycle.get(bank.name, (0, 0, 0, 0, 0)) for cycle in ops]
        await self.cycles(len(ops) + 2)
        for bank in self.banks.values():
            assert not bank.errors, "\n".join(bank.errors[:5])


def directed_ops(cfg: Config) -> list[dict]:
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


def random_ops(cfg: Config, rng: Random, cycles: int) -> list[dict]:
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
    tb = SramTB(dut)
    await tb.run(directed_ops(tb.config))
    assert all(b.checked > 10 for b in tb.banks.values())


@cocotb.test()
async def random_ports(dut):
    """Seeded random reads and writes on all four ports, 30% idle reads."""
    tb = SramTB(dut)
    cycles = env_int("WAFERTILE_CYCLES", 3000)
    await tb.run(random_ops(tb.config, Random(tb.seed), cycles))
    # every cycle is checked from the first read on (no read in 10 cycles: p = 0.3 ** 10)
    assert all(b.checked >= cycles - 10 for b in tb.banks.values())
