"""Bad input on the command line: one line on stderr, exit status 2, nothing built or written.

Every refusal here happens before any generation, build or simulation: the functions that
would do the work are replaced by ones that fail the test, so a missing check shows as a
failure instead of a long simulation. The --force rules and the reruns that need no --force
are tested with the same stand-ins.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from wafertile.cli import _parser, main
from wafertile.outputs import BUILD_MARK

SMALL = ["--rows", "2", "--cols", "3", "--data-width", "8", "--acc-width", "16",
         "--act-depth", "32", "--acc-depth", "16"]
#: a block that generates in well under a second
GEN = ["generate", "--block", "mac", "--data-width", "8", "--acc-width", "16"]
MAC_FILES = {"wafertile_mac.v", "wafertile_mac.core", "manifest.json"}


def _forbidden(name):
    def call(*_args, **_kwargs):
        pytest.fail(f"{name} was called: the input should have been refused before any work")
    return call


@pytest.fixture
def no_work(tmp_path, monkeypatch):
    """No simulation, build or generation may start; $WAFERTILE_CACHE and the working
    directory point into ``tmp_path`` (the cache must not appear)."""
    monkeypatch.setenv("WAFERTILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    for target in ("wafertile.run.run_layer", "wafertile.run.run_device",
                   "wafertile.synth.flow.run_synth", "wafertile.synth.boards.build_board",
                   "wafertile.hdl.generate.emit"):
        monkeypatch.setattr(target, _forbidden(target))
    yield tmp_path
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "wafertile-synth").exists()


@pytest.fixture
def read_only(monkeypatch):
    """Make a directory unwritable, for root too: root writes anywhere, so making a file in
    it (the probe of wafertile.files) fails with EACCES as it would for a user."""
    made = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and any(Path(dir) == p for p in made):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    def make(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        made.append(path)
        return path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    yield make
    for path in made:
        path.chmod(0o755)


def _refused(capsys, argv, message):
    """Run ``argv``; it must exit with status 2 and exactly ``wafertile: error: message``."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == f"wafertile: error: {message}\n"
    assert captured.out == ""


def _layer(tmp_path, x=None, w=None):
    """Write X.npy and W.npy (small, valid by default); return the run arguments."""
    x = np.ones((2, 8), dtype=np.int64) if x is None else x
    w = np.ones((4, 8), dtype=np.int64) if w is None else w
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "W.npy", w)
    return ["run", *SMALL, "--weights", str(tmp_path / "W.npy"), "--activations",
            str(tmp_path / "X.npy")]


# --- wafertile run: flags -------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["--seed", "-1"], "--seed must be an integer >= 0, not -1"),
    (["--batch", "-1"], "--batch must be an integer >= 1 (batch rows), not -1"),
    (["--batch", "0"], "--batch must be an integer >= 1 (batch rows), not 0"),
    (["--density", "1.5"], "--density must be from 0 to 1, not 1.5"),
    (["--density", "-0.1"], "--density must be from 0 to 1, not -0.1"),
    (["--density", "nan"], "--density must be from 0 to 1, not nan"),
    (["--device", "/dev/ttyUSB0", "--baud", "-5"],
     "--baud must be a positive integer (bits per second), not -5"),
    (["--device", "/dev/ttyUSB0", "--baud", "0"],
     "--baud must be a positive integer (bits per second), not 0"),
    (["--device", "/dev/no-such-tty"],
     "--device '/dev/no-such-tty' does not exist (is the board plugged in?)"),
])
def test_run_bad_flag(no_work, capsys, argv, message):
    _refused(capsys, ["run", *argv], message)


# --- wafertile run: a flag that does not apply is refused, not ignored (issue 22, item 14) --

_ONE_LAYER = "(this run is one layer: --weights / --activations or the built-in random layer)"
_FILES = ["--weights", "W.npy", "--activations", "X.npy"]  # refused before they are read
_TTY = ["--device", "/dev/ttyUSB0"]  # refused before the port is looked at


