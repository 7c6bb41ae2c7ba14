"""Functional coverage: the collector (groups, crosses, merge, holes), the cover model's
bookkeeping, and a real core bench whose counts must equal the stream it was given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from wafertile import Config
from wafertile.hdl.flit import Opcode, pack, payload_layout
from wafertile.sim.vip import coverage
from wafertile.sim.vip.coverpoints import (
    ARRAY,
    FP32_CLASSES,
    NONLINEAR,
    CoreCoverModel,
    cover_program,
    cover_unit_jobs,
    fp32_class,
)

from .conftest import seed_for


def _group(registry, **kwargs):
    return coverage.Covergroup(
        "g", {"a": ["x", "y"], "b": ["1", "2", "3"]},
        crosses={"a x b": (("a", "b"), lambda a, b: a == "y" and b == "3")},
        registry=registry, **kwargs)


def test_cross_bins_leave_out_ignored_combinations():
    g = _group({})
    assert g.items()["a x b"] == ["x x 1", "x x 2", "x x 3", "y x 1", "y x 2"]
    g.sample(a="x", b="2")
    g.sample(a="y", b="3")  # the ignored combination: the points count, the cross does not
    g.sample(a="x")         # one point alone: no cross
    assert g.hits["a"] == Counter({"x": 2, "y": 1})
    assert g.hits["b"] == Counter({"2": 1, "3": 1})
    assert g.hits["a x b"] == Counter({"x x 2": 1})


def test_bad_samples_and_declarations_are_errors():
    registry = {}
    g = _group(registry)
    with pytest.raises(ValueError, match=r"'z' is not a bin of point 'a' \(bins: x, y\)"):
        g.sample(a="z")
    with pytest.raises(ValueError, match=r"has no point 'c' \(points: a, b\)"):
        g.sample(c="x")
    with pytest.raises(ValueError, match="a cover group named 'g' exists already"):
        _group(registry)
    with pytest.raises(ValueError, match=r"names unknown points \['c'\]"):
        coverage.Covergroup("h", {"a": ["x"]}, crosses={"a x c": (("a", "c"), None)},
                            registry=registry)


def test_report_lists_holes_of_groups_never_sampled():
    registry = {}
    g = _group(registry, doc="a test group")
    coverage.Covergroup("quiet", {"p": ["on", "off"]}, registry=registry)
    g.sample(a="x", b="1")
    rep = coverage.report(coverage.merge([coverage.counts(registry)]), registry)
    assert (rep["bins"], rep["hit"]) == (2 + 3 + 5 + 2, 1 + 1 + 1)
    assert rep["groups"]["g"]["items"]["a x b"]["holes"] == ["x x 2", "x x 3", "y x 1",
                                                            "y x 2"]
    assert rep["groups"]["quiet"] == {
        "doc": "", "sampled": False, "bins": 2, "hit": 0,
        "items": {"p": {"kind": "point", "bins": 2, "hit": 0, "holes": ["on", "off"],
                        "counts": {"on": 0, "off": 0}}}}
    text = coverage.format_text(rep, holes=1)
    assert text.splitlines()[0] == "functional coverage: 3 of 12 bins hit (25.0%)"
    assert "    cross a x b: 1/5\n      hole: x x 2\n      ... and 3 more holes" in text
    assert "  quiet: 0/2 (0.0%), never sampled" in text


def test_counts_of_other_processes_are_dumped_at_exit_and_merged(tmp_path):
    """Two processes sample the real cover model and exit; their files add up."""
    script = ("from wafertile.sim.vip.coverpoints import CORE\n"
              "import sys\n"
              "for _ in range(int(sys.argv[1])):\n"
              "    CORE.sample(op='MAC', hazard='1', after_stall='no', overflow='wrap')\n")
    env = {**os.environ, "WAFERTILE_COVERAGE_DIR": str(tmp_path)}
    for n in (2, 5):
        subprocess.run([sys.executable, "-c", script, str(n)], env=env, check=True)
    files = sorted(tmp_path.glob("cov-*.json"))
    assert len(files) == 2
    total = coverage.merge(coverage.load(f) for f in files)
    assert total["core"]["op"] == Counter({"MAC": 7})
    assert total["core"]["op x hazard x after_stall x overflow"] == Counter(
        {"MAC x 1 x no x wrap": 7})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="is not a wafertile-coverage/1 file"):
        coverage.load(bad)


def _mac(cfg, addr, **kw):
    return pack(payload_layout(cfg), {"op": Opcode.MAC, "addr": addr, "data": 1, **kw})


def test_core_hazard_distance_counts_pipeline_advances():
    """Distance in cycles in which the pipeline advanced; a held pipeline does not count;
    'after_stall' for FAR cycles after the output held it."""
    cfg = Config(data_width=8, acc_width=16, overflow="saturate")
    m = CoreCoverModel(cfg)
    go = {"i_ready": True, "o_valid": False, "o_ready": True}

    def take(word, **kw):
        return m.step(**{**go, "i_valid": True, "payload": word, **kw})

    assert take(_mac(cfg, 3))["hazard"] == ">3"          # first touch
    assert take(_mac(cfg, 3))["hazard"] == "1"
    m.step(**go, i_valid=False, payload=0)               # a bubble advances
    assert take(_mac(cfg, 3)) == {"op": "MAC", "hazard": "2", "overflow": "saturate",
                                  "dtype": "int8", "after_stall": "no"}
    for _ in range(3):  # held: i.ready low, output stalled; no advance
        assert m.step(i_valid=True, i_ready=False, payload=_mac(cfg, 3), o_valid=True,
                      o_ready=False) is None
    assert take(_mac(cfg, 3)) == {"op": "MAC", "hazard": "1", "overflow": "saturate",
                                  "dtype": "int8", "after_stall": "yes"}
    w = pack(payload_layout(cfg), {"op": Opcode.WRITE_ACT, "addr": 3})
    assert take(w)["hazard"] == "none"
    assert take(pack(payload_layout(cfg), {"op": 15}))["op"] == "illegal"
    for _ in range(3):
        m.step(**go, i_valid=False, payload=0)
    assert take(_mac(cfg, 3))["hazard"] == ">3"          # 6 advances after the last
    assert take(_mac(cfg, 3))["after_stall"] == "no"


def _alone(group):
    """``group``'s counts of this test alone, restored after (what a test only compiled or
    ran on a model must not count in the session's report)."""
    saved = {k: Counter(v) for k, v in group.hits.items()}
    for c in group.hits.values():
        c.clear()
    yield group.hits
    for k, c in group.hits.items():
        c.clear()
        c.update(saved[k])


