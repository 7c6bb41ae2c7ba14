"""Fast unit tests of the tile core in Amaranth's Python simulator, against the numpy model."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from wafertile import Config
from wafertile.hdl.core import FpMacCore, MacCore, TileCore
from wafertile.hdl.core.fp import float_format
from wafertile.hdl.core.ops import OPS, OpTable
from wafertile.hdl.core.units import Requantizer, limbs
from wafertile.hdl.flit import (
    MULT_WIDTH,
    Opcode,
    Port,
    Reg,
    encode_handoff,
    encode_route,
    pack,
    payload_layout,
    unpack,
)
from wafertile.hdl.generate import verilog_text
from wafertile.sim.models import CoreModel
from wafertile.sim.models.core import requantize
from wafertile.sim.stimulus import (
    DIRECTED,
    FLOAT_DIRECTED,
    directed,
    directed_cases,
    dump,
    random_stream,
)

from .conftest import seed_for

CONFIGS = {
    "d16a32wrap": Config(act_depth=16, acc_depth=16),
    "d8a16sat": Config(data_width=8, acc_width=16, overflow="saturate", act_depth=16,
                       acc_depth=32),
}


#: Floating-point cores (FpMacCore): banks deep enough for the directed cases' addresses.
FLOAT_CONFIGS = {
    "fp16": Config(dtype="fp16", act_depth=64, acc_depth=64),
    "bf16": Config(dtype="bf16", act_depth=64, acc_depth=32),
}


#: Float cores with the nonlinear unit (nonlinear = true: NONLINEAR, docs/nonlinear.md).
NONLINEAR_CONFIGS = {
    "fp16nl": Config(dtype="fp16", act_depth=32, acc_depth=32, nonlinear=True),
    "bf16nl": Config(dtype="bf16", act_depth=16, acc_depth=32, nonlinear=True, handoff=False),
}


#: Cores without the hand-off unit (handoff = false): SET and FINISH are unknown opcodes.
NO_HANDOFF_CONFIGS = {
    "d16a32nohandoff": Config(act_depth=16, acc_depth=16, handoff=False),
    "fp16nohandoff": Config(dtype="fp16", act_depth=64, acc_depth=64, handoff=False),
}


def simulate(cfg: Config, flits, *, seed: int = 0, idle: float = 0.0, stall: float = 0.0,
             ops: OpTable = OPS, units=None):
    """Drive ``flits`` into a TileCore (of the operation table ``ops``, with the core's
    units and ``units``) with random idle/backpressure; collect what comes out."""
    dut = TileCore(cfg, ops, units)
    layout = payload_layout(cfg)
    words = [pack(layout, f) for f in flits]
    rng = np.random.default_rng(seed)
    got = {"outputs": [], "tags": [], "mac_done": 0, "mac_skipped": 0, "stalls": 0, "error": 0}

    async def bench(ctx):
        k = 0
        quiet = 0
        # the float core offers an output 4 cycles on (a NONLINEAR ahead: up to GELU's
        # 187 more)
        while k < len(words) or quiet < (6 + 187 if cfg.nonlinear else 6):
            valid = k < len(words) and rng.random() >= idle
            ready = rng.random() >= stall
            ctx.set(dut.i.valid, valid)
            if valid:
                ctx.set(dut.i.payload.as_value(), words[k])
            ctx.set(dut.o.ready, ready)
            _, _, i_ready, o_valid, o_payload, o_tag, done, skipped = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.as_value(), dut.o_tag, dut.mac_done,
                dut.mac_skipped)
            if valid and i_ready:
                k += 1
            elif valid:
                got["stalls"] += 1
            if o_valid and ready:
                got["outputs"].append(unpack(layout, o_payload))
                got["tags"].append(o_tag)
            got["mac_done"] += done
            got["mac_skipped"] += skipped
            quiet = quiet + 1 if k == len(words) and not o_valid else 0
        got["error"] = ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def _check(cfg, flits, got, ops: OpTable = OPS, units=None):
    ref = CoreModel(cfg, ops, units).run(flits)
    assert got["outputs"] == ref.outputs
    assert got["tags"] == ref.tags
    assert (got["mac_done"], got["mac_skipped"]) == (ref.mac_done, ref.mac_skipped)
    assert bool(got["error"]) == ref.error


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("case", DIRECTED)
def test_directed(cfg, case):
    flits = directed(case, cfg) + dump(cfg)
    got = simulate(cfg, flits)
    _check(cfg, flits, got)
    # With no backpressure nothing waits but behind a FINISH: one flit per cycle, zero MACs
    # included. The hand-off works beside the pipeline on the MAC's multiplier; a flit waits
    # only where it is in the way (docs/architecture.md): as many cycles as the model's
    # replay of that rule, at most the unit's delay per FINISH, none without one.
    finishes = sum(f["op"] == Opcode.FINISH for f in flits)
    assert got["stalls"] == CoreModel(cfg).run(flits).bubbles
    assert got["stalls"] <= finishes * Requantizer.delay(cfg)
    if not finishes:
        assert got["stalls"] == 0


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
def test_random(request, cfg, density):
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    flits = random_stream(cfg, rng, 300, density) + dump(cfg)
    got = simulate(cfg, flits, seed=seed, idle=0.3, stall=0.3)
    _check(cfg, flits, got)


def test_zero_stream_never_stalls():
    cfg = CONFIGS["d16a32wrap"]
    flits = [{"op": Opcode.MAC, "addr": a % 4, "addr_b": a % 16, "data": 0} for a in range(64)]
    got = simulate(cfg, flits, stall=0.9)  # the output is almost never ready: no reply needed
    assert got["stalls"] == 0
    assert got["mac_skipped"] == 64 and got["mac_done"] == 0


@pytest.mark.parametrize("cfg", FLOAT_CONFIGS.values(), ids=FLOAT_CONFIGS.keys())
@pytest.mark.parametrize("case", [c for c in (*FLOAT_DIRECTED, "bad_op") if c != "fp_nonlinear"])
def test_float_directed(cfg, case):
    flits = directed(case, cfg) + dump(cfg)
    got = simulate(cfg, flits)
    _check(cfg, flits, got)
    # With no backpressure the input waits only for the bubbles: one per flit that uses the
    # accumulator the flit just before it writes (CoreModel counts them).
    assert got["stalls"] == CoreModel(cfg).run(flits).bubbles


def _fp32(value: float) -> int:
    return int(np.array([value], np.float32).view(np.uint32)[0])


def _data(value: float) -> int:
    """The FP32 word of ``value`` as a ``data`` field carries it (signed)."""
    return int(np.array([value], np.float32).view(np.int32)[0])


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("stall", [0.0, 0.6])
def test_training_operations_by_hand(dtype, stall):
    """GRAD and FINISH_BACK on the RTL alone (no model), against values worked out by hand
    from docs/training.md: every operand and sum exact in FP16, BF16 and FP32."""
    cfg = FLOAT_CONFIGS[dtype]
    fmt = float_format(dtype)

    def h(v):
        return int(fmt.bits(np.array([v], np.float32))[0])

    def w(v):
        word = _fp32(v)
        return word - (1 << 32) if word >> 31 else word

    flits = [{"op": Opcode.WRITE_ACT, "addr": a, "data": h(v)}
             for a, v in ((1, 1.5), (2, -2.0), (3, 0.0), (5, 1.0), (6, -0.0), (7, np.nan))]
    flits += [{"op": Opcode.WRITE_ACC, "addr": 0, "data": w(2.5)},
              {"op": Opcode.WRITE_ACC, "addr": 1, "data": w(-1.0)},
              {"op": Opcode.GRAD, "addr": 1, "addr_b": 2, "data": w(0.25)},    # -2.75
              {"op": Opcode.GRAD, "addr": 1, "addr_b": 3, "data": w(7.0)},     # 7 (skipped)
              {"op": Opcode.GRAD, "addr": 2, "addr_b": 2, "data": w(-0.0)},    # 4
              {"op": Opcode.WRITE_ACT, "addr": 4, "data": h(3.0)},
              {"op": Opcode.GRAD, "addr": 4, "addr_b": 1, "data": w(1.0)},     # 5.5
              {"op": Opcode.FINISH_BACK, "addr": 0, "addr_b": 5, "data": 9},   # 2.5
              {"op": Opcode.FINISH_BACK, "addr": 1, "addr_b": 5},              # -1
              {"op": Opcode.FINISH_BACK, "addr": 0, "addr_b": 6},              # +0
              {"op": Opcode.FINISH_BACK, "addr": 0, "addr_b": 7},              # +0
              {"op": Opcode.MAC, "addr": 0, "addr_b": 1, "data": h(2.0)},      # acc 5.5
              {"op": Opcode.FINISH_BACK, "addr": 0, "addr_b": 1}]              # 5.5
    got = simulate(cfg, flits, seed=3, stall=stall)
    want = [(Opcode.GRAD, 1, 2, _fp32(-2.75)), (Opcode.GRAD, 1, 3, _fp32(7.0)),
            (Opcode.GRAD, 2, 2, _fp32(4.0)), (Opcode.GRAD, 4, 1, _fp32(5.5)),
            (Opcode.WRITE_ACT, 5, 0, h(2.5)), (Opcode.WRITE_ACT, 5, 0, h(-1.0)),
            (Opcode.WRITE_ACT, 6, 0, 0), (Opcode.WRITE_ACT, 7, 0, 0),
            (Opcode.WRITE_ACT, 1, 0, h(5.5))]
    assert [(o["op"], o["addr"], o["addr_b"], o["data"] & 0xFFFFFFFF)
            for o in got["outputs"]] == want
    assert got["tags"][4] == 9 and got["error"] == 0


@pytest.mark.parametrize("op", [Opcode.GRAD, Opcode.FINISH_BACK])
def test_integer_cores_do_not_train(op):
    """GRAD and FINISH_BACK are float operations: an integer core consumes them with no
    effect, raises the sticky error and emits nothing but the READ's reply."""
    cfg = CONFIGS["d16a32wrap"]
    flits = [{"op": Opcode.WRITE_ACT, "addr": 1, "data": 3},
             {"op": Opcode.WRITE_ACC, "addr": 1, "data": 40},
             {"op": op, "addr": 1, "addr_b": 1, "data": 5},
             {"op": Opcode.READ_ACC, "addr": 1}]
    got = simulate(cfg, flits)
    assert got["error"] == 1
    assert [(o["op"], o["data"]) for o in got["outputs"]] == [(Opcode.REPLY, 40)]
    _check(cfg, flits, got)


