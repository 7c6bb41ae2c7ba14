"""The routers of the event-level model (:mod:`.mesh`): one class per router
micro-architecture, as in :mod:`wafertile.hdl.noc`, each holding every router of the array at
once (its arrays are vectorized over the tiles).

What they share (:class:`Router`): a FIFO of ``buffer_depth`` flits per (input, VC) with each
buffered flit's route mask (:func:`route_bits`) and the branches its head has already sent;
a round-robin pointer per output and a VC pointer per input (:attr:`Router.arbiters`, which
a phase hands to the next, as the RTL keeps them); and one step per slot
(:meth:`Router.step`):

1. every input offers the branches of a head that still have to go and whose next buffer
   had room at the start of the step;
2. every output grants one offer round-robin, its candidates in the order of the
   micro-architecture's switch (:attr:`Router.orders`); a multicast head keeps its buffer
   until every branch has gone, one or several per step;
3. granted branches enter the next router's buffer (visible next step); heads with nothing
   left leave their buffers; what goes to a core or leaves by the west edge is the mesh's to
   deliver (:class:`Grants`).

Where the micro-architectures differ in a way the programs see, a subclass overrides a step
of :class:`Router` (:class:`CompactRouter`, :class:`ParallelRouter`, :class:`LiteRouter`;
:class:`VoqRouter` replaces the whole step: its queues are per output, not FIFOs);
:data:`ROUTERS` picks the class of ``Config.router_arch``. A new micro-architecture is a new
subclass there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hdl.flit import Port
from .timing import Timing

__all__ = ["ROUTERS", "CompactRouter", "Grants", "LiteRouter", "ParallelRouter", "Router",
           "Step", "VoqRouter", "route_bits"]

_L, _N, _E, _S, _W = (p.value for p in Port)
_OPPOSITE = {_N: _S, _S: _N, _E: _W, _W: _E}
#: ``lite``'s switch (:mod:`wafertile.hdl.noc.lite`): the inputs of XE, XW and the turn stage
_XE_IN, _XW_IN, _T_IN = [_W, _L], [_E, _L], [_W, _E, _L]


def _compact_paths() -> tuple:
    """The ``compact`` switch's paths (:data:`wafertile.hdl.noc.compact.PATHS`) as masks per
    input: the outputs it reaches through T alone, through T then D, through D; and each
    output's direct inputs."""
    from ..hdl.noc.compact import PATHS

    def bits(kinds):
        return np.array([sum(1 << o for o in range(5) if PATHS[p][o] in kinds)
                         for p in range(5)], np.int64)
    direct = {o: tuple(p for p in range(5) if PATHS[p][o] == "direct") for o in range(1, 5)}
    return bits(("T",)), bits(("TD",)), bits(("D",)), direct


_CT_T, _CT_TD, _CT_D, _CT_DIRECT = _compact_paths()
_CT_ANY = _CT_T | _CT_TD


def route_bits(x, y, port, x0, x1, y0, y1, exit_, rows: int, cols: int):
    """The outputs (bit ``p`` = :class:`~wafertile.hdl.flit.Port` ``p``) of a flit that
    arrived on input ``port`` at router ``(x, y)``: the rule of
    :func:`wafertile.hdl.noc.route.route_mask`, vectorized (``port`` may be an array)."""
    port = np.asarray(port)
    east = (x < x1) & ((port == _L) | (port == _W))
    west = (x > x0) & ((port == _L) | (port == _E))
    in_x = (x >= x0) & (x <= x1)
    south = in_x & (y < y1) & (port != _S)
    north = in_x & (y > y0) & (port != _N)
    in_rect = in_x & (y >= y0) & (y <= y1)
    leave_n = in_rect & (exit_ == _N) & (y == 0)
    leave_e = in_rect & (exit_ == _E) & (x == cols - 1)
    leave_s = in_rect & (exit_ == _S) & (y == rows - 1)
    leave_w = in_rect & (exit_ == _W) & (x == 0)
    stay = in_rect & ~(leave_n | leave_e | leave_s | leave_w)
    bits = (stay.astype(np.int64) | ((north | leave_n) << 1) | ((east | leave_e) << 2)
            | ((south | leave_s) << 3) | ((west | leave_w) << 4))
    return np.where(bits == 0, 1, bits)


