"""cocotb testbench of the board design (array + flit-over-UART bridge) through its serial pins.

A UART model bit-bangs ``rx`` and decodes ``tx``; the host code is the very generator that
``wafertile run --device`` plays on a serial port (:func:`wafertile.device.drive`).

Environment: ``WAFERTILE_CONFIG`` (JSON), ``WAFERTILE_DIVISOR`` (clock cycles per bit),
``WAFERTILE_SEED``, ``WAFERTILE_LAYER`` (JSON: B, I, J, density, extremes).
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge

from ...device import DeviceError, Protocol, drive
from ...formats import fp32_values, same_bits
from ...hdl.flit import Opcode, Port, encode_route
from ...hdl.uart import INJECT, STATUS_REQ
from ...stream import compile_layer, reference
from ..stimulus import make_layer
from ..vip import TB, env_int, env_json


class UartModel:
    """8N1 at ``divisor`` clock cycles per bit on the DUT's ``rx`` (driven) and ``tx``
    (monitored); received bytes collect in :attr:`received`."""

    def __init__(self, dut, divisor: int):
        self.dut, self.clk, self.div = dut, dut.clk, divisor
        self.received = bytearray()
        self.framing_errors = 0
        dut.rx.value = 1
        cocotb.start_soon(self._monitor())

    async def write(self, data: bytes) -> None:
        for byte in data:
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                self.dut.rx.value = bit
                await ClockCycles(self.clk, self.div)

    async def _monitor(self) -> None:
        tx = self.dut.tx
        while True:
            await FallingEdge(tx)
            await ClockCycles(self.clk, self.div // 2)
            if int(tx.value):
                continue  # a glitch
            byte = 0
            for i in range(8):
                await ClockCycles(self.clk, self.div)
                byte |= int(tx.value) << i
            await ClockCycles(self.clk, self.div)
            if int(tx.value):
                self.received.append(byte)
            else:
                self.framing_errors += 1

    async def read(self, wait_bytes: int = 4) -> bytes:
        """What arrived, after waiting about ``wait_bytes`` byte times if nothing had."""
        if not self.received:
            await ClockCycles(self.clk, self.div * 10 * wait_bytes)
        data = bytes(self.received)
        self.received.clear()
        return data


async def play(model: UartModel, gen):
    """Run a :func:`wafertile.device.drive` generator on the UART model."""
    request = next(gen)
    while True:
        try:
            if request[0] == "send":
                await model.write(request[1])
                request = gen.send(None)
            else:
                request = gen.send(await model.read())
        except StopIteration as stop:
            return stop.value


async def _start(dut):
    tb = TB(dut)
    model = UartModel(dut, env_int("WAFERTILE_DIVISOR", 16))
    await tb.reset(cycles=4)
    return tb, model


@cocotb.test()
async def layer(dut):
    """A random sparse layer through the bridge matches numpy (seed in the log)."""
    tb, model = await _start(dut)
    cfg, seed, spec = tb.config, tb.seed, env_json("WAFERTILE_LAYER")
    rng = np.random.default_rng(seed)
    x, w = make_layer(cfg, rng, spec["B"], spec["I"], spec["J"], spec["density"],
                      extremes=spec.get("extremes", False))
    program = compile_layer(cfg, x, w)
    y, stats = await play(model, drive(cfg, program, idle_limit=50))
    expected = reference(cfg, x, w)
    if cfg.is_float:  # the replies carry FP32 words
        y = fp32_values(y)
    assert same_bits(y, expected).all() if cfg.is_float else np.array_equal(y, expected), \
        f"seed {seed}: Y differs from numpy:\n{y}\n{expected}"
    assert stats["macs"] == sum(p.expected_macs for p in program.phases), stats
    assert stats["flags"] == 0, f"bridge flags {stats['flags']:#x}"
    assert model.framing_errors == 0
    dut._log.info(f"seed {seed}: {stats['frames']} frames, {stats['macs']} MACs, Y matches")


@cocotb.test()
async def network(dut):
    """A two-layer network through the bridge (the host code of ``wafertile run --network
    --device``): the hand-off stays on the board, the outputs equal the integer reference."""
    from ...network import compile_network, load_network
    from ..models.network import network_reference

    tb, model = await _start(dut)
    cfg = tb.config
    net = load_network(env_json("WAFERTILE_NETWORK"))
    x = np.load(env_json("WAFERTILE_INPUTS"))
    program = compile_network(cfg, net, x)
    y, stats = await play(model, drive(cfg, program, idle_limit=50))
    expected, _ = network_reference(cfg, net, x)
    if cfg.is_float:
        y = fp32_values(y)
    assert same_bits(y, expected).all() if cfg.is_float else np.array_equal(y, expected), \
        f"outputs differ:\n{y}\n{expected}"
    assert stats["macs"] == sum(p.expected_macs for p in program.phases), stats
    assert stats["flags"] == 0, f"bridge flags {stats['flags']:#x}"
    dut._log.info(f"{stats['frames']} frames, {stats['macs']} MACs, outputs match")


@cocotb.test()
async def bad_frames(dut):
    """Garbage bytes are skipped, a frame naming a missing row is dropped, acknowledged and
    flagged, and the bridge still works afterwards."""
    tb, model = await _start(dut)
    cfg = tb.config
    proto = Protocol(cfg)
    # Noise before a frame: skipped. Then a frame for row = rows (does not exist).
    bad = bytes([INJECT, cfg.rows]) + bytes(proto.nbytes)
    await model.write(b"\x00\xff\x13" + bad + bytes([STATUS_REQ]))
    events = []
    for _ in range(40):
        events += proto.feed(await model.read())
        if any(e[0] == "status" for e in events):
            break
    assert ("ack",) in events, f"the dropped frame was not acknowledged: {events}"
    status = [e for e in events if e[0] == "status"]
    assert status and status[0][2] & 2, f"bad-row flag not set: {events}"
    # A READ_ACT of tile (0, 0) through row 0 still gets its reply.
    # reply to the host, west edge of row 0
    route = encode_route(cfg, x=0, y=0, exit=Port.WEST, vc=cfg.num_vcs - 1)
    read = {"header": {"x0": 0, "x1": 0, "y0": 0, "y1": 0, "vc": 0, "exit": 0},
            "payload": {"op": Opcode.READ_ACT, "addr": 0, "addr_b": 5, "data": route}}
    await model.write(proto.inject(0, read))
    replies = []
    for _ in range(60):
        replies += [e for e in proto.feed(await model.read()) if e[0] == "reply"]
        if replies:
            break
    assert replies and replies[0][1] == 0 and replies[0][2]["addr_b"] == 5, replies
    # A host talking to the wrong design sees a clear error, not a hang.
    try:
        Protocol(cfg).feed(b"\x42")
    except DeviceError as exc:
        assert "unexpected byte 0x42" in str(exc)
    else:
        raise AssertionError("an unknown byte was accepted")
