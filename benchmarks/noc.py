"""Latency vs offered load of the router mesh, measured on the RTL (compiled Verilator harness).

Usage::

    python benchmarks/noc.py --mesh 4x4 --pattern uniform --json out.json [--png out.png]

The mesh Verilog (``wafertile generate --block mesh``) is compiled with a C++ harness that
Verilator builds into one executable (``verilator --cc --exe --build``): traffic generation,
source queues and latency accounting run in C++, never Python-per-cycle, so an 8 x 8 curve
takes well under a minute after the build.

Method. Every tile's local port is a source: each cycle it creates a flit with probability
``load`` (Bernoulli; the offered load in flits/node/cycle) into an unbounded source queue,
destination by ``--pattern``, VC uniformly random. The queue head is offered on the local
input; the flit's creation cycle rides in its payload. Latency = delivery cycle - creation
cycle (source queueing included), over flits created in the measurement window (after a
warm-up), with the mesh drained afterwards. Zero-load latency is the mean latency at load
0.01; saturation throughput is the highest offered load whose mean latency stays within 3x
zero-load. The bound is the XY-routing bound computed from the channel loads of the pattern
(1 / the most loaded channel, ejection included): 4/k for uniform on k x k, 1/(k-1) for
transpose, 2/k for bit-complement.

The JSON has ``zero_load_latency``, ``saturation_throughput``, ``bound``, ``ratio`` and
``points`` (``offered``, ``accepted``, ``mean_latency``, ``p99_latency``, ``drained``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PATTERNS = ("uniform", "transpose", "bitcomp", "hotspot")
HOTSPOT_FRACTION = 0.2  # of each source's traffic goes to the hotspot (the centre tile)

HARNESS = r"""
#include "Vwafertile_mesh.h"
#include "verilated.h"
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <vector>
#include <algorithm>

@BIT_ACCESS@
static const int ROWS = @ROWS@, COLS = @COLS@, NVC = @NVC@, FW = @FW@;
static const int OX0 = @OX0@, OX1 = @OX1@, OY0 = @OY0@, OY1 = @OY1@, OVC = @OVC@, OPAY = @OPAY@;
static int PATTERN = 0;  // argv: 0 uniform, 1 transpose, 2 bitcomp, 3 hotspot
static const double HOT = @HOT@;
static const int TBITS = 20;  // payload: creation cycle (TBITS bits), then the source index

