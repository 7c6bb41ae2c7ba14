"""`wafertile run`: bad inputs are refused before any build; a small run end to end."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from wafertile.cli import main

SMALL = ["--rows", "2", "--cols", "3", "--data-width", "8", "--acc-width", "16",
         "--act-depth", "32", "--acc-depth", "16"]


@pytest.mark.parametrize(("x", "w", "message"), [
    (np.zeros((2, 8), dtype=np.int64), np.zeros((4, 9), dtype=np.int64),
     "activations are 2 x 8 and weights 4 x 9: Y = X @ W.T needs the same number of columns "
     "(J)"),
    (np.zeros((2, 97), dtype=np.int64), np.zeros((4, 97), dtype=np.int64),
     "an activation row has 97 values (J) but a tile's activation bank holds act_depth = 32: "
     "the row needs 4 tiles of a row and the array has cols = 3, so the layer's activations "
     "do not fit"),
    (np.full((2, 4), 300), np.zeros((4, 4), dtype=np.int64),
     "activations must be within the 8-bit signed range -128..127, found 300..300"),
    (np.zeros((2, 4)), np.zeros((4, 4), dtype=np.int64),
     "activations must be integers, not float64"),
])
def test_bad_layer_refused_before_build(tmp_path, capsys, monkeypatch, x, w, message):
    monkeypatch.setenv("WAFERTILE_CACHE", str(tmp_path / "cache"))
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "W.npy", w)
    code = main(["run", *SMALL, "--sim", "icarus", "--weights", str(tmp_path / "W.npy"),
                 "--activations", str(tmp_path / "X.npy")])
    assert code == 2
    assert capsys.readouterr().err == f"wafertile: error: {message}\n"
    assert not (tmp_path / "cache").exists()  # nothing was built


def test_missing_file(tmp_path, capsys):
    np.save(tmp_path / "W.npy", np.zeros((2, 2), dtype=np.int64))
    assert main(["run", "--weights", str(tmp_path / "W.npy"), "--activations",
                 str(tmp_path / "nope.npy")]) == 2
    assert "activations file" in capsys.readouterr().err


def test_weights_without_activations(tmp_path, capsys):
    assert main(["run", "--weights", str(tmp_path / "W.npy")]) == 2
    assert capsys.readouterr().err == ("wafertile: error: --weights and --activations go "
                                       "together (or neither, for the built-in random layer)\n")


def test_bad_density(capsys):
    assert main(["run", "--density", "1.5"]) == 2
    assert capsys.readouterr().err == "wafertile: error: --density must be from 0 to 1, not 1.5\n"


@pytest.mark.parametrize("handoff", ["true", "false"])
def test_run_files_end_to_end(tmp_path, capsys, monkeypatch, handoff):
    """A layer nobody has seen, through the CLI on Icarus: Y.npy equals numpy (also on tiles
    without the hand-off unit: a single layer never uses it)."""
    pytest.importorskip("cocotb")
    from wafertile.sim.toolchain import icarus_available
    if not icarus_available():
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    monkeypatch.setenv("WAFERTILE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (3, 20))
    w = rng.integers(-128, 128, (13, 20)) * (rng.random((13, 20)) < 0.25)
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "W.npy", w)
    code = main(["run", *SMALL, "--handoff", handoff, "--sim", "icarus", "--json", "--weights",
                 str(tmp_path / "W.npy"), "--activations", str(tmp_path / "X.npy"),
                 "--out", str(tmp_path / "Y.npy")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["pass"] is True
    for key in ("pass", "cycles", "nnz", "macs", "utilization", "dense_cycles", "speedup"):
        assert key in report
    assert report["nnz"] == np.count_nonzero(w)
    exact = x @ w.T
    np.testing.assert_array_equal(np.load(tmp_path / "Y.npy"),
                                  ((exact + 2**15) % 2**16) - 2**15)
    assert report["dense_cycles"] > report["cycles"] > 0


def test_run_waves_named_and_progress(tmp_path, capsys, monkeypatch):
    """--waves on Icarus: the report and the JSON name the waveform file; the build's
    estimate and the simulation's progress come on stderr (issue 22, items 15 and 16)."""
    from pathlib import Path

    pytest.importorskip("cocotb")
    from wafertile.sim.toolchain import icarus_available
    if not icarus_available():
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    monkeypatch.setenv("WAFERTILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("wafertile.log.EVERY", 0.2)  # a progress line every 0.2 s
    rng = np.random.default_rng(5)
    np.save(tmp_path / "X.npy", rng.integers(-128, 128, (2, 12)))
    np.save(tmp_path / "W.npy", rng.integers(-128, 128, (9, 12)))
    argv = ["run", *SMALL, "--sim", "icarus", "--waves", "--weights", str(tmp_path / "W.npy"),
            "--activations", str(tmp_path / "X.npy")]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    (waves,) = report["waves"]
    assert waves.endswith("/waves/wafertile_array.fst") and Path(waves).stat().st_size > 0
    err = captured.err.splitlines()
    assert any(line.startswith("wafertile run: building with icarus with tracing in ")
               and "(first build of this design with tracing: a few seconds to build and start "
                   "for 6 tiles, from builds of 2 x 2 to 16 x 16 arrays measured, scaled by "
                   "tiles)" in line for line in err), err
    assert any(re.match(r"wafertile run: simulating on Icarus: program [12] of 2: phase \d+ "
                        r"of \d+ \(\d+ s so far\)$", line) for line in err), err
    assert main(argv) == 0  # the build is cached; the text report names the file too
    captured = capsys.readouterr()
    assert f"waveforms        {waves} (sparse, then dense stream)\n" in captured.out
    assert "(cached)" in captured.err


def test_build_estimate_grows_with_the_array():
    """The first build's estimate in the progress line follows the measured builds: not
    "about 40 s" whatever the size, tracing or simulator (issue 22, items 15 and 16)."""
    from wafertile import Config
    from wafertile.run import build_estimate

    assert build_estimate(Config(), "verilator").startswith("about 37 s on 2 cores for 16 "
                                                            "tiles, from builds of 2 x 2 to "
                                                            "8 x 8 arrays measured")
    assert build_estimate(Config(), "icarus").startswith("a few seconds to build and start")
    big = build_estimate(Config(rows=32, cols=32), "verilator", waves=True)
    assert " minutes on 2 cores for 1024 tiles, from " in big and "-traced builds" in big
    assert big.endswith("scaled by tiles beyond the largest")
