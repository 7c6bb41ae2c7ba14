"""Stimulus: operation-flit streams for the core regressions (directed corner cases and seeded
random), and random layers for the array regressions.

Every generator returns a list of payload dicts (see :mod:`wafertile.sim.models.core`). All values
are within their fields, so :func:`wafertile.hdl.flit.pack` accepts them.

Floating-point tiles (``dtype`` fp16 / bf16) have their own directed cases
(:data:`FLOAT_DIRECTED`: signed zeros, subnormals in and out, overflow to infinity, NaN in
either operand, ties to even, cancellation, long runs into one accumulator, the hand-off);
:func:`random_stream` and :func:`make_layer` give float words of mixed magnitudes for them.
Float operands are raw bit patterns in the ``data`` field: FP16 / BF16 in its low 16 bits,
FP32 as the signed 32-bit value of its bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Config
from ..hdl.core.fp import FP32, float_format
from ..hdl.core.ops import OPS, Op, OpTable, code_of, codes
from ..hdl.flit import MULT_WIDTH, Opcode, Reg

__all__ = ["DIRECTED", "FLOAT_DIRECTED", "NO_HANDOFF_DIRECTED", "directed", "directed_cases",
           "dump", "make_layer", "random_float_words", "random_stream"]

Flit = dict[str, Any]


def _f(op: Opcode, addr: int = 0, addr_b: int = 0, data: int = 0) -> Flit:
    return {"op": op, "addr": addr, "addr_b": addr_b, "data": data}


def dump(config: Config) -> list[Flit]:
    """READ every activation and accumulator word: the final memory contents as replies.

    Each READ carries a distinct tag in its data field (echoed on ``o_tag``).
    """
    return ([_f(Opcode.READ_ACT, a, data=a) for a in range(config.act_depth)] +
            [_f(Opcode.READ_ACC, a, data=config.acc_min + a) for a in range(config.acc_depth)])


def _overflow(cfg: Config) -> list[Flit]:
    """Sums that cross both ends of the accumulator range, by ADD and by MAC."""
    dmin, dmax = cfg.data_min, cfg.data_max
    return [
        _f(Opcode.WRITE_ACC, 0, data=cfg.acc_max), _f(Opcode.ADD, 0, data=1),
        _f(Opcode.READ_ACC, 0),
        _f(Opcode.WRITE_ACC, 1, data=cfg.acc_min), _f(Opcode.ADD, 1, data=-1),
        _f(Opcode.READ_ACC, 1),
        _f(Opcode.WRITE_ACC, 2, data=cfg.acc_max), _f(Opcode.ADD, 2, data=cfg.acc_max),
        _f(Opcode.WRITE_ACC, 3, data=cfg.acc_min), _f(Opcode.ADD, 3, data=cfg.acc_min),
        _f(Opcode.WRITE_ACT, 0, data=dmin), _f(Opcode.WRITE_ACT, 1, data=dmax),
        _f(Opcode.WRITE_ACC, 4, data=cfg.acc_max - 5),
        *[_f(Opcode.MAC, 4, 1, dmax) for _ in range(4)],            # up through acc_max
        _f(Opcode.WRITE_ACC, 5, data=cfg.acc_min + 5),
        *[_f(Opcode.MAC, 5, 0, dmax) for _ in range(4)],            # down through acc_min
        _f(Opcode.WRITE_ACC, 6, data=cfg.acc_max),
        *[_f(Opcode.MAC, 6, 0, dmin) for _ in range(3)],            # dmin * dmin > 0
        *[_f(Opcode.READ_ACC, a) for a in range(7)],
    ]


def _back_to_back(cfg: Config) -> list[Flit]:
    """Every MAC into the same accumulator, then alternating pairs, with reads in between."""
    flits = [_f(Opcode.WRITE_ACT, a, data=a + 1) for a in range(8)]
    flits += [_f(Opcode.MAC, 0, a % 8, 3 - a % 5) for a in range(40)]
    flits += [_f(Opcode.READ_ACC, 0)]
    flits += [_f(Opcode.MAC, a % 2, a % 8, a - 7) for a in range(30)]
    flits += [_f(Opcode.READ_ACC, 0), _f(Opcode.READ_ACC, 1)]
    # a write to an activation followed at once by a MAC that reads it
    flits += [_f(Opcode.WRITE_ACT, 9, data=-7), _f(Opcode.MAC, 2, 9, 5),
              _f(Opcode.WRITE_ACT, 9, data=11), _f(Opcode.MAC, 2, 9, 5),
              _f(Opcode.READ_ACT, 9), _f(Opcode.READ_ACC, 2)]
    # write, add and read of one accumulator back to back; SEND reads the forwarded value
    flits += [_f(Opcode.WRITE_ACC, 3, data=100), _f(Opcode.ADD, 3, data=-1),
              _f(Opcode.SEND, 3, 7), _f(Opcode.MAC, 3, 9, 2), _f(Opcode.READ_ACC, 3)]
    return flits


def _zeros(cfg: Config) -> list[Flit]:
    """MACs whose weight or activation is zero: none may change an accumulator."""
    flits = [_f(Opcode.WRITE_ACC, a, data=1000 + a) for a in range(4)]
    flits += [_f(Opcode.WRITE_ACT, 0, data=0), _f(Opcode.WRITE_ACT, 1, data=5)]
    flits += [_f(Opcode.MAC, a % 4, 0, 7 + a) for a in range(20)]   # zero activation
    flits += [_f(Opcode.MAC, a % 4, 1, 0) for a in range(20)]       # zero weight
    flits += [_f(Opcode.MAC, a % 4, 0, 0) for a in range(20)]       # both
    return flits


def _extremes(cfg: Config) -> list[Flit]:
    """Every product of the extreme data values into separate accumulators."""
    values = [cfg.data_min, cfg.data_min + 1, -1, 1, cfg.data_max - 1, cfg.data_max]
    flits = [_f(Opcode.WRITE_ACT, i, data=v) for i, v in enumerate(values)]
    acc = 0
    for i in range(len(values)):
        for w in values:
            flits.append(_f(Opcode.MAC, acc % cfg.acc_depth, i, w))
            acc += 1
    return flits


def _bad_op(cfg: Config) -> list[Flit]:
    """A REPLY flit and an unused opcode sent as operations: no effect, sticky error."""
    return [_f(Opcode.WRITE_ACC, 0, data=9), _f(Opcode.REPLY, 0, data=1),
            {"op": 15, "addr": 0, "addr_b": 0, "data": 3}, _f(Opcode.READ_ACC, 0)]


def _set(reg: Reg, value: int) -> Flit:
    return _f(Opcode.SET, reg.value, data=value)


def _requant(cfg: Config) -> list[Flit]:
    """FINISH's requantization: ties at every shift (positive and negative: away from zero),
    exact values, zero, saturation at both ends of the data range, ReLU of zero and of
    negatives, a multiplier of zero and the largest one, SET taking effect for the next flit
    only, and FINISH right after the MAC / ADD that makes its accumulator (forwarding)."""
    dmax, dmin = cfg.data_max, cfg.data_min
    accs = [0, 1, -1, 3, -3, 5, -5, 6, -7, dmax, dmin, 4 * dmax, 4 * dmin, cfg.acc_max,
            cfg.acc_min, cfg.acc_min // 3][:cfg.acc_depth - 1]  # the last slot: below
    flits = [_f(Opcode.WRITE_ACC, a, data=v) for a, v in enumerate(accs)]
    cases = [(1, 0, 0), (1, 1, 0), (1, 2, 0), (3, 1, 0), (3, 2, 1), (5, 3, 0), (1, 1, 1),
             (0, 0, 0), ((1 << MULT_WIDTH) - 1, cfg.acc_width + MULT_WIDTH - 1, 0),
             ((1 << MULT_WIDTH) - 1, 14, 1), (7, 0, 1), (1, cfg.acc_width - 2, 0)]
    for n, (mult, shift, relu) in enumerate(cases):
        flits += [_set(Reg.MULT, mult), _set(Reg.SHIFT, shift), _set(Reg.RELU, relu)]
        flits += [_f(Opcode.FINISH, a, (a + n) % cfg.act_depth, data=a * 7 + n)
                  for a in range(len(accs))]
    # a SET between two FINISHes of the same accumulator: the second sees the new value
    flits += [_set(Reg.SHIFT, 0), _set(Reg.MULT, 1), _f(Opcode.FINISH, 5, 1),
              _set(Reg.MULT, 2), _f(Opcode.FINISH, 5, 2), _set(Reg.RELU, 1),
              _f(Opcode.FINISH, 6, 3)]
    # FINISH straight after the MAC / ADD that makes its accumulator
    last = cfg.acc_depth - 1
    flits += [_f(Opcode.WRITE_ACT, 0, data=3), _f(Opcode.WRITE_ACC, last, data=-2),
              _f(Opcode.MAC, last, 0, 1), _f(Opcode.FINISH, last, 4),
              _f(Opcode.ADD, last, data=-5), _f(Opcode.FINISH, last, 5),
              _set(Reg.MULT, 1 << 9), _set(Reg.SHIFT, 3), _f(Opcode.FINISH, last, 6)]
    return flits


def _handoff_off(cfg: Config) -> list[Flit]:
    """A core without the hand-off unit (``handoff = false``): SET of every register and
    FINISH (also right after the MAC / ADD that makes its accumulator) are unknown opcodes:
    no output, no register written, no accumulator or activation changed, the sticky
    error; the operations around them go on."""
    flits = [_f(Opcode.WRITE_ACC, 0, data=5), _f(Opcode.WRITE_ACT, 1, data=7),
             _f(Opcode.READ_ACC, 0, data=1)]
    flits += [_set(reg, 3) for reg in Reg]
    flits += [_f(Opcode.FINISH, 0, 1, data=2), _f(Opcode.READ_ACC, 0, data=3),
              _f(Opcode.READ_ACT, 1, data=4),
              _f(Opcode.MAC, 0, 1, 2), _f(Opcode.FINISH, 0, 1, data=5),
              _f(Opcode.ADD, 0, data=-1), _f(Opcode.FINISH, 0, 2, data=6),
              _f(Opcode.SEND, 0, 3, data=7), _f(Opcode.READ_ACT, 2, data=8)]
    return flits


#: Directed cases by name.
DIRECTED = {
    "overflow": _overflow,
    "back_to_back": _back_to_back,
    "zeros": _zeros,
    "extremes": _extremes,
    "bad_op": _bad_op,
    "requant": _requant,
}

#: Directed cases of a core without the hand-off unit (``handoff = false``, either format).
NO_HANDOFF_DIRECTED = {
    "handoff_off": _handoff_off,
}

#: The cases that test the hand-off unit itself (left out without it).
_HANDOFF_CASES = ("requant", "fp_finish", "fp_finish_back")


def directed_cases(config: Config) -> list[str]:
    """The directed cases that apply to ``config``: :data:`DIRECTED` for the integer
    formats; :data:`FLOAT_DIRECTED` and ``bad_op`` for fp16 / bf16 (``fp_nonlinear`` only
    with the nonlinear unit, ``nonlinear = true``). Without the hand-off unit
    (``handoff = false``) the cases of the unit (``requant``, ``fp_finish``) are left out and
    :data:`NO_HANDOFF_DIRECTED` is added."""
    cases = [*FLOAT_DIRECTED, "bad_op"] if config.is_float else list(DIRECTED)
    if not config.nonlinear:
        cases = [c for c in cases if c != "fp_nonlinear"]
    if not config.handoff:
        cases = [c for c in cases if c not in _HANDOFF_CASES] + list(NO_HANDOFF_DIRECTED)
    return cases


def directed(name: str, config: Config) -> list[Flit]:
    """The flits of directed case ``name`` (one of :func:`directed_cases`). Without the
    hand-off unit a case's SET and FINISH flits are left out (but for ``handoff_off``'s)."""
    cases = directed_cases(config)
    if name not in cases:
        raise ValueError(f"directed case for dtype {config.dtype!r}"
                         f"{'' if config.handoff else ' without the hand-off unit'} must be "
                         f"one of {', '.join(cases)}, not {name!r}")
    flits = {**DIRECTED, **FLOAT_DIRECTED, **NO_HANDOFF_DIRECTED}[name](config)
    if name not in NO_HANDOFF_DIRECTED:  # the operations this core does not execute
        absent = codes(OPS.absent(config))
        flits = [f for f in flits if code_of(f["op"]) not in absent]
    return flits


# -- floating point ---------------------------------------------------------------------------


def _h(config: Config, *values: float) -> list[int]:
    """The 16-bit words of ``values`` in the tile's format (rounded to nearest even)."""
    fmt = float_format(config.dtype)
    return [int(b) for b in fmt.bits(np.asarray(values, np.float32))]