@pytest.mark.parametrize("cfg", FLOAT_CONFIGS.values(), ids=FLOAT_CONFIGS.keys())
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
def test_float_random(request, cfg, density):
    """Float words of mixed kinds and magnitudes, every operation, idle input and 30%
    backpressure."""
    seed = seed_for(request)
    flits = random_stream(cfg, np.random.default_rng(seed), 300, density) + dump(cfg)
    got = simulate(cfg, flits, seed=seed, idle=0.3, stall=0.3)
    _check(cfg, flits, got)


@pytest.mark.parametrize("cfg", FLOAT_CONFIGS.values(), ids=FLOAT_CONFIGS.keys())
def test_float_full_rate(request, cfg):
    seed = seed_for(request)
    flits = random_stream(cfg, np.random.default_rng(seed), 400, 0.8) + dump(cfg)
    got = simulate(cfg, flits)
    _check(cfg, flits, got)
    assert got["stalls"] == CoreModel(cfg).run(flits).bubbles


@pytest.mark.parametrize("cfg", FLOAT_CONFIGS.values(), ids=FLOAT_CONFIGS.keys())
def test_float_throughput(cfg):
    """Nonzero MACs into two accumulators in turn: one per cycle; into one accumulator: one
    bubble after each (the FP32 adder's two stages); a zero MAC in a run: no bubble, and none
    for the MAC after it (every third weight zero: 13 bubbles in 40). (A dump
    follows each stream, so that a bubble after the last MAC shows as a wait too.)"""
    fmt = float_format(cfg.dtype)
    w = int(fmt.bits(np.float32(1.5)))
    head = [{"op": Opcode.WRITE_ACT, "addr": a, "data": w if a else 0} for a in range(4)]
    runs = {
        0: [{"op": Opcode.MAC, "addr": k % 2, "addr_b": 1 + k % 3, "data": w} for k in range(40)],
        39: [{"op": Opcode.MAC, "addr": 0, "addr_b": 1 + k % 3, "data": w} for k in range(40)],
        13: [{"op": Opcode.MAC, "addr": 0, "addr_b": 1 + k % 3, "data": w * (k % 3 > 0)}
             for k in range(40)],
    }
    for bubbles, run in runs.items():
        flits = head + run + dump(cfg)
        got = simulate(cfg, flits)
        _check(cfg, flits, got)
        assert got["stalls"] == CoreModel(cfg).run(flits).bubbles == bubbles


