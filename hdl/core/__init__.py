"""The tile core: the sparse-aware MAC core and its SRAM bank.

- :mod:`.ops`: :data:`~.ops.OPS`, the operation table every per-opcode decision derives from;
- :mod:`.sram`: :class:`~.sram.SramBank`, the activation and accumulator banks in block RAM;
- :mod:`.units`: the units an operation's row names (products, sums, the hand-off units);
- :mod:`.control`: the decoder and its control word, and the pipeline control both cores
  share;
- :mod:`.mac`: :class:`~.mac.MacCore`, the integer pipeline (int8 / int16);
- :mod:`.fp`: the floating-point units (FP16 / BF16 products, FP32 sums, the hand-off);
- :mod:`.fpmac`: :class:`~.fpmac.FpMacCore`, the floating-point pipeline (fp16 / bf16);
- :mod:`.tilecore`: :class:`~.tilecore.TileCore` (the core of the configuration's number
  format wired to its bank) and :func:`~.tilecore.make_mac_core`.
"""

from .control import core_ports
from .fpmac import FpMacCore
from .mac import MacCore
from .ops import OPS, Emit, Op, OpTable
from .sram import SramBank, bank_ports
from .tilecore import TileCore, make_mac_core

__all__ = ["OPS", "Emit", "FpMacCore", "MacCore", "Op", "OpTable", "SramBank", "TileCore",
           "bank_ports", "core_ports", "make_mac_core"]