def _s(bits: int) -> int:
    """An FP32 word as the signed value a 32-bit ``data`` field carries."""
    bits &= 0xFFFFFFFF
    return bits - (1 << 32) if bits >> 31 else bits


def _w(*values: float) -> list[int]:
    """FP32 words of ``values`` for a ``data`` field (:func:`_s`)."""
    return [_s(int(b)) for b in FP32.bits(np.asarray(values, np.float32))]


def _tiny(config: Config) -> tuple[float, float, float]:
    """The format's smallest subnormal, smallest normal and largest finite value."""
    fmt = float_format(config.dtype)
    low = 2.0 ** (1 - fmt.bias - fmt.frac_bits)
    normal = 2.0 ** (1 - fmt.bias)
    top = float(fmt.values(np.array([fmt.inf - 1], fmt.dtype))[0])
    return low, normal, top


def _finish_all(accs: int, first: int = 0) -> list[Flit]:
    """A FINISH of accumulators 0 .. accs - 1 (to activations ``first`` onwards) and READs."""
    return ([_f(Opcode.FINISH, a, first + a, data=a) for a in range(accs)] +
            [_f(Opcode.READ_ACC, a, data=a) for a in range(accs)])


def _fp_signed_zero(cfg: Config) -> list[Flit]:
    """+0 and -0 operands skip (even against inf and NaN), an accumulator at -0 stays -0
    through skipped MACs and becomes +0 through ADD of +0, -0 + -0 = -0, x + (-x) = +0."""
    pz, nz, one, m2, inf, nan = _h(cfg, 0.0, -0.0, 1.0, -2.0, np.inf, np.nan)
    flits = [_f(Opcode.WRITE_ACT, a, data=v) for a, v in enumerate([pz, nz, one, m2, inf, nan])]
    flits += [_f(Opcode.WRITE_ACC, a, data=v) for a, v in enumerate(_w(-0.0, 0.0, -0.0, 1.5,
                                                                         -0.0, -0.0))]
    # skipped: zero weight times anything (inf, NaN), anything times a zero activation
    flits += [_f(Opcode.MAC, 0, b, w) for b in range(6) for w in (pz, nz)]
    flits += [_f(Opcode.MAC, 1, b, w) for b in (0, 1) for w in (one, m2, inf, nan, nz)]
    flits += [_f(Opcode.READ_ACC, 0), _f(Opcode.READ_ACC, 1)]
    # -0 + -0 = -0 (ADD never skips), then -0 + +0 = +0
    flits += [_f(Opcode.ADD, 2, data=_w(-0.0)[0]), _f(Opcode.READ_ACC, 2),
              _f(Opcode.ADD, 2, data=_w(0.0)[0]), _f(Opcode.READ_ACC, 2)]
    # x + (-x) = +0 through a MAC: 1.5 + 1 * -1.5 (the product's weight 1.5 * -1)
    flits += [_f(Opcode.WRITE_ACT, 6, data=_h(cfg, -1.0)[0]),
              _f(Opcode.MAC, 3, 6, _h(cfg, 1.5)[0]), _f(Opcode.READ_ACC, 3)]
    # a -0 accumulator plus a nonzero product: IEEE's sum; SEND of -0 carries -0
    flits += [_f(Opcode.MAC, 4, 2, m2), _f(Opcode.SEND, 5, 9), _f(Opcode.READ_ACT, 1)]
    return flits