# -- without the hand-off unit (handoff = false) ------------------------------------------------


@pytest.mark.parametrize(("cfg", "case"), [
    pytest.param(cfg, case, id=f"{name}-{case}") for name, cfg in NO_HANDOFF_CONFIGS.items()
    for case in directed_cases(cfg)])
def test_no_handoff_directed(cfg, case):
    """Every directed case of the format, their SET / FINISH flits left out, and
    ``handoff_off`` (SET and FINISH among other operations), against the model; the
    ``handoff_off`` case raises the error and emits nothing for them."""
    flits = directed(case, cfg) + dump(cfg)
    got = simulate(cfg, flits)
    _check(cfg, flits, got)
    assert got["stalls"] == CoreModel(cfg).run(flits).bubbles
    if case == "handoff_off":
        assert got["error"] == 1
        assert not any(o["op"] is Opcode.WRITE_ACT for o in got["outputs"])


@pytest.mark.parametrize("cfg", NO_HANDOFF_CONFIGS.values(), ids=NO_HANDOFF_CONFIGS.keys())
def test_no_handoff_random(request, cfg):
    """A random stream (no SET / FINISH in it) with idle input and backpressure."""
    seed = seed_for(request)
    flits = random_stream(cfg, np.random.default_rng(seed), 300, 0.5) + dump(cfg)
    assert not any(f["op"] in (Opcode.SET, Opcode.FINISH) for f in flits)
    got = simulate(cfg, flits, seed=seed, idle=0.3, stall=0.3)
    _check(cfg, flits, got)
    assert got["error"] == 0


