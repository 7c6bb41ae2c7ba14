"""The energy of the events the wafer-scale prediction counts (issue 20, ``docs/wafer.md``).

One table, in picojoules, replaceable by the user's own (a flat TOML file, in the spirit of
Accelergy's energy reference tables). The defaults are published 45 nm figures:

- arithmetic and SRAM: M. Horowitz, "Computing's energy problem (and what we can do about
  it)", ISSCC 2014, the 45 nm, 0.9 V table: 16-bit float multiply 1.1 pJ, 32-bit float add
  0.9 pJ, 32-bit float multiply 3.7 pJ, a 64-bit read of an 8 KB SRAM 10 pJ (so 10 / 64 pJ a
  bit; a write is taken as a read), a 64-bit DRAM access 1.3 to 2.6 nJ (the low end, per bit:
  the parameter store's read of a streamed bit);
- wires: S. Park, M. Qazi, L.-S. Peh, A. Chandrakasan, "40.4 fJ/bit/mm low-swing on-chip
  signaling with self-resetting logic repeaters embedded within a mesh NoC in 45 nm SOI
  CMOS", DATE 2013 (a measured mesh link: 40.4 fJ a bit a millimetre; full-swing links cost
  several times that);
- the tile pitch: the WSE-2's 46 225 mm^2 and 850 000 cores (Cerebras' public figures), so
  sqrt(46 225 / 850 000) = 0.233 mm a hop;
- a router hop writes and reads the flit in an input buffer: two SRAM bit accesses a bit.

``scale`` multiplies every on-fabric event (1.0: the 45 nm figures as published; the
process scaling to the user's node is theirs to set, docs/wafer.md says why none is applied
by default). Leakage and clocking are not counted.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import read_text

__all__ = ["ENERGY", "EnergyError", "EnergyTable", "load_energy", "price_events",
           "price_report", "program_energy"]


class EnergyError(InputError):
    """An energy table that cannot be used (one line, exit status 2)."""


@dataclass(frozen=True)
class EnergyTable:
    """Picojoules per event (``docs/wafer.md``, "Energy").

    Attributes
    ----------
    mul_half_pj : float
        A multiply of two 16-bit floats (the MAC's and GRAD's product).
    add_fp32_pj : float
        An FP32 addition (the MAC's accumulation).
    mul_int8_pj, mul_int16_pj : float
        A multiply of two 8-bit / 16-bit integers (an integer tile's MAC). Horowitz gives
        0.2 pJ for 8 bits and 3.1 pJ for 32; 16 bits is our estimate, the 8-bit figure times
        the square of the width ratio (an array multiplier's area).
    add_int_pj : float
        An integer addition of the accumulator's width (Horowitz: 0.1 pJ for 32 bits).
    sram_bit_pj : float
        One bit read from or written to a tile's SRAM.
    wire_bit_mm_pj : float
        One bit moved one millimetre on a link.
    pitch_mm : float
        The length of one link (a tile's pitch).
    buffer_bit_pj : float
        One bit written into and read out of a router's input buffer (a hop's buffering).
    offchip_bit_pj : float
        One bit streamed between the parameter store and the fabric's edge.
    scale : float
        Multiplies every on-fabric event (process scaling; 1.0 by default).
    source : str
        Where the figures come from.
    """

    mul_half_pj: float = 1.1
    add_fp32_pj: float = 0.9
    mul_int8_pj: float = 0.2
    mul_int16_pj: float = 0.8
    add_int_pj: float = 0.1
    sram_bit_pj: float = 10.0 / 64
    wire_bit_mm_pj: float = 0.0404
    pitch_mm: float = round(math.sqrt(46225 / 850000), 3)
    buffer_bit_pj: float = 2 * 10.0 / 64
    offchip_bit_pj: float = 1300.0 / 64
    scale: float = 1.0
    source: str = ("Horowitz ISSCC 2014 (45 nm), Park et al. DATE 2013 (links), WSE-2 pitch; "
                   "docs/wafer.md")

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value >= 0):
                raise EnergyError(f"energy table: {f.name} must be a number >= 0 (picojoules, "
                                  f"millimetres or a factor), not {value!r}")

    @property
    def mac_pj(self) -> float:
        """One MAC (multiply and FP32 add), scaled."""
        return (self.mul_half_pj + self.add_fp32_pj) * self.scale

    def mac_pj_of(self, dtype: str) -> float:
        """One MAC of ``dtype``'s tiles (a multiply and an accumulation), scaled."""
        mul = {"int8": self.mul_int8_pj, "int16": self.mul_int16_pj}.get(dtype,
                                                                        self.mul_half_pj)
        add = self.add_int_pj if dtype in ("int8", "int16") else self.add_fp32_pj
        return (mul + add) * self.scale

    @property
    def hop_bit_pj(self) -> float:
        """One bit over one hop: the link and the next router's buffer, scaled."""
        return (self.wire_bit_mm_pj * self.pitch_mm + self.buffer_bit_pj) * self.scale

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The default table (the module docstring cites each figure).
ENERGY = EnergyTable()


def price_events(config, events: dict[str, list[int]], flits_in: int, flits_out: int,
                 table: EnergyTable = ENERGY) -> dict[str, Any]:
    """The energy of a run from its event counts (the RTL's counters or the model's,
    ``docs/counters.md``; per event a count per tile) and the flits across the edge, as the
    wafer-scale prediction prices a step (``docs/wafer.md``): ``energy_j``, the table's
    ``source`` (``energy_source``) and the parts ``energy_parts_j``: ``macs`` (MACs done),
    ``sram`` (the words read and written, of ``data_width`` and ``acc_width`` bits),
    ``network`` (every link a flit crosses: into the fabric from the host, then
    ``link_out``; a flit is ``flit_width`` bits) and ``stream`` (the flits in and out,
    between the host and the edge)."""
    total = {k: sum(v) for k, v in events.items()}
    parts = {
        "macs": total["mac_done"] * table.mac_pj_of(config.dtype),
        "sram": (config.data_width * (total["act_reads"] + total["act_writes"])
                 + config.acc_width * (total["acc_reads"] + total["acc_writes"]))
        * table.sram_bit_pj * table.scale,
        "network": (flits_in + total["link_out"]) * config.flit_width * table.hop_bit_pj,
        "stream": (flits_in + flits_out) * config.flit_width * table.offchip_bit_pj,
    }
    return {"energy_j": sum(parts.values()) * 1e-12,
            "energy_parts_j": {k: v * 1e-12 for k, v in parts.items()},
            "energy_source": table.source}


def load_energy(path: str | Path) -> EnergyTable:
    """A table from a flat TOML file: any of :class:`EnergyTable`'s keys (the others keep
    their defaults). Raises :class:`EnergyError` (one line) for a file that cannot be read,
    is not TOML, has an unknown key or a bad value."""
    path = Path(path)
    label = f"energy table {str(path)!r}"
    try:
        data = tomllib.loads(read_text(path, label))
    except InputError as exc:
        raise EnergyError(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise EnergyError(f"{label} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(EnergyTable)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EnergyError(f"{label}: unknown key(s) {', '.join(unknown)} (known: "
                          f"{', '.join(sorted(known))})")
    if "source" in data and not isinstance(data["source"], str):
        raise EnergyError(f"{label}: source must be a string")
    data.setdefault("source", f"energy table {path.name}")
    try:
        return EnergyTable(**data)
    except EnergyError as e:
        raise EnergyError(f"{label}: {str(e).removeprefix('energy table: ')}") from None


def price_report(report, config, table: EnergyTable = ENERGY) -> None:
    """A run with the tiles' counters (``--counters true``; ``report.events`` set): the
    energy priced from them and its flits across the edge (:func:`price_events`, by
    ``table``), into ``report.energy``; nothing without counters."""
    if getattr(report, "events", None) is not None:
        report.energy = price_events(config, report.events, report.host_flits_in,
                                     report.host_flits_out, table)


def program_energy(config, program, nonzero=None, table: EnergyTable = ENERGY, sent=None
                   ) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """A compiled program's events, as the tiles' counters count them
    (:func:`~wafertile.model.events.program_events`, ``nonzero`` and ``sent`` as it takes
    them), and their energy with the program's flits across the edge
    (:func:`price_events`)."""
    from ..network.compiler import edge_flits
    from .events import program_events

    events = program_events(config, program, nonzero, sent)
    flits = edge_flits(program)
    return events, price_events(config, events, flits["host_flits_in"],
                                flits["host_flits_out"], table)
