"""The R x C tile array: one ``wafertile_tile`` module, instantiated ``rows * cols`` times.

Amaranth writes one module definition per instance of a component, so the array does not
elaborate its tiles: it converts :class:`~wafertile.hdl.tile.Tile` to Verilog once and
instantiates that module by name with :class:`~amaranth.hdl.Instance`. The Verilog size is then
that of one tile plus the wiring, whatever the array size, and the module list is the same for
every R x C. Tile coordinates are constants on the instances' ``x`` / ``y`` input ports.

Top-level ports (whole-flit link protocol of
:func:`~wafertile.hdl.router.flit_link_signature`; with ``phits > 1`` each edge port has a
serializer and a deserializer, :mod:`wafertile.hdl.phit`):

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
from ._util import ConfiguredComponent, check_config, verilog_ports
from .flit import flit_layout
from .mesh import endpoint_name, neighbour
from .phit import adapter_instances, adapter_text
from .router import PORTS, flit_link_signature

__all__ = ["TILE_MODULE", "Array", "array_verilog", "edge_ports"]

#: Verilog module name of the tile that the array instantiates.
TILE_MODULE = "wafertile_tile"


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
            members[f"{name}_in"] = In(flit_link_signature(config))
            members[f"{name}_out"] = Out(flit_link_signature(config))
        n = config.rows * config.cols
        members.update({"mac_done": Out(n), "mac_skipped": Out(n), "error": Out(n)})
        super().__init__(config, members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        width = cfg.phit_width  # the flit, or with phits one phit (edge adapters: hdl/phit.py)
        field = "phit" if cfg.phits > 1 else "flit"
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
                    source = neighbour(cfg, x, y, d)
                    if source is None:  # the array's edge: a top-level port
                        name = endpoint_name(x, y, d)
                        ext_in = getattr(self, f"{name}_in")
                        ext_out = getattr(self, f"{name}_out")
                        if cfg.phits > 1:
                            into = (Signal(name=f"{name}_pv"), Signal(width, name=f"{name}_pf"),
                                    Signal(cfg.num_vcs, name=f"{name}_pr"))
                            adapter_instances(m, name, ext_in, ext_out, into, outs[x, y, d])
                        else:
                            into = (ext_in.valid, ext_in.flit.as_value(), ext_in.ready)
                            ov, of, orr = outs[x, y, d]
                            m.d.comb += [ext_out.valid.eq(ov), ext_out.flit.eq(of),
                                         orr.eq(ext_out.ready)]
                    else:  # the neighbour's output that faces this port
                        into = outs[source]
                    ports[f"i_in_{d}__valid"], ports[f"i_in_{d}__{field}"] = into[0], into[1]
                    ports[f"o_in_{d}__ready"] = into[2]
                    ov, of, orr = outs[x, y, d]
                    ports[f"o_out_{d}__valid"], ports[f"o_out_{d}__{field}"] = ov, of
                    ports[f"i_out_{d}__ready"] = orr
                m.submodules[f"tile_x{x}_y{y}"] = Instance(TILE_MODULE, **ports)
        return m


def array_verilog(config: Config, tile_verilog: str) -> str:
    """The Verilog of module ``wafertile_array``, written directly as text.

    Same ports, names and wiring as :class:`Array` converted by Amaranth (which the board
    designs compose), but made in milliseconds: Amaranth takes ~15 s to convert the 1024
    instances of a 32 x 32 array, this takes a fraction of a second. ``tile_verilog`` is the
    tile module's Verilog (its port list decides which ports are connected).
    """
    tile_ports = {name: (d, w) for d, name, w in verilog_ports(tile_verilog, TILE_MODULE)}
    width = Shape.cast(flit_layout(config)).width
    pwidth = config.phit_width
    field = "phit" if config.phits > 1 else "flit"
    nv, n = config.num_vcs, config.rows * config.cols

    def rng(w: int) -> str:
        return f"[{w - 1}:0] " if w > 1 else ""

    ports: list[str] = ["clk", "rst"]
    decls: list[str] = ["  input clk;", "  input rst;"]
    for name, *_ in edge_ports(config):
        for sig, direction, w in ((f"{name}_in__valid", "input", 1),
                                  (f"{name}_in__flit", "input", width),
                                  (f"{name}_in__ready", "output", nv),
                                  (f"{name}_out__valid", "output", 1),
                                  (f"{name}_out__flit", "output", width),
                                  (f"{name}_out__ready", "input", nv)):
            ports.append(sig)
            decls.append(f"  {direction} {rng(w)}{sig};")
    for sig in ("mac_done", "mac_skipped", "error"):
        ports.append(sig)
        decls.append(f"  output {rng(n)}{sig};")
    lines = ["/* Generated by wafertile (hdl/array.py: array_verilog) */",
             f"module wafertile_array({', '.join(ports)});", *decls]
    edges = {(x, y, d): name for name, x, y, d in edge_ports(config)}
    for y in range(config.rows):
        for x in range(config.cols):
            for d in PORTS[1:]:
                tag = f"x{x}_y{y}_{d}"
                lines.append(f"  wire v_{tag};")
                lines.append(f"  wire {rng(pwidth)}f_{tag};")
                lines.append(f"  wire {rng(nv)}r_{tag};")
    for (x, y, d), name in edges.items():
        tag = f"x{x}_y{y}_{d}"
        if config.phits > 1:  # edge adapters between the host's flits and the tile's phits
            lines += [f"  wire {name}_pv;", f"  wire {rng(pwidth)}{name}_pf;",
                      f"  wire {rng(nv)}{name}_pr;"]
            lines += adapter_text(name, f"{name}_in", f"{name}_out",
                                  (f"{name}_pv", f"{name}_pf", f"{name}_pr"),
                                  (f"v_{tag}", f"f_{tag}", f"r_{tag}"))
            continue
        lines.append(f"  assign {name}_out__valid = v_{tag};")
        lines.append(f"  assign {name}_out__flit = f_{tag};")
        lines.append(f"  assign r_{tag} = {name}_out__ready;")
    for y in range(config.rows):
        for x in range(config.cols):
            k = y * config.cols + x
            conns = {"clk": "clk", "rst": "rst",
                     "x": f"{config.x_width}'d{x}", "y": f"{config.y_width}'d{y}",
                     "mac_done": f"mac_done[{k}]" if n > 1 else "mac_done",
                     "mac_skipped": f"mac_skipped[{k}]" if n > 1 else "mac_skipped",
                     "error": f"error[{k}]" if n > 1 else "error"}
            for d in PORTS[1:]:
                source = neighbour(config, x, y, d)
                if source is None and config.phits > 1:
                    name = endpoint_name(x, y, d)
                    into = (f"{name}_pv", f"{name}_pf", f"{name}_pr")
                elif source is None:
                    name = endpoint_name(x, y, d)
                    into = (f"{name}_in__valid", f"{name}_in__flit", f"{name}_in__ready")
                else:
                    tag = "x{}_y{}_{}".format(*source)
                    into = (f"v_{tag}", f"f_{tag}", f"r_{tag}")
                tag = f"x{x}_y{y}_{d}"
                conns.update({f"in_{d}__valid": into[0], f"in_{d}__{field}": into[1],
                              f"in_{d}__ready": into[2], f"out_{d}__valid": f"v_{tag}",
                              f"out_{d}__{field}": f"f_{tag}", f"out_{d}__ready": f"r_{tag}"})
            # Ports Amaranth left out of the tile (zero width) are simply not connected.
            body_conns = ",\n".join(f"    .{port}({conns[port]})" for port in tile_ports
                                    if port in conns)
            unknown = set(tile_ports) - set(conns)
            if unknown:
                raise AssertionError(f"tile ports not wired by the array: {sorted(unknown)}")
            lines.append(f"  {TILE_MODULE} tile_x{x}_y{y} (\n{body_conns}\n  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"
