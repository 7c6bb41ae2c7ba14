"""The routing rule written again, from ``docs/router.md``, and the harness that proves
:func:`wafertile.hdl.noc.route_mask` equal to it for every header and every router position.

:func:`spec_route` is the specification the router harnesses use too: it is written from the
documented rule, output by output, without :mod:`wafertile.hdl.noc.route`.
"""

from __future__ import annotations

from amaranth.asserts import AnyConst
from amaranth.hdl import Cat, Const, Module, Mux, Value
from amaranth.lib import data

from ..config import Config
from ..hdl.flit import Port, header_layout
from ..hdl.noc import route_mask
from .harness import Harness
from .props import Properties

__all__ = ["RouteHarness", "spec_route"]


def spec_route(config: Config, header, x, y, port: Port) -> Value:
    """The outputs (bit ``p`` = port ``p``) the documented XY-tree rule names for a flit with
    ``header`` that arrived on input ``port`` of router (``x``, ``y``):

    - east if it arrived on W or L and ``x < x1``; west if it arrived on E or L and ``x > x0``;
    - in a column of the rectangle: south if ``y < y1`` unless it arrived on S; north if
      ``y > y0`` unless it arrived on N;
    - inside the rectangle: the edge port ``exit`` if ``exit`` names an edge and the router is
      on that edge, else local;
    - nothing of the above: local.
    """
    port = Port(port)
    col = (header.x0 <= x) & (x <= header.x1)
    row = (header.y0 <= y) & (y <= header.y1)
    inside = col & row
    ex = header.exit.as_value()
    outs = {}
    outs[Port.EAST] = (x < header.x1) if port in (Port.WEST, Port.LOCAL) else Const(0)
    outs[Port.WEST] = (x > header.x0) if port in (Port.EAST, Port.LOCAL) else Const(0)
    outs[Port.SOUTH] = col & (y < header.y1) if port != Port.SOUTH else Const(0)
    outs[Port.NORTH] = col & (y > header.y0) if port != Port.NORTH else Const(0)
    edge = {Port.NORTH: y == 0, Port.SOUTH: y == config.rows - 1,
            Port.WEST: x == 0, Port.EAST: x == config.cols - 1}
    leaves = Const(0)
    for side in (Port.NORTH, Port.EAST, Port.SOUTH, Port.WEST):
        here = inside & (ex == side.value) & edge[side]
        outs[side] = outs[side] | here
        leaves = leaves | here
    outs[Port.LOCAL] = inside & ~leaves
    mask = Cat(outs[p] for p in Port)
    return Mux(mask.any(), mask, 1 << Port.LOCAL.value)


class RouteHarness(Harness):
    """``route_mask`` equals :func:`spec_route` for a header and a router position (``x <
    cols``, ``y < rows``) chosen by the solver, on every input port: a combinational
    property, proved by k-induction of length 1."""

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        header = data.View(header_layout(cfg), AnyConst(cfg.header_width))
        x, y = AnyConst(cfg.x_width), AnyConst(cfg.y_width)
        props.assume("x_in_array", x < cfg.cols, "the router's column is in the array")
        props.assume("y_in_array", y < cfg.rows, "the router's row is in the array")
        for port in Port:
            props.check(f"route_from_{port.name.lower()}",
                        route_mask(cfg, header, x, y, port) == spec_route(cfg, header, x, y,
                                                                          port),
                        f"route_mask equals the documented rule for a flit that arrived on "
                        f"{port.name.lower()}, for every header and position")
