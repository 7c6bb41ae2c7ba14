"""`wafertile run`: bad inputs are refused before any build; a small run end to end."""

from __future__ import annotations

import json

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
