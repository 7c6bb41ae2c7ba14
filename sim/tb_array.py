"""cocotb testbench of the tile array (``wafertile_array``) running a compiled sparse layer.

Parts: one link driver per west-edge port (the host's injection ports), one link receiver per
west-edge port (random backpressure), a counter of the tiles' ``mac_done | mac_skipped``
pulses, the compiler's :class:`~wafertile.stream.LayerProgram`, and the checker: the Y read
back must equal :func:`wafertile.stream.reference` (numpy) bit for bit. Phases are played as
the program says: a load ends when its fence replies are back, a stream when every MAC has
been executed, a read when all its replies are back.

The environment carries ``WAFERTILE_CONFIG`` (JSON), ``WAFERTILE_SEED``, ``WAFERTILE_LAYER``
(JSON: B, I, J, density) and ``WAFERTILE_BACKPRESSURE``.
"""

from __future__ import annotations

import json
import os
from random import Random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from ..config import Config
from ..hdl.flit import flit_layout, pack, unpack
from ..stream import compile_layer, reference
from .array_model import collect_outputs


def _config() -> Config:
    return Config.from_mapping(json.loads(os.environ["WAFERTILE_CONFIG"]))


def make_layer(cfg: Config, rng: np.random.Generator, b: int, i: int, j: int, density: float,
               extremes: bool = False, zero_lines: bool = False):
    """Random activations (10% zero) and weights of the given density, within data_width.

    ``zero_lines`` zeroes whole rows and columns: every third output row of W, every fourth
    input column of W, and every third input column and the first batch row of X.
    """
    lo, hi = cfg.data_min, cfg.data_max
    x = rng.integers(lo, hi + 1, (b, j))
    x[rng.random((b, j)) < 0.1] = 0
    w = rng.integers(lo, hi + 1, (i, j))
    if extremes:
        x[:, ::2] = hi
        w[::2, :] = lo
    w[rng.random((i, j)) >= density] = 0
    if zero_lines:
        w[::3, :] = 0
        w[:, ::4] = 0
        x[:, ::3] = 0
        x[0, :] = 0
    return x, w


async def play(dut, cfg: Config, program, *, backpressure: float, rng: Random,
               timeout: int = 200_000):
    """Run ``program`` on the array.

    Returns ``(Y, stats)``; ``stats`` has ``cycles`` (of the stream phases), ``total_cycles``,
    and per tile (index ``y * cols + x``) ``mac_done`` and ``mac_skipped`` counts.
    """
    layout = flit_layout(cfg)
    clk = dut.clk
    R = cfg.rows
    ins = [(getattr(dut, f"w_y{y}_in__valid"), getattr(dut, f"w_y{y}_in__flit"),
            getattr(dut, f"w_y{y}_in__ready")) for y in range(R)]
    outs = [(getattr(dut, f"w_y{y}_out__valid"), getattr(dut, f"w_y{y}_out__flit"),
             getattr(dut, f"w_y{y}_out__ready")) for y in range(R)]
    all_vcs = (1 << cfg.num_vcs) - 1
    B, I, _ = program.shape
    y_out = np.zeros((B, I), dtype=np.int64)
    cycles = 0
    stream_cycles = 0
    n_tiles = cfg.rows * cfg.cols
    done_per_tile = np.zeros(n_tiles, dtype=np.int64)
    skipped_per_tile = np.zeros(n_tiles, dtype=np.int64)
    for phase in program.phases:
        queues = {y: [] for y in range(R)}
        for port, flit in phase.injections:
            queues[port].append((pack(layout, flit), flit["header"]["vc"]))
        replies = {y: [] for y in range(R)}
        macs = 0
        start = cycles
        while True:
            await FallingEdge(clk)
            for y in range(R):
                valid, flit, _ = ins[y]
                if queues[y]:
                    valid.value = 1
                    flit.value = queues[y][0][0]
                else:
                    valid.value = 0
                outs[y][2].value = 0 if rng.random() < backpressure else all_vcs
            await ReadOnly()
            for y in range(R):
                valid, _, ready = ins[y]
                if queues[y] and (int(ready.value) >> queues[y][0][1]) & 1:
                    queues[y].pop(0)
                ov, of, orr = outs[y]
                if int(ov.value):
                    word = int(of.value)
                    vc = unpack(layout, word)["header"]["vc"]
                    if (int(orr.value) >> vc) & 1:
                        replies[y].append(unpack(layout, word)["payload"])
            done, skipped = int(dut.mac_done.value), int(dut.mac_skipped.value)
            if done | skipped:
                macs += bin(done).count("1") + bin(skipped).count("1")
                for k in range(n_tiles):
                    done_per_tile[k] += (done >> k) & 1
                    skipped_per_tile[k] += (skipped >> k) & 1
            cycles += 1
            if cycles > timeout:
                stuck = {y: len(q) for y, q in queues.items() if q}
                raise AssertionError(
                    f"no completion after {timeout} cycles in a {phase.kind} phase: flits left "
                    f"per port {stuck}, {macs}/{phase.expected_macs} MACs, "
                    f"{sum(map(len, replies.values()))}/{len(phase.replies)} replies")
            if any(queues.values()):
                continue
            if phase.kind == "stream" and macs >= phase.expected_macs:
                break
            if phase.kind != "stream" and sum(map(len, replies.values())) >= len(phase.replies):
                break
        if phase.kind == "stream":
            assert macs == phase.expected_macs, \
                f"tiles executed {macs} MACs, the program has {phase.expected_macs}"
            stream_cycles += cycles - start
        collect_outputs(phase, replies, y_out)
    return y_out, {"cycles": stream_cycles, "total_cycles": cycles,
                   "mac_done": done_per_tile.tolist(), "mac_skipped": skipped_per_tile.tolist()}