def _fp_subnormal(cfg: Config) -> list[Flit]:
    """Subnormal operands (the format's smallest and largest), products and sums below FP32's
    normal range (BF16 products underflow, round to nearest even or to zero), subnormal
    accumulators growing into the normal range, subnormal FP32 sums rounded to the format's
    subnormals by FINISH (and to zero)."""
    low, normal, _top = _tiny(cfg)
    ops = _h(cfg, low, -low, normal - low, 3 * low, normal, -normal, 2.0 ** -60, 1.75)
    flits = [_f(Opcode.WRITE_ACT, a, data=v) for a, v in enumerate(ops)]
    flits += [_f(Opcode.WRITE_ACC, a, data=0) for a in range(12)]
    acc = 0
    for b in range(len(ops)):
        for w in ops[:6]:
            flits.append(_f(Opcode.MAC, acc % 12, b, w))
            acc += 1
    # FP32 subnormals straight in, sums of them (exact), and the smallest FP32 normal
    t = 2.0 ** -149
    flits += [_f(Opcode.WRITE_ACC, 12, data=_w(t)[0]), _f(Opcode.ADD, 12, data=_w(t)[0]),
              _f(Opcode.ADD, 12, data=_w(-3 * t)[0]), _f(Opcode.READ_ACC, 12),
              _f(Opcode.WRITE_ACC, 13, data=_w(2.0 ** -126 - t)[0]),
              _f(Opcode.ADD, 13, data=_w(t)[0]), _f(Opcode.READ_ACC, 13)]
    # FINISH of FP32 values around the format's subnormal range (half the smallest: a tie)
    values = [low, low / 2, low * 0.75, -low / 2, low * 1.5, low * 2.5, normal * 0.99,
              normal - low / 2, 2.0 ** -149, -(2.0 ** -140)]
    flits += [_f(Opcode.WRITE_ACC, 14 + a, data=v) for a, v in enumerate(_w(*values))]
    flits += [_f(Opcode.FINISH, 14 + a, 20 + a, data=a) for a in range(len(values))]
    flits += [_f(Opcode.READ_ACC, a, data=a) for a in range(12)]
    flits += [_f(Opcode.READ_ACT, 20 + a) for a in range(len(values))]
    return flits


