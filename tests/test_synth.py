"""Synthesis checks: the SRAM bank maps to block RAM and the multiplier to a DSP; the quick
cell count runs the same Yosys command as ``wafertile synth``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wafertile import Config
from wafertile.hdl.core.units import operand_width
from wafertile.hdl.generate import BLOCKS
from wafertile.synth import yosys
from wafertile.synth.flow import TARGETS, run_synth
from wafertile.synth.targets import SYNTH_COMMANDS
from wafertile.synth.yosys import synth_cells

pytestmark = pytest.mark.synth

#: operand width of one DSP block: ECP5's MULT18X18D, iCE40's SB_MAC16
DSP_WIDTH = {"ecp5": 18, "ice40": 16}


#: Yosys's smallest product on a DSP block (``mul2dsp``'s ``DSP_Y_MINWIDTH`` in
#: ``synth_ice40 -dsp``; ECP5 never splits an 18-bit operand): a smaller one stays in LUTs
DSP_Y_MIN = {"ecp5": 0, "ice40": 11}


def expected_dsps(config: Config, family: str) -> int:
    """DSP blocks of one tile core: its one multiplier (the hand-off multiplies on the
    MAC's), whose operands are ``operand_width(config)`` bits (18 with the hand-off unit),
    split by Yosys into chunks of the family's block width; every pair of chunks is a block
    unless its product is narrower than :data:`DSP_Y_MIN`."""
    family = family.split("-")[0]
    width = DSP_WIDTH[family]
    w = operand_width(config)
    chunks = [min(width, w - k) for k in range(0, w, width)]
    return sum(a + b >= DSP_Y_MIN[family] for a in chunks for b in chunks)


@pytest.mark.parametrize("handoff", [True, False])
def test_core_ecp5_uses_bram_and_dsp(handoff):
    config = Config(handoff=handoff)
    cells = synth_cells("core", config, "ecp5")
    # 512 x 16 activations and 512 x 32 accumulators: one DP16KD each (1024x18 / 512x36).
    assert cells.get("DP16KD") == 2, cells
    assert cells.get("MULT18X18D") == expected_dsps(config, "ecp5"), cells
    # No memory bits in flip-flops: 2 x 512 words would be > 24k FFs.
    assert cells.get("TRELLIS_FF", 0) < 500, cells


def test_sram_ecp5_is_bram():
    cells = synth_cells("sram", Config(), "ecp5")
    assert cells.get("DP16KD") == 2, cells
    # Only the read-during-write bypass is logic: registers for an address compare and the
    # written word of each bank (9 + 16 + 9 + 32 bits), never the memory itself.
    assert cells.get("TRELLIS_FF", 0) <= 2 * 9 + 16 + 32 + 2, cells


@pytest.mark.parametrize("handoff", [True, False])
def test_core_ice40_uses_ebr_and_dsp(handoff):
    config = Config(data_width=8, acc_width=24, handoff=handoff)
    cells = synth_cells("core", config, "ice40")
    # SB_RAM40_4K is 512 x 8 at this depth: 1 for 512 x 8 activations, 3 for 512 x 24 accs.
    assert cells.get("SB_RAM40_4K") == 4, cells
    assert cells.get("SB_MAC16") == expected_dsps(config, "ice40"), cells
    ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    assert ffs < 500, cells


@pytest.mark.parametrize("target", list(TARGETS))
def test_quick_count_and_flow_share_the_synthesis_command(target, tmp_path, monkeypatch):
    # No Yosys run: the Verilog and Yosys itself are stand-ins; what is checked is the script
    # that each path would give Yosys.
    top = BLOCKS["mac"].top
    scripts = []

    def emit(block, config, outdir):
        path = Path(outdir) / f"{top}.v"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"module {top}(clk, rst, a, y);\n  input clk;\n  input rst;\n"
                        f"  input [7:0] a;\n  output [7:0] y;\nendmodule\n")
        return {"verilog": path}

    def run_logged(cmd, cwd, log, what, pattern=None, timeout=None):
        scripts.append(cmd[-1])
        stat = {"design": {"num_cells_by_type": {"LUT4": 3, "SB_LUT4": 3}}}
        (Path(cwd) / "stat.json").write_text(json.dumps(stat))
        return 0

    monkeypatch.setattr("wafertile.hdl.generate.emit", emit)
    monkeypatch.setattr(yosys, "run_logged", run_logged)
    monkeypatch.setattr(yosys, "tool", lambda name: name)
    monkeypatch.chdir(tmp_path)
    family = TARGETS[target].family
    assert synth_cells("mac", Config(), family) == {"LUT4": 3, "SB_LUT4": 3}
    report = run_synth("mac", Config(), target, build_dir=tmp_path / "b", synth_only=True)
    assert report.luts == 3 and report.fmax_mhz is None
    quick, full = scripts
    flow_top = top if family == "ecp5" else "wafertile_io_shell"
    assert SYNTH_COMMANDS[family].format(top=top) in quick
    assert SYNTH_COMMANDS[family].format(top=flow_top) in full
    assert not hasattr(yosys, "TARGETS")   # one table of devices, in synth.targets
