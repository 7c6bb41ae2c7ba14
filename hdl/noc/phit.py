"""Phit-serial links (the ``lite`` router) and the adapters between them and whole flits.

With ``phits = n > 1`` a link is ``config.phit_width = ceil(flit_width / n)`` bits wide and
the fabric runs in lockstep *slots* of ``n`` cycles: every router and adapter has a phase
counter (0 .. n-1) that starts at 0 when the reset is released, so all of them agree on the
phase. The link protocol (a :class:`~.link.LinkSignature` with ``phit=True``):

- a sender may start a flit of VC ``v`` only in phase 0, and only if ``ready[v]`` is high in
  that cycle; it then drives ``valid`` high for the whole slot and phit ``k`` (flit bits
  ``k * phit_width`` upwards, the last phit zero-padded) in phase ``k``;
- ``ready`` is only looked at in phase 0. A receiver that raises ``ready[v]`` in phase 0 has
  room for the whole flit.

Phit 0 holds the whole header (``Config`` checks that it fits), so a router routes a flit as
soon as phit 0 is in. Whole-flit interfaces (the tile core, the host at the array's edge, the
endpoints of a mesh) meet a phit link through :class:`PhitTx` and :class:`PhitRx`; the
``lite`` router's local input takes whole flits itself, so only its local output needs a
:class:`PhitRx`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from ...config import Config
from .._util import ConfiguredComponent, any_of, pick
from ..flit import flit_layout, header_layout
from .link import LinkSignature

__all__ = ["PhitRx", "PhitTx", "phase_counter"]


def phase_counter(m: Module, config: Config, name: str = "phase") -> Signal:
    """A counter 0 .. phits-1 that advances every cycle and is 0 in the cycle after reset.

    Every module of a fabric counts the same way from the same reset, so they all agree.
    """
    phase = Signal(range(max(2, config.phits)), name=name)
    if config.phits > 1:
        with m.If(phase == config.phits - 1):
            m.d.sync += phase.eq(0)
        with m.Else():
            m.d.sync += phase.eq(phase + 1)
    return phase


class _PhitAdapter(ConfiguredComponent):
    @classmethod
    def check(cls, config, *args, **kwargs) -> None:
        super().check(config)
        if config.phits == 1:
            raise ValueError(f"{cls.__name__} adapts a phit link: it needs phits > 1 (with "
                             f"phits = 1 a link carries whole flits), not 1")


class PhitTx(_PhitAdapter):
    """Whole flits in (``i``, a flit link), phits out (``o``, a phit link).

    ``i.ready[v]`` is high in phase 0 when the phit link's VC ``v`` has room; the flit taken
    then is sent in that slot, phit 0 straight from ``i.flit`` and the others from a register
    loaded in phase 0. A sender waits at most ``phits - 1`` cycles for phase 0.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    ValueError
        If ``config.phits`` is 1.
    """

    def __init__(self, config: Config):
        super().__init__(config, {"i": In(LinkSignature(config)),
                                  "o": Out(LinkSignature(config, phit=True))})
        w = config.phit_width
        self._state = {
            "phase": Signal(range(config.phits), name="phase_seen"),
            "busy": Signal(name="busy"),       # sending phits 1 .. n-1 of the flit taken in phase 0
            "rest": Signal(config.phits * w - w, name="rest"),  # those (loaded once: no shift)
        }

    @property
    def state(self) -> dict:
        """The serializer's registers, for proofs (the invariants of ``wafertile formal``):
        ``phase`` (a copy of its phase counter), ``busy`` (sending phits 1 .. n-1 of a flit)
        and ``rest`` (those phits)."""
        return dict(self._state)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        n, w = cfg.phits, cfg.phit_width
        phase = phase_counter(m, cfg)
        flit = self.i.flit.as_value()
        first = phase == 0
        m.d.comb += self.i.ready.eq(Mux(first, self.o.ready, 0))
        take = self.i.valid & (self.i.ready.bit_select(self.i.flit.header.vc, 1))
        busy, rest = self._state["busy"], self._state["rest"]
        m.d.comb += self._state["phase"].eq(phase)
        with m.If(first):
            m.d.sync += [busy.eq(take), rest.eq(flit[w:])]
        with m.Elif(phase == n - 1):
            m.d.sync += busy.eq(0)
        out = pick([phase == k for k in range(n)],
                   [flit[:w], *(rest[(k - 1) * w:k * w] for k in range(1, n))])
        m.d.comb += [self.o.valid.eq(Mux(first, take, busy)), self.o.phit.eq(out)]
        return m


class PhitRx(_PhitAdapter):
    """Phits in (``i``, a phit link), whole flits out (``o``, a flit link).

    The phits of a flit are written straight into a holding register: one for all VCs, or
    one per VC with ``per_vc=True``. Like a router output, ``o`` raises ``valid`` only for a
    flit whose VC is ready (``o.ready[vc]``), from the cycle after its last phit on (with
    ``per_vc``, the lowest such VC first). ``i.ready`` is high in a phase 0 where the
    register (of that VC) is empty or being emptied; it never waits for the receiver's
    ``ready`` to be high in phase 0, so a receiver may offer its ``ready`` in any cycle.

    With one register, a flit of a VC that the receiver refuses waits in it and holds up the
    other VCs until the receiver takes it: right for a receiver that takes every flit in the
    end (the tile core, a host at the array's edge: sinks). ``per_vc`` keeps the router's
    promise that a refused VC never holds up another (the mesh's endpoints).

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    ValueError
        If ``config.phits`` is 1.
    """

    def __init__(self, config: Config, *, per_vc: bool = False):
        self._per_vc = bool(per_vc)
        super().__init__(config, {"i": In(LinkSignature(config, phit=True)),
                                  "o": Out(LinkSignature(config))})
        regs = config.num_vcs if self._per_vc else 1
        self._state = {
            "phase": Signal(range(config.phits), name="phase_seen"),
            "vc": Signal(config.vc_width, name="rx_vc"),  # the arriving flit's, from phase 0
            "holds": [Signal(flit_layout(config), name=f"hold{r}") for r in range(regs)],
            "fulls": [Signal(name=f"full{r}") for r in range(regs)],
        }

    @property
    def state(self) -> dict:
        """The deserializer's registers, for proofs (the invariants of ``wafertile formal``):
        ``phase`` (a copy of its phase counter), ``vc`` (the arriving flit's VC, kept from
        phase 0), and per register (one, or one per VC) ``holds`` and ``fulls``."""
        return dict(self._state)

    @property
    def per_vc(self) -> bool:
        return self._per_vc

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        n, w, nv = cfg.phits, cfg.phit_width, cfg.num_vcs
        phase = phase_counter(m, cfg)
        m.d.comb += self._state["phase"].eq(phase)
        regs = nv if self._per_vc else 1
        holds, fulls = self._state["holds"], self._state["fulls"]
        # the arriving flit's VC: in the header, in phit 0
        vc0 = data.View(header_layout(cfg), self.i.phit[:cfg.header_width]).vc
        rx_vc = self._state["vc"]
        with m.If(phase == 0):
            m.d.sync += rx_vc.eq(vc0)
        vc_now = Mux(phase == 0, vc0, rx_vc)
        taken = []
        for r in range(regs):
            hold, full = holds[r], fulls[r]
            take = Signal(name=f"take{r}")
            m.d.comb += take.eq(full & self.o.ready.bit_select(hold.header.vc, 1)
                                & ~any_of(taken))
            taken.append(take)
            here = self.i.valid & ((vc_now == r) if self._per_vc else 1)
            raw = hold.as_value()
            for k in range(n):
                lo, hi = k * w, min((k + 1) * w, cfg.flit_width)
                with m.If(here & (phase == k)):
                    m.d.sync += raw[lo:hi].eq(self.i.phit[:hi - lo])
            with m.If(here & (phase == n - 1)):
                m.d.sync += full.eq(1)
            with m.Elif(take):
                m.d.sync += full.eq(0)
        room = [~fulls[r] | taken[r] for r in range(regs)]
        m.d.comb += [
            self.o.valid.eq(any_of(taken)),
            self.o.flit.eq(pick(taken, holds)),
            self.i.ready.eq(Cat(room) if self._per_vc else room[0].replicate(nv)),
        ]
        return m
