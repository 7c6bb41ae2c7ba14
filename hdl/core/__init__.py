"""The tile core: the sparse-aware MAC core and its SRAM bank.

- :mod:`.sram`: :class:`~.sram.SramBank`, the activation and accumulator banks in block RAM;
- :mod:`.mac`: :class:`~.mac.MacCore` (the pipeline) and :class:`~.mac.TileCore` (the core
  wired to its bank).
"""

from .mac import MacCore, TileCore, core_ports
from .sram import SramBank, bank_ports

__all__ = ["MacCore", "SramBank", "TileCore", "bank_ports", "core_ports"]