@dataclass(frozen=True)
class Grants:
    """The offers the outputs granted in one step: one entry per (output, router) whose
    arbiter granted.

    Attributes
    ----------
    out, node : numpy.ndarray
        The granting output and its router.
    inp, vc : numpy.ndarray
        The input and VC of the granted head.
    bits : numpy.ndarray
        The branches (output bits) the grant sends: the output's own bit, or on the local
        output the offered branches the delivery stage serves (:attr:`Router.dmask`).
    fid : numpy.ndarray
        The granted head's flit.
    """

    out: np.ndarray
    node: np.ndarray
    inp: np.ndarray
    vc: np.ndarray
    bits: np.ndarray
    fid: np.ndarray


@dataclass(frozen=True)
class Step:
    """What every router did in one step (:meth:`Router.step`).

    Attributes
    ----------
    full : numpy.ndarray
        Whether each (input, VC, router) buffer was full at the start of the step (what the
        host's injection sees).
    offer : numpy.ndarray
        The branches each (input, VC, router) head offered.
    chosen : numpy.ndarray or None
        The VC each (input, router) offered (None where every VC's head offers).
    grants : Grants
        What the outputs granted.
    popped : numpy.ndarray
        Whether each (input, router) let a head go in the step.
    """

    full: np.ndarray
    offer: np.ndarray
    chosen: np.ndarray | None
    grants: Grants
    popped: np.ndarray


