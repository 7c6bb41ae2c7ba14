"""The FPGA devices ``wafertile synth`` knows, their Yosys synthesis commands and the ECP5
router profile.

One table of each: :data:`TARGETS` (device, nextpnr options, capacity) and
:data:`SYNTH_COMMANDS` (the Yosys command per family), used by the full flow
(:mod:`wafertile.synth.flow`) and by the quick cell count
(:func:`wafertile.synth.yosys.synth_cells`) alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Config

__all__ = ["FPGA_PROFILE", "SYNTH_COMMANDS", "TARGETS", "Target", "fpga_config",
           "synth_command"]


@dataclass(frozen=True)
class Target:
    """An FPGA device that ``wafertile synth`` knows.

    Attributes
    ----------
    name : str
        The ``--target`` name.
    family : str
        ``"ecp5"`` or ``"ice40"``: picks the Yosys command and the nextpnr build.
    device : str
        The part, human-readable.
    nextpnr_args : tuple of str
        nextpnr's options that select the part and its package.
    luts, ffs, brams, dsps : int
        Capacity of the device: LUT4 sites, flip-flops, block RAMs, DSPs (from nextpnr's chip
        database; used to tell "does not fit" before place-and-route).
    """

    name: str
    family: str
    device: str
    nextpnr_args: tuple[str, ...]
    luts: int
    ffs: int
    brams: int
    dsps: int

    @property
    def capacity(self) -> dict[str, int]:
        """``{"luts": ..., "ffs": ..., "brams": ..., "dsps": ...}`` of the device."""
        return {"luts": self.luts, "ffs": self.ffs, "brams": self.brams, "dsps": self.dsps}


TARGETS: dict[str, Target] = {
    "ecp5-85k": Target("ecp5-85k", "ecp5", "Lattice LFE5U-85F (CABGA381), e.g. ULX3S 85F",
                       ("--85k", "--package", "CABGA381"), 83640, 83640, 208, 156),
    "ecp5-25k": Target("ecp5-25k", "ecp5", "Lattice LFE5U-25F (CABGA256)",
                       ("--25k", "--package", "CABGA256"), 24288, 24288, 56, 28),
    "ice40-up5k": Target("ice40-up5k", "ice40", "Lattice iCE40 UP5K (SG48), e.g. iCEBreaker",
                         ("--up5k", "--package", "sg48"), 5280, 5280, 30, 8),
}

#: Yosys synthesis command per family. ``-nowidelut`` roughly halves ECP5 LUTs on
#: multiplexer-heavy logic at the same fmax (measured, see docs/fpga.md).
SYNTH_COMMANDS: dict[str, str] = {
    "ecp5": "synth_ecp5 -top {top} -nowidelut",
    "ice40": "synth_ice40 -top {top} -dsp",
}


def synth_command(family: str, top: str) -> str:
    """The Yosys synthesis command of :data:`SYNTH_COMMANDS` for ``family`` and ``top``.

    Raises
    ------
    ValueError
        If ``family`` is not one of :data:`SYNTH_COMMANDS`.
    """
    if family not in SYNTH_COMMANDS:
        raise ValueError(f"family must be one of {', '.join(SYNTH_COMMANDS)}, not {family!r}")
    return SYNTH_COMMANDS[family].format(top=top)


#: The router configuration that ``wafertile synth`` uses on ECP5 unless the user sets it (flags
#: or ``--config``): the ``lite`` router with 4-phit links and 2-flit VC buffers, which fits an
#: 8 x 8 array of 16/32-bit tiles on an ECP5-85F with ``handoff = false`` (docs/fpga.md; it
#: does not set ``handoff``: a tile with the hand-off unit is twice as large). ``phits`` is
#: lowered where the header would not fit in phit 0 (narrow flits, large arrays).
FPGA_PROFILE = {"router_arch": "lite", "phits": 4, "buffer_depth": 2}


def fpga_config(family: str, values: dict[str, Any], *, source: str) -> Config:
    """A :class:`~wafertile.config.Config` for synthesis on ``family``.

    Parameters
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    values : dict
        The user's parameters; the defaults fill the rest.
    source : str
        Where ``values`` came from, for error messages.

    Returns
    -------
    Config
        ``values`` over the defaults and, on ECP5, over :data:`FPGA_PROFILE` for the router
        parameters the user did not set.
    """
    if family != "ecp5" or ("router_arch" in values and values["router_arch"] != "lite"):
        return Config.from_mapping(values, source=source)
    merged = {**FPGA_PROFILE, **values}
    if "phits" not in values:  # as many phits as the header allows, up to the profile's 4
        probe = Config.from_mapping({**merged, "phits": 1, "link_slice": False},
                                    source=source)
        merged["phits"] = max(1, min(FPGA_PROFILE["phits"],
                                     probe.flit_width // probe.header_width))
    return Config.from_mapping(merged, source=source)
