"""The event-level model: one phase played through every router's buffers and arbiters and
every tile's core, one cycle per step, vectorized over the tiles.

What it keeps, per router: a FIFO of ``buffer_depth`` flits per (input, VC) with each
buffered flit's route mask (:func:`route_bits`, the routing rule of
:func:`wafertile.hdl.noc.route.route_mask`) and the branches its head has already sent; a
round-robin pointer per output; per tile core: the three pipeline stages. Each step (a
router moves once per slot, a core once per cycle):

1. every input offers the branches of a head that still have to go and whose next buffer
   had room at the start of the step (``compact`` and ``lite``: the head of one VC per
   input, chosen round-robin; ``parallel``: every VC's head);
2. every output grants one offer round-robin, its candidates in the order of the
   micro-architecture's switch (:data:`_ORDERS`); the pointers carry over from one phase to
   the next, as in the RTL; a multicast head keeps its buffer until every branch has gone,
   one or several per step;
3. granted branches enter the next router's buffer (visible next step), the core, or
   leave by the west edge to the host; heads with nothing left leave their buffers;
4. each west port injects its next flit if the first router's buffer for its VC had room;
5. each core advances unless its third stage holds an output (a reply, ADD or hand-off
   activation) that its router's local input cannot take; a MAC is counted in stage 3, an
   activation write in stage 2.

This is what the three micro-architectures share; where they differ in a way the programs
see, the model follows them: the VC choice per input above (``lite``: the input's current
VC, which moves on at the end of a slot in which it sent its head, had nothing to send or is
empty); the ``lite`` router's one-flit local input (a core output every other cycle with
one phit); its delivery stage ``D``, which on the west edge serves both the local port and
the west exit (one flit per slot for both); phits (a router step every ``phits`` cycles, a
slot more for the serializer at the edge and the deserializer in front of each core, whose
register frees in the cycle the core takes the flit). ``benchmarks/model.py`` compares it
with the RTL: it gives the RTL's cycle count for every phase of the validation set (193
pairs, 2 853 phases; ``docs/performance.md``). Not modelled: the turn stages of ``compact`` and
``lite`` as stages of their own (the compiler's phases never make two inputs compete for
a turn), and edges other than the west one (nothing the compiler emits leaves there).

Cost: a few dozen numpy operations on arrays of ``5 * num_vcs * rows * cols`` elements per
step; :mod:`.predict` uses it only for phases where the analytic bounds are not enough and
the array is small enough (:data:`MESH_BUDGET`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hdl.core.ops import OPS, codes
from ..hdl.flit import Port
from .timing import Timing

__all__ = ["MESH_BUDGET", "MeshResult", "PhaseFlits", "mesh_seconds", "route_bits", "simulate"]

#: Seconds of mesh model that :mod:`.predict` spends on one program at most (``detail =
#: "auto"``); phases beyond it are predicted analytically.
MESH_BUDGET = 60.0


def mesh_seconds(cycles: float, tiles: int) -> float:
    """About how long :func:`simulate` takes for a phase of ``cycles`` on ``tiles`` tiles (2
    shared cores: 0.3 ms per cycle on 4 x 4, 1.8 ms on 32 x 32)."""
    return cycles * (2.8e-4 + 1.5e-6 * tiles)


_L, _N, _E, _S, _W = (p.value for p in Port)
#: Each output's candidate inputs, in the order its round-robin arbiter scans them, per
#: micro-architecture (padded with the output's own direction, which never asks for it: no
#: U-turns). ``compact``: the output's direct inputs in port order, then the turn stage T
#: (L, E, W) or the delivery stage D (N, S, T); ``lite``: XE (W, L), XW (E, L), N (S, T),
#: S (N, T), D (N, S, T) with T (W, E, L); ``parallel``: every input in port order.
_ORDERS = {
    "compact": {_L: (_N, _S, _L, _E, _W), _N: (_S, _W, _L, _E, _N),
                _E: (_L, _W, _N, _S, _E), _S: (_N, _E, _L, _W, _S),
                _W: (_L, _E, _N, _S, _W)},
    "lite": {_L: (_N, _S, _W, _E, _L), _N: (_S, _W, _E, _L, _N),
             _E: (_W, _L, _N, _S, _E), _S: (_N, _W, _E, _L, _S),
             _W: (_E, _L, _N, _S, _W)},
    "parallel": {o: (_L, _N, _E, _S, _W) for o in range(5)},
}
_ORDER_INDEX = {arch: np.array([order[o] for o in range(5)]) for arch, order in _ORDERS.items()}
_OPPOSITE = {_N: _S, _S: _N, _E: _W, _W: _E}

# what a core does with a flit (the kinds of :class:`PhaseFlits`)
_OTHER, _MAC, _WRITE, _ANSWER = 0, 1, 2, 3


def _kinds(config, op: np.ndarray, answers: bool = True) -> np.ndarray:
    """What the cores of ``config`` do with flits of opcodes ``op`` (of the operation table,
    :mod:`wafertile.hdl.core.ops`): a MAC (counted), an activation write (counted), an
    operation that answers (with ``answers``), or nothing counted."""
    kind = np.full(len(op), _OTHER, np.int64)
    kind[np.isin(op, codes(OPS.where(lambda r: r.counts_mac, config)))] = _MAC
    kind[np.isin(op, codes(OPS.where(lambda r: r.act_write is not None, config)))] = _WRITE
    if answers:
        kind[np.isin(op, codes(OPS.emitting(config)))] = _ANSWER
    return kind


def _output_ops(config) -> np.ndarray:
    """The opcode of the flit each opcode's operation emits (indexed by opcode; -1: none)."""
    out = np.full(max(row.code for row in OPS) + 1, -1, np.int64)
    for row in OPS.emitting(config):
        out[row.code] = row.emit.op.value
    return out


