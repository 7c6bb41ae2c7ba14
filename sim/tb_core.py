"""cocotb testbench of the tile core (``wafertile_core``) against the numpy model.

Parts: a :class:`~wafertile.sim.cocotb_stream.StreamDriver` on ``i`` (random idle), a
:class:`~wafertile.sim.cocotb_stream.StreamMonitor` on ``o`` (random backpressure), counters
of ``mac_done`` / ``mac_skipped``, the :class:`~wafertile.sim.model.CoreModel`, and a checker
that compares every output flit, the final contents of both banks (read back through the flit
interface) and the MAC counts.

Run from pytest (tests/test_core_cocotb.py). The environment carries the case:
``WAFERTILE_CONFIG`` (JSON of :meth:`Config.as_dict`), ``WAFERTILE_SEED``,
``WAFERTILE_DENSITY``, ``WAFERTILE_IDLE``, ``WAFERTILE_BACKPRESSURE``, ``WAFERTILE_FLITS``.
"""

from __future__ import annotations

import json
import os
from random import Random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from ..config import Config
from ..hdl.flit import Opcode, pack, payload_layout, unpack
from .cocotb_stream import StreamDriver, StreamMonitor
from .model import CoreModel
from .stimulus import directed, dump, random_stream


def _env_config() -> Config:
    return Config.from_mapping(json.loads(os.environ.get("WAFERTILE_CONFIG", "{}")))


def _seed() -> int:
    return int(os.environ.get("WAFERTILE_SEED", "1"))


def _clear(cfg: Config) -> list[dict]:
    """Zero both banks: memories keep their contents across reset and across cocotb tests."""
    return ([{"op": Opcode.WRITE_ACT, "addr": a, "addr_b": 0, "data": 0}
             for a in range(cfg.act_depth)] +
            [{"op": Opcode.WRITE_ACC, "addr": a, "addr_b": 0, "data": 0}
             for a in range(cfg.acc_depth)])


