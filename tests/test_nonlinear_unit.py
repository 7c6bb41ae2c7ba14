"""The nonlinear unit (``wafertile.hdl.core.nonlinear``): Amaranth's simulator and cocotb on
Verilator and Icarus, each result bit for bit against the numpy reference of
``docs/nonlinear.md`` and each job's cycles against ``1 + steps * stages``; lint; bad
parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from wafertile.hdl.core.nonlinear import FUNCTIONS, OPCODES, UNARY, NonlinearUnit, cycles
from wafertile.hdl.core.ops import OPS
from wafertile.hdl.core.programs import PROGRAMS
from wafertile.hdl.core.units import FpNonlinear
from wafertile.sim.models import nonlinear as nl
from wafertile.sim.runner import LINT_WAIVERS, run_cocotb
from wafertile.sim.tb.nonlinear import SPECIAL, special_pairs
from wafertile.sim.toolchain import run_verilator_lint

from .conftest import seed_for

TOP = "wafertile_nonlinear"


def run_jobs(dut: NonlinearUnit, jobs, rng) -> tuple[list[int], list[int]]:
    """Start each ``(function, x, d)`` when the unit is ready, after 0-2 idle cycles, with junk
    starts while it is busy; returns the results and each job's cycles from start to done."""
    results, latency = [], []

    async def bench(ctx):
        for f, x, d in jobs:
            for _ in range(int(rng.integers(0, 3))):
                await ctx.tick()
            assert ctx.get(dut.ready)
            ctx.set(dut.start, 1)
            ctx.set(dut.func, f)
            ctx.set(dut.x, int(x))
            ctx.set(dut.d, int(d))
            await ctx.tick()
            n = 1
            while not ctx.get(dut.done):
                junk = rng.random() < 0.3     # must be ignored: the unit is busy
                ctx.set(dut.start, int(junk))
                ctx.set(dut.func, int(rng.integers(len(FUNCTIONS))))
                ctx.set(dut.x, int(rng.integers(0, 1 << 32)))
                ctx.set(dut.d, int(rng.integers(0, 1 << 32)))
                assert not ctx.get(dut.ready)
                await ctx.tick()
                n += 1
            ctx.set(dut.start, 0)
            results.append(ctx.get(dut.o))
            latency.append(n)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results, latency


@pytest.mark.parametrize("stages", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_every_function_in_amaranth(request, stages):
    """Per function: the special words and 12 random ones (Amaranth's simulator runs a few
    hundred cycles a second here; the volume is in the cocotb tests)."""
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    jobs = []
    for f, name in enumerate(FUNCTIONS):
        words = rng.integers(0, 1 << 32, 24, dtype=np.uint64).astype(np.uint32).tolist()
        if name in UNARY:
            specials = SPECIAL if stages == 1 else SPECIAL[::3]
            jobs += [(f, w, 0) for w in [*specials, *words[:12]]]
        else:  # the special pairs, and random pairs
            pairs = special_pairs() if stages == 1 else special_pairs()[::3]
            jobs += [(f, x, d) for x, d in [*pairs, *zip(words[:12], words[12:], strict=True)]]
    got, latency = run_jobs(NonlinearUnit(stages=stages), jobs, rng)
    for (f, x, d), o, n in zip(jobs, got, latency, strict=True):
        name = FUNCTIONS[f]
        want = int(nl.reference(name, np.array([x], np.uint32), np.array([d], np.uint32))[0])
        assert o == want, (f"{name}({x:#010x}, {d:#010x}) = {o:#010x}, reference {want:#010x} "
                           f"(seed {seed})")
        assert n == 1 + len(PROGRAMS[name].steps) * stages == cycles(name, stages)


def test_functions_opcodes_and_the_document():
    assert FUNCTIONS == ("exp", "reciprocal", "rsqrt", "gelu", "gelu_grad", "mul", "max")
    assert FUNCTIONS[:5] == UNARY   # NONLINEAR's data[2:0] numbers the first five
    nonlinear = OPS["NONLINEAR"]    # ... and 5 to 7 are the fifth, bits above them ignored
    assert list(FpNonlinear.function(nonlinear, np.arange(16))) == [0, 1, 2, 3, 4, 4, 4, 4] * 2
    used = {s.op for p in PROGRAMS.values() for s in p.steps}
    assert used == set(OPCODES)   # no operation the programs do not use
    text = (Path(__file__).resolve().parents[1] / "docs" / "nonlinear.md").read_text()
    for name in FUNCTIONS:
        row = f"| {name} | {cycles(name, 1)} | {cycles(name, 2)} |"
        assert row in text, f"docs/nonlinear.md lacks the row {row!r}"


@pytest.mark.parametrize("stages", [1, 2])
def test_lints_clean(tmp_path, stages):
    """The unit's Verilog, and with it FpMul("fp32"), which no tile holds yet."""
    path = tmp_path / "unit.v"
    path.write_text(verilog.convert(NonlinearUnit(stages=stages), name=TOP))
    out = run_verilator_lint([path], TOP, waivers=[f"-Wno-{w}" for w in LINT_WAIVERS])
    assert "%Warning" not in out and "%Error" not in out, out


@pytest.mark.parametrize("stages", [3, 0, "2", True])
def test_rejects_bad_stages(stages):
    with pytest.raises(TypeError, match=rf"^NonlinearUnit stages must be 1 or 2, not "
                                        rf"{stages!r}$"):
        NonlinearUnit(stages=stages)


# cocotb, all with --run-slow: the default run has the unit at stages 2 inside the float core
# on both simulators (tests/test_core_cocotb.py::test_nonlinear) and both stages in Amaranth's
# simulator here; Verilator takes two minutes of build, then is fast (5 000 jobs)
@pytest.mark.parametrize(("sim", "stages", "jobs"), [
    pytest.param("icarus", 1, 300, id="icarus-s1", marks=pytest.mark.slow),
    pytest.param("icarus", 2, 300, id="icarus-s2", marks=pytest.mark.slow),
    pytest.param("verilator", 1, 5000, id="verilator-s1", marks=pytest.mark.slow),
    pytest.param("verilator", 2, 2000, id="verilator-s2", marks=pytest.mark.slow)])
def test_unit_cocotb(request, sim_env, build_root, stages, jobs):
    build = build_root / f"nonlinear-s{stages}-{sim_env}"
    build.mkdir(parents=True, exist_ok=True)
    source = build / "nonlinear.v"
    source.write_text(verilog.convert(NonlinearUnit(stages=stages), name=TOP))
    run_cocotb(sim=sim_env, sources=[source], top=TOP, test_module="wafertile.sim.tb.nonlinear",
               build_dir=build, testcase="random_jobs",
               extra_env={"WAFERTILE_SEED": str(seed_for(request)),
                          "WAFERTILE_STAGES": str(stages), "WAFERTILE_JOBS": str(jobs)})
