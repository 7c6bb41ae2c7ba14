#!/usr/bin/env python3
"""What the nonlinear unit's operations cost on the float tiles (issue 19): cycles per
element per function on the RTL core (NONLINEAR's four, MUL and MAX), and the hand-off of a
GELU layer against a ReLU one in a whole network.

1. **Per element.** A bf16 tile core with the nonlinear unit (``nonlinear = true``) in
   Amaranth's simulator takes, per function, ``N`` operations (NONLINEAR with the function's
   number, or MUL / MAX with an FP32 operand) on ``N`` different accumulators back to back
   (no accumulator hazard), after a WRITE_ACC of each, then a READ_ACC of each.
   Cycles per element = (the cycle of the last reply, less that of the same stream without
   the NONLINEARs) / ``N``: what each element adds to a stream. Every result is checked
   against the reference (``wafertile.sim.models.nonlinear``).
2. **In a network.** A bf16 MLP (64 -> 128 -> 10, 50% of the weights zero) on a 4 x 4
   array with the unit, once with GELU after the hidden layer, once with ReLU and once with
   ReLU and the softmax of its outputs (``softmax = 1``, made on the fabric: docs/nonlinear.md),
   on the Verilator harness: total cycles, the hand-off phases' cycles and share, the
   softmax's cycles per batch group, outputs bit exact against ``network_reference``; and
   the performance model's event level for each.

    python benchmarks/nonlinear_cycles.py --json benchmarks/results-nonlinear-cycles.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from wafertile import Config
from wafertile.hdl.core import TileCore
from wafertile.hdl.core.fp import float_format
from wafertile.hdl.core.nonlinear import FUNCTIONS, UNARY
from wafertile.hdl.core.units import FpNonlinear
from wafertile.hdl.flit import Opcode, pack, payload_layout, unpack
from wafertile.model.layer import predict_network
from wafertile.network import Layer, Network
from wafertile.network.compiler import compile_network
from wafertile.run import simulate
from wafertile.sim.models.nonlinear import reference

#: The opcode of each function of two operands, and the operand its elements get.
BINARY = {"mul": (Opcode.MUL, -1.25), "max": (Opcode.MAX, 2.0)}


def _last_reply(cfg: Config, layout, flits: list[dict], n: int) -> tuple[int, list[int]]:
    """Play ``flits`` into a tile core one per cycle (every output taken); the cycle of the
    ``n``-th reply and the replies' data."""
    dut = TileCore(cfg)
    packed = [pack(layout, f) for f in flits]
    replies: list[int] = []
    last = [0]

    async def bench(ctx):
        k, cycle = 0, 0
        while len(replies) < n:
            ctx.set(dut.i.valid, k < len(packed))
            if k < len(packed):
                ctx.set(dut.i.payload.as_value(), packed[k])
            ctx.set(dut.o.ready, 1)
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.as_value())
            k += int(k < len(packed) and ready)
            if valid:
                replies.append(unpack(layout, payload)["data"])
                last[0] = cycle
            cycle += 1
            if cycle > 200 * len(packed):
                raise RuntimeError("the core did not answer")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return last[0], replies


def per_element(n: int, seed: int) -> list[dict]:
    """Cycles per element of each function on the RTL core (module docstring, part 1)."""
    cfg = Config(dtype="bf16", act_depth=16, acc_depth=max(16, 1 << (n - 1).bit_length()),
                 nonlinear=True)
    layout = payload_layout(cfg)
    rng = np.random.default_rng(seed)
    out = []
    for func, name in enumerate(FUNCTIONS):
        x = rng.uniform(0.5, 4.0, n).astype(np.float32)  # within every function's range
        words = x.view(np.uint32)
        writes = [{"op": Opcode.WRITE_ACC, "addr": k, "data": int(words[k].view(np.int32))}
                  for k in range(n)]
        if name in UNARY:
            work = [{"op": Opcode.NONLINEAR, "addr": k, "data": func} for k in range(n)]
            want = reference(name, words)
        else:
            op, value = BINARY[name]
            operand = np.float32(value).view(np.uint32)
            work = [{"op": op, "addr": k, "data": int(operand.view(np.int32))}
                    for k in range(n)]
            want = reference(name, words, operand)
        reads = [{"op": Opcode.READ_ACC, "addr": k, "data": k} for k in range(n)]
        end, replies = _last_reply(cfg, layout, writes + work + reads, n)
        base, _ = _last_reply(cfg, layout, writes + reads, n)
        got = np.array(replies, np.int64).astype(np.uint32)
        out.append({"function": name, "code": func, "elements": n, "cycles": end - base,
                    "cycles_per_element": (end - base) / n,
                    "unit_cycles": FpNonlinear.cycles(func),
                    "bit_exact": bool(np.array_equal(got, want))})
    return out


