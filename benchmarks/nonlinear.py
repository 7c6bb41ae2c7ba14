#!/usr/bin/env python3
"""The error of the float tiles' nonlinear functions (``docs/nonlinear.md``,
``wafertile.sim.models.nonlinear``) against float64, in FP32 ulps, over each function's
documented ranges; and what survives the rounding to BF16 and FP16 (issue 19).

Seeded samples: uniform in value over each range, plus (for ranges over several binades)
uniform in the logarithm. The ulp of a value is the spacing of FP32 numbers at the exact
result (``numpy.spacing``); results whose exact value is below 2^-126 in magnitude are counted
apart (absolute error). Prints a table and writes JSON.

    python benchmarks/nonlinear.py --json benchmarks/results-nonlinear.json

``--exhaustive`` adds GELU on every FP32 number from -9.5 to 9.5 (about 2.2 billion inputs,
in chunks: about 10 minutes on one core), the reciprocal on every number of [1, 2) and the
reciprocal square root on every number of [1, 4): their results scale exactly with their
inputs' powers of two, so these binades stand for every input of their ranges, but for the
reciprocal square root's lowest binade and two highest, also measured whole.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

from wafertile.hdl.core.fp import BF16, FP16
from wafertile.sim.models import nonlinear as nl

TINY = 2.0 ** -126


def exact(name: str, x: np.ndarray) -> np.ndarray:
    """The float64 reference of ``name`` (GELU as ``x sigmoid(2a)``: no cancellation; its
    derivative ``sigmoid(2a) + x sigmoid(2a) sigmoid(-2a) d(2a)/dx``)."""
    x = x.astype(np.float64)
    with np.errstate(over="ignore"):
        if name == "exp":
            return np.exp(x)
        if name == "reciprocal":
            return 1 / x
        if name == "rsqrt":
            return 1 / np.sqrt(x)
        k = 2 * np.sqrt(2 / np.pi)
        z = x * (k + 0.044715 * k * x * x)    # 2a
        if name == "gelu":
            return x / (1 + np.exp(-z))
        s, s1 = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(z))
        return s + x * s * s1 * (k + 3 * 0.044715 * k * x * x)   # GELU's derivative


#: (function, low, high, logarithmic sampling): the rows of the table
RANGES = [("exp", -87.3365479, 88.7228317, False), ("exp", -1.0, 1.0, False),
          ("reciprocal", 2.0 ** -125, 2.0 ** 125, True),
          ("rsqrt", 2.0 ** -126, 3.4e38, True),
          ("gelu", -4.0, 4.0, False), ("gelu", -9.5, -4.0, False), ("gelu", 4.0, 1e4, False),
          ("gelu", -1e4, -9.5, False),
          ("gelu_grad", -0.5, 9.5, False), ("gelu_grad", -9.5, -1.0, False),
          ("gelu_grad", -1.0, -0.5, False), ("gelu_grad", 9.5, 1e4, False),
          ("gelu_grad", -1e4, -9.5, False)]


def measure(name: str, lo: float, hi: float, log: bool, n: int, rng) -> dict:
    x = np.exp(rng.uniform(np.log(lo), np.log(hi), n)) if log else rng.uniform(lo, hi, n)
    x = np.clip(x.astype(np.float32), np.float32(lo), np.float32(hi))
    got = getattr(nl, name)(x.view(np.uint32)).view(np.float32).astype(np.float64)
    want = exact(name, x)
    normal = np.abs(want) >= TINY
    ulp = np.abs(got - want)[normal] / np.spacing(np.abs(want[normal]).astype(np.float32))
    out = {"function": name, "low": lo, "high": hi, "samples": n,
           "max_abs_error": float(np.abs(got - want).max()),
           "max_ulp": float(ulp.max()) if len(ulp) else None,
           "mean_ulp": float(ulp.mean()) if len(ulp) else None,
           "worst_input": float(x[normal][ulp.argmax()]) if len(ulp) else None,
           "below_2^-126": int((~normal).sum()),
           "max_abs_error_below_2^-126": float(np.abs(got - want)[~normal].max())
           if (~normal).any() else None}
    for fmt in (BF16, FP16):  # what survives the rounding to the tile's format
        mine = fmt.bits(got.astype(np.float32)).astype(np.int64)
        theirs = fmt.bits(want.astype(np.float32)).astype(np.int64)
        keep = normal & (np.abs(want) >= 2.0 ** (-14 if fmt is FP16 else -126))
        keep &= np.abs(want) <= (65504 if fmt is FP16 else 3.3e38)
        d = np.abs(mine - theirs)[keep]
        out[f"{fmt.name}_max_ulp"] = int(d.max()) if len(d) else None
        out[f"{fmt.name}_share_off"] = float((d > 0).mean()) if len(d) else None
    return out


def exhaustive(name: str, lo: float, hi: float, chunk: int = 1 << 22) -> dict:
    """``name`` on every FP32 number from ``lo`` to ``hi`` (``lo < 0 < hi``: each sign's words
    from +-0 to the limit; ``0 < lo < hi``: the words from ``lo`` up to, not including,
    ``hi``): the largest error in ulps (exact values of at least 2^-126) and where."""
    worst, at, count = 0.0, None, 0
    if lo > 0:
        spans = [(int(np.float32(lo).view(np.uint32)), int(np.float32(hi).view(np.uint32)) - 1)]
    else:
        spans = [(0x80000000 if limit < 0 else 0, int(np.float32(limit).view(np.uint32)))
                 for limit in (lo, hi)]
    for first, top in spans:
        for start in range(first, top + 1, chunk):
            w = np.arange(start, min(start + chunk, top + 1), dtype=np.uint32)
            x = w.view(np.float32)
            got = getattr(nl, name)(w).view(np.float32).astype(np.float64)
            want = exact(name, x)
            normal = np.abs(want) >= TINY
            ulp = np.abs(got - want)[normal] / np.spacing(
                np.abs(want[normal]).astype(np.float32))
            count += len(w)
            if len(ulp) and ulp.max() > worst:
                worst, at = float(ulp.max()), float(x[normal][ulp.argmax()])
    return {"function": name, "low": lo, "high": hi, "inputs": count, "max_ulp": worst,
            "worst_input": at}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000,
                        help="samples per range (default 1000000)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--exhaustive", action="store_true",
                        help="also GELU on every FP32 number from -9.5 to 9.5 (slow), the "
                             "reciprocal on [1, 2) and rsqrt on [2^-126, 2^-124), [1, 4) "
                             "and [2^126, 3.4e38]")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = [measure(*r, args.samples, rng) for r in RANGES]
    # the reciprocal on one binade and the reciprocal square root on two: both are exact
    # under scaling by 2^k (by 4^k), so these stand for every input of their documented
    # ranges (the reciprocal's end binades measured to show it); except for rsqrt's lowest
    # binade (v / 2 is subnormal, rounded) and two highest (y * y is subnormal), measured on
    # their own
    every = [exhaustive("gelu", -9.5, 9.5), exhaustive("reciprocal", 2.0 ** -125, 2.0 ** -124),
             exhaustive("reciprocal", 1.0, 2.0), exhaustive("reciprocal", 2.0 ** 124, 2.0 ** 125),
             exhaustive("rsqrt", 2.0 ** -126, 2.0 ** -124), exhaustive("rsqrt", 1.0, 4.0),
             exhaustive("rsqrt", 2.0 ** 126, 3.4e38)] if args.exhaustive else None
    print(f"{'function':10s} {'range':>24s} {'max ulp':>9s} {'mean':>6s}  {'worst at':>12s}  "
          f"{'max abs':>8s}  bf16 max/share  fp16 max/share")
    for r in rows:
        mx = "-" if r["max_ulp"] is None else f"{r['max_ulp']:.2f}"
        mean = "-" if r["mean_ulp"] is None else f"{r['mean_ulp']:.2f}"
        at = "-" if r["worst_input"] is None else format(r["worst_input"], ".6g")
        print(f"{r['function']:10s} {r['low']:>11.4g} .. {r['high']:<10.4g} {mx:>9s} {mean:>6s}  "
              f"{at:>12s}  {r['max_abs_error']:8.1e}  "
              f"{r['bf16_max_ulp']} / {r['bf16_share_off'] or 0:.1e}    {r['fp16_max_ulp']} / "
              f"{r['fp16_share_off'] or 0:.1e}")
    for e in every or ():
        print(f"{e['function']} on all {e['inputs']} FP32 numbers from {e['low']} to "
              f"{e['high']}: max {e['max_ulp']:.2f} ulp at {e['worst_input']!r}")
    if args.json:
        args.json.write_text(json.dumps({"date": date.today().isoformat(), "seed": args.seed,
                                         "iterations": nl.ITERATIONS,
                                         "rows": rows, "exhaustive": every}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