@pytest.mark.parametrize("dtype", ["int16", "fp16"])
@pytest.mark.parametrize("op", [Opcode.SET, Opcode.FINISH])
def test_set_and_finish_raise_error_without_the_unit(dtype, op):
    """On the RTL alone (no model): a SET or a FINISH raises the sticky error and emits
    nothing on a core without the hand-off unit, and the accumulator is unchanged; the same
    flits on a core with it raise no error (and FINISH emits its WRITE_ACT)."""
    flits = [{"op": Opcode.WRITE_ACC, "addr": 3, "data": 40},
             {"op": op, "addr": 3 if op is Opcode.FINISH else 0, "addr_b": 5, "data": 2},
             {"op": Opcode.READ_ACC, "addr": 3}]
    for handoff in (False, True):
        got = simulate(Config(dtype=dtype, act_depth=16, acc_depth=16, handoff=handoff), flits)
        ops = [o["op"] for o in got["outputs"]]
        assert got["error"] == (not handoff)
        assert ops == ([Opcode.WRITE_ACT] if handoff and op is Opcode.FINISH else []) + \
            [Opcode.REPLY]
        assert got["outputs"][-1]["data"] == 40


# -- with the nonlinear unit (nonlinear = true) -------------------------------------------------


@pytest.mark.parametrize(("cfg", "stall"), [
    pytest.param(NONLINEAR_CONFIGS["fp16nl"], 0.0, id="fp16nl"),
    pytest.param(NONLINEAR_CONFIGS["bf16nl"], 0.5, id="bf16nl-backpressure",
                 marks=pytest.mark.slow)])
def test_nonlinear_directed(cfg, stall):
    """NONLINEAR on special words, range edges, junk function bits, back to back and beside
    MACs (``fp_nonlinear``), against the model; without backpressure the input waits
    exactly the model's bubbles: the unit's cycles per NONLINEAR plus the hazards."""
    flits = directed("fp_nonlinear", cfg) + dump(cfg)
    got = simulate(cfg, flits, stall=stall, seed=7)
    _check(cfg, flits, got)
    assert got["error"] == 0
    if not stall:
        assert got["stalls"] == CoreModel(cfg).run(flits).bubbles


@pytest.mark.parametrize("cfg", NONLINEAR_CONFIGS.values(), ids=NONLINEAR_CONFIGS.keys())
def test_nonlinear_random(request, cfg):
    """A random stream of every operation of the core, NONLINEAR among them, with idle input
    and backpressure."""
    seed = seed_for(request)
    flits = random_stream(cfg, np.random.default_rng(seed), 250, 0.5) + dump(cfg)
    assert sum(f["op"] is Opcode.NONLINEAR for f in flits) >= 3, seed
    got = simulate(cfg, flits, seed=seed, idle=0.3, stall=0.3)
    _check(cfg, flits, got)


