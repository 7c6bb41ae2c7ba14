"""cocotb testbench of the nonlinear unit (``hdl/core/nonlinear.py``) against the numpy
reference of ``docs/nonlinear.md`` (:mod:`wafertile.sim.models.nonlinear`), bit for bit, and
against its protocol cycle by cycle.

A job is ``(function, x, d)`` (``d``: the second operand of MUL and MAX). Each cycle the
driver may raise ``start`` with the next job (with ``WAFERTILE_IDLE``, the chance of leaving a
cycle without one), and, while the unit is busy, raises ``start`` with junk at random: the
unit must ignore it. In every cycle the checker
predicts ``ready`` and ``done`` from the jobs taken (``done`` exactly ``1 + steps * stages``
cycles after the start: :func:`~wafertile.hdl.core.nonlinear.cycles`) and, from ``done`` until
the next start, ``o``. Environment: ``WAFERTILE_SEED``, ``WAFERTILE_STAGES``,
``WAFERTILE_JOBS``, ``WAFERTILE_IDLE``.
"""

from __future__ import annotations

import cocotb
import numpy as np

from ...config import Config
from ...hdl.core.nonlinear import FUNCTIONS, UNARY, cycles
from ..models import nonlinear as nl
from ..vip import TB, Part, cover_unit_jobs, env_float, env_int

#: Words every function sees once: signed zeros, subnormals, the normal boundary, 1, the
#: largest finite, infinities, NaNs (quiet, signalling, negative), exp's range limits.
SPECIAL = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000, 0x3F800000,
           0xBF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
           0x7F800001, 0x42B17217, 0x42B17218, 0xC2AEAC50, 0xC2AEAC51, 0x42B10000,
           0x41200000, 0xC1200000, 0x40A00000]


def special_pairs() -> list[tuple[int, int]]:
    """``(x, d)`` for MUL and MAX: each special word against three others and itself."""
    n = len(SPECIAL)
    return [(x, SPECIAL[(i * 7 + k) % n]) for i, x in enumerate(SPECIAL) for k in (0, 1, 2)] + \
        [(x, x) for x in SPECIAL]


def jobs(rng: np.random.Generator, n: int) -> list[tuple[int, int, int, int]]:
    """``(function code, x, d, expected)``: every special word for every function of one
    operand and the special pairs for MUL and MAX (``d`` 0 for the others), then ``n`` more
    of random functions with random words, values in and around each range, and for MUL and
    MAX random second operands, some near ``x``."""
    out = [(f, w, 0) for f, name in enumerate(FUNCTIONS) if name in UNARY for w in SPECIAL]
    out += [(f, x, d) for f, name in enumerate(FUNCTIONS) if name not in UNARY
            for x, d in special_pairs()]
    for _ in range(n):
        f = int(rng.integers(len(FUNCTIONS)))
        lo, hi = nl.RANGES.get(FUNCTIONS[f], (-1e3, 1e3))
        if rng.random() < 0.3:
            w = int(rng.integers(0, 1 << 32))
        elif lo > 0:
            w = int(np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi)))).view(np.uint32))
        else:
            w = int(np.float32(rng.uniform(max(lo, -20.0), min(hi, 20.0))).view(np.uint32))
        d = 0
        if FUNCTIONS[f] not in UNARY:
            near = rng.random() < 0.5
            d = (w + int(rng.integers(-2, 3))) % (1 << 32) if near else \
                int(rng.integers(0, 1 << 32))
        out.append((f, w, d))
    order = rng.permutation(len(out))
    out = [out[k] for k in order]
    expected = {}
    for f, name in enumerate(FUNCTIONS):
        words = np.array([w for g, w, _ in out if g == f], np.uint32)
        operands = np.array([d for g, _, d in out if g == f], np.uint32)
        expected[f] = iter(nl.reference(name, words, operands).tolist())
    return [(f, w, d, next(expected[f])) for f, w, d in out]


