"""Numpy reference models (no simulator needed): what the RTL must do, bit for bit.

- :mod:`.core`: the SRAM bank and the MAC core at transaction level
  (:class:`~.core.CoreModel`), and the bank at cycle level;
- :mod:`.noc`: where every flit injected into a router or a mesh must be delivered, and the
  checker that names lost, duplicated, misrouted and reordered flits
  (:class:`~.noc.NocModel`);
- :mod:`.array`: the tile array running a compiled layer program (:class:`~.array.ArrayModel`)
  and the collection of its replies into Y.
"""

from .array import ArrayModel, collect_outputs, collect_reply_arrays
from .core import CoreModel, CoreResult, SramCycleModel, SramModel, saturate, wrap
from .noc import Endpoint, NocModel

__all__ = ["ArrayModel", "CoreModel", "CoreResult", "Endpoint", "NocModel", "SramCycleModel",
           "SramModel", "collect_outputs", "collect_reply_arrays", "saturate", "wrap"]
