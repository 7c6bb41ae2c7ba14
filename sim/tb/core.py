"""cocotb testbench of the tile core (``wafertile_core``) against the numpy model.

:class:`CoreTB`: a :class:`~wafertile.sim.vip.StreamSource` on ``i`` (random idle), a
:class:`~wafertile.sim.vip.StreamSink` on ``o`` (random backpressure) that records each output
with its ``o_tag``, counters of ``mac_done`` / ``mac_skipped``, and a
:class:`~wafertile.sim.vip.CoreScoreboard` that compares every output flit, the final contents
of both banks (read back through the flit interface) and the MAC counts with the model.

Run from pytest (tests/test_core_cocotb.py). Environment: ``WAFERTILE_CONFIG``,
``WAFERTILE_SEED``, ``WAFERTILE_DENSITY``, ``WAFERTILE_IDLE``, ``WAFERTILE_BACKPRESSURE``,
``WAFERTILE_FLITS``.
"""

from __future__ import annotations

from random import Random

import cocotb
import numpy as np

from ...hdl.core.ops import OPS, code_of, codes
from ...hdl.flit import Opcode, pack, payload_layout
from ..models import CoreModel
from ..stimulus import DIRECTED, FLOAT_DIRECTED, NO_HANDOFF_DIRECTED, directed, dump, random_stream
from ..vip import (
    TB,
    CoreCoverage,
    CoreScoreboard,
    Part,
    StreamSink,
    StreamSource,
    cover_unit_jobs,
    env_float,
    env_int,
    never,
    random_pause,
)


class _MacCounter(Part):
    def __init__(self, dut, board: CoreScoreboard):
        super().__init__(dut, "mac")
        self.board = board

    def sample(self) -> None:
        self.board.mac_done += int(self.dut.mac_done.value)
        self.board.mac_skipped += int(self.dut.mac_skipped.value)


class CoreTB(TB):
    """The core, its stream parts and its scoreboard."""

    def __init__(self, dut, *, idle: float = 0.0, backpressure: float = 0.0):
        super().__init__(dut)
        self.layout = payload_layout(self.config)
        rng = Random(self.rng.random())
        self.board = CoreScoreboard(self.config)
        self.source = self.add(StreamSource(dut, "i", pause=random_pause(idle, rng)))
        self.sink = self.add(StreamSink(
            dut, "o", backpressure=random_pause(backpressure, rng),
            on_received=lambda word: self.board.received(word, int(dut.o_tag.value))))
        self.counter = self.add(_MacCounter(dut, self.board))
        self.add(CoreCoverage(dut, self.config))

    def clear_memory(self) -> list[dict]:
        """Zero both banks (memories keep their contents across reset and across tests)."""
        cfg = self.config
        return ([{"op": Opcode.WRITE_ACT, "addr": a, "data": 0} for a in range(cfg.act_depth)]
                + [{"op": Opcode.WRITE_ACC, "addr": a, "data": 0}
                   for a in range(cfg.acc_depth)])

    async def send(self, flits: list[dict]) -> None:
        """Queue ``flits`` and wait until the core has taken all of them."""
        self.source.send(pack(self.layout, f) for f in flits)
        await self.wait_until(lambda: self.source.idle_now, timeout=50 * len(flits) + 100,
                              what=f"the core to take {len(flits)} flits")

    async def check(self, flits: list[dict]) -> None:
        """Clear memory, drive ``flits`` and a dump of both banks, then compare everything the
        core emitted with the model."""
        await self.reset()
        pause, self.source.pause = self.source.pause, never()
        await self.send(self.clear_memory())  # at full speed; no outputs
        self.source.pause = pause
        self.source.stall_cycles = self.board.mac_done = self.board.mac_skipped = 0
        stream = flits + dump(self.config)
        await self.send(stream)
        # the operations of this core that emit (FINISH only with the hand-off unit)
        emitters = codes(OPS.emitting(self.config))
        expected = len([f for f in stream if code_of(f["op"]) in emitters])
        # the outputs still in flight (bounded: a lost flit must fail, not hang)
        await self.wait_until(lambda: len(self.board.outputs) >= expected,
                              timeout=100 + 20 * expected, what=f"{expected} outputs")
        await self.cycles(5)
        self.board.errors += self.sink.protocol_errors
        model = self.board.compare(stream, error=int(self.dut.error.value))
        cover_unit_jobs(model.result.unit_jobs)
        self.board.assert_ok(f"(seed {self.seed}, {len(stream)} flits)")
        self.dut._log.info("checked %d flits, %d outputs, %d MACs done, %d skipped, %d input "
                           "stalls (seed %d)", len(stream), len(self.board.outputs),
                           self.board.mac_done, self.board.mac_skipped,
                           self.source.stall_cycles, self.seed)