def test_nonlinear_by_hand():
    """On the RTL against values computed here in float64 (no model), within the documented
    bounds (docs/nonlinear.md: exp and the reciprocal 2 ulp, rsqrt and GELU 4): exp(0) = 1,
    1 / 3, 1 / sqrt(2), GELU(1), exp(-inf) = +0; MUL 1.5 x -3 = -4.5 and the smallest normal
    halved (a subnormal), MAX of 2 and 5, of -inf and -7, of 1 and NaN (exact); and the
    core's input waits the unit's cycles (exp 59, reciprocal 21, rsqrt 31, GELU 187, MUL 3,
    MAX 7: 1 + 2 x 29, 10, 15, 93, 1, 3 steps)."""
    cfg = NONLINEAR_CONFIGS["fp16nl"]
    gelu1 = 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (1 + 0.044715)))
    nl, mul, mx = Opcode.NONLINEAR, Opcode.MUL, Opcode.MAX
    cases = [(0.0, nl, 0, 1.0, 2, 59), (3.0, nl, 1, 1 / 3, 2, 21),
             (2.0, nl, 2, 1 / np.sqrt(2), 4, 31), (1.0, nl, 3, gelu1, 4, 187),
             (-np.inf, nl, 0, 0.0, 0, 59), (1.5, mul, _data(-3.0), -4.5, 0, 3),
             (2.0 ** -126, mul, _data(0.5), 2.0 ** -127, 0, 3),
             (2.0, mx, _data(5.0), 5.0, 0, 7),
             (-np.inf, mx, _data(-7.0), -7.0, 0, 7), (1.0, mx, _data(np.nan), np.nan, 0, 7)]
    for x, op, data, want, ulps, cycles in cases:
        # (a flit between the write and the operation: no accumulator hazard, no bubble)
        word = int(np.array([x], np.float32).view(np.int32)[0])  # as data carries it
        flits = [{"op": Opcode.WRITE_ACC, "addr": 5, "data": word},
                 {"op": Opcode.READ_ACC, "addr": 9, "data": 9},
                 {"op": op, "addr": 5, "data": data}] + \
            [{"op": Opcode.READ_ACC, "addr": k, "data": k} for k in range(4)] + \
            [{"op": Opcode.READ_ACC, "addr": 5}]
        got = simulate(cfg, flits)
        assert abs((got["outputs"][-1]["data"] & 0xFFFFFFFF) - _fp32(want)) <= ulps, \
            (x, op, data)
        assert got["stalls"] == cycles, (x, op, data)
        assert got["error"] == 0


def _mutant_unit(wire):
    """An FpNonlinear whose inner unit is wired by ``wire(unit, outer)`` instead."""
    from amaranth.hdl import Module

    from wafertile.hdl.core.nonlinear import NonlinearUnit
    from wafertile.hdl.core.units import FpNonlinear

    class Mutant(FpNonlinear):
        def elaborate(self, platform):
            m = Module()
            m.submodules.nonlinear = unit = NonlinearUnit(stages=self.STAGES)
            m.d.comb += [unit.start.eq(self.start), unit.x.eq(self.a), *wire(unit, self),
                         self.ready.eq(unit.ready), self.done.eq(unit.done),
                         self.o.eq(unit.o)]
            return m
    return Mutant


@pytest.mark.parametrize("mutation", ["function from data", "operand is the accumulator"])
def test_a_wrong_wiring_of_the_unit_is_caught(mutation):
    """Mutations the directed case must catch: MUL and MAX run the function of data's low
    bits, as NONLINEAR does (the core's choice of function lost), or their second operand is
    the accumulator instead of data."""
    wire = {"function from data": lambda u, o: [u.func.eq(o.b[:2]), u.d.eq(o.b)],
            "operand is the accumulator": lambda u, o: [u.func.eq(o.func), u.d.eq(o.a)]}
    cfg = NONLINEAR_CONFIGS["fp16nl"]
    case = directed("fp_nonlinear", cfg)
    first = next(k for k, f in enumerate(case) if f["op"] is Opcode.MUL) - 1  # its WRITE_ACC
    flits = [f for f in case[first:] if f["op"] is not Opcode.NONLINEAR][::4][:80]
    assert {Opcode.MUL, Opcode.MAX} <= {f["op"] for f in flits}
    got = simulate(cfg, flits + dump(cfg), units={"nonlinear": _mutant_unit(wire[mutation])})
    with pytest.raises(AssertionError):
        _check(cfg, flits + dump(cfg), got)


# fp16 by default, bf16 with --run-slow (the same control: the unit's rows are format-free)
@pytest.mark.parametrize("dtype", ["fp16", pytest.param("bf16", marks=pytest.mark.slow)])
def test_nonlinear_is_unknown_without_the_unit(dtype):
    """With ``nonlinear = false`` (the default) NONLINEAR raises the sticky error, leaves the
    accumulator as it was and holds nothing."""
    for op, data, want in ((Opcode.NONLINEAR, 1, 0.5), (Opcode.MUL, _data(3.0), 6.0),
                           (Opcode.MAX, _data(9.0), 9.0)):
        flits = [{"op": Opcode.WRITE_ACC, "addr": 3, "data": _fp32(2.0)},
                 {"op": op, "addr": 3, "data": data},
                 {"op": Opcode.READ_ACC, "addr": 3}]
        got = simulate(Config(dtype=dtype, act_depth=16, acc_depth=16), flits)
        assert got["error"] == 1 and got["stalls"] == 0, op
        assert [o["data"] for o in got["outputs"]] == [_fp32(2.0)], op
        cfg = Config(dtype=dtype, act_depth=16, acc_depth=16, nonlinear=True)
        got = simulate(cfg, flits)
        _check(cfg, flits, got)
        assert got["error"] == 0 and abs(got["outputs"][0]["data"] - _fp32(want)) <= 2, op


