"""Fast unit tests of one router in Amaranth's Python simulator, against the NoC model."""

from __future__ import annotations

from random import Random

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from wafertile import Config
from wafertile.hdl._util import ConfiguredComponent
from wafertile.hdl.flit import Port, field_slice, flit_layout
from wafertile.hdl.noc import (
    CompactRouter,
    LinkSignature,
    LiteRouter,
    ParallelRouter,
    PhitRx,
    PhitTx,
    Router,
    make_router,
)
from wafertile.sim.models import Endpoint, NocModel

from .conftest import seed_for

PORTS = [p.letter for p in Port]


def random_flit(model: NocModel, rng: Random, seq: int, *, port: int, x: int, y: int) -> int:
    """A random rectangle (unicast, row, column or block) that includes or excludes (x, y)."""
    cfg = model.config
    xs = sorted(rng.randrange(cfg.cols) for _ in range(2))
    ys = sorted(rng.randrange(cfg.rows) for _ in range(2))
    if rng.random() < 0.4:
        xs = [xs[0]] * 2
        ys = [ys[0]] * 2
    ex = Port(rng.choice([0, 0, 0, 1, 2, 3, 4]))
    return model.flit(x0=xs[0], x1=xs[1], y0=ys[0], y1=ys[1],
                      vc=rng.randrange(cfg.num_vcs), exit=ex, payload=seq)