@pytest.fixture
def array_hits():
    """ARRAY's counts of this test alone."""
    yield from _alone(ARRAY)


@pytest.fixture
def nonlinear_hits():
    """NONLINEAR's counts of this test alone."""
    yield from _alone(NONLINEAR)


def test_fp32_classes():
    words = {0x00000000: "+0", 0x80000000: "-0", 0x00000001: "subnormal",
             0x807FFFFF: "subnormal", 0x00800000: "+normal", 0xFF7FFFFF: "-normal",
             0x7F800000: "+inf", 0xFF800000: "-inf", 0x7F800001: "nan", 0xFFC00000: "nan"}
    assert {w: fp32_class(w) for w in words} == words
    assert set(words.values()) == set(FP32_CLASSES)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_the_nonlinear_directed_case_hits_every_bin(nonlinear_hits, dtype):
    """The core bench samples each job of the nonlinear unit from the model's run of the
    flits the core took: the directed case ``fp_nonlinear`` (run by the default test run on
    Icarus) alone hits every bin of the group, and each function is counted once per
    operation of the stream that runs it."""
    from wafertile.hdl.core.nonlinear import FUNCTIONS
    from wafertile.sim.models import CoreModel
    from wafertile.sim.stimulus import directed, dump

    cfg = Config(dtype=dtype, nonlinear=True)
    flits = directed("fp_nonlinear", cfg) + dump(cfg)
    cover_unit_jobs(CoreModel(cfg).run(flits).unit_jobs)
    want = Counter()
    for f in flits:
        if f["op"] == Opcode.NONLINEAR:
            want[FUNCTIONS[min(f["data"] & 7, 4)]] += 1
        elif f["op"] in (Opcode.MUL, Opcode.MAX):
            want[Opcode(f["op"]).name.lower()] += 1
    assert nonlinear_hits["function"] == want
    rep = coverage.report(coverage.merge([coverage.counts()]))["groups"]["nonlinear"]
    assert rep["hit"] == rep["bins"] == 7 + 8 + 9 + 56 + 128, rep


