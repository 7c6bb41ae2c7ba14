"""A routers-only R x C mesh: every local port and every edge port exposed.

The mesh instantiates the router module by name (``wafertile_router``) with
:class:`~amaranth.hdl.Instance`, so the emitted Verilog holds the router once however many
tiles there are; :func:`wafertile.hdl.generate.emit` writes both modules. Router coordinates
are tied off on the instance's ``x`` / ``y`` input ports, which keeps every instance the same
module.

Port names (members of :class:`Mesh`; Verilog adds ``__valid``, ``__flit``, ``__ready``):

- ``l_x<x>_y<y>_in`` / ``_out``: the local port of tile (x, y);
- ``n_x<x>_in`` / ``_out`` and ``s_x<x>_in`` / ``_out``: the north / south edge port of column x;
- ``w_y<y>_in`` / ``_out`` and ``e_y<y>_in`` / ``_out``: the west / east edge port of row y.

``*_in`` ports carry flits into the fabric, ``*_out`` ports out of it, both with the router's
whole-flit link protocol (:func:`~wafertile.hdl.router.flit_link_signature`); with
``phits > 1`` every endpoint has a serializer and a deserializer (:mod:`wafertile.hdl.phit`).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib.wiring import In, Out

from ..config import Config
from ._util import ConfiguredComponent, check_config
from .phit import adapter_instances
from .router import PORTS, flit_link_signature

__all__ = ["ROUTER_MODULE", "Mesh", "endpoint_name", "endpoints", "neighbour"]

#: Verilog module name of the router that the mesh instantiates.
ROUTER_MODULE = "wafertile_router"
# direction -> (dx, dy, the neighbour's port that faces back)
_STEP = {"n": (0, -1, "s"), "e": (1, 0, "w"), "s": (0, 1, "n"), "w": (-1, 0, "e")}


def neighbour(config: Config, x: int, y: int, port: str) -> tuple[int, int, str] | None:
    """The (x, y, port) of the output that drives input ``port`` of position (x, y): the
    neighbour's port facing back; ``None`` for the local port and at the array's edge (the
    link is then the top-level endpoint :func:`endpoint_name` ``(x, y, port)``). The mesh
    and the tile array (:mod:`wafertile.hdl.array`) wire their grid with it."""
    if port == "l":
        return None
    dx, dy, back = _STEP[port]
    nx, ny = x + dx, y + dy
    if 0 <= nx < config.cols and 0 <= ny < config.rows:
        return nx, ny, back
    return None


def endpoints(config: Config) -> list[tuple[int, int, str]]:
    """Every exposed port of the mesh as (x, y, port): locals, then the N, S, W, E edges."""
    out = [(x, y, "l") for y in range(config.rows) for x in range(config.cols)]
    out += [(x, 0, "n") for x in range(config.cols)]
    out += [(x, config.rows - 1, "s") for x in range(config.cols)]
    out += [(0, y, "w") for y in range(config.rows)]
    out += [(config.cols - 1, y, "e") for y in range(config.rows)]
    return out


def endpoint_name(x: int, y: int, port: str) -> str:
    """The member name prefix of an endpoint (without ``_in`` / ``_out``)."""
    if port == "l":
        return f"l_x{x}_y{y}"
    if port in ("n", "s"):
        return f"{port}_x{x}"
    return f"{port}_y{y}"


class Mesh(ConfiguredComponent):
    """``config.rows`` x ``config.cols`` routers (``wafertile_router`` instances), linked.

    Parameters
    ----------
    config : Config
        Array size and router parameters.

    Members
    -------
    <endpoint>_in : In(flit_link_signature(config))
        Injection into the fabric at an endpoint (see :func:`endpoints`).
    <endpoint>_out : Out(flit_link_signature(config))
        Delivery out of the fabric at an endpoint.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    """

    def __init__(self, config: Config):
        check_config(self, config)
        members = {}
        for ep in endpoints(config):
            members[f"{endpoint_name(*ep)}_in"] = In(flit_link_signature(config))
            members[f"{endpoint_name(*ep)}_out"] = Out(flit_link_signature(config))
        super().__init__(config, members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        width = cfg.phit_width
        field = "phit" if cfg.phits > 1 else "flit"
        # One set of wires per router output: (x, y, port) -> (valid, flit, ready).
        wires = {}
        for y in range(cfg.rows):
            for x in range(cfg.cols):
                for p in PORTS:
                    tag = f"x{x}_y{y}_{p}"
                    wires[x, y, p] = (Signal(name=f"v_{tag}"), Signal(width, name=f"f_{tag}"),
                                      Signal(cfg.num_vcs, name=f"r_{tag}"))

        def link_into(x, y, p):
            """What drives input port p of router (x, y): a neighbour's output or the edge."""
            source = neighbour(cfg, x, y, p)
            if source is not None:
                return wires[source]
            name = endpoint_name(x, y, p)
            ext = getattr(self, f"{name}_in")
            if (x, y, p) in phit_in:  # through a serializer (added with the deserializer below)
                return phit_in[x, y, p]
            return ext.valid, ext.flit.as_value(), ext.ready

        # With phits, every endpoint output has a deserializer and every edge input a
        # serializer (the lite router's local input takes whole flits).
        phit_in = {}
        if cfg.phits > 1:
            for x, y, p in endpoints(cfg):
                name = endpoint_name(x, y, p)
                if p != "l":
                    phit_in[x, y, p] = (Signal(name=f"{name}_pv"),
                                        Signal(width, name=f"{name}_pf"),
                                        Signal(cfg.num_vcs, name=f"{name}_pr"))
                adapter_instances(m, name, getattr(self, f"{name}_in"),
                                  getattr(self, f"{name}_out"), phit_in.get((x, y, p)),
                                  wires[x, y, p], per_vc=True)

        for y in range(cfg.rows):
            for x in range(cfg.cols):
                ports = {
                    "i_clk": ClockSignal("sync"),
                    "i_rst": ResetSignal("sync"),
                    "i_x": Const(x, cfg.x_width),
                    "i_y": Const(y, cfg.y_width),
                }
                for p in PORTS:
                    valid, flit, ready = link_into(x, y, p)
                    ports[f"i_in_{p}__valid"] = valid
                    # the lite router's local input takes whole flits
                    ports[f"i_in_{p}__{'flit' if p == 'l' else field}"] = flit
                    ports[f"o_in_{p}__ready"] = ready
                    ov, of, orr = wires[x, y, p]
                    ports[f"o_out_{p}__valid"] = ov
                    ports[f"o_out_{p}__{field}"] = of
                    ports[f"i_out_{p}__ready"] = orr
                    if neighbour(cfg, x, y, p) is None and cfg.phits == 1:  # a top-level endpoint
                        ext = getattr(self, f"{endpoint_name(x, y, p)}_out")
                        m.d.comb += [ext.valid.eq(ov), ext.flit.eq(of), orr.eq(ext.ready)]
                m.submodules[f"r_x{x}_y{y}"] = Instance(ROUTER_MODULE, **ports)
        return m

