"""The top of a grid of identical nodes, written as Verilog with ``generate`` loops.

Two grids are emitted this way: the tile **array** (``wafertile_array`` over
``wafertile_tile``) and the routers-only **mesh** (``wafertile_mesh`` over
``wafertile_router``, with every local port exposed too). The node module is converted by
Amaranth once and instantiated in two nested ``generate`` loops over rows and columns, with its
coordinates as constants derived from the ``genvar`` s, and wired by the rule of
:mod:`wafertile.hdl.noc.topology`. The size of the top is therefore the same for every R x C
(a 1024 x 1024 array takes as many bytes as a 4 x 4 one, bar a few digits), and it is written
in milliseconds.

Ports of the top (``docs/flit.md``): per side of the array, a packed group of links into the
fabric and one out of it; element ``i`` of a group is the edge port of column ``i`` (north
``n_*``, south ``s_*``) or row ``i`` (west ``w_*``, east ``e_*``); the mesh's local groups
``l_in`` / ``l_out`` have one element per router, ``i = y * cols + x``::

    <side>_in__valid  [count]           <side>_out__valid  [count]
    <side>_in__flit   [count * flit]    <side>_out__flit   [count * flit]
    <side>_in__ready  [count * vcs]     <side>_out__ready  [count * vcs]

Element ``i`` of ``__flit`` is bits ``i * flit_width`` upwards, of ``__ready`` bits
``i * num_vcs`` upwards; each element follows the whole-flit link protocol
(:mod:`wafertile.hdl.noc.link`). The array also has ``mac_done``, ``mac_skipped``,
``act_written`` and ``error``, one bit per tile (``y * cols + x``), and with ``counters`` the
tiles' event counters, ``events`` (:mod:`wafertile.hdl.counters`). With ``phits > 1`` every
edge port has a serializer and a deserializer (:mod:`wafertile.hdl.noc.phit`) inside the top;
the ports are whole flits all the same.

:class:`Array` is the array as an Amaranth component (an instance of the emitted top), for
designs that compose it, such as the board tops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal
from amaranth.lib.wiring import In, Out

from ..config import Config
from ._util import ConfiguredComponent
from .counters import event_bits
from .flit import MESH_PORTS, Port
from .noc import ROUTERS, LinkSignature, edges
from .ports import verilog_ports

__all__ = ["ARRAY", "MESH", "PHIT_RX_MODULE", "PHIT_RX_VC_MODULE", "PHIT_TX_MODULE", "Array",
           "Grid", "PortGroup", "grid_ports", "grid_verilog", "port_groups"]

#: Verilog module names of the phit adapters that a grid instantiates at its endpoints.
PHIT_TX_MODULE = "wafertile_phit_tx"
PHIT_RX_MODULE = "wafertile_phit_rx"
PHIT_RX_VC_MODULE = "wafertile_phit_rx_vc"


@dataclass(frozen=True)
class Grid:
    """A kind of grid: its top module, its node module and what the top exposes."""

    top: str
    node: str
    #: every node's local port is a pair of top-level groups (the mesh)
    local: bool
    #: one-bit node outputs gathered into one bit per node at the top
    status: tuple[str, ...] = ()
    #: the deserializers at the endpoints (with phits) keep one register per VC (the mesh:
    #: a refused VC never holds up another), or one for all VCs (the array: its edges are
    #: sinks that take every flit in the end)
    rx_per_vc: bool = False

    def outputs(self, config: Config) -> dict[str, int]:
        """The node outputs gathered at the top, name -> bits per node: :attr:`status`, and
        the array's ``events`` with ``config.counters`` (:mod:`.counters`)."""
        out = dict.fromkeys(self.status, 1)
        if self.status and config.counters:
            out["events"] = event_bits()
        return out

    @property
    def rx_module(self) -> str:
        """The Verilog module name of the deserializer at the endpoints."""
        return PHIT_RX_VC_MODULE if self.rx_per_vc else PHIT_RX_MODULE


ARRAY = Grid("wafertile_array", "wafertile_tile", local=False,
             status=("mac_done", "mac_skipped", "act_written", "error"))
MESH = Grid("wafertile_mesh", "wafertile_router", local=True, rx_per_vc=True)


