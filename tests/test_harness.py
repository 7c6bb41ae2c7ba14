"""The compiled Verilator harness of `wafertile run` against numpy and against Icarus."""

from __future__ import annotations

import numpy as np
import pytest

from wafertile import Config
from wafertile.run import run_layer
from wafertile.sim.toolchain import icarus_available

from .conftest import seed_for

CFG = Config(rows=2, cols=3, data_width=8, acc_width=16, overflow="saturate", act_depth=32,
             acc_depth=16)


def _layer(rng, b, i, j, density):
    x = rng.integers(-128, 128, (b, j))
    w = rng.integers(-128, 128, (i, j))
    w[rng.random((i, j)) >= density] = 0
    return x, w


@pytest.mark.parametrize(("b", "i", "j", "density"), [
    (2, 9, 12, 1.0), (5, 40, 20, 0.1), (3, 17, 32, 0.0), (1, 3, 1, 0.5)])
def test_harness_matches_numpy(request, tmp_path_factory, b, i, j, density):
    seed = seed_for(request)
    x, w = _layer(np.random.default_rng(seed), b, i, j, density)
    root = tmp_path_factory.getbasetemp() / "harness-builds"
    report, y = run_layer(CFG, x, w, sim="verilator", build_root=root)
    assert report.passed and report.mismatches == 0
    assert report.nnz == np.count_nonzero(w)
    # the array computed Y, and it equals the exact product clamped per MAC (saturate)
    from wafertile.stream import reference
    np.testing.assert_array_equal(y, reference(CFG, x, w))


def test_verilator_harness_and_icarus_cocotb_agree(request, tmp_path_factory):
    """The same program, no backpressure: same Y and the same cycle counts on both."""
    if not icarus_available():
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    x, w = _layer(np.random.default_rng(seed_for(request)), 4, 30, 24, 0.2)
    root = tmp_path_factory.getbasetemp() / "harness-builds"
    fast, y_fast = run_layer(CFG, x, w, sim="verilator", build_root=root)
    slow, y_slow = run_layer(CFG, x, w, sim="icarus", build_root=root)
    np.testing.assert_array_equal(y_fast, y_slow)
    assert (fast.cycles, fast.total_cycles, fast.dense_cycles, fast.macs_per_tile) == \
        (slow.cycles, slow.total_cycles, slow.dense_cycles, slow.macs_per_tile)


@pytest.mark.slow
def test_harness_and_icarus_agree_with_reduction(request, tmp_path_factory):
    """J > act_depth (K = 3 chunks, reduce phases): numpy, and the same cycles on both."""
    if not icarus_available():
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    cfg = Config(rows=2, cols=3, data_width=8, acc_width=16, act_depth=16, acc_depth=16)
    x, w = _layer(np.random.default_rng(seed_for(request)), 3, 20, 40, 0.3)
    root = tmp_path_factory.getbasetemp() / "harness-builds"
    fast, y_fast = run_layer(cfg, x, w, sim="verilator", build_root=root)
    slow, y_slow = run_layer(cfg, x, w, sim="icarus", build_root=root)
    assert fast.passed and slow.passed
    from wafertile.stream import reference
    np.testing.assert_array_equal(y_fast, reference(cfg, x, w))
    np.testing.assert_array_equal(y_fast, y_slow)
    assert (fast.cycles, fast.total_cycles, fast.dense_cycles, fast.macs_per_tile) == \
        (slow.cycles, slow.total_cycles, slow.dense_cycles, slow.macs_per_tile)


def test_traced_harness_is_the_plain_one_plus_the_dump():
    """``--waves`` on Verilator: the harness with a waveform dump (FST or VCD) is the plain
    one plus the dump; the plain one is unchanged (its cached builds stay valid)."""
    from wafertile.sim.harness import TRACE_FORMATS, _source

    plain = _source(CFG)
    assert "dump" not in plain and "tfp" not in plain and "argc != 4" in plain
    for fmt, (_, header, cls) in TRACE_FORMATS.items():
        traced = _source(CFG, fmt)
        assert f'#include "{header}"' in traced and f"tfp = new {cls};" in traced
        assert "argc != 5" in traced and "tfp->open(argv[4]);" in traced
        # a dump after each evaluation of each half clock period, from reset on
        assert traced.count("dump();") == 5 and "tfp->close();" in traced


@pytest.mark.slow
def test_harness_waves(request, tmp_path_factory):
    """A traced harness build (a minute or two): the same cycles and Y as the plain one, and
    a waveform file per program (issue 22, item 15)."""
    from wafertile.sim.harness import trace_format

    x, w = _layer(np.random.default_rng(seed_for(request)), 2, 9, 12, 0.5)
    root = tmp_path_factory.getbasetemp() / "harness-builds"
    plain, y_plain = run_layer(CFG, x, w, sim="verilator", build_root=root)
    traced, y_traced = run_layer(CFG, x, w, sim="verilator", waves=True, build_root=root)
    np.testing.assert_array_equal(y_plain, y_traced)
    assert (plain.cycles, plain.total_cycles, plain.dense_cycles) == \
        (traced.cycles, traced.total_cycles, traced.dense_cycles)
    assert plain.waves is None and len(traced.waves) == 2
    for path in traced.waves:
        assert path.endswith(f".{trace_format()}")
        with open(path, "rb") as f:
            head = f.read(64)
        assert head and (trace_format() == "fst" or head.startswith(b"$"))
    assert "waveforms        " in traced.text(CFG) and traced.as_json()["waves"] == traced.waves
