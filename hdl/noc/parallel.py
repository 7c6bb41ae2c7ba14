"""The ``parallel`` router micro-architecture: every (input, VC) head competes at every output.

Selected with ``Config(router_arch="parallel")``. Same ports, link protocol, routing rule,
multicast rule and one cycle per router as the other two; what changes (``docs/router.md``):

- each (input, VC) has its own FIFO (:class:`amaranth.lib.fifo.SyncFIFO`: a LUT RAM of
  ``buffer_depth`` flits with an asynchronous read), so the heads of all VCs of an input are
  visible at once;
- the route mask of every head is computed at the head (not stored);
- every output arbitrates round-robin among all ``5 * num_vcs`` heads that want it and whose
  VC has room downstream (a 5-way crossbar per VC, no turn or delivery stage), so one input
  may send two VC heads to two outputs in the same cycle. That removes most of the
  head-of-line blocking between VCs, at 2.4x (2 VCs x 4) to 5.3x (4 VCs x 8) the ECP5 LUT4
  sites of ``compact``.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFO

from .._util import any_of
from ..flit import Port, flit_layout
from .arbiter import arbitrate
from .base import Router
from .route import route_mask

__all__ = ["ParallelRouter"]


@dataclass
class _Head:
    vc: int
    flit: Value       # the head flit (raw bits)
    remaining: Signal  # outputs the head still has to be sent on
    granted: Signal    # outputs that took it this cycle (driven by the outputs)


class ParallelRouter(Router):
    """The ``parallel`` micro-architecture (module documentation); members as
    :class:`~.base.Router`."""

    arch = "parallel"

    def elaborate(self, platform):
        m = Module()
        heads = [head for p in range(5) for head in self._buffers(m, Port(p))]
        self._outputs(m, heads)
        return m

    def _buffers(self, m: Module, port: Port) -> list[_Head]:
        """A FIFO per VC of input ``port``; each head's remaining branches. A head leaves
        when its last outstanding branch is sent."""
        cfg = self.config
        inp = self.inputs[port.value]
        heads = []
        for v in range(cfg.num_vcs):
            name = f"{port.letter}{v}"
            fifo = SyncFIFO(width=cfg.flit_width, depth=cfg.buffer_depth)
            m.submodules[f"buf_{name}"] = fifo
            m.d.comb += [
                fifo.w_data.eq(inp.flit.as_value()),
                fifo.w_en.eq(inp.valid & (inp.flit.header.vc == v)),
                inp.ready[v].eq(fifo.w_rdy),  # the FIFO's state only
            ]
            head = data.View(flit_layout(cfg), fifo.r_data)
            mask = route_mask(cfg, head.header, self.x, self.y, port)
            sent = Signal(5, name=f"sent_{name}")
            rem = Signal(5, name=f"rem_{name}")
            got = Signal(5, name=f"granted_{name}")
            m.d.comb += rem.eq(Mux(fifo.r_rdy, mask, 0) & ~sent)
            pop = (got != 0) & ((rem & ~got) == 0)
            m.d.comb += fifo.r_en.eq(pop)
            with m.If(pop):
                m.d.sync += sent.eq(0)
            with m.Else():
                m.d.sync += sent.eq(sent | got)
            heads.append(_Head(vc=v, flit=fifo.r_data, remaining=rem, granted=got))
        return heads

    def _outputs(self, m: Module, heads: list[_Head]) -> None:
        """Each output arbitrates among the heads that want it and whose VC has room."""
        by_head = [[] for _ in heads]
        for o, out in enumerate(self.outputs):
            letter = Port(o).letter
            req = Signal(len(heads), name=f"req_{letter}")
            m.d.comb += req.eq(Cat(h.remaining[o] & out.ready[h.vc] for h in heads))
            grant = arbitrate(m, f"arb_{letter}", req)
            for k in range(len(heads)):
                by_head[k].append(grant[k])
            m.d.comb += [
                out.valid.eq(req != 0),
                out.flit.eq(any_of(Mux(grant[k], h.flit, 0) for k, h in enumerate(heads))),
            ]
        for k, head in enumerate(heads):
            m.d.comb += head.granted.eq(Cat(by_head[k]))