def _fp_inf(cfg: Config) -> list[Flit]:
    """Overflow to infinity: products at the top of the range (BF16 beyond FP32's), sums past
    FP32's largest value (and the rounding tie there), inf - inf = NaN, inf + x = inf, and
    FINISH of values above the format's range (65520: FP16's tie to infinity)."""
    _low, _normal, top = _tiny(cfg)
    big, nbig, inf, ninf, two = _h(cfg, top, -top, np.inf, -np.inf, 2.0)
    flits = [_f(Opcode.WRITE_ACT, a, data=v) for a, v in enumerate([big, nbig, inf, ninf, two])]
    f32max = float(np.finfo(np.float32).max)
    ulp = 2.0 ** 104
    flits += [_f(Opcode.WRITE_ACC, a, data=v) for a, v in enumerate(
        _w(0.0, f32max, -f32max, f32max - ulp, 0.0, 0.0, 1.0, 0.0))]
    flits += [_f(Opcode.MAC, 0, 0, big), _f(Opcode.MAC, 0, 0, big), _f(Opcode.MAC, 0, 1, big),
              _f(Opcode.READ_ACC, 0)]                                   # big products
    flits += [_f(Opcode.ADD, 1, data=_w(ulp / 2)[0]), _f(Opcode.READ_ACC, 1),  # the tie
              _f(Opcode.ADD, 2, data=_w(-f32max)[0]), _f(Opcode.READ_ACC, 2),
              _f(Opcode.ADD, 3, data=_w(ulp / 2)[0]), _f(Opcode.READ_ACC, 3)]
    flits += [_f(Opcode.MAC, 4, 2, two), _f(Opcode.MAC, 4, 4, big),    # inf + x = inf
              _f(Opcode.MAC, 4, 3, two), _f(Opcode.READ_ACC, 4)]       # inf - inf = NaN
    flits += [_f(Opcode.MAC, 5, 3, big), _f(Opcode.MAC, 5, 1, big), _f(Opcode.READ_ACC, 5)]
    flits += [_f(Opcode.MAC, 7, 0, big) for _ in range(4)] + [_f(Opcode.READ_ACC, 7)]
    values = [65504.0, 65519.0, 65520.0, -65520.0, 70000.0, 3.0e38, f32max, -f32max, np.inf,
              -np.inf, float(top)]
    flits += [_f(Opcode.WRITE_ACC, 8 + a, data=v) for a, v in enumerate(_w(*values))]
    flits += [_f(Opcode.FINISH, 8 + a, 10 + a, data=a) for a in range(len(values))]
    flits += [_f(Opcode.READ_ACT, 10 + a) for a in range(len(values))]
    return flits


def _fp_nan(cfg: Config) -> list[Flit]:
    """A NaN weight, a NaN activation (quiet and signalling patterns, either sign), a NaN
    accumulator, NaN through ADD, 0 * NaN skipped, inf * 0 never formed (skipped), and every
    NaN out canonical (READ, SEND, FINISH, FINISH with ReLU)."""
    fmt = float_format(cfg.dtype)
    quiet, signalling = fmt.nan, fmt.inf | 1
    nans = [quiet, quiet | fmt.sign_bit, signalling, signalling | fmt.sign_bit | 2]
    one, two = _h(cfg, 1.0, -2.0)
    flits = [_f(Opcode.WRITE_ACT, a, data=v) for a, v in enumerate([*nans, one, two, 0])]
    flits += [_f(Opcode.WRITE_ACC, a, data=_w(1.0)[0]) for a in range(10)]
    flits += [_f(Opcode.MAC, a, a, one) for a in range(4)]              # NaN activation
    flits += [_f(Opcode.MAC, 4 + k, 4 + k % 2, n) for k, n in enumerate(nans)]  # NaN weight
    flits += [_f(Opcode.MAC, 8, 6, nans[0]), _f(Opcode.MAC, 8, 0, 0)]    # skipped
    f32nan = [_s(0x7FC00000), _s(0xFFC00001), _s(0x7F800001), _s(0xFF800123)]
    flits += [_f(Opcode.ADD, 9, data=f32nan[2]), _f(Opcode.ADD, 9, data=_w(5.0)[0])]
    flits += [_f(Opcode.WRITE_ACC, 10 + k, data=v) for k, v in enumerate(f32nan)]
    flits += [_f(Opcode.SEND, 10 + k, k, data=k) for k in range(4)]
    flits += [_f(Opcode.FINISH, 10 + k, 8 + k) for k in range(4)]
    flits += [_set(Reg.RELU, 1), _f(Opcode.FINISH, 11, 12), _f(Opcode.FINISH, 13, 13),
              _set(Reg.RELU, 0)]
    flits += [_f(Opcode.READ_ACC, a) for a in range(14)]
    flits += [_f(Opcode.READ_ACT, a) for a in range(14)]
    return flits


def _fp_ties(cfg: Config) -> list[Flit]:
    """Ties to even in the sum (half an ulp of the accumulator, on an even and on an odd
    significand, and just above half), in the product (BF16 products below FP32's normal
    range), and in FINISH's rounding to the format (halfway between two neighbours)."""
    fmt = float_format(cfg.dtype)
    e = 2.0 ** -12 if fmt.name == "fp16" else 2.0 ** -60
    half_ulp = e * e                      # the product e * e: FP32 half-ulp steps below
    one, eps, eps3 = _h(cfg, 1.0, e, 3 * e)
    flits = [_f(Opcode.WRITE_ACT, 0, data=eps), _f(Opcode.WRITE_ACT, 1, data=eps3),
             _f(Opcode.WRITE_ACT, 2, data=one)]
    u = half_ulp * 2 ** 24                # an accumulator whose half ulp is e * e
    flits += [_f(Opcode.WRITE_ACC, a, data=v) for a, v in enumerate(
        _w(u, u + 2 * half_ulp, u, -u, u * 1.5))]
    flits += [_f(Opcode.MAC, 0, 0, eps), _f(Opcode.READ_ACC, 0),    # tie, even: stays
              _f(Opcode.MAC, 1, 0, eps), _f(Opcode.READ_ACC, 1),    # tie, odd: rounds up
              _f(Opcode.MAC, 2, 1, eps), _f(Opcode.READ_ACC, 2),    # 1.5 ulp: up to even
              _f(Opcode.MAC, 3, 0, eps), _f(Opcode.READ_ACC, 3),
              _f(Opcode.MAC, 4, 1, eps3), _f(Opcode.READ_ACC, 4)]
    # BF16: products that round in FP32's subnormal range (ties at half the smallest)
    tiny = _h(cfg, 2.0 ** -75, 1.5 * 2.0 ** -75, 2.0 ** -74, 1.25 * 2.0 ** -74)
    flits += [_f(Opcode.WRITE_ACT, 3 + k, data=v) for k, v in enumerate(tiny)]
    flits += [_f(Opcode.WRITE_ACC, 5 + k, data=0) for k in range(16)]
    flits += [_f(Opcode.MAC, 5 + 4 * a + b, 3 + a, tiny[b]) for a in range(4) for b in range(4)]
    flits += [_f(Opcode.READ_ACC, 5 + k) for k in range(16)]
    # FINISH: FP32 values halfway between two neighbours of the format, either side of even
    step = 2.0 ** -fmt.frac_bits
    mids = [1 + step / 2, 1 + 1.5 * step, -(1 + step / 2), 2 - step / 2, 1 + step / 2 + 2 ** -23,
            1 + 1.5 * step - 2 ** -23]
    flits += [_f(Opcode.WRITE_ACC, 21 + k, data=v) for k, v in enumerate(_w(*mids))]
    flits += [_f(Opcode.FINISH, 21 + k, 10 + k, data=k) for k in range(len(mids))]
    flits += [_f(Opcode.READ_ACT, 10 + k) for k in range(len(mids))]
    return flits


