"""Links that carry a flit in ``config.phits`` cycles (the ``lite`` router), and the adapters
between such a link and a whole-flit interface.

With ``phits = n > 1`` a link is ``config.phit_width = ceil(flit_width / n)`` bits wide and
the fabric runs in lockstep *slots* of ``n`` cycles: every router and adapter has a phase
counter (0 .. n-1) that starts at 0 when the reset is released, so all of them agree on the
phase. The link protocol (:func:`phit_link_signature`):

- a sender may start a flit of VC ``v`` only in phase 0, and only if ``ready[v]`` is high in
  that cycle; it then drives ``valid`` high for the whole slot and phit ``k`` (flit bits
  ``k * phit_width`` upwards, the last phit zero-padded) in phase ``k``;
- ``ready`` is only looked at in phase 0. A receiver that raises ``ready[v]`` in phase 0 has
  room for the whole flit.

Phit 0 holds the whole header (``Config`` checks that it fits), so a router routes a flit as
soon as phit 0 is in. Whole-flit interfaces (the tile core, the host at the array's edge, the
ports of :class:`~wafertile.hdl.mesh.Mesh`) keep :func:`~wafertile.hdl.router.flit_link_signature`
and meet a phit link through :class:`PhitTx` and :class:`PhitRx`; the ``lite`` router's local
input takes whole flits itself, so only its local output needs a :class:`PhitRx`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import Config
from ._util import ConfiguredComponent, any_of, check_config, pick
from .flit import flit_layout, header_layout

__all__ = ["PHIT_RX_MODULE", "PHIT_RX_VC_MODULE", "PHIT_TX_MODULE", "PhitRx", "PhitTx",
           "adapter_instances", "adapter_text", "phase_counter", "phit_leaves",
           "phit_link_signature"]


def phit_link_signature(config: Config) -> wiring.Signature:
    """One direction of a phit link, seen from the sender (see the module documentation)."""
    return wiring.Signature({
        "valid": Out(1),
        "phit": Out(unsigned(config.phit_width)),
        "ready": In(config.num_vcs),
    })


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


def _check_phits(component, config: Config) -> None:
    if config.phits == 1:
        component._MustUse__silence = True  # never elaborated: no "created but never used"
        raise ValueError(f"{type(component).__name__} adapts a phit link: it needs phits > 1 "
                         f"(with phits = 1 a link carries whole flits), not 1")


def _flit_link(config: Config) -> wiring.Signature:
    from .router import flit_link_signature
    return flit_link_signature(config)


class PhitTx(ConfiguredComponent):
    """Whole flits in (``i``, a flit link), phits out (``o``, a phit link).

    ``i.ready[v]`` is high in phase 0 when the phit link's VC ``v`` has room; the flit taken
    then is sent in that slot, phit 0 straight from ``i.flit`` and the others from a register
    loaded in phase 0.
    A sender waits at most ``phits - 1`` cycles for phase 0.
    """

    def __init__(self, config: Config):
        check_config(self, config)
        _check_phits(self, config)
        super().__init__(config, {"i": In(_flit_link(config)),
                                  "o": Out(phit_link_signature(config))})

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        n, w = cfg.phits, cfg.phit_width
        phase = phase_counter(m, cfg)
        flit = self.i.flit.as_value()
        first = phase == 0
        m.d.comb += self.i.ready.eq(Mux(first, self.o.ready, 0))
        take = self.i.valid & (self.i.ready.bit_select(self.i.flit.header.vc, 1))
        busy = Signal()                     # sending phits 1 .. n-1 of the flit taken in phase 0
        rest = Signal(n * w - w)            # those phits (loaded once: no shifting)
        with m.If(first):
            m.d.sync += [busy.eq(take), rest.eq(flit[w:])]
        with m.Elif(phase == n - 1):
            m.d.sync += busy.eq(0)
        out = pick([phase == k for k in range(n)],
                   [flit[:w], *(rest[(k - 1) * w:k * w] for k in range(1, n))])
        m.d.comb += [self.o.valid.eq(Mux(first, take, busy)), self.o.phit.eq(out)]
        return m


class PhitRx(ConfiguredComponent):
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
    """

    def __init__(self, config: Config, *, per_vc: bool = False):
        check_config(self, config)
        _check_phits(self, config)
        self.per_vc = per_vc
        super().__init__(config, {"i": In(phit_link_signature(config)),
                                  "o": Out(_flit_link(config))})

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        n, w, nv = cfg.phits, cfg.phit_width, cfg.num_vcs
        phase = phase_counter(m, cfg)
        regs = nv if self.per_vc else 1
        holds = [Signal(flit_layout(cfg), name=f"hold{r}") for r in range(regs)]
        fulls = [Signal(name=f"full{r}") for r in range(regs)]
        # the arriving flit's VC: in the header, in phit 0
        vc0 = data.View(header_layout(cfg), self.i.phit[:cfg.header_width]).vc
        rx_vc = Signal(cfg.vc_width)
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
            here = self.i.valid & ((vc_now == r) if self.per_vc else 1)
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
            self.i.ready.eq(Cat(room) if self.per_vc else room[0].replicate(nv)),
        ]
        return m


