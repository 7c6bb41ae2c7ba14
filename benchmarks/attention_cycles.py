#!/usr/bin/env python3
"""What causal self-attention costs on the fabric (issue 19, ``docs/attention.md``): cycles per
step on the RTL (Verilator harness), from the projection's accumulators to the outputs.

For each case (array, positions ``T``, heads ``H`` of ``D``, bf16, the nonlinear unit), random
``q``, ``k``, ``v`` (seeded) are written into their accumulators and
:func:`wafertile.stream.attention.attention_program` runs; every output word is checked
against :func:`wafertile.sim.models.attention.attention` (bit for bit). Printed and written
as JSON per step (queries, scores, softmax, values, outputs): cycles, phases, host flits,
MACs (done and skipped, as the phases count them); and for the two products (scores and
outputs) their cycles against ``MACs / tiles``, the MAC-rate bound of issue 19's target
(1.2x).

    python benchmarks/attention_cycles.py --json benchmarks/results-attention-cycles.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from wafertile import Config
from wafertile.run import simulate
from wafertile.sim.models.attention import attention
from wafertile.stream.attention import STEPS, AttentionLayout, attention_program

#: (rows, cols, T, heads, D)
CASES = [(8, 4, 8, 4, 16), (8, 8, 8, 8, 8)]


def _words(rng, shape):
    x = rng.normal(0, 1, shape).astype(np.float32)
    return x.view(np.uint32)


def run_case(rows, cols, T, heads, D, seed=0, build_root=None):
    cfg = Config(rows=rows, cols=cols, dtype="bf16", nonlinear=True, act_depth=256,
                 acc_depth=128)
    layout = AttentionLayout(cfg, T, heads, D)
    rng = np.random.default_rng(seed)
    q, k, v = (_words(rng, (T, heads * D)) for _ in range(3))
    program, labels = attention_program(layout, q, k, v)
    want = attention(q, k, v, heads, cfg.dtype)["out"]
    t0 = time.time()
    run = simulate(cfg, [program], sim="verilator", build_root=build_root)
    (y, stats), = run.results
    exact = bool(np.array_equal(np.asarray(y, np.int64) & 0xFFFFFFFF, want))
    steps = {}
    for name in STEPS:
        idx = [n for n, label in enumerate(labels) if label == name]
        steps[name] = {
            "cycles": int(sum(stats["phase_cycles"][n] for n in idx)),
            "phases": len(idx),
            "host_flits": int(sum(len(program.phases[n]) for n in idx)),
            "macs": int(sum(program.phases[n].expected_macs for n in idx)),
        }
    tiles = rows * cols
    for name in ("scores", "outputs"):
        s = steps[name]
        s["mac_bound_cycles"] = s["macs"] / tiles
        s["over_bound"] = s["cycles"] / s["mac_bound_cycles"]
    total = sum(s["cycles"] for s in steps.values())
    return {"rows": rows, "cols": cols, "T": T, "heads": heads, "D": D, "dtype": cfg.dtype,
            "exact": exact, "seed": seed, "attention_cycles": total, "steps": steps,
            "share": {name: steps[name]["cycles"] / total for name in STEPS},
            "wall_s": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="the first case only")
    args = parser.parse_args(argv)
    results = []
    for case in CASES[:1] if args.quick else CASES:
        r = run_case(*case)
        results.append(r)
        print(f"{r['rows']} x {r['cols']}, T {r['T']}, {r['heads']} heads of {r['D']}: "
              f"{r['attention_cycles']} cycles, exact {r['exact']} ({r['wall_s']} s)")
        for name in STEPS:
            s = r["steps"][name]
            extra = (f", {s['over_bound']:.2f}x MACs/tiles ({s['mac_bound_cycles']:.0f})"
                     if "over_bound" in s else "")
            print(f"  {name:8s} {s['cycles']:6d} cycles ({100 * r['share'][name]:4.1f}%), "
                  f"{s['phases']:3d} phases, {s['host_flits']:5d} host flits, "
                  f"{s['macs']:6d} MACs{extra}")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"),
                                         "cases": results}, indent=1) + "\n")
    return 0 if all(r["exact"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
