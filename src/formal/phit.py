"""The phit adapters' harness: :class:`~wafertile.hdl.noc.PhitTx` then
:class:`~wafertile.hdl.noc.PhitRx` on one phit link, as between a host and a deserializer.

The sender into ``PhitTx`` holds a flit until it is taken (a host's link rule); the receiver
behind ``PhitRx`` raises any ``ready`` in any cycle. A scoreboard in the harness (one queue
per VC with ``per_vc``, else one) holds the flits taken by the serializer:

- ``rx_gives_what_tx_took``: every flit out of the deserializer is the oldest flit the
  serializer took (of its VC): serialize then deserialize is the identity, and order is kept
  (per VC with ``per_vc``: a refused VC may be overtaken there, by design);
- the phit link's rules on the link between them, the flit link's rules at the output.
"""

from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Array, Module, Mux, Signal, Value
from amaranth.lib import data

from ..config import Config
from ..hdl.flit import flit_layout
from ..hdl.noc import PhitRx, PhitTx, phase_counter
from .harness import Harness
from .link import flit_link_rules, flit_transfer, phit_link_rules
from .props import Properties

__all__ = ["PhitHarness"]

#: Flits in flight between the serializer's input and the deserializer's output, at most.
_QUEUE = 4


class PhitHarness(Harness):
    """Serializer then deserializer for ``config`` (``phits > 1``); ``per_vc`` chooses the
    deserializer with one register per VC (module documentation). Proved by k-induction, with
    invariants (``inv_*``) on the adapters' registers (their ``state``)."""

    def __init__(self, config: Config, *, per_vc: bool = False):
        super().__init__(config)
        self.per_vc = per_vc

    def make_tx(self):
        """The serializer under test (a mutation replaces it)."""
        return PhitTx(self.config)

    def _of(self, q: int) -> str:
        return f" of VC {q}" if self.per_vc else ""

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        nv, fw = cfg.num_vcs, cfg.flit_width
        m.submodules.tx = tx = self.make_tx()
        m.submodules.rx = rx = PhitRx(cfg, per_vc=self.per_vc)
        phase = phase_counter(m, cfg, name="fabric_phase")
        m.d.comb += [tx.o.ready.eq(rx.i.ready), rx.i.valid.eq(tx.o.valid),
                     rx.i.phit.eq(tx.o.phit)]
        m.d.comb += [tx.i.valid.eq(AnySeq(1)), tx.i.flit.eq(AnySeq(fw)),
                     rx.o.ready.eq(AnySeq(nv))]
        flit_link_rules(m, props, cfg, tx.i, "tx_in", dut=False, offers_ready=False)
        phit_link_rules(m, props, cfg, tx.o, "link", phase, dut=True)
        flit_link_rules(m, props, cfg, rx.o, "rx_out", dut=True)

        queues = nv if self.per_vc else 1
        taken = flit_transfer(tx.i)
        given = flit_transfer(rx.o)
        in_vc = Value.cast(tx.i.flit.header.vc)
        out_vc = Value.cast(rx.o.flit.header.vc)
        ts, rs = tx.state, rx.state
        busy = ts["busy"]
        # the invariants: both adapters count the fabric's phase; a flit is in the link while
        # the serializer is busy (phases 1 .. n-1), in the register behind it until taken
        props.check("inv_phases", (ts["phase"] == phase) & (rs["phase"] == phase),
                    "invariant: both adapters are in the fabric's phase")
        props.check("inv_busy_in_slot", ~busy | (phase != 0),
                    "invariant: the serializer is busy only after phase 0 of a slot")
        w, n = cfg.phit_width, cfg.phits
        for q in range(queues):
            mine_in = taken & ((in_vc == q) if self.per_vc else 1)
            mine_out = given & ((out_vc == q) if self.per_vc else 1)
            queue = Array(Signal(fw, name=f"q{q}_{k}") for k in range(_QUEUE))
            count = Signal(range(_QUEUE + 1), name=f"count{q}")
            with m.If(mine_out):
                for k in range(_QUEUE - 1):
                    m.d.sync += queue[k].eq(queue[k + 1])
            with m.If(mine_in):
                m.d.sync += queue[Mux(mine_out, count - 1, count)].eq(tx.i.flit.as_value())
            m.d.sync += count.eq(count + mine_in - mine_out)
            props.check(f"queue_fits_{q}", count < _QUEUE,
                        f"fewer than {_QUEUE} flits are ever between the adapters")
            # invariants of queue q: its flits are the one in the link (if it is of q) and
            # the one in q's register, never both
            hold, full = rs["holds"][q], rs["fulls"][q]
            sending = busy & ((rs["vc"] == q) if self.per_vc else 1)
            first = queue[0]
            props.check(f"inv_count_{q}", (count == full + sending) & ~(full & sending),
                        f"invariant: the flits between the adapters{self._of(q)} are the one in "
                        f"the link and the one in the register, never both")
            props.check(f"inv_held_{q}", ~full | (hold.as_value() == first),
                        f"invariant: a full register{self._of(q)} holds the oldest flit")
            props.check(f"inv_rest_{q}", ~sending | (ts["rest"] == first[w:]),
                        f"invariant: the serializer keeps the rest of the flit in the "
                        f"link{self._of(q)}")
            for k in range(n - 1):
                lo, hi = k * w, (k + 1) * w
                props.check(f"inv_phit{k}_{q}", ~sending | (phase <= k) |
                            (hold.as_value()[lo:hi] == first[lo:hi]),
                            f"invariant: phit {k} of the flit in the link{self._of(q)} is in "
                            f"the register once sent")
            if self.per_vc:
                props.check(f"inv_vc_{q}", (count == 0) |
                            (Value.cast(data.View(flit_layout(cfg), first).header.vc) == q),
                            f"invariant: queue {q} holds flits of VC {q}")
            with m.If(mine_out):
                props.check(f"rx_gives_what_tx_took_{q}",
                            (count != 0) & (rx.o.flit.as_value() == queue[0]),
                            "every flit out of the deserializer is the oldest one the "
                            "serializer took" + (f" on VC {q}" if self.per_vc else "") +
                            ": the identity, in order")
        seen = Signal()
        with m.If(given):
            m.d.sync += seen.eq(1)
        props.cover("flit_through", given, "a flit goes through both adapters")
        props.cover("second_flit", given & seen, "a second flit follows the first")
        props.cover("link_stalls", (phase == 0) & (rx.i.ready == 0),
                    "the deserializer refuses a new flit (its register waits for the "
                    "receiver)")
