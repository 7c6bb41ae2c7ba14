"""cocotb testbench of the router (``wafertile_router``) and the mesh (``wafertile_mesh``).

One environment serves both: every exposed port is an *endpoint* that is both a source
(injecting flits) and a sink (taking deliveries with random per-VC backpressure). A single
coroutine drives all endpoints once per cycle (inputs at the falling edge, handshakes sampled
in ReadOnly), which keeps the Python cost per cycle low on both simulators. The checker is
:class:`~wafertile.sim.noc_model.NocModel`: exact multiset of (destination, flit) deliveries
and the order per (source, destination, VC). A run fails on any lost, duplicated, misrouted or
reordered flit, on a broken link rule (a flit offered on a VC that is not ready), and on a
stall: no transfer anywhere for ``WAFERTILE_STALL`` cycles while flits are outstanding, which
is reported with the occupancy of every non-empty router buffer.

Environment: ``WAFERTILE_CONFIG`` (JSON of :meth:`Config.as_dict`), ``WAFERTILE_KIND``
("router" or "mesh"), ``WAFERTILE_POS`` ("x,y" of the single router), ``WAFERTILE_SEED``,
``WAFERTILE_LOAD`` (injection probability per source per cycle), ``WAFERTILE_FLITS`` (per
source), ``WAFERTILE_MCAST`` (fraction of multicast rectangles), ``WAFERTILE_EXIT`` (fraction
of flits leaving by an edge port), ``WAFERTILE_BACKPRESSURE`` (probability that a sink's VC
is not ready in a cycle), ``WAFERTILE_STALL``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from random import Random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from ..config import Config
from ..hdl.flit import Exit
from ..hdl.mesh import endpoint_name, endpoints
from ..hdl.router import PORTS
from .noc_model import Endpoint, NocModel

__all__ = ["NocEnv"]


def _env_config() -> Config:
    return Config.from_mapping(json.loads(os.environ.get("WAFERTILE_CONFIG", "{}")))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class _Port:
    """Handles of one endpoint: its injection link and its delivery link."""

    def __init__(self, dut, ep: Endpoint, prefix_in: str, prefix_out: str):
        self.ep = ep
        self.in_valid = getattr(dut, f"{prefix_in}__valid")
        self.in_flit = getattr(dut, f"{prefix_in}__flit")
        self.in_ready = getattr(dut, f"{prefix_in}__ready")
        self.out_valid = getattr(dut, f"{prefix_out}__valid")
        self.out_flit = getattr(dut, f"{prefix_out}__flit")
        self.out_ready = getattr(dut, f"{prefix_out}__ready")
        self.queue: list[int] = []   # words still to inject, in order
        self.offer: int | None = None
        self.ready_now = 0


class NocEnv:
    """Drives and checks every endpoint of a router or a mesh."""

    def __init__(self, dut):
        self.dut = dut
        self.cfg = _env_config()
        self.model = NocModel(self.cfg)
        self.kind = os.environ.get("WAFERTILE_KIND", "mesh")
        self.seed = int(os.environ.get("WAFERTILE_SEED", "1"))
        self.rng = Random(self.seed)
        self.ports: list[_Port] = []
        if self.kind == "router":
            x, y = (int(v) for v in os.environ.get("WAFERTILE_POS", "1,1").split(","))
            self.pos = (x, y)
            for p in PORTS:
                self.ports.append(_Port(dut, Endpoint(x, y, p), f"in_{p}", f"out_{p}"))
        else:
            for ep in endpoints(self.cfg):
                name = endpoint_name(*ep)
                self.ports.append(_Port(dut, Endpoint(*ep), f"{name}_in", f"{name}_out"))
        self.by_ep = {port.ep: port for port in self.ports}
        self.cycle = 0
        self.injected: list[tuple[Endpoint, int]] = []
        self.inject_cycle: dict[tuple[Endpoint, int], int] = {}
        self.delivered: dict[Endpoint, list[int]] = defaultdict(list)
        self.deliver_cycle: dict[tuple[Endpoint, int], int] = {}
        self.protocol_errors: list[str] = []
        self.received = 0
        self.vc_shift = 2 * self.cfg.x_width + 2 * self.cfg.y_width
        self.vc_mask = (1 << self.cfg.vc_width) - 1

    # -- expected deliveries --------------------------------------------------------------------

    def destinations(self, source: Endpoint, word: int) -> dict[Endpoint, int]:
        """Endpoints ``word`` from ``source`` must reach, with the routers it traverses."""
        if self.kind == "router":
            x, y = self.pos
            mask = self.model.route(self.model.header(word), x, y, PORTS.index(source.port))
            return {Endpoint(x, y, PORTS[o]): 1 for o in range(5) if mask >> o & 1}
        return self.model.destinations(source, word)

    def check(self) -> list[str]:
        if self.kind == "mesh":
            return self.model.check(self.injected, self.delivered)
        # the single router: the same checks with the router's route as the expectation
        errors = []
        want: dict[Endpoint, list[tuple[Endpoint, int]]] = defaultdict(list)
        for src, w in self.injected:
            for dest in self.destinations(src, w):
                want[dest].append((src, w))
        for dest in sorted(set(want) | set(self.delivered)):
            got = self.delivered.get(dest, [])
            if sorted(got) != sorted(w for _, w in want[dest]):
                missing = set(w for _, w in want[dest]) - set(got)
                extra = set(got) - set(w for _, w in want[dest])
                errors.append(f"at {dest}: {len(got)} delivered, {len(want[dest])} expected; "
                              f"lost {sorted(missing)[:4]}, misrouted/duplicated "
                              f"{sorted(extra)[:4] or 'duplicates'}")
                continue
            for src in {s for s, _ in want[dest]}:
                for v in range(self.cfg.num_vcs):
                    ref = [w for s, w in want[dest] if s == src and self.model.vc(w) == v]
                    ids = set(ref)
                    seen = [w for w in got if w in ids]
                    if seen != ref:
                        errors.append(f"reordered: {src} -> {dest} on VC {v}")
        return errors

    # -- stimulus -------------------------------------------------------------------------------

    def random_word(self, source: Endpoint, seq: int, *, mcast: float, exit_p: float) -> int:
        cfg = self.cfg
        if self.rng.random() < mcast:
            xs = sorted(self.rng.randrange(cfg.cols) for _ in range(2))
            ys = sorted(self.rng.randrange(cfg.rows) for _ in range(2))
        else:
            xs = [self.rng.randrange(cfg.cols)] * 2
            ys = [self.rng.randrange(cfg.rows)] * 2
        ex = Exit(self.rng.randrange(1, 5)) if self.rng.random() < exit_p else Exit.LOCAL
        index = self.ports.index(self.by_ep[source])
        return self.model.flit(x0=xs[0], x1=xs[1], y0=ys[0], y1=ys[1],
                               vc=self.rng.randrange(cfg.num_vcs), exit=ex,
                               payload=(index << 24) | seq)

    # -- running --------------------------------------------------------------------------------

    async def reset(self) -> None:
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        if self.kind == "router":
            dut.x.value, dut.y.value = self.pos
        for port in self.ports:
            port.in_valid.value = 0
            port.out_ready.value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def run(self, *, load: float, backpressure: float, stall_limit: int,
                  max_cycles: int = 1_000_000) -> None:
        """Inject every queued word (Bernoulli ``load`` per source) and drain the fabric."""
        clk = self.dut.clk
        all_ready = (1 << self.cfg.num_vcs) - 1
        expected_total = None
        quiet = 0
        while True:
            # -- drive (falling edge) --
            for port in self.ports:
                if port.offer is None and port.queue and self.rng.random() < load:
                    port.offer = port.queue.pop(0)
                    port.in_valid.value = 1
                    port.in_flit.value = port.offer
                elif port.offer is None:
                    port.in_valid.value = 0
                if backpressure:
                    r = 0
                    for v in range(self.cfg.num_vcs):
                        if self.rng.random() >= backpressure:
                            r |= 1 << v
                else:
                    r = all_ready
                if r != port.ready_now:
                    port.out_ready.value = r
                    port.ready_now = r
            await ReadOnly()
            moved = False
            for port in self.ports:
                if port.offer is not None:
                    vc = port.offer >> self.vc_shift & self.vc_mask
                    if int(port.in_ready.value) >> vc & 1:
                        self.injected.append((port.ep, port.offer))
                        self.inject_cycle[port.ep, port.offer] = self.cycle
                        port.offer = None
                        moved = True
                if int(port.out_valid.value):
                    word = int(port.out_flit.value)
                    vc = word >> self.vc_shift & self.vc_mask
                    if not port.ready_now >> vc & 1:
                        self.protocol_errors.append(
                            f"{port.ep} offered {word:#x} on VC {vc}, which is not ready")
                        continue
                    self.delivered[port.ep].append(word)
                    self.deliver_cycle.setdefault((port.ep, word), self.cycle)
                    self.received += 1
                    moved = True
            self.cycle += 1
            pending = any(p.queue or p.offer is not None for p in self.ports)
            if not pending:
                if expected_total is None:
                    expected_total = sum(len(self.destinations(s, w)) for s, w in self.injected)
                if self.received >= expected_total:
                    break
            quiet = 0 if moved else quiet + 1
            if quiet >= stall_limit:
                raise AssertionError(
                    f"stall: no flit moved for {stall_limit} cycles at cycle {self.cycle} "
                    f"(seed {self.seed}); {len(self.injected)} injected, "
                    f"{self.received} delivered; "
                    f"non-empty buffers: {self.stuck_buffers()}; delivery check so far: "
                    f"{self.check()[:5]}")
            assert self.cycle < max_cycles, f"not drained after {max_cycles} cycles"
            await FallingEdge(clk)
        # a few idle cycles: nothing more may come out
        await FallingEdge(clk)
        for _ in range(5):
            await ReadOnly()
            for port in self.ports:
                if int(port.out_valid.value):
                    self.delivered[port.ep].append(int(port.out_flit.value))
            await FallingEdge(clk)

    def stuck_buffers(self) -> str:
        """Occupancy of every non-empty (router, input port, VC) buffer, where visible."""
        found = []
        routers = ([("", self.dut)] if self.kind == "router" else
                   [(f"({x},{y})", getattr(self.dut, f"r_x{x}_y{y}", None))
                    for y in range(self.cfg.rows) for x in range(self.cfg.cols)])
        for name, handle in routers:
            for p in PORTS:
                for v in range(self.cfg.num_vcs):
                    try:
                        n = int(getattr(handle, f"count_{p}{v}").value)
                    except (AttributeError, ValueError, TypeError):
                        return "(router internals not visible in this simulator)"
                    if n:
                        found.append(f"router{name} in_{p} VC{v}: {n}")
        return ", ".join(found) or "none"

    def assert_ok(self) -> None:
        where = f"(seed {self.seed}, {len(self.injected)} flits injected, {self.cycle} cycles)"
        assert not self.protocol_errors, f"link rule broken {where}: {self.protocol_errors[:3]}"
        errors = self.check()
        assert not errors, f"{len(errors)} delivery errors {where}:\n" + "\n".join(errors[:10])


@cocotb.test()
async def random_traffic(dut):
    """Seeded random unicast/multicast from every endpoint; exact deliveries; no stall."""
    env = NocEnv(dut)
    await env.reset()
    n = int(os.environ.get("WAFERTILE_FLITS", "30"))
    mcast = _float("WAFERTILE_MCAST", 0.3)
    exit_p = _float("WAFERTILE_EXIT", 0.1)
    for port in env.ports:
        port.queue = [env.random_word(port.ep, k, mcast=mcast, exit_p=exit_p) for k in range(n)]
    await env.run(load=_float("WAFERTILE_LOAD", 0.2),
                  backpressure=_float("WAFERTILE_BACKPRESSURE", 0.3),
                  stall_limit=int(os.environ.get("WAFERTILE_STALL", "500")))
    env.assert_ok()
    dut._log.info("%d flits injected, %d delivered in %d cycles (seed %d)", len(env.injected),
                  sum(len(v) for v in env.delivered.values()), env.cycle, env.seed)


@cocotb.test()
async def every_rectangle(dut):
    """Every rectangle inside the array x every exit x every VC, injected on every port."""
    env = NocEnv(dut)
    await env.reset()
    cfg = env.cfg
    rects = [(x0, x1, y0, y1) for x0 in range(cfg.cols) for x1 in range(x0, cfg.cols)
             for y0 in range(cfg.rows) for y1 in range(y0, cfg.rows)]
    for i, port in enumerate(env.ports):
        words = []
        for x0, x1, y0, y1 in rects:
            for ex in Exit:
                for vc in range(cfg.num_vcs):
                    words.append(env.model.flit(x0=x0, x1=x1, y0=y0, y1=y1, vc=vc, exit=ex,
                                                payload=(i << 24) | len(words)))
        env.rng.shuffle(words)
        port.queue = words
    await env.run(load=1.0, backpressure=_float("WAFERTILE_BACKPRESSURE", 0.3),
                  stall_limit=500)
    env.assert_ok()
    pairs = {(s.port, d.port) for s, w in env.injected for d in env.destinations(s, w)}
    dut._log.info("%d flits; (input, output) port pairs exercised: %s", len(env.injected),
                  " ".join(f"{a}>{b}" for a, b in sorted(pairs)))


@cocotb.test()
async def zero_load_latency(dut):
    """One flit at a time: each delivery comes exactly one cycle per router traversed; with
    ``phits = n > 1``, one slot of n cycles per router, plus one slot for an edge serializer
    (which starts in phase 0) or, for a local injection, the wait for the next slot; the
    deserializer offers the flit in the cycle after its last phit."""
    env = NocEnv(dut)
    await env.reset()
    rng = env.rng
    for k in range(int(os.environ.get("WAFERTILE_FLITS", "30"))):
        port = rng.choice(env.ports)
        word = env.random_word(port.ep, k, mcast=0.3, exit_p=0.1)
        port.queue = [word]
        await env.run(load=1.0, backpressure=0.0, stall_limit=100)
        t0 = env.inject_cycle[port.ep, word]
        for dest, hops in env.destinations(port.ep, word).items():
            latency = env.deliver_cycle[dest, word] - t0
            n = env.cfg.phits
            if n == 1:
                lo = hi = hops
            elif port.ep.port == "l":  # straight into the router: waits for the next slot
                lo, hi = hops * n + 1, hops * n + n
            else:  # the edge serializer starts in phase 0: one more slot
                lo = hi = (hops + 1) * n
            assert lo <= latency <= hi, (
                f"{port.ep} -> {dest}: latency {latency} cycles, {hops} routers traversed, "
                f"{lo}..{hi} expected with {n} phits (seed {env.seed})")
    env.assert_ok()
