"""The routing function: dimension-order (X then Y) with XY-tree multicast to a rectangle."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value

from ...config import Config
from ..flit import Port

__all__ = ["route_mask"]


def route_mask(config: Config, header, x, y, port: Port) -> Value:
    """The outputs (bit ``p`` = :class:`~wafertile.hdl.flit.Port` ``p``) a flit with ``header``
    takes at router (``x``, ``y``).

    ``port`` is the (constant) input port the flit arrived on. The rule
    (:class:`wafertile.sim.models.noc.NocModel` implements the same rule independently):

    - east if ``x < x1`` and the flit travels east or starts here (arrived on W or local);
      west if ``x > x0`` and it travels west or starts here (arrived on E or local); a flit
      that arrived on N or S never turns east or west, so a flit injected at a north or south
      edge port reaches only its own column;
    - in a column of the rectangle (``x0 <= x <= x1``): south if ``y < y1`` unless it travels
      north (arrived on S), north if ``y > y0`` unless it travels south (arrived on N);
    - in the rectangle: out of the edge port ``exit`` if this router is on that edge of the
      array, else local;
    - a flit that would go nowhere (a malformed rectangle, x0 > x1 or y0 > y1, or a flit that
      entered at a north or south edge port outside the rectangle's columns) is delivered
      locally, so that it can never block its buffer.
    """
    port = Port(port)
    x0, x1, y0, y1 = header.x0, header.x1, header.y0, header.y1
    ex = header.exit.as_value()
    east = (x < x1) if port in (Port.LOCAL, Port.WEST) else Const(0)
    west = (x > x0) if port in (Port.LOCAL, Port.EAST) else Const(0)
    in_x = (x >= x0) & (x <= x1)
    south = in_x & (y < y1) if port is not Port.SOUTH else Const(0)
    north = in_x & (y > y0) if port is not Port.NORTH else Const(0)
    in_rect = in_x & (y >= y0) & (y <= y1)
    on_edge = {Port.NORTH: y == 0, Port.EAST: x == config.cols - 1,
               Port.SOUTH: y == config.rows - 1, Port.WEST: x == 0}
    leave = {d: in_rect & (ex == d.value) & on_edge[d] for d in on_edge}
    stay = in_rect & ~(leave[Port.NORTH] | leave[Port.EAST] | leave[Port.SOUTH]
                       | leave[Port.WEST])
    raw = Cat(stay, north | leave[Port.NORTH], east | leave[Port.EAST],
              south | leave[Port.SOUTH], west | leave[Port.WEST])
    return Mux(raw == 0, 1, raw)
