"""The ``voq`` router micro-architecture: virtual output queues, so a blocked head blocks nothing.

Selected with ``Config(router_arch="voq")``. Same ports, link protocol, routing rule,
multicast rule and one cycle per router as ``compact``; what changes (``docs/router.md``):

- **Slots, not FIFOs.** Each input keeps the flits of VC ``v`` in ``buffer_depth`` slots of
  one LUT RAM per input (address ``{vc, slot}``, asynchronous read, as ``compact``); beside
  each slot, in registers, the branches its flit still has to send (its route mask, computed
  on arrival; 0: the slot is free) and, per VC, an age matrix (which of two slots arrived
  first). A flit takes the lowest free slot of its VC; ``ready[v]`` is "VC ``v`` has a free
  slot", a function of the registers only.
- **Virtual output queues.** For every (input, VC, output) the head is the *oldest* slot with
  a branch for that output, so the per-output queues are logical (the age matrix orders them)
  and a flit waiting for a busy output holds up only the flits behind it *for that output*:
  no head-of-line blocking between outputs or VCs. Flits from one input on one VC leave by one
  output in the order they arrived, the guarantee ``compact`` gives (a multicast flit's
  branches are queued at each of its outputs; it frees its slot when the last has gone).
- **Allocation: two rounds of iSLIP, two reads per input** (``ITERATIONS``, ``READS``). In
  round ``r`` each output still free arbitrates round-robin among the (input, VC) pairs with a
  head for it whose VC has room downstream; each input takes every grant of a slot it already
  reads this cycle (a multicast sends its branches together where it can) and accepts one
  grant of another slot (round-robin over the outputs) on its read port ``r``. An output's
  pointer moves past its winner only when the winner took it, so the outputs' pointers fall
  out of step and no request starves. The RAM's two read ports are two copies of the LUT RAM.
- **A full crossbar**: each output multiplexes the two reads of each of the five inputs.

One read per input (CONNECT's virtual output queues) measured 0.65-0.75 of the XY bound on
4x4 uniform traffic; the second read (input speedup 2) gives 0.85 / 0.90 on 4x4 / 8x8.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory

from .._util import any_of, index_bits
from ..flit import Port
from .arbiter import arbitrate
from .base import Router
from .route import route_mask

__all__ = ["VoqRouter"]


@dataclass
class _Input:
    """What the allocator sees of one input port."""

    heads: list      # heads[v][o]: one-hot over slots, the oldest slot of VC v with branch o
    wants: list      # wants[v]: Signal(5), outputs VC v has a head for
    data: list       # data[k]: the slot read port k reads this cycle (raw bits)
    slot: list       # slot[k]: one-hot over (vc, slot), the slot port k reads (allocate)
    taken: list      # taken[k]: the outputs that slot goes to this cycle (allocate)


class VoqRouter(Router):
    """The ``voq`` micro-architecture (module documentation); members as
    :class:`~.base.Router`.

    ``peek=True`` (proofs only, ``wafertile formal``) adds a proof-only read port per slot to
    each input's RAM; :attr:`state` names the slots' words, their remaining branches and the
    age matrices for the invariants of a k-induction. The fabric never sets it; it changes
    nothing else.
    """

    arch = "voq"
    #: Rounds of iSLIP allocation per cycle.
    ITERATIONS = 2
    #: Read ports of each input's RAM (slots an input sends per cycle).
    READS = 2

    def __init__(self, config, *, peek: bool = False):
        super().__init__(config)
        nv, depth = config.num_vcs, config.buffer_depth
        self._peek = bool(peek)
        # per port: rem[v][i], the branches slot i of VC v still has to send (0: free), and
        # older[v][i][j] (i != j): slot i's flit arrived before slot j's
        self._rem = [[[Signal(5, name=f"rem_{port.letter}{v}_{i}") for i in range(depth)]
                      for v in range(nv)] for port in Port]
        self._older = [[[[Signal(name=f"older_{port.letter}{v}_{i}_{j}") if i != j else None
                          for j in range(depth)] for i in range(depth)] for v in range(nv)]
                       for port in Port]
        self._stored = [[[Signal(config.flit_width, name=f"stored_{port.letter}{v}_{i}")
                          for i in range(depth)] for v in range(nv)]
                        for port in Port] if peek else None

    @classmethod
    def check(cls, config, *, peek: bool = False) -> None:
        super().check(config)

    @property
    def state(self) -> dict:
        """For proofs (``peek=True``), by port number, VC and slot: ``rem`` (the branches the
        slot's flit still has to send; 0: free), ``older`` (``older[p][v][i][j]``: slot ``i``'s
        flit arrived before slot ``j``'s; ``None`` on the diagonal) and ``stored`` (the word
        in the slot's RAM address)."""
        if self._stored is None:
            raise ValueError("VoqRouter.state needs a router made with peek=True")
        return {"rem": self._rem, "older": self._older, "stored": self._stored}

    def elaborate(self, platform):
        m = Module()
        ins = [self._input(m, Port(p)) for p in range(5)]
        self._allocate(m, ins)
        return m

    def _input(self, m: Module, port: Port) -> _Input:
        """Slots, age matrices and per-output heads of one input."""
        cfg = self.config
        nv, depth, name = cfg.num_vcs, cfg.buffer_depth, port.letter
        abits, vbits = index_bits(depth), index_bits(nv)
        inp = self.inputs[port.value]

        rem, older = self._rem[port.value], self._older[port.value]

        reads = self.READS
        # per read port: the slot read (one-hot) and where it goes this cycle
        slot = [Signal(nv * depth, name=f"slot_{name}_{k}") for k in range(reads)]
        taken = [Signal(5, name=f"taken_{name}_{k}") for k in range(reads)]

        m.submodules[f"buf_{name}"] = ram = Memory(
            shape=unsigned(cfg.flit_width), depth=(1 << vbits) * (1 << abits), init=[])
        wr = ram.write_port()
        rds = [ram.read_port(domain="comb") for _ in range(reads)]
        for v in range(nv) if self._peek else ():
            for i in range(depth):
                pk = ram.read_port(domain="comb")
                m.d.comb += [pk.addr.eq(Cat(Const(i, abits), Const(v, vbits))),
                             self._stored[port.value][v][i].eq(pk.data)]

        mask = Signal(5, name=f"mask_{name}")
        m.d.comb += mask.eq(route_mask(cfg, inp.flit.header, self.x, self.y, port))
        heads, wants, pushes, firsts = [], [], [], []
        for v in range(nv):
            # The lowest free slot takes an arriving flit of VC v.
            free = [r == 0 for r in rem[v]]
            first = [free[i] & ~any_of(free[:i]) for i in range(depth)]
            push = Signal(name=f"push_{name}{v}")
            m.d.comb += [
                inp.ready[v].eq(any_of(free)),
                push.eq(inp.valid & (inp.flit.header.vc == v) & any_of(free)),
            ]
            pushes.append(push)
            firsts.append(first)
            for i in range(depth):
                gone = any_of(Mux(slot[k][v * depth + i], taken[k], 0) for k in range(reads))
                with m.If(push & first[i]):
                    m.d.sync += rem[v][i].eq(mask)
                    for j in range(depth):
                        if j != i:  # the new flit is the youngest
                            m.d.sync += [older[v][j][i].eq(1), older[v][i][j].eq(0)]
                with m.Else():
                    m.d.sync += rem[v][i].eq(self._remaining(rem[v][i], gone))

            # Per output, the oldest slot with a branch for it.
            hv = []
            for o in range(5):
                cand = [r[o] for r in rem[v]]
                onehot = Signal(depth, name=f"head_{name}{v}_{Port(o).letter}")
                m.d.comb += onehot.eq(self._oldest(cand, older[v]))
                hv.append(onehot)
            heads.append(hv)
            want = Signal(5, name=f"wants_{name}{v}")
            m.d.comb += want.eq(Cat(any_of(r[o] for r in rem[v]) for o in range(5)))
            wants.append(want)

        # The slots read: the ones allocation chose.
        for k in range(reads):
            r_idx = Signal(abits, name=f"r_idx_{name}_{k}")
            r_vc = Signal(vbits, name=f"r_vc_{name}_{k}")
            for v in range(nv):
                for i in range(depth):
                    with m.If(slot[k][v * depth + i]):
                        m.d.comb += [r_idx.eq(i), r_vc.eq(v)]
            m.d.comb += rds[k].addr.eq(Cat(r_idx, r_vc))
        # Written: the slot the pushed VC's registers take (its lowest free one).
        free_idx = Signal(abits, name=f"free_idx_{name}")
        for v in range(nv):
            for i in range(depth):
                with m.If(pushes[v] & firsts[v][i]):
                    m.d.comb += free_idx.eq(i)
        m.d.comb += [
            wr.en.eq(any_of(pushes)),
            wr.addr.eq(Cat(free_idx, inp.flit.header.vc[:vbits])),
            wr.data.eq(inp.flit.as_value()),
        ]
        return _Input(heads=heads, wants=wants, data=[rd.data for rd in rds], slot=slot,
                      taken=taken)

    @staticmethod
    def _remaining(rem, gone):
        """The branches a slot still has to send after a cycle in which ``gone`` left."""
        return rem & ~gone

    @staticmethod
    def _oldest(cand: list, older: list):
        """One-hot: the slot among those whose ``cand`` bit is set whose flit arrived first
        (``older[j][i]``: slot ``j``'s flit arrived before slot ``i``'s)."""
        n = len(cand)
        return Cat(cand[i] & ~any_of(cand[j] & older[j][i] for j in range(n) if j != i)
                   for i in range(n))

    def _allocate(self, m: Module, ins: list[_Input]) -> None:
        """``ITERATIONS`` rounds of iSLIP. In round ``r`` the outputs still free grant (input,
        VC) pairs; an input takes every grant of a slot it already reads, and accepts one
        grant of another slot (round-robin) if its read port ``min(r, READS - 1)`` is still
        unused. Then the crossbar; drives each input's ``slot`` and ``taken``."""
        cfg = self.config
        nv, depth, reads = cfg.num_vcs, cfg.buffer_depth, self.READS
        outs = self.outputs
        out_free = [1] * 5
        # per input, per read port: the slot and outputs chosen in each round so far
        slot_parts = [[[] for _ in range(reads)] for _ in range(5)]
        taken_parts = [[[] for _ in range(reads)] for _ in range(5)]
        for r in range(self.ITERATIONS):
            port_r = min(r, reads - 1)
            grants, tooks = [], []
            for o, out in enumerate(outs):
                letter = Port(o).letter
                req = Signal(5 * nv, name=f"req{r}_{letter}")
                m.d.comb += req.eq(Cat(ins[p].wants[v][o] & out.ready[v] & out_free[o]
                                       for p in range(5) for v in range(nv)))
                took = Signal(name=f"took{r}_{letter}")
                g = arbitrate(m, f"arb{r}_{letter}", req, advance=took)
                grants.append([[g[p * nv + v] for v in range(nv)] for p in range(5)])
                tooks.append(took)
            took_by = [[] for _ in range(5)]  # per output: the inputs' takes this round
            for p, inp in enumerate(ins):
                letter = Port(p).letter
                # The slot each granting output would take (one-hot over (vc, slot)).
                sels = []
                for o in range(5):
                    sel = Signal(nv * depth, name=f"sel{r}_{letter}_{Port(o).letter}")
                    m.d.comb += sel.eq(Cat(Mux(grants[o][p][v], inp.heads[v][o], 0)
                                           for v in range(nv)))
                    sels.append(sel)
                prior = [any_of(slot_parts[p][k]) for k in range(reads)]
                merged = []
                for k in range(reads):
                    mk = Signal(5, name=f"merge{r}_{letter}_{k}")
                    m.d.comb += mk.eq(Cat((sels[o] & prior[k]) != 0 for o in range(5)))
                    merged.append(mk)
                    taken_parts[p][k].append(mk)
                fresh = Signal(5, name=f"fresh{r}_{letter}")
                m.d.comb += fresh.eq(Cat((sels[o] != 0) & ~any_of(mk[o] for mk in merged)
                                         & (prior[port_r] == 0) for o in range(5)))
                acc = arbitrate(m, f"acc{r}_{letter}", fresh)
                new = Signal(nv * depth, name=f"slot{r}_{letter}")
                new_taken = Signal(5, name=f"taken{r}_{letter}")
                m.d.comb += [
                    new.eq(any_of(Mux(acc[o], sels[o], 0) for o in range(5))),
                    new_taken.eq(Cat(fresh[o] & ((sels[o] & new) != 0) for o in range(5))),
                ]
                slot_parts[p][port_r].append(new)
                taken_parts[p][port_r].append(new_taken)
                for o in range(5):
                    took_by[o].append(new_taken[o] | any_of(mk[o] for mk in merged))
            for o in range(5):
                m.d.comb += tooks[o].eq(any_of(took_by[o]))
            out_free = [out_free[o] & ~tooks[o] for o in range(5)]
        for p, inp in enumerate(ins):
            for k in range(reads):
                m.d.comb += [inp.slot[k].eq(any_of(slot_parts[p][k])),
                             inp.taken[k].eq(any_of(taken_parts[p][k]))]
        for o, out in enumerate(outs):
            srcs = [(inp.taken[k][o], inp.data[k]) for inp in ins for k in range(reads)]
            m.d.comb += [
                out.valid.eq(any_of(t for t, _ in srcs)),
                out.flit.eq(any_of(Mux(t, d, 0) for t, d in srcs)),
            ]