def _tb(dut) -> CoreTB:
    return CoreTB(dut, idle=env_float("WAFERTILE_IDLE", 0.0),
                  backpressure=env_float("WAFERTILE_BACKPRESSURE", 0.0))


@cocotb.test()
@cocotb.parametrize(case=[cocotb.Param(value=name, name=name)
                          for name in [*DIRECTED, *FLOAT_DIRECTED, *NO_HANDOFF_DIRECTED]])
async def directed_case(dut, case):
    """A directed case of :data:`wafertile.sim.stimulus.DIRECTED` (overflow at both ends,
    back-to-back hazards, zero operands, extreme products, a bad opcode), or for a float core
    of :data:`~wafertile.sim.stimulus.FLOAT_DIRECTED` (signed zeros, subnormals, infinities,
    NaNs, ties, cancellation, runs into one accumulator, the hand-off), or for a core without
    the hand-off unit :data:`~wafertile.sim.stimulus.NO_HANDOFF_DIRECTED` (SET and FINISH
    raise the error); the pytest side picks the cases of the core's configuration
    (:func:`~wafertile.sim.stimulus.directed_cases`)."""
    tb = _tb(dut)
    await tb.check(directed(case, tb.config))


@cocotb.test()
async def zero_stream_never_stalls(dut):
    """An all-zero MAC stream with the output never ready: the input must never wait."""
    tb = CoreTB(dut, backpressure=1.0)
    cfg = tb.config
    flits = [{"op": Opcode.MAC, "addr": a % 4, "addr_b": a % cfg.act_depth, "data": 0}
             for a in range(200)]
    await tb.reset()
    await tb.send(flits)
    await tb.cycles(4)
    assert tb.source.stall_cycles == 0, f"input waited {tb.source.stall_cycles} cycles"
    assert (tb.board.mac_done, tb.board.mac_skipped) == (0, len(flits)), \
        (tb.board.mac_done, tb.board.mac_skipped)


@cocotb.test()
async def random_stream_test(dut):
    """Seeded random mix of every operation with idle input and backpressured output."""
    tb = CoreTB(dut, idle=env_float("WAFERTILE_IDLE", 0.3),
                backpressure=env_float("WAFERTILE_BACKPRESSURE", 0.3))
    flits = random_stream(tb.config, np.random.default_rng(tb.seed),
                          env_int("WAFERTILE_FLITS", 1500), env_float("WAFERTILE_DENSITY", 0.1))
    await tb.check(flits)


@cocotb.test()
async def full_rate(dut):
    """No idle, no backpressure: every flit is taken in its cycle (one MAC per cycle); a float
    core waits exactly its bubbles (a flit that uses the accumulator the flit before it
    writes: :attr:`~wafertile.sim.models.CoreResult.bubbles`)."""
    tb = CoreTB(dut)
    flits = random_stream(tb.config, np.random.default_rng(tb.seed), 1000, 0.5)
    await tb.check(flits)
    bubbles = CoreModel(tb.config).run(flits + dump(tb.config)).bubbles
    assert tb.source.stall_cycles == bubbles, \
        f"input waited {tb.source.stall_cycles} cycles at full rate, the model {bubbles}"
