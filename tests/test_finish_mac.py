"""FINISH's second output (docs/architecture.md): on a float tile with the nonlinear unit, the
bit right above the hand-off makes the rounded accumulator a MAC's weight, delivered to every
tile of a rectangle of rows ``y .. y + dy`` (the tile-to-tile operand of attention), on the
activation that the ``act`` field addresses; ``dy`` also widens a WRITE_ACT's rectangle.

The array runs it on Icarus (and Verilator behind ``--run-slow``); every accumulator and
activation is checked against the functional array model and against float32 arithmetic
written here from the document (the weight ``to_half(acc)``, bf16 to nearest even; each MAC
``acc = fp32(acc + fp32(w) * fp32(a))``, a zero weight or activation skipped)."""

from __future__ import annotations

import numpy as np
import pytest

from wafertile import Config
from wafertile.hdl.flit import Opcode, encode_handoff
from wafertile.sim.models.array import ArrayModel
from wafertile.stream import LayerProgram
from wafertile.stream.plan import handoff_window, reply_route
from wafertile.stream.program import PhaseBuilder

from .conftest import seed_for
from .test_float import _sim

CFG = Config(rows=3, cols=2, dtype="bf16", act_depth=16, acc_depth=16, nonlinear=True)
#: (sender x, y, its accumulator; rectangle x0, x1, y, dy; receivers' accumulator, activation)
MACS = [(0, 0, 1, 1, 1, 0, 2, 5, 3),      # a column down the whole array
        (1, 1, 2, 0, 1, 1, 1, 6, 4),      # a 2 x 2 rectangle below the sender
        (0, 2, 3, 0, 0, 2, 0, 7, 7),      # the sender itself
        (1, 0, 0, 0, 1, 0, 0, 8, 3),      # a zero weight: skipped everywhere
        (0, 1, 4, 0, 1, 0, 2, 5, 2)]      # the whole array on activation 2 (+0, -0): skipped
#: a WRITE_ACT to rows 0 .. 2 of column 1 and rows 1 .. 2 of both (sender x, y, acc; x0, x1,
#: y, dy; activation address)
WRITES = [(1, 2, 2, 1, 1, 0, 2, 15), (0, 0, 4, 0, 1, 1, 1, 14)]


def _bf16(words32: np.ndarray) -> np.ndarray:
    """FP32 words to bf16, to nearest even (NaN is not drawn here)."""
    w = words32.astype(np.uint64)
    return ((w + 0x7FFF + ((w >> 16) & 1)) >> 16).astype(np.int64) & 0xFFFF


def _f32(half: np.ndarray) -> np.ndarray:
    return (np.asarray(half, np.uint32) << 16).view(np.float32)


def _program(rng):
    """The program (load, FINISH-MACs, FINISH-WRITE_ACTs, read), the loaded state."""
    R, C = CFG.rows, CFG.cols
    acts = _bf16(rng.normal(0, 2, (R, C, 16)).astype(np.float32).view(np.uint32))
    acts[:, :, 2] = 0                                  # an activation +0 for the last MAC
    acts[0, 1, 2] = 0x8000                             # and a -0
    accs = rng.normal(0, 4, (R, C, 16)).astype(np.float32)
    accs[0, 1, 0] = 0.0                                # the zero weight (sender 1, 0)
    vc = CFG.num_vcs - 1
    load = PhaseBuilder()
    for y in range(R):
        for x in range(C):
            load.add(y, 16, x0=x, x1=x, y0=y, y1=y, op=Opcode.WRITE_ACT.value,
                     addr=np.arange(16), data=acts[y, x])
            words = accs[y, x].view(np.int32).astype(np.int64)
            load.add(y, 16, x0=x, x1=x, y0=y, y1=y, op=Opcode.WRITE_ACC.value,
                     addr=np.arange(16), data=words)
        load.add(y, 1, x0=0, x1=0, y0=y, y1=y, op=Opcode.READ_ACC.value, addr_b=0,
                 data=reply_route(CFG, R)[y])
        load.reply(y, 0, 0)
    phases = [load.phase("load")]
    macs = PhaseBuilder()
    count = 0
    for sx, sy, s, x0, x1, y, dy, slot, a in MACS:
        macs.add(sy, 1, x0=sx, x1=sx, y0=sy, y1=sy, op=Opcode.FINISH.value, addr=s,
                 addr_b=slot, data=encode_handoff(CFG, x0=x0, x1=x1, y=y, dy=dy, vc=vc,
                                                  mac=True, act=a))
        count += (x1 - x0 + 1) * (dy + 1)
    phases.append(macs.phase("stream", expected_macs=count))
    writes = PhaseBuilder()
    count = 0
    for sx, sy, s, x0, x1, y, dy, a in WRITES:
        writes.add(sy, 1, x0=sx, x1=sx, y0=sy, y1=sy, op=Opcode.FINISH.value, addr=s,
                   addr_b=a, data=encode_handoff(CFG, x0=x0, x1=x1, y=y, dy=dy, vc=vc))
        count += (x1 - x0 + 1) * (dy + 1)
    phases.append(writes.phase("handoff", handoff_writes=count))
    read = PhaseBuilder()
    for y in range(R):
        for x in range(C):
            b = y * C + x
            read.add(y, 16, x0=x, x1=x, y0=y, y1=y, op=Opcode.READ_ACC.value,
                     addr=np.arange(16), addr_b=x, data=reply_route(CFG, R)[y])
            read.reply(y, np.arange(16), x, b, np.arange(16))
            read.add(y, 2, x0=x, x1=x, y0=y, y1=y, op=Opcode.READ_ACT.value,
                     addr=[14, 15], addr_b=C + x, data=reply_route(CFG, R)[y])
            read.reply(y, [14, 15], C + x, b, [16, 17])
    phases.append(read.phase("read"))
    return LayerProgram(CFG, (R * C, 18, 0), phases, 0, 0), acts, accs