class Unit(Part):
    """Drives ``start``/``func``/``x``/``d`` and checks ``ready``, ``done`` and ``o``."""

    def __init__(self, dut, work: list[tuple[int, int, int, int]], stages: int, idle: float,
                 rng: np.random.Generator, seed: int):
        super().__init__(dut, "unit")
        self.work, self.stages, self.idle_p, self.rng, self.seed = work, stages, idle, rng, seed
        self.cycle = 0
        self.busy_until = -1       # the cycle of the next done (the unit is busy before it)
        self.current = None        # (function, x, d, expected) started last
        self.result_valid = False  # o holds current's result
        self.offered = None
        self.done_jobs = 0
        self.ignored_starts = 0
        self.errors: list[str] = []

    def idle(self) -> None:
        self.dut.start.value = 0
        self.dut.func.value = 0
        self.dut.x.value = 0
        self.dut.d.value = 0

    def drive(self) -> None:
        busy = self.cycle < self.busy_until
        self.offered = None
        if busy:
            junk = self.rng.random() < 0.2
            self.dut.start.value = int(junk)
            self.dut.func.value = int(self.rng.integers(len(FUNCTIONS)))
            self.dut.x.value = int(self.rng.integers(0, 1 << 32))
            self.dut.d.value = int(self.rng.integers(0, 1 << 32))
        elif self.work and self.rng.random() >= self.idle_p:
            self.offered = self.work[0]
            self.dut.start.value = 1
            self.dut.func.value, self.dut.x.value = self.offered[0], self.offered[1]
            self.dut.d.value = self.offered[2]
        else:
            self.dut.start.value = 0

    def _error(self, what: str) -> None:
        if len(self.errors) < 10:
            job = "" if self.current is None else (f" ({FUNCTIONS[self.current[0]]} of "
                                                   f"{self.current[1]:#010x}, "
                                                   f"{self.current[2]:#010x})")
            self.errors.append(f"cycle {self.cycle}: {what}{job} (seed {self.seed})")

    def sample(self) -> None:
        busy = self.cycle < self.busy_until
        ready, done = int(self.dut.ready.value), int(self.dut.done.value)
        if ready != int(not busy):
            self._error(f"ready {ready}, expected {int(not busy)}")
        expect_done = self.cycle == self.busy_until
        if done != int(expect_done):
            self._error(f"done {done}, expected {int(expect_done)}")
        if expect_done:
            self.result_valid = True
            self.done_jobs += 1
        if self.result_valid:
            value = self.dut.o.value
            o = value.to_unsigned() if value.is_resolvable else None
            if o is None:
                self._error(f"o {value}, expected {self.current[3]:#010x}")
            elif o != self.current[3]:
                self._error(f"o {o:#010x}, expected {self.current[3]:#010x}")
        if busy and int(self.dut.start.value):
            self.ignored_starts += 1
        if self.offered is not None:   # taken: ready was high
            cover_unit_jobs([self.offered[:3]])
            self.work.pop(0)
            self.current = self.offered
            self.result_valid = False
            name = FUNCTIONS[self.offered[0]]
            self.busy_until = self.cycle + cycles(name, self.stages)
        self.cycle += 1


@cocotb.test()
async def random_jobs(dut):
    """Every special word of every function, then seeded random jobs; idle cycles and starts
    while busy (ignored) at random."""
    tb = TB(dut, Config())
    stages = env_int("WAFERTILE_STAGES", 1)
    rng = np.random.default_rng(tb.seed)
    work = jobs(rng, env_int("WAFERTILE_JOBS", 300))
    total = len(work)
    unit = tb.add(Unit(dut, work, stages, env_float("WAFERTILE_IDLE", 0.3), rng, tb.seed))
    await tb.reset()
    longest = max(cycles(f, stages) for f in FUNCTIONS)
    while unit.work or unit.cycle <= unit.busy_until:
        await tb.cycles(longest)
        assert not unit.errors, "\n".join(unit.errors)
    await tb.cycles(3)
    assert not unit.errors, "\n".join(unit.errors)
    assert unit.done_jobs == total, (unit.done_jobs, total)
    assert unit.ignored_starts > 0
