"""cocotb regressions of the emitted routers-only mesh on Verilator and Icarus (sim/tb_noc.py).

Every local and edge port injects seeded random unicast and multicast flits and takes
deliveries with random per-VC backpressure; the NoC model gives the exact deliveries. A run
fails on any lost, duplicated, misrouted or reordered flit and on a stall (no progress for
``WAFERTILE_STALL`` cycles, reported with the non-empty buffers).

The default run keeps a sample; ``--run-slow`` adds the remaining (mesh, simulator) pairs and
longer, saturating runs over more seeds.
"""

from __future__ import annotations

import json

import pytest

from wafertile import Config
from wafertile.hdl.generate import emit
from wafertile.sim.runner import run_cocotb

from .conftest import seed_for, sim_cases

MESHES = {
    "1x1": Config(rows=1, cols=1),
    "1x4": Config(rows=1, cols=4),
    "3x5": Config(rows=3, cols=5),
    "4x4": Config(rows=4, cols=4, num_vcs=3, buffer_depth=2),
    "3x5-parallel": Config(rows=3, cols=5, num_vcs=4, buffer_depth=8, router_arch="parallel"),
    "3x5-lite4": Config(rows=3, cols=5, buffer_depth=2, router_arch="lite", phits=4),
    "4x4-lite3v3": Config(rows=4, cols=4, num_vcs=3, buffer_depth=2, router_arch="lite",
                          phits=3),
    "1x1-lite4": Config(rows=1, cols=1, buffer_depth=2, router_arch="lite", phits=4),
    "1x3-lite2": Config(rows=1, cols=3, router_arch="lite", phits=2),
    "3x3-lite2s": Config(rows=3, cols=3, buffer_depth=2, router_arch="lite", phits=2,
                         link_slice=True),
    "3x5-voq": Config(rows=3, cols=5, router_arch="voq"),
    "4x4-voq3": Config(rows=4, cols=4, num_vcs=3, buffer_depth=2, router_arch="voq"),
}
#: (mesh, simulator) pairs in the default run (Icarus only: a Verilator build of a mesh takes
#: about a minute, and the router and the array are sampled on Verilator in the default run).
#: (3x5-parallel runs with --run-slow since voq, the other high-throughput router, took its
#: place; parallel keeps its router, array and formal samples.)
DEFAULT = {("1x1", "icarus"), ("1x4", "icarus"), ("3x5", "icarus"), ("4x4", "icarus"),
           ("3x5-lite4", "icarus"), ("3x5-voq", "icarus"), ("3x3-lite2s", "icarus")}
#: Meshes whose random traffic runs with --run-slow only (their zero-load latency stays in
#: the default run; 4x4 saturating, 3x5-lite4 at low load, 3x5-voq and 3x3-lite2s (link
#: slices) saturating keep the random traffic of compact, lite and voq there)
RANDOM_SLOW = {"1x4", "3x5"}
_emitted: set = set()


def run(build_root, sim, mesh, testcase, env):
    cfg = MESHES[mesh]
    build = build_root / f"mesh-{mesh}-{sim}"
    if build not in _emitted:  # emit once per session: an unchanged file keeps the build
        emit("mesh", cfg, build / "rtl")
        _emitted.add(build)
    run_cocotb(sim=sim, sources=[build / "rtl" / "wafertile_mesh.v"], top="wafertile_mesh",
               test_module="wafertile.sim.tb.noc", build_dir=build, testcase=testcase,
               extra_env={"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()),
                          "WAFERTILE_KIND": "mesh", **env})


#: The load of the random traffic each mesh runs in the default run; the other with
#: --run-slow.
DEFAULT_LOADS = {"1x1": (1.0,), "1x4": (1.0,), "3x5": (0.05,), "4x4": (1.0,),
                 "3x5-parallel": (1.0,), "3x5-lite4": (0.05,), "3x5-voq": (1.0,),
                 "3x3-lite2s": (1.0,)}


def _slow(sim, mesh, load=None, *_):
    if load is not None and (load not in DEFAULT_LOADS.get(mesh, (load,))
                             or mesh in RANDOM_SLOW):
        return True
    return (mesh, sim) not in DEFAULT


@pytest.mark.parametrize(("sim", "mesh", "load", "backpressure"),
                         sim_cases([(m, lo, 0.3) for m in MESHES for lo in (0.05, 1.0)],
                                   slow=_slow,
                                   ids=lambda m, lo, _: f"{m}-{'low' if lo < 1 else 'saturating'}"))
def test_random(request, sim_env, build_root, mesh, load, backpressure):
    run(build_root, sim_env, mesh, "random_traffic",
        {"WAFERTILE_SEED": str(seed_for(request)), "WAFERTILE_LOAD": str(load),
         "WAFERTILE_BACKPRESSURE": str(backpressure), "WAFERTILE_FLITS": "25",
         "WAFERTILE_MCAST": "0.3", "WAFERTILE_EXIT": "0.1", "WAFERTILE_STALL": "300"})


@pytest.mark.parametrize(("sim", "mesh"), sim_cases(list(MESHES), slow=_slow))
def test_zero_load_latency(request, sim_env, build_root, mesh):
    """Single flits on an idle mesh arrive one cycle per router traversed."""
    run(build_root, sim_env, mesh, "zero_load_latency",
        {"WAFERTILE_SEED": str(seed_for(request)), "WAFERTILE_FLITS": "25"})


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("index", range(4))
def test_saturation_until_drained(request, sim_env, build_root, mesh, index):
    """Long saturating runs, heavy multicast and backpressure, drained to the last flit."""
    run(build_root, sim_env, mesh, "random_traffic",
        {"WAFERTILE_SEED": str(seed_for(request)), "WAFERTILE_LOAD": "1.0",
         "WAFERTILE_BACKPRESSURE": str([0.0, 0.3, 0.6, 0.8][index]),
         "WAFERTILE_FLITS": "150", "WAFERTILE_MCAST": str([0.1, 0.5, 0.3, 1.0][index]),
         "WAFERTILE_EXIT": "0.15", "WAFERTILE_STALL": "2000"})
