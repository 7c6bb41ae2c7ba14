"""cocotb regression of the generated SRAM bank on Verilator and Icarus (sim/tb/sram.py)."""

from __future__ import annotations

import json

import pytest

from wafertile import Config
from wafertile.hdl.generate import emit
from wafertile.sim.runner import run_cocotb

from .conftest import seed_for, sim_cases

CONFIGS = {
    "d16a32": Config(act_depth=64, acc_depth=32),
    "d8a24": Config(data_width=8, acc_width=24, act_depth=16, acc_depth=128),
}


@pytest.mark.parametrize(
    ("sim", "cfg_name", "testcase"),
    sim_cases([(c, t) for c in CONFIGS for t in ("directed", "random_ports")],
              # one configuration on Verilator by default
              slow=lambda sim, cfg_name, _: sim == "verilator" and cfg_name != "d16a32"))
def test_sram(request, sim_env, build_root, cfg_name, testcase):
    cfg = CONFIGS[cfg_name]
    build = build_root / f"sram-{cfg_name}-{sim_env}"
    files = emit("sram", cfg, build / "rtl")
    run_cocotb(sim=sim_env, sources=[files["verilog"]], top="wafertile_sram",
               test_module="wafertile.sim.tb.sram", build_dir=build, testcase=testcase,
               extra_env={"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()),
                          "WAFERTILE_SEED": str(seed_for(request))})
