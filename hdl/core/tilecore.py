"""The tile core: the MAC core of the configuration's number format wired to its SRAM bank."""

from __future__ import annotations

from collections.abc import Mapping

from amaranth.hdl import Module
from amaranth.lib import wiring

from ...config import Config
from .._util import ConfiguredComponent
from .control import core_ports, second_act_read
from .fpmac import FpMacCore
from .mac import MacCore
from .ops import OPS, OpTable
from .sram import SramBank

__all__ = ["TileCore", "make_mac_core"]


def make_mac_core(config: Config, ops: OpTable = OPS, units: Mapping[str, type] | None = None
                  ) -> MacCore | FpMacCore:
    """The MAC core of ``config.dtype`` executing ``ops`` (with ``units``, :mod:`.units`):
    :class:`MacCore` for int8 / int16, :class:`FpMacCore` for fp16 / bf16."""
    return (FpMacCore if config.is_float else MacCore)(config, ops, units)


class TileCore(ConfiguredComponent):
    """The compute part of a tile: the MAC core of ``config.dtype``
    (:func:`make_mac_core`) wired to its :class:`SramBank`.

    Same stream interface, latency and backpressure behaviour as the MAC core; the memory
    ports are internal. ``ops``: the operation table (by default :data:`~.ops.OPS`);
    ``units``: units added to the core's or replacing them (:mod:`.units`).
    """

    #: the bank's class (a faulty subclass only in the formal flow's mutations)
    _bank_class = SramBank

    def __init__(self, config: Config, ops: OpTable = OPS,
                 units: Mapping[str, type] | None = None):
        self._ops = ops
        self._units = units
        super().__init__(config, core_ports(config))

    @classmethod
    def check(cls, config: object, ops: OpTable = OPS,
              units: Mapping[str, type] | None = None) -> None:
        super().check(config)
        (FpMacCore if config.is_float else MacCore).check(config, ops, units)

    @property
    def ops(self) -> OpTable:
        """The operation table the core executes."""
        return self._ops

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = make_mac_core(self.config, self.ops, self._units)
        second = second_act_read(self.ops, self.config)
        m.submodules.sram = sram = self._bank_class(self.config, second)
        for name in ("act_r", "act_w", "acc_r", "acc_w", *(("act_r2",) if second else ())):
            wiring.connect(m, getattr(mac, name), getattr(sram, name))
        wiring.connect(m, wiring.flipped(self.i), mac.i)
        wiring.connect(m, mac.o, wiring.flipped(self.o))
        m.d.comb += [self.o_tag.eq(mac.o_tag), self.mac_done.eq(mac.mac_done),
                     self.mac_skipped.eq(mac.mac_skipped), self.act_written.eq(mac.act_written),
                     self.error.eq(mac.error)]
        return m