def _fp_cancel(cfg: Config) -> list[Flit]:
    """Cancellation: x + (-x) = +0, near cancellation that leaves a few low bits (the
    normalization's long left shift), and a large term added and taken away again (the small
    one is lost: float addition is not associative, the order is the reference's)."""
    a, b, c, d, big, one = _h(cfg, 1.0009765625, -1.0, 3.0, -3.0, 1024.0, 1.0)
    small = _h(cfg, 2.0 ** -8)[0]
    flits = [_f(Opcode.WRITE_ACT, k, data=v) for k, v in enumerate([a, b, c, d, big, one,
                                                                    small])]
    flits += [_f(Opcode.WRITE_ACC, k, data=0) for k in range(6)]
    flits += [_f(Opcode.MAC, 0, 0, one), _f(Opcode.MAC, 0, 1, one), _f(Opcode.READ_ACC, 0),
              _f(Opcode.MAC, 1, 2, c), _f(Opcode.MAC, 1, 3, c), _f(Opcode.READ_ACC, 1),
              _f(Opcode.MAC, 2, 6, one), _f(Opcode.MAC, 2, 4, big), _f(Opcode.MAC, 2, 4, b),
              _f(Opcode.MAC, 2, 4, big), _f(Opcode.READ_ACC, 2),
              _f(Opcode.MAC, 3, 4, big), _f(Opcode.MAC, 3, 6, one), _f(Opcode.MAC, 3, 4, b),
              _f(Opcode.READ_ACC, 3)]
    f = [_w(1.0 + k * 2.0 ** -23)[0] for k in range(4)]
    flits += [_f(Opcode.WRITE_ACC, 4, data=f[3]), _f(Opcode.ADD, 4, data=_s(f[2] ^ (1 << 31))),
              _f(Opcode.READ_ACC, 4),
              _f(Opcode.WRITE_ACC, 5, data=_w(2.0 ** 100)[0]),
              _f(Opcode.ADD, 5, data=_w(-(2.0 ** 100) * (1 - 2.0 ** -24))[0]),
              _f(Opcode.READ_ACC, 5)]
    return flits


def _fp_runs(cfg: Config) -> list[Flit]:
    """Long runs into one accumulator (a bubble after every MAC), two and three accumulators
    in turn (none), zero MACs inside a run (no bubble, no write), and every reader right after
    every writer of the same accumulator: READ, SEND, FINISH and ADD after MAC, ADD and
    WRITE_ACC; WRITE_ACC then MAC."""
    vals = _h(cfg, 1.5, -0.75, 3.25, 0.1, -7.0, 0.0, 2.0 ** -5, 100.0)
    flits = [_f(Opcode.WRITE_ACT, a, data=v) for a, v in enumerate(vals)]
    ws = _h(cfg, 0.3, -1.25, 2.5, 0.0, 7.75, -0.01)
    flits += [_f(Opcode.WRITE_ACC, a, data=0) for a in range(4)]
    flits += [_f(Opcode.MAC, 0, k % 8, ws[k % 6]) for k in range(60)]
    flits += [_f(Opcode.READ_ACC, 0)]
    flits += [_f(Opcode.MAC, k % 2 + 1, k % 8, ws[k % 5]) for k in range(30)]
    flits += [_f(Opcode.MAC, k % 3 + 1, (k * 3) % 8, ws[(k + 1) % 6]) for k in range(30)]
    flits += [_f(Opcode.READ_ACC, a) for a in range(1, 4)]
    w = ws[0]
    writers = [_f(Opcode.MAC, 3, 0, w), _f(Opcode.ADD, 3, data=_w(0.5)[0]),
               _f(Opcode.WRITE_ACC, 3, data=_w(-2.5)[0])]
    readers = [_f(Opcode.READ_ACC, 3), _f(Opcode.SEND, 3, 1), _f(Opcode.FINISH, 3, 9),
               _f(Opcode.ADD, 3, data=_w(1.0)[0]), _f(Opcode.MAC, 3, 2, w)]
    for wr in writers:
        for rd in readers:
            flits += [wr, rd]
    flits += [_f(Opcode.WRITE_ACT, 9, data=vals[2]), _f(Opcode.MAC, 3, 9, w),
              _f(Opcode.READ_ACT, 9), _f(Opcode.READ_ACC, 3)]
    return flits


def _fp_finish(cfg: Config) -> list[Flit]:
    """FINISH with and without ReLU on negatives, -0, -inf, negative subnormals, NaN, large
    values; SET of MULT and SHIFT has no effect in floating point; FINISH right after the
    MAC / ADD that makes its accumulator."""
    values = [0.0, -0.0, 1.0, -1.0, 2.5e-3, -2.5e-3, 3.0e5, -3.0e5, np.inf, -np.inf,
              -(2.0 ** -140), 2.0 ** -20, 123.456, -0.33]
    flits = [_f(Opcode.WRITE_ACC, a, data=v) for a, v in enumerate(_w(*values))]
    flits.append(_f(Opcode.WRITE_ACC, 14, data=_s(0xFFC00000)))
    for relu in (0, 1):
        flits += [_set(Reg.RELU, relu), _set(Reg.MULT, 3), _set(Reg.SHIFT, 5)]
        flits += [_f(Opcode.FINISH, a, a + 16 * relu, data=a) for a in range(15)]
    one = _h(cfg, 1.0)[0]
    flits += [_f(Opcode.WRITE_ACT, 40, data=one), _f(Opcode.WRITE_ACC, 15, data=_w(-2.0)[0]),
              _f(Opcode.MAC, 15, 40, one), _f(Opcode.FINISH, 15, 41),
              _f(Opcode.ADD, 15, data=_w(3.0)[0]), _f(Opcode.FINISH, 15, 42),
              _set(Reg.RELU, 0), _f(Opcode.FINISH, 15, 43)]
    return flits