struct Pending { uint64_t created; int dest; int vc; };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline uint64_t rnd() {  // xorshift64*
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static inline double urand() { return (rnd() >> 11) * (1.0 / 9007199254740992.0); }

static int destination(int src) {
    int x = src % COLS, y = src / COLS, n = ROWS * COLS;
    switch (PATTERN) {
    case 1: return x * COLS + y;                                  // transpose (k x k)
    case 2: return (ROWS - 1 - y) * COLS + (COLS - 1 - x);        // bit-complement
    case 3: if (urand() < HOT) return (ROWS / 2) * COLS + COLS / 2;
            return (int)(rnd() % n);
    default: return (int)(rnd() % n);                             // uniform (self included)
    }
}

int main(int argc, char **argv) {
    Verilated::commandArgs(argc, argv);
    // args: pattern warmup measure drain_limit load...
    PATTERN = atoi(argv[1]);
    long warmup = atol(argv[2]), measure = atol(argv[3]), drain = atol(argv[4]);
    Vwafertile_mesh *top = new Vwafertile_mesh;
    const int N = ROWS * COLS;
    // local port s = element s of the l_in / l_out groups (s = y * COLS + x)
    auto offer = [&](int s, int v, uint64_t word) {
        uint32_t w[2] = {(uint32_t)word, (uint32_t)(word >> 32)};
        put_bits(top->l_in__flit, s * FW, FW, w);
        put_bit(top->l_in__valid, s, v);
    };
    auto in_ready = [&](int s) {
        uint32_t r; get_bits(top->l_in__ready, s * NVC, NVC, &r); return r;
    };
    auto delivered = [&](int s, uint64_t *word) {
        uint32_t w[2]; get_bits(top->l_out__flit, s * FW, FW, w);
        *word = (uint64_t)w[0] | ((uint64_t)w[1] << 32);
        return get_bit(top->l_out__valid, s);
    };
    std::vector<int> offered(N, 0);
    printf("[\n");
    for (int a = 5; a < argc; a++) {
        double load = atof(argv[a]);
        rng_state = 0x9e3779b97f4a7c15ull + a;
        put_all(top->l_in__valid, N, 0); put_all(top->l_out__ready, N * NVC, 1);
        put_all(top->n_in__valid, COLS, 0); put_all(top->n_out__ready, COLS * NVC, 1);
        put_all(top->s_in__valid, COLS, 0); put_all(top->s_out__ready, COLS * NVC, 1);
        put_all(top->e_in__valid, ROWS, 0); put_all(top->e_out__ready, ROWS * NVC, 1);
        put_all(top->w_in__valid, ROWS, 0); put_all(top->w_out__ready, ROWS * NVC, 1);
        std::fill(offered.begin(), offered.end(), 0);
        top->rst = 1;
        for (int i = 0; i < 4; i++) { top->clk = 0; top->eval(); top->clk = 1; top->eval(); }
        top->rst = 0;
        std::vector<std::deque<Pending>> q(ROWS * COLS);
        std::vector<uint64_t> lat;
        uint64_t measured = 0, delivered_in_window = 0, hops = 0;
        uint64_t t = 0, end_create = warmup + measure;
        bool drained = false;
        for (;; t++) {
            if (t < end_create)
                for (int s = 0; s < ROWS * COLS; s++)
                    if (urand() < load) {
                        int d = destination(s);
                        q[s].push_back({t, d, (int)(rnd() % NVC)});
                        if (t >= (uint64_t)warmup) measured++;
                    }
            top->clk = 0;
            for (int s = 0; s < ROWS * COLS; s++) {
                if (q[s].empty()) { offered[s] = 0; offer(s, 0, 0); continue; }
                Pending &p = q[s].front();
                uint64_t dx = p.dest % COLS, dy = p.dest / COLS;
                offered[s] = 1;
                offer(s, 1, (dx << OX0) | (dx << OX1) | (dy << OY0) | (dy << OY1) |
                            ((uint64_t)p.vc << OVC) | (p.created << OPAY) |
                            ((uint64_t)s << (OPAY + TBITS)));
            }
            top->eval();
            for (int s = 0; s < ROWS * COLS; s++) {
                if (offered[s] && !q[s].empty()) {
                    int vc = q[s].front().vc;
                    if ((in_ready(s) >> vc) & 1) q[s].pop_front();
                }
                uint64_t word;
                if (delivered(s, &word)) {
                    uint64_t created = (word >> OPAY) & ((1ull << TBITS) - 1);
                    int src = (int)(word >> (OPAY + TBITS));
                    if (created >= (uint64_t)warmup && created < end_create) {
                        lat.push_back(t - created);
                        hops += abs(src % COLS - s % COLS) + abs(src / COLS - s / COLS) + 1;
                    }
                    if (t >= (uint64_t)warmup && t < end_create) delivered_in_window++;
                }
            }
            top->clk = 1; top->eval();
            if (t >= end_create && lat.size() >= measured) { drained = true; break; }
            if (t >= end_create + drain) break;
        }
        double mean = 0; for (auto l : lat) mean += l; mean = lat.empty() ? 0 : mean / lat.size();
        std::sort(lat.begin(), lat.end());
        uint64_t p99 = lat.empty() ? 0 : lat[std::min(lat.size() - 1, (size_t)(lat.size() * 0.99))];
        printf("  {\"offered\": %.6f, \"accepted\": %.6f, \"mean_latency\": %.4f, "
               "\"p99_latency\": %llu, \"mean_routers_traversed\": %.4f, "
               "\"measured_flits\": %llu, \"delivered_flits\": %zu, "
               "\"drained\": %s, \"cycles\": %llu}%s\n",
               load, (double)delivered_in_window / measure / (ROWS * COLS), mean,
               (unsigned long long)p99, lat.empty() ? 0.0 : (double)hops / lat.size(),
               (unsigned long long)measured, lat.size(),
               drained ? "true" : "false", (unsigned long long)t, a + 1 < argc ? "," : "");
        fflush(stdout);
    }
    printf("]\n");
    top->final();
    delete top;
    return 0;
}
"""


#: Saturation target of issue 3, as a ratio to the XY bound, per pattern (none for hotspot).
SATURATION_TARGET = {"uniform": 0.85, "transpose": 0.85, "bitcomp": 0.85}


def targets(pattern: str, zero: float, routers: float, ratio: float, phits: int = 1) -> dict:
    """The benchmark's targets (docs/performance.md) and whether this run meets them. With
    ``phits`` cycles per flit on a link, a hop is a slot of ``phits`` cycles."""
    limit = (routers + 2) * phits
    what = "routers traversed + 2" if phits == 1 else f"(routers traversed + 2) x {phits} phits"
    out = {"zero_load_latency": {"value": zero, "target": f"<= {limit:.2f} ({what})",
                                 "met": zero <= limit}}
    if pattern in SATURATION_TARGET:
        goal = SATURATION_TARGET[pattern]
        out["saturation_ratio"] = {"value": ratio, "target": f">= {goal}",
                                   "met": ratio >= goal - 1e-9}
    return out


def _fail(message: str) -> None:
    print(f"noc.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def xy_bound(rows: int, cols: int, pattern: str) -> float:
    """Saturation bound of XY routing: 1 / the most loaded channel per unit injection rate."""
    n = rows * cols
    load: dict = {}

    def add(key, w):
        load[key] = load.get(key, 0.0) + w

    for s in range(n):
        sx, sy = s % cols, s // cols
        if pattern == "uniform":
            dests = [(d, 1.0 / n) for d in range(n)]
        elif pattern == "transpose":
            dests = [(sx * cols + sy, 1.0)]
        elif pattern == "bitcomp":
            dests = [((rows - 1 - sy) * cols + (cols - 1 - sx), 1.0)]
        else:
            hot = (rows // 2) * cols + cols // 2
            dests = [(d, (1 - HOTSPOT_FRACTION) / n) for d in range(n)]
            dests.append((hot, HOTSPOT_FRACTION))
        for d, w in dests:
            dx, dy = d % cols, d // cols
            x, y = sx, sy
            while x != dx:
                step = 1 if dx > x else -1
                add(("x", x, y, step), w)
                x += step
            while y != dy:
                step = 1 if dy > y else -1
                add(("y", x, y, step), w)
                y += step
            add(("eject", dx, dy), w)
    return 1.0 / max(load.values())


def bench_config(rows: int, cols: int, config_overrides: dict):
    """The mesh's configuration. A small payload (the router is payload-agnostic) keeps the
    flit in the harness's 64-bit word; with phits, the accumulator field is widened to fill
    the 64 bits, so that phit 0 can hold the whole header (as it must)."""
    from wafertile import Config
    cfg = Config(rows=rows, cols=cols, data_width=8, acc_width=16, act_depth=16, acc_depth=16)
    if config_overrides.get("phits", 1) > 1:
        cfg = cfg.replace(acc_width=min(64, 64 - cfg.flit_width + cfg.acc_width))
    return cfg.replace(**config_overrides)


def build(rows: int, cols: int, workdir: Path, config_overrides: dict) -> Path:
    from wafertile.hdl.flit import describe, flit_layout, header_layout
    from wafertile.hdl.generate import emit
    from wafertile.sim.harness import BIT_ACCESS_CPP, verilator_names
    from wafertile.sim.toolchain import verilator_bin, verilator_env

    cfg = bench_config(rows, cols, config_overrides)
    old = {f: f.read_bytes() for f in (workdir / "rtl").glob("*") if f.is_file()}
    files = emit("mesh", cfg, workdir / "rtl")
    fields = {f["name"]: f["offset"] for f in describe(flit_layout(cfg))}
    from amaranth.hdl import Shape
    flit_width = Shape.cast(flit_layout(cfg)).width
    if flit_width > 64 or rows * cols > (1 << 6):
        _fail(f"flit of {flit_width} bits or {rows * cols} sources do not fit the harness's "
              f"64-bit word (at most 64 tiles)")
    src = verilator_names(HARNESS.replace("@BIT_ACCESS@", BIT_ACCESS_CPP))
    subst = {
        "ROWS": rows, "COLS": cols, "NVC": cfg.num_vcs, "FW": flit_width,
        "OX0": fields["header.x0"], "OX1": fields["header.x1"], "OY0": fields["header.y0"],
        "OY1": fields["header.y1"], "OVC": fields["header.vc"],
        "OPAY": Shape.cast(header_layout(cfg)).width,
        "HOT": HOTSPOT_FRACTION,
    }
    for key, value in subst.items():
        src = src.replace(f"@{key}@", str(value))
    harness = workdir / "harness.cpp"
    exe = workdir / "obj" / "noc_bench"
    same = (exe.exists() and harness.exists() and harness.read_text(encoding="utf-8") == src
            and all(old.get(f) == f.read_bytes() for f in files.values()))
    if same:
        return exe  # the same Verilog and harness: reuse the executable
    harness.write_text(src, encoding="utf-8")
    env = {**os.environ, **verilator_env()}
    # -fno-inline keeps wafertile_router one C++ class shared by every instance: an 8 x 8
    # mesh with the router inlined 64 times makes one huge function that takes g++ many
    # minutes; shared, the build is about a minute and the run a few seconds per curve.
    cmd = [str(verilator_bin()), "--cc", "--exe", "--build", "-fno-inline", "-j", "2",
           "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "wafertile_mesh", "-Mdir",
           str(workdir / "obj"), str(files["verilog"]), str(workdir / "harness.cpp"),
           "-o", "noc_bench", "-CFLAGS", "-O1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        _fail(f"Verilator build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return exe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mesh", default="4x4", help="ROWSxCOLS (default 4x4)")
    parser.add_argument("--pattern", default="uniform", choices=PATTERNS)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--png", type=Path, help="latency vs load plot (default: JSON path "
                        "with .png)")
    parser.add_argument("--num-vcs", type=int, default=2,
                        help="virtual channels per port (Config.num_vcs, default 2); traffic "
                             "picks a VC uniformly at random")
    parser.add_argument("--buffer-depth", type=int, default=4,
                        help="flits per VC per router input (Config.buffer_depth, default 4)")
    parser.add_argument("--router-arch", choices=["compact", "parallel", "lite", "voq"],
                        default="compact",
                        help="router micro-architecture (Config.router_arch, docs/router.md; "
                             "default compact, the fabric's default)")
    parser.add_argument("--phits", type=int, default=1,
                        help="cycles per flit on a link (Config.phits, lite only; default 1); "
                             "the XY bound is then divided by phits")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="cycles of traffic before measuring (default 1000)")
    parser.add_argument("--measure", type=int, default=4000,
                        help="cycles whose injected flits are measured (default 4000)")
    parser.add_argument("--workdir", type=Path, default=Path("bench_build"),
                        help="where the Verilog and the compiled harness go (reused while "
                             "the Verilog is unchanged; default bench_build)")
    args = parser.parse_args(argv)
    try:
        rows, cols = (int(v) for v in args.mesh.lower().split("x"))
    except ValueError:
        _fail(f"--mesh must look like 4x4 (rows x cols), not {args.mesh!r}")
    if args.pattern == "transpose" and rows != cols:
        _fail(f"transpose needs a square mesh, not {rows}x{cols}")
    if args.warmup + args.measure >= 1 << 20:
        _fail("--warmup + --measure must stay below 2**20 cycles (the payload time stamp)")
    png = args.png or (args.json.with_suffix(".png") if args.json else None)
    if png is not None:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            _fail("the plot needs matplotlib: pip install 'wafertile[bench]' "
                  "(or pip install matplotlib)")

    from wafertile import ConfigError
    overrides = {"num_vcs": args.num_vcs, "buffer_depth": args.buffer_depth,
                 "router_arch": args.router_arch, "phits": args.phits}
    try:  # a bad parameter is an error before anything is written
        bench_config(rows, cols, overrides)
    except ConfigError as exc:
        _fail(str(exc))
    phit_tag = f"p{args.phits}" if args.phits > 1 else ""
    workdir = (args.workdir / f"{rows}x{cols}-{args.router_arch}-v{args.num_vcs}"
               f"d{args.buffer_depth}{phit_tag}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    exe = build(rows, cols, workdir, overrides)
    t_build = time.monotonic() - t0
    # a link moves one flit per `phits` cycles, so the bound in flits/node/cycle shrinks too
    bound = xy_bound(rows, cols, args.pattern) / args.phits
    loads = [0.01] + [round(bound * f, 4) for f in
                      (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
                       1.0, 1.05)]
    loads = sorted({min(load, 1.0) for load in loads})
    t1 = time.monotonic()
    proc = subprocess.run([str(exe), str(PATTERNS.index(args.pattern)), str(args.warmup),
                           str(args.measure),
                           str(20 * args.measure), *map(str, loads)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        _fail(f"harness failed:\n{proc.stderr[-2000:]}")
    points = json.loads(proc.stdout)
    t_run = time.monotonic() - t1
    zero = points[0]["mean_latency"]
    sat = max((p["offered"] for p in points
               if p["drained"] and p["mean_latency"] <= 3 * zero), default=0.0)
    result = {
        "mesh": f"{rows}x{cols}", "pattern": args.pattern, "router_arch": args.router_arch,
        "num_vcs": args.num_vcs, "buffer_depth": args.buffer_depth, "phits": args.phits,
        "zero_load_latency": zero,
        "zero_load_routers_traversed": points[0]["mean_routers_traversed"],
        "saturation_throughput": sat,
        "bound": bound,
        "ratio": sat / bound,
        "build_seconds": round(t_build, 1), "run_seconds": round(t_run, 1),
        "targets": targets(args.pattern, zero, points[0]["mean_routers_traversed"],
                           sat / bound, args.phits),
        "points": points,
    }
    phit_note = f", {args.phits} phits" if args.phits > 1 else ""
    print(f"{rows}x{cols} {args.pattern} ({args.router_arch}, {args.num_vcs} VCs x "
          f"{args.buffer_depth}{phit_note}): zero-load latency {zero:.2f} cycles "
          f"({points[0]['mean_routers_traversed']:.2f} routers traversed), saturation "
          f"{sat:.3f} flits/node/cycle, XY bound {bound:.3f}, ratio {sat / bound:.2f} "
          f"(build {t_build:.0f} s, run {t_run:.0f} s)")
    for name, t in result["targets"].items():
        print(f"  target {name}: {t['value']:.2f} vs {t['target']} -> "
              f"{'met' if t['met'] else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if png is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [p["offered"] for p in points]
        ax.plot(xs, [p["mean_latency"] for p in points], "o-", label="mean latency")
        ax.axvline(bound, color="grey", linestyle="--", label=f"XY bound {bound:.3f}")
        ax.axhline(3 * zero, color="red", linestyle=":", label="3 x zero-load")
        ax.set_xlabel("offered load (flits/node/cycle)")
        ax.set_ylabel("latency (cycles)")
        ax.set_ylim(0, max(10 * zero, 10))
        ax.set_title(f"wafertile mesh {rows}x{cols}, {args.pattern}, {args.router_arch}, "
                     f"{args.num_vcs} VCs x "
                     f"{args.buffer_depth}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(png, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
