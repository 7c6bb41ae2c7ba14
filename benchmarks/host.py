"""Host-side speed of ``wafertile run``: a 2048 x 512 layer at 50% density (524k nonzero
weights) on the default 4 x 4 array, on the compiled Verilator harness.

Usage::

    python benchmarks/host.py [--json host.json] [--outputs 2048] [--inputs 512] [--density 0.5]

Prints and writes: wall time, the simulator's own time and cycles per second, and the
host-side steps (compile, program I/O and reply collection, numpy reference). The target
(docs/performance.md) is host-side time below the simulator's own time, and end to end at
least 10x faster than the 43 s measured before the host side was vectorized (on this layer:
flit packing 27 s, reference 5 s, compiler 3.5 s, harness 2.4 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from wafertile import Config
from wafertile.run import run_layer

BEFORE_SECONDS = 43.0  # the same layer before vectorizing (docs/performance.md)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=int, default=2048, help="I (default %(default)s)")
    parser.add_argument("--inputs", type=int, default=512, help="J (default %(default)s)")
    parser.add_argument("--density", type=float, default=0.5, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=1, help="default %(default)s")
    parser.add_argument("--no-dense", action="store_true",
                        help="skip the dense stream (the configuration of the 43 s baseline: "
                             "536k flits packed, one simulation)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    cfg = Config()
    rng = np.random.default_rng(args.seed)
    x = rng.integers(cfg.data_min, cfg.data_max + 1, (cfg.rows, args.inputs))
    w = rng.integers(cfg.data_min, cfg.data_max + 1, (args.outputs, args.inputs))
    w[rng.random(w.shape) >= args.density] = 0
    run_layer(cfg, x[:, :8], w[:4, :8])  # build (or find) the harness first: not timed
    start = time.perf_counter()
    report, _ = run_layer(cfg, x, w, dense=not args.no_dense)
    wall = time.perf_counter() - start
    host = sum(v for k, v in report.seconds.items() if k not in ("simulate", "build"))
    out = {
        "layer": {"outputs": args.outputs, "inputs": args.inputs, "batch": cfg.rows,
                  "density": args.density, "nnz": report.nnz},
        "dense_stream_too": not args.no_dense,
        "pass": report.passed, "wall_seconds": round(wall, 2),
        "simulator_seconds": round(report.seconds["simulate"], 2),
        "host_seconds": round(host, 2), "steps": report.as_json()["seconds"],
        "sim_cycles_per_s": report.as_json()["sim_cycles_per_s"],
        "cycles": report.cycles, "dense_cycles": report.dense_cycles,
        "total_simulated_cycles": report.total_cycles + (report.dense_cycles or 0),
        "speedup_vs_before": round(BEFORE_SECONDS / wall, 1),
        "targets": {"host_below_simulator": host < report.seconds["simulate"],
                    "ten_times_faster": BEFORE_SECONDS / wall >= 10},
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
