"""Scaled-down GPT blocks of the model zoo's shapes (and of any GPT shape in a TOML file) on
the RTL, against the performance model: cycles and event counts (issue 20's validation,
docs/counters.md, docs/wafer.md).

Each shape is scaled down to a block that a small array holds: at most ``--heads`` of its
heads, of ``--head-width`` values each, and its MLP's ratio ``d_ff / d_model`` (at least 1);
one block, ``--positions`` positions (one a row), a vocabulary of ``--vocab``; learned
positions and two LayerNorms a block (the fabric's GPT has no rotary embedding). At these
sizes the zoo's four give the same block (each has ``d_ff = 4 d_model`` and at least two
heads); a shape of another form gives another. Random weights (GPT-2's initial values plus
noise, seeded) in bf16. The block runs on Verilator with the tiles' event counters
(``counters = true``); the model predicts the same network at its event level and counts the
same events. Then (unless ``--no-train``) one training step of the same block as a training
chain (docs/training.md, "Attention layers"; next-token labels) on Verilator with the
counters, checked against the reference bit for bit, and predicted by the model at its
event level. Printed and written per shape: the cycles (RTL, model; the training step's by
role), every event summed over the tiles (RTL, model) and whether each tile's count is
equal. Exit status 1 if a block fails or a training step is not exact, or the cycles of
any phase or any tile's count of any event differ.

    python benchmarks/scaled_blocks.py --shape gpt3-xl --shape gpt-j-6b --shape gpt3-13b \
        --shape gpt-neox-20b --shape benchmarks/example-shape.toml \
        --json benchmarks/results-scaled-blocks.json
    python benchmarks/scaled_blocks.py --shape my-gpt.toml
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from wafertile.config import Config
from wafertile.hdl.counters import EVENTS
from wafertile.model.events import program_events
from wafertile.model.layer import predict_network
from wafertile.model.zoo import ZOO, GptShape, load_shape
from wafertile.network.gpt import GPTShape, gpt_network, one_hot
from wafertile.network.run import run_network
from wafertile.network.tinygpt import init_params


def scaled(shape: GptShape, *, heads: int, head_width: int, positions: int, vocab: int
           ) -> GPTShape:
    """One block of ``shape``, scaled down (the module's docstring)."""
    h = min(shape.heads, heads)
    width = h * head_width
    ratio = max(1, round(shape.d_ff / shape.d_model))
    return GPTShape(vocab=vocab, context=positions, width=width, heads=h, blocks=1,
                    hidden=ratio * width)


def block(shape: GptShape, args, rng):
    """``(small, net)``: the scaled-down shape and its network, random bf16 weights."""
    small = scaled(shape, heads=args.heads, head_width=args.head_width,
                   positions=args.positions, vocab=args.vocab)
    params = {k: (v + rng.normal(0.0, 0.3, v.shape)).astype(np.float32)
              for k, v in init_params(small, rng).items()}
    params["heads"] = np.array(small.heads)
    return small, gpt_network(params, "bf16", name=shape.name)


def measure(shape: GptShape, args, rng) -> dict:
    small, net = block(shape, args, rng)
    ids = rng.integers(0, small.vocab, small.context)
    x = one_hot(ids, small)
    cfg = Config(rows=small.context, cols=max(4, small.heads), dtype="bf16", nonlinear=True,
                 act_depth=args.act_depth, acc_depth=args.acc_depth, counters=True)
    t0 = time.perf_counter()
    report, _ = run_network(cfg, net, x, sim="verilator", dense=False,
                            build_root=Path(args.build_root) if args.build_root else None)
    rtl_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = predict_network(cfg, net, x, dense=False, detail="mesh")
    events = program_events(cfg, pred.program, *pred.tables(cfg, net, x))
    model_seconds = time.perf_counter() - t0
    out = {
        "shape": shape.name, "scaled": small.__dict__, "rows": cfg.rows, "cols": cfg.cols,
        "passed": report.passed, "rtl_cycles": report.cycles,
        "model_cycles": int(sum(pred.sparse.phase_cycles)),
        "events_rtl": {k: sum(v) for k, v in report.events.items()},
        "events_model": {k: sum(v) for k, v in events.items()},
        "events_equal_per_tile": {k: report.events[k] == events[k] for k in EVENTS},
        "rtl_seconds": round(rtl_seconds, 1), "model_seconds": round(model_seconds, 1),
    }
    return out


def measure_train(shape: GptShape, args, rng) -> dict:
    """One training step of the scaled-down block (docs/training.md, "Attention layers"):
    the block as a training chain (its embedding's LayerNorm, the attention's projection,
    the residuals, the GELU MLP, the logits), next-token labels, on Verilator with the
    counters: every logit, every tile's dY and every gradient against the reference, bit for
    bit; the model's event level: every phase's cycles and every event of every tile."""
    from wafertile.model import predict_program
    from wafertile.sim.harness import run_harness
    from wafertile.sim.models.training import training_step
    from wafertile.train import attention_layers, gelu_flags, residual_sources
    from wafertile.trainer.compiler import StepCompiler
    from wafertile.trainer.model import GroupTables
    from wafertile.trainer.rtl import ROLES, RtlFabric, assemble, group_result

    small, net = block(shape, args, rng)
    ln = [(layer.ln_gamma, layer.ln_beta, layer.ln_eps) if layer.layernorm else None
          for layer in net.layers]
    chain = {"gelu": gelu_flags(net), "ln": ln, "res": residual_sources(net),
             "attn": attention_layers(net, small.context)}
    ids = rng.integers(0, small.vocab, small.context + 1)
    x, labels = one_hot(ids[:-1], small), ids[1:]  # the next token at each position
    # the network's weights are numbers of the format; every nonzero weight is trained
    w = [layer.weights for layer in net.layers]
    b = [layer.bias for layer in net.layers]
    m = [a != 0 for a in w]
    cfg = Config(rows=small.context, cols=max(4, small.heads), dtype="bf16", nonlinear=True,
                 act_depth=args.train_act_depth, acc_depth=args.acc_depth, counters=True)
    scale = 64.0
    t0 = time.perf_counter()
    ref = training_step(cfg, w, b, m, x, labels, scale, **chain)
    fabric = RtlFabric(cfg, build_root=Path(args.build_root) if args.build_root else None)
    compiler = StepCompiler(cfg, w, b, m, read_dx=True, **chain)
    program = compiler.group(x, ref.dys[-1])
    logits, stats = run_harness(fabric.exe, cfg, program, fabric.workdir,
                                packed=compiler.packed)
    step = assemble(cfg, ref, m, [group_result(program, len(x), logits, stats,
                                               [np.shape(a) for a in w])])
    rtl_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables = GroupTables(cfg, w, b, x, ref, chain["gelu"], chain["ln"], chain["res"],
                         chain["attn"])
    sent: dict = {}
    nonzero = tables(program, 0, sent)
    pred = predict_program(cfg, program, detail="mesh", nonzero=nonzero, sent=sent)
    events = program_events(cfg, program, nonzero, sent)
    model_seconds = time.perf_counter() - t0
    rtl_phases = [int(c) for c in stats["phase_cycles"]]
    by_role = {role: [0, 0] for role in (*ROLES, "check")}
    for role, a, c in zip(program.roles, rtl_phases, pred.phase_cycles, strict=True):
        by_role[role][0] += a
        by_role[role][1] += c
    return {
        "shape": shape.name, "rows": cfg.rows, "cols": cfg.cols,
        "act_depth": cfg.act_depth, "exact": step.exact, "mismatches": step.mismatches,
        "loss": ref.loss,
        # the step's cycles: without the read-back of every tile's dY (role "check")
        "rtl_cycles": sum(v[0] for k, v in by_role.items() if k != "check"),
        "model_cycles": sum(v[1] for k, v in by_role.items() if k != "check"),
        "phases_equal": rtl_phases == pred.phase_cycles,
        "cycles_by_role": {k: {"rtl": v[0], "model": v[1]} for k, v in by_role.items()},
        "events_rtl": {k: sum(v) for k, v in stats["events"].items()},
        "events_model": {k: sum(v) for k, v in events.items()},
        "events_equal_per_tile": {k: stats["events"][k] == events[k] for k in EVENTS},
        "rtl_seconds": round(rtl_seconds, 1), "model_seconds": round(model_seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", action="append", help="a zoo name or a GPT shape .toml "
                   "(default: the zoo's four)")
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--head-width", type=int, default=4)
    p.add_argument("--positions", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8)
    p.add_argument("--act-depth", type=int, default=64)
    p.add_argument("--acc-depth", type=int, default=64)
    p.add_argument("--train-act-depth", type=int, default=256,
                   help="the training step's tiles' act_depth (it keeps every layer's inputs "
                        "and what the backward pass reads)")
    p.add_argument("--no-train", action="store_true", help="the forward blocks only")
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--build-root", help="where the Verilator builds go (default: the cache)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    names = args.shape or list(ZOO)
    rng = np.random.default_rng(args.seed)
    rows = []
    for name in names:
        shape = load_shape(name) if name.endswith(".toml") else ZOO[name]
        r = measure(shape, args, rng)
        rows.append(r)
        same = [k for k, v in r["events_equal_per_tile"].items() if v]
        print(f"{r['shape']:14s} scaled {r['scaled']['heads']} heads x "
              f"{r['scaled']['width'] // r['scaled']['heads']}, d_ff {r['scaled']['hidden']}, "
              f"{r['rows']} x {r['cols']}: {'PASS' if r['passed'] else 'FAIL'}; cycles RTL "
              f"{r['rtl_cycles']}, model {r['model_cycles']}; events equal per tile: "
              f"{len(same)}/{len(EVENTS)}"
              + ("" if len(same) == len(EVENTS) else
                 f" (differ: {', '.join(k for k in EVENTS if k not in same)})"))
        if args.no_train:
            continue
        t = measure_train(shape, args, rng)
        r["train"] = t
        same = [k for k, v in t["events_equal_per_tile"].items() if v]
        print(f"{'':14s} training step: "
              f"{'EXACT' if t['exact'] else 'DIFFERS ' + ', '.join(t['mismatches'])}; "
              f"cycles RTL {t['rtl_cycles']}, model "
              f"{t['model_cycles']} (every phase {'equal' if t['phases_equal'] else 'NOT'}); "
              f"events equal per tile: {len(same)}/{len(EVENTS)}")
    if args.json:
        args.json.write_text(json.dumps({"date": date.today().isoformat(), "seed": args.seed,
                                         "rows": rows}, indent=1) + "\n")
    ok = all(r["passed"] and r["rtl_cycles"] == r["model_cycles"]
             and all(r["events_equal_per_tile"].values()) for r in rows)
    ok = ok and all(t["exact"] and t["phases_equal"] and all(t["events_equal_per_tile"].values())
                    for r in rows if (t := r.get("train")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