def _fp_grad(cfg: Config) -> list[Flit]:
    """GRAD (training, ``docs/training.md``): the sum ``data + act[addr] * act[addr_b]``
    with each operand +0, -0, an infinity, a NaN, a subnormal, a large value; the data -0,
    an infinity, a NaN; a GRAD right after the WRITE_ACT of either operand (the second read
    port's transparency) and between MACs, ADDs and reads of one accumulator."""
    low, _normal, top = _tiny(cfg)
    acts = [1.5, -2.0, 0.0, -0.0, np.inf, np.nan, low, top, -3.0, 0.75]
    flits = [_f(Opcode.WRITE_ACT, a, data=v) for a, v in enumerate(_h(cfg, *acts))]
    data = _w(0.25, 7.0, -1.0, -0.0, np.inf, np.nan, 1e30, -2.5e-40)
    for k, (a, b) in enumerate([(0, 1), (0, 2), (3, 4), (0, 4), (5, 0), (6, 6), (7, 7),
                                (8, 9), (1, 8), (4, 1), (2, 5)]):
        flits.append(_f(Opcode.GRAD, a, b, data[k % len(data)]))
    two, one = _h(cfg, 2.0, 1.0)
    flits += [_f(Opcode.WRITE_ACT, 12, data=two), _f(Opcode.GRAD, 12, 0, _w(1.0)[0]),
              _f(Opcode.WRITE_ACT, 13, data=two), _f(Opcode.GRAD, 0, 13, _w(1.0)[0]),
              _f(Opcode.WRITE_ACC, 2, data=_w(0.5)[0]), _f(Opcode.MAC, 2, 0, one),
              _f(Opcode.GRAD, 2, 9, _w(-1.0)[0]), _f(Opcode.MAC, 2, 0, one),
              _f(Opcode.ADD, 2, data=_w(4.0)[0]), _f(Opcode.GRAD, 0, 0, _w(0.0)[0]),
              _f(Opcode.READ_ACC, 2), _f(Opcode.GRAD, 9, 9, _w(0.0)[0])]
    return flits


def _fp_finish_back(cfg: Config) -> list[Flit]:
    """FINISH_BACK (training): the rounded accumulator where the activation at ``addr_b``
    is greater than 0 (a positive number, a subnormal, +infinity), +0 where it is +0, -0,
    negative or a NaN, for accumulators of every kind; right after the MAC and the ADD that
    make its accumulator; the activation it tests is not written by the core itself."""
    values = [1.0, -1.0, 2.5e-3, np.nan, 3.0e5, -np.inf, -0.0, 1e-30]
    flits = [_f(Opcode.WRITE_ACC, a, data=v) for a, v in enumerate(_w(*values))]
    low, _normal, _top = _tiny(cfg)
    masks = [1.0, 0.0, -0.0, -2.0, np.nan, np.inf, low, -np.inf]
    flits += [_f(Opcode.WRITE_ACT, 20 + k, data=v) for k, v in enumerate(_h(cfg, *masks))]
    for a in range(len(values)):
        for k in range(len(masks)):
            if (a + k) % 2 == 0 or k < 2:
                flits.append(_f(Opcode.FINISH_BACK, a, 20 + k, data=a * 8 + k))
    one = _h(cfg, 1.0)[0]
    flits += [_f(Opcode.MAC, 0, 20, one), _f(Opcode.FINISH_BACK, 0, 20, data=1),
              _f(Opcode.ADD, 1, data=_w(5.0)[0]), _f(Opcode.FINISH_BACK, 1, 26, data=2),
              _f(Opcode.READ_ACT, 20), _f(Opcode.READ_ACT, 26), _f(Opcode.READ_ACC, 0)]
    return flits


def _fp_nonlinear(cfg: Config) -> list[Flit]:
    """NONLINEAR (``nonlinear = true``): every function on the special words (+-0, +-inf,
    NaNs of both signs and a payload, the smallest subnormal and normal, the largest finite),
    values inside and just past each function's range, a ``data`` whose high bits are set
    (only the low 3 pick the function; 5 to 7 pick the fifth), NONLINEARs back to back on
    one accumulator (the second reads what the first writes), a MAC and a READ_ACC right
    after one on its accumulator, and a NONLINEAR between MACs into another accumulator; MUL
    and MAX on pairs of those words and on every pair of classes of FP32 word (zeros,
    subnormal, normal, infinities of each sign, NaN), back to back, after a MAC, and a running
    maximum from -inf; SEND with each of its four outputs, FINISH with each of its two."""
    specials = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,
                0x7F800001, 0x00000001, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF]
    values = [_s(w) for w in specials] + _w(1.0, -1.0, 0.5, 3.0, -3.0, 10.0, -10.0, 88.5,
                                           -87.5, 89.0, -104.0, 1e-30, 1e30, 2.0 ** -125,
                                           2.0 ** 126)
    flits = []
    for func in range(8):  # 5, 6 and 7 are GELU's derivative (4) too
        for k, v in enumerate(values if func < 5 else values[func::7]):
            flits.append(_f(Opcode.WRITE_ACC, k, data=v))
            # every other one with junk above the function's three bits
            flits.append(_f(Opcode.NONLINEAR, k, data=func | ((k % 2) * 0x7FF8)))
            flits.append(_f(Opcode.READ_ACC, k, data=k))
    x, one = _w(0.75)[0], _h(cfg, 1.0)[0]
    flits += [_f(Opcode.WRITE_ACT, 1, data=one), _f(Opcode.WRITE_ACC, 0, data=x),
              _f(Opcode.NONLINEAR, 0, data=0), _f(Opcode.NONLINEAR, 0, data=1),
              _f(Opcode.MAC, 0, 1, one), _f(Opcode.NONLINEAR, 0, data=3),
              _f(Opcode.READ_ACC, 0, data=1),
              _f(Opcode.WRITE_ACC, 2, data=_w(2.0)[0]), _f(Opcode.MAC, 3, 1, one),
              _f(Opcode.NONLINEAR, 2, data=2), _f(Opcode.MAC, 3, 1, one),
              _f(Opcode.READ_ACC, 2, data=2), _f(Opcode.READ_ACC, 3, data=3)]
    # MUL and MAX: each special word and value against three others (and itself), then
    # back to back on one accumulator, right after a MAC, and a running maximum from -inf
    n = len(values)
    for op in (Opcode.MUL, Opcode.MAX):
        for k, v in enumerate(values):
            for j in (k, (k * 7 + 1) % n, (k * 5 + 3) % n):
                flits += [_f(Opcode.WRITE_ACC, k, data=v), _f(op, k, data=values[j]),
                          _f(Opcode.READ_ACC, k, data=j)]
    # every pair of classes of FP32 word (a zero of each sign, a subnormal, a normal number
    # of each sign, an infinity of each sign, a NaN): the nonlinear cover group's bins
    classes = [0x00000000, 0x80000000, 0x807FFFFF, 0x3FC00000, 0xC0200000, 0x7F800000,
               0xFF800000, 0x7FC00000]
    for op in (Opcode.MUL, Opcode.MAX):
        for k, v in enumerate(classes):
            for j, d in enumerate(classes):
                flits += [_f(Opcode.WRITE_ACC, k, data=_s(v)), _f(op, k, data=_s(d)),
                          _f(Opcode.READ_ACC, k, data=8 * k + j)]
    # SEND's four outputs (ADD, MUL, MAX, WRITE_ACC: the data bits above the route), one
    # right after the MAX that makes its accumulator, and with every bit above them set
    at = cfg.route_width
    flits += [_f(Opcode.SEND, k, 10 + k, data=k << at | k) for k in range(4)]
    flits += [_f(Opcode.MAX, 2, data=_w(1e30)[0]), _f(Opcode.SEND, 2, 14, data=2 << at),
              _f(Opcode.SEND, 3, 15, data=_s(0xFFFFFFFF << at | 5))]
    if cfg.handoff:
        # FINISH's two outputs (WRITE_ACT, MAC: the bit above the hand-off), with rows and
        # a MAC's activation address above it, one right after the MAX that makes its
        # accumulator, and with every bit above the hand-off set
        hat, wide = cfg.handoff_width, cfg.handoff_width + 1 + cfg.y_width
        flits += [_f(Opcode.FINISH, k, 16 + k, data=k << hat | 1 << hat + 1 | (9 + k) << wide
                     | k) for k in range(2)]
        flits += [_f(Opcode.MAX, 1, data=_w(-2.5)[0]), _f(Opcode.FINISH, 1, 18, data=1 << hat),
                  _f(Opcode.FINISH, 3, 19, data=_s(0xFFFFFFFF << hat | 3))]
    flits += [_f(Opcode.WRITE_ACC, 4, data=_w(-np.inf)[0]),
              *(_f(Opcode.MAX, 4, data=w) for w in _w(-3.0, 2.5, -0.0, 2.5, 7.0, 1.0)),
              _f(Opcode.MUL, 4, data=_w(-0.5)[0]), _f(Opcode.MAC, 4, 1, one),
              _f(Opcode.MUL, 4, data=_w(3.0)[0]), _f(Opcode.MAX, 4, data=_w(-1e30)[0]),
              _f(Opcode.NONLINEAR, 4, data=0), _f(Opcode.READ_ACC, 4, data=4)]
    return flits


