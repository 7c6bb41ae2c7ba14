#!/usr/bin/env python3
"""Weight-streaming benchmark: cycles and speedup from sparsity vs weight density, on the RTL.

For each array size and density, a random I x J layer (batch = the array's rows) is streamed
through the generated array on a simulator (``wafertile.run.run_layer``); Y is checked
against numpy on every point. The dense stream (every weight sent, zeros included) is measured
once per array size, on the RTL too. Prints a table, writes JSON and, with matplotlib, a PNG.

    python benchmarks/stream.py --mesh 4x4 --json stream.json --plot stream.png
    python benchmarks/stream.py --mesh 4x4 --mesh 8x8 --densities 0.01,0.05,0.1,0.5,1

Figures per point: ``cycles`` (stream phase), ``bound`` = nnz / injection ports, ``fill`` =
rows + cols + 4 (injection, one cycle per router to the far corner, the core's pipeline),
``ratio`` = cycles / (bound + fill) (target <= 1.2), ``speedup`` = dense cycles / cycles and
its ratio to 1 / density (target >= 0.8), ``utilization`` = MACs / (tiles x cycles).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wafertile import Config
from wafertile.run import default_layer, run_layer


def _mesh(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"mesh must look like 4x4, not {text!r}") from None
    return r, c


def _densities(text: str) -> list[float]:
    try:
        out = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"densities must be numbers like 0.1,0.5, "
                                         f"not {text!r}") from None
    if not all(0 < d <= 1 for d in out):
        raise argparse.ArgumentTypeError(f"densities must be in (0, 1], not {text!r}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", type=_mesh, action="append",
                    help="array size RxC (repeatable; default 4x4)")
    ap.add_argument("--densities", type=_densities,
                    default=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
                    help="weight densities (default 0.01,0.02,0.05,0.1,0.2,0.5,1)")
    ap.add_argument("--size", type=int, default=256,
                    help="layer size: I = J = SIZE (default 256)")
    ap.add_argument("--sim", choices=["verilator", "icarus"], default="verilator")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("stream.json"), metavar="FILE")
    ap.add_argument("--plot", type=Path, default=None, metavar="PNG",
                    help="write a plot (needs matplotlib: pip install 'wafertile[bench]')")
    args = ap.parse_args(argv)
    if args.plot is not None:
        try:
            import matplotlib
            matplotlib.use("Agg")
        except ImportError:
            ap.error("--plot needs matplotlib: pip install 'wafertile[bench]'")

    results = []
    for rows, cols in args.mesh or [(4, 4)]:
        cfg = Config(rows=rows, cols=cols, act_depth=max(512, args.size))
        dense_cycles = None
        print(f"== {rows} x {cols} array, layer {rows} x {args.size} @ {args.size} x "
              f"{args.size}.T on {args.sim}", flush=True)
        print(f"{'density':>8} {'nnz':>7} {'cycles':>7} {'bound':>7} {'ratio':>6} "
              f"{'speedup':>8} {'x dens':>7} {'util':>6} {'pass':>5}", flush=True)
        for n, density in enumerate(sorted(args.densities, reverse=True)):
            x, w = default_layer(cfg, density=density, seed=args.seed, size=args.size)
            start = time.perf_counter()
            report, _ = run_layer(cfg, x, w, sim=args.sim, dense=(n == 0))
            if report.dense_cycles is not None:
                dense_cycles = report.dense_cycles
            bound = report.nnz / report.injection_ports
            fill = rows + cols + 4
            point = {
                "rows": rows, "cols": cols, "density": density, "nnz": report.nnz,
                "cycles": report.cycles, "bound": bound, "fill": fill,
                "ratio": report.cycles / (bound + fill),
                "dense_cycles": dense_cycles,
                "speedup": dense_cycles / report.cycles if report.cycles else None,
                "utilization": report.utilization, "pass": report.passed,
                "wall_seconds": round(time.perf_counter() - start, 1),
            }
            point["speedup_vs_ideal"] = (point["speedup"] * density
                                         if point["speedup"] is not None else None)
            results.append(point)
            print(f"{density:8.3f} {report.nnz:7d} {report.cycles:7d} {bound:7.0f} "
                  f"{point['ratio']:6.2f} {point['speedup']:8.2f} "
                  f"{point['speedup_vs_ideal']:7.2f} {100 * report.utilization:5.1f}% "
                  f"{'yes' if report.passed else 'NO':>5}", flush=True)
    args.json.write_text(json.dumps({"sim": args.sim, "size": args.size, "points": results},
                                    indent=2) + "\n")
    print(f"wrote {args.json}")
    if args.plot is not None:
        import matplotlib.pyplot as plt
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for rows, cols in args.mesh or [(4, 4)]:
            pts = [p for p in results if (p["rows"], p["cols"]) == (rows, cols)]
            d = [p["density"] for p in pts]
            a1.loglog(d, [p["cycles"] for p in pts], "o-", label=f"{rows}x{cols} RTL")
            a1.loglog(d, [p["bound"] + p["fill"] for p in pts], "--",
                      label=f"{rows}x{cols} nnz/ports + fill")
            a2.loglog(d, [p["speedup"] for p in pts], "o-", label=f"{rows}x{cols}")
        dd = sorted({p["density"] for p in results})
        a2.loglog(dd, [1 / v for v in dd], "k--", label="1 / density")
        a2.loglog(dd, [0.8 / v for v in dd], "k:", label="0.8 / density (target)")
        a1.set(xlabel="weight density", ylabel="stream cycles", title="cycles")
        a2.set(xlabel="weight density", ylabel="dense cycles / sparse cycles",
               title="speedup from sparsity")
        a1.legend()
        a2.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")
    return 0 if all(p["pass"] for p in results) else 1


if __name__ == "__main__":
    sys.exit(main())