@dataclass
class PhaseFlits:
    """The flits of one phase as the mesh model plays them: the host's, then the outputs
    their tiles make (a READ's reply, a SEND's ADD, a FINISH's activation), one table.

    Attributes
    ----------
    port : numpy.ndarray
        West port of each host flit (outputs: -1), in injection order per port.
    x0, x1, y0, y1, vc, exit : numpy.ndarray
        Every flit's rectangle, virtual channel and exit port.
    kind : numpy.ndarray
        What the core does with it: 0 nothing counted, 1 a MAC, 2 an activation write,
        3 it answers with flit ``out``.
    out : numpy.ndarray
        The output flit of an answering flit (-1 for the others).
    hosts : int
        The number of host flits (the first ``hosts`` rows of the table).
    """

    port: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    vc: np.ndarray
    exit: np.ndarray
    kind: np.ndarray
    out: np.ndarray
    hosts: int

    @classmethod
    def from_phase(cls, config, phase) -> PhaseFlits:
        """The table of a :class:`~wafertile.stream.Phase` for ``config``."""
        f = phase.flits
        n = len(phase)
        op = np.asarray(f["payload.op"], np.int64)
        data = np.asarray(f["payload.data"], np.int64)
        kind = _kinds(config, op)
        answers = np.flatnonzero(kind == _ANSWER)
        # an answer's data field carries its output's route, or a FINISH's hand-off
        finish = np.isin(op, codes(row for row in OPS.emitting(config)
                                   if row.data == "handoff"))
        out = np.full(n, -1, np.int64)
        out[answers] = n + np.arange(len(answers))
        # the outputs: a READ's / SEND's route, a FINISH's hand-off rectangle
        route = _unpack(config.route_fields, data[answers])
        hand = _unpack(config.handoff_fields, data[answers])
        fin = finish[answers]
        ox0 = np.where(fin, hand["x0"], route["x"])
        ox1 = np.where(fin, hand["x1"], route["x"])
        oy = np.where(fin, hand["y"], route["y"])
        ovc = np.where(fin, hand["vc"], route["vc"])
        oexit = np.where(fin, _L, route["exit"])
        okind = _kinds(config, _output_ops(config)[op[answers]], answers=False)
        cat = np.concatenate
        return cls(
            port=cat([np.asarray(phase.port, np.int64), np.full(len(answers), -1)]),
            x0=cat([f["header.x0"], ox0]).astype(np.int64),
            x1=cat([f["header.x1"], ox1]).astype(np.int64),
            y0=cat([f["header.y0"], oy]).astype(np.int64),
            y1=cat([f["header.y1"], oy]).astype(np.int64),
            vc=cat([f["header.vc"], ovc]).astype(np.int64),
            exit=cat([f["header.exit"], oexit]).astype(np.int64),
            kind=cat([kind, okind]), out=cat([out, np.full(len(answers), -1)]), hosts=n)