@dataclass(frozen=True)
class PortGroup:
    """A packed group of whole-flit links at the top: ``into`` the fabric or out of it."""

    name: str
    into: bool
    count: int
    #: the side (N, E, S, W), or LOCAL for the mesh's local ports
    port: Port

    def element(self, config: Config, x: int, y: int) -> int:
        """The element of router (x, y)'s port in this group."""
        if self.port is Port.LOCAL:
            return y * config.cols + x
        return x if self.port in (Port.NORTH, Port.SOUTH) else y


def port_groups(config: Config, grid: Grid) -> list[PortGroup]:
    """The link groups of the top: per side ``<s>_in`` and ``<s>_out``, then (mesh) ``l_in``
    and ``l_out``."""
    groups = []
    for edge in edges(config):
        for into in (True, False):
            groups.append(PortGroup(f"{edge.port.letter}_{'in' if into else 'out'}", into,
                                    edge.count, edge.port))
    if grid.local:
        n = config.rows * config.cols
        groups += [PortGroup("l_in", True, n, Port.LOCAL), PortGroup("l_out", False, n,
                                                                      Port.LOCAL)]
    return groups


@dataclass(frozen=True)
class _TopPort:
    name: str
    direction: str
    count: int         # elements
    unit: int          # bits per element
    layout: str | None = None


def _top_ports(config: Config, grid: Grid) -> list[_TopPort]:
    nv, fw, n = config.num_vcs, config.flit_width, config.rows * config.cols
    out = []
    for g in port_groups(config, grid):
        fwd, back = ("input", "output") if g.into else ("output", "input")
        out += [_TopPort(f"{g.name}__valid", fwd, g.count, 1),
                _TopPort(f"{g.name}__flit", fwd, g.count, fw, "flit"),
                _TopPort(f"{g.name}__ready", back, g.count, nv)]
    return out + [_TopPort(s, "output", n, w) for s, w in grid.outputs(config).items()]


def grid_ports(config: Config, grid: Grid) -> list[dict[str, Any]]:
    """The Verilog ports of the top as ``{name, direction, width[, layout], elements}``, in
    declaration order (the manifest's ``ports``; clock and reset have no ``elements``)."""
    ports: list[dict[str, Any]] = [{"name": "clk", "direction": "input", "width": 1},
                                   {"name": "rst", "direction": "input", "width": 1}]
    for t in _top_ports(config, grid):
        entry: dict[str, Any] = {"name": t.name, "direction": t.direction,
                                 "width": t.count * t.unit}
        if t.layout:
            entry["layout"] = t.layout
        entry["elements"] = t.count
        ports.append(entry)
    return ports


def _node_links(config: Config, grid: Grid) -> dict[str, str]:
    """Port of the node -> the name of its word member ("flit" or "phit")."""
    router = ROUTERS[config.router_arch]
    mesh = LinkSignature.between_routers(config).word_name
    words = {f"in_{p.letter}": mesh for p in MESH_PORTS}
    words.update({f"out_{p.letter}": mesh for p in MESH_PORTS})
    if grid.local:
        words["in_l"] = router.input_signature(config, Port.LOCAL).word_name
        words["out_l"] = mesh
    return words


