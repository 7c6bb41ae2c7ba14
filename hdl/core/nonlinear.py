"""The nonlinear unit: runs the programs of :mod:`.programs` (exp, reciprocal, reciprocal
square root, GELU, and MUL and MAX of two operands; ``docs/nonlinear.md``) on one FP32 word
at a time, one step every
``stages`` cycles, bit exact with :func:`wafertile.sim.models.nonlinear.run` and so with the
reference functions.

The unit holds the programs in a ROM (one entry per step: operation, destination register,
three operand fields), the constants they use, a register file in LUT RAM of as many FP32
registers as the largest program needs (:func:`~.programs.assemble`: 11, for GELU), a
register for the second operand (``d``, loaded with ``x``), one
:class:`~.fp.FpAdd` (``add``; ``sub`` flips ``b``'s sign), one :class:`~.fp.FpMul`
``("fp32")`` (``mul``), two FP32 comparators (``min`` and the selects), a 32-bit subtractor
(``isub``) and two wired shifts (``shr1``, ``shl23``). The float tile's NONLINEAR, MUL and
MAX run on it (:class:`~.units.FpNonlinear`).

Protocol: while ``ready`` is high, ``start`` loads ``x`` into register 0 (and ``d`` into the
operand register) and starts the program of function ``func`` (:data:`FUNCTIONS`: 0 exp,
1 reciprocal, 2 rsqrt, 3 gelu, 4 mul, 5 max);
``start`` while the unit is busy is ignored. One step every ``stages`` cycles follows, from
the cycle after the start. ``done`` is high for one cycle, the cycle after the last step;
``o`` then holds the result, and keeps it until the next start. From the cycle of ``start``
to the cycle of ``done``: ``1 + steps * stages`` cycles (:func:`cycles`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .._util import CheckedComponent, any_of, check_stages
from .fp import FP32, FpAdd, FpMul, fp32_is_nan
from .programs import CONSTANTS, PROGRAMS, assemble

__all__ = ["FUNCTIONS", "OPCODES", "UNARY", "NonlinearUnit", "cycles"]

#: The functions by code (``func``): the order of :data:`~.programs.PROGRAMS`.
FUNCTIONS: tuple[str, ...] = tuple(PROGRAMS)
#: The functions of one operand (the first of :data:`FUNCTIONS`): NONLINEAR's, by the low 2
#: bits of its ``data``.
UNARY: tuple[str, ...] = tuple(f for f in FUNCTIONS if PROGRAMS[f].operand is None)
#: The ROM's encoding of each step operation.
OPCODES: dict[str, int] = {op: k for k, op in enumerate(
    ("add", "sub", "mul", "min", "isub", "shr1", "shl23", "gt", "lt", "eq"))}


#: Bits of the function code.
FUNC_WIDTH = (len(FUNCTIONS) - 1).bit_length()


def cycles(function: str, stages: int = 1) -> int:
    """Cycles from ``start`` to ``done`` for one element of ``function``."""
    return 1 + len(PROGRAMS[function].steps) * stages


def _pick(sel: Value, sources: list[Value]) -> Value:
    """``sources[sel]`` as an AND-OR multiplexer (0 for a ``sel`` past the end)."""
    return any_of(Mux(sel == k, source, 0) for k, source in enumerate(sources))


def _less(a: Value, b: Value, unordered: Value) -> Value:
    """FP32 ``a < b`` when not ``unordered`` (either is a NaN: false); ``-0 < +0`` is false."""
    mag_a, mag_b = a[:31], b[:31]
    zeros = (mag_a == 0) & (mag_b == 0)
    ordered = Mux(a[31] != b[31], a[31], Mux(a[31], mag_b < mag_a, mag_a < mag_b))
    return ordered & ~zeros & ~unordered


class NonlinearUnit(CheckedComponent):
    """Runs one of the programs of :mod:`.programs` on an FP32 word (module documentation).

    Parameters
    ----------
    stages : int
        1: each step in one cycle (the adder and multiplier combinational); 2: each step in two
        cycles, with the registers of :class:`~.fp.FpAdd` and :class:`~.fp.FpMul` (``stages
        = 2``) between them.

    Members
    -------
    start : ``In(1)``
    func : ``In(3)``
        The function (:data:`FUNCTIONS`), read with ``start``.
    x : ``In(32)``
        The FP32 operand, read with ``start``.
    d : ``In(32)``
        The second FP32 operand (MUL, MAX), read with ``start``.
    ready : ``Out(1)``
        Idle: a ``start`` is taken.
    done : ``Out(1)``
        High for one cycle when the result is in ``o``.
    o : ``Out(32)``
        The result (FP32), from ``done`` until the next start.

    Raises
    ------
    TypeError
        If ``stages`` is not 1 or 2.
    """

    def __init__(self, *, stages: int = 1):
        self._stages = stages
        super().__init__({"start": In(1), "func": In(FUNC_WIDTH), "x": In(32), "d": In(32),
                          "ready": Out(1), "done": Out(1), "o": Out(32)})

    @classmethod
    def check(cls, *, stages: object = 1) -> None:
        check_stages(cls.__name__, stages)

    @property
    def stages(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        codes = [assemble(PROGRAMS[f]) for f in FUNCTIONS]
        nregs = max(c.registers for c in codes)
        used = {o for c in codes for s in c.steps for o in s[2:] if isinstance(o, str)}
        consts = [name for name in CONSTANTS if name in used]

        operands = {c.operand for c in codes} - {None}
        assert len(operands) <= 1, "one name for the second operand of every program"

        def operand(o) -> int:  # register k -> k, constant i -> nregs + i, d after them
            if o is None:
                return 0
            if o in operands:
                return nregs + len(consts)
            return o if isinstance(o, int) else nregs + consts.index(o)

        rom, entries = [], []
        for code in codes:
            entries.append(len(rom))
            for i, (op, dst, a, b, c) in enumerate(code.steps):
                rom.append((OPCODES[op], dst, operand(a), operand(b), operand(c),
                            int(i == len(code.steps) - 1)))

        # Everything combinational below is continuous logic (ROM and RAM reads, multiplexers
        # of AND-OR form): no Verilog `always @*` block, which an event-driven simulator (Icarus)
        # does not run at time 0 while its inputs have not changed (a function code or a pc
        # that never changed would leave its outputs X).
        # The registers: a LUT RAM written once a step, with one asynchronous read per
        # operand and one for the result (synthesis copies the RAM per read port).
        m.submodules.regs = regs = Memory(shape=32, depth=nregs, init=[0] * nregs)
        write = regs.write_port()
        reads = [regs.read_port(domain="comb") for _ in range(4)]
        d = Signal(32)
        constants = [*(Const(CONSTANTS[n], 32) for n in consts), d]
        reg_bits = (nregs - 1).bit_length()
        sel_bits = (nregs + len(constants) - 1).bit_length()
        widths = (len(OPCODES).bit_length(), reg_bits, sel_bits, sel_bits, sel_bits, 1)
        words = []
        for row in rom:
            word, shift = 0, 0
            for value, width in zip(row, widths, strict=True):
                word |= value << shift
                shift += width
            words.append(word)
        m.submodules.rom = rom_mem = Memory(shape=sum(widths), depth=len(words), init=words)
        read = rom_mem.read_port(domain="comb")
        pc = Signal(range(len(rom)))
        m.d.comb += read.addr.eq(pc)
        fields, shift = [], 0
        for width in widths:
            fields.append(read.data[shift:shift + width])
            shift += width
        op, dst, sel_a, sel_b, sel_c, last = fields

        a, b, c = (Signal(32, name=n) for n in "abc")
        for operand_value, sel, read in zip((a, b, c), (sel_a, sel_b, sel_c), reads[:3],
                                            strict=True):
            m.d.comb += [read.addr.eq(sel[:reg_bits]),
                         operand_value.eq(Mux(sel >= nregs, _pick(sel - nregs, constants),
                                              read.data))]

        s = self._stages
        m.submodules.add = add = FpAdd(stages=s)
        m.submodules.mul = mul = FpMul("fp32", stages=s)
        m.d.comb += [add.a.eq(a), add.b.eq(b ^ Mux(op == OPCODES["sub"], 1 << 31, 0)),
                     mul.a.eq(a), mul.b.eq(b)]
        unordered = fp32_is_nan(a) | fp32_is_nan(b)
        a_below, b_below = _less(a, b, unordered), _less(b, a, unordered)
        equal = ~unordered & ((a == b) | ((a[:31] == 0) & (b[:31] == 0)))

        value, writes = Signal(32), Signal()
        results = {
            "add": (add.o, 1), "sub": (add.o, 1), "mul": (mul.o, 1),
            "min": (Mux(unordered, FP32.nan, Mux(b_below, b, a)), 1),
            "isub": ((a - b)[:32], 1), "shr1": (a >> 1, 1),
            "shl23": (Cat(Const(0, 23), a[:9]), 1),
            "gt": (c, b_below), "lt": (c, a_below), "eq": (c, equal)}
        hits = {name: op == code for name, code in OPCODES.items()}
        m.d.comb += [value.eq(any_of(Mux(hits[n], v, 0) for n, (v, _) in results.items())),
                     writes.eq(any_of(hits[n] & w for n, (_, w) in results.items()))]

        busy = Signal()
        func = Signal(FUNC_WIDTH)
        step_end = Signal()
        if s == 1:
            m.d.comb += step_end.eq(busy)
        else:
            phase = Signal()
            with m.If(busy):
                m.d.sync += phase.eq(~phase)
            m.d.comb += step_end.eq(busy & phase)

        m.d.comb += self.ready.eq(~busy)
        m.d.sync += self.done.eq(0)
        entry = any_of(Mux(self.func == k, e, 0) for k, e in enumerate(entries))
        take = ~busy & self.start
        m.d.comb += [write.en.eq(take | (step_end & writes)),
                     write.addr.eq(Mux(take, 0, dst)), write.data.eq(Mux(take, self.x, value))]
        with m.If(take):
            m.d.sync += [busy.eq(1), func.eq(self.func), pc.eq(entry), d.eq(self.d)]
        with m.If(step_end):
            with m.If(last):
                m.d.sync += [busy.eq(0), self.done.eq(1)]
            with m.Else():
                m.d.sync += pc.eq(pc + 1)

        result = any_of(Mux(func == k, code.result, 0) for k, code in enumerate(codes))
        m.d.comb += [reads[3].addr.eq(result), self.o.eq(reads[3].data)]
        return m
