"""The grid: which output drives each router input, and where the fabric's edge ports are.

This is the one description of an R x C mesh's wiring. The Verilog top of the array and of
the routers-only mesh (:mod:`wafertile.hdl.grid`), the Amaranth view of the array used by
board designs, and the NoC model's expectations all follow it:

- the output ``d`` of the router at (x, y) (``d`` one of N, E, S, W) drives input
  ``d.opposite`` of the neighbour at (x + dx, y + dy) (:attr:`Port.step`), when that
  neighbour exists;
- where it does not, the output and the input of that side are an *edge port* of the fabric:
  the north and south edges have one per column (indexed by x), the west and east edges one
  per row (indexed by y).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import Config
from ..flit import MESH_PORTS, Port

__all__ = ["Edge", "edges", "neighbour"]


def neighbour(config: Config, x: int, y: int, port: Port) -> tuple[int, int, Port] | None:
    """The (x, y, port) of the router input that output ``port`` of router (x, y) drives:
    the neighbour's port facing back; ``None`` for the local port and at the array's edge."""
    port = Port(port)
    if port is Port.LOCAL:
        return None
    dx, dy = port.step
    nx, ny = x + dx, y + dy
    if 0 <= nx < config.cols and 0 <= ny < config.rows:
        return nx, ny, port.opposite
    return None


@dataclass(frozen=True)
class Edge:
    """One side of the array: its edge ports, one per column (N, S) or per row (W, E).

    ``index_of(x, y)`` is the edge port of router (x, y) on this side (the column or the
    row); ``router(i)`` is the router of edge port ``i``.
    """

    port: Port
    count: int
    rows: int
    cols: int

    @property
    def by_column(self) -> bool:
        return self.port in (Port.NORTH, Port.SOUTH)

    def router(self, i: int) -> tuple[int, int]:
        if self.port is Port.NORTH:
            return i, 0
        if self.port is Port.SOUTH:
            return i, self.rows - 1
        if self.port is Port.WEST:
            return 0, i
        return self.cols - 1, i

    def index_of(self, x: int, y: int) -> int:
        return x if self.by_column else y


def edges(config: Config) -> tuple[Edge, ...]:
    """The four sides of the array, in port order (N, E, S, W)."""
    return tuple(Edge(port, config.cols if port in (Port.NORTH, Port.SOUTH) else config.rows,
                      config.rows, config.cols) for port in MESH_PORTS)
