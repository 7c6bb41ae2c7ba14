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
``addr``, ``addr_b`` and ``data``, as :func:`wafertile.hdl.flit.unpack` returns them. What
each operation does comes from the operation table (:mod:`wafertile.hdl.core.ops`); what its
unit computes, from the number format's units (:data:`INT_UNITS`, :data:`FLOAT_UNITS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...config import Config, Overflow
from ...hdl.core.fp import float_format
from ...hdl.core.ops import OPS, Op, OpTable, code_of
from ...hdl.core.units import FpNonlinear, core_units, handoff_limbs, unit_kind
from ...hdl.flit import MULT_WIDTH, Reg
from .fp import add as fp_add
from .fp import is_zero as fp_is_zero
from .fp import mac as fp_mac
from .fp import relu as fp_relu
from .fp import to_half as fp_to_half
from .nonlinear import reference as nonlinear_reference

__all__ = ["FLOAT_UNITS", "INT_UNITS", "CoreModel", "CoreResult", "Operands", "SramCycleModel",
           "SramModel", "Unit", "handoff_stalls", "requantize", "saturate", "wrap"]


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
    #: Cycles the core holds its input when the flits come one per cycle and every output is
    #: taken at once: a floating-point core's accumulator hazard (flits that use the
    #: accumulator the flit just before them writes, ``FpMacCore``) and its NONLINEARs
    #: (:meth:`~wafertile.hdl.core.units.FpNonlinear.cycles` each); an integer core's
    #: hand-off unit in the way (:func:`handoff_stalls`).
    bubbles: int = 0
    #: The jobs of the iterative unit (the float core's NONLINEAR, MUL and MAX), in order:
    #: ``(function, x, d)``, the function's number (:attr:`~wafertile.hdl.core.units.
    #: FpNonlinear.FUNCTIONS`), the accumulator's FP32 word and the second operand's (the
    #: request's ``data``, used by MUL and MAX only): what the functional coverage samples.
    unit_jobs: list[tuple[int, int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Operands:
    """What a unit of :class:`CoreModel` computes from (:data:`INT_UNITS`,
    :data:`FLOAT_UNITS`)."""

    #: the accumulator the operation read (``acc[addr]``; a float core's FP32 bits as the
    #: signed 32-bit value a ``data`` field carries)
    acc: int
    #: the activation it read (0 if it reads none)
    act: int
    #: the request's whole ``data`` field
    data: int
    #: the low ``data_width`` bits of ``data`` (a weight or activation; a float core's 16
    #: bits, raw)
    operand: int
    #: the second activation it read (GRAD's, the product's weight; 0 if it reads none)
    act2: int = 0
    #: the function its iterative unit runs (:meth:`~wafertile.hdl.core.units.FpNonlinear.
    #: function`; 0 for any other unit)
    func: int = 0


#: A unit of the model: the value an operation's unit computes (what it writes to the
#: accumulator or emits), from the core's state and the operands.
Unit = Callable[["CoreModel", Operands], int]


def _int_mac(model: CoreModel, o: Operands) -> int:
    return model.accumulate(o.acc, o.operand * o.act)


def _int_add(model: CoreModel, o: Operands) -> int:
    return model.accumulate(o.acc, o.data)


def _int_handoff(model: CoreModel, o: Operands) -> int:
    regs = model.regs
    return int(requantize(o.acc, regs[Reg.MULT], regs[Reg.SHIFT], regs[Reg.RELU], model.config))


def _float_mac(model: CoreModel, o: Operands) -> int:
    return wrap(int(fp_mac(o.acc & 0xFFFFFFFF, o.operand, o.act, model.config.dtype)), 32)


def _float_add(model: CoreModel, o: Operands) -> int:
    return wrap(int(fp_add(o.acc & 0xFFFFFFFF, o.data & 0xFFFFFFFF)), 32)


def _float_handoff(model: CoreModel, o: Operands) -> int:
    word = o.acc & 0xFFFFFFFF
    word = fp_relu(word) if model.regs[Reg.RELU] else word
    return int(fp_to_half(word, model.config.dtype))


def _float_grad(model: CoreModel, o: Operands) -> int:
    return wrap(int(fp_mac(o.data & 0xFFFFFFFF, o.act2, o.act, model.config.dtype)), 32)


def _float_backprop(model: CoreModel, o: Operands) -> int:
    fmt = float_format(model.config.dtype)
    with np.errstate(invalid="ignore"):
        positive = bool(fmt.values(np.array([o.act]))[0] > 0)
    return int(fp_to_half(o.acc & 0xFFFFFFFF, model.config.dtype)) if positive else 0


def _float_nonlinear(model: CoreModel, o: Operands) -> int:
    words = np.array([o.acc & 0xFFFFFFFF, o.data & 0xFFFFFFFF], dtype=np.uint32)
    return wrap(int(nonlinear_reference(FpNonlinear.FUNCTIONS[o.func], words[:1],
                                        words[1:])[0]), 32)


#: The units of the integer core (``wafertile.hdl.core.ops``): ``acc + weight * act`` and
#: ``acc + data`` wrapped or saturated, FINISH's requantization (:func:`requantize`).
INT_UNITS: dict[str, Unit] = {"mac": _int_mac, "add": _int_add, "handoff": _int_handoff}
#: The units of the float core: the FP32 ``acc + fp32(w) * fp32(act)`` and ``acc + data`` of
#: :mod:`wafertile.sim.models.fp`, FINISH's ``to_half(relu?(acc))``, and the training units
#: (``docs/training.md``): GRAD's ``data + fp32(act2) * fp32(act)``, FINISH_BACK's
#: ``act > 0 ? to_half(acc) : +0``; NONLINEAR's ``f(acc)`` (``docs/nonlinear.md``).
FLOAT_UNITS: dict[str, Unit] = {"mac": _float_mac, "add": _float_add,
                                "handoff": _float_handoff, "grad": _float_grad,
                                "backprop": _float_backprop, "nonlinear": _float_nonlinear}


class CoreModel:
    """Transaction-level model of :class:`~wafertile.hdl.core.TileCore`, driven by the
    operation table: what an operation reads, computes, writes and emits is its row of
    ``ops`` (by default :data:`~wafertile.hdl.core.ops.OPS`); what a unit computes is the
    format's (:data:`INT_UNITS`, :data:`FLOAT_UNITS`, plus ``units``). An opcode the core
    does not execute (:meth:`~wafertile.hdl.core.ops.OpTable.legal`: REPLY, a code with no
    operation, SET and FINISH with ``handoff = false``) has no effect and sets the sticky
    error.

    Raises
    ------
    ValueError
        If an operation of ``ops`` needs a unit the model does not have.
    """

    def __init__(self, config: Config, ops: OpTable = OPS,
                 units: Mapping[str, Unit] | None = None):
        self.config = config
        self.ops = ops
        self.units = {**(FLOAT_UNITS if config.is_float else INT_UNITS), **(units or {})}
        self._legal = {row.code: row for row in ops.legal(config)}
        hardware = core_units(config)
        #: the operations of the core's iterative unit (the float core's FpNonlinear)
        self._iterative = {row for row in self._legal.values() if row.unit is not None and
                           unit_kind(hardware.get(row.unit)) == "iterative"}
        for row in self._legal.values():
            if row.unit is not None and row.unit not in self.units:
                raise ValueError(f"the model has no unit {row.unit!r} (operation {row.name})")
        self.sram = SramModel(config)
        self.result = CoreResult()
        #: the tile registers SET writes, at their reset values
        self.regs = {Reg.MULT: 1, Reg.SHIFT: 0, Reg.RELU: 0}
        #: the accumulator the flit before wrote (float bubbles), or None
        self._written: int | None = None
        #: per flit :meth:`run` has applied, for the integer hand-off's stalls (:meth:`_flow_of`)
        self._flow: list[tuple[bool, bool, bool]] = []
        self._limbs = handoff_limbs(config)

    def accumulate(self, old: int, addend: int) -> int:
        """``old + addend`` wrapped or saturated to ``acc_width`` (the integer core's sums)."""
        total = old + addend
        if self.config.overflow_mode is Overflow.SATURATE:
            return saturate(total, self.config.acc_width)
        return wrap(total, self.config.acc_width)

    def _operand(self, value: int) -> int:
        """A weight or activation: the low ``data_width`` bits of ``value`` (a float core's
        16 bits, raw)."""
        return value & 0xFFFF if self.config.is_float else wrap(value, self.config.data_width)

    def _is_zero(self, word: int) -> bool:
        return fp_is_zero(word, self.config.dtype) if self.config.is_float else word == 0

    def _write_reg(self, addr: int, value: int) -> None:
        """SET: the register's low bits, as the hardware takes them; a float core has only
        RELU (MULT and SHIFT are kept, unused)."""
        index = addr & 0b11
        if index not in Reg._value2member_map_ or (self.config.is_float and
                                                   index != Reg.RELU.value):
            return
        reg = Reg(index)
        bits = {Reg.MULT: MULT_WIDTH, Reg.SHIFT: (self.config.acc_width + MULT_WIDTH - 1)
                .bit_length(), Reg.RELU: 1}
        self.regs[reg] = value & ((1 << bits[reg]) - 1)

    def step(self, flit: Mapping[str, Any]) -> dict[str, Any] | None:
        """Apply one flit; return the flit the core emits for it, if any."""
        cfg, mem = self.config, self.sram
        row = self._row(flit)
        if row is None:  # no operation of this core: no effect, sticky error
            self.result.error = True
            self._written = None
            return None
        # missing fields are zero, as in wafertile.hdl.flit.pack
        fields = {"addr": int(flit.get("addr", 0)), "addr_b": int(flit.get("addr_b", 0))}
        value = int(flit.get("data", 0))
        operand = self._operand(value)
        a = mem.act_index(fields[row.act_field]) if row.act_field else 0
        act = int(mem.act[a]) if row.act_read else 0
        act2 = int(mem.act[mem.act_index(fields[row.act_weight])]) if row.act_weight else 0
        i = mem.acc_index(fields["addr"])
        acc = int(mem.acc[i])
        weight = act2 if row.act_weight else operand
        skipped = row.skips_zero and (self._is_zero(weight) or self._is_zero(act))
        if row.counts_mac:
            if skipped:
                self.result.mac_skipped += 1
            else:
                self.result.mac_done += 1
        result = value  # a skipped operation that emits its sum emits its data (GRAD)
        iterative = row in self._iterative
        func = FpNonlinear.function(row, value) if iterative else 0
        if row.unit is not None and not skipped:
            result = self.units[row.unit](self, Operands(acc, act, value, operand, act2, func))
        if iterative:
            self.result.unit_jobs.append((func, acc & 0xFFFFFFFF, value & 0xFFFFFFFF))
        if row.act_write:
            mem.act[a] = operand
            self.result.act_written += 1
        if row.reg_write:
            self._write_reg(fields["addr"], value)
        writes = row.acc_write is not None and not skipped
        if writes:
            mem.acc[i] = result if row.acc_write == "unit" else \
                wrap(value, 32) if cfg.is_float else value
        if cfg.is_float:  # the accumulator hazard of FpMacCore: a read right after its write
            if row.acc_read and not skipped and self._written == i:
                self.result.bubbles += 1
            if iterative:  # the core holds while the iterative unit works
                self.result.bubbles += FpNonlinear.cycles(func)
            self._written = i if writes else None
        emit = row.emit
        if emit is None:
            return None
        request = {**fields, "data": value}
        return {"op": emit.opcode(cfg, value), "addr": emit.field("addr", cfg, request),
                "addr_b": emit.field("addr_b", cfg, request),
                "data": int({"act": act, "acc": acc, "unit": result}[emit.data])}

    def _row(self, flit: Mapping[str, Any]) -> Op | None:
        """The operation of ``flit``'s opcode that this core executes, or None."""
        try:
            return self._legal.get(code_of(flit["op"]))
        except TypeError:
            return None

    def _flow_of(self, flit: Mapping[str, Any]) -> tuple[bool, bool, bool]:
        """What :func:`handoff_stalls` needs of a flit: it emits, its output comes from the
        hand-off unit, it is an operation of the MAC unit (none of them for no operation)."""
        row = self._row(flit)
        if row is None:
            return False, False, False
        return row.emit is not None, row.unit == "handoff", row.skips_zero

    def run(self, flits: Iterable[Mapping[str, Any]]) -> CoreResult:
        """Apply every flit in order; the result accumulates over calls."""
        for flit in flits:
            if self._limbs:  # (run only: step's callers, the array model, need no timing)
                self._flow.append(self._flow_of(flit))
            out = self.step(flit)
            if out is not None:
                self.result.outputs.append(out)
                mask = (1 << self.config.acc_width) - 1
                self.result.tags.append(int(flit.get("data", 0)) & mask)
        if self._limbs:
            self.result.bubbles = handoff_stalls(self._limbs, self._flow)
        return self.result


def handoff_stalls(n: int, flow: list[tuple[bool, bool, bool]]) -> int:
    """Cycles the integer core's input waits for its hand-off unit (``docs/architecture.md``)
    when the flits come one per cycle and every output is taken at once: per flit, whether
    it emits, whether its output comes from the unit (FINISH), whether it is an operation of
    the MAC unit. The unit starts when a FINISH leaves S2, multiplies ``n`` limbs in cycles
    in which no MAC moves into S2, sums each a cycle later and offers the activation in the
    cycle after the last sum; while it is active an output or a FINISH waits in S2 (a FINISH
    may start it in the cycle it offers). Cycle by cycle, as the RTL."""
    s1 = s2 = None
    active = fresh = False
    k = stalls = taken = 0
    while taken < len(flow) or s1 is not None or s2 is not None:
        offers = active and k == n and not fresh
        blocked = active and s2 is not None and s2[0] and not (s2[1] and offers)
        free = not (s1 is not None and s1[2] and not blocked)
        multiply = active and k < n and free
        if not blocked and s2 is not None and s2[1]:
            active, k = True, 0
        elif multiply:
            k += 1
        elif offers:
            active = False
        fresh = multiply
        if blocked:
            stalls += taken < len(flow)
            continue
        s2, s1 = s1, flow[taken] if taken < len(flow) else None
        taken += taken < len(flow)
    return stalls