@pytest.mark.parametrize(("shape", "expected"), [
    # J = 20 > act_depth = 16: 2 chunks of one column each, reduced on the fabric; the 40
    # outputs of that one column group over acc_depth = 16: 3 passes; B = 3 on 2 rows: 2 groups
    ((3, 40, 20), "2+ x on fabric x 2+"),
    ((2, 8, 16), "1 x none x 1"),       # 4 outputs a column, one group, J fits
])
def test_array_program_bins(array_hits, shape, expected):
    from wafertile.stream import compile_layer

    cfg = Config(rows=2, cols=2, data_width=8, acc_width=16, act_depth=16, acc_depth=16)
    rng = np.random.default_rng(1)
    b, i, j = shape
    cover_program(cfg, compile_layer(cfg, rng.integers(-5, 6, (b, j)),
                                     rng.integers(-5, 6, (i, j))))
    assert array_hits["passes x reduction x groups"] == Counter({expected: 1})
    kinds = {"load", "stream", "read"} | ({"reduce"} if "on fabric" in expected else set())
    assert array_hits["phase"] == Counter(dict.fromkeys(kinds, 1))
    assert array_hits["layers"] == Counter({"1": 1})
    assert array_hits["router"] == Counter({"compact": 1})


@pytest.mark.parametrize("sim", ["icarus"])
def test_core_bench_counts_every_operation_it_drives(request, sim_env, build_root, tmp_path,
                                                     monkeypatch):
    """The core bench's coverage counts the operations of the stream it drove: the random
    stream of ``full_rate``, the memory clear before it and the dump after it."""
    from wafertile.hdl.generate import emit
    from wafertile.sim.runner import run_cocotb
    from wafertile.sim.stimulus import dump, random_stream

    cfg = Config(data_width=8, acc_width=16, act_depth=16, acc_depth=16)
    seed = seed_for(request)
    # cocotb's runner lets the environment win over extra_env
    monkeypatch.setenv("WAFERTILE_COVERAGE_DIR", str(tmp_path))
    build = build_root / f"core-coverage-{sim_env}"
    files = emit("core", cfg, build / "rtl")
    run_cocotb(sim=sim_env, sources=[files["verilog"]], top="wafertile_core",
               test_module="wafertile.sim.tb.core", build_dir=build, testcase="full_rate",
               extra_env={"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()),
                          "WAFERTILE_SEED": str(seed)})
    flits = random_stream(cfg, np.random.default_rng(seed), 1000, 0.5) + dump(cfg)
    ops = Counter(Opcode(f["op"]).name for f in flits)
    ops.update({"WRITE_ACT": cfg.act_depth, "WRITE_ACC": cfg.acc_depth})  # the clear
    total = coverage.merge(coverage.load(f) for f in tmp_path.glob("cov-*.json"))
    assert total["core"]["op"] == ops, f"seed {seed}"
    assert total["core"]["overflow"] == Counter({"wrap": sum(ops.values())})


@pytest.mark.parametrize(("cfg_name", "net_name", "expected"), [
    ("4x4d8", "deep", {"layers": "3+", "groups": "2+", "reduction": "none"}),  # 4 layers, B 5
    ("3x5d16", "wide", {"layers": "2", "groups": "2+", "reduction": "on fabric"}),  # J 20 > 16
])
def test_network_program_bins(array_hits, cfg_name, net_name, expected):
    from wafertile.network.compiler import compile_network

    from .test_network import _case

    cfg, net, x = _case(cfg_name, net_name, 1)
    program = compile_network(cfg, net, x)
    cover_program(cfg, program)
    for point, value in expected.items():
        assert array_hits[point] == Counter({value: 1}), point
    passes = max(plan.passes for plan in program.plans)
    assert array_hits["passes"] == Counter({"1" if passes == 1 else "2+": 1})
    assert array_hits["phase"]["handoff"] == 1


def test_core_crosses_leave_out_formats_whose_core_lacks_the_operation():
    """A float-only operation (GRAD, FINISH_BACK, NONLINEAR, MUL, MAX) is crossed with the
    float formats only, and never with ``saturate`` (an integer core's rule): those bins
    could never be hit."""
    from wafertile.sim.vip.coverpoints import core_covergroup

    items = core_covergroup(registry={}).items()
    by_format = set(items["op x hazard x dtype"])
    by_overflow = set(items["op x hazard x after_stall x overflow"])
    for op in ("GRAD", "FINISH_BACK", "NONLINEAR", "MUL", "MAX"):
        hazard = "none" if op == "GRAD" else "1"
        assert f"{op} x {hazard} x bf16" in by_format and f"{op} x {hazard} x int8" not in \
            by_format
        assert f"{op} x {hazard} x no x wrap" in by_overflow
        assert f"{op} x {hazard} x no x saturate" not in by_overflow
    assert {"MAC x 1 x int8", "MAC x 1 x fp16"} <= by_format
    assert "MAC x 1 x no x saturate" in by_overflow
    assert len(by_format) == len(by_overflow) == 142