@pytest.mark.parametrize(("argv", "message"), [
    *[([flag, "5"], f"{flag} applies only with --network {_ONE_LAYER}")
      for flag in ("--images", "--labels", "--inputs", "--calibration", "--prune")],
    *[([*_FILES, flag, "1"], f"{flag} shapes the built-in random layer; with --weights and "
                             f"--activations the layer comes from the files, so it does not "
                             f"apply") for flag in ("--density", "--size", "--batch", "--seed")],
    (["--network", "digits", "--density", "0.5"],
     "--density shapes the built-in random layer; --network runs a network instead, so it "
     "does not apply"),
    (["--network", "digits", "--size", "64"],
     "--size shapes the built-in random layer; --network runs a network instead, so it does "
     "not apply"),
    # given, even as the default value: at RTL fidelity it would be ignored
    (["--model-detail", "auto"],
     "--model-detail applies to --fidelity model only (the RTL simulation has no detail "
     "levels)"),
    (["--fidelity", "model", "--sim", "icarus"],
     "--sim chooses the simulator of the RTL; --fidelity model simulates nothing"),
    ([*_TTY, "--sim", "verilator"],
     "--sim chooses the simulator; --device runs on the board instead, so it does not apply"),
    ([*_TTY, "--waves"], "--waves dumps the simulator's waveforms; --device runs on the board "
                         "instead, so it does not apply"),
    ([*_TTY, "--no-dense"], "--no-dense skips the simulated dense stream; --device runs on the "
                            "board instead, so it does not apply"),
    (["--baud", "9600"], "--baud is the serial rate of --device: without --device it does not "
                         "apply"),
])
def test_run_flag_that_does_not_apply(no_work, capsys, argv, message):
    _refused(capsys, ["run", *argv], message)


# --- wafertile run: a built-in layer beyond the memory budget (issue 22, item 9) -------------

@pytest.mark.parametrize(("argv", "message"), [
    (["--fidelity", "model", "--size", "100000000"],
     "--size 100000000 at --fidelity model needs about 401 GiB of memory (W is 100000000 x 512 "
     "int16 weights: 95 GiB; the model's plan of its 5120000000 nonzero weights: 305 GiB), "
     "more than the memory budget of 12 GiB, half of this machine's 24 GiB"),
    (["--fidelity", "model", "--batch", "1000000000"],
     "--batch 1000000000 at --fidelity model needs about 1986 GiB of memory (X is 1000000000 x "
     "256 int64 activations: 1907 GiB; the model's 750000000 predicted phases: 78 GiB), more "
     "than the memory budget of 12 GiB, half of this machine's 24 GiB"),
    (["--size", "100000000", "--no-dense"],
     "--size 100000000 at --fidelity rtl needs about 647 GiB of memory (W is 100000000 x 512 "
     "int16 weights: 95 GiB; the compiled program of 5920002056 flits: 551 GiB), more than "
     "the memory budget of 12 GiB, half of this machine's 24 GiB"),
])
def test_run_layer_beyond_memory(no_work, capsys, monkeypatch, argv, message):
    """Refused from the sizes, before the layer is made (it used to end in a MemoryError)."""
    monkeypatch.setattr("wafertile.model.command.memory_budget_info",
                        lambda: (12 << 30, "12 GiB, half of this machine's 24 GiB"))
    for target in ("wafertile.run.default_layer", "wafertile.model.command.run_model_layer"):
        monkeypatch.setattr(target, _forbidden(target))
    _refused(capsys, ["run", *argv], message)


