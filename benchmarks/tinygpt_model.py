#!/usr/bin/env python3
"""tinygpt on arrays of other shapes, by the performance model (issue 19, ``docs/gpt.md``):
what several sequences side by side and wider arrays do to a step.

For each case (rows x cols, sequences ``S``), ``S`` full windows of the held text (16
characters each, side by side on the rows: ``seq = 16``) run through the network as
``wafertile run --network tinygpt --fidelity model`` runs a step: the performance model's
event level where the analytic one is not exact (``predict_network``), which gives the
RTL's cycles on tinygpt's 16 x 4 window (``benchmarks/tinygpt.py`` checks it phase by phase).
With ``--rtl-check``, the first case with two sequences is also run on Verilator and its
cycles compared.

Printed, and written as JSON per case: cycles per step and per token (a step makes one token
of each sequence), the phases of ``wafertile run`` (docs/gpt.md), MAC utilization, and each
layer's MAC stream against its two lower bounds: ``nonzeros / rows`` (the injection ports:
issue 19's 1.1x target) and ``nonzeros / cols`` (the column links: every weight goes down the
one column that holds its output, and every row takes it at once).

    python benchmarks/tinygpt_model.py --json benchmarks/results-tinygpt-model.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from wafertile import Config
from wafertile.model.generation import model_macs
from wafertile.model.layer import predict_network
from wafertile.network import tinygpt
from wafertile.network.generate import phase_cycles, phase_of_layers, window_inputs
from wafertile.network.gpt import GPTShape, gpt_network
from wafertile.network.run import per_layer_cycles
from wafertile.sim.models.network import network_reference

#: (rows, cols, sequences)
CASES = [(16, 4, 1), (32, 4, 2), (64, 4, 4), (16, 8, 1), (16, 16, 1), (32, 16, 2)]


def run_case(rows: int, cols: int, S: int, params, ids, rtl: bool = False) -> dict:
    shape = GPTShape.of(params)
    T = shape.context
    cfg = Config(rows=rows, cols=cols, dtype="bf16", nonlinear=True)
    net = replace(gpt_network(params, "bf16", name="tinygpt"), seq=T)
    x = window_inputs(shape, [list(w) for w in ids[:S]])
    t0 = time.time()
    result = predict_network(cfg, net, x, dense=False)
    wall = time.time() - t0
    cycles = result.sparse.phase_cycles
    per_layer = per_layer_cycles(net, result.program, cycles, cfg)
    _, acts = network_reference(cfg, net, x)
    nonzero, sent = result.tables(cfg, net, x)
    macs = model_macs(net, result.program, acts, config=cfg, nonzero=nonzero, sent=sent)
    total = sum(cycles)
    streams = []
    groups = -(-len(x) // rows)
    for n, (role, layer) in enumerate(zip(phase_of_layers(shape), per_layer, strict=True)):
        ports = groups * -(-layer["nnz"] // rows)
        column = groups * -(-layer["nnz"] // cols)
        streams.append({"layer": n, "role": role, "nnz": layer["nnz"],
                        "cycles": layer["stream_cycles"], "ports_bound": ports,
                        "column_bound": column,
                        "over_ports_bound": layer["stream_cycles"] / ports,
                        "over_column_bound": layer["stream_cycles"] / column})
    out = {"rows": rows, "cols": cols, "sequences": S, "positions": len(x),
           "cycles_per_step": total, "cycles_per_token": total / S,
           "phases": phase_cycles(shape, per_layer), "macs": macs,
           "utilization": macs / (rows * cols * total),
           "methods": sorted(set(result.sparse.methods)), "model_s": round(wall, 1),
           "streams": streams,
           "worst_over_ports_bound": max(s["over_ports_bound"] for s in streams),
           "worst_over_column_bound": max(s["over_column_bound"] for s in streams)}
    if rtl:
        from wafertile.network.run import run_network

        t0 = time.time()
        report, _ = run_network(cfg, net, x, sim="verilator", dense=False)
        out["rtl"] = {"pass": report.passed, "cycles": report.cycles, "macs": report.macs,
                      "phases": phase_cycles(shape, report.per_layer),
                      "wall_s": round(time.time() - t0, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rtl-check", action="store_true",
                        help="also run the first case with two sequences on Verilator")
    args = parser.parse_args(argv)
    params, vocab, held = tinygpt.load()
    T = GPTShape.of(params).context
    S = max(s for _, _, s in CASES)
    ids = tinygpt.encode(held, vocab)[:S * T].reshape(S, T)
    cases, checked = [], False
    for rows, cols, seqs in CASES:
        rtl = args.rtl_check and seqs == 2 and not checked
        checked |= rtl
        case = run_case(rows, cols, seqs, params, ids, rtl=rtl)
        cases.append(case)
        print(f"{rows:3d} x {cols:2d}, {seqs} sequence(s): {case['cycles_per_step']:6d} cycles "
              f"a step, {case['cycles_per_token']:8.0f} a token, utilization "
              f"{case['utilization']:.1%}; streams within {case['worst_over_column_bound']:.2f}x "
              f"of nnz/cols and {case['worst_over_ports_bound']:.2f}x of nnz/rows "
              f"({case['model_s']} s)", flush=True)
        if "rtl" in case:
            print(f"    Verilator: {case['rtl']['cycles']} cycles, pass {case['rtl']['pass']}, "
                  f"model {'exact' if case['rtl']['cycles'] == case['cycles_per_step'] else 'OFF'}")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cases": cases},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
