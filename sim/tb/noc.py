"""cocotb testbench of the router (``wafertile_router``) and the mesh (``wafertile_mesh``).

:class:`NocTB` makes every exposed port an endpoint that is both a
:class:`~wafertile.sim.vip.LinkSource` (injecting flits, Bernoulli ``load`` per cycle) and a
:class:`~wafertile.sim.vip.LinkSink` (random per-VC backpressure); the checker is a
:class:`~wafertile.sim.vip.NocScoreboard` over the :class:`~wafertile.sim.models.NocModel`:
exact multiset of (destination, flit) deliveries and the order per (source, destination, VC).
A run fails on any lost, duplicated, misrouted or reordered flit, on a broken link rule (a
flit offered on a VC that is not ready), and on a stall: no transfer anywhere for
``stall_limit`` cycles while flits are outstanding, reported with the occupancy of every
non-empty router buffer where the simulator shows it.

Environment: ``WAFERTILE_CONFIG``, ``WAFERTILE_KIND`` ("router" or "mesh"), ``WAFERTILE_POS``
("x,y" of the single router), ``WAFERTILE_SEED``, ``WAFERTILE_LOAD`` (injection probability
per source per cycle), ``WAFERTILE_FLITS`` (per source), ``WAFERTILE_MCAST`` (fraction of
multicast rectangles), ``WAFERTILE_EXIT`` (fraction of flits leaving by an edge port),
``WAFERTILE_BACKPRESSURE`` (probability that a sink's VC is not ready in a cycle),
``WAFERTILE_STALL``.
"""

from __future__ import annotations

import os
from random import Random

import cocotb

from ...hdl.flit import Port
from ...hdl.grid import MESH
from ..models import Endpoint, NocModel
from ..vip import (
    TB,
    LinkSink,
    LinkSource,
    NocCoverage,
    NocScoreboard,
    env_float,
    env_int,
    grid_link,
    random_pause,
)

__all__ = ["NocTB"]


class NocTB(TB):
    """Every endpoint of a router (``kind="router"`` at ``pos``) or of a mesh, as a source and
    a sink, and the scoreboard."""

    def __init__(self, dut, *, kind: str, pos: tuple[int, int] = (1, 1), load: float = 1.0,
                 backpressure: float = 0.0):
        super().__init__(dut)
        cfg = self.config
        self.kind = kind
        self.model = NocModel(cfg, router=pos if kind == "router" else None)
        self.board = NocScoreboard(self.model)
        self.cover = NocCoverage(self.model, router=kind == "router")
        rng = Random(self.rng.random())
        self.endpoints = self.model.sources()
        self.sources: dict[Endpoint, LinkSource] = {}
        self.sinks: dict[Endpoint, LinkSink] = {}
        for ep in self.endpoints:
            if kind == "router":
                into = (f"in_{ep.port.letter}", None)
                out = (f"out_{ep.port.letter}", None)
            else:
                into = grid_link(cfg, MESH, ep.x, ep.y, ep.port, into=True)
                out = grid_link(cfg, MESH, ep.x, ep.y, ep.port, into=False)
            self.sources[ep] = self.add(LinkSource(
                dut, into[0], cfg, index=into[1], pause=random_pause(1.0 - load, rng),
                on_sent=lambda w, ep=ep: self._sent(ep, w), name=f"src{ep}"))
            self.sinks[ep] = self.add(LinkSink(
                dut, out[0], cfg, index=out[1], backpressure=random_pause(backpressure, rng),
                on_received=lambda w, ep=ep: self._received(ep, w), name=f"sink{ep}"))
        if kind == "router":
            dut.x.value, dut.y.value = pos
            self.add(self.cover.link_part(dut, self.sources))

    def _sent(self, source: Endpoint, word: int) -> None:
        self.board.sent(source, word, self.cycle)
        self.cover.sent(source, word)

    def _received(self, dest: Endpoint, word: int) -> None:
        self.board.received(dest, word, self.cycle)
        self.cover.received(dest, word)

    def random_word(self, source: Endpoint, seq: int, *, mcast: float, exit_p: float) -> int:
        """A random unicast or rectangle multicast from ``source``, with ``seq`` and the
        source's index in the payload (distinct words, so that order can be checked)."""
        cfg, rng = self.config, self.rng
        if rng.random() < mcast:
            xs = sorted(rng.randrange(cfg.cols) for _ in range(2))
            ys = sorted(rng.randrange(cfg.rows) for _ in range(2))
        else:
            xs = [rng.randrange(cfg.cols)] * 2
            ys = [rng.randrange(cfg.rows)] * 2
        ex = Port(rng.randrange(1, 5)) if rng.random() < exit_p else Port.LOCAL
        index = self.endpoints.index(source)
        return self.model.flit(x0=xs[0], x1=xs[1], y0=ys[0], y1=ys[1],
                               vc=rng.randrange(cfg.num_vcs), exit=ex,
                               payload=(index << 24) | seq)

    def _moved(self) -> int:
        return len(self.board.injected) + sum(len(v) for v in self.board.delivered.values())

    async def run(self, *, stall_limit: int, max_cycles: int = 1_000_000) -> None:
        """Inject every queued word and drain the fabric; then 5 idle cycles in which nothing
        more may come out."""
        quiet, moved, start = 0, self._moved(), self.cycle
        while any(not s.idle_now for s in self.sources.values()) or self.board.outstanding > 0:
            await self.cycles(1)
            now = self._moved()
            quiet = 0 if now != moved else quiet + 1
            moved = now
            if quiet >= stall_limit:
                raise AssertionError(
                    f"stall: no flit moved for {stall_limit} cycles at cycle {self.cycle} "
                    f"(seed {self.seed}); {len(self.board.injected)} injected, "
                    f"{self.board.outstanding} deliveries outstanding; non-empty buffers: "
                    f"{self.stuck_buffers()}; delivery check so far: {self.board.check()[:5]}")
            assert self.cycle - start < max_cycles, f"not drained after {max_cycles} cycles"
        await self.cycles(6)

    def assert_ok(self) -> None:
        for sink in self.sinks.values():
            self.board.errors += sink.protocol_errors
            sink.protocol_errors.clear()
        self.board.assert_ok(f"(seed {self.seed}, {len(self.board.injected)} flits injected, "
                             f"{self.cycle} cycles)")

    def stuck_buffers(self) -> str:
        """Occupancy of every non-empty (router, input port, VC) buffer, where visible."""
        cfg = self.config
        if self.kind == "router":
            routers = [("", self.dut)]
        else:
            try:
                routers = [(f"({x},{y})", self.dut.row[y].col[x].node)
                           for y in range(cfg.rows) for x in range(cfg.cols)]
            except (AttributeError, IndexError, TypeError):
                return "(router internals not visible in this simulator)"
        found = []
        for name, handle in routers:
            for p in Port:
                for v in range(cfg.num_vcs):
                    try:
                        n = int(getattr(getattr(handle, f"buf_{p.letter}"), f"level__{v}").value)
                    except (AttributeError, ValueError, TypeError):
                        return "(router internals not visible in this simulator)"
                    if n:
                        found.append(f"router{name} in_{p.letter} VC{v}: {n}")
        return ", ".join(found) or "none"


