"""cocotb regression of the tile array: compiled sparse layers on the RTL against numpy."""

from __future__ import annotations

import json

import pytest

from wafertile import Config
from wafertile.hdl.generate import verilog_text
from wafertile.sim.runner import run_cocotb

from .conftest import seed_for, sim_cases

CONFIGS = {
    "2x2": Config(rows=2, cols=2, data_width=8, acc_width=16, act_depth=32, acc_depth=16),
    "3x5sat": Config(rows=3, cols=5, data_width=8, acc_width=16, overflow="saturate",
                     act_depth=32, acc_depth=16),
    # small activation banks: every layer with J > 16 is split over K = ceil(J / 16) columns
    # and reduced on the fabric (SEND/ADD)
    "3x5d16": Config(rows=3, cols=5, data_width=8, acc_width=16, act_depth=16, acc_depth=16),
    # the parallel router micro-architecture in its throughput configuration
    "2x3par": Config(rows=2, cols=3, data_width=8, acc_width=16, act_depth=16, acc_depth=16,
                     router_arch="parallel", num_vcs=4, buffer_depth=8),
    # the lite router with 4-phit links (the FPGA configuration's shape)
    "2x3lite4": Config(rows=2, cols=3, data_width=8, acc_width=16, act_depth=16, acc_depth=16,
                       router_arch="lite", phits=4, buffer_depth=2),
    # the voq router: per-output queues, flits to different outputs overtake each other
    # (the reduction's fence relies on the per (input, VC, output) order only)
    "2x3voq": Config(rows=2, cols=3, data_width=8, acc_width=16, act_depth=16, acc_depth=16,
                     router_arch="voq"),
    # floating-point tiles (docs/float.md): layers with J > 16 reduce over K columns, the
    # partial sums added in block order
    "4x4fp16": Config(rows=4, cols=4, dtype="fp16", act_depth=16, acc_depth=16),
    "3x5bf16": Config(rows=3, cols=5, dtype="bf16", act_depth=16, acc_depth=16),
}
#: The layers each configuration runs in the default (CI) run on Icarus (every layer but
#: reduce_passes1 runs on some configuration, every configuration runs a layer); the rest
#: with --run-slow.
SAMPLE = {"2x3par": {"extremes"},
          "2x3voq": {"reduce"},
          "2x3lite4": {"sparse10"},
          "3x5sat": {"passes"},
          "3x5d16": {"reduce_dense"},
          "2x2": {"zero", "uneven", "zero_lines", "passes_groups"},
          "4x4fp16": {"reduce_passes"},
          "3x5bf16": {"reduce_extremes"}}

LAYERS = {
    "dense": {"B": 2, "I": 6, "J": 8, "density": 1.0},
    "sparse10": {"B": 3, "I": 20, "J": 24, "density": 0.1},
    "sparse1": {"B": 2, "I": 60, "J": 32, "density": 0.01},
    "zero_lines": {"B": 3, "I": 15, "J": 24, "density": 0.5, "zero_lines": True},
    "uneven": {"B": 5, "I": 23, "J": 17, "density": 0.3},     # does not divide the array
    "zero": {"B": 2, "I": 8, "J": 8, "density": 0.0},
    "extremes": {"B": 2, "I": 12, "J": 16, "density": 0.5, "extremes": True},
    "passes": {"B": 2, "I": 40, "J": 8, "density": 0.5},      # more outputs than acc_depth
    # passes and batch groups without reduction (2x2: 2 passes x 3 groups)
    "passes_groups": {"B": 5, "I": 40, "J": 12, "density": 0.4},
    # J > act_depth = 32 on 2x2 (K = 2) and > 16 on 3x5d16 (K = 3): on-fabric reduction
    "reduce": {"B": 2, "I": 9, "J": 40, "density": 0.4},
    "reduce_dense": {"B": 3, "I": 5, "J": 37, "density": 1.0},        # J odd, 2 batch groups
    "reduce_passes": {"B": 4, "I": 40, "J": 45, "density": 0.3},      # passes, batch groups
    "reduce_passes1": {"B": 2, "I": 40, "J": 40, "density": 0.3},     # passes, one group
    "reduce_extremes": {"B": 2, "I": 6, "J": 40, "density": 0.7, "extremes": True},
}


