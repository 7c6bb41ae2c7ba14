#!/usr/bin/env python3
"""Data-parallel training on simulated fabrics (``wafertile.trainer.fabrics``, Dask): the wall
time of a digits training step on one fabric (in this process) and on ``N`` fabrics (a Dask
LocalCluster of ``N`` worker processes), and the steps' equality bit for bit (issue 18's
``--fabrics 2`` target: a step in at most 0.6x the time of one fabric's).

The chain 64-128-64-10 (20% of the weights, seed 0) on the default 4 x 4 bf16 array, Adam at
``lr`` 0.003, ``--steps`` steps of ``--batch`` digits, the same steps on both; the first step
of each (the workers' start) is left out of the medians.

    python benchmarks/train_fabrics.py --json benchmarks/results-train-fabrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from wafertile import Config
from wafertile.train import ParameterStore, TrainConfig
from wafertile.trainer import batches, digits_data, random_network
from wafertile.trainer.fabrics import DaskFabrics
from wafertile.trainer.rtl import RtlFabric

SIZES = (64, 128, 64, 10)


def steps_on(fabric, steps: int, batch: int) -> tuple[list[float], list, list[int]]:
    """Train ``steps`` steps on ``fabric``: each step's wall time, the final master weights,
    each step's cycles on its fabrics."""
    x, _xt, y, _yt = digits_data("bf16")
    w, b, m = random_network(SIZES, 0.2, 0)
    store = ParameterStore(w, b, m, TrainConfig(dtype="bf16", lr=0.003))
    times, cycles = [], []
    for idx in batches(len(x), batch, steps, 0):
        start = time.perf_counter()
        r = fabric.step(store.stream_weights(), store.biases, store.masks, x[idx], y[idx],
                        float(store.scale))
        assert r.exact, r.mismatches
        store.apply(r.dw, r.db)
        times.append(time.perf_counter() - start)
        cycles.append(r.step_cycles)
    return times, [a.copy() for a in store.arrays().values()], cycles


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="steps per run (default 12)")
    parser.add_argument("--batch", type=int, default=32, help="batch (default 32)")
    parser.add_argument("--fabrics", type=int, default=2, help="fabrics (default 2)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    config = Config(dtype="bf16")
    one_t, one_w, one_c = steps_on(RtlFabric(config), args.steps, args.batch)
    with DaskFabrics(config, args.fabrics) as fabrics:
        many_t, many_w, many_c = steps_on(fabrics, args.steps, args.batch)
    equal = all(np.array_equal(np.atleast_1d(a).view(np.uint8), np.atleast_1d(b).view(np.uint8))
                for a, b in zip(one_w, many_w, strict=True))
    one, many = statistics.median(one_t[1:]), statistics.median(many_t[1:])
    out = {"fabrics": args.fabrics, "steps": args.steps, "batch": args.batch,
           "cores": os.cpu_count(), "equal": equal,
           "seconds_per_step_1": round(one, 3), f"seconds_per_step_{args.fabrics}": round(many, 3),
           "ratio": round(many / one, 3),
           "step_cycles_1": one_c[0], f"step_cycles_{args.fabrics}": many_c[0],
           "all_1": [round(t, 3) for t in one_t], f"all_{args.fabrics}": [round(t, 3)
                                                                          for t in many_t]}
    print(f"{args.steps} steps of {args.batch}: {one:.3f} s a step on one fabric, {many:.3f} s "
          f"on {args.fabrics} (Dask, {os.cpu_count()} cores): {many / one:.2f}x; cycles a step "
          f"{one_c[0]} -> {many_c[0]}; master weights equal bit for bit: {equal}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
