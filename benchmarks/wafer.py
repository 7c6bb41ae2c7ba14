#!/usr/bin/env python3
"""The wafer's claim, quantified (issue 20, ``docs/wafer.md``): a training step of the model
zoo's GPTs on a WSE-2-sized fabric, the decoupling of memory from model size, and how far the
prediction's estimates are from the RTL and the event level.

Three parts, each printed and written into the JSON:

- ``models``: each model of the zoo (``wafertile run --fidelity model --network NAME --train
  --rows 920 --cols 920``, the defaults): step time, tokens/s, the stream bandwidth a busy
  fabric needs, memory per tile, energy per step, average power, and the wall time and peak
  memory of the prediction;
- ``decoupling``: the same fabric and bandwidth for models from 1.3B to 1T parameters (the
  zoo's four, GPT-3 175B and a 1T shape of Narayanan et al. 2021): the SRAM a tile needs for
  the activations (weight streaming) against the SRAM it would need to keep the weights
  (weights resident), and the step time. With ``--png`` the plot;
- ``validation``: the attention's estimate against the RTL's steps
  (``benchmarks/results-attention-cycles.json``, Verilator) and, on larger arrays
  (``attention_event``), against the event level; the attention derivative's estimate
  against the event level of its compiled phases (``attention_grad_event``); the GRAD
  closed form against the analytic level, the dense MAC stream from the plan against the
  event level of the compiled layer (exact against the RTL), and the row phases
  (LayerNorm, hand-offs) at the analytic level against the event level, on small rows and
  (``rows_wafer``) on the zoo's hand-off rounds on the prediction's row of 920 tiles.

    python benchmarks/wafer.py --json benchmarks/results-wafer.json \
        --png benchmarks/results-wafer.png
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from wafertile import Config
from wafertile.hdl.flit import Opcode
from wafertile.model import predict_program
from wafertile.model.phases import grad_cycles
from wafertile.model.predict import predict_phase
from wafertile.model.timing import Timing
from wafertile.model.validation import attention_estimate, attention_grad_estimate
from wafertile.model.wafer import (
    Fabric,
    GroupBuilder,
    attention_phases,
    grad_phase_cycles,
    memory_plan,
    predict_training,
)
from wafertile.model.zoo import ZOO, GptShape
from wafertile.network.compiler import handoff_phases
from wafertile.stream import LayerError, compile_layer
from wafertile.stream.attention import STEPS

HERE = Path(__file__).resolve().parent

#: Larger models for the decoupling: GPT-3 175B (Brown et al. 2020, Table 2.1) and the 1T
#: model of Narayanan et al., "Efficient large-scale language model training on GPU clusters
#: using Megatron-LM", 2021 (Table 1: 128 layers, hidden 25600, 160 heads).
LARGER = [
    GptShape("gpt3-175b", layers=96, d_model=12288, heads=96, d_ff=4 * 12288, context=2048,
             vocab=50257),
    GptShape("gpt-1t", layers=128, d_model=25600, heads=160, d_ff=4 * 25600, context=2048,
             vocab=51200),
]

KEYS = ("step_seconds", "compute_seconds", "tokens_per_s", "required_stream_gbps",
        "average_stream_gbps", "act_bytes_per_tile", "bytes_per_tile", "fits", "recompute",
        "chunk", "energy_j", "power_w", "power_compute_bound_w", "peak_fraction",
        "mac_utilization", "stream_bytes_in", "stream_bytes_out", "resident_bytes_per_tile",
        "resident_fits", "phase_cycles", "bound", "parameters", "tokens", "batch_groups",
        "advice", "layers")


def models(rows: int, cols: int) -> list[dict]:
    out = []
    for name, shape in ZOO.items():
        t0 = time.perf_counter()
        r = predict_training(shape, Fabric(rows, cols)).as_json()
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        row = {"model": name, **{k: r[k] for k in KEYS}, "wall_s": round(wall, 1),
               "peak_rss_gib_so_far": round(peak, 3)}
        out.append(row)
        print(f"{name:13s} {r['parameters'] / 1e9:6.2f}B  step {r['step_seconds'] / 3600:7.2f} h "
              f"({r['compute_seconds']:7.1f} s computing)  {r['tokens_per_s']:7.1f} tokens/s  "
              f"needs {r['required_stream_gbps'] / 1e3:6.1f} Tb/s  "
              f"{r['bytes_per_tile']:6d} B/tile ({'fits' if r['fits'] else 'NO FIT'}, "
              f"recompute {r['recompute']})  {r['energy_j'] / 1e6:6.2f} MJ  "
              f"{r['power_w'] / 1e3:5.2f} kW ({r['power_compute_bound_w'] / 1e3:5.1f} kW "
              f"busy)  [{wall:.1f} s]", flush=True)
    return out


def decoupling(rows: int, cols: int) -> list[dict]:
    out = []
    fabric = Fabric(rows, cols)
    for shape in [*ZOO.values(), *LARGER]:
        t0 = time.perf_counter()
        r = predict_training(shape, fabric).as_json()
        row = {"model": shape.name, "parameters": r["parameters"],
               "bytes_per_tile": r["bytes_per_tile"], "fits": r["fits"],
               "recompute": r["recompute"], "step_seconds": r["step_seconds"],
               "compute_seconds": r["compute_seconds"],
               "resident_bytes_per_tile": r["resident_bytes_per_tile"],
               "resident_fits": r["resident_fits"], "sram_bytes": r["sram_bytes"],
               "wall_s": round(time.perf_counter() - t0, 1)}
        out.append(row)
        print(f"{shape.name:13s} {row['parameters'] / 1e9:8.1f}B  streaming: "
              f"{row['bytes_per_tile']:6d} B/tile ({'fits' if row['fits'] else 'NO FIT'}), "
              f"step {row['step_seconds'] / 3600:8.2f} h;  weights resident: "
              f"{row['resident_bytes_per_tile']:9.0f} B/tile "
              f"({'fits' if row['resident_fits'] else 'NO FIT'})  [{row['wall_s']} s]",
              flush=True)
    return out


def validation() -> dict:
    out: dict = {"attention": [], "grad": [], "stream": [], "rows": []}
    rtl = json.loads((HERE / "results-attention-cycles.json").read_text())
    for case in rtl["cases"]:
        shape = GptShape("t", layers=1, d_model=case["heads"] * case["D"], heads=case["heads"],
                         d_ff=4, context=case["T"], vocab=4)
        fabric = Fabric(case["rows"], case["cols"])
        timing = Timing(Config(rows=case["rows"], cols=case["cols"], dtype="bf16"))
        est = {n: c for n, c, _, _ in attention_phases(shape, fabric, case["T"], timing)}
        steps = {n: {"rtl": v["cycles"], "estimate": est[n],
                     "error": est[n] / v["cycles"] - 1} for n, v in case["steps"].items()}
        total = sum(est.values())
        out["attention"].append({"rows": case["rows"], "cols": case["cols"], "T": case["T"],
                                 "heads": case["heads"], "D": case["D"], "steps": steps,
                                 "rtl": case["attention_cycles"], "estimate": total,
                                 "error": total / case["attention_cycles"] - 1})
        print(f"attention {case['rows']}x{case['cols']} T={case['T']} {case['heads']} heads of "
              f"{case['D']}: RTL {case['attention_cycles']}, estimate {total} "
              f"({total / case['attention_cycles'] - 1:+.1%}); per step "
              + ", ".join(f"{n} {s['error']:+.0%}" for n, s in steps.items()))
    # larger arrays than the RTL's measurements, against the event level (exact against the
    # RTL on the attention's phases: the two cases above, tests/test_gpt.py)
    out["attention_event"] = [attention_event(*case) for case in ATTENTION_EVENT]
    # the derivative's estimate (and the forward's keeping hand-offs): fitted on the first
    # fourteen, checked on the last five
    out["attention_grad_event"] = [attention_grad_event(*case, fitted=n < 14)
                                   for n, case in enumerate(ATTENTION_GRAD_EVENT)]
    for R, C, n in [(4, 4, 1600), (8, 8, 6400), (16, 4, 1000), (4, 16, 1000), (32, 32, 50000),
                    (64, 64, 400000), (3, 5, 77)]:
        timing = Timing(Config(rows=R, cols=C, dtype="bf16"))
        ref = grad_cycles(timing, 1 + np.arange(n) % (R - 1), np.arange(n) % C, 0)
        ours = grad_phase_cycles(timing, n, R, C)
        out["grad"].append({"rows": R, "cols": C, "grads": n, "analytic": int(ref),
                            "closed_form": ours, "error": ours / ref - 1})
    worst = max(abs(g["error"]) for g in out["grad"])
    print(f"GRAD closed form against the analytic level: within {worst:.1%} on "
          f"{len(out['grad'])} phases")
    for R, C, I, J, depth in [(4, 4, 48, 32, 64), (4, 4, 32, 128, 32), (4, 4, 40, 96, 32),
                              (4, 4, 64, 256, 64), (4, 4, 96, 64, 16), (16, 16, 64, 96, 16),
                              (16, 32, 96, 160, 32), (32, 32, 192, 128, 32),
                              (16, 24, 48, 128, 16),
                              # larger split layers in lockstep (K = 4, 8, 16)
                              (64, 64, 256, 256, 64), (64, 64, 128, 512, 64),
                              (128, 128, 256, 512, 64), (128, 128, 256, 1024, 64)]:
        fabric = Fabric(R, C)
        shape = GptShape("t", layers=1, d_model=J, heads=1, d_ff=I, context=4, vocab=8)
        m = memory_plan(shape, fabric, 4)
        m = type(m)(depth, 256, False, 0, 0, 2, m.sram_bytes)
        g = GroupBuilder(shape, fabric, m, R)
        g.linear("l", I, J, "forward", handoff=None)
        ours = [p for p in g.phases if p.kind == "forward"][1::2]
        cfg = Config(rows=R, cols=C, dtype="bf16", act_depth=depth, acc_depth=256)
        w = np.ones((I, J), np.float32)
        program = compile_layer(cfg, np.ones((R, J), np.float32), w)
        table = np.ones((R * C, depth), bool)
        nz = {k: table for k, p in enumerate(program.phases) if p.kind == "stream"}
        pred = predict_program(cfg, program, detail="mesh", nonzero=nz)
        mesh = [c for k, c in zip(pred.kinds, pred.phase_cycles, strict=True) if k == "stream"]
        for p, c in zip(ours, mesh, strict=True):
            out["stream"].append({"rows": R, "cols": C, "I": I, "J": J, "act_depth": depth,
                                  "K": -(-J // depth), "method": p.method,
                                  "plan": p.cycles, "mesh": c, "error": p.cycles / c - 1})
    for s in out["stream"]:
        print(f"stream {s['rows']}x{s['cols']}, layer {s['I']}x{s['J']}, K = {s['K']}: plan "
              f"{s['plan']} "
              f"({s['method']}), event level {s['mesh']} ({s['error']:+.1%})")
    # the row phases: the analytic level the prediction uses against the event level, on one
    # row (every row's phase is the same)
    for C, d, f in [(8, 32, 128), (16, 64, 256), (32, 128, 512)]:
        fabric = Fabric(2, C)
        shape = GptShape("t", layers=1, d_model=d, heads=2, d_ff=f, context=2, vocab=8)
        g = GroupBuilder(shape, fabric, memory_plan(shape, fabric, 2), 2)
        cases = {
            "layernorm": g.layernorm_phases(False),
            "layernorm_back": g.layernorm_phases(True),
            "gelu_handoff": handoff_phases(g.row_config, g.plan(f, d, row=True),
                                           SimpleNamespace(relu=False, gelu=True), 0, 1,
                                           SimpleNamespace(chunk=f, G=C), 0),
            "finish_back_handoff": handoff_phases(
                g.row_config, g.plan(d, d, row=True), SimpleNamespace(relu=False, gelu=False),
                0, 1, SimpleNamespace(chunk=d, G=C), 0, op=Opcode.FINISH_BACK),
        }
        ones = np.ones((C, g.row_config.act_depth), bool)  # every activation nonzero
        for name, phases in cases.items():
            a, m = (sum(predict_phase(g.row_timing, p, detail=how, nonzero=ones if p.kind
                                      == "stream" else None)[0] for p in phases)
                    for how in ("analytic", "mesh"))
            out["rows"].append({"cols": C, "d_model": d, "d_ff": f, "phase": name,
                                "analytic": int(a), "mesh": int(m), "error": a / m - 1})
            print(f"{name} on a row of {C} tiles, d_model {d}: analytic {a}, event level {m} "
                  f"({a / m - 1:+.1%})")
    out["rows_wafer"] = [wafer_rows(ZOO[name], 920, per_layer=4)
                         for name in ("gpt3-xl", "gpt-j-6b", "gpt3-13b", "gpt-neox-20b")]
    out["layernorm_wafer"] = [wafer_layernorm(ZOO[name], 920)
                              for name in ("gpt3-xl", "gpt-neox-20b")]
    return out


def wafer_layernorm(shape: GptShape, cols: int) -> dict:
    """A LayerNorm of ``shape`` and its derivative on the prediction's row of ``cols`` tiles
    (:meth:`GroupBuilder.layernorm_phases`), at the analytic
    level against the event level: in total and the worst phase."""
    fabric = Fabric.given(cols, cols)
    step = predict_training(shape, fabric)
    g = GroupBuilder(shape, fabric, step.memory, step.seq)
    d = shape.d_model
    ones = np.ones((cols, g.row_config.act_depth), bool)
    out = {"model": shape.name, "cols": cols, "d_model": d, "chunk": step.memory.chunk}
    for name in ("forward", "backward"):
        try:
            phases = g.layernorm_phases(name == "backward")
        except LayerError as exc:  # the prediction estimates it (docs/wafer.md)
            out[name] = {"refused": str(exc)}
            print(f"{shape.name} LayerNorm {name} on a row of {cols}: the compiler refuses it "
                  f"with chunks of {step.memory.chunk} ({exc}); the prediction estimates it")
            continue
        t0 = time.perf_counter()
        a, m = ([int(predict_phase(g.row_timing, p, detail=how, nonzero=ones if p.kind
                                   == "stream" else None)[0]) for p in phases]
                for how in ("analytic", "mesh"))
        worst = max(abs(x / y - 1) for x, y in zip(a, m, strict=True))
        out[name] = {"phases": len(phases), "analytic": sum(a), "mesh": sum(m),
                     "error": sum(a) / sum(m) - 1, "worst_phase_error": worst,
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{shape.name} LayerNorm {name} on a row of {cols}: analytic {sum(a)}, event "
              f"level {sum(m)} ({sum(a) / sum(m) - 1:+.2%}; worst phase {worst:.1%})")
    return out


def wafer_rows(shape: GptShape, cols: int, per_layer: int = 6) -> dict:
    """The hand-off rounds of ``shape``'s block on a row of ``cols`` tiles (the strip the
    prediction plays them on, 920 for the WSE-2-sized fabric), at the analytic level against
    the event level: up to ``per_layer`` rounds of each layer's hand-off, evenly spaced over
    its rounds. Forward: the attention's projection and ``fc2`` (FINISH), ``fc1`` (GELU:
    NONLINEAR and FINISH); backward data: FINISH_BACK of every layer."""
    fabric = Fabric.given(cols, cols)
    step = predict_training(shape, fabric)
    d, f = shape.d_model, shape.d_ff
    layers = [("proj", d, d, "forward", "finish", False), ("fc1", f, d, "forward", "finish", True),
              ("fc2", d, f, "forward", "finish", False),
              ("fc2", f, d, "backward_data", "back", False),
              ("fc1", d, f, "backward_data", "back", False),
              ("qkv", d, 3 * d, "backward_data", "back", False)]
    cases = []
    for name, I, J, kind, handoff, gelu in layers:
        g = GroupBuilder(shape, fabric, step.memory, step.seq)
        g.kept = []
        g.linear(name, I, J, kind, handoff=handoff, gelu=gelu)
        rounds = [p for p in g.kept if p.kind == "handoff"]
        pick = sorted(set(np.linspace(0, len(rounds) - 1, min(per_layer, len(rounds)))
                          .round().astype(int)))
        for k in pick:
            t0 = time.perf_counter()
            a = predict_phase(g.row_timing, rounds[k], detail="analytic")[0]
            m = predict_phase(g.row_timing, rounds[k], detail="mesh")[0]
            ops = set(np.unique(rounds[k].flits["payload.op"]).tolist())
            what = ("gelu" if Opcode.NONLINEAR.value in ops else "finish_back"
                    if Opcode.FINISH_BACK.value in ops else "finish")
            cases.append({"layer": name, "pass": kind, "what": what, "round": int(k),
                          "rounds": len(rounds), "flits": len(rounds[k]), "analytic": int(a),
                          "mesh": int(m), "error": a / m - 1,
                          "mesh_seconds": round(time.perf_counter() - t0, 2)})
            print(f"{shape.name} on a row of {cols}: {name} {kind} round {k} of {len(rounds)} "
                  f"({what}, {len(rounds[k])} flits): analytic {a}, event level {m} "
                  f"({a / m - 1:+.1%})", flush=True)
    summary = {}
    for what in ("finish", "gelu", "finish_back"):
        mine = [c for c in cases if c["what"] == what]
        if mine:
            a = sum(c["analytic"] for c in mine)
            m = sum(c["mesh"] for c in mine)
            errs = [c["error"] for c in mine]
            summary[what] = {"rounds": len(mine), "total_error": a / m - 1,
                             "min_error": min(errs), "max_error": max(errs)}
            print(f"{what}: {len(mine)} rounds, analytic against event level {a / m - 1:+.1%} "
                  f"in total, {min(errs):+.1%} to {max(errs):+.1%} per round")
    return {"model": shape.name, "cols": cols, "chunk": step.memory.chunk, "cases": cases,
            "summary": summary}


#: (rows, cols, T, heads, D) of the attention's estimate against the event level: the first
#: three measured the estimate's end costs, the last two (and the RTL's two) check it
ATTENTION_EVENT = [(16, 16, 16, 4, 16), (16, 16, 16, 16, 16), (32, 32, 32, 8, 32),
                   (24, 24, 24, 6, 16), (32, 32, 32, 32, 8)]


def attention_event(rows: int, cols: int, T: int, heads: int, D: int, seed: int = 0) -> dict:
    """The attention's estimate (:func:`attention_phases`) against the event level on the
    compiled attention (``wafertile.stream.attention``) of random ``q``, ``k``, ``v``, step
    by step; every activation taken as nonzero (random normal values)."""
    event, est = attention_estimate(rows, cols, T, heads, D, np.random.default_rng(seed))
    total_e, total_m = sum(est.values()), sum(event.values())
    steps = {n: {"event": event[n], "estimate": est[n], "error": est[n] / event[n] - 1}
             for n in STEPS}
    print(f"attention {rows}x{cols} T={T} {heads} heads of {D}: event level {total_m}, estimate "
          f"{total_e} ({total_e / total_m - 1:+.1%}); per step "
          + ", ".join(f"{n} {s['error']:+.0%}" for n, s in steps.items()))
    return {"rows": rows, "cols": cols, "T": T, "heads": heads, "D": D, "steps": steps,
            "event": total_m, "estimate": total_e, "error": total_e / total_m - 1}


#: (rows, cols, T, heads, D, sequences) of the derivative's estimate's cases
ATTENTION_GRAD_EVENT = [(8, 8, 8, 2, 4, 1), (16, 16, 16, 4, 4, 1), (12, 12, 12, 3, 4, 1),
                        (16, 16, 16, 2, 8, 1), (16, 16, 16, 8, 2, 1), (24, 24, 24, 4, 6, 1),
                        (32, 32, 32, 8, 4, 1), (20, 20, 20, 5, 4, 1), (28, 28, 28, 4, 7, 1),
                        (16, 16, 8, 4, 4, 2), (16, 8, 16, 4, 2, 1), (32, 32, 16, 8, 4, 2),
                        (16, 8, 16, 4, 4, 1), (16, 4, 16, 2, 8, 1),
                        (12, 12, 12, 2, 6, 1), (20, 20, 10, 4, 5, 2), (24, 16, 24, 4, 4, 1),
                        (16, 8, 16, 2, 8, 1), (12, 6, 12, 3, 4, 1)]


def attention_grad_event(rows: int, cols: int, T: int, heads: int, D: int, sequences: int,
                         *, fitted: bool) -> dict:
    """The estimate of a training step's attention derivative and keeping hand-offs
    (:func:`~wafertile.model.wafer.attention_grad_phases`) against the event level of the
    compiled phases, step by step (``fitted``: a case its coefficients were fitted on)."""
    event, est = attention_grad_estimate(rows, cols, T, heads, D, sequences)
    total_e, total_m = sum(est.values()), sum(event.values())
    steps = {n: {"event": event[n], "estimate": est[n], "error": est[n] / event[n] - 1}
             for n in event}
    print(f"attention derivative {rows}x{cols} T={T} x {sequences} {heads} heads of {D}"
          f"{' (fitted)' if fitted else ''}: event level {total_m}, estimate {total_e} "
          f"({total_e / total_m - 1:+.1%}); per step "
          + ", ".join(f"{n} {s['error']:+.0%}" for n, s in steps.items()))
    return {"rows": rows, "cols": cols, "T": T, "heads": heads, "D": D,
            "sequences": sequences, "fitted": fitted, "steps": steps, "event": total_m,
            "estimate": total_e, "error": total_e / total_m - 1}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = [r["parameters"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.loglog(p, [r["bytes_per_tile"] for r in rows], "o-", label="weight streaming: "
             "activations")
    a.loglog(p, [r["resident_bytes_per_tile"] for r in rows], "s--",
             label="weights resident: weights + the same activations")
    a.axhline(rows[0]["sram_bytes"], color="k", lw=0.8, label="SRAM per tile")
    a.set_xlabel("parameters")
    a.set_ylabel("bytes per tile")
    a.legend(fontsize=8)
    b.loglog(p, [r["step_seconds"] for r in rows], "o-", label="step (stream bound)")
    b.loglog(p, [r["compute_seconds"] for r in rows], "^-", label="fabric cycles alone")
    b.set_xlabel("parameters")
    b.set_ylabel("seconds per step")
    b.legend(fontsize=8)
    fig.suptitle(f"{rows[0]['model']} .. {rows[-1]['model']} on 920 x 920 tiles, 48 KiB "
                 "each, 1.2 Tb/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=920)
    parser.add_argument("--cols", type=int, default=920)
    parser.add_argument("--only", choices=["models", "decoupling", "validate"],
                        help="one part only")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--png", type=Path, help="plot the decoupling here (matplotlib)")
    args = parser.parse_args(argv)
    out: dict = {"date": time.strftime("%Y-%m-%d"), "rows": args.rows, "cols": args.cols}
    if args.only in (None, "validate"):
        out["validation"] = validation()
    if args.only in (None, "models"):
        out["models"] = models(args.rows, args.cols)
    if args.only in (None, "decoupling"):
        out["decoupling"] = decoupling(args.rows, args.cols)
        if args.png:
            plot(out["decoupling"], args.png)
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