def _unpack(fields: dict[str, int], data: np.ndarray) -> dict[str, np.ndarray]:
    out, shift = {}, 0
    for name, width in fields.items():
        out[name] = (data >> shift) & ((1 << width) - 1)
        shift += width
    return out


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
class MeshResult:
    """When the counted events of a phase happened.

    Attributes
    ----------
    last_mac, last_write, last_reply : int
        Cycle of the last MAC (stage 3), activation write (stage 2) and reply at the host
        (-1: none).
    cycles : int
        Cycles from the first injection to the last step.
    arbiters : tuple
        The round-robin pointers of every output and input at the end (what a next phase
        starts from: the RTL keeps them from phase to phase).
    """

    last_mac: int
    last_write: int
    last_reply: int
    cycles: int
    arbiters: tuple = ()


class _Mesh:
    """The state of a phase being played (see the module's docstring)."""

    def __init__(self, timing: Timing, flits: PhaseFlits):
        cfg = timing.config
        self.t = timing
        self.R, self.C, self.V = cfg.rows, cfg.cols, cfg.num_vcs
        self.B = cfg.buffer_depth
        self.arch = cfg.router_arch
        self.h = timing.slot
        self.f = flits
        nodes = self.R * self.C
        self.nodes = nodes
        node = np.arange(nodes)
        self.x = node % self.C
        self.y = node // self.C
        # FIFOs per (input, vc, node): flit ids and route masks
        shape = (5, self.V, nodes)
        self.fifo = np.zeros((*shape, self.B), np.int64)
        self.mask = np.zeros((*shape, self.B), np.int64)
        self.head = np.zeros(shape, np.int64)
        self.count = np.zeros(shape, np.int64)
        self.sent = np.zeros(shape, np.int64)
        # the lite router's local input is a one-flit register
        self.depth = np.full(5, self.B)
        if self.arch == "lite":
            self.depth[_L] = 1
        self.vcp = np.zeros((5, nodes), np.int64)  # VC pointer (compact) / current VC (lite)
        # cores: stage 2, stage 3 (flit ids, -1 empty); with phits, the deserializer in
        # front of the core holds a delivered flit until the cycle it may be taken
        self.s2 = np.full(nodes, -1, np.int64)
        self.s3 = np.full(nodes, -1, np.int64)
        self.rx = np.full(nodes, -1, np.int64)
        self.rx_at = np.zeros(nodes, np.int64)
        # host injection per west port
        host = np.flatnonzero(flits.port[:flits.hosts] >= 0)
        order = host[np.argsort(flits.port[host], kind="stable")]
        counts = np.bincount(flits.port[host], minlength=self.R)
        self.queue = order
        self.next = np.r_[0, np.cumsum(counts)[:-1]]
        self.end = self.next + counts
        # what is left to count
        self.macs = int(np.sum((flits.kind == _MAC) * (flits.y1 - flits.y0 + 1)
                               * (flits.x1 - flits.x0 + 1)))
        self.writes = int(np.sum((flits.kind == _WRITE) * (flits.y1 - flits.y0 + 1)
                                 * (flits.x1 - flits.x0 + 1)))
        self.replies = int(np.sum(flits.exit == _W))
        self.last = {"mac": -1, "write": -1, "reply": -1}
        self.leaving_l = np.zeros(nodes, bool)
        # neighbours and edges, per output direction
        C = self.C
        self.inside = {_N: self.y > 0, _S: self.y < self.R - 1, _E: self.x < C - 1,
                       _W: self.x > 0}
        step = {_N: -C, _S: C, _E: 1, _W: -1}
        self.neighbour = {o: np.where(self.inside[o], node + step[o], 0) for o in step}
        # lite: the local port and, on the west edge, the west exit are one stage (D): one
        # flit per slot for both
        self.dmask = np.where(self.x == 0, (1 << _L) | (1 << _W), 1 << _L) \
            if self.arch == "lite" else np.full(nodes, 1 << _L)
        self.ptrs = np.zeros((5, nodes), np.int64)  # round-robin pointers per output
        self.order = _ORDER_INDEX[self.arch]

    # -- buffers ---------------------------------------------------------------------------

    def _push(self, inp, nodes: np.ndarray, fid: np.ndarray) -> None:
        f = self.f
        vc = f.vc[fid]
        slot = (self.head[inp, vc, nodes] + self.count[inp, vc, nodes]) % self.B
        self.fifo[inp, vc, nodes, slot] = fid
        self.mask[inp, vc, nodes, slot] = route_bits(
            self.x[nodes], self.y[nodes], inp, f.x0[fid], f.x1[fid], f.y0[fid], f.y1[fid],
            f.exit[fid], self.R, self.C)
        self.count[inp, vc, nodes] += 1

    # -- one step --------------------------------------------------------------------------

    def core_ready(self, now: int) -> np.ndarray:
        """Whether each core advances in cycle ``now`` (its stage 3 output can go)."""
        f = self.f
        s3 = self.s3
        emits = (s3 >= 0) & (f.out[np.maximum(s3, 0)] >= 0)
        vcs = f.vc[f.out[np.maximum(s3, 0)]]
        room = self.count[_L, vcs, np.arange(self.nodes)] < self.depth[_L]
        if self.arch == "lite" and self.h > 1:
            # the register takes the next flit in the last phase of the slot where the one
            # before leaves (full rate with phits)
            room |= self.leaving_l & ((now + 1) % self.h == 0)
        return ~emits | room

    def route(self, now: int, advance: np.ndarray) -> np.ndarray:
        """One router step; returns the flit each core is given this cycle (-1: none)."""
        f, B, V = self.f, self.B, self.V
        nodes = self.nodes
        has = self.count > 0
        idx = self.head[..., None]
        hfid = np.take_along_axis(self.fifo, idx, axis=3)[..., 0]
        rem = np.where(has, np.take_along_axis(self.mask, idx, axis=3)[..., 0] & ~self.sent, 0)
        full = self.count >= self.depth[:, None, None]
        # room per (output, vc, node): the next buffer, the core (with phits: the
        # deserializer in front of it, free again in the cycle the core takes its flit), the
        # host at the west edge; the other edges are never ready (nothing the compiler emits
        # leaves there)
        room = np.zeros((5, V, nodes), bool)
        room[_L] = ((self.rx < 0) if self.h > 1 else advance)[None, :]
        for o in (_N, _S, _E, _W):
            room[o] = self.inside[o] & ~full[_OPPOSITE[o]][:, self.neighbour[o]]
        room[_W] |= ~self.inside[_W]
        roombits = (room * (1 << np.arange(5))[:, None, None]).sum(axis=0)  # (V, nodes)
        send = rem & roombits[None, :, :]                                     # (5, V, nodes)
        # which VC heads each input offers
        chosen = None
        if self.arch == "parallel":
            offer = send
        else:
            ok = send != 0
            if self.arch == "lite":  # the current VC only (the local input: any VC)
                ok &= np.arange(V)[None, :, None] == self.vcp[:, None, :]
                ok[_L] = send[_L] != 0
            prio = (np.arange(V)[None, :, None] - self.vcp[:, None, :]) % V
            key = np.where(ok, prio, V)
            chosen = key.argmin(axis=1)                                        # (5, nodes)
            pick = np.arange(V)[None, :, None] == chosen[:, None, :]
            offer = np.where(pick & ok, send, 0)
        # every output's round-robin arbiter at once: candidates (output, input-order x VC)
        asks = np.stack([(offer >> o) & 1 for o in range(5)]) != 0             # (o, i, V, n)
        asks[_L] = (offer & self.dmask) != 0
        asks[_W] &= self.inside[_W] | (self.arch != "lite")
        if chosen is None:
            # parallel: every (input, VC) head is a requester, inputs in port order
            cand = asks.reshape(5, 5 * V, nodes)
            k = 5 * V
        else:
            # compact, lite: the arbiters see inputs (each offers one VC's head)
            cand = asks[np.arange(5)[:, None], self.order].any(axis=2)
            k = 5
        prio = (np.arange(k)[None, :, None] - self.ptrs[:, None, :]) % k
        key = np.where(cand, prio, k)
        best = key.argmin(axis=1)                                               # (o, n)
        win = key.min(axis=1) < k
        self.ptrs = np.where(win, (best + 1) % k, self.ptrs)
        o_w, n_w = np.nonzero(win)
        if chosen is None:
            inp = best[o_w, n_w] // V
            vc = best[o_w, n_w] % V
        else:
            inp = self.order[o_w, best[o_w, n_w]]
            vc = chosen[inp, n_w]
        bits = np.where(o_w == _L, offer[inp, vc, n_w] & self.dmask[n_w], 1 << o_w)
        got = np.zeros((5, V, nodes), np.int64)
        np.add.at(got, (inp, vc, n_w), bits)
        fid = hfid[inp, vc, n_w]
        # deliveries to cores
        given = np.full(nodes, -1, np.int64)
        local = (bits & (1 << _L)) != 0
        if local.any():
            if self.h > 1:
                self.rx[n_w[local]] = fid[local]
                self.rx_at[n_w[local]] = now + self.h
            else:
                given[n_w[local]] = fid[local]
        # exits to the host at the west edge
        exits = ((bits & (1 << _W)) != 0) & (self.x[n_w] == 0)
        if exits.any():
            self.replies -= int(exits.sum())
            self.last["reply"] = now + self.t.adapter
        # moves into the neighbours' buffers (visible next step)
        moving = (o_w != _L) & self.inside_any(o_w, n_w)
        move_in = np.array([_OPPOSITE.get(o, 0) for o in range(5)])[o_w[moving]]
        move_to = np.choose(o_w[moving], [n_w[moving], *(self.neighbour[o][n_w[moving]]
                                                        for o in range(1, 5))])
        move_fid = fid[moving]
        done = has & (got != 0) & ((rem & ~got) == 0)
        if self.arch == "lite" and self.h > 1:
            # the local register empties in the slot's last phase (self.core)
            self.leaving_l = done[_L].any(axis=0)
            self.sent[_L] |= got[_L]
            got[_L] = 0
            done[_L] = False
        self.sent = np.where(done, 0, self.sent | got)
        self.head = np.where(done, (self.head + 1) % B, self.head)
        self.count -= done
        popped = done.any(axis=1)                                               # (5, n)
        if self.arch == "compact":
            self.vcp = np.where(popped, (chosen + 1) % V, self.vcp)
        if len(move_fid):
            self._push(move_in, move_to, move_fid)
        # the host injects at the west ports
        pending = self.next < self.end
        if pending.any():
            ports = np.flatnonzero(pending)
            fid = self.queue[self.next[ports]]
            west = ports * self.C
            ok = ~full[_W, f.vc[fid], west]
            self.next[ports[ok]] += 1
            self._push(np.full(int(ok.sum()), _W), west[ok], fid[ok])
        if self.arch == "lite":
            # the current VC moves on at the end of a slot in which its head left, it had
            # nothing to send, or it is empty, to the next VC that holds a flit (this
            # slot's arrivals included)
            idle = offer.sum(axis=1) == 0
            nonempty = self.count > 0
            current = np.take_along_axis(nonempty, self.vcp[:, None, :], axis=1)[:, 0]
            move = popped | idle | ~current
            prio = (np.arange(V)[None, :, None] - self.vcp[:, None, :] - 1) % V
            key = np.where(nonempty, prio, V)
            self.vcp = np.where(move & (key.min(axis=1) < V), key.argmin(axis=1), self.vcp)
        return given

    def inside_any(self, out: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Whether output ``out`` of router ``nodes`` leads to another router."""
        inside = np.stack([np.zeros(self.nodes, bool), self.inside[_N], self.inside[_E],
                           self.inside[_S], self.inside[_W]])
        return inside[out, nodes]

    def core(self, now: int, advance: np.ndarray, given: np.ndarray) -> None:
        """One cycle of every core (after the routers decided what they deliver)."""
        f = self.f
        if self.leaving_l.any() and (now + 1) % self.h == 0:
            w = np.flatnonzero(self.leaving_l)
            vc = self._l_vc(w)
            self.head[_L, vc, w] = (self.head[_L, vc, w] + 1) % self.B
            self.count[_L, vc, w] -= 1
            self.sent[_L, vc, w] = 0
            self.leaving_l[:] = False
        adv = np.flatnonzero(advance)
        s3 = self.s3[adv]
        s2 = self.s2[adv]
        mac = (s3 >= 0) & (f.kind[np.maximum(s3, 0)] == _MAC)
        if mac.any():
            self.macs -= int(mac.sum())
            self.last["mac"] = now
        write = (s2 >= 0) & (f.kind[np.maximum(s2, 0)] == _WRITE)
        if write.any():
            self.writes -= int(write.sum())
            self.last["write"] = now
        emits = (s3 >= 0) & (f.out[np.maximum(s3, 0)] >= 0)
        if emits.any():
            self._push(_L, adv[emits], f.out[s3[emits]])
        self.s3[adv] = s2
        self.s2[adv] = given[adv]

    def take(self, now: int, advance: np.ndarray) -> np.ndarray:
        """With phits: the flit each core takes from its deserializer this cycle."""
        ready = (self.rx >= 0) & (self.rx_at <= now) & advance
        given = np.where(ready, self.rx, -1)
        self.rx = np.where(ready, -1, self.rx)
        return given

    def _l_vc(self, nodes: np.ndarray) -> np.ndarray:
        """The VC of the flit in the (one-flit) local input of each of ``nodes``."""
        return np.argmax(self.count[_L][:, nodes] > 0, axis=0)

    def busy(self) -> bool:
        return self.macs > 0 or self.writes > 0 or self.replies > 0


def simulate(timing: Timing, flits: PhaseFlits, *, limit: int | None = None,
             arbiters: tuple = ()) -> MeshResult:
    """Play one phase from an empty fabric, its first injection at cycle 0 (a slot
    boundary), until every MAC, activation write and reply it causes is counted.
    ``arbiters``: the round-robin pointers the previous phase left
    (:attr:`MeshResult.arbiters`; default: reset).

    Raises
    ------
    RuntimeError
        If the phase does not finish within ``limit`` cycles (default: generous for the
        phase's size; only a bug in the model can reach it).
    """
    mesh = _Mesh(timing, flits)
    if arbiters:
        mesh.ptrs, mesh.vcp = (a.copy() for a in arbiters)
    h = timing.slot
    if limit is None:
        limit = 8 * h * (flits.hosts + len(flits.port) + 1) * (mesh.R + mesh.C + mesh.B) + 1000
    now = 0
    while mesh.busy():
        if now > limit:
            raise RuntimeError(f"the mesh model of a phase of {flits.hosts} flits did not "
                               f"finish in {limit} cycles")
        advance = mesh.core_ready(now)
        if h > 1:
            given = mesh.take(now, advance)
            if now % h == 0:
                mesh.route(now, advance)
        else:
            given = mesh.route(now, advance)
        mesh.core(now, advance, given)
        now += 1
    return MeshResult(mesh.last["mac"], mesh.last["write"], mesh.last["reply"], now,
                      (mesh.ptrs, mesh.vcp))