def _document(acts, accs):
    """Every tile's 16 accumulators and activations 14 and 15 after the program, from the
    document (the senders' MACs that reach one accumulator: all but one skipped, so their
    order does not matter)."""
    accs, acts = accs.copy(), acts.copy()
    weights = {}
    for sx, sy, s, *_ in MACS:
        weights[sx, sy, s] = _bf16(accs[sy, sx, s:s + 1].view(np.uint32))[0]
    for sx, sy, s, x0, x1, y, dy, slot, a in MACS:
        w = weights[sx, sy, s]
        for ry in range(y, y + dy + 1):
            for rx in range(x0, x1 + 1):
                act = acts[ry, rx, a]
                if (w & 0x7FFF) and (act & 0x7FFF):
                    product = _f32([w])[0] * _f32([act])[0]      # exact: 8 x 8 bits
                    accs[ry, rx, slot] = np.float32(accs[ry, rx, slot] + product)
    for sx, sy, s, x0, x1, y, dy, a in WRITES:
        half = _bf16(accs[sy, sx, s:s + 1].view(np.uint32))[0]
        acts[y:y + dy + 1, x0:x1 + 1, a] = half
    out = np.concatenate([accs.view(np.int32).astype(np.int64), acts[:, :, 14:16]], axis=2)
    return out.reshape(CFG.rows * CFG.cols, 18)


@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_finish_sends_macs_and_rows_on_the_array(request, tmp_path, sim):
    from wafertile.run import simulate

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    program, acts, accs = _program(rng)
    assert max(sum(1 for m in MACS if (m[0], m[1]) == t) for t in
               {(m[0], m[1]) for m in MACS}) <= handoff_window(CFG)
    want = _document(acts, accs)
    model = ArrayModel(CFG).run(program, seed=seed)
    assert np.array_equal(model & 0xFFFFFFFF, want & 0xFFFFFFFF), f"seed {seed}"
    run = simulate(CFG, [program], sim=sim if sim == "verilator" else _sim("2x3"),
                   build_root=tmp_path)
    (y, stats), = run.results
    got = np.asarray(y, np.int64) & 0xFFFFFFFF
    bad = np.argwhere(got != want & 0xFFFFFFFF)
    assert not len(bad), f"seed {seed}: (tile, word) {bad.tolist()} differ"
    changed = np.argwhere(want[:, :16] != accs.reshape(6, 16).view(np.int32))
    assert {tuple(c) for c in changed} >= {(1, 5), (3, 5), (5, 5), (4, 7)}, f"seed {seed}"
    assert sum(stats["mac_done"]) + sum(stats["mac_skipped"]) == program.phases[1].expected_macs
    assert sum(stats["mac_skipped"]) >= 6 + 2, f"seed {seed}"     # the last MAC, the zero
