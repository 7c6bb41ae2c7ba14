"""The R x C tile array: one ``wafertile_tile`` module, instantiated ``rows * cols`` times.

Amaranth writes one module definition per instance of a component, so the array does not
elaborate its tiles: it converts :class:`~wafertile.hdl.tile.Tile` to Verilog once and
instantiates that module by name with :class:`~amaranth.hdl.Instance`. The Verilog size is then
that of one tile plus the wiring, whatever the array size, and the module list is the same for
every R x C. Tile coordinates are constants on the instances' ``x`` / ``y`` input ports.

Top-level ports (link protocol of :func:`~wafertile.hdl.router.link_signature`):

- ``w_y<y>_in`` / ``w_y<y>_out``: west edge of row ``y``, where the host injects flits and
  receives replies (``exit = WEST``); likewise ``e_y<y>_*``, ``n_x<x>_*`` and ``s_x<x>_*``
  for the east, north and south edges (unused edge inputs are tied to ``valid = 0`` and unused
  outputs to ``ready = 0`` by the user);
- ``mac_done``, ``mac_skipped``, ``error``: one bit per tile, bit ``y * cols + x``.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Shape, Signal
from amaranth.lib.wiring import In, Out

from ..config import Config
from ._util import ConfiguredComponent, check_config
from .flit import flit_layout
from .router import PORTS, link_signature

__all__ = ["TILE_MODULE", "Array", "edge_ports"]

#: Verilog module name of the tile that the array instantiates.
TILE_MODULE = "wafertile_tile"
# direction -> (dx, dy, the neighbour's port that faces back)
_STEP = {"n": (0, -1, "s"), "e": (1, 0, "w"), "s": (0, 1, "n"), "w": (-1, 0, "e")}


def edge_ports(config: Config) -> list[tuple[str, int, int, str]]:
    """Every edge port as (name, x, y, direction): west and east per row, north and south
    per column."""
    out = [(f"w_y{y}", 0, y, "w") for y in range(config.rows)]
    out += [(f"e_y{y}", config.cols - 1, y, "e") for y in range(config.rows)]
    out += [(f"n_x{x}", x, 0, "n") for x in range(config.cols)]
    out += [(f"s_x{x}", x, config.rows - 1, "s") for x in range(config.cols)]
    return out


class Array(ConfiguredComponent):
    """``config.rows`` x ``config.cols`` tiles (instances of ``wafertile_tile``), linked.

    See the module documentation for the ports. The tile module itself must be emitted beside
    this one (:func:`wafertile.hdl.generate.emit` does both).
    """

    def __init__(self, config: Config):
        check_config(self, config)
        members = {}
        for name, *_ in edge_ports(config):
            members[f"{name}_in"] = In(link_signature(config))
            members[f"{name}_out"] = Out(link_signature(config))
        n = config.rows * config.cols
        members.update({"mac_done": Out(n), "mac_skipped": Out(n), "error": Out(n)})
        super().__init__(config, members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        width = Shape.cast(flit_layout(cfg)).width
        edges = {(x, y, d): name for name, x, y, d in edge_ports(cfg)}
        # The wires each tile drives on its four outputs: (x, y, dir) -> (valid, flit, ready).
        outs = {}
        for y in range(cfg.rows):
            for x in range(cfg.cols):
                for d in PORTS[1:]:
                    tag = f"x{x}_y{y}_{d}"
                    outs[x, y, d] = (Signal(name=f"v_{tag}"), Signal(width, name=f"f_{tag}"),
                                     Signal(cfg.num_vcs, name=f"r_{tag}"))
        for y in range(cfg.rows):
            for x in range(cfg.cols):
                k = y * cfg.cols + x
                ports = {
                    "i_clk": ClockSignal("sync"), "i_rst": ResetSignal("sync"),
                    "i_x": Const(x, cfg.x_width), "i_y": Const(y, cfg.y_width),
                    "o_mac_done": self.mac_done[k], "o_mac_skipped": self.mac_skipped[k],
                    "o_error": self.error[k],
                }
                for d in PORTS[1:]:
                    dx, dy, back = _STEP[d]
                    if (x, y, d) in edges:  # the array's edge: a top-level port
                        ext_in = getattr(self, f"{edges[x, y, d]}_in")
                        ext_out = getattr(self, f"{edges[x, y, d]}_out")
                        into = (ext_in.valid, ext_in.flit.as_value(), ext_in.ready)
                        ov, of, orr = outs[x, y, d]
                        m.d.comb += [ext_out.valid.eq(ov), ext_out.flit.eq(of),
                                     orr.eq(ext_out.ready)]
                    else:  # the neighbour's output that faces this port
                        into = outs[x + dx, y + dy, back]
                    ports[f"i_in_{d}__valid"], ports[f"i_in_{d}__flit"] = into[0], into[1]
                    ports[f"o_in_{d}__ready"] = into[2]
                    ov, of, orr = outs[x, y, d]
                    ports[f"o_out_{d}__valid"], ports[f"o_out_{d}__flit"] = ov, of
                    ports[f"i_out_{d}__ready"] = orr
                m.submodules[f"tile_x{x}_y{y}"] = Instance(TILE_MODULE, **ports)
        return m
