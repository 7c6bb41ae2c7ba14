"""The ``compact`` router micro-architecture (the default): one VC head per input per cycle.

Each input port has a :class:`~.buffer.VcBuffer` (one LUT RAM holding a FIFO of
``buffer_depth`` flits per VC, address ``{vc, pointer}``, asynchronous read) and, beside it,
the route mask of every buffered flit (computed when the flit arrives), so the allocator
sees every VC's head mask. Each cycle an input sends the head of at most one VC (round-robin
among the VCs whose head has an unsent branch with room downstream); a turn stage ``T``, a
delivery stage ``D`` and the five outputs then arbitrate round-robin among the inputs.

Switch (``PATHS``): each output has a multiplexer over the inputs that reach it straight
(W and L to E, E and L to W, S and W to N, N and E to S); ``T`` (inputs L, E, W) feeds N and
S with the other turns, and feeds ``D``; ``D`` (inputs N, S, T) feeds L, E and W with
deliveries and U-turns at the array's edge. About half the area of ``parallel``
(``docs/router.md``).

Pipeline: a flit is written into its input buffer at a clock edge; in the next cycle it is
allocated and crosses the switch straight into the next router's buffer (or out of the
fabric): one cycle per router at zero load.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal

from .._util import any_of
from ..flit import Port
from .arbiter import arbitrate
from .base import Router
from .buffer import VcBuffer
from .route import route_mask

__all__ = ["PATHS", "CompactRouter"]

_L, _N, _E, _S, _W = (p.value for p in Port)


def _path(p: int, o: int) -> str:
    """How a branch from input ``p`` reaches output ``o`` in the switch (see PATHS)."""
    if o == _L:
        return "D" if p in (_N, _S) else "TD"
    if o == _N:
        return "direct" if p in (_S, _W) else "T"
    if o == _S:
        return "direct" if p in (_N, _E) else "T"
    opposite = {_E: _W, _W: _E}[o]
    if p in (_L, opposite):
        return "direct"
    return "TD" if p == o else "D"


#: ``PATHS[p][o]``: how a branch from input ``p`` reaches output ``o``:
#: ``"direct"`` (the output's own multiplexer has input ``p``), ``"T"`` (through the turn
#: stage, which feeds N and S), ``"D"`` (through the delivery stage, which has inputs N, S
#: and T and feeds L, E and W) or ``"TD"`` (T, then D). See ``docs/router.md``.
PATHS = tuple(tuple(_path(p, o) for o in range(5)) for p in range(5))
_T_INPUTS = tuple(p for p in range(5) if {"T", "TD"} & set(PATHS[p]))
_D_INPUTS = tuple(p for p in range(5) if "D" in PATHS[p])
_T_OUTPUTS = tuple(o for o in range(5) if any(PATHS[p][o] == "T" for p in range(5)))
_D_OUTPUTS = tuple(o for o in range(5) if any(PATHS[p][o] in ("D", "TD") for p in range(5)))


def _path_bits(p: int, kinds: tuple[str, ...]) -> int:
    """Output mask of the branches of input ``p`` that take a path in ``kinds``."""
    return sum(1 << o for o in range(5) if PATHS[p][o] in kinds)


@dataclass
class _Input:
    """What the allocator and the switch see of one input port."""

    data: object      # the chosen VC's head flit (raw bits)
    request: Signal   # outputs the chosen head asks for this cycle
    granted: Signal   # outputs that took it this cycle (driven by the switch)


class CompactRouter(Router):
    """The ``compact`` micro-architecture (module documentation); members as
    :class:`~.base.Router`.

    ``peek=True`` (proofs only, ``wafertile formal``) builds the input buffers with their
    proof-only read ports (:class:`~.buffer.VcBuffer` ``peek``); :attr:`state` names the
    buffers and the ``sent`` registers for the invariants of a k-induction. The fabric never
    sets it; it changes nothing else.
    """

    arch = "compact"

    def __init__(self, config, *, peek: bool = False):
        super().__init__(config)
        nv = config.num_vcs
        # made here only for proofs (the harness names them before they are elaborated)
        self._buffers = [self._buffer(peek=True) for _ in Port] if peek else None
        # Branches each VC's head has sent (``sent`` remembers a partial multicast).
        self._sents = [[Signal(5, name=f"sent_{port.letter}{v}") for v in range(nv)]
                       for port in Port]

    @classmethod
    def check(cls, config, *, peek: bool = False) -> None:
        super().check(config)

    @property
    def state(self) -> dict:
        """For proofs (``peek=True``): ``buffers`` (the input buffers, by port number) and
        ``sent`` (by port and VC: the branches that VC's head has sent)."""
        if self._buffers is None:
            raise ValueError("CompactRouter.state needs a router made with peek=True")
        return {"buffers": list(self._buffers), "sent": [list(s) for s in self._sents]}

    def _buffer(self, *, peek: bool = False) -> VcBuffer:
        cfg = self.config
        return VcBuffer(num_vcs=cfg.num_vcs, depth=cfg.buffer_depth, width=cfg.flit_width,
                        head_width=5, peek=peek)

    def elaborate(self, platform):
        m = Module()
        ports = [self._input_port(m, Port(p)) for p in range(5)]
        self._switch(m, ports)
        return m

    def _input_port(self, m: Module, port: Port) -> _Input:
        """The buffer of one input and its VC allocation: which VC's head it offers, to which
        outputs; the head leaves when its last outstanding branch has gone."""
        cfg = self.config
        nv, name = cfg.num_vcs, port.letter
        inp = self.inputs[port.value]
        ready_by_vc = [Cat(out.ready[v] for out in self.outputs) for v in range(nv)]

        # Buffer, with the route mask computed once, on arrival, and kept beside the flit.
        m.submodules[f"buf_{name}"] = buf = \
            self._buffer() if self._buffers is None else self._buffers[port.value]
        m.d.comb += [
            buf.w_valid.eq(inp.valid), buf.w_vc.eq(inp.flit.header.vc),
            buf.w_data.eq(inp.flit.as_value()),
            buf.w_head.eq(route_mask(cfg, inp.flit.header, self.x, self.y, port)),
            inp.ready.eq(buf.w_rdy),
        ]
        # Branches each VC's head still has to send (``sent`` remembers a partial multicast).
        sents = self._sents[port.value]
        rems = []
        for v in range(nv):
            rem = Signal(5, name=f"rem_{name}{v}")
            m.d.comb += rem.eq(Mux(buf.level[v] != 0, buf.head[v], 0) & ~sents[v])
            rems.append(rem)

        # One VC per input per cycle: round-robin among the VCs whose head has an unsent
        # branch with room downstream; its pointer moves only when a head leaves.
        eligible = Cat((rems[v] & ready_by_vc[v]) != 0 for v in range(nv))
        popped = Signal(name=f"popped_{name}")
        chosen = arbitrate(m, f"vc_{name}", eligible, advance=popped)
        sel = Signal(range(nv), name=f"sel_{name}")
        for v in range(nv):
            with m.If(chosen[v]):
                m.d.comb += sel.eq(v)
        req = Signal(5, name=f"req_{name}")
        m.d.comb += [
            req.eq(any_of(Mux(chosen[v], rems[v] & ready_by_vc[v], 0) for v in range(nv))),
            buf.r_vc.eq(sel),
        ]

        got = Signal(5, name=f"granted_{name}")
        pops = []
        for v in range(nv):
            pop = Signal(name=f"pop_{name}{v}")
            m.d.comb += pop.eq(chosen[v] & (got != 0) & ((rems[v] & ~got) == 0))
            pops.append(pop)
            with m.If(pop):
                m.d.sync += sents[v].eq(0)
            with m.Elif(chosen[v]):
                m.d.sync += sents[v].eq(sents[v] | got)
        m.d.comb += [buf.pop.eq(Cat(pops)), popped.eq(any_of(pops))]
        return _Input(data=buf.r_data, request=req, granted=got)

    def _switch(self, m: Module, ins: list[_Input]) -> None:
        """The turn stage T, the delivery stage D, then the five outputs (see PATHS); drives
        each input's ``granted``."""
        outs = self.outputs
        request = [i.request for i in ins]
        data = [i.data for i in ins]

        def mux(grant, values):
            return any_of(Mux(grant[k], val, 0) for k, val in enumerate(values))

        # T: one flit per cycle that goes north/south other than straight on or by the
        # direct W -> N / E -> S turns, or that came in on L, E or W and is delivered here or
        # (E/W) leaves by the edge port it came in on (through D).
        t_ok = Signal(name="t_ok")
        t_grant = arbitrate(m, "arb_t", Cat((request[p] & _path_bits(p, ("T", "TD"))) != 0
                                            for p in _T_INPUTS), advance=t_ok)
        t_wants = Signal(5, name="t_wants")      # branches T asks the N/S outputs for
        t_wants_d = Signal(5, name="t_wants_d")  # branches T asks D for
        t_data = Signal(len(data[0]), name="t_data")
        m.d.comb += [
            t_wants.eq(any_of(Mux(t_grant[k], request[p] & _path_bits(p, ("T",)), 0)
                              for k, p in enumerate(_T_INPUTS))),
            t_wants_d.eq(any_of(Mux(t_grant[k], request[p] & _path_bits(p, ("TD",)), 0)
                                for k, p in enumerate(_T_INPUTS))),
            t_data.eq(mux(t_grant, [data[p] for p in _T_INPUTS])),
        ]

        # D: one flit per cycle from N, S or T that is delivered here or leaves by an edge
        # port it cannot reach directly.
        d_srcs = [request[p] & _path_bits(p, ("D",)) for p in _D_INPUTS] + [t_wants_d]
        d_ok = Signal(name="d_ok")
        d_grant = arbitrate(m, "arb_d", Cat(r != 0 for r in d_srcs), advance=d_ok)
        d_wants = Signal(5, name="d_wants")
        d_data = Signal(len(data[0]), name="d_data")
        m.d.comb += [
            d_wants.eq(any_of(Mux(d_grant[k], r, 0) for k, r in enumerate(d_srcs))),
            d_data.eq(mux(d_grant, [data[p] for p in _D_INPUTS] + [t_data])),
        ]

        # Outputs. Sources: "direct" inputs, then T (N, S) or D (L, E, W).
        d_took = [Signal(name=f"d_took_{Port(o).letter}") for o in range(5)]
        t_took = [Signal(name=f"t_took_{Port(o).letter}") for o in range(5)]
        direct_took = [[Const(0)] * 5 for _ in range(5)]  # [input][output]
        m.d.comb += [outs[_L].valid.eq(d_wants[_L]), outs[_L].flit.eq(d_data),
                     d_took[_L].eq(d_wants[_L]), t_took[_L].eq(0)]
        for o in range(1, 5):
            direct = [p for p in range(5) if PATHS[p][o] == "direct"]
            reqs = [request[p][o] for p in direct]
            vals = [data[p] for p in direct]
            if o in _T_OUTPUTS:
                reqs.append(t_wants[o])
                vals.append(t_data)
            if o in _D_OUTPUTS:
                reqs.append(d_wants[o])
                vals.append(d_data)
            req = Signal(len(reqs), name=f"req_out_{Port(o).letter}")
            m.d.comb += req.eq(Cat(reqs))
            grant = arbitrate(m, f"arb_{Port(o).letter}", req)
            for k, p in enumerate(direct):
                direct_took[p][o] = grant[k]
            m.d.comb += [
                t_took[o].eq(grant[len(direct)] if o in _T_OUTPUTS else 0),
                d_took[o].eq(grant[-1] if o in _D_OUTPUTS else 0),
                outs[o].valid.eq(req != 0),
                outs[o].flit.eq(mux(grant, vals)),
            ]
        d_took_any = any_of(d_took)
        m.d.comb += [
            d_ok.eq(d_took_any),
            t_ok.eq(any_of(t_took) | (d_grant[-1] & d_took_any)),
        ]
        t_took_v, d_took_v = Cat(t_took), Cat(d_took)
        for p in range(5):
            bits = []
            for o in range(5):
                kind = PATHS[p][o]
                if kind == "direct":
                    bits.append(direct_took[p][o])
                elif kind == "T":
                    bits.append(t_grant[_T_INPUTS.index(p)] & t_took_v[o])
                elif kind == "TD":
                    bits.append(t_grant[_T_INPUTS.index(p)] & d_grant[-1] & d_took_v[o])
                else:  # "D"
                    bits.append(d_grant[_D_INPUTS.index(p)] & d_took_v[o])
            m.d.comb += ins[p].granted.eq(Cat(bits))
