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

__all__ = ["ENERGY", "EnergyError", "EnergyTable", "load_energy"]


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

    @property
    def hop_bit_pj(self) -> float:
        """One bit over one hop: the link and the next router's buffer, scaled."""
        return (self.wire_bit_mm_pj * self.pitch_mm + self.buffer_bit_pj) * self.scale

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The default table (the module docstring cites each figure).
ENERGY = EnergyTable()


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
