"""cocotb testbench of the tile array (``wafertile_array``) running a compiled sparse layer.

:class:`ArrayTB`: a :class:`~wafertile.sim.vip.LinkSource` on each west-edge input (the host's
injection ports) and a :class:`~wafertile.sim.vip.LinkSink` on each west-edge output (random
backpressure), the other edges idle, a counter of the tiles' ``mac_done | mac_skipped``
pulses, and a :class:`~wafertile.sim.vip.LayerScoreboard`: the Y read back must equal
:func:`wafertile.stream.reference` (numpy) bit for bit. :meth:`ArrayTB.play` plays a
:class:`~wafertile.stream.LayerProgram` phase by phase: a load ends when its fence replies are
back, a stream when every MAC has been executed, a read when all its replies are back.

The environment carries ``WAFERTILE_CONFIG``, ``WAFERTILE_SEED``, ``WAFERTILE_LAYER`` (JSON:
B, I, J, density, extremes, zero_lines) and ``WAFERTILE_BACKPRESSURE``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from random import Random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from ...formats import fp32_fields
from ...hdl.core.fp import float_format
from ...hdl.counters import COUNTER_WIDTH, EVENTS
from ...hdl.flit import Opcode, Port, flit_layout, pack, unpack
from ...hdl.grid import ARRAY
from ...stream import LayerProgram, compile_layer, load_program, reference
from ...trainer import random_network
from ...trainer.compiler import compile_step
from ...trainer.rtl import assemble, group_result, group_starts
from ..models.fp import mac
from ..models.training import training_step
from ..stimulus import make_layer
from ..vip import (
    TB,
    Element,
    LayerScoreboard,
    LinkSink,
    LinkSource,
    Part,
    TieOff,
    cover_program,
    env_float,
    env_json,
    grid_inputs,
    grid_link,
    random_pause,
)

__all__ = ["ArrayTB"]


class _MacCounter(Part):
    """The tiles' ``mac_done`` / ``mac_skipped`` pulses, in total and per tile (while
    :attr:`per_tile` is on), and their ``act_written`` pulses in total."""

    def __init__(self, dut, tiles: int):
        super().__init__(dut, "macs")
        self.done = Element(dut.mac_done, tiles)
        self.skipped = Element(dut.mac_skipped, tiles)
        self.act_written = Element(dut.act_written, tiles)
        self.writes = 0
        self.total = 0
        self.per_tile = False
        self.done_per_tile = np.zeros(tiles, dtype=np.int64)
        self.skipped_per_tile = np.zeros(tiles, dtype=np.int64)

    def sample(self) -> None:
        self.writes += self.act_written.get().bit_count()
        done, skipped = self.done.get(), self.skipped.get()
        if done | skipped:
            self.total += done.bit_count() + skipped.bit_count()
            if self.per_tile:
                for bits, counts in ((done, self.done_per_tile), (skipped,
                                                                  self.skipped_per_tile)):
                    while bits:
                        low = bits & -bits
                        counts[low.bit_length() - 1] += 1
                        bits ^= low


class ArrayTB(TB):
    """The array with the host's west-edge ports, the MAC counter and the scoreboard."""

    def __init__(self, dut, *, backpressure: float = 0.0, south: bool = False):
        super().__init__(dut)
        cfg = self.config
        self.layout = flit_layout(cfg)
        rng = Random(self.rng.random())
        # first, everything quiet: the west links' parts then drive their own elements
        self.add(TieOff(dut, grid_inputs(cfg, ARRAY)))
        self.sources, self.sinks = [], []
        for y in range(cfg.rows):
            name, k = grid_link(cfg, ARRAY, 0, y, Port.WEST, into=True)
            self.sources.append(self.add(LinkSource(dut, name, cfg, index=k)))
            name, k = grid_link(cfg, ARRAY, 0, y, Port.WEST, into=False)
            self.sinks.append(self.add(LinkSink(
                dut, name, cfg, index=k, backpressure=random_pause(backpressure, rng),
                on_received=lambda word, y=y: self._reply(y, word))))
        self.macs = self.add(_MacCounter(dut, cfg.rows * cfg.cols))
        #: with ``south``: what left by the south edge, ``(column, payload)`` in order
        self.south: list[tuple[int, dict]] = []
        if south:  # training's GRAD results (random backpressure too)
            for x in range(cfg.cols):
                name, k = grid_link(cfg, ARRAY, x, cfg.rows - 1, Port.SOUTH, into=False)
                self.add(LinkSink(dut, name, cfg, index=k,
                                  backpressure=random_pause(backpressure, rng),
                                  on_received=lambda word, x=x: self.south.append(
                                      (x, unpack(self.layout, word)["payload"]))))
        self.board: LayerScoreboard | None = None
        #: flits that left by the west edge with no layer playing
        self.stray: list[dict] = []

    def _reply(self, row: int, word: int) -> None:
        if self.board is not None:
            self.board.received(row, unpack(self.layout, word)["payload"])
        else:
            self.stray.append(unpack(self.layout, word)["payload"])

    async def play(self, program: LayerProgram, *, timeout: int = 200_000,
                   on_phase=None) -> tuple[np.ndarray, dict]:
        """Run ``program``; return ``(Y, stats)``: ``cycles`` (of the stream phases),
        ``total_cycles``, and per tile (index ``y * cols + x``) ``mac_done`` and
        ``mac_skipped`` counts of the stream phases. ``on_phase(n)``, if given, is called
        after each phase with the number of phases done."""
        B, I, _ = program.shape
        self.board = board = LayerScoreboard(self.config, (B, I))
        self.macs.done_per_tile[:] = 0
        self.macs.skipped_per_tile[:] = 0
        first, stream_cycles, phase_cycles = self.cycle, 0, []
        events0 = self.events_now() if self.config.counters else None
        for phase in program.phases:
            words = phase.words(self.layout)
            for port, row in zip(phase.port.tolist(), words, strict=True):
                self.sources[port].send(int.from_bytes(row.tobytes(), "little"))
            start, macs0, writes0 = self.cycle, self.macs.total, self.macs.writes
            self.macs.per_tile = phase.kind == "stream"

            south0 = len(self.south)

            def done(phase=phase, macs0=macs0, writes0=writes0, south0=south0):
                if not all(s.idle_now for s in self.sources):
                    return False
                if phase.kind == "grad":  # every GRAD's result back at the south edge
                    return len(self.south) - south0 >= len(phase)
                if phase.kind == "stream":
                    return self.macs.total - macs0 >= phase.expected_macs
                if phase.kind == "handoff":
                    return self.macs.writes - writes0 >= phase.expected_writes
                return board.count >= phase.expected_replies

            def stuck(phase=phase, macs0=macs0, writes0=writes0):
                left = {y: len(s.queue) + (s.offer is not None)
                        for y, s in enumerate(self.sources) if not s.idle_now}
                return (f"{phase.kind} phase: flits left per port {left}, "
                        f"{self.macs.total - macs0}/{phase.expected_macs} MACs, "
                        f"{self.macs.writes - writes0}/{phase.expected_writes} activation "
                        f"writes, {board.count}/{phase.expected_replies} replies")

            await self.wait_until(done, timeout=timeout, what="the end of a phase", stall=stuck)
            if phase.kind == "stream":
                executed = self.macs.total - macs0
                assert executed == phase.expected_macs, \
                    f"tiles executed {executed} MACs, the program has {phase.expected_macs}"
                stream_cycles += self.cycle - start
            written = self.macs.writes - writes0
            assert written == phase.expected_writes, \
                f"tiles wrote {written} activations in a {phase.kind} phase, the program has " \
                f"{phase.expected_writes}"
            phase_cycles.append(self.cycle - start)
            board.end_phase(phase)
            if on_phase is not None:
                on_phase(len(phase_cycles))
        for sink in self.sinks:
            assert not sink.protocol_errors, sink.protocol_errors[:3]
        stats = {
            "cycles": stream_cycles, "total_cycles": self.cycle - first,
            "phase_cycles": phase_cycles,
            "mac_done": self.macs.done_per_tile.tolist(),
            "mac_skipped": self.macs.skipped_per_tile.tolist()}
        if self.config.counters:  # as the Verilator harness: once the counters are still
            stats["events"] = await self.events_since(events0)
        return board.y.copy(), stats

    def events_now(self, value: int | None = None) -> np.ndarray:
        """The tiles' event counters (``Config.counters``; ``value``: the port's value read
        before): tiles x events."""
        value = int(self.dut.events.value) if value is None else value
        width, tiles = COUNTER_WIDTH, self.config.rows * self.config.cols
        mask = (1 << width) - 1
        return np.array([[(value >> ((k * len(EVENTS) + e) * width)) & mask
                          for e in range(len(EVENTS))] for k in range(tiles)], np.int64)

    async def events_since(self, before: np.ndarray, still: int = 1024) -> dict:
        """Wait until the counters have not changed for ``still`` cycles (the cores have
        done what they held); return what they counted since ``before``, per event a list
        per tile (the harness's ``events``)."""
        last, same = int(self.dut.events.value), 0
        for _ in range(1_000_000):
            await ClockCycles(self.clk, 1)
            now = int(self.dut.events.value)
            same = same + 1 if now == last else 0
            last = now
            if same >= still:
                diff = self.events_now(last) - before
                return {name: diff[:, e].tolist() for e, name in enumerate(EVENTS)}
        raise AssertionError("the event counters still change")


