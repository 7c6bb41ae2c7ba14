"""The report of ``wafertile synth``: :class:`SynthReport`, as text and as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SynthReport", "utilization"]


def utilization(used: dict[str, int], available: dict[str, int]) -> dict[str, float]:
    """The share of ``available`` that ``used`` takes, per resource, rounded to 4 digits."""
    return {k: round(used[k] / available[k], 4) for k in available}


@dataclass
class SynthReport:
    """What ``wafertile synth`` found.

    ``luts`` counts LUT4 sites (ECP5: TRELLIS_COMB, which includes the LUTs used as
    distributed RAM; iCE40: logic cells). ``routed`` is True once nextpnr routed the design,
    False when routing was stopped unfinished (see ``pnr_timeout`` of
    :func:`~wafertile.synth.flow.run_synth`), None when place-and-route was not run.
    ``shell_ffs`` and ``shell_luts`` are the share of the iCE40 I/O shell
    (:mod:`wafertile.synth.shell`); ``seconds`` the time of each step; ``config`` the
    parameters of the design that was built (``Config.as_dict``: the router profile the
    target chose among them).
    """

    target: str
    block: str
    rows: int
    cols: int
    luts: int
    ffs: int
    brams: int
    dsps: int
    fits: bool
    fmax_mhz: float | None
    freq_mhz: float
    meets_timing: bool | None
    utilization: dict[str, float]
    available: dict[str, int]
    cells: dict[str, int]
    critical_path: dict[str, Any] | None
    build_dir: str
    logs: dict[str, str]
    message: str = ""
    routed: bool | None = None
    shell_ffs: int = 0
    shell_luts: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict, one key per field."""
        return asdict(self)

    def text(self) -> str:
        """The report for people: the verdict, resources, fmax, critical path, logs."""
        lines = [f"wafertile synth: block '{self.block}' ({self.rows} x {self.cols} config) "
                 f"on {self.target}: {'FITS' if self.fits else 'DOES NOT FIT'}"]
        for key, label in (("luts", "LUT4"), ("ffs", "flip-flops"), ("brams", "block RAMs"),
                           ("dsps", "DSPs")):
            used, avail = getattr(self, key), self.available[key]
            lines.append(f"  {label:11s} {used:7d} / {avail:<7d} ({100 * used / avail:5.1f}%)")
        if self.config:
            c = self.config
            lines.append(f"  built with  {c['dtype']}, router {c['router_arch']} ({c['phits']} "
                         f"phit{'s' if c['phits'] > 1 else ''}, {c['num_vcs']} VCs x "
                         f"{c['buffer_depth']} flits), handoff {str(c['handoff']).lower()}")
        if self.shell_ffs or self.shell_luts:
            lines.append(f"  (of which the iCE40 I/O shell: ~{self.shell_ffs} flip-flops, "
                         f"~{self.shell_luts} LUTs)")
        if self.fmax_mhz is not None:
            verdict = "meets" if self.meets_timing else "MISSES"
            lines.append(f"  fmax        {self.fmax_mhz:7.1f} MHz ({verdict} the requested "
                         f"{self.freq_mhz:g} MHz)")
        if self.critical_path:
            cp = self.critical_path
            lines.append(f"  critical path: {cp['from']} -> {cp['to']} ({cp['delay_ns']:.2f} ns, "
                         f"{cp['logic_levels']} cells, {cp['routing_ns']:.2f} ns routing)")
        if self.message:
            lines.append(f"  {self.message}")
        lines.append(f"  logs: {', '.join(self.logs.values())}")
        return "\n".join(lines)