async def _reset(dut) -> None:
    """Start the clock, hold reset for 3 cycles with both streams idle, release it."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _counter(dut, clk, counts):
    while True:
        await RisingEdge(clk)
        await ReadOnly()
        counts["mac_done"] += int(dut.mac_done.value)
        counts["mac_skipped"] += int(dut.mac_skipped.value)


async def _run(dut, flits, *, idle: float, backpressure: float, seed: int):
    """Drive ``flits`` (after clearing memory), then read back all memory; check everything."""
    cfg = _env_config()
    layout = payload_layout(cfg)
    clk = dut.clk
    await _reset(dut)

    # Clear at full speed; the clear's flits produce no output.
    clear = StreamDriver(dut, "i", clk)
    await clear.send(pack(layout, f) for f in _clear(cfg))

    rng = Random(seed)
    got: list[dict] = []
    tags: list[int] = []

    def take(word: int) -> None:  # called in the ReadOnly phase of the transfer
        got.append(unpack(layout, word))
        tags.append(int(dut.o_tag.value))

    monitor = StreamMonitor(dut, "o", clk, take, backpressure=backpressure,
                            rng=Random(rng.random()))
    counts = {"mac_done": 0, "mac_skipped": 0}
    counter = cocotb.start_soon(_counter(dut, clk, counts))
    stream = flits + dump(cfg)
    driver = StreamDriver(dut, "i", clk, idle=idle, rng=Random(rng.random()))
    await driver.send(pack(layout, f) for f in stream)

    model = CoreModel(cfg)
    ref = model.run(stream)
    # Wait for the outputs still in flight (bounded: a lost flit must fail, not hang).
    for _ in range(100 + 20 * len(ref.outputs)):
        if len(got) >= len(ref.outputs):
            break
        await RisingEdge(clk)
    await ClockCycles(clk, 5)
    monitor.stop()
    counter.cancel()

    where = f"(seed {seed}, {len(stream)} flits)"
    assert not monitor.protocol_errors, f"stream rule broken on o {where}: " \
        f"{monitor.protocol_errors[:3]}"
    assert len(got) == len(ref.outputs), \
        f"core emitted {len(got)} flits, model {len(ref.outputs)} {where}"
    for n, (g, r) in enumerate(zip(got, ref.outputs, strict=True)):
        assert g == r, f"output flit {n}: core {g}, model {r} {where}"
    assert tags == ref.tags, f"o_tag differs from the requests' data fields {where}"
    assert counts["mac_done"] == ref.mac_done, \
        f"mac_done pulses {counts['mac_done']}, model {ref.mac_done} {where}"
    assert counts["mac_skipped"] == ref.mac_skipped, \
        f"mac_skipped pulses {counts['mac_skipped']}, model {ref.mac_skipped} {where}"
    assert int(dut.error.value) == int(ref.error), \
        f"error output {int(dut.error.value)}, model {int(ref.error)} {where}"
    dut._log.info("checked %d flits, %d outputs, %d MACs done, %d skipped, %d input stalls %s",
                  len(stream), len(got), ref.mac_done, ref.mac_skipped, driver.stall_cycles,
                  where)
    return driver


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


async def _directed(dut, name: str):
    cfg = _env_config()
    seed = _seed()
    await _run(dut, directed(name, cfg), idle=_float("WAFERTILE_IDLE", 0.0),
               backpressure=_float("WAFERTILE_BACKPRESSURE", 0.0), seed=seed)


@cocotb.test()
async def overflow(dut):
    """Sums across both ends of the accumulator range, by ADD and by MAC."""
    await _directed(dut, "overflow")


@cocotb.test()
async def back_to_back(dut):
    """Back-to-back MACs/ADDs/WRITEs to the same accumulator and activation."""
    await _directed(dut, "back_to_back")


@cocotb.test()
async def zeros(dut):
    """Zero weights and zero activations: no accumulator may change."""
    await _directed(dut, "zeros")


@cocotb.test()
async def extremes(dut):
    """All products of the extreme data values."""
    await _directed(dut, "extremes")


@cocotb.test()
async def bad_op(dut):
    """A REPLY flit on the input: consumed, no effect, sticky error set."""
    await _directed(dut, "bad_op")


@cocotb.test()
async def zero_stream_never_stalls(dut):
    """An all-zero MAC stream with the output never ready: the input must never wait."""
    cfg = _env_config()
    flits = [{"op": Opcode.MAC, "addr": a % 4, "addr_b": a % cfg.act_depth, "data": 0}
             for a in range(200)]
    layout = payload_layout(cfg)
    clk = dut.clk
    await _reset(dut)
    counts = {"mac_done": 0, "mac_skipped": 0}
    cocotb.start_soon(_counter(dut, clk, counts))
    driver = StreamDriver(dut, "i", clk)
    await driver.send(pack(layout, f) for f in flits)
    await ClockCycles(clk, 4)
    assert driver.stall_cycles == 0, f"input waited {driver.stall_cycles} cycles"
    assert counts == {"mac_done": 0, "mac_skipped": len(flits)}, counts


@cocotb.test()
async def random_stream_test(dut):
    """Seeded random mix of every operation with idle input and backpressured output."""
    cfg = _env_config()
    seed = _seed()
    density = _float("WAFERTILE_DENSITY", 0.1)
    n = int(os.environ.get("WAFERTILE_FLITS", "1500"))
    flits = random_stream(cfg, np.random.default_rng(seed), n, density)
    await _run(dut, flits, idle=_float("WAFERTILE_IDLE", 0.3),
               backpressure=_float("WAFERTILE_BACKPRESSURE", 0.3), seed=seed)


@cocotb.test()
async def full_rate(dut):
    """No idle, no backpressure: every flit is taken in its cycle (one MAC per cycle)."""
    cfg = _env_config()
    seed = _seed()
    flits = random_stream(cfg, np.random.default_rng(seed), 1000, 0.5)
    driver = await _run(dut, flits, idle=0.0, backpressure=0.0, seed=seed)
    assert driver.stall_cycles == 0, f"input waited {driver.stall_cycles} cycles at full rate"
