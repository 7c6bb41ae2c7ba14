"""cocotb regressions of the emitted router (one ``wafertile_router``) on Verilator and Icarus.

The testbench is sim/tb_noc.py; the expectation is the router's routing rule as the NoC model
implements it. Positions cover the interior, the corners and an edge, so that every edge exit
is exercised.
"""

from __future__ import annotations

import json

import pytest

from wafertile import Config
from wafertile.hdl.generate import emit
from wafertile.sim.runner import run_cocotb

from .conftest import seed_for, sim_cases

CONFIGS = {
    # the default router: 2 VCs x 4 flits, in a 3 x 3 array (so it has an interior position)
    "v2d4": Config(rows=3, cols=3),
    # 3 VCs (a VC field value, 3, that is never valid) with the smallest buffers
    "v3d2": Config(rows=3, cols=3, num_vcs=3, buffer_depth=2, data_width=8, acc_width=16),
    # the parallel micro-architecture in its throughput configuration
    "par-v4d8": Config(rows=3, cols=3, num_vcs=4, buffer_depth=8, router_arch="parallel"),
}
POSITIONS = ["1,1", "0,0", "2,2", "2,0", "0,1"]
#: (config, simulator) pairs in the default run; a Verilator build of the router takes ~1 min
#: (about 55 s of the default run with its three tests: the router on Verilator is in every
#: array test on Verilator; its own bench there runs with --run-slow).
DEFAULT = {("v2d4", "icarus"), ("v3d2", "icarus"), ("par-v4d8", "icarus")}
_emitted: set = set()


def _slow(sim, cfg_name, pos=None, *_):
    """Outside the default (CI) sample: a (config, simulator) pair not in DEFAULT; par-v4d8,
    v3d2 and Verilator away from the interior; v2d4 on Icarus away from the interior and a
    corner (the corner's flits sent back out of an edge port are 8 of the router cover
    group's bins: without it the default run hit 82 of 114, with it 90)."""
    if (cfg_name, sim) not in DEFAULT:
        return True
    if pos is None:
        return False
    keep = 2 if (cfg_name, sim) == ("v2d4", "icarus") else 1
    return pos not in POSITIONS[:keep]


def run(build_root, sim, cfg_name, testcase, env):
    cfg = CONFIGS[cfg_name]
    build = build_root / f"router-{cfg_name}-{sim}"
    verilog = build / "rtl" / "wafertile_router.v"
    if build not in _emitted:  # emit once per session: an unchanged file keeps the build
        emit("router", cfg, build / "rtl")
        _emitted.add(build)
    run_cocotb(sim=sim, sources=[verilog], top="wafertile_router",
               test_module="wafertile.sim.tb.noc", build_dir=build, testcase=testcase,
               extra_env={"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()),
                          "WAFERTILE_KIND": "router", **env})


@pytest.mark.parametrize(("sim", "cfg_name", "pos"),
                         sim_cases([(c, p) for c in CONFIGS for p in POSITIONS], slow=_slow))
def test_every_rectangle(request, sim_env, build_root, cfg_name, pos):
    """Every rectangle x exit x VC on every input, with random backpressure on every output."""
    run(build_root, sim_env, cfg_name, "every_rectangle",
        {"WAFERTILE_POS": pos, "WAFERTILE_SEED": str(seed_for(request)),
         "WAFERTILE_BACKPRESSURE": "0.3"})


@pytest.mark.parametrize(("sim", "cfg_name", "load", "backpressure"),
                         sim_cases([(c, lo, bp) for c in CONFIGS for lo, bp in
                                    ((0.1, 0.0), (1.0, 0.5))],
                                   slow=lambda sim, c, *_: _slow(sim, c)))
def test_random(request, sim_env, build_root, cfg_name, load, backpressure):
    run(build_root, sim_env, cfg_name, "random_traffic",
        {"WAFERTILE_POS": "1,1", "WAFERTILE_SEED": str(seed_for(request)),
         "WAFERTILE_LOAD": str(load), "WAFERTILE_BACKPRESSURE": str(backpressure),
         "WAFERTILE_FLITS": "200"})


# on Icarus in the default run; on Verilator (the router's own build, about 30 s) with
# --run-slow, as the router's other cocotb tests there
@pytest.mark.parametrize(("sim", "pos"), sim_cases(["1,1", "0,2"],
                                                   slow=lambda sim, pos: sim == "verilator"))
def test_zero_load_latency(request, sim_env, build_root, pos):
    run(build_root, sim_env, "v2d4", "zero_load_latency",
        {"WAFERTILE_POS": pos, "WAFERTILE_SEED": str(seed_for(request)),
         "WAFERTILE_FLITS": "40"})
