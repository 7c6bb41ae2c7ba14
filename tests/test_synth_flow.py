"""``wafertile synth``: place-and-route reports, the fit check, board bitstreams, bad input."""

from __future__ import annotations

import json

import pytest

from wafertile import Config
from wafertile.cli import main
from wafertile.synth.flow import TARGETS, run_synth
from wafertile.synth.nextpnr import unrouted
from wafertile.synth.shell import io_shell

from .test_synth import expected_dsps

pytestmark = pytest.mark.synth

KEYS = {"target", "luts", "ffs", "brams", "dsps", "fits", "fmax_mhz", "utilization"}


# with --run-slow: the default run places and routes for the UP5K in
# test_icebreaker_bitstream
@pytest.mark.slow
def test_mac_on_up5k(tmp_path):
    config = Config(data_width=8, acc_width=24)
    report = run_synth("mac", config, "ice40-up5k", build_dir=tmp_path / "b")
    dsps = expected_dsps(config, "ice40")
    assert report.fits and report.dsps == dsps, report
    assert 0 < report.luts < TARGETS["ice40-up5k"].luts
    assert report.fmax_mhz and report.fmax_mhz > 10
    assert report.utilization["dsps"] == pytest.approx(dsps / 8)
    assert (tmp_path / "b" / "nextpnr.log").exists() and (tmp_path / "b" / "yosys.log").exists()
    assert report.critical_path and report.critical_path["delay_ns"] > 0
    assert "FITS" in report.text()


def test_core_on_ecp5_out_of_context(tmp_path):
    report = run_synth("core", Config(), "ecp5-25k", build_dir=tmp_path)
    # SRAM bank in block RAM, multipliers in DSPs, nothing added for pins.
    assert (report.brams, report.dsps, report.fits) == (2, expected_dsps(Config(), "ecp5"),
                                                        True), report
    assert report.ffs < 600  # registers only: the banks alone would be 24k flip-flops
    assert report.shell_ffs == 0


