"""The network on chip: links, routing, buffers, arbiters, phit adapters and routers.

Modules, each importing only the ones listed before it:

- :mod:`.link`: :class:`~.link.LinkSignature`, the valid/word/ready-per-VC link;
- :mod:`.route`: :func:`~.route.route_mask`, the XY-tree routing function;
- :mod:`.topology`: which output drives which input in an R x C grid, and the edge ports;
- :mod:`.arbiter`: :class:`~.arbiter.RoundRobinArbiter`;
- :mod:`.buffer`: :class:`~.buffer.VcBuffer`, per-VC FIFOs in one LUT RAM;
- :mod:`.phit`: phit-serial links in lockstep slots, :class:`~.phit.PhitTx`,
  :class:`~.phit.PhitRx`;
- :mod:`.base`: :class:`~.base.Router`, what every micro-architecture shares;
- :mod:`.compact`, :mod:`.parallel`, :mod:`.lite`, :mod:`.voq`: one micro-architecture each;
- :mod:`.router`: :func:`~.router.make_router`, which picks the class from the configuration.
"""

from .arbiter import RoundRobinArbiter, arbitrate
from .base import Router
from .buffer import VcBuffer
from .compact import CompactRouter
from .link import LinkInterface, LinkSignature
from .lite import LiteRouter
from .parallel import ParallelRouter
from .phit import PhitRx, PhitTx, phase_counter
from .route import route_mask
from .router import ROUTERS, make_router
from .topology import Edge, edges, neighbour
from .voq import VoqRouter

__all__ = ["ROUTERS", "CompactRouter", "Edge", "LinkInterface", "LinkSignature", "LiteRouter",
           "ParallelRouter", "PhitRx", "PhitTx", "RoundRobinArbiter", "Router", "VcBuffer",
           "VoqRouter", "arbitrate", "edges", "make_router", "neighbour", "phase_counter",
           "route_mask"]