@cocotb.test()
async def layer(dut):
    """A random sparse layer streamed through the array equals numpy."""
    cfg = _config()
    seed = int(os.environ.get("WAFERTILE_SEED", "1"))
    spec = json.loads(os.environ["WAFERTILE_LAYER"])
    backpressure = float(os.environ.get("WAFERTILE_BACKPRESSURE", "0"))
    rng = np.random.default_rng(seed)
    x, w = make_layer(cfg, rng, spec["B"], spec["I"], spec["J"], spec["density"],
                      spec.get("extremes", False), spec.get("zero_lines", False))
    program = compile_layer(cfg, x, w)
    await _reset(dut, cfg)
    got, stats = await play(dut, cfg, program, backpressure=backpressure, rng=Random(seed))
    expected = reference(cfg, x, w)
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (f"{len(bad)} of {expected.size} outputs differ (seed {seed}), first "
                           f"Y{tuple(bad[0])}: array {got[tuple(bad[0])]}, numpy "
                           f"{expected[tuple(bad[0])]}")
    assert int(dut.error.value) == 0, "a tile raised its error flag"
    assert sum(stats["mac_done"]) + sum(stats["mac_skipped"]) == sum(
        p.expected_macs for p in program.phases)
    dut._log.info("layer B=%d I=%d J=%d nnz=%d: %d stream cycles, %d total (seed %d)",
                  spec["B"], spec["I"], spec["J"], program.nnz, stats["cycles"],
                  stats["total_cycles"], seed)


async def _reset(dut, cfg: Config) -> None:
    """Start the clock, hold reset, idle every edge input."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for y in range(cfg.rows):
        getattr(dut, f"w_y{y}_in__valid").value = 0
        getattr(dut, f"e_y{y}_in__valid").value = 0
        getattr(dut, f"w_y{y}_out__ready").value = 0
        getattr(dut, f"e_y{y}_out__ready").value = 0
    for x_ in range(cfg.cols):
        for edge in ("n", "s"):
            getattr(dut, f"{edge}_x{x_}_in__valid").value = 0
            getattr(dut, f"{edge}_x{x_}_out__ready").value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def run_files(dut):
    """``wafertile run``: X and W from WAFERTILE_RUN_DIR; writes Y.npy and result.json there.

    Plays the sparse stream and, unless WAFERTILE_NO_DENSE is set, the dense stream of the same
    layer (zero weights included) to measure what sparsity saves. Never fails on a mismatch:
    the CLI compares and reports.
    """
    from pathlib import Path

    cfg = _config()
    run_dir = Path(os.environ["WAFERTILE_RUN_DIR"])
    x = np.load(run_dir / "X.npy")
    w = np.load(run_dir / "W.npy")
    await _reset(dut, cfg)
    rng = Random(0)
    y_sparse, sparse = await play(dut, cfg, compile_layer(cfg, x, w), backpressure=0.0, rng=rng)
    result = {"sparse": sparse, "error_flags": int(dut.error.value)}
    np.save(run_dir / "Y.npy", y_sparse)
    if not os.environ.get("WAFERTILE_NO_DENSE"):
        y_dense, dense = await play(dut, cfg, compile_layer(cfg, x, w, dense=True),
                                    backpressure=0.0, rng=rng)
        result["dense"] = dense
        result["dense_matches_sparse"] = bool(np.array_equal(y_dense, y_sparse))
    (run_dir / "result.json").write_text(json.dumps(result))