#: Directed cases of a floating-point core (fp16 / bf16), by name.
FLOAT_DIRECTED = {
    "fp_signed_zero": _fp_signed_zero,
    "fp_subnormal": _fp_subnormal,
    "fp_inf": _fp_inf,
    "fp_nan": _fp_nan,
    "fp_ties": _fp_ties,
    "fp_cancel": _fp_cancel,
    "fp_runs": _fp_runs,
    "fp_finish": _fp_finish,
    "fp_grad": _fp_grad,
    "fp_finish_back": _fp_finish_back,
    "fp_nonlinear": _fp_nonlinear,
}


def random_float_words(fmt_name: str, rng: np.random.Generator, n: int, *,
                       zeros: float = 0.0, scale: float = 0.0, specials: float = 0.03,
                       subnormals: float = 0.07, raw: float = 0.1) -> np.ndarray:
    """``n`` random words of format ``fmt_name`` (``"fp16"``, ``"bf16"``, ``"fp32"``) of mixed
    kinds and magnitudes: ``zeros`` of them +0 or -0; of the rest ``specials`` infinities and
    NaNs, ``subnormals`` subnormals, ``raw`` any bit pattern, the others values of both signs
    with an exponent within 12 of ``2**scale`` (so that sums carry, cancel and round)."""
    fmt = float_format(fmt_name)
    mask = (1 << fmt.width) - 1
    kind = rng.random(n)
    out = np.zeros(n, dtype=np.int64)
    near = np.float32(2.0) ** (scale + rng.integers(-12, 13, n)).astype(np.float32)
    values = (rng.random(n).astype(np.float32) + np.float32(0.5)) * near
    values *= np.where(rng.random(n) < 0.5, -1, 1).astype(np.float32)
    out[:] = fmt.bits(values.astype(np.float32)).astype(np.int64)
    pattern = rng.integers(0, mask + 1, n)
    sub = rng.integers(1, 1 << fmt.frac_bits, n) | (rng.integers(0, 2, n) << (fmt.width - 1))
    special = np.array([fmt.inf, fmt.inf | fmt.sign_bit, fmt.nan, fmt.nan | fmt.sign_bit,
                        fmt.inf | 1])[rng.integers(0, 5, n)]
    a, b, c = specials, specials + subnormals, specials + subnormals + raw
    out = np.where(kind < a, special, np.where(kind < b, sub, np.where(kind < c, pattern, out)))
    zero = rng.random(n) < zeros
    out = np.where(zero, rng.integers(0, 2, n) << (fmt.width - 1), out)
    return out.astype(np.int64)


#: How often each operation comes in a random stream, and the order of the draw: an operation
#: the core executes (:meth:`~wafertile.hdl.core.ops.OpTable.legal`) that is not listed comes
#: with weight 1 after these; one it does not execute never comes.
_MIX = {"MAC": 12, "WRITE_ACT": 3, "ADD": 1, "WRITE_ACC": 1, "READ_ACC": 1, "READ_ACT": 1,
        "SEND": 1, "SET": 1, "FINISH": 1}


def _random_ops(cfg: Config, ops: OpTable) -> list[Op]:
    """The operations of a random stream, weighted by repetition (:data:`_MIX`): those of
    ``ops`` that the core of ``cfg`` executes (SET and FINISH only with the hand-off unit)."""
    legal = {row.name: row for row in ops.legal(cfg)}
    names = [name for name in _MIX if name in legal] + [n for n in legal if n not in _MIX]
    return [legal[name] for name in names for _ in range(_MIX.get(name, 1))]


