"""Reference model of the router mesh: where every injected flit must be delivered.

Single-flit packets make the mesh a pure function from injections to deliveries: each
injected flit (a source and a whole flit word, header + payload) is delivered, unchanged, at
the exact set of endpoints that the XY multicast tree of its header reaches, once each. The
only ordering the fabric promises is per (source, destination, VC): flits sent from one
source to one destination on one VC arrive in injection order.

Endpoints and sources are :class:`Endpoint` ``(x, y, port)``: ``port`` is ``"l"`` for the tile
at (x, y), or one of ``"n", "e", "s", "w"`` for the edge port of router (x, y) that leads off
the array on that side (a host attachment). A source with an edge port injects into that
router's input from outside the array.

:meth:`NocModel.check` compares what a simulation delivered against the model and names every
lost, duplicated, misrouted and reordered flit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from amaranth.hdl import Shape

from ..config import Config
from ..hdl.flit import Exit, flit_layout, header_layout, pack, unpack

__all__ = ["PORT_NAMES", "Endpoint", "NocModel"]

#: Port names, indexed by port number (as :class:`~wafertile.hdl.flit.Exit`).
PORT_NAMES = ("l", "n", "e", "s", "w")
_L, _N, _E, _S, _W = range(5)
# output port -> (dx, dy, input port at the neighbour)
_STEP = {_N: (0, -1, _S), _E: (1, 0, _W), _S: (0, 1, _N), _W: (-1, 0, _E)}


class Endpoint(NamedTuple):
    """A router (x, y) and one of its ports by name ("l", "n", "e", "s", "w")."""

    x: int
    y: int
    port: str


class NocModel:
    """Deliveries of a ``config.rows`` x ``config.cols`` mesh of routers (:mod:`.hdl.router`).

    Parameters
    ----------
    config : Config
        Array size and flit format.
    """

    def __init__(self, config: Config):
        if not isinstance(config, Config):
            raise TypeError(f"NocModel config must be a Config, not {config!r}")
        self.config = config
        self.layout = flit_layout(config)
        self.header_width = Shape.cast(header_layout(config)).width

    # -- flits ---------------------------------------------------------------------------------

    def flit(self, *, x0: int, x1: int, y0: int, y1: int, vc: int = 0,
             exit: Exit | str = Exit.LOCAL, payload: int = 0) -> int:
        """A flit word: the header fields, with ``payload`` as raw bits above the header."""
        payload_width = Shape.cast(self.layout).width - self.header_width
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

    def route(self, header: Mapping, x: int, y: int, port: int) -> int:
        """Output mask at router (x, y) for a flit that arrived on input ``port`` (numbers)."""
        x0, x1, y0, y1 = header["x0"], header["x1"], header["y0"], header["y1"]
        ex = Exit(header["exit"]).value
        mask = 0
        if x < x1 and port in (_L, _W):
            mask |= 1 << _E
        if x > x0 and port in (_L, _E):
            mask |= 1 << _W
        in_x = x0 <= x <= x1
        if in_x and y < y1 and port != _S:
            mask |= 1 << _S
        if in_x and y > y0 and port != _N:
            mask |= 1 << _N
        if in_x and y0 <= y <= y1:
            on_edge = {_N: y == 0, _E: x == self.config.cols - 1,
                       _S: y == self.config.rows - 1, _W: x == 0}
            if ex != _L and on_edge[ex]:
                mask |= 1 << ex
            else:
                mask |= 1 << _L
        return mask or 1 << _L

    def destinations(self, source: Endpoint, word: int) -> dict[Endpoint, int]:
        """Every endpoint ``word`` injected at ``source`` reaches, with routers traversed."""
        cfg = self.config
        src = Endpoint(*source)
        if not (0 <= src.x < cfg.cols and 0 <= src.y < cfg.rows):
            raise ValueError(f"source {tuple(src)} is outside the {cfg.rows} x {cfg.cols} array")
        if src.port not in PORT_NAMES:
            raise ValueError(f"source port must be one of {', '.join(PORT_NAMES)}, "
                             f"not {src.port!r}")
        header = self.header(word)
        out: dict[Endpoint, int] = {}
        todo = [(src.x, src.y, PORT_NAMES.index(src.port), 1)]
        while todo:
            x, y, port, hops = todo.pop()
            if hops > cfg.rows + cfg.cols + 1:  # XY paths are never longer
                raise AssertionError(f"route of {header} loops at ({x}, {y})")
            mask = self.route(header, x, y, port)
            for o in range(5):
                if not mask >> o & 1:
                    continue
                if o == _L:
                    dest = Endpoint(x, y, "l")
                else:
                    dx, dy, back = _STEP[o]
                    nx, ny = x + dx, y + dy
                    if 0 <= nx < cfg.cols and 0 <= ny < cfg.rows:
                        todo.append((nx, ny, back, hops + 1))
                        continue
                    dest = Endpoint(x, y, PORT_NAMES[o])
                if dest in out:
                    raise AssertionError(f"{header} reaches {dest} twice")
                out[dest] = hops
        return dict(sorted(out.items()))

    # -- checking ------------------------------------------------------------------------------

    def expected(self, injections: Iterable[tuple[Endpoint, int]]
                 ) -> dict[Endpoint, list[tuple[Endpoint, int]]]:
        """For each endpoint, the (source, word) pairs it must receive, in injection order."""
        out: dict[Endpoint, list[tuple[Endpoint, int]]] = defaultdict(list)
        for source, word in injections:
            for dest in self.destinations(source, word):
                out[dest].append((Endpoint(*source), word))
        return dict(out)

    def check(self, injections: Iterable[tuple[Endpoint, int]],
              observed: Mapping[Endpoint, list[int]]) -> list[str]:
        """Every difference between ``observed`` deliveries and the model, as messages.

        ``observed`` maps an endpoint to the words it received, in arrival order. Order is
        checked per (source, destination, VC), which needs the words injected by one source
        to be distinct (tests put a sequence number in the payload).
        """
        injections = [(Endpoint(*s), w) for s, w in injections]
        expected = self.expected(injections)
        errors: list[str] = []
        where_sent: dict[int, list[Endpoint]] = defaultdict(list)
        for dest, items in expected.items():
            for _, word in items:
                where_sent[word].append(dest)
        for dest in sorted(set(expected) | {Endpoint(*d) for d in observed}):
            want = Counter(w for _, w in expected.get(dest, []))
            got_list = list(observed.get(dest, observed.get(tuple(dest), [])))
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
