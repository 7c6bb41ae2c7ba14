"""The SRAM bank harness: :class:`~wafertile.hdl.core.SramBank` against a memory
specification, port by port.

Every port of both banks is free in every cycle (enables, addresses, data). For one address
of each bank, chosen by the solver (so for every address), the harness keeps the word the
bank must hold (both banks start at zero, like the RTL's memories) and the word a read of it
must return one cycle later:

- ``<bank>_read``: a read returns the word stored at its address; a read in the cycle of a
  write to the same address returns the word being written (the port is transparent, which
  the MAC core relies on instead of forwarding registers); with ``en`` low the read data
  keeps its value.
"""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Module, Mux, Signal

from ..hdl.core import SramBank
from .harness import Harness
from .props import Properties

__all__ = ["SramHarness"]


class SramHarness(Harness):
    """Both banks of an :class:`SramBank` of ``config`` against the specification (module
    documentation), by BMC."""

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        m.submodules.dut = dut = SramBank(cfg)
        for bank in ("act", "acc"):
            rd, wr = getattr(dut, f"{bank}_r"), getattr(dut, f"{bank}_w")
            for port in (rd, wr):
                for name in ("en", "addr") + (("data",) if port is wr else ()):
                    sig = getattr(port, name)
                    m.d.comb += sig.eq(AnySeq(len(sig)))
            watch = AnyConst(len(rd.addr))
            stored = Signal.like(wr.data, name=f"{bank}_stored")
            with m.If(wr.en & (wr.addr == watch)):
                m.d.sync += stored.eq(wr.data)
            known = Signal(name=f"{bank}_known")     # the read data is the watched word's
            expect = Signal.like(wr.data, name=f"{bank}_expect")
            with m.If(rd.en):
                m.d.sync += [known.eq(rd.addr == watch),
                             expect.eq(Mux(wr.en & (wr.addr == watch), wr.data, stored))]
            with m.If(known):
                props.check(f"{bank}_read", rd.data == expect,
                            f"a read of the {bank} bank returns the stored word, or the word "
                            f"being written to that address in the same cycle, and keeps it "
                            f"while en is low")
            props.cover(f"{bank}_read_during_write",
                        rd.en & wr.en & (rd.addr == watch) & (wr.addr == watch),
                        f"the {bank} bank reads an address in the cycle it is written")
