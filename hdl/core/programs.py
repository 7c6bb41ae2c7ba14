"""The nonlinear functions of ``docs/nonlinear.md`` as programs of FP32 steps: what a tile's
nonlinear unit will run (issue 19), one step a cycle, and what its numpy interpreter
(:func:`wafertile.sim.models.nonlinear.run`) runs today.

A program is a tuple of :class:`Step` on named registers. Its operands are registers or
constants (:data:`CONSTANTS`, FP32 words by name); the input is register ``x`` and the result
is the register :attr:`Program.result` names. A function of two operands (MUL, MAX) reads its
second, ``d``, as it reads a constant: it is never written. The operations
(:data:`OPERATIONS`) are the four kinds of step the document allows, nothing else:

- ``add``, ``sub``, ``mul``: ``fp32(a + b)``, ``fp32(a - b)``, ``fp32(a * b)``, IEEE 754
  binary32 rounded to nearest even, subnormals kept (:class:`~.fp.FpAdd`,
  :class:`~.fp.FpMul` ``("fp32")``);
- ``min``: the smaller of ``a`` and ``b``, NaN if either is NaN;
- ``isub``, ``shr1``, ``shl23``: integer operations on the 32-bit words (``a - b`` modulo
  2**32, ``a >> 1``, ``a << 23`` modulo 2**32);
- ``gt``, ``lt``, ``eq``: compare-and-select: ``dst = c`` when ``a > b``, ``a < b``,
  ``a == b`` (FP32 comparisons: false when either is NaN; ``+0 == -0``), else ``dst`` keeps
  its value.

Every NaN a step produces is the canonical quiet NaN ``0x7FC00000``. :func:`assemble` gives a
program's registers numbers (a register is reused once its value is dead) and checks that
nothing is read before it is written.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONSTANTS", "EXP", "GELU", "GELU_GRAD", "ITERATIONS", "MAX", "MUL", "OPERATIONS",
           "PROGRAMS", "RECIPROCAL", "RSQRT", "Assembled", "Program", "Step", "assemble"]

#: The constants of ``docs/nonlinear.md`` (and the few words the programs add) as FP32 words.
CONSTANTS: dict[str, int] = {
    "EXP_MAX": 0x42B17217,    # 88.7228317: above it exp overflows
    "EXP_MIN": 0xC2AEAC50,    # -87.3365479: below it exp is below 2^-126 (flushed to +0)
    "LOG2E": 0x3FB8AA3B,      # 1.44269502
    "ROUNDER": 0x4B400000,    # 12582912 = 1.5 x 2^23: t + ROUNDER - ROUNDER = rint(t)
    "C1": 0x3F318000,         # 0.693359375 (9 significant bits: n x C1 is exact)
    "C2": 0xB95E8083,         # -2.12194440e-4 (ln 2 = C1 + C2, to FP32's precision)
    "P0": 0x39506967,         # 1.9875691500e-4
    "P1": 0x3AB743CE,         # 1.3981999507e-3
    "P2": 0x3C088908,         # 8.3334519073e-3
    "P3": 0x3D2AA9C1,         # 4.1665795894e-2
    "P4": 0x3E2AAAAA,         # 1.6666665459e-1
    "P5": 0x3F000000,         # 5.0000001201e-1 rounds to 0.5
    "ONE": 0x3F800000,
    "TWO": 0x40000000,
    "HALF": 0x3F000000,
    "THREE_HALVES": 0x3FC00000,
    "RECIP_SEED": 0x7EF311C3,
    "RSQRT_SEED": 0x5F375A86,
    # GELU: z = x (K + KA x^2), K = 2 sqrt(2 / pi), KA = 0.044715 K, each constant the sum of
    # a part of 12 significant bits (products with it are exact) and the rest
    "GELU_K1": 0x3FCC4000,    # 1.595703125
    "GELU_K2": 0x388A67A8,    # 6.59966026e-05 (K - K1)
    "GELU_KA1": 0x3D922000,   # 0.07135009765625
    "GELU_KA2": 0x369E549B,   # 4.71861631e-06 (KA - KA1)
    "GELU_KA": 0x3D922279,    # 0.0713548139 (KA)
    "GELU_K": 0x3FCC422A,     # 1.5957692 (K): GELU's derivative
    "GELU_KA3": 0x3E5B33B6,   # 0.21406445 (3 KA): GELU's derivative
    "GELU_XMAX": 0x41100000,  # 9: above it GELU(x) = x
    "GELU_XMIN": 0xC1300000,  # -11: below it exp(z) is +0
    "SPLIT8": 0x47400000,     # 49152 = 1.5 x 2^15: v + SPLIT8 - SPLIT8 rounds |v| < 2^14 to 2^-8
    "SPLIT4": 0x49400000,     # 786432 = 1.5 x 2^19: ... rounds |v| < 2^18 to a multiple of 2^-4
    "VELTKAMP": 0x45800800,   # 4097 = 2^12 + 1: Veltkamp's split into two halves of 12 bits
    # the programs' own words (docs/nonlinear.md, "The programs")
    "F128": 0x43000000,       # 128.0
    "K127": 0x4B40007F,       # ROUNDER + 127: k when n = 128 is replaced by n = 127
    "K_SCALE": 0x4B3FFF81,    # word(ROUNDER) - 127: word(k) - K_SCALE = n + 127
    "INF": 0x7F800000,
    "ZERO": 0x00000000,
}

#: Newton iterations of the reciprocal and of the reciprocal square root.
ITERATIONS = {"reciprocal": 3, "rsqrt": 3}

#: The operations of a step and how many operands each reads besides ``dst``:
#: ``a`` and ``b`` (``shr1`` and ``shl23`` read ``a`` only), and ``c`` for the selects.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "add": ("a", "b"), "sub": ("a", "b"), "mul": ("a", "b"), "min": ("a", "b"),
    "isub": ("a", "b"), "shr1": ("a",), "shl23": ("a",),
    "gt": ("a", "b", "c"), "lt": ("a", "b", "c"), "eq": ("a", "b", "c"),
}
#: The selects: they keep ``dst``'s value when their condition is false, so they read it.
SELECTS = frozenset({"gt", "lt", "eq"})


@dataclass(frozen=True)
class Step:
    """``dst = op(a, b)`` (or a select, ``dst = c`` if the condition holds); operands are
    register names or :data:`CONSTANTS` names, ``dst`` a register name."""

    op: str
    dst: str
    a: str
    b: str | None = None
    c: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ValueError(f"unknown step operation {self.op!r} (one of "
                             f"{', '.join(OPERATIONS)})")
        wants = OPERATIONS[self.op]
        for name in ("b", "c"):
            given = getattr(self, name) is not None
            if given != (name in wants):
                raise ValueError(f"step {self.op} {'takes' if name in wants else 'has no'} "
                                 f"operand {name}")
        if self.dst in CONSTANTS:
            raise ValueError(f"step {self.op} writes the constant {self.dst}")

    @property
    def reads(self) -> tuple[str, ...]:
        """The operands it reads, ``dst`` included for a select."""
        ops = tuple(getattr(self, n) for n in OPERATIONS[self.op])
        return (*ops, self.dst) if self.op in SELECTS else ops


@dataclass(frozen=True)
class Program:
    """A function's steps, its input register (``x``), the register holding the result, and
    the name of its second operand (``d``: MUL, MAX), or None for a function of one."""

    name: str
    steps: tuple[Step, ...]
    result: str
    input: str = "x"
    operand: str | None = None

    def renamed(self, names: dict[str, str], prefix: str) -> tuple[Step, ...]:
        """The steps with register ``r`` renamed ``names.get(r, prefix + r)`` (constants
        kept): to inline one program into another."""
        def rn(r):
            if r is None or r in CONSTANTS:
                return r
            return names.get(r, prefix + r)
        return tuple(Step(s.op, rn(s.dst), rn(s.a), rn(s.b), rn(s.c)) for s in self.steps)


def _exp_steps(high: str | None = None, low: str | None = None) -> tuple[Step, ...]:
    """EXP's steps on input ``x`` (docs/nonlinear.md "exp"). With ``high`` and ``low`` (the
    two parts of a sum whose rounding is ``x``), ``r`` is computed from them: ``r = high -
    nf C1 - nf C2 + low`` (GELU's EXP2)."""
    return (
        Step("mul", "t", "x", "LOG2E"),
        Step("add", "k", "t", "ROUNDER"),
        Step("sub", "n", "k", "ROUNDER"),          # rint(t), as an FP32 number
        Step("mul", "u", "n", "C1"),
        Step("sub", "r", high or "x", "u"),
        Step("mul", "u", "n", "C2"),
        Step("sub", "r", "r", "u"),
        *((Step("add", "r", "r", low),) if low else ()),
        Step("mul", "z", "r", "r"),
        Step("mul", "p", "P0", "r"),
        Step("add", "p", "p", "P1"),
        Step("mul", "p", "p", "r"),
        Step("add", "p", "p", "P2"),
        Step("mul", "p", "p", "r"),
        Step("add", "p", "p", "P3"),
        Step("mul", "p", "p", "r"),
        Step("add", "p", "p", "P4"),
        Step("mul", "p", "p", "r"),
        Step("add", "p", "p", "P5"),
        Step("mul", "y", "p", "z"),
        Step("add", "y", "y", "r"),
        Step("add", "y", "y", "ONE"),
        Step("mul", "u", "y", "TWO"),              # n == 128: y = y * 2 and n = 127
        Step("eq", "y", "n", "F128", "u"),
        Step("eq", "k", "n", "F128", "K127"),
        Step("isub", "s", "k", "K_SCALE"),         # n + 127 (k's word is ROUNDER's plus n)
        Step("shl23", "s", "s"),                   # 2^n
        Step("mul", "e", "y", "s"),
        Step("gt", "e", "x", "EXP_MAX", "INF"),
        Step("lt", "e", "x", "EXP_MIN", "ZERO"),   # a NaN x needs no step: e is NaN already
    )


#: EXP(x): docs/nonlinear.md "exp", with the test of n == 128 and the range checks as selects.
EXP = Program("exp", _exp_steps(), result="e")

#: RECIP(s): docs/nonlinear.md "Reciprocal" (input register x).
RECIPROCAL = Program("reciprocal", (
    Step("isub", "y", "RECIP_SEED", "x"),
    *(step for _ in range(ITERATIONS["reciprocal"]) for step in (
        Step("mul", "t", "x", "y"),
        Step("sub", "t", "TWO", "t"),
        Step("mul", "y", "y", "t"))),
), result="y")

#: RSQRT(v): docs/nonlinear.md "Reciprocal square root" (input register x).
RSQRT = Program("rsqrt", (
    Step("shr1", "h", "x"),
    Step("isub", "y", "RSQRT_SEED", "h"),
    Step("mul", "h", "x", "HALF"),
    *(step for _ in range(ITERATIONS["rsqrt"]) for step in (
        Step("mul", "t", "y", "y"),
        Step("mul", "t", "h", "t"),
        Step("sub", "t", "THREE_HALVES", "t"),
        Step("mul", "y", "y", "t"))),
), result="y")

#: GELU's steps up to its corrected ``w = e / (e + 1)`` (docs/nonlinear.md "GELU"): what
#: GELU and its derivative share; ``xc``, ``w`` and ``q`` = RECIP(e + 1) are live after them.
_GELU_W = (
    Step("min", "xc", "x", "GELU_XMAX"),       # NaN stays NaN
    Step("lt", "xc", "x", "GELU_XMIN", "GELU_XMIN"),
    Step("add", "xh", "xc", "SPLIT8"),
    Step("sub", "xh", "xh", "SPLIT8"),         # xc to a multiple of 2^-8
    Step("sub", "xl", "xc", "xh"),
    Step("mul", "p", "xh", "xh"),
    Step("add", "t", "xc", "xh"),
    Step("mul", "t", "xl", "t"),               # xc^2 = p + t
    Step("add", "a1", "p", "SPLIT4"),
    Step("sub", "a1", "a1", "SPLIT4"),         # p to a multiple of 2^-4
    Step("sub", "a2", "p", "a1"),
    Step("mul", "gh", "GELU_KA1", "a1"),
    Step("add", "gh", "gh", "GELU_K1"),
    Step("mul", "gl", "GELU_KA1", "a2"),
    Step("add", "gl", "GELU_K2", "gl"),
    Step("mul", "m", "GELU_KA2", "p"),
    Step("add", "gl", "gl", "m"),
    Step("mul", "m", "GELU_KA", "t"),
    Step("add", "gl", "gl", "m"),              # K + KA xc^2 = gh + gl
    Step("add", "hh", "gh", "SPLIT8"),
    Step("sub", "hh", "hh", "SPLIT8"),
    Step("sub", "hl", "gh", "hh"),
    Step("mul", "zh", "xh", "hh"),
    Step("mul", "zl", "xh", "hl"),
    Step("mul", "m", "xl", "gh"),
    Step("add", "zl", "zl", "m"),
    Step("mul", "m", "xc", "gl"),
    Step("add", "zl", "zl", "m"),              # z = zh + zl
    Step("add", "z", "zh", "zl"),
    *Program("exp2", _exp_steps("zh", "zl"), "e").renamed(
        {"x": "z", "zh": "zh", "zl": "zl", "e": "e"}, "exp_"),
    Step("add", "d", "e", "ONE"),
    *RECIPROCAL.renamed({"x": "d", "y": "q"}, "rec_"),
    Step("mul", "w", "e", "q"),
    *(step for v in ("w", "d") for step in (   # Veltkamp: v = vh + vl, 12 bits each
        Step("mul", "s", v, "VELTKAMP"),
        Step("sub", v + "h", "s", v),
        Step("sub", v + "h", "s", v + "h"),
        Step("sub", v + "l", v, v + "h"))),
    Step("mul", "m", "w", "d"),
    Step("mul", "me", "wh", "dh"),
    Step("sub", "me", "me", "m"),
    Step("mul", "s", "wh", "dl"),
    Step("add", "me", "me", "s"),
    Step("mul", "s", "wl", "dh"),
    Step("add", "me", "me", "s"),
    Step("mul", "s", "wl", "dl"),
    Step("add", "me", "me", "s"),              # w d = m + me, exactly (Dekker)
    Step("sub", "rho", "e", "m"),
    Step("sub", "rho", "rho", "me"),           # e - w d
    Step("mul", "rho", "rho", "q"),
    Step("add", "w", "w", "rho"),
)

#: GELU(x), tanh form: docs/nonlinear.md "GELU", with EXP2 and RECIP inlined.
GELU = Program("gelu", (*_GELU_W, Step("mul", "g", "x", "w")), result="g")

#: GELU's derivative: docs/nonlinear.md "GELU's derivative", GELU's steps and then
#: ``w + xc (w q) (K + 3 KA xc^2)``.
GELU_GRAD = Program("gelu_grad", (
    *_GELU_W,
    Step("sub", "v", "ONE", "w"),
    Step("lt", "q", "xc", "ZERO", "v"),        # 1 - w: q, or 1 - w where xc < 0
    Step("mul", "u", "w", "q"),                # w (1 - w)
    Step("mul", "c", "xc", "u"),
    Step("mul", "s", "xc", "xc"),
    Step("mul", "k3", "GELU_KA3", "s"),
    Step("add", "k3", "k3", "GELU_K"),         # K + 3 KA xc^2
    Step("mul", "c", "c", "k3"),
    Step("add", "g", "w", "c"),
), result="g")

#: MUL(x, d) = fp32(x * d): docs/nonlinear.md "Multiply and maximum".
MUL = Program("mul", (Step("mul", "y", "x", "d"),), result="y", operand="d")

#: MAX(x, d): NaN if either is NaN, else d if d > x, else x (docs/nonlinear.md).
MAX = Program("max", (
    Step("min", "m", "x", "d"),                # NaN if x or d is NaN
    Step("gt", "x", "d", "x", "d"),            # x = d if d > x
    Step("eq", "m", "m", "m", "x"),            # m = x unless m is NaN
), result="m", operand="d")

#: The programs by function name (the names of :mod:`wafertile.sim.models.nonlinear`), the
#: functions of one operand first.
PROGRAMS: dict[str, Program] = {p.name: p for p in (EXP, RECIPROCAL, RSQRT, GELU, GELU_GRAD,
                                                    MUL, MAX)}


@dataclass(frozen=True)
class Assembled:
    """A program with numbered registers: ``steps`` as ``(op, dst, a, b, c)`` where a register
    is an ``int`` and a constant or the second operand its name (a ``str``: ``operand``); the
    input in register 0."""

    name: str
    steps: tuple[tuple, ...]
    result: int
    registers: int
    operand: str | None = None


def assemble(program: Program) -> Assembled:
    """Number ``program``'s registers, the input as 0, each other register taking the lowest
    number free when it is written (a number is free again after its register's last read).

    Raises
    ------
    ValueError
        If a step reads a register that no earlier step wrote (nor is the input), writes the
        second operand, or the result is never written.
    """
    fixed = {*CONSTANTS, program.operand}
    last_read: dict[str, int] = {}
    for i, step in enumerate(program.steps):
        if step.dst == program.operand:
            raise ValueError(f"{program.name}: step {i} ({step.op}) writes the operand "
                             f"{step.dst}")
        for r in step.reads:
            if r not in fixed:
                last_read[r] = i
    last_read[program.result] = len(program.steps)
    number = {program.input: 0}
    free: list[int] = []
    count = 1
    out = []
    for i, step in enumerate(program.steps):
        def reg(r, i=i, step=step):
            if r is None or r in fixed:
                return r
            if r not in number:
                raise ValueError(f"{program.name}: step {i} ({step.op} {step.dst}) reads "
                                 f"{r} before it is written")
            return number[r]
        ops = [reg(getattr(step, n)) for n in ("a", "b", "c")]
        if step.op in SELECTS:
            reg(step.dst)
        # registers whose last read is this step are free for its result
        for r, last in last_read.items():
            if last == i and r in number and r != step.dst:
                free.append(number.pop(r))
        if step.dst not in number:
            if free:
                free.sort()
                number[step.dst] = free.pop(0)
            else:
                number[step.dst] = count
                count += 1
        out.append((step.op, number[step.dst], *ops))
    if program.result not in number:
        raise ValueError(f"{program.name}: the result {program.result} is never written")
    return Assembled(program.name, tuple(out), number[program.result], count,
                     program.operand)