def grid_verilog(config: Config, grid: Grid, node_verilog: str) -> str:
    """The Verilog of ``grid.top`` for ``config``, written as text.

    ``node_verilog`` is the Verilog that defines ``grid.node`` (its port list is checked
    against what the top connects).

    Raises
    ------
    AssertionError
        If the node module's ports are not the ones the top wires (an internal error).
    """
    words = _node_links(config, grid)
    expected = {"clk", "rst", "x", "y", *grid.outputs(config)}
    for link, word in words.items():
        expected |= {f"{link}__valid", f"{link}__{word}", f"{link}__ready"}
    found = {name for _, name, _ in verilog_ports(node_verilog, grid.node)}
    if found != expected:
        raise AssertionError(f"{grid.node} ports differ from what {grid.top} wires: "
                             f"missing {sorted(expected - found)}, extra "
                             f"{sorted(found - expected)}")
    phits = config.phits > 1
    tops = _top_ports(config, grid)
    lines = [f"/* Generated by wafertile (hdl/grid.py) for a {config.rows} x {config.cols} "
             f"{grid.top.removeprefix('wafertile_')} */",
             f"module {grid.top}(clk, rst, {', '.join(t.name for t in tops)});",
             f"  localparam R = {config.rows}, C = {config.cols}, N = R * C;",
             f"  localparam FW = {config.flit_width};  // bits of a flit (the top's ports)",
             f"  localparam LW = {config.phit_width};  // bits a cycle on a link between "
             f"routers",
             f"  localparam NV = {config.num_vcs};  // virtual channels",
             f"  localparam XW = {config.x_width}, YW = {config.y_width};  // coordinates",
             "  input clk;", "  input rst;"]
    # numeric widths, one declaration a line (the form Yosys writes and verilog_ports reads)
    lines += [f"  {t.direction} [{t.count * t.unit - 1}:0] {t.name};" for t in tops]
    lines.append("  // The links of every node by side (index y * C + x): <s>_iv, <s>_iw, <s>_ir "
                 "into the node's input,")
    lines.append("  // <s>_ov, <s>_ow, <s>_or out of its output.")
    sides = list(MESH_PORTS) + ([Port.LOCAL] if grid.local else [])
    for p in sides:
        s = p.letter
        lines.append(f"  wire [N-1:0] {s}_iv, {s}_ov;")
        iw = "FW" if p is Port.LOCAL else "LW"  # the local input takes whole flits
        lines.append(f"  wire [N*{iw}-1:0] {s}_iw;")
        lines.append(f"  wire [N*LW-1:0] {s}_ow;")
        lines.append(f"  wire [N*NV-1:0] {s}_ir, {s}_or;")
    lines += ["  genvar x, y;", "  generate",
              "    for (y = 0; y < R; y = y + 1) begin : row",
              "      for (x = 0; x < C; x = x + 1) begin : col",
              "        localparam integer K = y * C + x;",
              "        localparam [XW-1:0] X = x;",
              "        localparam [YW-1:0] Y = y;"]
    conns = ["clk(clk)", "rst(rst)", "x(X)", "y(Y)"]
    for p in sides:
        s = p.letter
        iw = "FW" if p is Port.LOCAL else "LW"
        conns += [f"in_{s}__valid({s}_iv[K])",
                  f"in_{s}__{words['in_' + s]}({s}_iw[K*{iw} +: {iw}])",
                  f"in_{s}__ready({s}_ir[K*NV +: NV])", f"out_{s}__valid({s}_ov[K])",
                  f"out_{s}__{words['out_' + s]}({s}_ow[K*LW +: LW])",
                  f"out_{s}__ready({s}_or[K*NV +: NV])"]
    conns += [f"{st}({st}[K])" if w == 1 else f"{st}({st}[K*{w} +: {w}])"
              for st, w in grid.outputs(config).items()]
    body = ",\n".join(f"          .{c}" for c in conns)
    lines.append(f"        {grid.node} node (\n{body}\n        );")
    for p in MESH_PORTS:
        lines += _side(config, grid, p, phits)
    if grid.local:
        lines += _local(grid, phits)
    lines += ["      end", "    end", "  endgenerate", "endmodule"]
    return "\n".join(lines) + "\n"


def _side(config: Config, grid: Grid, p: Port, phits: bool) -> list[str]:
    """The generate branches of one side of a node: from a neighbour, or an edge port."""
    s, b = p.letter, p.opposite.letter
    dx, dy = p.step
    cond = {Port.NORTH: "y > 0", Port.SOUTH: "y < R - 1", Port.WEST: "x > 0",
            Port.EAST: "x < C - 1"}[p]
    j = f"K {'+' if dx + dy * 1 > 0 else '-'} {'C' if dy else '1'}"
    i = "x" if p in (Port.NORTH, Port.SOUTH) else "y"
    out = [f"        if ({cond}) begin : {s}_link  // from the neighbour's {b} output",
           f"          assign {s}_iv[K] = {b}_ov[{j}];",
           f"          assign {s}_iw[K*LW +: LW] = {b}_ow[({j})*LW +: LW];",
           f"          assign {b}_or[({j})*NV +: NV] = {s}_ir[K*NV +: NV];",
           f"        end else begin : {s}_edge  // edge port {i} of {s}_in / {s}_out"]
    if phits:
        out += _adapters(f"{s}_in", f"{s}_out", i, s, grid.rx_module, tx=True)
    else:
        out += [f"          assign {s}_iv[K] = {s}_in__valid[{i}];",
                f"          assign {s}_iw[K*LW +: LW] = {s}_in__flit[{i}*FW +: FW];",
                f"          assign {s}_in__ready[{i}*NV +: NV] = {s}_ir[K*NV +: NV];",
                f"          assign {s}_out__valid[{i}] = {s}_ov[K];",
                f"          assign {s}_out__flit[{i}*FW +: FW] = {s}_ow[K*LW +: LW];",
                f"          assign {s}_or[K*NV +: NV] = {s}_out__ready[{i}*NV +: NV];"]
    return [*out, "        end"]