@cocotb.test()
async def layer(dut):
    """A random sparse layer streamed through the array equals numpy (for a float array:
    every FP32 word, any NaN the canonical one)."""
    tb = ArrayTB(dut, backpressure=env_float("WAFERTILE_BACKPRESSURE", 0.0))
    cfg, spec = tb.config, env_json("WAFERTILE_LAYER")
    x, w = make_layer(cfg, np.random.default_rng(tb.seed), spec["B"], spec["I"], spec["J"],
                      spec["density"], spec.get("extremes", False),
                      spec.get("zero_lines", False))
    program = compile_layer(cfg, x, w)
    cover_program(cfg, program)  # (run_programs' programs are sampled by run.simulate)
    await tb.reset()
    _, stats = await tb.play(program)
    expected = reference(cfg, x, w)
    if cfg.is_float:  # the replies' data fields: FP32 words (every NaN canonical)
        expected = fp32_fields(expected)
    tb.board.compare(expected, seed=tb.seed)
    tb.board.assert_ok()
    assert int(dut.error.value) == 0, "a tile raised its error flag"
    assert sum(stats["mac_done"]) + sum(stats["mac_skipped"]) == sum(
        p.expected_macs for p in program.phases)
    dut._log.info("layer B=%d I=%d J=%d nnz=%d: %d stream cycles, %d total (seed %d)",
                  spec["B"], spec["I"], spec["J"], program.nnz, stats["cycles"],
                  stats["total_cycles"], tb.seed)


