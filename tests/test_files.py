"""The input/output gate (wafertile.files) and the commands that go through it: regular
files only, headers checked against the file, outputs never through a link, nothing deleted
that wafertile did not make, nothing half-written on a refusal."""

from __future__ import annotations

import io
import os
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

from wafertile import files
from wafertile.cli import main
from wafertile.errors import InputError

#: a block that generates in well under a second
GEN = ["generate", "--block", "mac", "--data-width", "8", "--acc-width", "16"]
#: the smallest workload of a sweep spec
WORKLOAD = '[[workloads]]\nkind = "random"\ninputs = 8\noutputs = 8\ndensity = 0.5\n'


def _refused(capsys, argv, message):
    """Run ``argv``: exit status 2 and exactly ``wafertile: error: message``, nothing else."""
    code = main(argv)
    captured = capsys.readouterr()
    assert (code, captured.err) == (2, f"wafertile: error: {message}\n")
    assert captured.out == ""


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and content digest (links unresolved)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path)] = ("link", os.readlink(path))
        elif path.is_dir():
            out[str(path)] = ("dir",)
        elif path.is_file():
            out[str(path)] = ("file", path.read_bytes())
        else:
            out[str(path)] = ("special",)
    return out


# --- inputs --------------------------------------------------------------------------------

def test_read_text_refuses_special_and_large_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match=r"^spec 'x' is a FIFO \(named pipe\); wafertile "
                                         r"reads regular files only$"):
        files.read_text(tmp_path / "fifo", "spec 'x'")
    with pytest.raises(InputError, match=r"^spec 'x' is a device; wafertile reads regular "
                                         r"files only$"):
        files.read_text("/dev/zero", "spec 'x'")
    (tmp_path / "big").write_text("a" * 2000)
    with pytest.raises(InputError, match=r"^spec 'x' is 2.0 KiB, more than the 1.0 KiB a "
                                         r"text input may have$"):
        files.read_text(tmp_path / "big", "spec 'x'", cap=1024)
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match=r"^spec 'x' is not a text \(UTF-8\) file$"):
        files.read_text(tmp_path / "bin", "spec 'x'")
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(InputError, match=r"^spec 'x' is a symbolic link to a missing file$"):
        files.read_text(tmp_path / "link", "spec 'x'")
    (tmp_path / "ok").write_text("a = 1\n")
    assert files.read_text(tmp_path / "ok", "spec") == "a = 1\n"


def test_read_npy_checks_the_header_against_the_file_and_the_budget(tmp_path, monkeypatch):
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(files.read_npy(tmp_path / "a.npy", "a"), a)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    assert np.array_equal(files.read_npy(tmp_path / "f.npy", "a"), a)
    monkeypatch.setenv("WAFERTILE_MEMORY_BUDGET", "40")
    with pytest.raises(InputError, match=r"^a holds a 3 x 4 int32 array of 48 bytes, more than "
                                         r"the memory budget of 40 bytes"):
        files.read_npy(tmp_path / "a.npy", "a")


def _npz_with_lying_member(path: Path) -> None:
    """An .npz whose member 'w0' claims 100000 x 100000 float64 in 64 bytes of data."""
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += b" " * (117 - len(header)) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(64)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("format.npy", _npy(np.array("wafertile-network/1")))
        z.writestr("w0.npy", member)


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_network_npz_member_that_claims_more_than_it_holds(tmp_path, capsys):
    _npz_with_lying_member(tmp_path / "net.npz")
    _refused(capsys, ["run", "--network", str(tmp_path / "net.npz")],
             f"network file {str(tmp_path / 'net.npz')!r}, key 'w0', is truncated: its header "
             f"says 100000 x 100000 float64 (74.5 GiB), but the file holds 64 bytes of data")


def test_network_npz_random_bytes_no_pickle_advice(tmp_path, capsys):
    (tmp_path / "net.npz").write_bytes(bytes(range(256)) * 8)
    _refused(capsys, ["run", "--network", str(tmp_path / "net.npz")],
             f"network file {str(tmp_path / 'net.npz')!r} is not a .npz archive (File is not "
             f"a zip file)")


