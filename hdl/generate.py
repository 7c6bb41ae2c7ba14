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
from .flit import Opcode, describe, payload_layout

__all__ = ["BLOCKS", "Block", "emit", "port_list"]


@dataclass(frozen=True)
class Block:
    """A generatable block: its top module name and how to build it from a config."""

    top: str
    make: Callable[[Config], wiring.Component]
    help: str


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


#: Blocks that ``wafertile generate --block`` knows, by name.
BLOCKS: dict[str, Block] = {
    "mac": Block("wafertile_mac", _mac, "the MAC core alone, with its memory ports exposed"),
    "sram": Block("wafertile_sram", _sram, "the SRAM bank alone (activation + accumulator)"),
    "core": Block("wafertile_core", _core, "MAC core + SRAM bank (the tile's compute part)"),
    "router": Block("wafertile_router", _router, "one 5-port mesh router (XY multicast, VCs)"),
    "mesh": Block("wafertile_mesh", _mesh,
                  "rows x cols routers only, local and edge ports exposed (router module once)"),
}

#: Blocks written by :func:`wafertile.hdl.mesh.emit_noc` (the mesh needs two modules).
_NOC_BLOCKS = ("router", "mesh")


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
    """Write ``<top>.v`` and ``manifest.json`` for ``block`` into ``outdir``.

    Output is a pure function of (block, config, wafertile version): the same inputs give
    byte-identical files (no source paths, no time stamps).

    Returns
    -------
    dict
        ``{"verilog": path, "manifest": path}``.

    Raises
    ------
    ValueError
        If ``block`` is not one of :data:`BLOCKS`.
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {block!r}")
    if block in _NOC_BLOCKS:
        from .mesh import emit_noc
        return emit_noc(block, config, outdir)
    spec = BLOCKS[block]
    component = spec.make(config)
    ports = port_list(component)
    text = verilog.convert(component, name=spec.top, emit_src=False)

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vpath = outdir / f"{spec.top}.v"
    vpath.write_text(text, encoding="utf-8")

    manifest = {
        "generator": "wafertile",
        "version": __version__,
        "block": block,
        "top": spec.top,
        "files": [vpath.name],
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
        },
        "ports": ports,
        "layouts": {
            "payload": {
                "width": Shape.cast(payload_layout(config)).width,
                "fields": describe(payload_layout(config)),
            },
        },
        "opcodes": {op.name: op.value for op in Opcode},
        "verilog_modules": sorted(_module_names(text)),
    }
    mpath = outdir / "manifest.json"
    mpath.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {"verilog": vpath, "manifest": mpath}


def _module_names(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        if line.startswith("module "):
            names.append(line.split()[1].split("(")[0])
    return names
