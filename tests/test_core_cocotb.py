"""cocotb regressions of the generated tile core on Verilator and Icarus (sim/tb/core.py):
integer cores, and floating-point cores (fp16, bf16) with their own directed cases."""

from __future__ import annotations

import json

import pytest

from wafertile import Config
from wafertile.hdl.generate import emit
from wafertile.sim.runner import run_cocotb
from wafertile.sim.stimulus import directed_cases

from .conftest import seed_for, sim_cases

CONFIGS = {
    # the default tile (16-bit data, 32-bit wrap) with small banks to keep dumps short
    "d16a32wrap": Config(act_depth=64, acc_depth=64),
    # 8-bit data, narrow saturating accumulators, unequal bank depths
    "d8a16sat": Config(data_width=8, acc_width=16, overflow="saturate", act_depth=32,
                       acc_depth=64),
}

#: Floating-point cores (FpMacCore), banks deep enough for the directed cases' addresses.
FLOAT_CONFIGS = {
    "fp16": Config(dtype="fp16", act_depth=64, acc_depth=64),
    "bf16": Config(dtype="bf16", act_depth=64, acc_depth=32),
}
#: The float cores' directed cocotb tests, run together in one simulator process per core.
FLOAT_TESTS = [*directed_cases(FLOAT_CONFIGS["fp16"]), "zero_stream_never_stalls", "full_rate"]

#: A float core with the nonlinear unit (nonlinear = true: NONLINEAR, docs/nonlinear.md), and
#: its tests in one simulator process: NONLINEAR's directed case, full rate (the input waits
#: exactly the model's bubbles: the unit's cycles per NONLINEAR) and a random stream.
NONLINEAR_CONFIGS = {
    "bf16nl": Config(dtype="bf16", act_depth=32, acc_depth=32, nonlinear=True),
}
NONLINEAR_TESTS = ["fp_nonlinear", "full_rate", "random_stream_test"]

DIRECTED = ["overflow", "back_to_back", "zeros", "extremes", "bad_op",
            "zero_stream_never_stalls", "full_rate", "requant"]

#: A core without the hand-off unit (handoff = false: SET and FINISH are unknown opcodes).
NO_HANDOFF_CONFIGS = {
    "d8a24nohandoff": Config(data_width=8, acc_width=24, act_depth=32, acc_depth=32,
                             handoff=False),
}
#: Its cocotb tests, in one simulator process: the directed cases of its format (those of
#: the unit left out, ``handoff_off`` added: SET and FINISH raise the error), full rate and a
#: random stream (no SET / FINISH in it).
NO_HANDOFF_TESTS = [*directed_cases(NO_HANDOFF_CONFIGS["d8a24nohandoff"]), "full_rate",
                    "random_stream_test"]


def _sampled(sim, cfg_name, *_):
    """The default run takes one configuration on Verilator (every one on Icarus)."""
    return sim == "verilator" and cfg_name != "d16a32wrap"