def test_network_npz_object_member(tmp_path, capsys):
    np.savez(tmp_path / "net.npz", format=np.array("wafertile-network/1"),
             w0=np.array([[1, None]], dtype=object))
    _refused(capsys, ["run", "--network", str(tmp_path / "net.npz")],
             f"network file {str(tmp_path / 'net.npz')!r}, key 'w0', holds an object (pickled) "
             f"array (object); it must hold numbers (bool, integer or float) or text")


def _onnx_with_lying_initializer(path: Path) -> None:
    """A one-MatMul model whose weight claims 100000 x 100000 values and holds 4."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])
    del w.dims[:]  # onnx.helper checks the count; a file made elsewhere need not
    w.dims.extend([100000, 100000])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 100000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 100000])], [w])
    onnx.save(helper.make_model(graph), str(path))


def test_onnx_initializer_that_claims_more_than_it_holds(tmp_path, capsys):
    _onnx_with_lying_initializer(tmp_path / "m.onnx")
    _refused(capsys, ["run", "--network", str(tmp_path / "m.onnx"), "--dtype", "fp16"],
             f"ONNX file {str(tmp_path / 'm.onnx')!r}, initializer 'W' claims 10000000000 "
             f"values (dims [100000, 100000]) but holds 4")


def test_onnx_nan_initializer(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [1.0, float("nan"), 3.0, 4.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    _refused(capsys, ["run", "--network", str(tmp_path / "m.onnx"), "--dtype", "fp16"],
             f"ONNX file {str(tmp_path / 'm.onnx')!r}, initializer 'W' holds NaN or infinite "
             f"values")


@pytest.mark.parametrize("command", [["run"], ["generate", "--block", "mac"],
                                     ["formal", "--block", "route"]])
def test_binary_config_is_one_line(tmp_path, capsys, command):
    (tmp_path / "c.toml").write_bytes(bytes(range(256)))
    _refused(capsys, [*command, "--config", str(tmp_path / "c.toml")],
             f"configuration file {str(tmp_path / 'c.toml')!r} is not a text (UTF-8) file")


def test_endless_config_is_refused(capsys):
    _refused(capsys, ["generate", "--config", "/dev/zero"],
             "configuration file '/dev/zero' is a device; wafertile reads regular files only")


def test_sweep_spec_fifo_does_not_hang(tmp_path, capsys):
    os.mkfifo(tmp_path / "s.toml")
    _refused(capsys, ["sweep", str(tmp_path / "s.toml"), "--dry-run"],
             f"sweep spec {str(tmp_path / 's.toml')!r} is a FIFO (named pipe); wafertile reads "
             f"regular files only")


def test_sweep_grid_of_millions_is_counted_before_it_is_built(tmp_path, capsys):
    values = ", ".join(str(n) for n in range(1, 101))
    (tmp_path / "s.toml").write_text(
        f'measure = ["run"]\n[grid]\nrows = [{values}]\ncols = [{values}]\n'
        f'act_depth = [{", ".join(str(16 << n) for n in range(13))}]\n' + WORKLOAD)
    code = main(["sweep", str(tmp_path / "s.toml"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "make 130000 configurations, more than the 100000 a sweep may have" in err


# --- outputs -------------------------------------------------------------------------------

def test_probe_not_os_access(capsys):
    """/proc passes os.access for root; a probe file shows it cannot be written."""
    _refused(capsys, [*GEN, "-o", "/proc/wafertile-g"],
             "-o '/proc/wafertile-g' cannot be created: directory '/proc' is not writable "
             "(No such file or directory)")


def test_run_out_symlink_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WAFERTILE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "elsewhere.npy").write_text("the user's")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "Y.npy").symlink_to(tmp_path / "elsewhere.npy")
    _refused(capsys, ["run", "--out", str(tmp_path / "out" / "Y.npy"), "--force"],
             f"--out {str(tmp_path / 'out' / 'Y.npy')!r} is a symbolic link; wafertile does "
             f"not write through links (name the file itself)")
    assert (tmp_path / "elsewhere.npy").read_text() == "the user's"


def test_generate_does_not_write_through_a_link(tmp_path, capsys):
    (tmp_path / "theirs.v").write_text("// the user's\n")
    out = tmp_path / "out"
    assert main([*GEN, "-o", str(out)]) == 0
    (out / "wafertile_mac.v").unlink()
    (out / "wafertile_mac.v").symlink_to(tmp_path / "theirs.v")
    capsys.readouterr()
    _refused(capsys, [*GEN, "-o", str(out)],
             f"-o {str(out)!r}: wafertile_mac.v is a symbolic link; wafertile does not write "
             f"through links (remove it, or name another directory)")
    assert (tmp_path / "theirs.v").read_text() == "// the user's\n"


def test_generate_over_another_block_removes_the_old_files(tmp_path, capsys):
    """Item 13: the array's .v and .core do not stay beside a manifest that says tile (here:
    mac, then sram)."""
    assert main([*GEN, "-o", str(tmp_path)]) == 0
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["generate", "--block", "sram", "--data-width", "8", "--acc-width", "16",
                 "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json", "notes.txt", "wafertile_sram.core", "wafertile_sram.v"]


def test_write_is_atomic_and_replaces_a_link_not_its_target(tmp_path):
    (tmp_path / "target").write_text("keep")
    (tmp_path / "out").symlink_to(tmp_path / "target")
    files.write_text(tmp_path / "out", "new")
    assert (tmp_path / "target").read_text() == "keep"
    assert not (tmp_path / "out").is_symlink() and (tmp_path / "out").read_text() == "new"

    class Boom(Exception):
        pass

    def fill(f):
        f.write(b"half")
        raise Boom

    with pytest.raises(Boom):
        files._write(tmp_path / "out", fill)
    assert (tmp_path / "out").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "target"]


def test_remove_own_dir_only_deletes_what_wafertile_made(tmp_path):
    mine = tmp_path / "users"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"is a directory that wafertile did not make"):
        files.remove_own_dir(mine, flag="--work-dir")
    assert (mine / "notes.txt").read_text() == "mine"
    own = files.make_own_dir(tmp_path / "own", what="a test")
    (own / "x").write_text("")
    files.remove_own_dir(own, flag="--work-dir")
    assert not own.exists()
    (tmp_path / "link").symlink_to(mine)
    with pytest.raises(InputError, match=r"is a symbolic link"):
        files.remove_own_dir(tmp_path / "link", flag="--work-dir")
    assert (mine / "notes.txt").exists()


def test_formal_never_deletes_the_users_directory(tmp_path, capsys, monkeypatch):
    """Item 19: a check's directory under --work-dir that wafertile did not make is refused
    before any work; the user's file in it stays."""
    monkeypatch.setattr("wafertile.formal.sby.run_check",
                        lambda *a, **k: pytest.fail("a check ran"))
    check = tmp_path / "work" / "route_4x5"
    check.mkdir(parents=True)
    (check / "mine.txt").write_text("mine")
    before = _tree(tmp_path)
    _refused(capsys, ["formal", "--block", "route", "--work-dir", str(tmp_path / "work")],
             f"--work-dir: {str(check)!r} is a directory that wafertile did not make (no "
             f"{files.OWN_MARK}); move it away or name another directory")
    assert _tree(tmp_path) == before