class Router:
    """Every router of the array for one phase, one micro-architecture (abstract: one
    subclass per ``Config.router_arch``, picked by :data:`ROUTERS`).

    The base class plays what the micro-architectures share (the module's docstring) and,
    as its default allocation, one VC head per input: each input offers the head of one VC,
    the first from its VC pointer (:attr:`vcp`) that has a branch to send, and each output's
    arbiter scans inputs in the order of :attr:`orders`. A subclass overrides the steps where
    its micro-architecture differs.

    Parameters
    ----------
    timing : Timing
        The configuration (array size, ``num_vcs``, ``buffer_depth``) and its slot.
    flits : PhaseFlits
        The phase's flits (:class:`~wafertile.model.mesh.PhaseFlits`): their VCs, rectangles
        and exits.

    Attributes
    ----------
    fifo, mask : numpy.ndarray
        Flit ids and route masks per (input, VC, router, place in the FIFO).
    head, count, sent : numpy.ndarray
        Per (input, VC, router): the FIFO's head place, its length, and the branches its
        head has sent.
    depth : numpy.ndarray
        Each input's FIFO depth.
    ptrs, vcp : numpy.ndarray
        Per (output, router) the round-robin pointer, per (input, router) the VC pointer.
    dmask : numpy.ndarray
        Per router, the output bits the local output's grant serves.
    x, y, inside, neighbour
        Each router's coordinates, and per output direction whether it leads to another
        router and which.
    """

    #: The value of ``Config.router_arch`` that selects this micro-architecture.
    arch: str = ""
    #: Each output's candidate inputs, in the order its round-robin arbiter scans them
    #: (padded with the output's own direction, which never asks for it: no U-turns).
    orders: dict[int, tuple[int, ...]] = {}

    def __init__(self, timing: Timing, flits):
        if not self.arch:
            raise TypeError(f"{type(self).__name__} is abstract: pick a class from ROUTERS")
        cfg = timing.config
        self.R, self.C, self.V = cfg.rows, cfg.cols, cfg.num_vcs
        self.B = cfg.buffer_depth
        self.slot = timing.slot
        self.f = flits
        nodes = self.R * self.C
        self.nodes = nodes
        node = np.arange(nodes)
        self.x = node % self.C
        self.y = node // self.C
        shape = (5, self.V, nodes)
        self.fifo = np.zeros((*shape, self.B), np.int64)
        self.mask = np.zeros((*shape, self.B), np.int64)
        self.head = np.zeros(shape, np.int64)
        self.count = np.zeros(shape, np.int64)
        self.sent = np.zeros(shape, np.int64)
        self.depth = np.full(5, self.B)
        self.vcp = np.zeros((5, nodes), np.int64)
        self.ptrs = np.zeros((5, nodes), np.int64)
        self.dmask = np.full(nodes, 1 << _L)
        self.order = np.array([self.orders[o] for o in range(5)])
        C = self.C
        self.inside = {_N: self.y > 0, _S: self.y < self.R - 1, _E: self.x < C - 1,
                       _W: self.x > 0}
        step = {_N: -C, _S: C, _E: 1, _W: -1}
        self.neighbour = {o: np.where(self.inside[o], node + step[o], 0) for o in step}

    @property
    def arbiters(self) -> tuple[np.ndarray, np.ndarray]:
        """The round-robin pointers of every output and the VC pointers of every input
        (:attr:`~wafertile.model.mesh.MeshResult.arbiters`; set: copies)."""
        return self.ptrs, self.vcp

    @arbiters.setter
    def arbiters(self, value: tuple[np.ndarray, np.ndarray]) -> None:
        self.ptrs, self.vcp = (a.copy() for a in value)

    # -- buffers ---------------------------------------------------------------------------

    def push(self, inp, nodes: np.ndarray, fid: np.ndarray) -> None:
        """Flits ``fid`` enter input(s) ``inp`` of routers ``nodes`` (their VC's FIFO)."""
        f = self.f
        vc = f.vc[fid]
        slot = (self.head[inp, vc, nodes] + self.count[inp, vc, nodes]) % self.B
        self.fifo[inp, vc, nodes, slot] = fid
        self.mask[inp, vc, nodes, slot] = route_bits(
            self.x[nodes], self.y[nodes], inp, f.x0[fid], f.x1[fid], f.y0[fid], f.y1[fid],
            f.exit[fid], self.R, self.C)
        self.count[inp, vc, nodes] += 1

    def full(self) -> np.ndarray:
        """Whether each (input, VC, router) buffer is full."""
        return self.count >= self.depth[:, None, None]

    def local_room(self, vcs: np.ndarray, now: int) -> np.ndarray:
        """Whether each router's local input takes a flit of VC ``vcs`` from its core in
        cycle ``now``."""
        return self.count[_L, vcs, np.arange(self.nodes)] < self.depth[_L]

    def cycle(self, now: int) -> None:
        """What the routers do in cycle ``now`` besides their step, before the cores move
        (here: nothing)."""

    # -- one step --------------------------------------------------------------------------

    def step(self, local_room: np.ndarray) -> Step:
        """One step of every router: offers, grants, and the buffers after them (steps 1 to
        3 of the module's docstring). ``local_room``: whether each router's core (or its
        deserializer) takes a flit."""
        full = self.full()
        has, fid, rem = self._heads()
        send = rem & self._room_bits(local_room, full)[None, :, :]
        offer, chosen = self._offer(send)
        grants = self._grant(offer, chosen, fid)
        popped = self._forward(grants, has, rem)
        return Step(full, offer, chosen, grants, popped)

    def end_slot(self, step: Step) -> None:
        """The VC pointers at the end of a slot (after the host's injection; here: they
        stay)."""

    def _heads(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per (input, VC, router): whether the FIFO holds a head, its flit, and the branches
        it still has to send."""
        has = self.count > 0
        idx = self.head[..., None]
        fid = np.take_along_axis(self.fifo, idx, axis=3)[..., 0]
        rem = np.where(has, np.take_along_axis(self.mask, idx, axis=3)[..., 0] & ~self.sent, 0)
        return has, fid, rem

    def _room_bits(self, local_room: np.ndarray, full: np.ndarray) -> np.ndarray:
        """The outputs (bits) with room per (VC, router): the next buffer, the core
        (``local_room``), the host at the west and south edges (the south edge takes
        training's GRAD results); the north and east edges are never ready (nothing the
        compiler emits leaves there)."""
        room = np.zeros((5, self.V, self.nodes), bool)
        room[_L] = local_room[None, :]
        for o in (_N, _S, _E, _W):
            room[o] = self.inside[o] & ~full[_OPPOSITE[o]][:, self.neighbour[o]]
        room[_W] |= ~self.inside[_W]
        room[_S] |= ~self.inside[_S]
        return (room * (1 << np.arange(5))[:, None, None]).sum(axis=0)

    def _offer(self, send: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """What each (input, VC) head offers of the branches it can ``send``, and the VC each
        input offers (here: one per input, the first from its VC pointer among
        :meth:`_eligible`)."""
        V = self.V
        ok = self._eligible(send)
        prio = (np.arange(V)[None, :, None] - self.vcp[:, None, :]) % V
        key = np.where(ok, prio, V)
        chosen = key.argmin(axis=1)                                             # (5, nodes)
        pick = np.arange(V)[None, :, None] == chosen[:, None, :]
        return np.where(pick & ok, send, 0), chosen

    def _eligible(self, send: np.ndarray) -> np.ndarray:
        """Which (input, VC) heads an input may offer (here: every one with a branch to
        send)."""
        return send != 0

    def _asks(self, offer: np.ndarray) -> np.ndarray:
        """Per (output, input, VC, router): whether the head asks for the output (the local
        output: for a branch of :attr:`dmask`)."""
        asks = np.stack([(offer >> o) & 1 for o in range(5)]) != 0             # (o, i, V, n)
        asks[_L] = (offer & self.dmask) != 0
        return asks

    def _candidates(self, asks: np.ndarray) -> np.ndarray:
        """Per (output, requester, router): whether the requester asks, requesters in the
        arbiter's scan order (here: the inputs of :attr:`orders`, each offering one VC)."""
        return asks[np.arange(5)[:, None], self.order].any(axis=2)

    def _requester(self, out: np.ndarray, node: np.ndarray, best: np.ndarray,
                   chosen: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The input and VC of requester ``best`` of output ``out`` at router ``node`` (here:
        the input of :attr:`orders`, the VC it chose)."""
        inp = self.order[out, best]
        return inp, chosen[inp, node]

    def _grant(self, offer: np.ndarray, chosen: np.ndarray | None,
               fid: np.ndarray) -> Grants:
        """Every output's round-robin arbiter at once (the pointers move past a winner)."""
        cand = self._candidates(self._asks(offer))                              # (o, k, n)
        k = cand.shape[1]
        prio = (np.arange(k)[None, :, None] - self.ptrs[:, None, :]) % k
        key = np.where(cand, prio, k)
        best = key.argmin(axis=1)                                               # (o, n)
        win = key.min(axis=1) < k
        self.ptrs = np.where(win, (best + 1) % k, self.ptrs)
        out, node = np.nonzero(win)
        inp, vc = self._requester(out, node, best[out, node], chosen)
        bits = np.where(out == _L, offer[inp, vc, node] & self.dmask[node], 1 << out)
        return Grants(out, node, inp, vc, bits, fid[inp, vc, node])

    def _forward(self, g: Grants, has: np.ndarray, rem: np.ndarray) -> np.ndarray:
        """Granted branches into the next routers' buffers (visible next step), heads with
        nothing left out of theirs; returns whether each (input, router) let a head go."""
        got = np.zeros((5, self.V, self.nodes), np.int64)
        np.add.at(got, (g.inp, g.vc, g.node), g.bits)
        done = has & (got != 0) & ((rem & ~got) == 0)
        self._hold(done, got)
        self.sent = np.where(done, 0, self.sent | got)
        self.head = np.where(done, (self.head + 1) % self.B, self.head)
        self.count -= done
        self._move(g)
        return done.any(axis=1)

    def _move(self, g: Grants) -> None:
        """The granted branches that lead to another router into its buffers (after this
        router's own buffers changed: visible next step)."""
        moving = (g.out != _L) & self._leads_inside(g.out, g.node)
        if moving.any():
            out, node = g.out[moving], g.node[moving]
            move_in = np.array([_OPPOSITE.get(o, 0) for o in range(5)])[out]
            move_to = np.choose(out, [node, *(self.neighbour[o][node] for o in range(1, 5))])
            self.push(move_in, move_to, g.fid[moving])

    def _round_robin(self, arbiter: int, req: np.ndarray, *, advance: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
        """One round-robin arbiter per router over requests ``req`` (requester, node): the
        winner's index and whether there was one; the pointer (row ``arbiter`` of
        :attr:`ptrs`) moves past the winner when ``advance``."""
        k = req.shape[0]
        prio = (np.arange(k)[:, None] - self.ptrs[arbiter][None, :]) % k
        key = np.where(req, prio, k)
        best = key.argmin(axis=0)
        win = key.min(axis=0) < k
        if advance:
            self.ptrs[arbiter] = np.where(win, (best + 1) % k, self.ptrs[arbiter])
        return best, win

    def _hold(self, done: np.ndarray, got: np.ndarray) -> None:
        """Heads that are ``done`` but keep their buffer past the step (changed in place;
        here: none)."""

    def _leads_inside(self, out: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Whether output ``out`` of router ``nodes`` leads to another router."""
        inside = np.stack([np.zeros(self.nodes, bool), self.inside[_N], self.inside[_E],
                           self.inside[_S], self.inside[_W]])
        return inside[out, nodes]


class CompactRouter(Router):
    """``compact`` (the default): one VC head per input per step, as :class:`Router`; an
    input's VC pointer moves past a VC whose head has left. The switch is
    :mod:`wafertile.hdl.noc.compact`'s (:meth:`_grant`, its ``PATHS``): the turn stage T
    (inputs L, N, E, S, W in port order) feeds N, S and the delivery stage D; D (N, S, T)
    feeds L, E and W; the N, E, S and W outputs arbitrate among their direct inputs and T or
    D. T's and D's pointers move only when a branch of their winner went, each output's
    whenever it grants. The :attr:`orders` are unused but for the base class's
    bookkeeping."""

    arch = "compact"
    orders = {_L: (_N, _S, _L, _E, _W), _N: (_S, _W, _L, _E, _N),
              _E: (_L, _W, _N, _S, _E), _S: (_N, _E, _L, _W, _S),
              _W: (_L, _E, _N, _S, _W)}

    def __init__(self, timing: Timing, flits):
        super().__init__(timing, flits)
        # the round-robin pointers: N, E, S and W at their output's index (row L unused),
        # T's in row 5, D's in row 6
        self.ptrs = np.zeros((7, self.nodes), np.int64)

    def end_slot(self, step: Step) -> None:
        self.vcp = np.where(step.popped, (step.chosen + 1) % self.V, self.vcp)

    def _grant(self, offer: np.ndarray, chosen: np.ndarray | None,
               fid: np.ndarray) -> Grants:
        """The switch of :mod:`wafertile.hdl.noc.compact` (``_switch``), every router at
        once: T grants one of the inputs with a branch through it; D one of N's and S's
        branches through it and T's winner's branches to D; each of N, E, S and W one of its
        direct inputs and T (N, S) or D (E, W); L takes whatever D's winner sends it."""
        req = offer.sum(axis=1)                                 # (input, node): one VC each
        rows = np.arange(self.nodes)
        t_req = (req & _CT_ANY[:, None]) != 0
        tg, t_win = self._round_robin(5, t_req, advance=False)
        t_wants = np.where(t_win, req[tg, rows] & _CT_T[tg], 0)
        t_wants_d = np.where(t_win, req[tg, rows] & _CT_TD[tg], 0)
        d_src = np.stack([req[_N] & _CT_D[_N], req[_S] & _CT_D[_S], t_wants_d])
        dg, d_win = self._round_robin(6, d_src != 0, advance=False)
        d_wants = np.where(d_win, d_src[dg, rows], 0)
        d_inp = np.where(dg < 2, np.where(dg == 0, _N, _S), tg)  # D's winner's input
        parts = []
        t_took = np.zeros(self.nodes, bool)
        d_took = ((d_wants >> _L) & 1) != 0
        if d_took.any():
            at = np.flatnonzero(d_took)
            parts.append((np.full(len(at), _L), at, d_inp[at]))
        for o in (_N, _E, _S, _W):
            direct = _CT_DIRECT[o]
            stage = (t_wants if o in (_N, _S) else d_wants) >> o & 1
            reqs = np.stack([(req[p] >> o) & 1 for p in direct] + [stage]) != 0
            g, win = self._round_robin(o, reqs)
            via = win & (g == len(direct))
            if o in (_N, _S):
                t_took |= via
            else:
                d_took |= via
            at = np.flatnonzero(win)
            if len(at):
                src = np.asarray(direct)[np.minimum(g[at], len(direct) - 1)]
                src = np.where(via[at], tg[at] if o in (_N, _S) else d_inp[at], src)
                parts.append((np.full(len(at), o), at, src))
        # T's pointer moves when a branch of its winner went (to N or S, or through D)
        t_ok = t_win & (t_took | (d_win & (dg == 2) & d_took))
        self.ptrs[5] = np.where(t_ok, (tg + 1) % 5, self.ptrs[5])
        self.ptrs[6] = np.where(d_win & d_took, (dg + 1) % 3, self.ptrs[6])
        if not parts:
            empty = np.zeros(0, np.int64)
            return Grants(empty, empty, empty, empty, empty, empty)
        out, node, inp = (np.concatenate(a).astype(np.int64) for a in zip(*parts, strict=True))
        vc = chosen[inp, node]
        return Grants(out, node, inp, vc, 1 << out, fid[inp, vc, node])


class ParallelRouter(Router):
    """``parallel``: every VC's head of every input offers at once, and each output's
    arbiter grants one of the ``5 * num_vcs`` (input, VC) requesters round-robin, inputs in
    port order (:attr:`orders`), the VCs of each in turn; no VC pointers."""

    arch = "parallel"
    orders = {o: (_L, _N, _E, _S, _W) for o in range(5)}

    def _offer(self, send: np.ndarray) -> tuple[np.ndarray, None]:
        return send, None

    def _candidates(self, asks: np.ndarray) -> np.ndarray:
        return asks.reshape(5, 5 * self.V, self.nodes)

    def _requester(self, out: np.ndarray, node: np.ndarray, best: np.ndarray,
                   chosen: None) -> tuple[np.ndarray, np.ndarray]:
        return best // self.V, best % self.V


class LiteRouter(Router):
    """``lite``, the smallest: each mesh input offers its current VC only (:attr:`vcp`),
    which moves on at the end of a slot in which it sent its head, had nothing to send or
    is empty, to the next VC that holds a flit; the local input (any VC) is a one-flit
    register, which with phits empties in the slot's last phase (a core output every other
    cycle with one phit, full rate with phits). The switch is :mod:`wafertile.hdl.noc.lite`'s
    (:meth:`_grant`): XE (W, L), XW (E, L) and the turn stage T (W, E, L) arbitrate among
    their inputs; N (S, T), S (N, T) and the delivery stage D (N, S, T) between their direct
    inputs and T's winner; on an edge, D serves both the local port and the edge's exit (the
    west exit's replies, the south exit's GRAD results): one flit per slot for both. The
    :attr:`orders` are unused but for the base class's bookkeeping."""

    arch = "lite"
    orders = {_L: (_N, _S, _W, _E, _L), _N: (_S, _W, _E, _L, _N),
              _E: (_W, _L, _N, _S, _E), _S: (_N, _W, _E, _L, _S),
              _W: (_E, _L, _N, _S, _W)}

    def __init__(self, timing: Timing, flits):
        super().__init__(timing, flits)
        self.depth[_L] = 1
        # the edge ports of each router (bits), which its delivery stage D feeds
        self.edge = (((self.y == 0) << _N) | ((self.x == self.C - 1) << _E)
                     | ((self.y == self.R - 1) << _S) | ((self.x == 0) << _W))
        self.dmask = self.edge | (1 << _L)
        # per output, whether it leads to another router (the edges' exits go through D)
        self.inner = ((~self.edge[None, :] >> np.arange(5)[:, None]) & 1) != 0
        # the round-robin pointers: XE, XW, N, S and D at their output's index (D at the
        # local output's), T's in row 5
        self.ptrs = np.zeros((6, self.nodes), np.int64)
        # the local register's head left in this step, empties in the slot's last phase
        self.leaving_l = np.zeros(self.nodes, bool)

    def local_room(self, vcs: np.ndarray, now: int) -> np.ndarray:
        room = super().local_room(vcs, now)
        if self.slot > 1:
            # the register takes the next flit in the last phase of the slot where the one
            # before leaves (full rate with phits)
            room |= self.leaving_l & ((now + 1) % self.slot == 0)
        return room

    def cycle(self, now: int) -> None:
        if self.leaving_l.any() and (now + 1) % self.slot == 0:
            w = np.flatnonzero(self.leaving_l)
            vc = np.argmax(self.count[_L][:, w] > 0, axis=0)  # the register's one flit
            self.head[_L, vc, w] = (self.head[_L, vc, w] + 1) % self.B
            self.count[_L, vc, w] -= 1
            self.sent[_L, vc, w] = 0
            self.leaving_l[:] = False

    def _eligible(self, send: np.ndarray) -> np.ndarray:
        ok = (send != 0) & (np.arange(self.V)[None, :, None] == self.vcp[:, None, :])
        ok[_L] = send[_L] != 0
        return ok

    def _grant(self, offer: np.ndarray, chosen: np.ndarray | None,
               fid: np.ndarray) -> Grants:
        """The switch of :mod:`wafertile.hdl.noc.lite`: XE (W, L), XW (E, L) and the turn
        stage T (W, E, L) grant among their inputs; N (S, T), S (N, T) and the delivery stage
        D (N, S, T) grant between their direct inputs and T's winner, whose branches (a turn
        north or south, or what D delivers: the local port and the exits at the array's edge)
        go where granted. T's pointer moves only when one of its winner's branches went."""
        req = offer.sum(axis=1)                                 # (input, node): one VC each
        # asks[p, o]: input p asks for output o, which leads to another router
        asks = (((req[:, None, :] >> np.arange(5)[None, :, None]) & 1) != 0) & self.inner
        d_bits = req & self.dmask[None, :]
        t_in = _T_IN
        t_n, t_s, t_d = asks[t_in, _N], asks[t_in, _S], d_bits[t_in] != 0
        xe = self._round_robin(_E, asks[_XE_IN, _E])
        xw = self._round_robin(_W, asks[_XW_IN, _W])
        tg, t_win = self._round_robin(5, t_n | t_s | t_d, advance=False)
        rows = np.arange(self.nodes)
        wants_n, wants_s, wants_d = (t_win & a[tg, rows] for a in (t_n, t_s, t_d))
        n_g = self._round_robin(_N, np.stack([asks[_S, _N], wants_n]))
        s_g = self._round_robin(_S, np.stack([asks[_N, _S], wants_s]))
        d_g = self._round_robin(_L, np.stack([d_bits[_N] != 0, d_bits[_S] != 0, wants_d]))
        t_ok = t_win & ((n_g[1] & (n_g[0] == 1)) | (s_g[1] & (s_g[0] == 1))
                        | (d_g[1] & (d_g[0] == 2)))
        self.ptrs[5] = np.where(t_ok, (tg + 1) % 3, self.ptrs[5])
        t_inp = np.asarray(t_in)[tg]
        parts = []
        # XE, XW: their inputs; N, S and D: their direct inputs or T's winner (the last index)
        for o, (g, win), sources in ((_E, xe, _XE_IN), (_W, xw, _XW_IN),
                                     (_N, n_g, (_S, -1)), (_S, s_g, (_N, -1)),
                                     (_L, d_g, (_N, _S, -1))):
            at = np.flatnonzero(win)
            if not len(at):
                continue
            src = np.asarray(sources)[g[at]]
            src = np.where(src < 0, t_inp[at], src)
            bits = d_bits[src, at] if o == _L else np.full(len(at), 1 << o)
            parts.append((np.full(len(at), o), at, src, bits))
        if not parts:
            empty = np.zeros(0, np.int64)
            return Grants(empty, empty, empty, empty, empty, empty)
        out, node, inp, bits = (np.concatenate(a).astype(np.int64)
                                for a in zip(*parts, strict=True))
        vc = chosen[inp, node]
        return Grants(out, node, inp, vc, bits, fid[inp, vc, node])

    def _hold(self, done: np.ndarray, got: np.ndarray) -> None:
        if self.slot > 1:
            # the local register empties in the slot's last phase (:meth:`cycle`)
            self.leaving_l = done[_L].any(axis=0)
            self.sent[_L] |= got[_L]
            got[_L] = 0
            done[_L] = False

    def end_slot(self, step: Step) -> None:
        # this slot's arrivals count as flits the next VC holds
        V = self.V
        idle = step.offer.sum(axis=1) == 0
        nonempty = self.count > 0
        current = np.take_along_axis(nonempty, self.vcp[:, None, :], axis=1)[:, 0]
        move = step.popped | idle | ~current
        prio = (np.arange(V)[None, :, None] - self.vcp[:, None, :] - 1) % V
        key = np.where(nonempty, prio, V)
        self.vcp = np.where(move & (key.min(axis=1) < V), key.argmin(axis=1), self.vcp)


class VoqRouter(Router):
    """``voq``: virtual output queues (:mod:`wafertile.hdl.noc.voq`). Each (input, VC)
    keeps its flits in arrival order (:attr:`fifo`, positions ``0 .. count - 1``) with the
    branches each still has to send (:attr:`mask`); a flit leaves its buffer when its last
    branch has gone, wherever it stands. For each (input, VC, output) the head is the oldest
    flit with a branch for the output. Allocation is two rounds of iSLIP with two reads per
    input (:meth:`step`): in round ``r`` each output still free grants round-robin one of the
    ``5 * num_vcs`` (input, VC) pairs with a head for it and room downstream (inputs in port
    order, the VCs of each in turn); each input takes every grant of a flit it already reads
    this step and, if its read ``r`` is unused, accepts one grant of another flit
    (round-robin over the outputs) with every other grant of that flit. An output's pointer
    moves past its winner only when the winner took it; an input's accept pointer moves past
    every output it accepts. The pointers (:attr:`ptrs`) are ``2 x 5`` grant arbiters (row
    ``5 r + output``) and ``2 x 5`` accept arbiters (row ``10 + 5 r + input``)."""

    arch = "voq"
    orders = {o: (_L, _N, _E, _S, _W) for o in range(5)}
    #: Rounds of allocation per step and reads per input (``VoqRouter`` of the RTL).
    ROUNDS = READS = 2

    def __init__(self, timing: Timing, flits):
        super().__init__(timing, flits)
        self.ptrs = np.zeros((4 * 5, self.nodes), np.int64)

    def step(self, local_room: np.ndarray) -> Step:
        V, B, nodes = self.V, self.B, self.nodes
        full = self.full()
        room = self._room_bits(local_room, full)                                # (V, n)
        live = np.arange(B)[None, None, None, :] < self.count[..., None]
        outs = np.arange(5)[:, None, None, None, None]
        # has[o, p, v, n, j]: flit j of (p, v) still has a branch for output o
        has = (((self.mask[None] >> outs) & 1) != 0) & live[None]
        wants = has.any(axis=4)                                                 # (o, p, v, n)
        head = has.argmax(axis=4)                                               # the oldest
        ready = ((room[None, :, :] >> np.arange(5)[:, None, None]) & 1) != 0    # (o, v, n)
        asks = wants & ready[:, None, :, :]
        free = np.ones((5, nodes), bool)
        reads = np.full((self.READS, 5, nodes), -1, np.int64)   # slot v * B + j read, per port
        taken = np.zeros((self.READS, 5, 5, nodes), bool)       # (port, input, output, node)
        K = 5 * V
        for r in range(self.ROUNDS):
            req = (asks & free[:, None, None, :]).reshape(5, K, nodes)
            ptr = self.ptrs[5 * r:5 * r + 5]
            key = np.where(req, (np.arange(K)[None, :, None] - ptr[:, None, :]) % K, K)
            best = key.argmin(axis=1)                                           # (o, n)
            win = key.min(axis=1) < K
            o_w, n_w = np.nonzero(win)
            p_w, v_w = best[o_w, n_w] // V, best[o_w, n_w] % V
            sels = np.full((5, 5, nodes), -1, np.int64)                          # (p, o, n)
            sels[p_w, o_w, n_w] = v_w * B + head[o_w, p_w, v_w, n_w]
            port = min(r, self.READS - 1)
            merged = [(sels == reads[k][:, None, :]) & (reads[k] >= 0)[:, None, :]
                      for k in range(self.READS)]
            fresh = (sels >= 0) & ~np.any(merged, axis=0) & (reads[port] < 0)[:, None, :]
            acc = self.ptrs[10 + 5 * r:15 + 5 * r]                               # (p, n)
            akey = np.where(fresh, (np.arange(5)[None, :, None] - acc[:, None, :]) % 5, 5)
            abest = akey.argmin(axis=1)                                          # (p, n)
            awin = akey.min(axis=1) < 5
            self.ptrs[10 + 5 * r:15 + 5 * r] = np.where(awin, (abest + 1) % 5, acc)
            new = np.where(awin, np.take_along_axis(sels, abest[:, None, :], axis=1)[:, 0], -1)
            new_taken = fresh & (sels == new[:, None, :]) & (new >= 0)[:, None, :]
            reads[port] = np.where(new >= 0, new, reads[port])
            for k in range(self.READS):
                taken[k] |= merged[k]
            taken[port] |= new_taken
            took = (new_taken | np.any(merged, axis=0)).any(axis=0)              # (o, n)
            self.ptrs[5 * r:5 * r + 5] = np.where(win & took, (best + 1) % K, ptr)
            free &= ~took
        # the grants: per (read port, input, output, node) taken, its slot's flit
        k_g, p_g, o_g, n_g = np.nonzero(taken)
        sid = reads[k_g, p_g, n_g]
        v_g, j_g = sid // B, sid % B
        fid = self.fifo[p_g, v_g, n_g, j_g]
        grants = Grants(o_g, n_g, p_g, v_g, np.left_shift(1, o_g), fid)
        popped = self._leave(grants, j_g)
        offer = (asks * (1 << np.arange(5))[:, None, None, None]).sum(axis=0)
        return Step(full, offer, None, grants, popped)

    def _leave(self, g: Grants, j: np.ndarray) -> np.ndarray:
        """Granted branches into the next routers' buffers (visible next step), flits with
        nothing left out of theirs (the others keep their order); returns whether each
        (input, router) let a flit go."""
        np.bitwise_and.at(self.mask, (g.inp, g.vc, g.node, j), ~g.bits)
        live = np.arange(self.B)[None, None, None, :] < self.count[..., None]
        keep = live & (self.mask != 0)
        gone = live & ~keep
        popped = gone.any(axis=(1, 3))
        if gone.any():
            order = np.argsort(~keep, axis=3, kind="stable")   # kept flits first, in order
            self.fifo = np.take_along_axis(self.fifo, order, axis=3)
            self.mask = np.take_along_axis(self.mask, order, axis=3)
            self.count = keep.sum(axis=3)
        self._move(g)
        return popped


#: Router classes by ``Config.router_arch``.
ROUTERS: dict[str, type[Router]] = {cls.arch: cls for cls in
                                    (CompactRouter, ParallelRouter, LiteRouter,
                                     VoqRouter)}
