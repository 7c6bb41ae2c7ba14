"""Verilog emission: one block or the whole design, with a ``manifest.json`` describing it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from .. import __version__
from ..config import Config
from .flit import Opcode, describe, flit_layout, header_layout, payload_layout
from .tile import route_layout

__all__ = ["BLOCKS", "Block", "emit", "leaves_text", "port_list", "verilog_text"]


@dataclass(frozen=True)
class Block:
    """A generatable block: its top module, how to build it, and the leaf modules it
    instantiates by name (converted once each and written before the top)."""

    top: str
    make: Callable[[Config], wiring.Component]
    help: str
    leaves: tuple[tuple[str, Callable[[Config], wiring.Component]], ...] = ()
    #: further leaves that depend on the configuration (the phit adapters)
    more_leaves: Callable[[Config], tuple] | None = None
    #: writes the top module as text from (config, the leaves' Verilog) instead of converting
    #: ``make(config)`` with Amaranth (the array: 1024 instances convert in ~15 s, this ~0.1 s)
    text: Callable[[Config, str], str] | None = None


def _mac(config: Config) -> wiring.Component:
    from .mac import MacCore
    return MacCore(config)


def _sram(config: Config) -> wiring.Component:
    from .sram import SramBank
    return SramBank(config)


def _core(config: Config) -> wiring.Component:
    from .mac import TileCore
    return TileCore(config)


def _router(config: Config) -> wiring.Component:
    from .router import Router
    return Router(config)


def _mesh(config: Config) -> wiring.Component:
    from .mesh import Mesh
    return Mesh(config)


def _tile(config: Config) -> wiring.Component:
    from .tile import Tile
    return Tile(config)


def _array(config: Config) -> wiring.Component:
    from .array import Array
    return Array(config)


def _adapters(config: Config) -> tuple:
    from .phit import phit_leaves
    return phit_leaves(config)


def _mesh_adapters(config: Config) -> tuple:
    from .phit import phit_leaves
    return phit_leaves(config, per_vc=True)


def _array_text(config: Config, leaves: str) -> str:
    from .array import array_verilog
    return array_verilog(config, leaves)


#: Blocks that ``wafertile generate --block`` knows, by name.
BLOCKS: dict[str, Block] = {
    "array": Block("wafertile_array", _array,
                   "rows x cols tiles with host ports on the edges (tile module once)",
                   leaves=(("wafertile_tile", _tile),), more_leaves=_adapters,
                   text=_array_text),
    "tile": Block("wafertile_tile", _tile, "one tile: core behind a router's local port"),
    "core": Block("wafertile_core", _core, "MAC core + SRAM bank (the tile's compute part)"),
    "mac": Block("wafertile_mac", _mac, "the MAC core alone, with its memory ports exposed"),
    "sram": Block("wafertile_sram", _sram, "the SRAM bank alone (activation + accumulator)"),
    "router": Block("wafertile_router", _router, "one 5-port mesh router (XY multicast, VCs)"),
    "mesh": Block("wafertile_mesh", _mesh,
                  "rows x cols routers only, local and edge ports exposed (router module once)",
                  leaves=(("wafertile_router", _router),), more_leaves=_mesh_adapters),
}


def port_list(component: wiring.Component) -> list[dict[str, Any]]:
    """The Verilog ports of ``component`` as Amaranth names them (``a__b`` for member a.b)."""
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member, _value in component.signature.flatten(component):
        shape = member.shape
        entry: dict[str, Any] = {
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == In else "output",
            "width": Shape.cast(shape).width,
        }
        if isinstance(shape, data.StructLayout):
            entry["layout"] = "payload"
        ports.append(entry)
    return ports


def emit(block: str, config: Config, outdir: str | Path) -> dict[str, Path]:
    """Write ``<top>.v``, ``manifest.json`` and a FuseSoC ``<top>.core`` for ``block``.

    A block that instantiates leaf modules by name (array, mesh) gets each leaf once in the
    same file, before the top. Output is a pure function of (block, config, wafertile
    version): the same inputs give byte-identical files (no source paths, no time stamps).

    Returns
    -------
    dict
        ``{"verilog": path, "manifest": path, "fusesoc": path}``.

    Raises
    ------
    ValueError
        If ``block`` is not one of :data:`BLOCKS`.
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {block!r}")
    spec = BLOCKS[block]
    component = spec.make(config)
    ports = port_list(component)
    if spec.text is not None:  # the top is written as text; the component only lists ports
        component._MustUse__silence = True
    text = verilog_text(block, config, component)

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vpath = outdir / f"{spec.top}.v"
    vpath.write_text(text, encoding="utf-8")
    cpath = outdir / f"{spec.top}.core"
    cpath.write_text(_fusesoc(spec, vpath.name), encoding="utf-8")

    layouts = {"flit": flit_layout(config), "header": header_layout(config),
               "payload": payload_layout(config), "route": route_layout(config)}
    manifest = {
        "generator": "wafertile",
        "version": __version__,
        "block": block,
        "top": spec.top,
        "files": [vpath.name],
        "fusesoc": cpath.name,
        "clock": {"name": "clk", "edge": "rising"},
        "reset": {"name": "rst", "active": "high", "synchronous": True},
        "parameters": config.as_dict(),
        "derived": {
            "addr_width": config.addr_width,
            "act_addr_width": config.act_addr_width,
            "acc_addr_width": config.acc_addr_width,
            "product_width": config.product_width,
            "x_width": config.x_width,
            "y_width": config.y_width,
            "vc_width": config.vc_width,
            "route_width": config.route_width,
            "header_width": config.header_width,
            "flit_width": config.flit_width,
            "phit_width": config.phit_width,
        },
        "ports": ports,
        "layouts": {name: {"width": Shape.cast(layout).width, "fields": describe(layout)}
                    for name, layout in layouts.items()},
        "opcodes": {op.name: op.value for op in Opcode},
        "verilog_modules": _module_names(text),
    }
    mpath = outdir / "manifest.json"
    mpath.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {"verilog": vpath, "manifest": mpath, "fusesoc": cpath}