@cocotb.test()
async def run_programs(dut):
    """``wafertile run``: plays ``program0.npz``, ``program1.npz``, ... of WAFERTILE_RUN_DIR
    (compiled programs, :func:`~wafertile.stream.save_program`) one after the other; writes
    ``Y<k>.npy`` and ``stats<k>.json`` for each and ``result.json`` (the error flags). Never
    fails on a mismatch: the caller compares and reports."""
    tb = ArrayTB(dut)
    run_dir = Path(os.environ["WAFERTILE_RUN_DIR"])
    await tb.reset()
    k = 0
    progress = run_dir / "progress.txt"  # how far it is, for wafertile.run.simulate
    while (run_dir / f"program{k}.npz").exists():
        program = load_program(run_dir / f"program{k}.npz", tb.config)

        total = len(program.phases)

        def on_phase(done, k=k, total=total):
            progress.write_text(f"{k} {done} {total}\n")
        on_phase(0)
        y, stats = await tb.play(program, on_phase=on_phase)
        np.save(run_dir / f"Y{k}.npy", y)
        (run_dir / f"stats{k}.json").write_text(json.dumps(stats))
        k += 1
    (run_dir / "result.json").write_text(json.dumps({"programs": k,
                                                     "error_flags": int(dut.error.value)}))



