"""The grid tops (array and mesh): one node module however many tiles, a top whose size does
not grow with the array, packed edge-port groups, determinism, lint."""

from __future__ import annotations

import json
import re
import time

import pytest
from amaranth.back import verilog

from wafertile import Config
from wafertile.hdl.flit import Port
from wafertile.hdl.generate import emit, verilog_text
from wafertile.hdl.grid import ARRAY, MESH, Array, grid_ports, port_groups
from wafertile.hdl.ports import verilog_ports
from wafertile.sim.runner import LINT_WAIVERS
from wafertile.sim.toolchain import run_verilator_lint
from wafertile.sim.vip import grid_link


def _top(text: str, top: str) -> str:
    return text[text.index(f"module {top}("):]


@pytest.mark.parametrize(("block", "node"), [("mesh", "wafertile_router"),
                                             ("array", "wafertile_tile")])
@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 5), (8, 8)])
def test_node_module_once(tmp_path, block, node, rows, cols):
    cfg = Config(rows=rows, cols=cols)
    files = emit(block, cfg, tmp_path)
    text = files["verilog"].read_text()
    assert re.findall(r"^module (\w+)", text, re.M) == [node, f"wafertile_{block}"]
    # one instance statement, in generate loops over rows and columns
    assert len(re.findall(rf"^\s*{node} node \(", text, re.M)) == 1
    assert "for (y = 0; y < R; y = y + 1)" in text and "for (x = 0; x < C; x = x + 1)" in text
    manifest = json.loads(files["manifest"].read_text())
    # the node's own submodules (arbiters, buffers) are "<node>.<name>", once each
    assert [m for m in manifest["verilog_modules"] if "." not in m] == \
        [node, f"wafertile_{block}"]
    assert all(m.startswith(f"{node}.") for m in manifest["verilog_modules"]
               if "." in m)
    ports = manifest["ports"]
    assert ports == grid_ports(cfg, MESH if block == "mesh" else ARRAY)
    # the manifest's ports are the Verilog's
    assert sorted((p["direction"], p["name"], p["width"]) for p in ports) == \
        sorted((d, n, w) for d, n, w in verilog_ports(text, f"wafertile_{block}"))
    groups = {p["name"]: p for p in ports}
    fw, nv = cfg.flit_width, cfg.num_vcs
    assert groups["w_in__flit"] == {"name": "w_in__flit", "direction": "input",
                                    "width": rows * fw, "layout": "flit", "elements": rows}
    assert groups["n_out__ready"]["width"] == cols * nv
    assert groups["n_out__ready"]["direction"] == "input"
    if block == "mesh":
        assert groups["l_in__valid"]["width"] == rows * cols
    else:
        assert "l_in__valid" not in groups and groups["mac_done"]["width"] == rows * cols


@pytest.mark.parametrize("block", ["array", "mesh"])
def test_top_does_not_grow_with_the_array(block):
    """The top of a 1024 x 1024 grid is the 4 x 4 one but for the digits of its port widths,
    and is written in well under a second (the node is converted by Amaranth once either
    way)."""
    small = _top(verilog_text(block, Config(rows=4, cols=4)), f"wafertile_{block}")
    start = time.perf_counter()
    big = _top(verilog_text(block, Config(rows=1024, cols=1024)), f"wafertile_{block}")
    assert time.perf_counter() - start < 30  # a bound that only a per-tile emitter would miss
    assert abs(len(big) - len(small)) < 300, (len(small), len(big))  # digits of widths


def test_generate_1024_by_1024_cli(tmp_path, capsys):
    from wafertile.cli import main

    assert main(["generate", "--rows", "1024", "--cols", "1024", "-o", str(tmp_path / "a")]) == 0
    assert main(["generate", "--rows", "4", "--cols", "4", "-o", str(tmp_path / "b")]) == 0
    big = (tmp_path / "a" / "wafertile_array.v").stat().st_size
    small = (tmp_path / "b" / "wafertile_array.v").stat().st_size
    # the tile's own coordinate fields are wider (10 bits instead of 2): ~1.6 KB of 250 KB
    assert big - small < 4096, (small, big)