def _random_flit(cfg: Config, row: Op, rng: np.random.Generator, addr, value) -> Flit:
    """A random flit of operation ``row``, its fields by what the table says they carry:
    ``addr`` a word of the bank it addresses (``addr(depth)``: mostly a hot one) or a tile
    register; ``addr_b`` an activation operand's address, a word echoed in the output or its
    target (any), or nothing; ``data`` ``value(kind, reg)`` of its kind (a float core's FP32
    word drawn first, as its streams always were: the same seed gives the same stream)."""
    depth = {"act": cfg.act_depth, "acc": cfg.acc_depth}
    reg = None
    early = cfg.is_float and row.data == "value"
    data = value(row.data, reg) if early else 0
    if row.addr_space == "reg":
        reg = Reg(int(rng.integers(len(Reg))))
        a = reg.value
    else:
        a = addr(depth[row.addr_space])
    if row.act_field == "addr_b":
        b = addr(cfg.act_depth)
    elif row.emit is not None:  # data: a random tag (the output's route in a tile)
        b = int(rng.integers(depth[row.addr_space]))
    else:
        b = 0
    return _f(row.opcode or row.code, a, b, data if early else value(row.data, reg))


def random_stream(config: Config, rng: np.random.Generator, n: int, density: float,
                  *, hot: int = 8, ops: OpTable = OPS) -> list[Flit]:
    """A seeded random mix of all operations; ``density`` is the share of nonzero weights.

    The operations are those of ``ops`` (the operation table) that the core executes: SET
    and FINISH only with the hand-off unit (``config.handoff``; without it they are unknown
    opcodes, exercised by the directed case ``handoff_off``). Each field is drawn by what
    the table says it carries.

    Addresses are drawn mostly from ``hot`` words so that back-to-back hazards are frequent,
    and sometimes from the whole bank so that every address bit is exercised. Activations are
    zero with probability ``1 - density`` too, so both zero-skip paths are covered. For a
    floating-point ``config`` the operands are float words of mixed kinds and magnitudes
    (:func:`random_float_words`: a weight or activation is a zero, either sign, with
    probability ``1 - density``; FP32 words for ADD / WRITE_ACC).
    """
    cfg = config

    def addr(depth: int) -> int:
        return int(rng.integers(hot)) if rng.random() < 0.8 else int(rng.integers(depth))

    def word(lo: int, hi: int, dens: float) -> int:
        if rng.random() >= dens:
            return 0
        if rng.random() < 0.1:
            return int(rng.choice([lo, hi]))
        return int(rng.integers(lo, hi + 1))

    def half(zeros: float) -> int:
        return int(random_float_words(cfg.dtype, rng, 1, zeros=zeros)[0])

    def register(reg: Reg) -> int:
        if cfg.is_float:
            return int(rng.integers(2 if reg is Reg.RELU else 1 << 14))
        top = {Reg.MULT: (1 << MULT_WIDTH) - 1, Reg.SHIFT: cfg.acc_width + MULT_WIDTH - 1,
               Reg.RELU: 1}[reg]
        return int(rng.integers(top + 1))

    def value(kind: str | None, reg: Reg | None) -> int:
        if kind == "weight":
            return half(1 - density) if cfg.is_float else \
                word(cfg.data_min, cfg.data_max, density)
        if kind == "activation":
            return half(1 - max(density, 0.5)) if cfg.is_float else \
                word(cfg.data_min, cfg.data_max, max(density, 0.5))
        if kind == "value":
            if cfg.is_float:
                return _s(int(random_float_words("fp32", rng, 1, zeros=0.1, scale=2)[0]))
            return word(cfg.acc_min, cfg.acc_max, 0.9)
        if kind == "register":
            return register(reg)
        if kind in ("route", "handoff", "function"):  # a random tag; NONLINEAR's low 3 bits
            return int(rng.integers(cfg.acc_min, cfg.acc_max + 1))
        return 0

    mix = _random_ops(cfg, ops)
    return [_random_flit(cfg, mix[int(rng.integers(len(mix)))], rng, addr, value)
            for _ in range(n)]


def make_layer(cfg: Config, rng: np.random.Generator, b: int, i: int, j: int, density: float,
               extremes: bool = False, zero_lines: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Random activations X (``b x j``, 10% zero) and weights W (``i x j``) of the given
    density, within ``data_width``.

    ``extremes`` sets every other activation column to the largest value and every other
    weight row to the smallest; ``zero_lines`` zeroes whole rows and columns: every third
    output row of W, every fourth input column of W, and every third input column and the
    first batch row of X.

    With a floating-point ``dtype``: ``float32`` arrays of numbers of the format, of mixed
    magnitudes (:func:`random_float_words`: 5% subnormals, a few infinities and NaNs, zeros of
    both signs); ``extremes`` also puts the largest finite values (BF16 products beyond FP32's
    range), infinities of both signs and an output whose terms cancel exactly.
    """
    if cfg.is_float:
        return _make_float_layer(cfg, rng, b, i, j, density, extremes, zero_lines)
    lo, hi = cfg.data_min, cfg.data_max
    x = rng.integers(lo, hi + 1, (b, j))
    x[rng.random((b, j)) < 0.1] = 0
    w = rng.integers(lo, hi + 1, (i, j))
    if extremes:
        x[:, ::2] = hi
        w[::2, :] = lo
    w[rng.random((i, j)) >= density] = 0
    if zero_lines:
        w[::3, :] = 0
        w[:, ::4] = 0
        x[:, ::3] = 0
        x[0, :] = 0
    return x, w


def _make_float_layer(cfg: Config, rng: np.random.Generator, b: int, i: int, j: int,
                      density: float, extremes: bool, zero_lines: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_layer` for a floating-point ``cfg``."""
    fmt = float_format(cfg.dtype)

    def values(shape, zeros):
        words = random_float_words(cfg.dtype, rng, int(np.prod(shape)), zeros=zeros,
                                   specials=0.004, subnormals=0.05, raw=0.02)
        return fmt.values(words.astype(fmt.dtype)).reshape(shape)

    x = values((b, j), 0.1)
    w = values((i, j), 1.0 - density)
    if extremes:
        top = fmt.values(np.array([fmt.inf - 1], fmt.dtype))[0]
        x[:, ::2] = top
        w[::2, :] = -top
        x[0, 1 % j] = np.inf
        x[-1, 3 % j] = -np.inf
        if i > 1 and j > 1:  # output 1: a + (-a) over pairs of equal activations
            x[:, 1::2] = x[:, 0:j - (j % 2):2][:, :x[:, 1::2].shape[1]]
            w[1, 1::2] = -w[1, 0:j - (j % 2):2][:w[1, 1::2].shape[0]]
    if zero_lines:
        w[::3, :] = 0
        w[:, ::4] = -0.0
        x[:, ::3] = 0
        x[0, :] = -0.0
    return x.astype(np.float32), w.astype(np.float32)