def _local(grid: Grid, phits: bool) -> list[str]:
    """The mesh's local port of a node: element K of l_in / l_out."""
    out = ["        assign l_iv[K] = l_in__valid[K];",
           "        assign l_iw[K*FW +: FW] = l_in__flit[K*FW +: FW];",
           "        assign l_in__ready[K*NV +: NV] = l_ir[K*NV +: NV];"]
    if phits:
        return out + _adapters("l_in", "l_out", "K", "l", grid.rx_module, tx=False)
    return [*out, "        assign l_out__valid[K] = l_ov[K];",
            "        assign l_out__flit[K*FW +: FW] = l_ow[K*LW +: LW];",
            "        assign l_or[K*NV +: NV] = l_out__ready[K*NV +: NV];"]


def _adapters(into: str, outof: str, i: str, s: str, rx_module: str, *, tx: bool) -> list[str]:
    """A serializer from element ``i`` of group ``into`` to the node's input ``s`` (``tx``)
    and a deserializer from the node's output ``s`` to element ``i`` of group ``outof``."""
    out = []
    if tx:
        out.append(f"          {PHIT_TX_MODULE} tx (.clk(clk), .rst(rst), "
                   f".i__valid({into}__valid[{i}]), .i__flit({into}__flit[{i}*FW +: FW]), "
                   f".i__ready({into}__ready[{i}*NV +: NV]), .o__valid({s}_iv[K]), "
                   f".o__phit({s}_iw[K*LW +: LW]), .o__ready({s}_ir[K*NV +: NV]));")
    out.append(f"          {rx_module} rx (.clk(clk), .rst(rst), .i__valid({s}_ov[K]), "
               f".i__phit({s}_ow[K*LW +: LW]), .i__ready({s}_or[K*NV +: NV]), "
               f".o__valid({outof}__valid[{i}]), .o__flit({outof}__flit[{i}*FW +: FW]), "
               f".o__ready({outof}__ready[{i}*NV +: NV]));")
    return out


class Array(ConfiguredComponent):
    """The ``config.rows`` x ``config.cols`` tile array as an Amaranth component: an instance
    of the emitted ``wafertile_array`` (whose Verilog, with the tile's, a design that uses this
    component must add: :func:`wafertile.hdl.generate.verilog_text` ``("array", config)``).

    Members
    -------
    n_in, s_in : ``In(LinkSignature(config)).array(cols)``
    w_in, e_in : ``In(LinkSignature(config)).array(rows)``
        Whole-flit links into the array at each edge port (see the module documentation).
    n_out, s_out, w_out, e_out : ``Out(LinkSignature(config)).array(...)``
        Links out of the array.
    mac_done, mac_skipped, act_written, error : ``Out(rows * cols)``
        One bit per tile, ``y * cols + x``.
    """

    def __init__(self, config: Config):
        link = LinkSignature(config)
        members = {g.name: (In if g.into else Out)(link).array(g.count)
                   for g in port_groups(config, ARRAY)}
        n = config.rows * config.cols
        members.update({s: Out(n * w) for s, w in ARRAY.outputs(config).items()})
        super().__init__(config, members)

    def elaborate(self, platform):
        m = Module()
        ports = {"i_clk": ClockSignal("sync"), "i_rst": ResetSignal("sync")}
        for g in port_groups(self.config, ARRAY):
            links = getattr(self, g.name)
            fwd, back = ("i", "o") if g.into else ("o", "i")
            ports[f"{fwd}_{g.name}__valid"] = Cat(link.valid for link in links)
            ports[f"{fwd}_{g.name}__flit"] = Cat(link.flit.as_value() for link in links)
            ports[f"{back}_{g.name}__ready"] = Cat(link.ready for link in links)
        for s in ARRAY.outputs(self.config):
            ports[f"o_{s}"] = getattr(self, s)
        m.submodules.array = Instance(ARRAY.top, **ports)
        return m
