"""The tile core: the sparse-aware MAC core and its SRAM bank.

- :mod:`.sram`: :class:`~.sram.SramBank`, the activation and accumulator banks in block RAM;
- :mod:`.mac`: :class:`~.mac.MacCore`, the integer pipeline (int8 / int16);
- :mod:`.fp`: the floating-point units (FP16 / BF16 products, FP32 sums, the hand-off);
- :mod:`.fpmac`: :class:`~.fpmac.FpMacCore`, the floating-point pipeline (fp16 / bf16);
- :mod:`.tilecore`: :class:`~.tilecore.TileCore` (the core of the configuration's number
  format wired to its bank) and :func:`~.tilecore.make_mac_core`.
"""

from .fpmac import FpMacCore
from .mac import MacCore, core_ports
from .sram import SramBank, bank_ports
from .tilecore import TileCore, make_mac_core

__all__ = ["FpMacCore", "MacCore", "SramBank", "TileCore", "bank_ports", "core_ports",
           "make_mac_core"]