#: Verilog module names of the adapters where a block instantiates them by name.
PHIT_TX_MODULE = "wafertile_phit_tx"
PHIT_RX_MODULE = "wafertile_phit_rx"
PHIT_RX_VC_MODULE = "wafertile_phit_rx_vc"


def phit_leaves(config: Config, *, per_vc: bool = False) -> tuple:
    """The adapter modules an array (``per_vc=False``) or a mesh (``per_vc=True``: a
    deserializer per VC, see :class:`PhitRx`) instantiates by name; none without phits."""
    if config.phits == 1:
        return ()
    if per_vc:
        return ((PHIT_TX_MODULE, PhitTx),
                (PHIT_RX_VC_MODULE, lambda cfg: PhitRx(cfg, per_vc=True)))
    return ((PHIT_TX_MODULE, PhitTx), (PHIT_RX_MODULE, PhitRx))


def adapter_instances(m: Module, name: str, flit_in, flit_out, phit_in, phit_out, *,
                      per_vc: bool = False) -> None:
    """Add a :class:`PhitTx` (whole flits from ``flit_in`` into ``phit_in``) and a
    :class:`PhitRx` (phits from ``phit_out`` to ``flit_out``) instance to ``m``.

    ``flit_in`` / ``flit_out`` are whole-flit links (objects with ``valid``, ``flit``,
    ``ready``); ``phit_in`` / ``phit_out`` are ``(valid, phit, ready)`` wire triples: the
    router input the serializer drives (``None``: no serializer) and the router output the
    deserializer reads.
    """
    from amaranth.hdl import ClockSignal, Instance, ResetSignal

    clk = {"i_clk": ClockSignal("sync"), "i_rst": ResetSignal("sync")}
    if phit_in is not None:
        m.submodules[f"tx_{name}"] = Instance(
            PHIT_TX_MODULE, **clk, i_i__valid=flit_in.valid,
            i_i__flit=flit_in.flit.as_value(), o_i__ready=flit_in.ready, o_o__valid=phit_in[0],
            o_o__phit=phit_in[1], i_o__ready=phit_in[2])
    m.submodules[f"rx_{name}"] = Instance(
        PHIT_RX_VC_MODULE if per_vc else PHIT_RX_MODULE, **clk, i_i__valid=phit_out[0],
        i_i__phit=phit_out[1], o_i__ready=phit_out[2], o_o__valid=flit_out.valid,
        o_o__flit=flit_out.flit.as_value(), i_o__ready=flit_out.ready)


def adapter_text(name: str, flit_in: str, flit_out: str, phit_in: tuple, phit_out: tuple
                 ) -> list[str]:
    """The same two instances as :func:`adapter_instances`, as Verilog text lines.
    ``flit_in`` / ``flit_out`` are port name prefixes (``<prefix>__valid`` ...), the
    ``phit_*`` triples wire names."""
    def inst(module, label, conns):
        body = ",\n".join(f"    .{port}({net})" for port, net in conns)
        return f"  {module} {label}_{name} (\n{body}\n  );"
    return [
        inst(PHIT_TX_MODULE, "tx", [("clk", "clk"), ("rst", "rst"),
                                    ("i__valid", f"{flit_in}__valid"),
                                    ("i__flit", f"{flit_in}__flit"),
                                    ("i__ready", f"{flit_in}__ready"),
                                    ("o__valid", phit_in[0]), ("o__phit", phit_in[1]),
                                    ("o__ready", phit_in[2])]),
        inst(PHIT_RX_MODULE, "rx", [("clk", "clk"), ("rst", "rst"),
                                    ("i__valid", phit_out[0]), ("i__phit", phit_out[1]),
                                    ("i__ready", phit_out[2]),
                                    ("o__valid", f"{flit_out}__valid"),
                                    ("o__flit", f"{flit_out}__flit"),
                                    ("o__ready", f"{flit_out}__ready")]),
    ]
