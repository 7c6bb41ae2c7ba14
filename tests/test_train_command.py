"""``wafertile train`` (docs/training.md, "wafertile train"): bad inputs refused before any
work, a run killed and resumed equal to an uninterrupted one bit for bit, a small network
trained on the RTL with every step exact, and ``--fabrics 2`` equal to one fabric."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from wafertile.cli import main
from wafertile.hdl.core.fp import float_format
from wafertile.train import (
    ParameterStore,
    TrainConfig,
    export_network,
    load_checkpoint,
    save_checkpoint,
)
from wafertile.trainer import random_network
from wafertile.trainer.command import COLUMNS

#: a 2 x 2 fp16 array small enough to build in seconds
SMALL = ["--rows", "2", "--cols", "2", "--act-depth", "32", "--acc-depth", "16",
         "--dtype", "fp16"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def small_run(tmp_path, monkeypatch, cache):
    """A float network file (6-5-3, 70% of the weights) and its data file in ``tmp_path``;
    the builds cached for the module."""
    monkeypatch.setenv("WAFERTILE_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    fmt = float_format("fp16")
    w, b, m = random_network((6, 5, 3), 0.7, 7)
    store = ParameterStore(w, b, m, TrainConfig(dtype="fp16"))
    export_network(store, tmp_path / "net.npz")
    rng = np.random.default_rng(7)
    x = fmt.values(fmt.bits(rng.random((9, 6)).astype(np.float32)))
    np.savez(tmp_path / "data.npz", x=x, y=rng.integers(0, 3, 9), x_test=x[:4],
             y_test=rng.integers(0, 3, 4))
    return ["train", "--network", "net.npz", "--data", "data.npz", *SMALL]


def _forbidden(*_args, **_kwargs):
    pytest.fail("the run started: the input should have been refused before any work")


@pytest.mark.parametrize(("argv", "message"), [
    (["--dtype", "int8"], "training needs a float tile format (--dtype fp16 or bf16), not "
                          "int8: the integer tiles have no backward operations"),
    (["--handoff", "false"], "training hands activations and gradients on between the layers "
                             "on chip: handoff = false leaves the hand-off unit out; use "
                             "handoff = true"),
    (["--lr", "-0.1"], "--lr must be a positive finite number, not -0.1"),
    (["--lr", "nan"], "--lr must be a positive finite number, not nan"),
    (["--batch", "0"], "--batch must be an integer >= 1, not 0"),
    (["--steps", "3", "--epochs", "2"], "--epochs and --steps both set the run's length: "
                                        "give one"),
    (["--density", "0"], "--density must be in (0, 1], not 0.0"),
    (["--fabrics", "9", "--batch", "32"], "--fabrics 9 needs at least 9 batch groups of 4 "
                                          "inputs (--rows); a batch of 32 makes 8"),
    (["--model-detail", "mesh"], "--model-detail applies to --fidelity model only (the RTL "
                                 "has no detail levels)"),
    (["--fidelity", "model", "--fabrics", "2"], "--fabrics and --scheduler spread simulations "
                                                "over workers; --fidelity model simulates "
                                                "nothing"),
    (["--resume"], "--resume: 'wafertile-train/checkpoint.npz' does not exist (no earlier run "
                   "of this directory to continue)"),
    (["--network", "net.txt"], "--network must be 'digits', a network .npz file or an .onnx "
                               "model, not 'net.txt'"),
])
def test_bad_flags_are_refused_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("wafertile.trainer.command._fabric", _forbidden)
    monkeypatch.setattr("wafertile.trainer.command._run", _forbidden)
    assert main(["train", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"wafertile: error: {message}\n"
    assert captured.out == ""
    assert not (tmp_path / "wafertile-train").exists()


def test_bad_data_and_sizes_are_refused(small_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("wafertile.trainer.command._fabric", _forbidden)
    monkeypatch.setattr("wafertile.trainer.command._run", _forbidden)

    def refused(argv, start):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"wafertile: error: {start}") and err.count("\n") == 1, err

    data = dict(np.load(tmp_path / "data.npz"))
    np.savez(tmp_path / "labels.npz", **{**data, "y": np.r_[data["y"][:-1], 3]})
    refused([*small_run[:3], "--data", "labels.npz", *SMALL],
            "--data 'labels.npz': y[8] = 3 is not a class of the network (0 to 2)")
    np.savez(tmp_path / "narrow.npz", x=data["x"][:, :4], y=data["y"])
    refused([*small_run[:3], "--data", "narrow.npz", *SMALL],
            "--data 'narrow.npz': x must be N x 6 (the network's inputs)")
    refused(["train", "--network", "net.npz", *SMALL],
            "the network has 6 inputs and 3 outputs; the default data (digits) needs 64 and 10")
    refused(["train", "--act-depth", "128"],
            "a training step keeps every layer's inputs, the loss gradient and a 1.0 in each "
            "tile: 64 + 128 + 64 + 10 + 1 = 267 activation words > act_depth = 128")
    assert not (tmp_path / "wafertile-train").exists()


def test_a_killed_run_resumes_to_the_same_steps(tmp_path, monkeypatch, capsys):
    """--fidelity model, 9 steps, checkpoints every 4: a run killed in step 7 and resumed
    ends with the losses and master weights of an uninterrupted run, bit for bit (and the
    same predicted cycles)."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--fidelity", "model", "--model-detail", "analytic", "--steps", "9",
            "--batch", "64", "--checkpoint-every", "4", "--json"]
    assert main([*argv, "-o", "whole"]) == 0
    whole = json.loads(capsys.readouterr().out)
    # the model's cycles are reported (not the RTL's check: pass is null)
    assert whole["pass"] is None and whole["model_detail"] == "analytic"
    assert whole["step_cycles"] > whole["forward_cycles"] > 0
    assert whole["total_cycles"] >= 9 * min(whole["phase_cycles"].values())
    assert set(whole["model_methods"]) <= {"exact", "analytic", "bound"}
    calls = {"n": 0}
    real = ParameterStore.apply

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ParameterStore, "apply", dies)
    assert main([*argv, "-o", "cut"]) == 130
    monkeypatch.setattr(ParameterStore, "apply", real)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.npz")[0].step == 4
    capsys.readouterr()
    assert main([*argv, "-o", "cut"]) == 2  # not over an earlier run without --resume
    assert "--resume to continue it" in capsys.readouterr().err
    assert main([*argv, "-o", "cut", "--resume"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["loss"] == whole["loss"] and len(whole["loss"]) == 9
    assert resumed["total_cycles"] == whole["total_cycles"]
    a, _ = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b, _ = load_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    for x, y in zip(a.arrays().values(), b.arrays().values(), strict=True):
        assert np.array_equal(np.atleast_1d(x).view(np.uint8), np.atleast_1d(y).view(np.uint8))
    # a checkpoint written before a run's identity had its activations (a ReLU chain)
    # resumes; one that says other activations does not
    store, state = load_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    for activations, code in ((None, 0), (["gelu", "relu", None], 2)):
        state.pop("activations", None)
        if activations is not None:
            state["activations"] = activations
        save_checkpoint(tmp_path / "cut" / "checkpoint.npz", store, rng_state=state)
        assert main([*argv, "-o", "cut", "--resume"]) == code
        capsys.readouterr()
    save_checkpoint(tmp_path / "cut" / "checkpoint.npz", store,
                    rng_state={**state, "activations": ["relu", "relu", None]})
    # a checkpoint of another network is refused
    assert main([*argv, "-o", "cut", "--resume", "--density", "0.3"]) == 2
    assert "is of another network: mask 0 differs" in capsys.readouterr().err
    # ... and one of another fidelity or array (rows make the groups: the sums' order)
    rtl = [a for a in argv if a not in ("--model-detail", "analytic")]
    assert main([*rtl, "-o", "cut", "--resume", "--fidelity", "rtl"]) == 2
    assert capsys.readouterr().err == ("wafertile: error: --resume: the checkpoint's run had "
                                       "another fidelity (\"model (analytic)\" there, \"rtl\" "
                                       "here)\n")
    assert main([*argv, "-o", "cut", "--resume", "--rows", "2"]) == 2
    assert "--resume: the checkpoint's run had another array (" in capsys.readouterr().err


@pytest.mark.slow  # the default run trains a GELU network on the RTL through the command
def test_a_small_network_trains_on_the_rtl_exactly(small_run, tmp_path, capsys):
    assert main([*small_run, "--steps", "3", "--batch", "5", "--lr", "0.05", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pass"] is True and report["steps"] == 3 and len(report["loss"]) == 3
    for key in ("accuracy", "fp32_accuracy", "step_cycles", "forward_cycles", "flits_in",
                "flits_out", "nnz", "seconds"):
        assert report[key] is not None, key
    table = pd.read_csv(tmp_path / "wafertile-train" / "steps.csv")
    assert list(table.columns) == list(COLUMNS) and len(table) == 3
    assert table["exact"].all()
    assert (table["cycles_total"] == table[[f"cycles_{k}" for k in (
        "forward", "loss", "gradients", "backward", "backward_handoff")]].sum(axis=1)).all()
    assert (tmp_path / "wafertile-train" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    # the trained network runs with wafertile run --network on the test set the run wrote,
    # exact against its reference, with the accuracy the report gives
    out = "wafertile-train/"
    assert main(["run", "--network", out + "network.npz", "--inputs", out + "test_inputs.npy",
                 "--labels", out + "test_labels.npy", *SMALL, "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["pass"] is True and run["accuracy"] == report["accuracy"]


def _two_steps(tmp_path, store, rng, **export) -> list[str]:
    """``store``'s network exported to ``net.npz`` (``export``: export_network's options),
    six fp16 inputs of its features and 3 labels in ``data.npz``; the arguments of two steps
    of 4 on the small array."""
    fmt = float_format("fp16")
    export_network(store, tmp_path / "net.npz", **export)
    x = fmt.values(fmt.bits(rng.normal(size=(6, store.shapes[0][1])).astype(np.float32)))
    np.savez(tmp_path / "data.npz", x=x, y=rng.integers(0, 3, 6), x_test=x[:4],
             y_test=rng.integers(0, 3, 4))
    return ["train", "--network", "net.npz", "--data", "data.npz", *SMALL, "--steps", "2",
            "--batch", "4", "--lr", "0.05", "--json"]


def _the_model_and_the_export_agree(argv: list[str], report: dict, capsys) -> None:
    """The same run at the model's event level gives every part's cycles and the loss; the
    exported network runs with wafertile run, exact, at the report's accuracy."""
    assert main([*argv, "--nonlinear", "true", "--fidelity", "model", "--model-detail",
                 "mesh", "-o", "model"]) == 0
    model = json.loads(capsys.readouterr().out)
    assert model["phase_cycles"] == report["phase_cycles"] and model["loss"] == report["loss"]
    out = "wafertile-train/"
    assert main(["run", "--network", out + "network.npz", "--inputs", out + "test_inputs.npy",
                 "--labels", out + "test_labels.npy", *SMALL, "--nonlinear", "true",
                 "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["pass"] is True and run["accuracy"] == report["accuracy"]


def test_a_gelu_network_trains_on_the_rtl_exactly(tmp_path, monkeypatch, cache, capsys):
    """A network with GELU after its first layer (docs/training.md, "GELU layers"): refused
    without the nonlinear unit or with the lite router; with it, every step exact on the RTL,
    the step table and the curve written, the model's event level giving every part's
    cycles, and the trained network written with its GELU runs with wafertile run, exact,
    at the report's accuracy."""
    monkeypatch.setenv("WAFERTILE_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    w, b, m = random_network((6, 5, 3), 0.7, 8)
    store = ParameterStore(w, b, m, TrainConfig(dtype="fp16"))
    argv = _two_steps(tmp_path, store, np.random.default_rng(8), gelu=(True, False))
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "wafertile: error: network file 'net.npz': layer 0 has GELU, which needs tiles with "
        "the nonlinear unit (nonlinear = true, --nonlinear true)")
    assert main([*argv, "--nonlinear", "true", "--router-arch", "lite"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "layer 0 has GELU, whose derivative needs a router whose local input holds at least 2 "
        "flits per VC: router_arch = 'lite' holds 1")
    assert main([*argv, "--nonlinear", "true"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pass"] is True and report["activations"] == ["gelu", None]
    assert report["phase_cycles"]["backward_handoff"] > 0
    for key in ("accuracy", "fp32_accuracy", "step_cycles", "forward_cycles", "flits_in",
                "flits_out", "nnz", "seconds"):
        assert report[key] is not None, key
    table = pd.read_csv(tmp_path / "wafertile-train" / "steps.csv")
    assert list(table.columns) == list(COLUMNS) and len(table) == 2 and table["exact"].all()
    assert (table["cycles_total"] == table[[f"cycles_{k}" for k in (
        "forward", "loss", "gradients", "backward", "backward_handoff")]].sum(axis=1)).all()
    assert (tmp_path / "wafertile-train" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    _the_model_and_the_export_agree(argv, report, capsys)
    with np.load(tmp_path / "wafertile-train" / "network.npz") as net:
        assert int(net["gelu0"]) == 1 and int(net["relu0"]) == 0


def test_a_layernorm_network_trains_on_the_rtl_exactly(tmp_path, monkeypatch, cache, capsys):
    """A network with a LayerNorm on its first layer and a residual connection from it to
    its third (docs/training.md, "LayerNorm layers", "Residual connections"): every step
    exact on the RTL (gamma's and beta's gradients included), gamma and beta trained by the
    store (checkpointed, exported), the model's event level giving every part's cycles, and
    the trained network, written with its LayerNorm and its residual, runs with wafertile
    run, exact, at the report's accuracy."""
    monkeypatch.setenv("WAFERTILE_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    w, b, m = random_network((4, 4, 3, 4, 3), 0.7, 8)
    rng = np.random.default_rng(9)
    norms = [(rng.normal(1, 0.2, 4).astype(np.float32), rng.normal(0, 0.2, 4).astype(
        np.float32), 1e-5), None, None, None]
    store = ParameterStore(w, b, m, TrainConfig(dtype="fp16"), norms)
    argv = _two_steps(tmp_path, store, rng, res=(None, None, 0, None))
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "wafertile: error: network file 'net.npz': layer 0 has a LayerNorm, which needs float "
        "tiles with the nonlinear unit (dtype fp16 or bf16, nonlinear = true, --nonlinear "
        "true)")
    assert main([*argv, "--nonlinear", "true"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pass"] is True and report["activations"] == ["layernorm", "relu", "relu",
                                                                None]
    assert report["residuals"] == [None, None, 0, None]
    trained, _ = load_checkpoint(tmp_path / "wafertile-train" / "checkpoint.npz")
    # (fp16's first loss scale may overflow a gradient: that step is skipped)
    assert trained.norm_layers == [0] and trained.step >= 1 and trained.step + \
        trained.skipped == 2
    assert not np.array_equal(trained.norms[0][0], norms[0][0])  # gamma was trained
    _the_model_and_the_export_agree(argv, report, capsys)
    with np.load(tmp_path / "wafertile-train" / "network.npz") as net:
        assert int(net["relu0"]) == 0 and int(net["res2"]) == 0
        assert net["ln_g0"].tobytes() == trained.norms[0][0].tobytes()


def test_two_fabrics_equal_one(small_run, tmp_path, capsys):
    """--fabrics 2 (a Dask LocalCluster of two workers, each a fabric) makes the same steps
    as one fabric: the same losses, the same master weights bit for bit."""
    argv = [*small_run, "--steps", "2", "--batch", "8", "--lr", "0.05", "--json"]
    assert main([*argv, "-o", "one"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert main([*argv, "-o", "two", "--fabrics", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert one["pass"] and two["pass"] and one["loss"] == two["loss"]
    a, _ = load_checkpoint(tmp_path / "one" / "checkpoint.npz")
    b, _ = load_checkpoint(tmp_path / "two" / "checkpoint.npz")
    for x, y in zip(a.arrays().values(), b.arrays().values(), strict=True):
        assert np.array_equal(np.atleast_1d(x).view(np.uint8), np.atleast_1d(y).view(np.uint8))
    # two fabrics, four groups each step: each fabric runs half of the step's cycles
    assert two["step_cycles"] < one["step_cycles"]


def test_a_checkpoint_keeps_a_step_of_infinite_loss():
    """A step whose logits overflowed has an infinite or NaN loss: the checkpoint (JSON
    numbers only) keeps it as text and the resumed run reads back the same value."""
    from wafertile.trainer.command import _row_in, _row_out

    rows = [{"step": 1, "loss": float("inf"), "batch_accuracy": 0.5, "scale": 65536.0},
            {"step": 2, "loss": float("nan"), "batch_accuracy": 0.25, "scale": 32768.0},
            {"step": 3, "loss": 0.1 + 0.2, "batch_accuracy": 1.0, "scale": 1.0}]
    text = json.dumps([_row_out(r) for r in rows], allow_nan=False)
    back = [_row_in(r) for r in json.loads(text)]
    assert back[0]["loss"] == float("inf") and np.isnan(back[1]["loss"])
    assert back[2] == rows[2]