class FlitRouter(ConfiguredComponent):
    """A router with whole-flit ports: with ``phits > 1``, a :class:`PhitTx` before every
    mesh input and a :class:`PhitRx` after every output, so the flit-level bench drives it."""

    def __init__(self, cfg: Config):
        members = {"x": In(unsigned(cfg.x_width)), "y": In(unsigned(cfg.y_width))}
        members.update({f"in_{p}": In(LinkSignature(cfg)) for p in PORTS})
        members.update({f"out_{p}": Out(LinkSignature(cfg)) for p in PORTS})
        super().__init__(cfg, members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.router = router = make_router(self.config)
        m.d.comb += [router.x.eq(self.x), router.y.eq(self.y)]
        for p in PORTS:
            m.submodules[f"rx_{p}"] = rx = PhitRx(self.config, per_vc=True)
            if p == "l":  # the lite router's local input takes whole flits
                wiring.connect(m, wiring.flipped(self.in_l), router.in_l)
            else:
                m.submodules[f"tx_{p}"] = tx = PhitTx(self.config)
                wiring.connect(m, wiring.flipped(getattr(self, f"in_{p}")), tx.i)
                wiring.connect(m, tx.o, getattr(router, f"in_{p}"))
            wiring.connect(m, getattr(router, f"out_{p}"), rx.i)
            wiring.connect(m, rx.o, wiring.flipped(getattr(self, f"out_{p}")))
        return m


def _dut(cfg: Config):
    return FlitRouter(cfg) if cfg.phits > 1 else make_router(cfg)


def simulate_router(cfg: Config, x: int, y: int, flits: dict[int, list[int]], *, seed: int,
                    idle: float, stall: float, max_cycles: int = 20000):
    """Drive ``flits[port]`` into a router at (x, y); return words seen per output port."""
    dut = _dut(cfg)
    rng = Random(seed)
    vc_at, vc_width = field_slice(flit_layout(cfg), "header.vc")
    got: dict[int, list[int]] = {p: [] for p in range(5)}
    info = {"cycles": 0}

    async def bench(ctx):
        ctx.set(dut.x, x)
        ctx.set(dut.y, y)
        pos = dict.fromkeys(range(5), 0)
        offered = {}
        quiet = 0
        total = sum(len(v) for v in flits.values())
        delivered_any = 0
        while True:
            for p in range(5):
                link = getattr(dut, f"in_{PORTS[p]}")
                if p not in offered and pos[p] < len(flits.get(p, [])) and rng.random() >= idle:
                    offered[p] = flits[p][pos[p]]
                ctx.set(link.valid, p in offered)
                if p in offered:
                    ctx.set(link.flit.as_value(), offered[p])
            readies = {p: rng.getrandbits(cfg.num_vcs) if rng.random() < stall
                       else (1 << cfg.num_vcs) - 1 for p in range(5)}
            for p in range(5):
                ctx.set(getattr(dut, f"out_{PORTS[p]}").ready, readies[p])
            sampled = []
            for p in range(5):
                inl = getattr(dut, f"in_{PORTS[p]}")
                out = getattr(dut, f"out_{PORTS[p]}")
                sampled += [inl.ready, out.valid, out.flit.as_value()]
            values = await ctx.tick().sample(*sampled)
            values = values[2:]  # skip clk, domain reset flag
            info["cycles"] += 1
            moved = False
            for p in range(5):
                in_ready, o_valid, o_flit = values[3 * p: 3 * p + 3]
                if p in offered:
                    vc = (offered[p] >> vc_at) & ((1 << vc_width) - 1)
                    if in_ready >> vc & 1:
                        del offered[p]
                        pos[p] += 1
                        moved = True
                if o_valid:
                    vc = (o_flit >> vc_at) & ((1 << vc_width) - 1)
                    assert readies[p] >> vc & 1, "router offered a flit whose VC is not ready"
                    got[p].append(o_flit)
                    delivered_any += 1
                    moved = True
            done = all(pos[p] == len(flits.get(p, [])) for p in range(5))
            quiet = 0 if moved else quiet + 1
            if done and quiet > 10 * cfg.phits:  # a flit crosses the router in 2-3 slots
                break
            assert quiet < 200 * cfg.phits, \
                f"no progress for {200 * cfg.phits} cycles (seed {seed}), {total} flits"
            assert info["cycles"] < max_cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, info


POSITIONS = [(1, 1), (0, 0), (2, 0), (0, 2), (2, 2), (1, 0)]


#: (num_vcs, buffer_depth, router_arch, phits) of the random tests.
ROUTER_CASES = [(2, 4, "compact", 1), (3, 2, "compact", 1), (2, 4, "parallel", 1),
                (4, 8, "parallel", 1), (2, 4, "lite", 1), (2, 2, "lite", 4), (3, 2, "lite", 3),
                (2, 4, "lite", 2), (2, 4, "voq", 1), (3, 2, "voq", 1), (2, 8, "voq", 1)]
#: The default run takes every case at the interior, and one case per micro-architecture
#: (FULL) at one more position: together a corner, an opposite corner and an edge; --run-slow
#: every case at every position (the default run had each FULL case at three more until
#: 2026-12-06, and the voq router, an option, at a corner too).
FULL = {(3, 2, "compact", 1): (0, 0), (2, 4, "parallel", 1): (2, 2), (2, 2, "lite", 4): (1, 0)}
#: Cases that run only with --run-slow: the voq router's (about 14 s each in Amaranth's
#: simulator) but its default configuration at the interior.
SLOW_CASES = {(2, 8, "voq", 1), (3, 2, "voq", 1)}
RANDOM_CASES = [
    pytest.param(pos, *case, id=f"x{pos[0]}y{pos[1]}-v{case[0]}d{case[1]}-{case[2]}{case[3]}",
                 marks=pytest.mark.slow if case in SLOW_CASES or (
                     pos != (1, 1) and FULL.get(case) != pos) else ())
    for case in ROUTER_CASES for pos in POSITIONS]


@pytest.mark.parametrize(("pos", "num_vcs", "depth", "arch", "phits"), RANDOM_CASES)
def test_random_all_ports(request, pos, num_vcs, depth, arch, phits):
    _random_all_ports(request, pos, Config(rows=3, cols=3, num_vcs=num_vcs, buffer_depth=depth,
                                           router_arch=arch, phits=phits))


@pytest.mark.parametrize(("pos", "num_vcs", "depth", "phits"), [
    ((1, 1), 2, 2, 4), ((0, 2), 2, 2, 4), ((1, 1), 3, 2, 3), ((2, 1), 2, 4, 2)])
def test_random_all_ports_with_link_slices(request, pos, num_vcs, depth, phits):
    """The lite router with its link slices (``link_slice``): every flit out on its route,
    once, in order per (input, VC), under idle and stalled links, as without them."""
    _random_all_ports(request, pos, Config(rows=3, cols=3, num_vcs=num_vcs, buffer_depth=depth,
                                           router_arch="lite", phits=phits, link_slice=True))


def _random_all_ports(request, pos, cfg):
    num_vcs = cfg.num_vcs
    model = NocModel(cfg)
    seed = seed_for(request)
    rng = Random(seed)
    x, y = pos
    flits = {p: [random_flit(model, rng, p * 1000 + k, port=p, x=x, y=y) for k in range(60)]
             for p in range(5)}
    got, _ = simulate_router(cfg, x, y, flits, seed=seed, idle=0.3, stall=0.4)
    injections = []
    expected: dict[int, list[int]] = {p: [] for p in range(5)}
    for p, words in flits.items():
        for w in words:
            mask = model.route(model.header(w), x, y, p)
            for o in range(5):
                if mask >> o & 1:
                    expected[o].append(w)
            injections.append((Endpoint(x, y, Port(p)), w))
    for o in range(5):
        assert sorted(got[o]) == sorted(expected[o]), f"output {PORTS[o]} (seed {seed})"
        # per (input, VC) order is kept on every output
        for p in range(5):
            for v in range(num_vcs):
                sub_exp = [w for w in expected[o] if w in set(flits[p]) and model.vc(w) == v]
                sub_got = [w for w in got[o] if w in set(flits[p]) and model.vc(w) == v]
                assert sub_got == sub_exp, f"order {PORTS[p]}->{PORTS[o]} VC {v} (seed {seed})"


@pytest.mark.parametrize("arch", ["compact", "parallel", "lite", "voq"])
def test_one_cycle_per_router_and_full_rate(arch):
    """Zero load: a flit leaves in the cycle after it arrived; an output moves 1 flit/cycle."""
    cfg = Config(rows=3, cols=3, router_arch=arch)
    model = NocModel(cfg)
    # 40 flits from W all going E (unicast to x=2): E output must carry one per cycle.
    words = [model.flit(x0=2, x1=2, y0=1, y1=1, vc=k % 2, payload=k) for k in range(40)]
    got, info = simulate_router(cfg, 1, 1, {4: words}, seed=0, idle=0.0, stall=0.0)
    assert got[2] == words
    # 40 transfers in, then 1 cycle to leave; the loop adds 11 quiet cycles at the end
    assert info["cycles"] == len(words) + 1 + 11


@pytest.mark.parametrize("link_slice", [False, True])
@pytest.mark.parametrize("phits", [2, 3, 4])
def test_lite_one_slot_per_router_and_full_rate(phits, link_slice):
    """With n phits an output moves one flit per n-cycle slot, back to back: the serializer
    takes flit k in the phase 0 of slot k, the router sends it in slot k + 1 and the
    deserializer offers it in the cycle after that slot. With the link slices the same: the
    slice's cycle hides in the slot."""
    cfg = Config(rows=3, cols=3, router_arch="lite", phits=phits, buffer_depth=2,
                 link_slice=link_slice)
    model = NocModel(cfg)
    words = [model.flit(x0=2, x1=2, y0=1, y1=1, vc=k % 2, payload=k) for k in range(40)]
    got, info = simulate_router(cfg, 1, 1, {4: words}, seed=0, idle=0.0, stall=0.0)
    assert got[2] == words
    # the last flit (k = 39) is offered in the first cycle after slot 40; then the bench waits
    # 10 * phits + 1 quiet cycles
    assert info["cycles"] == (len(words) + 1) * phits + 1 + 10 * phits + 1


@pytest.mark.parametrize(("arch", "phits"), [("compact", 1), ("parallel", 1), ("lite", 1),
                                             ("lite", 4)])
def test_blocked_vc_does_not_hold_up_another(arch, phits):
    """Requests (VC 0) stuck behind a downstream that never frees VC 0 must not stop replies
    (VC 1) from the same input to the same output (no protocol deadlock)."""
    cfg = Config(rows=3, cols=3, router_arch=arch, phits=phits, buffer_depth=2)
    model = NocModel(cfg)
    blocked = [model.flit(x0=2, x1=2, y0=1, y1=1, vc=0, payload=k) for k in range(3)]
    replies = [model.flit(x0=2, x1=2, y0=1, y1=1, vc=1, payload=100 + k) for k in range(6)]
    dut = _dut(cfg)
    got = []

    async def bench(ctx):
        ctx.set(dut.x, 1)
        ctx.set(dut.y, 1)
        for p in range(5):
            ctx.set(getattr(dut, f"out_{PORTS[p]}").ready, 0b10 if p == 2 else 0b11)
        link, out = dut.in_w, dut.out_e
        queue = blocked[:2] + replies  # two requests fill VC 0's buffer, replies follow
        for _ in range(60 * cfg.phits):
            if queue:
                ctx.set(link.valid, 1)
                ctx.set(link.flit.as_value(), queue[0])
            else:
                ctx.set(link.valid, 0)
            *_, ready, valid, word = await ctx.tick().sample(link.ready, out.valid,
                                                            out.flit.as_value())
            vc = model.vc(queue[0]) if queue else 0
            if queue and ready >> vc & 1:
                queue.pop(0)
            if valid:
                got.append(word)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == replies


def test_route_matches_model_everywhere():
    """At zero load every branch leaves in the cycle after arrival, on exactly the model's
    outputs, for random headers at every position and input port."""
    cfg = Config(rows=3, cols=3, num_vcs=2)
    model = NocModel(cfg)
    rng = Random(7)
    cases = []
    for _ in range(300):
        x, y, p = rng.randrange(3), rng.randrange(3), rng.randrange(5)
        cases.append((x, y, p, random_flit(model, rng, 0, port=p, x=x, y=y)))
    dut = make_router(cfg)
    mismatches = []

    async def bench(ctx):
        for p in range(5):
            ctx.set(getattr(dut, f"out_{PORTS[p]}").ready, 3)
        for x, y, p, w in cases:
            ctx.set(dut.x, x)
            ctx.set(dut.y, y)
            link = getattr(dut, f"in_{PORTS[p]}")
            ctx.set(link.valid, 1)
            ctx.set(link.flit.as_value(), w)
            await ctx.tick()
            ctx.set(link.valid, 0)
            valids = [ctx.get(getattr(dut, f"out_{PORTS[o]}").valid) for o in range(5)]
            flits = [ctx.get(getattr(dut, f"out_{PORTS[o]}").flit.as_value()) for o in range(5)]
            got = sum(v << o for o, v in enumerate(valids))
            want = model.route(model.header(w), x, y, p)
            if got != want or any(flits[o] != w for o in range(5) if valids[o]):
                mismatches.append((x, y, p, model.header(w), got, want))
            await ctx.tick()
            assert not any(ctx.get(getattr(dut, f"out_{PORTS[o]}").valid) for o in range(5))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, mismatches[:5]


def test_phit_adapters_need_phits():
    for cls in (PhitTx, PhitRx):
        with pytest.raises(ValueError, match=rf"^{cls.__name__} adapts a phit link: it needs "
                                             r"phits > 1 \(with phits = 1 a link carries whole "
                                             r"flits\), not 1$"):
            cls(Config(router_arch="lite"))


def test_bad_config_type():
    with pytest.raises(TypeError, match=r"^Router config must be a Config, not 3$"):
        make_router(3)
    with pytest.raises(TypeError, match=r"^CompactRouter config must be a Config, not 3$"):
        CompactRouter(3)


@pytest.mark.parametrize("cls", [CompactRouter, ParallelRouter, LiteRouter])
def test_router_class_needs_its_arch(cls):
    other = "parallel" if cls is not ParallelRouter else "compact"
    with pytest.raises(ValueError, match=rf"^{cls.__name__} needs router_arch '{cls.arch}', "
                                         rf"not '{other}'$"):
        cls(Config(router_arch=other))


def test_router_base_is_abstract():
    with pytest.raises(TypeError, match=r"^Router is abstract: make a router with "
                                        r"make_router\(\) or one of its subclasses$"):
        Router(Config())


@pytest.mark.parametrize("arch", ["compact", "parallel", "lite", "voq"])
def test_make_router_picks_the_class(arch):
    router = make_router(Config(router_arch=arch))
    assert type(router).arch == arch
    assert router.in_n.signature.flip() == LinkSignature(router.config)
    # a lite router's local input takes whole flits even with phit links
    lite = make_router(Config(router_arch="lite", phits=4))
    assert lite.in_l.signature.flip() == LinkSignature(lite.config)
    assert lite.in_n.signature.flip() == LinkSignature(lite.config, phit=True)
    assert lite.out_l.signature == LinkSignature(lite.config, phit=True)
    from amaranth.hdl import Fragment
    Fragment.get(router, None)  # elaborates
    Fragment.get(lite, None)
