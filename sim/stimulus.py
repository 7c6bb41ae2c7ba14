"""Stimulus: operation-flit streams for the core regressions (directed corner cases and seeded
random), and random layers for the array regressions.

Every generator returns a list of payload dicts (see :mod:`wafertile.sim.models.core`). All values
are within their fields, so :func:`wafertile.hdl.flit.pack` accepts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Config
from ..hdl.flit import MULT_WIDTH, Opcode, Reg

__all__ = ["DIRECTED", "directed", "dump", "make_layer", "random_stream"]

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
            {"op": 12, "addr": 0, "addr_b": 0, "data": 3}, _f(Opcode.READ_ACC, 0)]


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


#: Directed cases by name.
DIRECTED = {
    "overflow": _overflow,
    "back_to_back": _back_to_back,
    "zeros": _zeros,
    "extremes": _extremes,
    "bad_op": _bad_op,
    "requant": _requant,
}


def directed(name: str, config: Config) -> list[Flit]:
    try:
        return DIRECTED[name](config)
    except KeyError:
        raise ValueError(f"directed case must be one of {', '.join(DIRECTED)}, "
                         f"not {name!r}") from None


def random_stream(config: Config, rng: np.random.Generator, n: int, density: float,
                  *, hot: int = 8) -> list[Flit]:
    """A seeded random mix of all operations; ``density`` is the share of nonzero weights.

    Addresses are drawn mostly from ``hot`` words so that back-to-back hazards are frequent,
    and sometimes from the whole bank so that every address bit is exercised. Activations are
    zero with probability ``1 - density`` too, so both zero-skip paths are covered.
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

    ops = [Opcode.MAC] * 12 + [Opcode.WRITE_ACT] * 3 + [Opcode.ADD, Opcode.WRITE_ACC,
                                                        Opcode.READ_ACC, Opcode.READ_ACT,
                                                        Opcode.SEND, Opcode.SET,
                                                        Opcode.FINISH]
    flits = []
    for _ in range(n):
        op = ops[int(rng.integers(len(ops)))]
        if op is Opcode.MAC:
            flits.append(_f(op, addr(cfg.acc_depth), addr(cfg.act_depth),
                            word(cfg.data_min, cfg.data_max, density)))
        elif op is Opcode.WRITE_ACT:
            flits.append(_f(op, addr(cfg.act_depth), 0,
                            word(cfg.data_min, cfg.data_max, max(density, 0.5))))
        elif op in (Opcode.ADD, Opcode.WRITE_ACC):
            flits.append(_f(op, addr(cfg.acc_depth), 0, word(cfg.acc_min, cfg.acc_max, 0.9)))
        elif op is Opcode.SET:
            reg = Reg(int(rng.integers(3)))
            top = {Reg.MULT: (1 << MULT_WIDTH) - 1, Reg.SHIFT: cfg.acc_width + MULT_WIDTH - 1,
                   Reg.RELU: 1}[reg]
            flits.append(_set(reg, int(rng.integers(top + 1))))
        elif op is Opcode.READ_ACT:  # data: a random tag (the reply's route in a tile)
            flits.append(_f(op, addr(cfg.act_depth), int(rng.integers(cfg.act_depth)),
                            int(rng.integers(cfg.acc_min, cfg.acc_max + 1))))
        else:  # READ_ACC, SEND, FINISH (data: the output's route or hand-off, here a tag)
            flits.append(_f(op, addr(cfg.acc_depth), int(rng.integers(cfg.acc_depth)),
                            int(rng.integers(cfg.acc_min, cfg.acc_max + 1))))
    return flits


def make_layer(cfg: Config, rng: np.random.Generator, b: int, i: int, j: int, density: float,
               extremes: bool = False, zero_lines: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Random activations X (``b x j``, 10% zero) and weights W (``i x j``) of the given
    density, within ``data_width``.

    ``extremes`` sets every other activation column to the largest value and every other
    weight row to the smallest; ``zero_lines`` zeroes whole rows and columns: every third
    output row of W, every fourth input column of W, and every third input column and the
    first batch row of X.
    """
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