def test_formal_work_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "w").write_text("mine")
    _refused(capsys, ["formal", "--block", "route", "--work-dir", str(tmp_path / "w")],
             f"--work-dir {str(tmp_path / 'w')!r} is a file, not a directory")


def test_sweep_unreachable_scheduler_writes_nothing(tmp_path, capsys):
    """Items 11 and 23: refused before the output directory is made."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "s.toml").write_text('measure = ["run"]\n[grid]\nrows = [1, 2]\n' + WORKLOAD)
    _refused(capsys, ["sweep", str(tmp_path / "s.toml"), "-o", str(tmp_path / "out"),
                      "--scheduler", f"tcp://127.0.0.1:{port}"],
             f"--scheduler 'tcp://127.0.0.1:{port}' cannot be reached (Connection refused); "
             f"start one with `dask scheduler`, or leave --scheduler out for a local cluster")
    assert not (tmp_path / "out").exists()


def test_sweep_resume_does_not_write_through_a_linked_table(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".wafertile-sweep").write_text("")
    (tmp_path / "theirs.csv").write_text("the user's\n")
    (out / "results.csv").symlink_to(tmp_path / "theirs.csv")
    (tmp_path / "s.toml").write_text('measure = ["run"]\n[grid]\nrows = [1, 2]\n' + WORKLOAD)
    _refused(capsys, ["sweep", str(tmp_path / "s.toml"), "-o", str(out), "--resume"],
             f"-o {str(out)!r}: results.csv is a symbolic link; wafertile does not write "
             f"through links (remove it, or name another directory)")
    assert (tmp_path / "theirs.csv").read_text() == "the user's\n"


@pytest.mark.parametrize("case", ["not-ours", "empty", "plots-file", "not-a-table"])
def test_sweep_plot_refusals(tmp_path, capsys, case):
    d = tmp_path / "d"
    d.mkdir()
    (d / "results.csv").write_text("id,status,measurement\n")
    if case != "not-ours":
        (d / ".wafertile-sweep").write_text("")
    if case == "plots-file":
        (d / "results.csv").write_text("id,status,measurement\nabc,ok,run\n")
        (d / "plots").write_text("mine")
    if case == "not-a-table":
        (d / "results.csv").write_text("a,b\n1,2\n")
    before = _tree(tmp_path)
    message = {
        "not-ours": f"--plot {str(d)!r} holds no results.csv of a wafertile sweep (the -o DIR "
                    f"of a `wafertile sweep`, marked by .wafertile-sweep)",
        "empty": f"--plot {str(d)!r}: results.csv has no rows to plot",
        "plots-file": f"--plot {str(d)!r}: plots is a file, so the plots cannot be written "
                      f"into a plots directory",
        "not-a-table": f"--plot {str(d)!r}: results.csv is not a sweep's table (no id, status, "
                       f"measurement column)",
    }[case]
    _refused(capsys, ["sweep", "--plot", str(d)], message)
    assert _tree(tmp_path) == before


def test_cache_that_is_a_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "cache").write_text("mine")
    monkeypatch.setenv("WAFERTILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("wafertile.run.run_layer", lambda *a, **k: pytest.fail("ran"))
    _refused(capsys, ["run", "--rows", "1", "--cols", "1", "--size", "4"],
             f"WAFERTILE_CACHE {str(tmp_path / 'cache')!r} is not a directory "
             f"({str(tmp_path / 'cache')!r} is a file)")


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_device_that_is_not_a_serial_port(tmp_path, capsys, kind):
    dev = tmp_path / "tty"
    if kind == "file":
        dev.write_text("")
    else:
        dev.mkdir()
    what = "a regular file" if kind == "file" else "a directory"
    _refused(capsys, ["run", "--device", str(dev)],
             f"--device {str(dev)!r} is {what}, not a serial port (e.g. /dev/ttyUSB0)")


_FORMAT = np.array("wafertile-network/1")
_W = np.ones((2, 2), np.int8)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"layers": np.ones((2, 2), int)}, "layers must be one integer, not an array of shape (2, 2)"),
    ({"input_scale": np.ones(3)},
     "input_scale must be one number, not a float64 array of shape (3,)"),
    ({"input_scale": np.array("x")}, "input_scale must be one number, not a <U1 array of shape ()"),
    ({"name": np.ones((2, 2))}, "name must be one string, not a float64 array of shape (2, 2)"),
    ({"dtype": np.array(5)}, "dtype must be one string, not a int64 array of shape ()"),
    ({"data_width": np.ones((2, 2), int)},
     "data_width must be one integer, not an array of shape (2, 2)"),
])
def test_network_npz_keys_of_the_wrong_kind(tmp_path, capsys, arrays, message):
    """Item 22: every value read from a network file is checked; one line naming the file and
    the key, never a numpy traceback."""
    np.savez(tmp_path / "net.npz", **{"format": _FORMAT, "data_width": 8, "layers": 1,
                                      "w0": _W, **arrays})
    _refused(capsys, ["run", "--network", str(tmp_path / "net.npz"), "--fidelity", "model"],
             f"network file {str(tmp_path / 'net.npz')!r}: {message}")
