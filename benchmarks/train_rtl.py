#!/usr/bin/env python3
"""Training steps of the digits chain on the RTL (the default 4 x 4 array, Verilator harness):
cycles per part of a step against the forward pass, flits across the edge, and every logit
and gradient checked against the reference (issue 18's targets; docs/training.md).

The chain 64-128-64-10 with ReLU from ``wafertile.trainer.random_network`` (a fixed random
mask of 20% of the weights, seed 0; and the dense chain for the sparsity speedup), Adam at
``lr`` 0.003, batches of 32 digits (8 groups of 4 rows), ``--steps`` steps; and one step
of 4 random inputs (one group) of the large chain 256-512-128-10 at 10% and 100% density on
the same array with ``act_depth`` 1024, and of the wider chain 512-1024-256-10 with
``act_depth`` 2048 (the sparsity speedup grows with the widths: the hand-offs grow with the
outputs, the streams and GRAD chains with the weights).

    python benchmarks/train_rtl.py --json benchmarks/results-train-rtl.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape

from wafertile import Config
from wafertile.hdl.core.fp import float_format
from wafertile.hdl.flit import flit_layout
from wafertile.train import ParameterStore, TrainConfig
from wafertile.trainer import batches, digits_data, random_network
from wafertile.trainer.compiler import StepCompiler, step_layout
from wafertile.trainer.rtl import ROLES, RtlFabric

SIZES = (64, 128, 64, 10)
#: A large chain (198 k weights dense; 907 activation words a tile: act_depth 1024).
LARGE = (256, 512, 128, 10)
WIDER = (512, 1024, 256, 10)


def run(dtype: str, density: float, steps: int, batch: int, sizes=SIZES,
        act_depth: int = 512) -> dict:
    config = Config(dtype=dtype, act_depth=act_depth)
    start = time.perf_counter()
    fabric = RtlFabric(config)
    build = time.perf_counter() - start
    if tuple(sizes) == SIZES:
        x_train, _x_test, y_train, _y_test = digits_data(dtype)
    else:  # a large chain: inputs uniform in [0, 1) (numbers of the format), random labels
        rng = np.random.default_rng(0)
        fmt = float_format(dtype)
        x_train = fmt.values(fmt.bits(rng.random((batch * steps, sizes[0]), np.float32)))
        y_train = rng.integers(0, sizes[-1], batch * steps)
    w, b, m = random_network(sizes, density, 0)
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
    biases = sum(sizes[1:])
    # the decoupling: what a tile keeps does not depend on the parameters; what streams does
    groups = -(-batch // config.rows)
    template = StepCompiler(config, store.stream_weights(), store.biases, store.masks).template
    weight_flits = groups * sum(len(p) for p in template.phases if p.kind == "stream")
    flit_bytes = (Shape.cast(flit_layout(config)).width + 7) // 8
    return {
        "sizes": list(sizes), "act_depth": act_depth,
        "memory_words_per_tile": max(step_layout(config, list(sizes)).values()) + 1,
        "weight_flits_per_step": weight_flits,
        "weight_bytes_per_step": weight_flits * flit_bytes,
        "gradient_flits_per_step": (nnz + biases) * groups,
        "flit_bytes": flit_bytes,
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
            run("bf16", 0.1, 1, 32), run("bf16", 1.0, 1, 32),
            run("bf16", 0.1, 1, 4, LARGE, 1024), run("bf16", 1.0, 1, 4, LARGE, 1024),
            run("bf16", 0.1, 1, 4, WIDER, 2048), run("bf16", 1.0, 1, 4, WIDER, 2048)]
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
    large = runs[5]["step_cycles"] / runs[4]["step_cycles"]
    print(f"sparsity, the large chain {LARGE}: a step of 4 at 10% density "
          f"{runs[4]['step_cycles']} cycles, dense {runs[5]['step_cycles']}: {large:.2f}x")
    wider = runs[7]["step_cycles"] / runs[6]["step_cycles"]
    print(f"sparsity, the wider chain {WIDER}: a step of 4 at 10% density "
          f"{runs[6]['step_cycles']} cycles, dense {runs[7]['step_cycles']}: {wider:.2f}x "
          f"(target 8x: {'met' if wider >= 8 else 'MISSED'})")
    print(f"decoupling: {dense['nnz'] / sparse['nnz']:.1f}x the parameters (dense against 10%): "
          f"memory per tile {sparse['memory_words_per_tile']} -> "
          f"{dense['memory_words_per_tile']} words; weights streamed per step "
          f"{sparse['weight_bytes_per_step']} -> {dense['weight_bytes_per_step']} bytes "
          f"({dense['weight_bytes_per_step'] / sparse['weight_bytes_per_step']:.1f}x)")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "sparsity_speedup_10pct": speedup,
                                         "sparsity_speedup_10pct_large": large,
                                         "sparsity_speedup_10pct_wider": wider},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
