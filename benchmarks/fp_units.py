#!/usr/bin/env python3
"""FPGA resources and fmax of the floating-point units (``wafertile.hdl.core.fp``), the
numbers of docs/float.md.

Each unit is converted with ``amaranth.back.verilog`` and synthesized alone with the Yosys
command of ``wafertile synth`` (ECP5: ``synth_ecp5 -nowidelut``; ``wafertile.synth.yosys``):
its LUT4 sites (LUT4 + 2 per CCU2C carry cell), flip-flops and DSPs. With ``--pnr`` the unit is
also wrapped between input and output registers and placed and routed out of context with
nextpnr-ecp5 (LFE5U-85F, as ``wafertile synth --target ecp5-85k``): fmax is then the
register-to-register speed of the unit's logic, the wrapper's registers included.

    python benchmarks/fp_units.py                  # Yosys counts of every unit (~1 min)
    python benchmarks/fp_units.py --pnr --json fp.json   # and fmax (a few minutes)
    python benchmarks/fp_units.py --unit add2 --pnr
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from wafertile.hdl.core.fp import FpAdd, FpMul, FpToHalf
from wafertile.hdl.core.nonlinear import NonlinearUnit
from wafertile.synth.nextpnr import run_nextpnr
from wafertile.synth.targets import TARGETS
from wafertile.synth.yosys import NETLIST, estimate, run_yosys

UNITS = {
    "mul-fp16": lambda: FpMul("fp16"),
    "mul-fp16-s2": lambda: FpMul("fp16", stages=2),
    "mul-bf16": lambda: FpMul("bf16"),
    "mul-bf16-s2": lambda: FpMul("bf16", stages=2),
    "mul-fp32": lambda: FpMul("fp32"),
    "mul-fp32-s2": lambda: FpMul("fp32", stages=2),
    "add": lambda: FpAdd(),
    "add-s2": lambda: FpAdd(stages=2),
    "to-fp16": lambda: FpToHalf("fp16"),
    "to-bf16": lambda: FpToHalf("bf16"),
    # the nonlinear unit (docs/nonlinear.md): the programs' ROM, registers, FpAdd, FpMul fp32
    "nonlinear": lambda: NonlinearUnit(),
    "nonlinear-s2": lambda: NonlinearUnit(stages=2),
}


class Registered(wiring.Component):
    """``unit`` between a register on every input and one on every output."""

    def __init__(self, unit: wiring.Component):
        self._unit = unit
        super().__init__({name: member for name, member in unit.signature.members.items()})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        for name, member in self.signature.members.items():
            port, inner = getattr(self, name), getattr(unit, name)
            reg = Signal(member.shape, name=f"{name}_reg")
            if member.flow == In:
                m.d.sync += reg.eq(port)
                m.d.comb += inner.eq(reg)
            else:
                m.d.sync += reg.eq(inner)
                m.d.comb += port.eq(reg)
        return m


def measure(name: str, pnr: bool, freq: float = 100.0) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"fp-{name}-", dir=".")).resolve()
    try:
        (work / "unit.v").write_text(verilog.convert(UNITS[name](), name="unit"))
        cells = run_yosys(["unit.v"], "unit", "ecp5", work, netlist=None)
        row = {"unit": name, **estimate(cells, "ecp5"), "cells": cells}
        if pnr:
            (work / "top.v").write_text(verilog.convert(Registered(UNITS[name]()), name="top"))
            est = estimate(run_yosys(["top.v"], "top", "ecp5", work, netlist=NETLIST), "ecp5")
            placed = run_nextpnr(TARGETS["ecp5-85k"], work, NETLIST, est, freq=freq)
            row.update(fmax_mhz=placed.fmax_mhz, pnr_used=placed.used,
                       critical_path=placed.critical_path)
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unit", action="append", choices=list(UNITS),
                        help="only this unit (repeatable; default: all)")
    parser.add_argument("--pnr", action="store_true", help="also place and route for fmax")
    parser.add_argument("--json", type=Path, help="write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    print("| unit | LUT4 sites | FF | DSP | fmax (MHz, registered in and out) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.unit or list(UNITS):
        row = measure(name, args.pnr)
        rows.append(row)
        fmax = f"{row['fmax_mhz']:.1f}" if row.get("fmax_mhz") else "-"
        print(f"| {name} | {row['luts']} | {row['ffs']} | {row['dsps']} | {fmax} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
