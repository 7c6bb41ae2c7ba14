#!/usr/bin/env python3
"""Training steps of the digits chain on the RTL (the default 4 x 4 array, Verilator harness):
cycles per part of a step against the forward pass, flits across the edge, and every logit
and gradient checked against the reference (issue 18's targets; docs/training.md).

The chain 64-128-64-10 with ReLU from ``wafertile.trainer.random_network`` (a fixed random
mask of 20% of the weights, seed 0; and the dense chain for the sparsity speedup), Adam at
``lr`` 0.003, batches of 32 digits (8 groups of 4 rows), ``--steps`` steps.

    python benchmarks/train_rtl.py --json benchmarks/results-train-rtl.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wafertile import Config
from wafertile.train import ParameterStore, TrainConfig
from wafertile.trainer import batches, digits_data, random_network
from wafertile.trainer.rtl import ROLES, RtlFabric

SIZES = (64, 128, 64, 10)


def run(dtype: str, density: float, steps: int, batch: int) -> dict:
    config = Config(dtype=dtype)
    start = time.perf_counter()
    fabric = RtlFabric(config)
    build = time.perf_counter() - start
    x_train, _x_test, y_train, _y_test = digits_data(dtype)
    w, b, m = random_network(SIZES, density, 0)
    store = ParameterStore(w, b, m, TrainConfig(dtype=dtype, lr=0.003))
    records = []
    start = time.perf_counter()
    for idx in batches(len(x_train), batch, steps, 0):
        r = fabric.step(store.stream_weights(), store.biases, store.masks, x_train[idx],
                        y_train[idx], float(store.scale))
        store.apply(r.dw, r.db)
        records.append(r)
    wall = time.perf_counter() - start
    last = records[-1]
    nnz = int(sum(mask.sum() for mask in m))
    biases = sum(SIZES[1:])
    return {
        "dtype": dtype, "density": density, "nnz": nnz, "steps": steps, "batch": batch,
        "exact": all(r.exact for r in records),
        "losses": [r.reference.loss for r in records],
        "step_cycles": last.cycles["total"],
        "cycles": {k: last.cycles[k] for k in ROLES},
        "step_over_forward": round(last.cycles["total"] / last.cycles["forward"], 3),
        "grad_flits_per_step": (nnz + biases) * -(-batch // config.rows),
        "flits_in": last.flits_in, "flits_out": last.flits_out,
        "harness_seconds_per_step": round(sum(r.seconds for r in records) / steps, 3),
        "seconds_per_step": round(wall / steps, 3), "build_seconds": round(build, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps per run (default 3)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    runs = [run("bf16", 0.2, args.steps, 32), run("fp16", 0.2, args.steps, 32),
            run("bf16", 0.1, 1, 32), run("bf16", 1.0, 1, 32)]
    for r in runs:
        print(f"{r['dtype']} density {r['density']}: {r['step_cycles']} cycles a step of "
              f"{r['batch']} ({r['step_over_forward']}x the forward pass "
              f"{r['cycles']['forward']}), by part {r['cycles']}; exact {r['exact']}; flits in "
              f"{r['flits_in']}, out {r['flits_out']}; {r['seconds_per_step']} s a step "
              f"({r['harness_seconds_per_step']} s in the harness)")
    sparse, dense = runs[2], runs[3]
    speedup = dense["step_cycles"] / sparse["step_cycles"]
    print(f"sparsity: a step at 10% density {sparse['step_cycles']} cycles, dense "
          f"{dense['step_cycles']}: {speedup:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "sparsity_speedup_10pct": speedup},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
