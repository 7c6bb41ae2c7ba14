"""The command line: generate, determinism, manifest, help, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from wafertile.cli import main
from wafertile.config import PARAMETERS


def test_generate_core(tmp_path, capsys):
    assert main(["generate", "--block", "core", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wafertile_core.v" in out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["top"] == "wafertile_core"
    assert manifest["parameters"]["data_width"] == 16
    ports = {p["name"]: p for p in manifest["ports"]}
    width = manifest["layouts"]["payload"]["width"]
    assert ports["i__payload"] == {"name": "i__payload", "direction": "input", "width": width,
                                   "layout": "payload"}
    assert ports["o__ready"]["direction"] == "input"
    assert ports["o__valid"]["direction"] == "output"
    fields = manifest["layouts"]["payload"]["fields"]
    assert sum(f["width"] for f in fields) == width
    text = (tmp_path / "wafertile_core.v").read_text()
    for port in ports:
        assert port in text


# the core, the router and the array (which holds the tile and the mesh) by default; the
# others with --run-slow
@pytest.mark.parametrize("block", [*(pytest.param(b, marks=pytest.mark.slow)
                                     for b in ("mac", "sram", "tile", "mesh")),
                                   "core", "router", "array"])
def test_generate_is_deterministic(tmp_path, block):
    args = ["generate", "--block", block, "--data-width", "8", "--acc-width", "20",
            "--rows", "2", "--cols", "3"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert main([*args, "-o", str(tmp_path / "b")]) == 0
    for name in ("manifest.json", f"wafertile_{block}.v", f"wafertile_{block}.core"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def _modules(path):
    return re.findall(r"^module\s+\\?([^\s(]+)", path.read_text(), re.M)


def test_generate_array_default(tmp_path):
    assert main(["generate", "-o", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["top"] == "wafertile_array"
    assert manifest["parameters"]["rows"] == manifest["parameters"]["cols"] == 4
    ports = {p["name"]: p for p in manifest["ports"]}
    for side in "nesw":
        for suffix in ("in__valid", "in__flit", "in__ready", "out__valid", "out__flit",
                       "out__ready"):
            assert ports[f"{side}_{suffix}"]["elements"] == 4
    assert {"header", "payload", "flit", "route"} <= set(manifest["layouts"])
    core = (tmp_path / "wafertile_array.core").read_text()
    assert core.startswith("CAPI=2:\n") and "toplevel: wafertile_array" in core
    assert "- wafertile_array.v" in core


def test_array_module_count_does_not_grow(tmp_path):
    """32 x 32 has the same module definitions as 4 x 4: the tile is emitted once (and the
    array top is written as text, so this takes seconds)."""
    assert main(["generate", "--rows", "4", "--cols", "4", "-o", str(tmp_path / "a")]) == 0
    assert main(["generate", "--rows", "32", "--cols", "32", "-o", str(tmp_path / "b")]) == 0
    small = _modules(tmp_path / "a" / "wafertile_array.v")
    big = _modules(tmp_path / "b" / "wafertile_array.v")
    assert small == big
    assert big.count("wafertile_tile") == 1


def test_flags_override_config_file(tmp_path):
    cfg = tmp_path / "tile.toml"
    cfg.write_text("data_width = 8\nacc_width = 24\noverflow = \"saturate\"\n")
    assert main(["generate", "--config", str(cfg), "--acc-width", "32", "-o",
                 str(tmp_path / "o")]) == 0
    params = json.loads((tmp_path / "o" / "manifest.json").read_text())["parameters"]
    assert (params["data_width"], params["acc_width"], params["overflow"]) == (8, 32, "saturate")


def test_router_arch_flag_selects_the_router(tmp_path):
    """--router-arch parallel emits the other micro-architecture (one RAM per input and VC)."""
    texts = {}
    for arch in ("compact", "parallel"):
        out = tmp_path / arch
        assert main(["generate", "--block", "router", "--router-arch", arch, "-o",
                     str(out)]) == 0
        params = json.loads((out / "manifest.json").read_text())["parameters"]
        assert params["router_arch"] == arch
        texts[arch] = (out / "wafertile_router.v").read_text()
    assert "buf_l0" in texts["parallel"] and "buf_l0" not in texts["compact"]
    assert "buf_l" in texts["compact"]  # one buffer per input


def test_lite_with_phits_generates_phit_links_and_edge_adapters(tmp_path):
    """--router-arch lite --phits 4: the router's mesh ports carry 18-bit phits of the 70-bit
    flit, its local input whole flits; the array keeps whole-flit edge ports through the
    adapters; the manifest says so."""
    out = tmp_path / "lite"
    assert main(["generate", "--rows", "8", "--cols", "8", "--router-arch", "lite", "--phits",
                 "4", "--buffer-depth", "2", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["phits"] == 4
    assert (manifest["derived"]["flit_width"], manifest["derived"]["phit_width"]) == (70, 18)
    assert manifest["verilog_modules"][-3:] == ["wafertile_phit_tx", "wafertile_phit_rx",
                                                "wafertile_array"]
    ports = {p["name"]: p["width"] for p in manifest["ports"]}
    assert ports["w_in__flit"] == 8 * 70  # one whole flit per row
    text = (out / "wafertile_array.v").read_text()
    assert "input [17:0] in_w__phit;" in text and "input [69:0] in_l__flit;" in text
    # a serializer in the edge branch of each side of the generate loops (every edge port)
    assert text.count("wafertile_phit_tx tx (") == 4
    assert text.count("wafertile_phit_rx rx (") == 4


def test_handoff_flag_and_file(tmp_path, capsys):
    """--handoff false / true (any case) and handoff = false in a --config file reach the
    configuration (the manifest lists it); the flag wins over the file."""
    for argv, want in ((["--handoff", "false"], False), (["--handoff", "TRUE"], True), ([], True)):
        out = tmp_path / f"o{len(argv)}{want}"
        assert main(["generate", "--block", "sram", *argv, "-o", str(out)]) == 0
        assert json.loads((out / "manifest.json").read_text())["parameters"]["handoff"] is want
    toml = tmp_path / "t.toml"
    toml.write_text("handoff = false\n")
    for argv, want in (([], False), (["--handoff", "true"], True)):
        out = tmp_path / f"f{len(argv)}"
        assert main(["generate", "--block", "sram", "--config", str(toml), *argv, "-o",
                     str(out)]) == 0
        assert json.loads((out / "manifest.json").read_text())["parameters"]["handoff"] is want
    capsys.readouterr()


@pytest.mark.parametrize(("argv", "toml", "message"), [
    (["--handoff", "maybe"], None, "--handoff must be true or false, not 'maybe'"),
    (["--handoff", "0"], None, "--handoff must be true or false, not '0'"),
    ([], 'handoff = "false"\n', "handoff must be true or false, not 'false'"),
])
def test_bad_handoff_is_one_line_error(tmp_path, capsys, argv, toml, message):
    if toml is not None:
        (tmp_path / "t.toml").write_text(toml)
        argv = [*argv, "--config", str(tmp_path / "t.toml")]
    assert main(["generate", "--block", "core", *argv, "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"wafertile: error: {message}\n"
    assert not (tmp_path / "o").exists()


def test_bad_value_is_one_line_error(tmp_path, capsys):
    assert main(["generate", "--data-width", "12", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "wafertile: error: data_width must be one of 8, 16, not 12\n"
    assert not (tmp_path / "manifest.json").exists()


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text("num_vcs = 1\n")
    assert main(["generate", "--config", str(cfg), "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "wafertile: error: num_vcs must be an integer from 2 to 8, " \
                                      "not 1\n"


def test_help_lists_every_parameter(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for rule in PARAMETERS:
        assert "--" + rule.name.replace("_", "-") in out
    assert "--block" in out and "--output" in out


def test_console_script_version():
    proc = subprocess.run([sys.executable, "-m", "wafertile", "--version"], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.startswith("wafertile ")


@pytest.mark.parametrize("block", ["core", "router", "tile", "array"])
def test_lint_clean(capsys, block):
    assert main(["lint", "--block", block, "--rows", "2", "--cols", "3"]) == 0
    assert "is clean" in capsys.readouterr().out


def test_lint_clean_narrow_accumulators(capsys):
    """8-bit data into 16-bit accumulators: the requantizer's shift register is 5 bits, and
    no mask bit may be a comparison that is constant (lint's CMPCONST)."""
    assert main(["lint", "--block", "mac", "--data-width", "8", "--acc-width", "16"]) == 0
    assert "is clean" in capsys.readouterr().out


def test_lint_reports_findings(monkeypatch, capsys):
    """With no waivers, Amaranth's style warnings must be reported and fail the command."""
    monkeypatch.setattr("wafertile.sim.runner.LINT_WAIVERS", {})
    assert main(["lint", "--block", "sram"]) == 1
    assert "%Warning" in capsys.readouterr().out


def test_progress_goes_to_the_current_stderr(monkeypatch):
    # The handler follows sys.stderr: a stream that was replaced and closed after the set-up
    # (as a test runner's capture is) is never written to.
    import io
    import logging

    from wafertile.log import show_progress

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    show_progress("test")
    first.close()
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("wafertile.test").info("hello")
    assert second.getvalue() == "wafertile test: hello\n"


def test_lint_says_what_it_does(capsys):
    """lint generates its own copy of the block and says so, then runs Verilator (an 8 x 8
    array takes 24 s: no silent stretch; issue 22, item 16)."""
    assert main(["lint", "--block", "mac"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "wafertile lint: generating block 'mac' into a temporary directory"
    assert err[1].startswith("wafertile lint: verilator --lint-only -Wall on its ")


def test_ticking_reports_a_long_step_only(monkeypatch):
    import io
    import logging
    import time

    from wafertile.log import show_progress, ticking

    stream = io.StringIO()
    show_progress("test", stream=stream)
    log = logging.getLogger("wafertile.test")
    with ticking(log, "quick", every=5):
        pass
    with ticking(log, "slow", every=0.05):
        time.sleep(0.3)
    with ticking(log, lambda s: f"at {s:.0f} s", every=0.05):
        time.sleep(0.15)
    lines = stream.getvalue().splitlines()
    assert "quick" not in stream.getvalue()
    assert lines[0] == "wafertile test: slow (0 s so far)" and "wafertile test: at 0 s" in lines