def _run(build_root, sim, cfg_name, testcase, env):
    cfg = {**CONFIGS, **FLOAT_CONFIGS, **NO_HANDOFF_CONFIGS, **NONLINEAR_CONFIGS}[cfg_name]
    build = build_root / f"core-{cfg_name}-{sim}"
    files = emit("core", cfg, build / "rtl")
    run_cocotb(sim=sim, sources=[files["verilog"]], top="wafertile_core",
               test_module="wafertile.sim.tb.core", build_dir=build, testcase=testcase,
               extra_env={"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()), **env})


@pytest.mark.parametrize(("sim", "cfg_name"), sim_cases(list(CONFIGS), slow=_sampled))
def test_directed(request, sim_env, build_root, cfg_name):
    """Every directed case (DIRECTED), in one simulator process per configuration (cocotb
    names the failing case)."""
    _run(build_root, sim_env, cfg_name, DIRECTED, {"WAFERTILE_SEED": str(seed_for(request))})


#: The densities of the random streams in the default run, per (simulator, configuration);
#: every density with --run-slow.
DENSITY_SAMPLE = {("icarus", "d8a16sat"): (0.0, 1.0),
                  ("icarus", "d16a32wrap"): (0.01, 0.5),
                  ("verilator", "d16a32wrap"): (0.1,)}


def _density_sampled(sim, cfg_name, density):
    return _sampled(sim, cfg_name) or density not in DENSITY_SAMPLE.get((sim, cfg_name), ())


@pytest.mark.parametrize(("sim", "cfg_name", "density"),
                         sim_cases([(c, d) for c in CONFIGS for d in (0.0, 0.01, 0.1, 0.5, 1.0)],
                                   slow=_density_sampled))
def test_random(request, sim_env, build_root, cfg_name, density):
    _run(build_root, sim_env, cfg_name, "random_stream_test", {
        "WAFERTILE_SEED": str(seed_for(request)),
        "WAFERTILE_DENSITY": str(density),
        "WAFERTILE_FLITS": "1500",
    })


@pytest.mark.parametrize(("sim", "cfg_name"), sim_cases(list(CONFIGS), slow=_sampled))
def test_directed_under_backpressure(request, sim_env, build_root, cfg_name):
    """The hazard cases again with idle input and heavy backpressure on the output."""
    _run(build_root, sim_env, cfg_name, "back_to_back", {
        "WAFERTILE_SEED": str(seed_for(request)),
        "WAFERTILE_IDLE": "0.4",
        "WAFERTILE_BACKPRESSURE": "0.6",
    })


@pytest.mark.parametrize(("sim", "cfg_name"), sim_cases(list(NO_HANDOFF_CONFIGS),
                                                        slow=lambda sim, *_: sim == "verilator"))
def test_no_handoff(request, sim_env, build_root, cfg_name):
    """A core without the hand-off unit against the model: SET and FINISH raise the sticky
    error and do nothing else; every other operation as with the unit. (The default run takes
    Icarus; Verilator with --run-slow.)"""
    _run(build_root, sim_env, cfg_name, NO_HANDOFF_TESTS, {
        "WAFERTILE_SEED": str(seed_for(request)),
        "WAFERTILE_DENSITY": "0.3",
        "WAFERTILE_FLITS": "600",
    })


def _float_sampled(sim, cfg_name, *_):
    """The default run takes both float cores on Icarus; on Verilator (a build of its own,
    about 35 s: the core on Verilator is d16a32wrap's sample, the float core on Verilator is
    in every float array test) only with --run-slow."""
    return sim == "verilator"


@pytest.mark.parametrize(("sim", "cfg_name"), sim_cases(list(FLOAT_CONFIGS),
                                                        slow=_float_sampled))
def test_float_directed(request, sim_env, build_root, cfg_name):
    """Every float directed case (signed zeros, subnormals in and out, overflow to infinity,
    NaN in either operand, ties to even, cancellation, runs into one accumulator, the
    hand-off), the bad opcode, the all-zero stream and full rate with exactly the model's
    bubbles, in one simulator run."""
    _run(build_root, sim_env, cfg_name, FLOAT_TESTS, {"WAFERTILE_SEED": str(seed_for(request))})


#: The densities of the float random streams in the default run; both with --run-slow.
FLOAT_DENSITY_SAMPLE = {("icarus", "fp16"): 0.6, ("icarus", "bf16"): 0.1}


@pytest.mark.parametrize(("sim", "cfg_name", "density"),
                         sim_cases([(c, d) for c in FLOAT_CONFIGS for d in (0.1, 0.6)],
                                   slow=lambda sim, c, d: FLOAT_DENSITY_SAMPLE.get((sim, c)) != d))
def test_float_random(request, sim_env, build_root, cfg_name, density):
    """Seeded random float streams of mixed kinds and magnitudes, idle input, backpressure."""
    _run(build_root, sim_env, cfg_name, "random_stream_test", {
        "WAFERTILE_SEED": str(seed_for(request)),
        "WAFERTILE_DENSITY": str(density),
        "WAFERTILE_FLITS": "1500",
    })


@pytest.mark.parametrize(("sim", "cfg_name"), sim_cases(
    list(NONLINEAR_CONFIGS), slow=lambda sim, *_: sim == "verilator"))
def test_nonlinear(request, sim_env, build_root, cfg_name):
    """A core with the nonlinear unit against the model: NONLINEAR on special words, range
    edges and back to back (``fp_nonlinear``), full rate with exactly the model's bubbles,
    and a random stream of every operation with idle input and backpressure. Icarus by
    default, Verilator (a 50 s build) with --run-slow."""
    _run(build_root, sim_env, cfg_name, NONLINEAR_TESTS, {
        "WAFERTILE_SEED": str(seed_for(request)),
        "WAFERTILE_DENSITY": "0.5",
        "WAFERTILE_FLITS": "800",
    })


@pytest.mark.slow
@pytest.mark.parametrize("cfg_name", [*CONFIGS, *FLOAT_CONFIGS, *NONLINEAR_CONFIGS])
@pytest.mark.parametrize("index", range(8))
def test_random_long(request, sim_env, build_root, cfg_name, index):
    """More seeds and longer streams (run with --run-slow)."""
    _run(build_root, sim_env, cfg_name, "random_stream_test", {
        "WAFERTILE_SEED": str(seed_for(request)),
        "WAFERTILE_DENSITY": str([0.02, 0.05, 0.2, 0.3, 0.7, 0.9, 0.15, 0.4][index]),
        "WAFERTILE_FLITS": "20000",
    })


@pytest.mark.parametrize("sim", sim_cases([()], slow=lambda sim: sim == "verilator",
                                          ids=lambda: "nomatch"))
def test_a_test_case_that_matches_nothing_fails(sim_env, build_root):
    """A case name no cocotb test has (a typo, a renamed test) must fail, not pass empty."""
    with pytest.raises(RuntimeError, match=r"^no cocotb test of wafertile\.sim\.tb\.core "
                                           r"matched 'no_such_case': nothing was run"):
        _run(build_root, sim_env, "d16a32wrap", "no_such_case", {})
