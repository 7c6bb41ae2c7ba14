#!/usr/bin/env python3
"""Float tiles against integer tiles: cycles of the same layer on the RTL (issue 14).

For each layer shape and density, one zero pattern is drawn; the integer layer (int16, random
nonzero values) and the float layers (fp16 and bf16, random normal numbers of both signs) put
their nonzeros in the same places, so the compiler makes the same streams (same flits per
port, column and accumulator slot) and any difference in cycles is the tiles' own: the float
core's one-cycle bubble when a flit uses the accumulator the flit just before it writes
(``docs/float.md``). Every point runs the sparse and the dense stream through the Verilator
harness (``wafertile.run.run_layer``) and checks Y bit for bit.

Figures: ``cycles`` (stream phases) and ``total_cycles`` per format, ``ratio`` = float cycles
/ int16 cycles (target <= 1.05 on a dense layer), ``bound`` = the MAC flits that can reach a
tile right behind a MAC for the same accumulator (``wafertile.sim.models.array.port_hazards``:
consecutive MACs of one port for one column and slot), per column, and ``stream_flits``.

    python benchmarks/float_cycles.py --json benchmarks/results-float-cycles.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from wafertile import Config
from wafertile.hdl.core.fp import float_format
from wafertile.run import run_layer
from wafertile.sim.models.array import port_hazards
from wafertile.stream import compile_layer

#: (name, B, I, J, density): J = 1024 over act_depth 512 is split over K = 2 tiles per output.
#: The last is the worst case: 4 outputs on a 4 x 4 array, one per port and column, so each
#: tile gets one output's flits back to back (every MAC right behind one into its accumulator).
LAYERS = [
    ("dense 256x256", 4, 256, 256, 1.0),
    ("sparse 0.1 256x256", 4, 256, 256, 0.1),
    ("sparse 0.01 256x256", 4, 256, 256, 0.01),
    ("dense 64x1024 (K = 2)", 4, 64, 1024, 1.0),
    ("worst: 4 outputs", 4, 4, 256, 1.0),
]
FORMATS = ("int16", "fp16", "bf16")


def _layer(rng, dtype: str, b: int, i: int, j: int, mask: np.ndarray):
    if dtype.startswith("int"):
        x = rng.integers(1, 128, (b, j)) * rng.choice([-1, 1], (b, j))
        w = rng.integers(1, 128, (i, j)) * rng.choice([-1, 1], (i, j))
        return x, np.where(mask, w, 0)
    fmt = float_format(dtype)

    def numbers(shape):
        v = rng.uniform(0.25, 4.0, shape) * rng.choice([-1.0, 1.0], shape)
        return fmt.values(fmt.bits(v.astype(np.float32)))

    return numbers((b, j)), np.where(mask, numbers((i, j)), np.float32(0)).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the points here")
    args = ap.parse_args(argv)
    points = []
    for name, b, i, j, density in LAYERS:
        mask = np.random.default_rng(args.seed).random((i, j)) < density
        row = {"layer": name, "B": b, "I": i, "J": j, "density": density,
               "nnz": int(mask.sum())}
        for dtype in FORMATS:
            cfg = Config(rows=args.rows, cols=args.cols, dtype=dtype)
            x, w = _layer(np.random.default_rng(args.seed + 1), dtype, b, i, j, mask)
            pairs, macs = port_hazards(compile_layer(cfg, x, w))
            start = time.perf_counter()
            report, _ = run_layer(cfg, x, w)
            if not report.passed:
                print(f"{name} {dtype}: FAIL ({report.mismatches} mismatches)", file=sys.stderr)
                return 1
            row[dtype] = {"cycles": report.cycles, "total_cycles": report.total_cycles,
                          "dense_cycles": report.dense_cycles,
                          "utilization": round(report.utilization, 4),
                          "bound": pairs, "stream_flits": macs,
                          "seconds": round(time.perf_counter() - start, 1)}
        for dtype in FORMATS[1:]:
            row[dtype]["ratio"] = round(row[dtype]["cycles"] / row["int16"]["cycles"], 4)
            row[dtype]["dense_ratio"] = round(row[dtype]["dense_cycles"] /
                                              row["int16"]["dense_cycles"], 4)
        points.append(row)
        print(f"{name:24s} nnz {row['nnz']:6d}  int16 {row['int16']['cycles']:6d}  "
              f"fp16 {row['fp16']['cycles']:6d} ({row['fp16']['ratio']:.4f}x)  "
              f"bf16 {row['bf16']['cycles']:6d} ({row['bf16']['ratio']:.4f}x)  "
              f"dense stream {row['int16']['dense_cycles']} / {row['fp16']['dense_cycles']} / "
              f"{row['bf16']['dense_cycles']}  bound {row['fp16']['bound']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "cols": args.cols,
                                         "points": points}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
