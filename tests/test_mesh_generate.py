"""The mesh generator: one router module however many tiles, determinism, ports, lint."""

from __future__ import annotations

import json
import re

import pytest

from wafertile import Config
from wafertile.hdl.generate import emit
from wafertile.hdl.mesh import Mesh, endpoint_name, endpoints
from wafertile.sim.runner import LINT_WAIVERS
from wafertile.sim.toolchain import run_verilator_lint


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 5), (8, 8)])
def test_router_module_once(tmp_path, rows, cols):
    files = emit("mesh", Config(rows=rows, cols=cols), tmp_path)
    text = files["verilog"].read_text()
    assert re.findall(r"^module (\w+)", text, re.M) == ["wafertile_router", "wafertile_mesh"]
    assert len(re.findall(r"^\s*wafertile_router r_x\d+_y\d+ ", text, re.M)) == rows * cols
    manifest = json.loads(files["manifest"].read_text())
    assert manifest["verilog_modules"] == ["wafertile_router", "wafertile_mesh"]
    eps = endpoints(Config(rows=rows, cols=cols))
    assert len(eps) == rows * cols + 2 * rows + 2 * cols
    names = {p["name"] for p in manifest["ports"]}
    assert len(names) == 2 + 6 * len(eps)  # clk, rst and three signals per link
    for ep in eps:
        for suffix in ("in__valid", "in__flit", "in__ready", "out__valid", "out__flit",
                       "out__ready"):
            assert f"{endpoint_name(*ep)}_{suffix}" in names


def test_deterministic(tmp_path):
    cfg = Config(rows=2, cols=3)
    a = emit("mesh", cfg, tmp_path / "a")
    b = emit("mesh", cfg, tmp_path / "b")
    assert a["verilog"].read_bytes() == b["verilog"].read_bytes()
    assert a["manifest"].read_bytes() == b["manifest"].read_bytes()


def test_endpoints_order():
    assert endpoints(Config(rows=1, cols=2)) == [
        (0, 0, "l"), (1, 0, "l"), (0, 0, "n"), (1, 0, "n"), (0, 0, "s"), (1, 0, "s"),
        (0, 0, "w"), (1, 0, "e")]


@pytest.mark.parametrize("block", ["router", "mesh"])
def test_lint_clean(tmp_path, block):
    cfg = Config(rows=2, cols=3, num_vcs=3)
    files = emit(block, cfg, tmp_path)
    top = "wafertile_router" if block == "router" else "wafertile_mesh"
    out = run_verilator_lint([files["verilog"]], top,
                             waivers=[f"-Wno-{w}" for w in LINT_WAIVERS])
    assert "%Warning" not in out and "%Error" not in out, out


def test_mesh_bad_config():
    with pytest.raises(TypeError, match=r"^Mesh config must be a Config, not 'x'$"):
        Mesh("x")