def test_memory_budget_and_the_wafer_size_layer(monkeypatch):
    from wafertile.config import Config
    from wafertile.files import BUDGET_CAP, memory_budget_info
    from wafertile.model.command import check_layer_memory, layer_memory

    budget, what = memory_budget_info()
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < budget <= min(physical // 2, BUDGET_CAP) and "GiB" in what
    # the documented wafer-size run (docs/performance.md: 2.26 GiB peak) is estimated close
    # to what it measured, and passes a 12 GiB budget
    wafer = Config(rows=1024, cols=1024, act_depth=16384, acc_depth=16)
    parts = layer_memory(wafer, size=16384, batch=1024, density=0.1, fidelity="model")
    assert 1.9 < sum(n for *_, n in parts) / 2**30 < 2.6
    monkeypatch.setattr("wafertile.model.command.memory_budget_info", lambda: (12 << 30, "12 GiB"))
    check_layer_memory(wafer, size=16384, batch=1024, density=0.1, fidelity="model")


def test_device_baud_checked_by_the_library():
    from wafertile.config import Config
    from wafertile.device import run_on_device
    from wafertile.errors import InputError

    with pytest.raises(InputError, match=r"^baud must be a positive integer \(bits per "
                                         r"second\), not -5$"):
        run_on_device(Config(), None, "loop://", baud=-5)


# --- wafertile run: --out -------------------------------------------------------------------

def test_run_out_in_missing_directory(no_work, capsys):
    out = no_work / "nope" / "Y.npy"
    _refused(capsys, ["run", "--out", str(out)],
             f"--out {str(out)!r}: directory {str(out.parent)!r} does not exist")
    assert not out.parent.exists()


def test_run_out_under_a_file(no_work, capsys):
    (no_work / "f").write_text("")
    out = no_work / "f" / "Y.npy"
    _refused(capsys, ["run", "--out", str(out)],
             f"--out {str(out)!r}: {str(no_work / 'f')!r} is a file, not a directory")


def test_run_out_in_unwritable_directory(no_work, capsys, read_only):
    out = read_only(no_work / "ro") / "Y.npy"
    _refused(capsys, ["run", "--out", str(out)],
             f"--out {str(out)!r}: directory {str(out.parent)!r} is not writable "
             f"(Permission denied)")


def test_run_out_is_a_directory(no_work, capsys):
    (no_work / "d").mkdir()
    _refused(capsys, ["run", "--out", str(no_work / "d")],
             f"--out {str(no_work / 'd')!r} is a directory; name a .npy file (e.g. "
             f"{str(no_work / 'd' / 'Y.npy')!r})")
    assert os.listdir(no_work / "d") == []


@pytest.mark.parametrize("name", ["x.txt", "Y", "y.npz"])
def test_run_out_not_npy(no_work, capsys, name):
    _refused(capsys, ["run", "--out", str(no_work / name)],
             f"--out {str(no_work / name)!r} must name a .npy file (the name must end in .npy)")
    assert not list(no_work.glob(name + "*"))


def test_run_out_exists(no_work, capsys):
    (no_work / "Y.npy").write_bytes(b"mine")
    _refused(capsys, ["run", "--out", str(no_work / "Y.npy")],
             f"--out {str(no_work / 'Y.npy')!r} already exists; --force overwrites it")
    assert (no_work / "Y.npy").read_bytes() == b"mine"


# --- wafertile run: --weights / --activations -----------------------------------------------

def test_run_activations_of_zero_rows(no_work, capsys):
    argv = _layer(no_work, x=np.zeros((0, 8), dtype=np.int64))
    _refused(capsys, argv, f"activations file {str(no_work / 'X.npy')!r} has 0 rows (shape "
                           f"0 x 8); activations need at least one row (B x J)")


def test_run_weights_of_zero_rows(no_work, capsys):
    argv = _layer(no_work, w=np.zeros((0, 8), dtype=np.int64))
    _refused(capsys, argv, f"weights file {str(no_work / 'W.npy')!r} has 0 rows (shape 0 x 8); "
                           f"weights need at least one row (I x J)")


def test_run_activations_of_zero_columns(no_work, capsys):
    argv = _layer(no_work, x=np.zeros((2, 0), dtype=np.int64))
    _refused(capsys, argv, f"activations file {str(no_work / 'X.npy')!r} has 0 columns (shape "
                           f"2 x 0); activations need at least one column (B x J)")


@pytest.mark.parametrize("text", ["1,2,3\n4,5,6\n", "1 2 3\n4 5 6\n"])
def test_run_weights_csv_or_text(no_work, capsys, text):
    argv = _layer(no_work)
    (no_work / "w.csv").write_text(text)
    argv[argv.index("--weights") + 1] = str(no_work / "w.csv")
    _refused(capsys, argv,
             f"weights file {str(no_work / 'w.csv')!r} is not a .npy file (numpy's .npy "
             f"format: np.save); a CSV file converts with np.save({str(no_work / 'w.npy')!r}, "
             f"np.loadtxt({str(no_work / 'w.csv')!r}, delimiter=',', dtype=np.int64))")


def test_run_weights_npz(no_work, capsys):
    argv = _layer(no_work)
    np.savez(no_work / "w.npz", w=np.ones((4, 8), dtype=np.int64))
    argv[argv.index("--weights") + 1] = str(no_work / "w.npz")
    _refused(capsys, argv, f"weights file {str(no_work / 'w.npz')!r} is an .npz archive "
                           f"(np.savez), not a .npy file; save the one array with np.save")


def test_run_weights_object_array(no_work, capsys):
    argv = _layer(no_work)
    np.save(no_work / "W.npy", np.array([[1, "a"], [None, 2]], dtype=object), allow_pickle=True)
    _refused(capsys, argv, f"weights file {str(no_work / 'W.npy')!r} holds an object (pickled) "
                           f"array (object); it must hold numbers (bool, integer or float)")


@pytest.mark.parametrize("dtype", ["timedelta64[s]", "datetime64[D]", "complex128", "<U3"])
def test_run_weights_not_numbers(no_work, capsys, dtype):
    argv = _layer(no_work)
    np.save(no_work / "W.npy", np.ones((4, 8)).astype(dtype))
    what = {"m": "timedelta", "M": "datetime", "c": "complex", "U": "string"}[np.dtype(dtype).kind]
    _refused(capsys, argv, f"weights file {str(no_work / 'W.npy')!r} holds a {what} array "
                           f"({np.dtype(dtype)}); it must hold numbers (bool, integer or float)")


def test_run_weights_random_bytes_no_csv_hint(no_work, capsys):
    """Binary junk is not told to convert itself from CSV (the hint is for text files)."""
    argv = _layer(no_work)
    (no_work / "W.npy").write_bytes(bytes(range(256)) * 4)
    _refused(capsys, argv, f"weights file {str(no_work / 'W.npy')!r} is not a .npy file "
                           f"(numpy's .npy format: np.save)")


def test_run_weights_header_claims_more_than_the_file(no_work, capsys):
    """A small file whose header claims 100000 x 100000 is refused from the header, before
    anything is allocated."""
    argv = _layer(no_work)
    header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += b" " * (117 - len(header)) + b"\n"
    (no_work / "W.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                                    + header + bytes(64))
    _refused(capsys, argv, f"weights file {str(no_work / 'W.npy')!r} is truncated: its header "
                           f"says 100000 x 100000 int64 (74.5 GiB), but the file holds 64 bytes "
                           f"of data")


def test_run_weights_fifo_does_not_hang(no_work, capsys):
    argv = _layer(no_work)
    (no_work / "W.npy").unlink()
    os.mkfifo(no_work / "W.npy")
    _refused(capsys, argv, f"weights file {str(no_work / 'W.npy')!r} is a FIFO (named pipe); "
                           f"wafertile reads regular files only")


@pytest.mark.parametrize("shape", [(8,), (2, 2, 8), ()])
def test_run_weights_not_2d(no_work, capsys, shape):
    argv = _layer(no_work, w=np.ones(shape, dtype=np.int64))
    _refused(capsys, argv, f"weights file {str(no_work / 'W.npy')!r} holds a {len(shape)}-D "
                           f"array of shape {shape}; weights must be 2-D (I x J)")


def test_run_weights_empty_file(no_work, capsys):
    argv = _layer(no_work)
    (no_work / "W.npy").write_bytes(b"")
    _refused(capsys, argv, f"weights file {str(no_work / 'W.npy')!r} is empty, not a .npy file "
                           f"(numpy's .npy format: np.save)")


def test_run_weights_damaged(no_work, capsys):
    argv = _layer(no_work)
    data = (no_work / "W.npy").read_bytes()
    (no_work / "W.npy").write_bytes(data[:-8])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == (f"wafertile: error: weights file {str(no_work / 'W.npy')!r} is truncated: "
                   f"its header says 4 x 8 int64 (256 bytes), but the file holds 248 bytes of "
                   f"data\n")


def test_run_weights_directory(no_work, capsys):
    argv = _layer(no_work)
    (no_work / "W.npy").unlink()
    (no_work / "W.npy").mkdir()
    _refused(capsys, argv,
             f"weights file {str(no_work / 'W.npy')!r} is a directory, not a file")


# --- wafertile generate -o ------------------------------------------------------------------

@pytest.fixture
def gen_dir(tmp_path, monkeypatch):
    """A directory for generate; emit() must not be called (replaced by a failure)."""
    monkeypatch.setattr("wafertile.hdl.generate.emit", _forbidden("emit"))
    return tmp_path


def test_generate_output_is_a_file(gen_dir, capsys):
    (gen_dir / "out").write_text("mine")
    _refused(capsys, [*GEN, "-o", str(gen_dir / "out")],
             f"-o {str(gen_dir / 'out')!r} is a file, not a directory")
    assert (gen_dir / "out").read_text() == "mine"


def test_generate_output_under_a_file(gen_dir, capsys):
    (gen_dir / "f").write_text("")
    out = gen_dir / "f" / "a" / "b"
    _refused(capsys, [*GEN, "-o", str(out)],
             f"-o {str(out)!r} cannot be created: {str(gen_dir / 'f')!r} is a file, not a "
             f"directory")


def test_generate_output_unwritable(gen_dir, capsys, read_only):
    out = read_only(gen_dir / "ro")
    _refused(capsys, [*GEN, "-o", str(out)],
             f"-o directory {str(out)!r} is not writable (Permission denied)")
    _refused(capsys, [*GEN, "-o", str(out / "new")],
             f"-o {str(out / 'new')!r} cannot be created: directory {str(out)!r} is not "
             f"writable (Permission denied)")
    assert os.listdir(out) == []


@pytest.mark.parametrize("manifest", [None, '{"generator": "someone else"}', "not json"])
def test_generate_refuses_files_it_did_not_write(gen_dir, capsys, manifest):
    (gen_dir / "wafertile_mac.v").write_text("// mine\n")
    present = "wafertile_mac.v"
    if manifest is not None:
        (gen_dir / "manifest.json").write_text(manifest)
        present += ", manifest.json"
    _refused(capsys, [*GEN, "-o", str(gen_dir)],
             f"-o {str(gen_dir)!r} already holds {present}, not written by wafertile generate "
             f"(no manifest.json of wafertile); --force overwrites")
    assert (gen_dir / "wafertile_mac.v").read_text() == "// mine\n"
    assert not (gen_dir / "wafertile_mac.core").exists()


def test_generate_output_file_name_is_a_directory(gen_dir, capsys):
    (gen_dir / "manifest.json").mkdir()
    _refused(capsys, [*GEN, "--force", "-o", str(gen_dir)],
             f"-o {str(gen_dir)!r}: manifest.json is a directory, so the file manifest.json "
             f"cannot be written")


def test_generate_force_overwrites(tmp_path, capsys):
    (tmp_path / "wafertile_mac.v").write_text("// mine\n")
    assert main([*GEN, "-o", str(tmp_path)]) == 2
    assert main([*GEN, "--force", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "wafertile_mac.v").read_text().startswith("/*")
    assert set(os.listdir(tmp_path)) >= MAC_FILES


def test_generate_rewrites_its_own_output(tmp_path, capsys):
    """A rerun into the directory of an earlier generate (another block, other parameters)
    needs no --force: manifest.json says the files are wafertile's."""
    assert main([*GEN, "-o", str(tmp_path)]) == 0
    first = (tmp_path / "wafertile_mac.v").read_text()
    assert main([*GEN, "--data-width", "16", "--acc-width", "32", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "wafertile_mac.v").read_text() != first
    assert main(["generate", "--block", "sram", "-o", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["generator"] == "wafertile" and manifest["block"] == "sram"


def test_generate_next_to_other_files(tmp_path, capsys):
    """Files of other names in the directory are no reason to refuse."""
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*GEN, "-o", str(tmp_path)]) == 0
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --- wafertile synth ------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["--freq", "0"], "--freq must be a positive frequency in MHz, not 0"),
    (["--freq", "-5"], "--freq must be a positive frequency in MHz, not -5"),
    (["--freq", "inf"], "--freq must be a positive frequency in MHz, not inf"),
    (["--pnr-timeout", "-1"],
     "--pnr-timeout must be a positive number of minutes or 0 (no limit), not -1"),
    (["--seed", "-3"], "--seed must be an integer >= 0, not -3"),
    (["--board", "ulx3s-85f", "--baud", "-5"],
     "--baud must be a positive integer (bits per second), not -5"),
])
def test_synth_bad_flag(no_work, capsys, argv, message):
    _refused(capsys, ["synth", "--block", "mac", *argv, "--build-dir", str(no_work / "b")],
             message)
    assert not (no_work / "b").exists()


def test_synth_build_dir_is_a_file(no_work, capsys):
    (no_work / "b").write_text("mine")
    _refused(capsys, ["synth", "--block", "mac", "--force", "--build-dir", str(no_work / "b")],
             f"--build-dir {str(no_work / 'b')!r} is a file, not a directory")


def test_synth_build_dir_under_a_file(no_work, capsys):
    (no_work / "f").write_text("")
    _refused(capsys, ["synth", "--block", "mac", "--build-dir", str(no_work / "f" / "b")],
             f"--build-dir {str(no_work / 'f' / 'b')!r} cannot be created: "
             f"{str(no_work / 'f')!r} is a file, not a directory")


def test_synth_build_dir_unwritable(no_work, capsys, read_only):
    out = read_only(no_work / "ro")
    _refused(capsys, ["synth", "--block", "mac", "--build-dir", str(out)],
             f"--build-dir directory {str(out)!r} is not writable (Permission denied)")


def test_synth_build_dir_not_ours(no_work, capsys):
    (no_work / "b").mkdir()
    (no_work / "b" / "thesis.tex").write_text("mine")
    _refused(capsys, ["synth", "--block", "mac", "--build-dir", str(no_work / "b")],
             f"--build-dir {str(no_work / 'b')!r} is a non-empty directory that is not a "
             f"wafertile build directory (no {BUILD_MARK}); --force builds in it")
    assert os.listdir(no_work / "b") == ["thesis.tex"]


class _FakeSynth:
    """Stands in for run_synth: records the build directory, reports a fit."""

    def __init__(self):
        self.dirs = []

    def __call__(self, block, config, target, *, build_dir=None, **kwargs):
        self.dirs.append(build_dir)
        logging.getLogger("wafertile.synth.flow").info("synthesizing with yosys")
        return self

    fits = True

    def text(self):
        return "fits"

    def as_json(self):
        return {"fits": True}


def test_synth_build_dir_force_and_rerun(tmp_path, capsys, monkeypatch):
    """--force builds in a foreign directory and marks it; reruns need no --force; an empty
    or new directory needs none either. Progress goes to stderr, the JSON alone to stdout."""
    fake = _FakeSynth()
    monkeypatch.setattr("wafertile.synth.flow.run_synth", fake)
    bdir = tmp_path / "b"
    bdir.mkdir()
    (bdir / "thesis.tex").write_text("mine")
    argv = ["synth", "--block", "mac", "--json", "--build-dir", str(bdir)]
    assert main(argv) == 2 and fake.dirs == []
    capsys.readouterr()
    assert main([*argv, "--force"]) == 0
    assert (bdir / BUILD_MARK).is_file() and (bdir / "thesis.tex").read_text() == "mine"
    assert main(argv) == 0
    assert main(["synth", "--block", "mac", "--build-dir", str(tmp_path / "new" / "c")]) == 0
    assert (tmp_path / "new" / "c" / BUILD_MARK).is_file()
    assert fake.dirs == [bdir, bdir, tmp_path / "new" / "c"]
    captured = capsys.readouterr()
    assert captured.out.splitlines()[:2] == ['{"fits": true}', '{"fits": true}']
    assert captured.err == "wafertile synth: synthesizing with yosys\n" * 3


# --- --force and progress of wafertile run --------------------------------------------------

def test_run_force_overwrites_out(tmp_path, capsys, monkeypatch):
    from wafertile.run import RunReport

    y = np.arange(8).reshape(2, 4)

    def fake_run_layer(config, x, w, **kwargs):
        logging.getLogger("wafertile.run").info("simulating")
        return RunReport(passed=True, cycles=10, nnz=32, macs=64, macs_per_tile=[10] * 6,
                         utilization=0.5, dense_cycles=None, speedup=None, total_cycles=20,
                         injection_ports=2, sim="verilator", build_dir="b", wall_seconds=0.1,
                         mismatches=0), y

    monkeypatch.setattr("wafertile.run.run_layer", fake_run_layer)
    out = tmp_path / "Y.npy"
    out.write_bytes(b"old")
    argv = [*_layer(tmp_path), "--json", "--out", str(out)]
    assert main(argv) == 2
    capsys.readouterr()
    assert main([*argv, "--force"]) == 0
    np.testing.assert_array_equal(np.load(out), y)
    captured = capsys.readouterr()
    assert json.loads(captured.out)["pass"] is True
    assert captured.err == "wafertile run: simulating\n"


# --- argparse's own errors, and --help ------------------------------------------------------

@pytest.mark.parametrize("argv", [["run", "--batch", "abc"], ["generate", "--nope"],
                                  ["synth", "--target", "xc7a35t"]])
def test_argparse_error_is_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.fullmatch(rf"wafertile: error: .+ \(see 'wafertile {argv[0]} --help'\)\n", err)


def _commands():
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", ["generate", "run", "lint", "synth"])
def test_help_explains_every_option(command):
    """Every option has a help text; an argparse default is shown through %(default)."""
    parser = _commands()[command]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings} has no help"
        if action.default is not None and not isinstance(action, argparse._StoreTrueAction):
            assert "%(default" in action.help, f"{command} {action.option_strings}"
    flags = {s for a in parser._actions for s in a.option_strings}
    assert ("--force" in flags) == (command != "lint")   # every command that writes files


def test_run_help_has_no_doubled_percent(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "%%" not in out and "10% density" in out