def _tb(dut, **kwargs) -> NocTB:
    kind = os.environ.get("WAFERTILE_KIND", "mesh")
    pos = tuple(int(v) for v in os.environ.get("WAFERTILE_POS", "1,1").split(","))
    return NocTB(dut, kind=kind, pos=pos, **kwargs)


@cocotb.test()
async def random_traffic(dut):
    """Seeded random unicast/multicast from every endpoint; exact deliveries; no stall."""
    tb = _tb(dut, load=env_float("WAFERTILE_LOAD", 0.2),
             backpressure=env_float("WAFERTILE_BACKPRESSURE", 0.3))
    n = env_int("WAFERTILE_FLITS", 30)
    mcast, exit_p = env_float("WAFERTILE_MCAST", 0.3), env_float("WAFERTILE_EXIT", 0.1)
    for ep, src in tb.sources.items():
        src.send(tb.random_word(ep, k, mcast=mcast, exit_p=exit_p) for k in range(n))
    await tb.reset()
    await tb.run(stall_limit=env_int("WAFERTILE_STALL", 500))
    tb.assert_ok()
    dut._log.info("%d flits injected, %d delivered in %d cycles (seed %d)",
                  len(tb.board.injected), sum(len(v) for v in tb.board.delivered.values()),
                  tb.cycle, tb.seed)


@cocotb.test()
async def every_rectangle(dut):
    """Every rectangle inside the array x every exit x every VC, injected on every port."""
    tb = _tb(dut, load=1.0, backpressure=env_float("WAFERTILE_BACKPRESSURE", 0.3))
    cfg = tb.config
    rects = [(x0, x1, y0, y1) for x0 in range(cfg.cols) for x1 in range(x0, cfg.cols)
             for y0 in range(cfg.rows) for y1 in range(y0, cfg.rows)]
    for i, src in enumerate(tb.sources.values()):
        words = []
        for x0, x1, y0, y1 in rects:
            for ex in Port:
                for vc in range(cfg.num_vcs):
                    words.append(tb.model.flit(x0=x0, x1=x1, y0=y0, y1=y1, vc=vc, exit=ex,
                                               payload=(i << 24) | len(words)))
        tb.rng.shuffle(words)
        src.send(words)
    await tb.reset()
    await tb.run(stall_limit=500)
    tb.assert_ok()
    pairs = {(s.port.letter, d.port.letter) for s, w in tb.board.injected
             for d in tb.model.destinations(s, w)}
    dut._log.info("%d flits; (input, output) port pairs exercised: %s", len(tb.board.injected),
                  " ".join(f"{a}>{b}" for a, b in sorted(pairs)))


@cocotb.test()
async def zero_load_latency(dut):
    """One flit at a time: each delivery comes exactly one cycle per router traversed; with
    ``phits = n > 1``, one slot of n cycles per router, plus one slot for an edge serializer
    (which starts in phase 0) or, for a local injection, the wait for the next slot; the
    deserializer offers the flit in the cycle after its last phit."""
    tb = _tb(dut, load=1.0, backpressure=0.0)
    await tb.reset()
    n = tb.config.phits
    for k in range(env_int("WAFERTILE_FLITS", 30)):
        ep = tb.rng.choice(tb.endpoints)
        word = tb.random_word(ep, k, mcast=0.3, exit_p=0.1)
        tb.sources[ep].send(word)
        await tb.run(stall_limit=100)
        t0 = tb.board.sent_cycle[ep, word]
        for dest, hops in tb.model.destinations(ep, word).items():
            latency = tb.board.received_cycle[dest, word] - t0
            if n == 1:
                lo = hi = hops
            elif ep.port is Port.LOCAL:  # straight into the router: waits for the next slot
                lo, hi = hops * n + 1, hops * n + n
            else:  # the edge serializer starts in phase 0: one more slot
                lo = hi = (hops + 1) * n
            assert lo <= latency <= hi, (
                f"{ep} -> {dest}: latency {latency} cycles, {hops} routers traversed, "
                f"{lo}..{hi} expected with {n} phits (seed {tb.seed})")
    tb.assert_ok()
