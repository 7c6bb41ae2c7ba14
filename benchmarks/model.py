"""The performance model against the RTL, and its speed at wafer size.

    python benchmarks/model.py                          # the whole validation set
    python benchmarks/model.py --configs compact-2x2 --layers 4 --no-networks   # a subset
    python benchmarks/model.py --micro lite-4x4-p4      # latencies and rates, RTL vs model
    python benchmarks/model.py --wafer                  # the 16384 x 16384 layer on 1024 x 1024
    python benchmarks/model.py --training               # training steps on float tiles

Validation (``wafertile.model.validation``): for every configuration of ``CONFIGS`` (or
``--configs``), ``--layers`` seeded random layers and the small networks that fit, each
compiled once, played on Verilator (the compiled harness; builds cached in
``~/.cache/wafertile``) and predicted. It prints every pair (RTL and model cycles, total and
per phase kind), the mean and max absolute relative error of the total cycles (overall, per
router micro-architecture, per phase kind; for the model as it runs and for its analytic
level alone), writes them as JSON (``--json``) and draws the scatter plot (``--png``).
Targets: mean <= 3%, max <= 10%.

``--training`` runs the training set instead (``wafertile.trainer.validation``): float
configurations, one step of random chains per pair (every batch group's phases: forward,
loss gradient, GRAD chains, backward streams and hand-offs), the model given the tiles'
nonzero activations; it writes ``results-model-training.json`` and ``.png``.

``--wafer`` runs ``wafertile run --fidelity model --rows 1024 --cols 1024 --act-depth 16384
--acc-depth 16 --size 16384 --batch 1024 --density 0.1 --json`` in a child process and
reports its wall time and peak memory (target: under 60 s, a few GiB).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from wafertile.model.validation import (
    CONFIGS,
    PairResult,
    layer_cases,
    measure_pairs,
    network_cases,
    summarize,
)

HERE = Path(__file__).resolve().parent
WAFER = ["run", "--fidelity", "model", "--rows", "1024", "--cols", "1024", "--act-depth",
         "16384", "--acc-depth", "16", "--size", "16384", "--batch", "1024", "--density", "0.1",
         "--json"]


def _line(p: PairResult) -> str:
    def by_kind(cycles):
        out: dict[str, int] = {}
        for k, c in zip(p.kinds, cycles, strict=True):
            out[k] = out.get(k, 0) + c
        return out
    rtl, model = by_kind(p.rtl), by_kind(p.model)
    kinds = " ".join(f"{k} {rtl[k]}/{model[k]}" for k in rtl)
    return (f"{p.config:13s} {p.workload[:58]:58s} rtl {sum(p.rtl):7d} model "
            f"{sum(p.model):7d} {100 * p.error:+6.2f}% (analytic {100 * p.analytic_error:+6.2f}%)"
            f"  [{kinds}] {p.model_seconds:.2f} s")


def validate(args) -> int:
    if args.training:
        from wafertile.trainer.validation import TRAIN_CONFIGS, measure_training, training_cases
        configs = TRAIN_CONFIGS
    else:
        configs = CONFIGS
    names = args.configs or list(configs)
    unknown = [n for n in names if n not in configs]
    if unknown:
        print(f"unknown configuration {unknown[0]!r} (known: {', '.join(configs)})",
              file=sys.stderr)
        return 2
    stem = "results-model-training" if args.training else "results-model"
    args.json = args.json or str(HERE / f"{stem}.json")
    args.png = args.png or str(HERE / f"{stem}.png")
    pairs: list[PairResult] = []
    start = time.perf_counter()
    for n, name in enumerate(names):
        config = configs[name]
        if args.training:
            cases = training_cases(config, args.seed + 1000 * n)
            print(f"== {name}: {len(cases)} training steps (building / simulating on "
                  f"Verilator)", flush=True)
            pairs += measure_training(name, config, cases,
                                      log=lambda p: print(_line(p), flush=True))
            continue
        workloads = layer_cases(config, args.layers, args.seed + 1000 * n)
        if not args.no_networks:
            workloads += network_cases(args.seed + 1000 * n + 7)
        print(f"== {name}: {len(workloads)} workloads (building / simulating on Verilator)",
              flush=True)
        pairs += measure_pairs(name, config, workloads,
                               log=lambda p: print(_line(p), flush=True))
    summary = summarize(pairs)
    wall = time.perf_counter() - start
    m, a = summary["model"], summary["analytic"]
    print(f"\n{m['pairs']} pairs on {len(names)} configurations in {wall:.0f} s")
    print(f"model:    mean |error| {100 * m['mean']:.2f}%, max {100 * m['max']:.2f}% "
          f"(targets 3%, 10%: {'met' if m['mean'] <= 0.03 and m['max'] <= 0.10 else 'MISSED'})")
    print(f"analytic: mean |error| {100 * a['mean']:.2f}%, max {100 * a['max']:.2f}%")
    for router, s in summary["by_router"].items():
        print(f"  {router:16s} {s['model']['pairs']:3d} pairs: model mean "
              f"{100 * s['model']['mean']:.2f}% max {100 * s['model']['max']:.2f}%; analytic "
              f"mean {100 * s['analytic']['mean']:.2f}% max {100 * s['analytic']['max']:.2f}%")
    for kind, s in summary["by_kind"].items():
        print(f"  {kind:16s} {s['model']['pairs']:3d} pairs: model mean "
              f"{100 * s['model']['mean']:.2f}% max {100 * s['model']['max']:.2f}%; analytic "
              f"mean {100 * s['analytic']['mean']:.2f}% max {100 * s['analytic']['max']:.2f}%")
    model_s = sum(p.model_seconds for p in pairs)
    rtl_s = sum(p.rtl_seconds for p in pairs)
    print(f"time: model {model_s:.1f} s, RTL simulation {rtl_s:.1f} s (builds not counted)")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"summary": summary, "seconds": {"wall": wall, "model": model_s, "rtl": rtl_s},
             "seed": args.seed, "layers": None if args.training else args.layers,
             "configs": {n: configs[n].as_dict() for n in names},
             "pairs": [p.as_json() for p in pairs]}, indent=1))
        print(f"json     {args.json}")
    if args.png:
        _plot(pairs, summary, args.png)
        print(f"plot     {args.png}")
    return 0


def _plot(pairs: list[PairResult], summary, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5.2))
    colors = {"compact": "tab:blue", "parallel": "tab:orange", "lite": "tab:green",
              "voq": "tab:red"}
    for arch, color in colors.items():
        mine = [p for p in pairs if p.router_arch == arch]
        if not mine:
            continue
        r = [sum(p.rtl) for p in mine]
        ax.scatter(r, [sum(p.model) for p in mine], s=18, color=color, label=f"{arch} model")
        ax.scatter(r, [sum(p.analytic) for p in mine], s=22, marker="x", color=color,
                   alpha=0.5, label=f"{arch} analytic only")
    lo = min(sum(p.rtl) for p in pairs) * 0.8
    hi = max(sum(p.rtl) for p in pairs) * 1.25
    ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="RTL cycles (Verilator)",
           ylabel="predicted cycles", title=f"{len(pairs)} (configuration, workload) pairs: "
                                            f"total cycles")
    ax.legend(fontsize=7)
    kinds = ("load", "stream", "reduce", "handoff", "read", "grad")
    marks = dict(zip(kinds, "os^Dvx", strict=True))
    for kind in kinds:
        r, m, a = [], [], []
        for p in pairs:
            for k, c, d, e in zip(p.kinds, p.rtl, p.model, p.analytic, strict=True):
                if k == kind:
                    r.append(c)
                    m.append(d)
                    a.append(e)
        if r:
            rr = np.array(r)
            worst = np.abs(100 * (np.array(m) - rr) / rr).max()
            bx.scatter(r, 100 * (np.array(a) - rr) / rr, s=10, marker=marks[kind],
                       label=f"{kind} ({len(r)} phases; model max |error| {worst:.2f}%)")
    bx.axhline(0, color="gray", lw=0.8)
    bx.set(xscale="log", xlabel="RTL cycles of the phase", ylabel="error (%)",
           title="every phase: the analytic level alone (the wafer-size path)")
    bx.legend(fontsize=7)
    m = summary["model"]
    fig.suptitle(f"wafertile.model vs RTL: mean |error| {100 * m['mean']:.2f}%, max "
                 f"{100 * m['max']:.2f}% (total cycles per pair)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def micro(name: str) -> int:
    """Single flits and runs to one tile, on the RTL and in the model."""
    from wafertile.hdl.flit import Opcode
    from wafertile.model import predict_program
    from wafertile.run import simulate
    from wafertile.stream import LayerProgram, PhaseBuilder, reply_route

    config = CONFIGS[name]
    R, C = config.rows, config.cols
    phases, labels = [], []
    to_host = reply_route(config, R)
    for x in range(C):
        for n in (1, 8):
            b = PhaseBuilder()
            b.add(0, n, x0=x, x1=x, y0=0, y1=0, op=Opcode.READ_ACC.value, addr=np.arange(n),
                  addr_b=x, data=to_host[0])
            b.reply(0, np.arange(n), x)
            phases.append(b.phase("read"))
            labels.append(f"{n} READ to tile ({x}, 0), replies to the host")
        for n in (1, 8):
            b = PhaseBuilder()
            b.add(0, n, x0=x, x1=x, y0=0, y1=R - 1, op=Opcode.MAC.value, data=1)
            phases.append(b.phase("stream", expected_macs=n * R))
            labels.append(f"{n} MAC from port 0 to column {x}, rows 0..{R - 1}")
    program = LayerProgram(config, (1, 1, 1), phases, 0, 0)
    rtl = simulate(config, [program]).results[0][1]["phase_cycles"]
    model = predict_program(config, program, detail="mesh").phase_cycles
    analytic = predict_program(config, program, detail="analytic").phase_cycles
    print(f"{name}: {config.rows} x {config.cols}, {config.router_arch}, phits {config.phits}")
    print(f"{'':58s} {'RTL':>6s} {'mesh':>6s} {'analytic':>8s}")
    for label, r, m, a in zip(labels, rtl, model, analytic, strict=True):
        print(f"{label:58s} {r:6d} {m:6d} {a:8d}")
    return 0


def wafer() -> int:
    """The wafer-size prediction in a child process: wall time and peak memory."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wafertile", *WAFER], capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    report = json.loads(proc.stdout)
    print(f"wafertile {' '.join(WAFER)}")
    print(f"  stream cycles {report['cycles']}, total {report['total_cycles']} "
          f"({report['cycles_by_kind']}), dense {report['dense_cycles']}, speedup "
          f"{report['speedup']:.2f}, utilization {100 * report['utilization']:.1f}%, "
          f"methods {report['methods']}")
    print(f"  wall {wall:.1f} s (prediction {report['predict_seconds']:.1f} s), peak memory "
          f"{peak / 1024:.2f} GiB")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="*", metavar="NAME",
                        help=f"configurations (default: all of {', '.join(CONFIGS)})")
    parser.add_argument("--layers", type=int, default=10,
                        help="random layers per configuration (default: %(default)s)")
    parser.add_argument("--no-networks", action="store_true", help="layers only")
    parser.add_argument("--seed", type=int, default=2026, help="seed (default: %(default)s)")
    parser.add_argument("--json", default=None,
                        help="write the pairs and errors here (default: "
                             "benchmarks/results-model.json, with --training "
                             "results-model-training.json)")
    parser.add_argument("--png", default=None,
                        help="the scatter plot (default: benchmarks/results-model.png, with "
                             "--training results-model-training.png)")
    parser.add_argument("--training", action="store_true",
                        help="the training set (float tiles, whole steps) instead")
    parser.add_argument("--micro", metavar="NAME", help="latencies and rates of one "
                                                         "configuration, RTL vs model")
    parser.add_argument("--wafer", action="store_true",
                        help="time the wafer-size prediction instead")
    args = parser.parse_args(argv)
    if args.micro:
        return micro(args.micro)
    if args.wafer:
        return wafer()
    return validate(args)


if __name__ == "__main__":
    sys.exit(main())
