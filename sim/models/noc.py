"""Reference model of the router mesh: where every injected flit must be delivered.

Single-flit packets make the mesh a pure function from injections to deliveries: each
injected flit (a source and a whole flit word, header + payload) is delivered, unchanged, at
the exact set of endpoints that the XY multicast tree of its header reaches, once each. The
only ordering the fabric promises is per (source, destination, VC): flits sent from one
source to one destination on one VC arrive in injection order.

Endpoints and sources are :class:`Endpoint` ``(x, y, port)`` with ``port`` a
:class:`~wafertile.hdl.flit.Port` (or its letter): ``LOCAL`` for the tile at (x, y), or the
edge port of router (x, y) that leads off the array on that side (a host attachment). A source
with an edge port injects into that router's input from outside the array.

A model may also describe one router alone (``router=(x, y)``): a flit injected at its input
``p`` is delivered at each of its outputs that the routing rule names (endpoints
``(x, y, output)``); the rest is the same.

:meth:`NocModel.check` compares what a simulation delivered against the model and names every
lost, duplicated, misrouted and reordered flit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ...config import Config
from ...hdl.flit import MESH_PORTS, Port, header_layout, pack, unpack

__all__ = ["Endpoint", "NocModel"]


class Endpoint(NamedTuple):
    """A router (x, y) and one of its ports (a :class:`~wafertile.hdl.flit.Port`)."""

    x: int
    y: int
    port: Port

    @classmethod
    def of(cls, x: int, y: int, port: Port | str | int) -> Endpoint:
        """An endpoint from a port given as a :class:`Port`, its number or its letter."""
        if isinstance(port, str):
            return cls(x, y, Port.from_letter(port))
        return cls(x, y, Port(port))

    def __str__(self) -> str:
        return f"({self.x},{self.y},{self.port.letter})"

    @property
    def key(self) -> tuple[int, int, int]:
        """A sort key: x, y, port number."""
        return self.x, self.y, self.port.value


class NocModel:
    """Deliveries of a ``config.rows`` x ``config.cols`` mesh of routers, or of the one router
    at ``router = (x, y)`` of such a mesh.

    Parameters
    ----------
    config : Config
        Array size and flit format.
    router : tuple of int, optional
        Model one router alone at this position.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    ValueError
        If ``router`` is outside the array.
    """

    def __init__(self, config: Config, *, router: tuple[int, int] | None = None):
        if not isinstance(config, Config):
            raise TypeError(f"NocModel config must be a Config, not {config!r}")
        if router is not None and not (0 <= router[0] < config.cols
                                       and 0 <= router[1] < config.rows):
            raise ValueError(f"router {tuple(router)} is outside the {config.rows} x "
                             f"{config.cols} array")
        self.config = config
        self.router = None if router is None else (int(router[0]), int(router[1]))
        self.header_width = config.header_width

    # -- flits ---------------------------------------------------------------------------------

    def flit(self, *, x0: int, x1: int, y0: int, y1: int, vc: int = 0,
             exit: Port | str = Port.LOCAL, payload: int = 0) -> int:
        """A flit word: the header fields, with ``payload`` as raw bits above the header."""
        payload_width = self.config.payload_width
        if not 0 <= payload < (1 << payload_width):
            raise ValueError(f"payload must be from 0 to {(1 << payload_width) - 1}, "
                             f"not {payload}")
        if not 0 <= vc < self.config.num_vcs:
            raise ValueError(f"vc must be from 0 to {self.config.num_vcs - 1}, not {vc}")
        header = pack(header_layout(self.config),
                      {"x0": x0, "x1": x1, "y0": y0, "y1": y1, "vc": vc, "exit": exit})
        return header | (payload << self.header_width)

    def header(self, word: int) -> dict:
        return unpack(header_layout(self.config), word & ((1 << self.header_width) - 1))

    def vc(self, word: int) -> int:
        return self.header(word)["vc"]

    # -- routing -------------------------------------------------------------------------------

    def route(self, header: Mapping, x: int, y: int, port: Port | int) -> int:
        """Output mask at router (x, y) (bit ``p`` = port ``p``) for a flit that arrived on
        input ``port``."""
        port = Port(port)
        x0, x1, y0, y1 = header["x0"], header["x1"], header["y0"], header["y1"]
        ex = Port(header["exit"])
        mask = 0
        if x < x1 and port in (Port.LOCAL, Port.WEST):
            mask |= 1 << Port.EAST.value
        if x > x0 and port in (Port.LOCAL, Port.EAST):
            mask |= 1 << Port.WEST.value
        in_x = x0 <= x <= x1
        if in_x and y < y1 and port is not Port.SOUTH:
            mask |= 1 << Port.SOUTH.value
        if in_x and y > y0 and port is not Port.NORTH:
            mask |= 1 << Port.NORTH.value
        if in_x and y0 <= y <= y1:
            on_edge = {Port.NORTH: y == 0, Port.EAST: x == self.config.cols - 1,
                       Port.SOUTH: y == self.config.rows - 1, Port.WEST: x == 0}
            if ex is not Port.LOCAL and on_edge[ex]:
                mask |= 1 << ex.value
            else:
                mask |= 1 << Port.LOCAL.value
        return mask or 1 << Port.LOCAL.value

    def destinations(self, source: Endpoint | tuple, word: int) -> dict[Endpoint, int]:
        """Every endpoint ``word`` injected at ``source`` reaches, with routers traversed."""
        cfg = self.config
        src = Endpoint.of(*source)
        if not (0 <= src.x < cfg.cols and 0 <= src.y < cfg.rows):
            raise ValueError(f"source {src} is outside the {cfg.rows} x {cfg.cols} array")
        header = self.header(word)
        if self.router is not None:
            if (src.x, src.y) != self.router:
                raise ValueError(f"source {src} is not a port of the router at {self.router}")
            mask = self.route(header, src.x, src.y, src.port)
            return {Endpoint(src.x, src.y, o): 1 for o in Port if mask >> o.value & 1}
        out: dict[Endpoint, int] = {}
        todo = [(src.x, src.y, src.port, 1)]
        while todo:
            x, y, port, hops = todo.pop()
            if hops > cfg.rows + cfg.cols + 1:  # XY paths are never longer
                raise AssertionError(f"route of {header} loops at ({x}, {y})")
            mask = self.route(header, x, y, port)
            for o in Port:
                if not mask >> o.value & 1:
                    continue
                if o is not Port.LOCAL:
                    dx, dy = o.step
                    nx, ny = x + dx, y + dy
                    if 0 <= nx < cfg.cols and 0 <= ny < cfg.rows:
                        todo.append((nx, ny, o.opposite, hops + 1))
                        continue
                dest = Endpoint(x, y, o)
                if dest in out:
                    raise AssertionError(f"{header} reaches {dest} twice")
                out[dest] = hops
        return dict(sorted(out.items(), key=lambda item: item[0].key))

    def sources(self) -> list[Endpoint]:
        """Every port a flit can be injected at: each router's local port and the edge ports
        (or the five inputs of the one router)."""
        cfg = self.config
        if self.router is not None:
            return [Endpoint(*self.router, p) for p in Port]
        out = [Endpoint(x, y, Port.LOCAL) for y in range(cfg.rows) for x in range(cfg.cols)]
        for p in MESH_PORTS:
            for y in range(cfg.rows):
                for x in range(cfg.cols):
                    dx, dy = p.step
                    if not (0 <= x + dx < cfg.cols and 0 <= y + dy < cfg.rows):
                        out.append(Endpoint(x, y, p))
        return out

    # -- checking ------------------------------------------------------------------------------

    def expected(self, injections: Iterable[tuple[Endpoint, int]]
                 ) -> dict[Endpoint, list[tuple[Endpoint, int]]]:
        """For each endpoint, the (source, word) pairs it must receive, in injection order."""
        out: dict[Endpoint, list[tuple[Endpoint, int]]] = defaultdict(list)
        for source, word in injections:
            for dest in self.destinations(source, word):
                out[dest].append((Endpoint.of(*source), word))
        return dict(out)

    def check(self, injections: Iterable[tuple[Endpoint, int]],
              observed: Mapping[Endpoint, list[int]]) -> list[str]:
        """Every difference between ``observed`` deliveries and the model, as messages.

        ``observed`` maps an endpoint to the words it received, in arrival order. Order is
        checked per (source, destination, VC), which needs the words injected by one source
        to be distinct (tests put a sequence number in the payload).
        """
        injections = [(Endpoint.of(*s), w) for s, w in injections]
        observed = {Endpoint.of(*d): list(words) for d, words in observed.items()}
        expected = self.expected(injections)
        errors: list[str] = []
        where_sent: dict[int, list[Endpoint]] = defaultdict(list)
        for dest, items in expected.items():
            for _, word in items:
                where_sent[word].append(dest)
        for dest in sorted(set(expected) | set(observed), key=lambda ep: ep.key):
            want = Counter(w for _, w in expected.get(dest, []))
            got_list = list(observed.get(dest, []))
            got = Counter(got_list)
            for word, n in sorted((want - got).items()):
                errors.append(f"lost: {n} x {word:#x} {self.header(word)} never reached {dest}")
            for word, n in sorted((got - want).items()):
                if word in want:
                    errors.append(f"duplicated: {word:#x} reached {dest} {got[word]} times, "
                                  f"expected {want[word]}")
                else:
                    errors.append(f"misrouted: {n} x {word:#x} {self.header(word)} reached "
                                  f"{dest}; its destinations are {where_sent.get(word, [])}")
            # order per (source, VC) at this destination
            streams: dict[tuple[Endpoint, int], list[int]] = defaultdict(list)
            owner: dict[int, tuple[Endpoint, int]] = {}
            for source, word in expected.get(dest, []):
                key = (source, self.vc(word))
                streams[key].append(word)
                owner[word] = key
            seen: dict[tuple[Endpoint, int], list[int]] = defaultdict(list)
            for word in got_list:
                if word in owner:
                    seen[owner[word]].append(word)
            for key, words in streams.items():
                if len(set(words)) != len(words) or len(set(seen[key])) != len(seen[key]):
                    continue  # order is undefined between equal words
                arrived = set(seen[key])
                if seen[key] != [w for w in words if w in arrived]:
                    errors.append(f"reordered: flits from {key[0]} on VC {key[1]} reached {dest} "
                                  f"out of order")
        return errors
