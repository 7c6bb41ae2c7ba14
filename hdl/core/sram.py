"""The tile SRAM bank: activations and accumulators, in block RAM."""

from __future__ import annotations

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out

from ...config import Config
from .._util import ConfiguredComponent

__all__ = ["SramBank", "bank_ports"]


def bank_ports(config: Config, second_read: bool = False) -> dict[str, wiring.Member]:
    """The memory-side ports of a bank (the MAC core uses them flipped): four, and with
    ``second_read`` a second activation read port ``act_r2``."""
    act = {"addr_width": config.act_addr_width, "shape": signed(config.data_width)}
    acc = {"addr_width": config.acc_addr_width, "shape": signed(config.acc_width)}
    ports = {
        "act_r": Out(ReadPort.Signature(**act)),
        "act_w": Out(WritePort.Signature(**act)),
        "acc_r": Out(ReadPort.Signature(**acc)),
        "acc_w": Out(WritePort.Signature(**acc)),
    }
    if second_read:
        ports["act_r2"] = Out(ReadPort.Signature(**act))
    return ports


class SramBank(ConfiguredComponent):
    """A tile's memory: an activation bank and an accumulator bank.

    Each bank is a simple dual-port memory (one synchronous read port, one write port), the
    shape that maps onto one or more FPGA block RAMs (ECP5 DP16KD, iCE40 SB_RAM40_4K) with no
    logic around them. Two banks with separate ports are what lets the MAC core sustain one MAC
    per cycle: in the same cycle it reads an activation, reads an accumulator and writes an
    accumulator (and may write an activation), with no port shared between two uses.

    Read ports are synchronous (data one cycle after the address, held while ``en`` is low) and
    transparent: a read in the same cycle as a write to the same address returns the word being
    written. This is what lets the MAC core update one accumulator in back-to-back cycles with
    no forwarding logic of its own. Contents start at zero and are not cleared by reset.

    A float tile that trains (GRAD reads two activations) has a second read port on the
    activation bank, ``act_r2``, transparent like the first (on an FPGA, a copy of the
    activation block RAM).

    Parameters
    ----------
    config : Config
        Uses ``data_width``, ``acc_width``, ``act_depth`` and ``acc_depth``.
    second_read : bool
        Add ``act_r2``.

    Members
    -------
    act_r, acc_r : ``Out(ReadPort.Signature(...))``
        Read ports of the activation and accumulator banks (``en``, ``addr``, ``data``).
    act_r2 : ``Out(ReadPort.Signature(...))``
        With ``second_read``: the activation bank's second read port.
    act_w, acc_w : ``Out(WritePort.Signature(...))``
        Write ports (``en``, ``addr``, ``data``).
    """

    #: the accumulator read port is transparent for its write port (False only in the formal
    #: flow's ``core_wrong_stage`` mutation)
    _acc_transparent = True

    def __init__(self, config: Config, second_read: bool = False):
        self._second_read = second_read
        super().__init__(config, bank_ports(config, second_read))

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.act = act = Memory(shape=signed(cfg.data_width), depth=cfg.act_depth,
                                        init=[])
        m.submodules.acc = acc = Memory(shape=signed(cfg.acc_width), depth=cfg.acc_depth,
                                        init=[])
        # Each read port is transparent for its bank's write port: a read in the cycle of a
        # write to the same address returns the new word. Block RAMs leave that collision
        # undefined across ports, so Yosys adds a small bypass (measured: 66 LUT4 + 50 FF on
        # ECP5 for both banks, fewer than the old-data emulation a non-transparent port needs).
        act_w = act.write_port()
        acc_w = acc.write_port()
        wiring.connect(m, wiring.flipped(self.act_r), act.read_port(transparent_for=(act_w,)))
        if self._second_read:
            wiring.connect(m, wiring.flipped(self.act_r2),
                           act.read_port(transparent_for=(act_w,)))
        wiring.connect(m, wiring.flipped(self.act_w), act_w)
        acc_for = (acc_w,) if self._acc_transparent else ()
        wiring.connect(m, wiring.flipped(self.acc_r), acc.read_port(transparent_for=acc_for))
        wiring.connect(m, wiring.flipped(self.acc_w), acc_w)
        return m
