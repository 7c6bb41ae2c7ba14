#!/usr/bin/env python3
"""FPGA resources and fmax of every block and of arrays, through ``wafertile synth``.

Each point is one Yosys + nextpnr run (``wafertile.synth.flow.run_synth``, ECP5 out of
context, iCE40 inside the documented 4-pin I/O shell). Prints a Markdown table (the one in
docs/fpga.md) and writes JSON. A design whose Yosys cell counts exceed the device is reported
as not fitting without place-and-route.

    python benchmarks/fpga.py --json fpga.json                       # the docs/fpga.md table
    python benchmarks/fpga.py --target ecp5-85k --point array:4x4     # one point
    python benchmarks/fpga.py --point tile --data-width 8 --acc-width 24
    python benchmarks/fpga.py --fpga-profile --point array:8x8      # the ECP5 default router

Default points: ECP5-85F blocks mac, sram, core, router, tile and arrays 2x2, 4x4, 8x8 (16-bit
data, 32-bit accumulators, 2 VCs); UP5K arrays 1x1 and 2x2 (8-bit data, 24-bit accumulators,
256-word banks, 2-flit buffers: what the iCEBreaker board build uses). The 8x8 array takes
the longest (Yosys on ~64 tiles, then nextpnr if it fits: tens of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from wafertile import Config
from wafertile.synth.flow import TARGETS, fpga_config, run_synth

ECP5_CFG = {"data_width": 16, "acc_width": 32, "num_vcs": 2}
UP5K_CFG = {"data_width": 8, "acc_width": 24, "act_depth": 256, "acc_depth": 256,
            "buffer_depth": 2}
DEFAULT_POINTS = [("ecp5-85k", p, ECP5_CFG) for p in
                  ("mac", "sram", "core", "router", "tile", "array:2x2", "array:4x4",
                   "array:8x8")] + \
                 [("ice40-up5k", p, UP5K_CFG) for p in ("array:1x1", "array:2x2")]


def _point(text: str) -> tuple[str, int, int]:
    block, _, size = text.partition(":")
    if not size:
        return block, 8, 8   # blocks are measured with the 8x8 array's coordinate widths
    try:
        r, c = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"point must look like array:4x4, not {text!r}") \
            from None
    return block, r, c


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=list(TARGETS), default=None,
                        help="only this target (default: the documented set of points)")
    parser.add_argument("--point", action="append", default=None,
                        help="block or array:RxC (repeatable; needs --target)")
    parser.add_argument("--data-width", type=int, default=None)
    parser.add_argument("--acc-width", type=int, default=None)
    parser.add_argument("--fpga-profile", action="store_true",
                        help="ECP5 points with the router profile `wafertile synth` uses on ECP5 "
                             "(lite, 4 phits, 2-flit buffers) instead of the simulation default "
                             "(compact, 2 VCs x 4)")
    parser.add_argument("--freq", type=float, default=50.0, help="MHz (default 50)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--build-root", type=Path, default=Path("bench_build/fpga"))
    args = parser.parse_args(argv)
    # run_synth's progress (INFO of the wafertile loggers) on stderr; the table on stdout
    logging.basicConfig(format="  %(message)s", stream=sys.stderr)
    logging.getLogger("wafertile").setLevel(logging.INFO)

    if args.point:
        target = args.target or "ecp5-85k"
        base = ECP5_CFG if target.startswith("ecp5") else UP5K_CFG
        points = [(target, p, base) for p in args.point]
    else:
        points = [pt for pt in DEFAULT_POINTS if args.target in (None, pt[0])]
    results = []
    print("| target | block | config | LUT4 | FF | BRAM | DSP | fits | fmax MHz | P&R s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for target, text, base in points:
        block, rows, cols = _point(text)
        values = dict(base, rows=rows, cols=cols)
        if args.data_width:
            values["data_width"] = args.data_width
        if args.acc_width:
            values["acc_width"] = args.acc_width
        if args.fpga_profile:
            cfg = fpga_config(TARGETS[target].family, values, source="benchmarks/fpga.py")
        else:
            cfg = Config.from_mapping(values, source="benchmarks/fpga.py")
        start = time.monotonic()
        rep = run_synth(block, cfg, target, freq=args.freq,
                        build_dir=args.build_root / f"{target}-{block}-{rows}x{cols}")
        row = rep.as_json()
        row["wall_seconds"] = round(time.monotonic() - start, 1)
        results.append(row)
        size = f"{rows}x{cols}" if block == "array" else f"({rows}x{cols} widths)"
        fmax = f"{rep.fmax_mhz:.1f}" if rep.fmax_mhz else "-"
        arch = cfg.router_arch + (f" {cfg.phits} phits" if cfg.phits > 1 else "")
        print(f"| {target} | {block} {size} | {cfg.data_width}/{cfg.acc_width} bit, {arch} | "
              f"{rep.luts} ({100 * rep.utilization['luts']:.1f}%) | {rep.ffs} | {rep.brams} | "
              f"{rep.dsps} | {'yes' if rep.fits else 'NO'} | {fmax} | "
              f"{rep.seconds.get('nextpnr', 0):.0f} |", flush=True)
        if args.json:  # after every point, so a long run leaves its partial results
            args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
