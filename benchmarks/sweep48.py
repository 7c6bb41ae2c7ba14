#!/usr/bin/env python3
"""The 48-point sweep of issue 13 on the default LocalCluster, timed: 3 router
micro-architectures x 2 buffer depths x 2 data widths x 4 weight densities, ``run`` only.

Three runs of ``wafertile sweep`` (the command, as a user runs it), all with one fresh cache:

1. cold: every design is built (12 Verilator builds) and every point runs;
2. ``--resume`` on the same output: every point is in the table, nothing may run (checked:
   ``submitted`` must be 0, and no cluster starts);
3. warm: a new output directory, the same cache: no build, every point runs again.

Prints the wall times and points per second, and writes them as JSON.

    python benchmarks/sweep48.py --json benchmarks/results-sweep48.json
    python benchmarks/sweep48.py --mesh 2x2 --workers 2 --no-warm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

SPEC = """\
# The 48-point target sweep of issue 13 (written by benchmarks/sweep48.py).
measure = ["run"]

[base]
rows = {rows}
cols = {cols}

[grid]
router_arch = ["compact", "parallel", "lite"]
buffer_depth = [2, 4]
data_width = [8, 16]

[[workloads]]
kind = "random"
inputs = {size}
outputs = {size}
density = [0.05, 0.1, 0.2, 0.5]
"""


def _mesh(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"mesh must look like 4x4, not {text!r}") from None
    return r, c


def _sweep(argv: list[str], log: Path) -> tuple[dict, float]:
    """Run ``wafertile sweep ARGV --json``; return its JSON and the wall time."""
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "wafertile", "sweep", *argv, "--json"],
                              stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"wafertile sweep failed (exit {proc.returncode}); see {log}")
    return json.loads(proc.stdout), wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", type=_mesh, default=(4, 4), help="array size RxC (default 4x4)")
    ap.add_argument("--size", type=int, default=256,
                    help="layer size: inputs = outputs = SIZE (default 256, as wafertile run)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="LocalCluster workers (default: the number of cores)")
    ap.add_argument("--work", type=Path, default=None,
                    help="working directory (spec, outputs, cache; default: a new temporary "
                         "one)")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm rerun")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="sweep48-"))
    work.mkdir(parents=True, exist_ok=True)
    rows, cols = args.mesh
    spec = work / "sweep48.toml"
    spec.write_text(SPEC.format(rows=rows, cols=cols, size=args.size))
    cache = work / "cache"
    common = ["--cache", str(cache), "--workers", str(args.workers)]
    print(f"sweep48: {rows} x {cols} arrays, {args.size} x {args.size} layers, "
          f"{args.workers} workers, {os.cpu_count()} cores; work in {work}")

    out = {"mesh": f"{rows}x{cols}", "size": args.size, "workers": args.workers,
           "cores": os.cpu_count(), "python": platform.python_version(),
           "date": datetime.now(UTC).isoformat(timespec="seconds"), "spec": spec.read_text()}
    cold, wall = _sweep([str(spec), "-o", str(work / "cold"), *common], work / "cold.log")
    df = pd.read_csv(work / "cold" / "results.csv")
    builds = int((~df["cached"].astype(bool)).sum())
    out["cold"] = {"wall_s": round(wall, 1), "points": cold["points"], "ok": cold["ok"],
                   "failed": cold["failed"], "points_per_s": round(cold["points"] / wall, 3),
                   "builds": builds,
                   "point_seconds_median": round(float(df["seconds"].median()), 2)}
    print(f"cold:   {cold['points']} points in {wall:.1f} s ({cold['points'] / wall:.3f} "
          f"points/s), {cold['ok']} ok, {cold['failed']} failed, {builds} Verilator builds")

    resume, wall = _sweep([str(spec), "-o", str(work / "cold"), "--resume", *common],
                          work / "resume.log")
    if resume["submitted"] != 0:
        sys.exit(f"--resume ran {resume['submitted']} points; it should run none")
    out["resume"] = {"wall_s": round(wall, 1), "submitted": resume["submitted"],
                     "skipped": resume["skipped"]}
    print(f"resume: {wall:.1f} s, {resume['skipped']} points skipped, "
          f"{resume['submitted']} run: no work")

    if not args.no_warm:
        warm, wall = _sweep([str(spec), "-o", str(work / "warm"), *common], work / "warm.log")
        dfw = pd.read_csv(work / "warm" / "results.csv")
        rebuilt = int((~dfw["cached"].astype(bool)).sum())
        out["warm"] = {"wall_s": round(wall, 1), "points": warm["points"], "ok": warm["ok"],
                       "points_per_s": round(warm["points"] / wall, 3), "builds": rebuilt,
                       "point_seconds_median": round(float(dfw["seconds"].median()), 2)}
        print(f"warm:   {warm['points']} points in {wall:.1f} s ({warm['points'] / wall:.3f} "
              f"points/s), {rebuilt} builds (cache of the cold run)")
    summary = df[["router_arch", "buffer_depth", "data_width", "density", "cycles",
                  "speedup", "utilization"]].sort_values(
        ["router_arch", "buffer_depth", "data_width", "density"])
    out["rows"] = summary.to_dict(orient="records")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
