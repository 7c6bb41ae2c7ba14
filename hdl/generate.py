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
from ..files import write_text
from .core import SramBank, TileCore, make_mac_core
from .core.fp import FP32, float_format
from .flit import Opcode, describe, flit_layout, header_layout, payload_layout, route_layout
from .grid import ARRAY, MESH, PHIT_TX_MODULE, Grid, grid_ports, grid_verilog
from .noc import PhitRx, PhitTx, make_router
from .tile import Tile

__all__ = ["BLOCKS", "Block", "emit", "number_format", "port_list", "verilog_text"]


@dataclass(frozen=True)
class Block:
    """A generatable block: its top module and how to make it.

    A component block converts ``make(config)`` with Amaranth. A grid block (the array, the
    mesh) converts its node ``make(config)`` once, and writes the top around it as text
    (:mod:`wafertile.hdl.grid`), so that its size does not grow with the array.
    """

    top: str
    make: Callable[[Config], wiring.Component]
    help: str
    grid: Grid | None = None


#: Blocks that ``wafertile generate --block`` knows, by name.
BLOCKS: dict[str, Block] = {
    "array": Block(ARRAY.top, Tile,
                   "rows x cols tiles with host ports on the edges (tile module once)", ARRAY),
    "tile": Block("wafertile_tile", Tile, "one tile: core behind a router's local port"),
    "core": Block("wafertile_core", TileCore, "MAC core + SRAM bank (the tile's compute part)"),
    "mac": Block("wafertile_mac", make_mac_core,
                 "the MAC core alone (of the dtype), with its memory ports exposed"),
    "sram": Block("wafertile_sram", SramBank, "the SRAM bank alone (activation + accumulator)"),
    "router": Block("wafertile_router", make_router,
                    "one 5-port mesh router (XY multicast, VCs)"),
    "mesh": Block(MESH.top, make_router,
                  "rows x cols routers only, local and edge ports exposed (router module once)",
                  MESH),
}


def _layout_name(config: Config, shape: Any) -> str | None:
    if shape == flit_layout(config):
        return "flit"
    if shape == payload_layout(config):
        return "payload"
    return None


def port_list(component: wiring.Component) -> list[dict[str, Any]]:
    """The Verilog ports of ``component`` as Amaranth names them (``a__b`` for member a.b);
    a whole-flit port carries ``"layout": "flit"``, an operation payload ``"payload"``."""
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    config = getattr(component, "config", None)
    for path, member, _value in component.signature.flatten(component):
        shape = member.shape
        entry: dict[str, Any] = {
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == In else "output",
            "width": Shape.cast(shape).width,
        }
        layout = _layout_name(config, shape) if isinstance(shape, data.StructLayout) else None
        if layout:
            entry["layout"] = layout
        ports.append(entry)
    return ports


def number_format(config: Config) -> dict[str, Any]:
    """What the ``payload.data`` field carries for ``config.dtype`` (``manifest.json``'s
    ``number_format``): the operands (MAC weights, WRITE_ACT activations, READ_ACT replies)
    in its low ``data_width`` bits, the accumulators (ADD, WRITE_ACC, READ_ACC / SEND
    outputs) in ``acc_width`` bits, and the arithmetic (``docs/float.md`` for the float
    formats)."""
    if not config.is_float:
        return {
            "dtype": config.dtype,
            "operand": {"format": f"two's complement, {config.data_width} bits",
                        "bits": config.data_width, "data_lsb": 0},
            "accumulator": {"format": f"two's complement, {config.acc_width} bits",
                            "bits": config.acc_width, "overflow": config.overflow},
        }
    fmt = float_format(config.dtype)
    return {
        "dtype": config.dtype,
        "operand": {"format": {"fp16": "IEEE 754 binary16",
                               "bf16": "bfloat16 (top half of binary32)"}[config.dtype],
                    "bits": 16, "data_lsb": 0, "exponent_bits": fmt.exp_bits,
                    "fraction_bits": fmt.frac_bits, "nan": fmt.nan,
                    "read_act_reply": "the 16 bits, zero-extended"},
        "accumulator": {"format": "IEEE 754 binary32 (raw bits in the signed data field)",
                        "bits": 32, "nan": FP32.nan},
        "rounding": "nearest, ties to even; subnormals kept; every NaN made is canonical",
        "zero_skipping": "a MAC with a +0 or -0 weight or activation does nothing",
        "finish": "relu (if RELU) in FP32, then rounded to the operand format",
    }


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
    if spec.grid is not None:
        ports = grid_ports(config, spec.grid)
        text = verilog_text(block, config)
    else:
        component = spec.make(config)
        ports = port_list(component)
        text = verilog_text(block, config, component)

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stale = _earlier_files(outdir)
    vpath = outdir / f"{spec.top}.v"
    write_text(vpath, text)
    cpath = outdir / f"{spec.top}.core"
    write_text(cpath, _fusesoc(spec, vpath.name))

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
            "payload_width": config.payload_width,
            "flit_width": config.flit_width,
            "phit_width": config.phit_width,
        },
        "number_format": number_format(config),
        "ports": ports,
        "layouts": {name: {"width": Shape.cast(layout).width, "fields": describe(layout)}
                    for name, layout in layouts.items()},
        "opcodes": {op.name: op.value for op in Opcode},
        "verilog_modules": _module_names(text),
    }
    mpath = outdir / "manifest.json"
    write_text(mpath, json.dumps(manifest, indent=2) + "\n")
    # an earlier block's files that this one does not replace would sit beside a manifest
    # that no longer names them: remove them (only files the old manifest says it wrote)
    for old in stale - {vpath.name, cpath.name, mpath.name}:
        (outdir / old).unlink(missing_ok=True)
    return {"verilog": vpath, "manifest": mpath, "fusesoc": cpath}


def _earlier_files(outdir: Path) -> set[str]:
    """The file names an earlier ``wafertile generate`` wrote into ``outdir``, as its
    ``manifest.json`` lists them (plain names of regular files in ``outdir`` only)."""
    try:
        old = json.loads((outdir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return set()
    if not isinstance(old, dict) or old.get("generator") != "wafertile":
        return set()
    names = [*old.get("files", []), old.get("fusesoc")]
    return {n for n in names if isinstance(n, str) and n and Path(n).name == n
            and not (outdir / n).is_symlink() and (outdir / n).is_file()}


def _leaves(config: Config, spec: Block) -> list[tuple[str, wiring.Component]]:
    """The modules a grid block instantiates by name: its node, and with phits the
    adapters."""
    grid = spec.grid
    out = [(grid.node, spec.make(config))]
    if config.phits > 1:
        out += [(PHIT_TX_MODULE, PhitTx(config)),
                (grid.rx_module, PhitRx(config, per_vc=grid.rx_per_vc))]
    return out


def verilog_text(block: str, config: Config, component: wiring.Component | None = None) -> str:
    """The Verilog of ``block`` (deterministic): a component block converted by Amaranth
    (``component``, if given, is converted instead of a new one); a grid block's node and
    adapters, each once, then its top."""
    spec = BLOCKS[block]
    if spec.grid is None:
        top = component if component is not None else spec.make(config)
        return verilog.convert(top, name=spec.top, emit_src=False)
    leaves = "".join(verilog.convert(c, name=name, emit_src=False)
                     for name, c in _leaves(config, spec))
    return leaves + grid_verilog(config, spec.grid, leaves)


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