def leaves_text(block: str, config: Config) -> str:
    """The Verilog of the leaf modules ``block`` instantiates by name (the array's: the tile,
    and with phits the edge adapters), for a design that composes the block itself."""
    spec = BLOCKS[block]
    more = spec.more_leaves(config) if spec.more_leaves is not None else ()
    return "".join(verilog.convert(make(config), name=name, emit_src=False)
                   for name, make in (*spec.leaves, *more))


def verilog_text(block: str, config: Config, component: wiring.Component | None = None) -> str:
    """The Verilog of ``block``: each leaf module once, then the top (deterministic)."""
    spec = BLOCKS[block]
    leaves = leaves_text(block, config)
    if spec.text is not None:
        return leaves + spec.text(config, leaves)
    top = component if component is not None else spec.make(config)
    return leaves + verilog.convert(top, name=spec.top, emit_src=False)


def _fusesoc(spec: Block, vfile: str) -> str:
    """A FuseSoC CAPI2 core file for the generated Verilog."""
    return (f"CAPI=2:\n"
            f"name: wafertile:generated:{spec.top}:{__version__}\n"
            f"description: {spec.help} (generated by wafertile {__version__})\n"
            f"filesets:\n"
            f"  rtl:\n"
            f"    files:\n"
            f"      - {vfile}\n"
            f"    file_type: verilogSource\n"
            f"targets:\n"
            f"  default:\n"
            f"    filesets: [rtl]\n"
            f"    toplevel: {spec.top}\n"
            f"  lint:\n"
            f"    default_tool: verilator\n"
            f"    filesets: [rtl]\n"
            f"    tools:\n"
            f"      verilator:\n"
            f"        mode: lint-only\n"
            f"    toplevel: {spec.top}\n")


def _module_names(text: str) -> list[str]:
    """Names of the modules defined in ``text``, in order (escaped names unescaped)."""
    names = []
    for line in text.splitlines():
        if line.startswith("module "):
            names.append(line[len("module "):].split("(")[0].strip().lstrip("\\"))
    return names