@pytest.mark.slow
def test_does_not_fit_is_said_plainly(tmp_path, capsys):
    # 8192 x 16 activations need 32 SB_RAM40_4K; the UP5K has 30.
    rc = main(["synth", "--block", "sram", "--target", "ice40-up5k", "--act-depth", "8192",
               "--acc-depth", "16", "--json", "--build-dir", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert set(out) >= KEYS
    assert out["fits"] is False and out["brams"] > 30
    assert "does not fit" in out["message"] and "brams" in out["message"]


def test_cli_json_keys(tmp_path, capsys):
    rc = main(["synth", "--block", "mac", "--target", "ice40-up5k", "--data-width", "8",
               "--acc-width", "24", "--json", "--build-dir", str(tmp_path)])
    captured = capsys.readouterr()
    out = json.loads(captured.out)   # stdout is only the JSON object
    assert rc == 0 and set(out) >= KEYS and out["fits"] is True
    assert out["target"] == "ice40-up5k"
    assert "yosys" in captured.err    # progress goes to stderr
    # what was built: the flags over the defaults
    want = Config(data_width=8, acc_width=24).as_dict()
    assert out["config"] == want and out["config"]["data_width"] == 8


def test_the_report_says_what_was_built(tmp_path):
    """The ECP5 router profile fills the flags not given; the report's ``config`` and its
    text's ``built with`` line say which router was built."""
    from wafertile.synth.flow import fpga_config

    cfg = fpga_config("ecp5", {"rows": 2, "cols": 2}, source="test")
    report = run_synth("router", cfg, "ecp5-85k", build_dir=tmp_path, synth_only=True)
    assert report.config == cfg.as_dict()
    assert (report.config["router_arch"], report.config["phits"]) == ("lite", 4)
    assert "built with  int16, router lite (4 phits, 2 VCs x 2 flits), handoff true" in \
        report.text()


@pytest.mark.parametrize("argv, message", [
    (["--freq", "0"], "--freq must be a positive"),
    (["--freq", "-5"], "--freq must be a positive"),
    (["--pnr-timeout", "-1"], "--pnr-timeout must be a positive number of minutes or 0"),
])
def test_bad_arguments(argv, message, capsys):
    assert main(["synth", "--block", "mac", *argv]) == 2
    assert message in capsys.readouterr().err


def test_unknown_target_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--target", "xc7a35t"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_io_shell_feeds_every_port():
    text = ("module top(clk, rst, a, b, y);\n  input clk;\n  input rst;\n"
            "  input [3:0] a;\n  input b;\n  output [2:0] y;\nendmodule\n")
    shell, nin, nout = io_shell(text, "top")
    assert (nin, nout) == (5, 3)
    assert ".a(chain[3:0])" in shell and ".b(chain[4:4])" in shell
    assert ".y(outs[2:0])" in shell and "sout <= ^outs" in shell


@pytest.mark.slow  # about 45 s (place, route, pack); the default run synthesizes for ECP5
def test_icebreaker_bitstream(tmp_path):
    from wafertile.synth.boards import board_config, build_board
    config = board_config("icebreaker", {})
    result = build_board("icebreaker", config, build_dir=tmp_path)
    assert result.fits, result.message
    assert result.bitstream and result.bitstream.endswith(".bin")
    assert (tmp_path / "wafertile_icebreaker.bin").stat().st_size > 100_000
    assert result.dsps == expected_dsps(config, "ice40") and result.brams >= 1


@pytest.mark.slow
def test_ulx3s_bitstream(tmp_path):
    from wafertile.synth.boards import build_board
    config = Config(rows=2, cols=2)
    result = build_board("ulx3s-85f", config, build_dir=tmp_path)
    assert result.fits, result.message
    assert result.bitstream and result.bitstream.endswith(".bit")
    assert result.dsps == 4 * expected_dsps(config, "ecp5") and result.brams >= 8


@pytest.mark.slow  # 23 s of synthesis; the default run has the other refusals
def test_array_too_big_is_told_from_one_tile(tmp_path):
    # Four 8/24-bit tiles need about 4 x 1 900 logic cells; the UP5K has 5 280.
    cfg = Config(rows=2, cols=2, data_width=8, acc_width=24, act_depth=256, acc_depth=256,
                 buffer_depth=2)
    report = run_synth("array", cfg, "ice40-up5k", build_dir=tmp_path)
    assert report.fits is False
    assert report.luts > 5280 and "4 x one tile" in report.message
    assert "luts" in report.message and "--full" in report.message
    assert "--handoff false" in report.message
    assert report.dsps == 4 * expected_dsps(cfg, "ice40") and report.brams >= 4


def test_bad_router_is_rejected():
    with pytest.raises(ValueError, match="--router must be"):
        run_synth("mac", Config(), "ecp5-25k", router="router3")


def test_pnr_timeout_stops_nextpnr_and_says_so(tmp_path, capsys):
    # One second is not enough for nextpnr to load the 85k device and place a router.
    rc = main(["synth", "--block", "router", "--target", "ecp5-85k", "--json",
               "--pnr-timeout", str(1 / 60), "--build-dir", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["fits"] is False and out["routed"] is False
    assert "did not finish in" in out["message"] and "--pnr-timeout 0" in out["message"]
    assert out["luts"] > 500 and out["fmax_mhz"] is None   # the Yosys counts (lite router)


@pytest.mark.parametrize("log, expect", [
    ("Info: \t        TRELLIS_COMB:   37078/  83640    44%\nInfo: Running router2...\n"
     "Info:     iter=1 wires=598674 overused=48700 overuse=56986 archfail=NA\n"
     "Info:     iter=2 wires=617487 overused=35458 overuse=39234 archfail=NA\n",
     ["does not route on", "placed (37078 LUT4 sites, 44%) but",
      "router2: 35458 wires still overused after 2 iterations", "congestion"]),
    ("Info: \t        TRELLIS_COMB:   30879/  83640    37%\nInfo: Routing globals...\n"
     "Info:      50000 |    14194      35805 |  370   630 |     17638|       0.58      33.04|\n"
     "Info:      51000 |    14545      36454 |  351   649 |     17084|       0.58      33.61|\n",
     ["placed (30879 LUT4 sites", "router1: 17084 arcs still to route"]),
    ("Info: Creating initial analytic placement for 29813 cells\n",
     ["did not place on", "placement did not finish in 30 min"]),
])
def test_unrouted_report_reads_the_log(log, expect):
    est = {"luts": 40000, "ffs": 5000, "brams": 32, "dsps": 16}
    result = unrouted(est, log, TARGETS["ecp5-85k"], 1800)
    assert result.fits is False and result.routed is False and result.fmax_mhz is None
    for text in expect:
        assert text in result.message, result.message
    placed = [text for text in expect if text.startswith("placed (")]
    if placed:
        assert result.used["luts"] == int(placed[0].split("(")[1].split()[0])
    else:
        assert result.used == est


def test_ecp5_defaults_to_the_fpga_router_profile():
    from wafertile.synth.boards import board_config
    from wafertile.synth.flow import FPGA_PROFILE, fpga_config

    cfg = fpga_config("ecp5", {"rows": 8, "cols": 8}, source="test")
    assert (cfg.router_arch, cfg.phits, cfg.buffer_depth) == ("lite", 4, 2) \
        == tuple(FPGA_PROFILE.values())
    # the user's router settings win
    assert fpga_config("ecp5", {"router_arch": "compact"}, source="test") == \
        Config(router_arch="compact")
    assert fpga_config("ecp5", {"phits": 2}, source="test").phits == 2
    # link slices asked for, the profile's phits under them
    sliced = fpga_config("ecp5", {"link_slice": True}, source="test")
    assert (sliced.router_arch, sliced.phits, sliced.link_slice) == ("lite", 4, True)
    # a flit too narrow for 4 phits (16-bit header, 53-bit flit) gets as many as fit: 3
    narrow = fpga_config("ecp5", {"rows": 8, "cols": 8, "data_width": 8, "acc_width": 16},
                         source="test")
    assert narrow.phits == 3 and narrow.phit_width >= narrow.header_width
    # iCE40 has no LUT RAM: its defaults are the fabric's
    assert fpga_config("ice40", {}, source="test") == Config()
    assert board_config("ulx3s-85f", {}).router_arch == "lite"
    assert board_config("icebreaker", {}).router_arch == "compact"