def test_grid_link_elements():
    cfg = Config(rows=3, cols=5)
    assert grid_link(cfg, ARRAY, 0, 2, Port.WEST, into=True) == ("w_in", 2)
    assert grid_link(cfg, ARRAY, 4, 1, Port.EAST, into=False) == ("e_out", 1)
    assert grid_link(cfg, ARRAY, 3, 0, Port.NORTH, into=True) == ("n_in", 3)
    assert grid_link(cfg, ARRAY, 3, 2, Port.SOUTH, into=False) == ("s_out", 3)
    assert grid_link(cfg, MESH, 3, 2, Port.LOCAL, into=True) == ("l_in", 2 * 5 + 3)
    with pytest.raises(ValueError, match=r"^wafertile_array has no WEST port at \(1, 0\)$"):
        grid_link(cfg, ARRAY, 1, 0, Port.WEST, into=True)
    with pytest.raises(ValueError, match=r"^wafertile_array has no LOCAL port at \(0, 0\)$"):
        grid_link(cfg, ARRAY, 0, 0, Port.LOCAL, into=True)
    assert [g.name for g in port_groups(cfg, ARRAY)] == [
        "n_in", "n_out", "e_in", "e_out", "s_in", "s_out", "w_in", "w_out"]


@pytest.mark.parametrize(("rows", "cols", "phits"), [(1, 1, 1), (2, 3, 1), (4, 4, 1),
                                                     (2, 3, 4)])
def test_array_component_matches_the_emitted_top(rows, cols, phits):
    """The Amaranth Array (what board designs compose) instantiates the emitted top with
    exactly its ports: names, directions and widths."""
    kw = {"router_arch": "lite", "buffer_depth": 2} if phits > 1 else {}
    cfg = Config(rows=rows, cols=cols, phits=phits, **kw)
    wrapper = verilog.convert(Array(cfg), name="outer", emit_src=False)
    inst = re.search(r"wafertile_array array \((.*?)\);", wrapper, re.S).group(1)
    connected = set(re.findall(r"\.(\w+)\(", inst))
    ports = {p["name"] for p in grid_ports(cfg, ARRAY)}
    assert connected == ports


def test_deterministic(tmp_path):
    cfg = Config(rows=2, cols=3)
    a = emit("mesh", cfg, tmp_path / "a")
    b = emit("mesh", cfg, tmp_path / "b")
    assert a["verilog"].read_bytes() == b["verilog"].read_bytes()
    assert a["manifest"].read_bytes() == b["manifest"].read_bytes()


# the array of compact, voq and lite with link slices by default (it holds the router and the
# mesh's links); the other lite and the parallel arrays, and the router and the mesh alone,
# with --run-slow (the default run
# lints the default tile and array of each simulator's build too: tests/test_cli.py)
@pytest.mark.parametrize("block", [pytest.param("router", marks=pytest.mark.slow),
                                   pytest.param("mesh", marks=pytest.mark.slow), "array"])
@pytest.mark.parametrize("kw", [{"num_vcs": 3},
                                pytest.param({"router_arch": "lite", "phits": 3,
                                              "buffer_depth": 2}, marks=pytest.mark.slow),
                                pytest.param({"router_arch": "parallel", "num_vcs": 4},
                                             marks=pytest.mark.slow),
                                {"router_arch": "voq", "num_vcs": 3},
                                {"router_arch": "lite", "phits": 2, "buffer_depth": 2,
                                 "link_slice": True}],
                         ids=["compact-v3", "lite-p3", "parallel-v4", "voq-v3", "lite-p2-slice"])
def test_lint_clean(tmp_path, block, kw):
    cfg = Config(rows=2, cols=3, **kw)
    files = emit(block, cfg, tmp_path)
    out = run_verilator_lint([files["verilog"]], f"wafertile_{block}",
                             waivers=[f"-Wno-{w}" for w in LINT_WAIVERS])
    assert "%Warning" not in out and "%Error" not in out, out


def test_array_bad_config():
    with pytest.raises(TypeError, match=r"^Array config must be a Config, not 'x'$"):
        Array("x")