@cocotb.test()
async def grad_chains(dut):
    """GRAD chains (training, ``docs/training.md``) through a float array: every row's
    activations written by row multicasts, then GRADs injected at the west ports (spread over
    the rows) to the top of a column, with random backpressure at the south edge; each must
    leave the south edge of its column once, carrying its data plus ``act[addr] *
    act[addr_b]`` of every row added row by row from row 0 (the tiles' MAC rule, zero
    operands skipped), and nothing may leave by the west edge."""
    tb = ArrayTB(dut)
    cfg = tb.config
    rng = np.random.default_rng(tb.seed)
    fmt = float_format(cfg.dtype)
    R, C, n_act = cfg.rows, cfg.cols, min(cfg.act_depth, 12)
    values = rng.normal(0, 2, (R, n_act)) * (rng.random((R, n_act)) >= 0.2)
    acts = fmt.bits(values.astype(np.float32))
    south: dict[int, list[dict]] = {x: [] for x in range(C)}
    pauses = Random(tb.seed)
    for x in range(C):
        name, k = grid_link(cfg, ARRAY, x, R - 1, Port.SOUTH, into=False)
        tb.add(LinkSink(dut, name, cfg, index=k, backpressure=random_pause(0.4, pauses),
                        on_received=lambda word, x=x: south[x].append(
                            unpack(tb.layout, word)["payload"])))
    await tb.reset()

    def send(port: int, header: dict, payload: dict) -> None:
        tb.sources[port].send(pack(tb.layout, {"header": {"vc": 0, "exit": Port.LOCAL,
                                                          **header}, "payload": payload}))

    for y in range(R):  # each row's activations, to every tile of the row
        for a in range(n_act):
            send(y, {"x0": 0, "x1": C - 1, "y0": y, "y1": y},
                 {"op": Opcode.WRITE_ACT, "addr": a, "data": int(acts[y, a])})
    await tb.wait_until(lambda: tb.macs.writes >= R * C * n_act, timeout=20_000,
                        what="the activation writes")
    grads = []
    for n in range(6 * C):
        x, i, k = n % C, int(rng.integers(n_act)), int(rng.integers(n_act))
        start = int(fp32_fields(np.float32(rng.normal(0, 4))))
        grads.append((x, i, k, start))
        send(n % R, {"x0": x, "x1": x, "y0": 0, "y1": 0},
             {"op": Opcode.GRAD, "addr": i, "addr_b": k, "data": start})
    await tb.wait_until(lambda: sum(map(len, south.values())) >= len(grads), timeout=20_000,
                        what="the GRAD results at the south edge")
    await tb.cycles(50)  # nothing more may come
    for x in range(C):
        want = []
        for gx, i, k, start in grads:
            if gx == x:
                g = np.uint32(start & 0xFFFFFFFF)
                for y in range(R):
                    g = mac(g, acts[y, i], acts[y, k], cfg.dtype)
                want.append((i, k, int(g)))
        got = [(f["addr"], f["addr_b"], f["data"] & 0xFFFFFFFF) for f in south[x]]
        assert all(f["op"] == Opcode.GRAD for f in south[x]), f"column {x} (seed {tb.seed})"
        assert sorted(got) == sorted(want), f"column {x}: GRAD results differ (seed {tb.seed})"
    assert not tb.stray, f"flits left by the west edge: {tb.stray[:3]} (seed {tb.seed})"
    assert int(dut.error.value) == 0, "a tile raised its error flag"


@cocotb.test()
async def train_step(dut):
    """One training step of a small chain on a float array (``docs/training.md``), compiled
    by :func:`wafertile.trainer.compiler.compile_step` group by group (the second group
    padded), the groups' partial sums added by the host: the logits of every group, every
    tile's dX (read back) and every weight and bias gradient equal
    :func:`wafertile.sim.models.training.training_step` bit for bit."""
    tb = ArrayTB(dut, backpressure=env_float("WAFERTILE_BACKPRESSURE", 0.0), south=True)
    cfg, spec = tb.config, env_json("WAFERTILE_TRAIN")
    rng = np.random.default_rng(tb.seed)
    fmt = float_format(cfg.dtype)
    weights, biases, masks = random_network(spec["sizes"], spec["density"], tb.seed)
    weights = [fmt.values(fmt.bits(w)) for w in weights]
    biases = [rng.normal(0, 0.2, len(b)).astype(np.float32) for b in biases]
    B = spec["batch"]
    x = fmt.values(fmt.bits((rng.random((B, spec["sizes"][0])) *
                             (rng.random((B, spec["sizes"][0])) > 0.2)).astype(np.float32)))
    labels = rng.integers(0, spec["sizes"][-1], B)
    ref = training_step(cfg, weights, biases, masks, x, labels, spec.get("scale", 1.0))
    await tb.reset()
    R = cfg.rows
    shapes = [np.shape(w) for w in weights]
    results = []
    for g0 in group_starts(B, R):
        program = compile_step(cfg, weights, biases, masks, x[g0:g0 + R],
                               ref.dys[-1][g0:g0 + R], read_dx=True)
        south0 = len(tb.south)
        logits, _ = await tb.play(program)
        got = tb.south[south0:]
        south = {"column": [c for c, _ in got],
                 **{k: [f[k] for _, f in got] for k in ("addr", "addr_b", "data")}}
        results.append(group_result(program, min(R, B - g0), logits, {"south": south},
                                    shapes))
    step = assemble(cfg, ref, masks, results)
    assert step.exact, f"{', '.join(step.mismatches)} differ (seed {tb.seed})"
    assert int(dut.error.value) == 0, "a tile raised its error flag"
    dut._log.info("training step of %s, batch %d: every gradient equal (seed %d)",
                  spec["sizes"], B, tb.seed)