def test_iterative_units_are_checked():
    """An iterative unit's operation must read and write its accumulator and emit nothing,
    in a core that iterates (the float core); the integer core has none."""
    from wafertile.hdl.core.ops import Op

    bad = OPS.with_rows(Op("NONLINEAR", 12, unit="nonlinear", acc_write="unit",
                           data="function", option="nonlinear", formats=frozenset({"float"})))
    cfg = NONLINEAR_CONFIGS["fp16nl"]
    with pytest.raises(ValueError, match="reads and writes its accumulator"):
        FpMacCore(cfg, bad)
    from wafertile.hdl.core.units import FpNonlinear
    with pytest.raises(ValueError, match="no iterative units"):
        MacCore(Config(), OPS.with_rows(Op("X", 13, acc_read=True, unit="x",
                                              acc_write="unit")), {"x": FpNonlinear})
    # a row's function must be one its unit has, and only an iterative unit runs one
    with pytest.raises(ValueError, match="FpNonlinear has no function 'tanh'"):
        FpMacCore(cfg, OPS.with_rows(Op("X", 15, acc_read=True, unit="nonlinear",
                                        acc_write="unit", data="value", function="tanh",
                                        option="nonlinear", formats=frozenset({"float"}))))
    with pytest.raises(ValueError, match="only an iterative unit runs a function"):
        FpMacCore(cfg, OPS.with_rows(Op("X", 15, acc_read=True, unit="add",
                                        acc_write="unit", data="value", function="mul")))


def _top_ports(text: str, top: str) -> list[str]:
    """The input / output declarations of module ``top`` in Verilog ``text``."""
    body = text[text.index(f"module {top}("):]
    body = body[:body.index("endmodule")]
    return re.findall(r"^\s*((?:input|output)\b.*);$", body, re.M)


# one format of each core by default, the other two with --run-slow
@pytest.mark.parametrize("dtype", ["int16", pytest.param("int8", marks=pytest.mark.slow),
                                   "fp16", pytest.param("bf16", marks=pytest.mark.slow)])
def test_handoff_false_leaves_the_unit_out(dtype):
    """Without the hand-off unit the core and the tile have the same ports, and the core's
    Verilog has no requantization (int: no MULT / SHIFT / RELU registers, no step counter,
    and one multiplier either way: the unit multiplies on the MAC's; float: no RELU register,
    no FP32-to-format rounding)."""
    on, off = Config(dtype=dtype), Config(dtype=dtype, handoff=False)
    blocks = [("mac", "wafertile_mac")] + [("tile", "wafertile_tile")] * (dtype in ("int16",
                                                                               "fp16"))
    for block, top in blocks:
        ports = [_top_ports(verilog_text(block, cfg), top) for cfg in (on, off)]
        assert ports[0] == ports[1] and len(ports[0]) > 10, block
    text = {cfg.handoff: verilog_text("mac", cfg) for cfg in (on, off)}
    regs = [r"reg relu\b"] if on.is_float else [r"reg \[14:0\] mult\b", r"reg \[\d+:0\] shift\b",
                                               r"reg relu\b"]
    for reg in regs:
        assert re.search(reg, text[True]) and not re.search(reg, text[False]), reg
    if on.is_float:
        assert "to_half" in text[True] and "to_half" not in text[False]
    else:
        assert (text[True].count(" * "), text[False].count(" * ")) == (1, 1)
        assert re.search(r"reg \[\d+:0\] step\b", text[True]) and " step" not in text[False]
    assert len(text[False]) < len(text[True])


def test_rejects_non_config():
    with pytest.raises(TypeError, match=r"^MacCore config must be a Config, not 3$"):
        MacCore(3)
    with pytest.raises(TypeError, match=r"^TileCore config must be a Config, not 'x'$"):
        TileCore("x")


