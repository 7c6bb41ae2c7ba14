"""Synthesis checks: the SRAM bank maps to block RAM and the multiplier to a DSP."""

from __future__ import annotations

import pytest

from wafertile import Config
from wafertile.synth.yosys import synth_cells

pytestmark = pytest.mark.synth


def test_core_ecp5_uses_bram_and_dsp():
    cells = synth_cells("core", Config(), "ecp5")
    # 512 x 16 activations and 512 x 32 accumulators: one DP16KD each (1024x18 / 512x36).
    assert cells.get("DP16KD") == 2, cells
    assert cells.get("MULT18X18D") == 1, cells
    # No memory bits in flip-flops: 2 x 512 words would be > 24k FFs.
    assert cells.get("TRELLIS_FF", 0) < 500, cells


def test_sram_ecp5_is_bram():
    cells = synth_cells("sram", Config(), "ecp5")
    assert cells.get("DP16KD") == 2, cells
    # Only the read-during-write bypass is logic: registers for an address compare and the
    # written word of each bank (9 + 16 + 9 + 32 bits), never the memory itself.
    assert cells.get("TRELLIS_FF", 0) <= 2 * 9 + 16 + 32 + 2, cells


def test_core_ice40_uses_ebr_and_dsp():
    cells = synth_cells("core", Config(data_width=8, acc_width=24), "ice40")
    # SB_RAM40_4K is 512 x 8 at this depth: 1 for 512 x 8 activations, 3 for 512 x 24 accs.
    assert cells.get("SB_RAM40_4K") == 4, cells
    assert cells.get("SB_MAC16") == 1, cells
    ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    assert ffs < 500, cells
