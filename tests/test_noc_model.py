"""The NoC reference model: directed deliveries, the checker's verdicts, its errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from random import Random

import pytest

from wafertile import Config
from wafertile.hdl.flit import Port
from wafertile.sim.models import Endpoint, NocModel

CFG = Config(rows=3, cols=5)
M = NocModel(CFG)
E = Endpoint.of


def dests(source, **header):
    return M.destinations(source, M.flit(**header))


def test_unicast_hops_are_manhattan_plus_one():
    assert dests(E(0, 0, "l"), x0=4, x1=4, y0=2, y1=2) == {E(4, 2, "l"): 7}
    assert dests(E(2, 1, "l"), x0=2, x1=2, y0=1, y1=1) == {E(2, 1, "l"): 1}


def test_rectangle_including_source():
    got = dests(E(2, 1, "l"), x0=1, x1=3, y0=0, y1=2)
    assert set(got) == {E(x, y, "l") for x in range(1, 4) for y in range(3)}
    assert got[E(2, 1, "l")] == 1 and got[E(3, 2, "l")] == 3


def test_rectangle_excluding_source():
    got = dests(E(0, 2, "l"), x0=3, x1=4, y0=0, y1=1)
    assert set(got) == {E(x, y, "l") for x in (3, 4) for y in (0, 1)}
    assert got[E(4, 0, "l")] == 1 + 4 + 2


def test_row_multicast_from_west_edge_is_one_injection():
    got = dests(E(0, 1, "w"), x0=0, x1=4, y0=1, y1=1)
    assert got == {E(x, 1, "l"): x + 1 for x in range(5)}


def test_exit_west_reply_to_host():
    assert dests(E(3, 2, "l"), x0=0, x1=0, y0=0, y1=0, exit=Port.WEST) == {E(0, 0, "w"): 6}


def test_exit_only_on_that_edge():
    # a column with exit EAST: only the tiles on the east edge leave the array
    got = dests(E(0, 0, "l"), x0=3, x1=4, y0=0, y1=0, exit=Port.EAST)
    assert got == {E(3, 0, "l"): 4, E(4, 0, "e"): 5}


def test_one_by_one_mesh():
    m = NocModel(Config(rows=1, cols=1))
    for ex, port in [(Port.LOCAL, "l"), (Port.NORTH, "n"), (Port.EAST, "e"),
                     (Port.SOUTH, "s"), (Port.WEST, "w")]:
        word = m.flit(x0=0, x1=0, y0=0, y1=0, exit=ex)
        assert m.destinations(E(0, 0, "l"), word) == {E(0, 0, port): 1}


def test_coordinates_beyond_the_array_leave_by_the_edge():
    # cols = 5 needs 3 bits: x1 = 7 is beyond the east edge
    got = dests(E(3, 0, "l"), x0=3, x1=7, y0=0, y1=0)
    assert got == {E(3, 0, "l"): 1, E(4, 0, "l"): 2, E(4, 0, "e"): 2}


def test_every_destination_reached_once_random():
    rng = Random(3)
    for _ in range(300):
        x0, x1 = sorted(rng.randrange(5) for _ in range(2))
        y0, y1 = sorted(rng.randrange(3) for _ in range(2))
        src = E(rng.randrange(5), rng.randrange(3), "l")
        got = dests(src, x0=x0, x1=x1, y0=y0, y1=y1)
        assert set(got) == {E(x, y, "l") for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}
        for d, hops in got.items():
            assert hops == abs(d.x - src.x) + abs(d.y - src.y) + 1


def _traffic():
    a = M.flit(x0=1, x1=2, y0=0, y1=0, vc=0, payload=1)
    b = M.flit(x0=1, x1=1, y0=0, y1=0, vc=0, payload=2)
    c = M.flit(x0=1, x1=1, y0=0, y1=0, vc=1, payload=3)
    inj = [(E(0, 0, "l"), a), (E(0, 0, "l"), b), (E(0, 0, "l"), c)]
    good = {E(1, 0, "l"): [a, c, b], E(2, 0, "l"): [a]}  # c is on another VC: may pass
    return inj, good, a, b, c


def test_check_accepts_correct_delivery():
    inj, good, *_ = _traffic()
    assert M.check(inj, good) == []


def test_check_names_every_error():
    inj, _good, a, b, c = _traffic()
    lost = {E(1, 0, "l"): [a, c], E(2, 0, "l"): [a]}
    assert [e.split(":")[0] for e in M.check(inj, lost)] == ["lost"]
    dup = {E(1, 0, "l"): [a, c, b, b], E(2, 0, "l"): [a]}
    assert [e.split(":")[0] for e in M.check(inj, dup)] == ["duplicated"]
    mis = {E(1, 0, "l"): [a, c, b], E(2, 0, "l"): [a, b]}
    assert [e.split(":")[0] for e in M.check(inj, mis)] == ["misrouted"]
    reorder = {E(1, 0, "l"): [b, c, a], E(2, 0, "l"): [a]}
    assert [e.split(":")[0] for e in M.check(inj, reorder)] == ["reordered"]


def test_bad_config():
    with pytest.raises(TypeError, match=r"^NocModel config must be a Config, not 3$"):
        NocModel(3)


def test_source_outside_array():
    with pytest.raises(ValueError, match=r"^source \(5,0,l\) is outside the 3 x 5 array$"):
        M.destinations(E(5, 0, "l"), M.flit(x0=0, x1=0, y0=0, y1=0))


def test_bad_source_port():
    with pytest.raises(ValueError, match=r"^port must be one of l, n, e, s, w, not 'x'$"):
        M.destinations((0, 0, "x"), M.flit(x0=0, x1=0, y0=0, y1=0))


def test_payload_too_wide():
    with pytest.raises(ValueError, match=r"^payload must be from 0 to \d+, not -1$"):
        M.flit(x0=0, x1=0, y0=0, y1=0, payload=-1)


def test_bad_vc():
    with pytest.raises(ValueError, match=r"^vc must be from 0 to 1, not 2$"):
        M.flit(x0=0, x1=0, y0=0, y1=0, vc=2)


def _bench():
    path = Path(__file__).parents[1] / "benchmarks" / "noc.py"
    spec = importlib.util.spec_from_file_location("noc_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("k", [4, 8])
def test_benchmark_bounds_match_the_xy_formulas(k):
    bench = _bench()
    assert bench.xy_bound(k, k, "uniform") == pytest.approx(4 / k)
    assert bench.xy_bound(k, k, "transpose") == pytest.approx(1 / (k - 1))
    assert bench.xy_bound(k, k, "bitcomp") == pytest.approx(2 / k)


def test_benchmark_target_verdicts():
    bench = _bench()
    t = bench.targets("uniform", 3.61, 3.60, 0.60)
    assert t["zero_load_latency"]["met"] and not t["saturation_ratio"]["met"]
    t = bench.targets("bitcomp", 8.0, 5.0, 0.85)
    assert not t["zero_load_latency"]["met"] and t["saturation_ratio"]["met"]
    assert "saturation_ratio" not in bench.targets("hotspot", 3.4, 3.4, 0.95)


def test_one_router_alone():
    """A model of the router at (1, 1) alone: a flit reaches exactly the outputs of its route
    mask, and a source elsewhere is refused."""
    m = NocModel(Config(rows=3, cols=3), router=(1, 1))
    word = m.flit(x0=0, x1=2, y0=1, y1=1)  # the whole row 1, from the local port
    assert m.destinations(E(1, 1, "l"), word) == {E(1, 1, "w"): 1, E(1, 1, "e"): 1,
                                                  E(1, 1, "l"): 1}
    assert m.destinations(E(1, 1, "w"), word) == {E(1, 1, "e"): 1, E(1, 1, "l"): 1}
    assert m.sources() == [E(1, 1, p) for p in "lnesw"]
    with pytest.raises(ValueError, match=r"^source \(0,0,l\) is not a port of the router at "
                                         r"\(1, 1\)$"):
        m.destinations(E(0, 0, "l"), word)
    with pytest.raises(ValueError, match=r"^router \(3, 0\) is outside the 3 x 3 array$"):
        NocModel(Config(rows=3, cols=3), router=(3, 0))


def test_sources_of_a_mesh():
    m = NocModel(Config(rows=2, cols=3))
    src = m.sources()
    assert len(src) == 2 * 3 + 2 * 2 + 2 * 3 and len(set(src)) == len(src)
    assert E(0, 0, "w") in src and E(2, 1, "e") in src and E(1, 0, "n") in src
    assert E(1, 1, "s") in src and E(1, 1, "w") not in src