def network(seed: int, build_root: Path | None) -> list[dict]:
    """The GELU and ReLU versions of one MLP on the RTL and in the model (part 2)."""
    cfg = Config(rows=4, cols=4, dtype="bf16", act_depth=64, acc_depth=64, nonlinear=True)
    fmt = float_format("bf16")
    rng = np.random.default_rng(seed)

    def numbers(shape, zeros=0.0):
        v = fmt.values(fmt.bits(rng.normal(0, 0.3, shape).astype(np.float32)))
        return np.where(rng.random(shape) < zeros, np.float32(0), v).astype(np.float32)

    w0, w1 = numbers((128, 64), 0.5), numbers((10, 128), 0.5)
    b0 = rng.normal(0, 0.1, 128).astype(np.float32)
    b1 = np.zeros(10, np.float32)
    x = numbers((8, 64))
    out = []
    for act in ("gelu", "relu", "relu+softmax"):
        net = Network([Layer(w0, b0, relu=act != "gelu", gelu=act == "gelu"), Layer(w1, b1)],
                      16, name=f"mlp-{act}", dtype="bf16", softmax=act.endswith("softmax"))
        program = compile_network(cfg, net, x)
        t0 = time.perf_counter()
        run = simulate(cfg, [program], sim="verilator", build_root=build_root)
        seconds = time.perf_counter() - t0
        (y, stats), = run.results
        from wafertile.sim.models.network import network_reference
        want, _ = network_reference(cfg, net, x)
        got = np.asarray(y, np.int64).astype(np.uint32)
        phases = [int(c) for c in stats["phase_cycles"]]
        kinds = [p.kind for p in program.phases]
        steps = program.phase_step
        handoff = sum(c for k, c, st in zip(kinds, phases, steps, strict=True)
                      if k == "handoff" and st == "layer")
        softmax = sum(c for c, st in zip(phases, steps, strict=True) if st == "softmax")
        groups = -(-x.shape[0] // cfg.rows)
        model = predict_network(cfg, net, x, dense=False, detail="mesh").sparse
        out.append({"activation": act, "config": cfg.as_dict(), "batch": int(x.shape[0]),
                    "total_cycles": sum(phases), "handoff_cycles": handoff,
                    "handoff_share": handoff / sum(phases),
                    "softmax_cycles": softmax,
                    "softmax_cycles_per_group": softmax / groups,
                    "softmax_cycles_per_element": softmax / groups / w1.shape[0],
                    "model_total_cycles": int(sum(model.phase_cycles)),
                    "model_phases_equal": model.phase_cycles == phases,
                    "bit_exact": bool(np.array_equal(got, want.view(np.uint32))),
                    "sim_seconds": round(seconds, 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=16,
                        help="NONLINEARs per function in part 1 (default 16)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--skip-network", action="store_true",
                        help="part 1 only (no Verilator build)")
    parser.add_argument("--build-root", type=Path, default=None,
                        help="where the Verilator build goes (default: the wafertile cache)")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    if args.elements < 1:
        parser.error(f"--elements must be at least 1, not {args.elements}")
    result = {"date": time.strftime("%Y-%m-%d"), "per_element": per_element(args.elements,
                                                                            args.seed)}
    print(f"{'function':<12}{'cycles/element':>16}{'unit cycles':>13}{'bit exact':>11}")
    for row in result["per_element"]:
        print(f"{row['function']:<12}{row['cycles_per_element']:>16.2f}"
              f"{row['unit_cycles']:>13}{row['bit_exact']!s:>11}")
    if not args.skip_network:
        result["network"] = network(args.seed, args.build_root)
        print(f"\n{'activation':<14}{'total':>8}{'hand-off':>10}{'share':>8}{'softmax':>9}"
              f"{'model':>8}{'bit exact':>11}")
        for row in result["network"]:
            print(f"{row['activation']:<14}{row['total_cycles']:>8}{row['handoff_cycles']:>10}"
                  f"{row['handoff_share']:>8.1%}{row['softmax_cycles']:>9}"
                  f"{row['model_total_cycles']:>8}{row['bit_exact']!s:>11}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = all(r["bit_exact"] for r in result["per_element"]) and all(
        r["bit_exact"] and r["model_phases_equal"] for r in result.get("network", []))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