def _runs(cfg: Config, layer: dict) -> bool:
    """Whether the compiler accepts the layer's shape on cfg (reduction needs wrap, K <= C)."""
    chunks = -(-layer["J"] // cfg.act_depth)
    return chunks <= cfg.cols and (chunks == 1 or cfg.overflow == "wrap")


#: (config, layer) pairs run on Verilator in the default (CI) run; the rest with --run-slow
#: (each Verilator build of an array takes minutes). None since the training model's tests
#: came (41 s saved): the default run plays arrays on Verilator through the compiled harness
#: (test_harness, test_training_rtl, test_network ...) and the cocotb testbenches on
#: Verilator at the router and the core (test_router_cocotb, test_core_cocotb).
VERILATOR_SAMPLE: set[tuple[str, str]] = set()


def _slow(sim, layer, cfg_name):
    """Outside the default (CI) sample: see SAMPLE and VERILATOR_SAMPLE."""
    if sim == "verilator":
        return (cfg_name, layer) not in VERILATOR_SAMPLE
    return cfg_name in SAMPLE and layer not in SAMPLE[cfg_name]


PAIRS = sim_cases([(layer, cfg_name) for layer in LAYERS for cfg_name in CONFIGS
                   if _runs(CONFIGS[cfg_name], LAYERS[layer])], slow=_slow)


def _sources(build, cfg):
    build.mkdir(parents=True, exist_ok=True)
    path = build / "wafertile_array.v"
    text = verilog_text("array", cfg)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return [path]


@pytest.mark.parametrize(("sim", "layer", "cfg_name"), PAIRS)
def test_layer(request, sim_env, build_root, cfg_name, layer):
    cfg = CONFIGS[cfg_name]
    build = build_root / f"array-{cfg_name}-{sim_env}"
    run_cocotb(sim=sim_env, sources=_sources(build, cfg), top="wafertile_array",
               test_module="wafertile.sim.tb.array", build_dir=build, testcase="layer",
               extra_env={"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()),
                          "WAFERTILE_SEED": str(seed_for(request)),
                          "WAFERTILE_LAYER": json.dumps(LAYERS[layer]),
                          "WAFERTILE_BACKPRESSURE": "0.3"})


#: Float arrays for the GRAD chains (training): a tall one (every row adds) and a wide one.
GRAD_CONFIGS = {
    "4x2fp16": Config(rows=4, cols=2, dtype="fp16", act_depth=16, acc_depth=16),
    "2x3bf16": Config(rows=2, cols=3, dtype="bf16", act_depth=16, acc_depth=16),
}


@pytest.mark.parametrize(("sim", "cfg_name"), sim_cases(
    list(GRAD_CONFIGS), slow=lambda sim, cfg_name: sim == "verilator" or cfg_name != "4x2fp16"))
def test_grad_chains(request, sim_env, build_root, cfg_name):
    """GRAD flits go down their column, each tile adding its rows' product, and leave by the
    south edge (sim/tb/array.py grad_chains; the default run: fp16 on Icarus)."""
    cfg = GRAD_CONFIGS[cfg_name]
    build = build_root / f"array-{cfg_name}-{sim_env}"
    run_cocotb(sim=sim_env, sources=_sources(build, cfg), top="wafertile_array",
               test_module="wafertile.sim.tb.array", build_dir=build, testcase="grad_chains",
               extra_env={"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()),
                          "WAFERTILE_SEED": str(seed_for(request))})


#: Training steps on the RTL (sim/tb/array.py train_step): (configuration, chain).
TRAIN_CASES = {
    "2x2fp16": (Config(rows=2, cols=2, dtype="fp16", act_depth=32, acc_depth=16),
                {"sizes": [6, 5, 3], "density": 0.7, "batch": 3, "scale": 64.0}),
    # 40 outputs over 2 columns of 16 accumulator slots: two passes forward and backward
    "3x2bf16": (Config(rows=3, cols=2, dtype="bf16", act_depth=64, acc_depth=16),
                {"sizes": [7, 40, 4, 3], "density": 0.5, "batch": 5}),
}


@pytest.mark.parametrize(("sim", "case"), sim_cases(
    list(TRAIN_CASES), slow=lambda sim, case: sim == "verilator" or case != "2x2fp16"))
def test_train_step(request, sim_env, build_root, case):
    """A training step (forward, loss gradient, GRAD chains, backward data, FINISH_BACK) of a
    small chain, two batch groups, every logit and gradient bit exact against the reference
    (the default run: fp16 on Icarus; bf16 with two passes forward and backward, and
    Verilator, with --run-slow)."""
    cfg, spec = TRAIN_CASES[case]
    build = build_root / f"array-train-{case}-{sim_env}"
    run_cocotb(sim=sim_env, sources=_sources(build, cfg), top="wafertile_array",
               test_module="wafertile.sim.tb.array", build_dir=build, testcase="train_step",
               extra_env={"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()),
                          "WAFERTILE_SEED": str(seed_for(request)),
                          "WAFERTILE_TRAIN": json.dumps(spec),
                          "WAFERTILE_BACKPRESSURE": "0.3"})