def test_cores_of_the_other_number_format_are_refused():
    with pytest.raises(TypeError, match=r"^MacCore is the integer core, not for dtype 'fp16' "
                                        r"\(use FpMacCore, or make_mac_core to pick by the "
                                        r"configuration\)$"):
        MacCore(Config(dtype="fp16"))
    with pytest.raises(TypeError, match=r"^FpMacCore needs a floating-point dtype \('fp16' or "
                                        r"'bf16'\), not 'int8' \(MacCore is the integer "
                                        r"core\)$"):
        FpMacCore(Config(dtype="int8"))


def _requantizer_outputs(cfg: Config, acc, mult, shift, relu) -> list[int]:
    """The hand-off unit alone (:class:`Requantizer`) on each accumulator and registers, its
    multiplier played by the bench (the MAC's: the product register loads ``mul_a * mul_b``
    at a clock edge while ``mul_en``), which a MAC takes (not ``free``) in one cycle of
    three. Also checks the unit's timing: it multiplies once per limb, only when free; it
    offers its activation ``delay`` cycles after the start plus one per cycle the multiplier
    was not free before its last multiply, whatever its inputs do meanwhile (it works on
    copies); it holds the activation until ``ready``."""
    unit = Requantizer(cfg)
    got: list[int] = []

    async def bench(ctx):
        product = 0
        cycle = 0
        for values in zip(acc, mult, shift, relu, strict=True):
            members = (unit.acc, unit.mult, unit.shift, unit.relu)
            for member, value in zip(members, values, strict=True):
                ctx.set(member, int(value))
            ctx.set(unit.start, 1)
            seen = []  # per cycle after the start: (free, multiplied)
            while True:
                await ctx.tick()
                ctx.set(unit.product, product)  # the register loaded at this edge
                ctx.set(unit.start, 0)
                for member in members:
                    ctx.set(member, 0)
                cycle += 1
                free = cycle % 3 != 0
                ctx.set(unit.free, free)
                if ctx.get(unit.valid):
                    break
                loads = bool(ctx.get(unit.mul_en))
                assert free or not loads, "it multiplied on a busy multiplier"
                seen.append((free, loads))
                if loads:  # into the product register at the coming edge
                    product = ctx.get(unit.mul_a) * ctx.get(unit.mul_b)
                assert len(seen) < 4 * Requantizer.delay(cfg), "the unit never offers"
            muls = [k for k, (_, loads) in enumerate(seen) if loads]
            assert len(muls) == limbs(cfg.acc_width)
            waited = sum(not free for free, _ in seen[:muls[-1]])
            assert len(seen) + 1 == Requantizer.delay(cfg) + waited  # valid in the next
            got.append(ctx.get(unit.o))
            await ctx.tick()  # not ready: the activation stays
            assert ctx.get(unit.valid) and ctx.get(unit.active)
            ctx.set(unit.ready, 1)
            await ctx.tick()
            ctx.set(unit.ready, 0)
            assert not ctx.get(unit.active)

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize(("dw", "aw"), [(16, 32), (8, 16), (8, 18), (8, 19), (8, 40)])
def test_requantizer_on_the_shared_multiplier(request, dw, aw):
    """The hand-off unit's limbs on the MAC's multiplier and its rounding from the product's
    register equal the reference's requantization (``docs/architecture.md``) bit for bit:
    ties both ways at small shifts, the accumulator's extremes, MULT 0, 1 and its maximum,
    every shift the register holds, seeded random values."""
    cfg = Config(data_width=dw, acc_width=aw)
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    n = 240
    lo, hi = cfg.acc_min, cfg.acc_max
    shift_bits = Requantizer.registers(cfg)[Reg.SHIFT][0]
    acc = rng.integers(lo, hi + 1, n)
    corners = [0, 1, -1, 2, -2, 3, -3, 5, -5, 7, -7, hi, lo, hi - 1, lo + 1, 1 << 16,
               -(1 << 16), (1 << 17) - 1, -(1 << 17)]
    corners = [c for c in corners if lo <= c <= hi]
    acc[:len(corners)] = corners
    mult = rng.integers(0, 1 << MULT_WIDTH, n)
    mult[:len(corners)] = 1
    mult[len(corners):len(corners) + 6] = [0, 0, (1 << MULT_WIDTH) - 1] * 2
    shift = rng.integers(0, 1 << shift_bits, n)
    shift[:len(corners)] = rng.integers(0, 4, len(corners))
    shift[-8:] = [0, 1, (1 << shift_bits) - 1, 2, 0, 1, 3, 4]
    relu = rng.integers(0, 2, n)
    want = requantize(acc, mult, shift, relu, cfg)
    got = np.array(_requantizer_outputs(cfg, acc, mult, shift, relu))
    bad = np.flatnonzero(got != want)
    assert not len(bad), [(int(acc[i]), int(mult[i]), int(shift[i]), int(relu[i]),
                           int(want[i]), int(got[i])) for i in bad[:5]]


