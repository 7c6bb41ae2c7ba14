"""Numpy reference models of the SRAM bank and the MAC core, at transaction level.

A model takes the operation flits in the order the core accepts them and returns the flits the
core emits, in order, and the final contents of both banks. It is bit-exact with the RTL,
including overflow (wrap or saturate), the low-bit use of weights, activations and addresses
(documented in :class:`wafertile.hdl.core.MacCore`), and the ``mac_done`` / ``mac_skipped``
counts. With a floating-point ``dtype`` it follows :class:`wafertile.hdl.core.FpMacCore`:
FP16 / BF16 words in the activation bank, FP32 bits in the accumulators (held as the signed
32-bit value of the bits, as a flit's ``data`` field carries them), the arithmetic of
:mod:`wafertile.sim.models.fp`, and the core's bubbles counted (:attr:`CoreResult.bubbles`).

Flits are dicts with the payload fields ``op`` (an :class:`~wafertile.hdl.flit.Opcode`),
``addr``, ``addr_b`` and ``data``, as :func:`wafertile.hdl.flit.unpack` returns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...config import Config, Overflow
from ...hdl.flit import MULT_WIDTH, Opcode, Reg
from .fp import add as fp_add
from .fp import is_zero as fp_is_zero
from .fp import mac as fp_mac
from .fp import relu as fp_relu
from .fp import to_half as fp_to_half

__all__ = ["CoreModel", "CoreResult", "SramCycleModel", "SramModel", "requantize", "saturate",
           "wrap"]


def wrap(value: int, bits: int) -> int:
    """Two's complement wrap of ``value`` to ``bits`` signed bits."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def saturate(value: int, bits: int) -> int:
    """Clamp ``value`` to the range of ``bits`` signed bits."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return min(max(value, lo), hi)


def requantize(acc, mult, shift, relu, config: Config) -> np.ndarray:
    """FINISH's activation from accumulators ``acc`` (arrays broadcast together): ``acc *
    mult / 2**shift`` rounded to nearest with ties away from zero, ``max(., 0)`` where
    ``relu``, clamped to ``data_min .. data_max`` (``docs/architecture.md``). Exact for every
    accumulator width (Python integers where int64 could overflow)."""
    acc, mult, shift, relu = np.broadcast_arrays(np.asarray(acc), np.asarray(mult),
                                                 np.asarray(shift), np.asarray(relu))
    wide = config.acc_width + MULT_WIDTH > 62
    p = acc.astype(object) * mult.astype(object) if wide else \
        acc.astype(np.int64) * mult.astype(np.int64)
    sh = shift.astype(np.int64)
    one = np.ones_like(p)
    mask = (one << sh) - one
    floor = p >> sh
    remainder = p & mask
    threshold = (mask >> 1) + (p < 0).astype(np.int64)
    r = floor + (remainder > threshold).astype(np.int64)
    r = np.where(relu.astype(bool) & (r < 0), 0, r)
    return np.clip(r.astype(object) if wide else r, config.data_min,
                   config.data_max).astype(np.int64)


class SramModel:
    """The two banks: ``act`` (``data_width`` signed) and ``acc`` (``acc_width`` signed).

    Addresses use their low bits, as in the RTL. Contents start at zero.
    """

    def __init__(self, config: Config):
        self.config = config
        self.act = np.zeros(config.act_depth, dtype=np.int64)
        self.acc = np.zeros(config.acc_depth, dtype=np.int64)

    def act_index(self, addr: int) -> int:
        return addr & (self.config.act_depth - 1)

    def acc_index(self, addr: int) -> int:
        return addr & (self.config.acc_depth - 1)


class SramCycleModel:
    """Cycle-level model of one bank of :class:`~wafertile.hdl.core.SramBank`.

    Each :meth:`step` is one clock edge with the port inputs of that cycle; it returns the
    read port's ``data`` for the next cycle: the addressed word when ``ren`` was high (the word
    being written, if the write port wrote the same address: the port is transparent), the
    previous data when ``ren`` was low. Before the first read the data is undefined (``None``;
    the RTL's read register has no reset value).
    """

    def __init__(self, depth: int, width: int):
        self.mem = np.zeros(depth, dtype=np.int64)
        self.width = width
        self.data: int | None = None

    def step(self, *, ren: int, raddr: int, wen: int, waddr: int, wdata: int) -> int | None:
        if wen:
            self.mem[waddr] = wrap(wdata, self.width)
        if ren:
            self.data = int(self.mem[raddr])
        return self.data


@dataclass
class CoreResult:
    """What a run of the core produced."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    #: ``o_tag`` of each output: the raw ``acc_width`` bits of the request's ``data`` field
    tags: list[int] = field(default_factory=list)
    mac_done: int = 0
    mac_skipped: int = 0
    #: WRITE_ACT operations executed (the ``act_written`` pulses)
    act_written: int = 0
    error: bool = False
    #: Cycles a floating-point core holds its input for the accumulator hazard when the flits
    #: come one per cycle: flits that use the accumulator the flit just before them writes
    #: (``FpMacCore``; always 0 for the integer core, which never holds).
    bubbles: int = 0


class CoreModel:
    """Transaction-level model of :class:`~wafertile.hdl.core.TileCore`. With ``handoff =
    false`` in the configuration (no hand-off unit) SET and FINISH are unknown opcodes: no
    effect, the sticky error."""

    def __init__(self, config: Config):
        self.config = config
        self.sram = SramModel(config)
        self.result = CoreResult()
        #: the tile registers SET writes, at their reset values
        self.regs = {Reg.MULT: 1, Reg.SHIFT: 0, Reg.RELU: 0}
        #: the accumulator the flit before wrote (float bubbles), or None
        self._written: int | None = None

    def _accumulate(self, old: int, addend: int) -> int:
        total = old + addend
        if self.config.overflow_mode is Overflow.SATURATE:
            return saturate(total, self.config.acc_width)
        return wrap(total, self.config.acc_width)

    def step(self, flit: Mapping[str, Any]) -> dict[str, Any] | None:
        """Apply one flit; return the flit the core emits for it, if any."""
        cfg, mem = self.config, self.sram
        try:
            op = Opcode(flit["op"])
        except ValueError:  # an opcode with no operation
            op = None
        if op is None or (not cfg.handoff and op in (Opcode.SET, Opcode.FINISH)):
            # an opcode with no operation, or SET / FINISH on a core without the hand-off
            # unit (handoff = false): no effect, sticky error
            self.result.error = True
            self._written = None
            return None
        # missing fields are zero, as in wafertile.hdl.flit.pack
        addr, addr_b = int(flit.get("addr", 0)), int(flit.get("addr_b", 0))
        value = int(flit.get("data", 0))
        if cfg.is_float:
            return self._step_float(op, addr, addr_b, value)
        low = wrap(value, cfg.data_width)  # weight / activation: the low data_width bits
        if op is Opcode.WRITE_ACT:
            mem.act[mem.act_index(addr)] = low
            self.result.act_written += 1
        elif op is Opcode.WRITE_ACC:
            mem.acc[mem.acc_index(addr)] = value
        elif op is Opcode.READ_ACT:
            return {"op": Opcode.REPLY, "addr": addr, "addr_b": addr_b,
                    "data": int(mem.act[mem.act_index(addr)])}
        elif op is Opcode.READ_ACC:
            return {"op": Opcode.REPLY, "addr": addr, "addr_b": addr_b,
                    "data": int(mem.acc[mem.acc_index(addr)])}
        elif op is Opcode.MAC:
            act = int(mem.act[mem.act_index(addr_b)])
            if low == 0 or act == 0:
                self.result.mac_skipped += 1
            else:
                i = mem.acc_index(addr)
                mem.acc[i] = self._accumulate(int(mem.acc[i]), low * act)
                self.result.mac_done += 1
        elif op is Opcode.ADD:
            i = mem.acc_index(addr)
            mem.acc[i] = self._accumulate(int(mem.acc[i]), value)
        elif op is Opcode.SEND:
            return {"op": Opcode.ADD, "addr": addr_b, "addr_b": addr,
                    "data": int(mem.acc[mem.acc_index(addr)])}
        elif op is Opcode.SET:  # the register's low bits, as the hardware takes them
            reg = Reg(addr & 0b11) if addr & 0b11 in (r.value for r in Reg) else None
            bits = {Reg.MULT: MULT_WIDTH, Reg.SHIFT: (cfg.acc_width + MULT_WIDTH - 1)
                    .bit_length(), Reg.RELU: 1}
            if reg is not None:
                self.regs[reg] = value & ((1 << bits[reg]) - 1)
        elif op is Opcode.FINISH:
            act = requantize(int(mem.acc[mem.acc_index(addr)]), self.regs[Reg.MULT],
                             self.regs[Reg.SHIFT], self.regs[Reg.RELU], cfg)
            return {"op": Opcode.WRITE_ACT, "addr": addr_b, "addr_b": 0, "data": int(act)}
        else:  # REPLY and the unused opcodes are not operations: no effect, sticky error
            self.result.error = True
        return None

    def _step_float(self, op: Opcode, addr: int, addr_b: int, value: int
                    ) -> dict[str, Any] | None:
        """:meth:`step` of a floating-point core (``FpMacCore``): raw bits, IEEE arithmetic."""
        cfg, mem = self.config, self.sram
        fmt = cfg.dtype
        low = value & 0xFFFF  # weight / activation: the low 16 bits, raw
        i = mem.acc_index(addr)
        acc = int(mem.acc[i]) & 0xFFFFFFFF
        reads = writes = False
        out = None
        if op is Opcode.WRITE_ACT:
            mem.act[mem.act_index(addr)] = low
            self.result.act_written += 1
        elif op is Opcode.WRITE_ACC:
            mem.acc[i] = wrap(value, 32)
            writes = True
        elif op is Opcode.READ_ACT:
            out = {"op": Opcode.REPLY, "addr": addr, "addr_b": addr_b,
                   "data": int(mem.act[mem.act_index(addr)])}
        elif op is Opcode.READ_ACC:
            out = {"op": Opcode.REPLY, "addr": addr, "addr_b": addr_b, "data": wrap(acc, 32)}
            reads = True
        elif op is Opcode.MAC:
            act = int(mem.act[mem.act_index(addr_b)])
            if fp_is_zero(low, fmt) or fp_is_zero(act, fmt):
                self.result.mac_skipped += 1
            else:
                mem.acc[i] = wrap(int(fp_mac(acc, low, act, fmt)), 32)
                self.result.mac_done += 1
                reads = writes = True
        elif op is Opcode.ADD:
            mem.acc[i] = wrap(int(fp_add(acc, value & 0xFFFFFFFF)), 32)
            reads = writes = True
        elif op is Opcode.SEND:
            out = {"op": Opcode.ADD, "addr": addr_b, "addr_b": addr, "data": wrap(acc, 32)}
            reads = True
        elif op is Opcode.SET:  # only RELU has a meaning; MULT and SHIFT are kept, unused
            if addr & 0b11 == Reg.RELU.value:
                self.regs[Reg.RELU] = value & 1
        elif op is Opcode.FINISH:
            word = fp_relu(acc) if self.regs[Reg.RELU] else acc
            out = {"op": Opcode.WRITE_ACT, "addr": addr_b, "addr_b": 0,
                   "data": int(fp_to_half(word, fmt))}
            reads = True
        else:
            self.result.error = True
        if reads and self._written == i:
            self.result.bubbles += 1
        self._written = i if writes else None
        return out

    def run(self, flits: Iterable[Mapping[str, Any]]) -> CoreResult:
        """Apply every flit in order; the result accumulates over calls."""
        for flit in flits:
            out = self.step(flit)
            if out is not None:
                self.result.outputs.append(out)
                mask = (1 << self.config.acc_width) - 1
                self.result.tags.append(int(flit.get("data", 0)) & mask)
        return self.result