@pytest.mark.parametrize("nonlinear", [True, False])
def test_send_picks_its_output_op(nonlinear):
    """SEND's output on a float core with the nonlinear unit: the two data bits above the
    route pick ADD, MUL, MAX or WRITE_ACC (docs/architecture.md), with the route below them
    echoed on the tag; without the unit the output is ADD whatever those bits hold. Checked
    against the opcodes written here, not the model."""
    cfg = NONLINEAR_CONFIGS["fp16nl"] if nonlinear else \
        Config(dtype="fp16", act_depth=32, acc_depth=32)
    route = encode_route(cfg, x=1, y=2, exit=Port.EAST, vc=1)
    picks = [Opcode.ADD, Opcode.MUL, Opcode.MAX, Opcode.WRITE_ACC]
    flits = [{"op": Opcode.WRITE_ACC, "addr": 6, "data": _data(-2.5)}]
    for k in range(4):
        flits.append({"op": Opcode.SEND, "addr": 6, "addr_b": 20 + k,
                      "data": route | k << cfg.route_width})
    # a tag with every bit above the choice set as well (the signed field): MAX's pick
    flits.append({"op": Opcode.SEND, "addr": 6, "addr_b": 30,
                  "data": -(1 << 31) | route | 2 << cfg.route_width})
    got = simulate(cfg, flits)
    want = [p if nonlinear else Opcode.ADD for p in (*picks, Opcode.MAX)]
    assert [Opcode(o["op"]) for o in got["outputs"]] == want
    assert [(o["addr"], o["addr_b"], o["data"]) for o in got["outputs"]] == \
        [(20 + k, 6, _data(-2.5)) for k in range(4)] + [(30, 6, _data(-2.5))]
    assert [t & ((1 << cfg.route_width) - 1) for t in got["tags"]] == [route] * 5
    assert got["error"] == 0
    _check(cfg, flits, got)


def test_a_send_that_ignores_its_pick_is_caught():
    """Mutation: a core built from a table whose SEND has no choices (always ADD) fails
    against the model on the directed case."""
    from wafertile.formal.mutations import send_without_pick

    table = send_without_pick(OPS)
    cfg = NONLINEAR_CONFIGS["bf16nl"]
    flits = [f for f in directed("fp_nonlinear", cfg) if f["op"] is not Opcode.NONLINEAR]
    assert any(f["op"] is Opcode.SEND for f in flits)
    got = simulate(cfg, flits, ops=table)
    with pytest.raises(AssertionError):
        _check(cfg, flits, got)


def test_finish_emits_a_mac_by_hand():
    """On the RTL alone (no model): with the nonlinear unit, a FINISH whose pick bit is set
    emits a MAC ``{addr: addr_b, addr_b: the act field, data: to_half(acc)}`` (the activation
    as the weight), without it the WRITE_ACT with ``addr_b`` = the act field; the tag (the
    request's data) carries the rows for the tile. A core without the unit ignores the bits
    above the hand-off: a WRITE_ACT with ``addr_b`` 0."""
    cfg = NONLINEAR_CONFIGS["fp16nl"]
    half = int(float_format("fp16").bits(np.float32([1.5]))[0])   # 0x3E00
    word = int(np.float32(1.5).view(np.uint32))
    mac = encode_handoff(cfg, x0=0, x1=0, y=0, vc=0, mac=True, act=21)
    plain = encode_handoff(cfg, x0=0, x1=0, y=0, vc=0, act=9)
    flits = [{"op": Opcode.WRITE_ACC, "addr": 3, "data": word},
             {"op": Opcode.FINISH, "addr": 3, "addr_b": 5, "data": mac},
             {"op": Opcode.FINISH, "addr": 3, "addr_b": 6, "data": plain}]
    got = simulate(cfg, flits)
    assert [(o["op"], o["addr"], o["addr_b"], o["data"]) for o in got["outputs"]] == [
        (Opcode.MAC, 5, 21, half), (Opcode.WRITE_ACT, 6, 9, half)]
    assert got["tags"] == [mac & 0xFFFFFFFF, plain & 0xFFFFFFFF]
    without = Config(dtype="fp16", act_depth=32, acc_depth=32)
    got = simulate(without, [flits[0], {**flits[1], "data": mac & 0x7FFFFFFF}])
    assert [(o["op"], o["addr"], o["addr_b"]) for o in got["outputs"]] == [
        (Opcode.WRITE_ACT, 5, 0)]
