"""The timing of one fabric configuration, as the performance model uses it.

Every figure here is a structural property of the RTL, measured on it once with single-flit
and single-tile programs (``benchmarks/model.py --micro`` prints them for any
configuration), not a correction per workload:

- **Slots.** A router moves one flit per link per slot; a slot is ``phits`` cycles on the
  ``lite`` router (a flit crosses a link one phit per cycle) and one cycle otherwise. Every
  router and edge adapter counts the slot's phase from reset, so a phase of the program
  starts its first injection at the next slot boundary (:meth:`Timing.wait`).
- **Latency.** A flit the host offers at a slot boundary is taken by the core of a tile
  ``r`` routers away (source and destination routers included) ``r`` slots later, plus one
  slot for the serializer at the edge and the deserializer in front of the core when links
  carry phits (:meth:`Timing.to_core`). The integer core executes in three pipeline stages:
  a MAC or an accumulator write lands in the third (a MAC is counted there), an activation
  write in the second, and a reply, ADD or hand-off flit is offered in the third. The float
  core (:class:`~wafertile.hdl.core.FpMacCore`) has five: the activation write in S1 (a
  cycle after the take), the MAC counted in S3, the output offered in S4
  (:attr:`Timing.write_stage`, :attr:`Timing.mac_stage`, :attr:`Timing.out_stage`: cycles
  after the take); it holds its first three stages for a cycle when the flit in S2 reads the
  accumulator the flit in S3 writes (the hazard bubble, :mod:`.mesh`). The integer core's
  hand-off works beside its pipeline on the MAC's multiplier: a FINISH leaves the third
  stage like any flit and its activation is offered :attr:`Timing.finish_delay` cycles
  later (4 for 32-bit accumulators), one more for each cycle a MAC took the multiplier
  first; an output or another FINISH waits in the third stage while the unit is busy.
- **A tile's outputs.** A core's output enters its router's local input at the next slot
  boundary and leaves the fabric (or enters another core) one slot per router later
  (:meth:`Timing.from_core`). One tile sends at most one output per
  :attr:`Timing.out_service` cycles: one per cycle on ``compact`` and ``parallel``, one per
  two cycles on ``lite`` with one phit (its local input is a one-flit register), about one
  per slot with phits. On ``lite``, flits delivered to tile (0, y) and replies leaving by
  the west edge share router (0, y)'s delivery stage ``D``, so tile 0 answers at about half
  that rate (:attr:`Timing.west_service`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..errors import InputError
from ..hdl.core.units import handoff_limbs

__all__ = ["MODELLED_ROUTERS", "ModelError", "Timing", "UnmodelledConfigError"]

#: The router micro-architectures the model knows (all of ``Config.router_arch``).
MODELLED_ROUTERS = ("compact", "parallel", "lite", "voq")


class ModelError(ValueError):
    """The model cannot predict this program (the reason in one line)."""


class UnmodelledConfigError(ModelError, InputError):
    """A program or fabric the model does not cover (a float layer too large to compile in
    full, a router it has no class for): refused like any bad input (one line, exit status
    2) before anything is predicted."""

#: Cycles between two outputs of one tile, per (router_arch, phits): measured with runs of
#: READs to one tile (``benchmarks/model.py --micro``). With 2 phits the core's three-stage
#: pipeline and the two-cycle slot beat: 11 outputs per 30 cycles rather than one per slot.
_OUT_SERVICE = {("lite", 1): 2.0, ("lite", 2): 2.75}
#: The same for tile 0 on ``lite`` (delivery stage shared with the west exit).
_WEST_SERVICE = {("lite", 1): 2.0, ("lite", 2): 3.75}


@dataclass(frozen=True)
class Timing:
    """Latencies and rates of a configuration (see the module's docstring).

    Parameters
    ----------
    config : Config
        The fabric.

    Attributes
    ----------
    slot : int
        Cycles per slot (``phits`` on ``lite``, else 1).
    adapter : int
        Extra cycles of the phit serializer / deserializer pair at the fabric's endpoints
        (``slot`` when links carry phits, else 0).
    out_service : float
        Cycles between two outputs of a tile.
    west_service : float
        The same for tile 0 of a row.
    depth : int
        Flits per VC in a router input buffer.
    """

    config: Config

    def __post_init__(self):
        if self.config.router_arch not in MODELLED_ROUTERS:
            raise UnmodelledConfigError(
                f"router_arch {self.config.router_arch!r}: the performance model covers "
                f"{', '.join(map(repr, MODELLED_ROUTERS))}; use --fidelity rtl")

    @property
    def slot(self) -> int:
        return self.config.phits

    @property
    def adapter(self) -> int:
        return self.slot if self.slot > 1 else 0

    @property
    def lite(self) -> bool:
        return self.config.router_arch == "lite"

    @property
    def analytic_exact(self) -> bool:
        """Whether the analytic level may be exact at all: not on ``voq``, where how a phase
        flows depends on the round-robin pointers the phase before left (iSLIP's grant and
        accept pointers), which only the event level keeps; on ``voq`` the event level
        plays every phase within its budget."""
        return self.config.router_arch != "voq"

    @property
    def out_service(self) -> float:
        if not self.lite:
            return 1.0
        return _OUT_SERVICE.get(("lite", self.slot), float(self.slot))

    @property
    def west_service(self) -> float:
        if not self.lite:
            return 1.0
        return _WEST_SERVICE.get(("lite", self.slot), 2.0 * self.slot)

    @property
    def write_stage(self) -> int:
        """Cycles from a core's take of a flit to its activation write (both cores: 1)."""
        return 1

    @property
    def mac_stage(self) -> int:
        """Cycles from the take to the cycle a MAC is counted (integer core 2, float 3)."""
        return 3 if self.config.is_float else 2

    @property
    def out_stage(self) -> int:
        """Cycles from the take to the cycle the core offers the flit's output (integer core
        2, float 4): also the number of pipeline registers behind the first stage."""
        return 4 if self.config.is_float else 2

    @property
    def limbs(self) -> int:
        """Limbs the integer core's hand-off multiplies on the MAC's multiplier, one per
        cycle in which no MAC moves into the last stage
        (:class:`~wafertile.hdl.core.units.Requantizer`: 2 for accumulators of 19 to 35
        bits); 0 for a core whose hand-off is combinational (the float core) or absent."""
        return handoff_limbs(self.config)

    @property
    def finish_delay(self) -> int:
        """Cycles from a FINISH leaving the integer core's last stage to its activation
        offered, with the multiplier free (``limbs + 2``; 0 without such a unit)."""
        return self.limbs + 2 if self.limbs else 0

    @property
    def hazards(self) -> bool:
        """The core bubbles on an accumulator read right behind its write (the float core)."""
        return self.config.is_float

    @property
    def depth(self) -> int:
        return self.config.buffer_depth

    def wait(self, start: int) -> int:
        """Cycles from a phase's start (``start`` cycles after reset) to the next slot
        boundary, where its first flit is injected."""
        return (-start) % self.slot

    def to_core(self, routers):
        """Cycle a core takes (stage 1) a flit that the host offered at cycle 0 of an aligned
        phase and that crosses ``routers`` routers (arrays allowed)."""
        return routers * self.slot + self.adapter

    def next_slot(self, t):
        """The first slot boundary at or after cycle ``t``."""
        h = self.slot
        return -(-t // h) * h

    def from_core(self, stage3, routers):
        """Cycle a core's output, offered in ``stage3``, leaves the fabric at an edge port or
        is taken by the core of a tile ``routers`` routers away (its own router included)."""
        return self.next_slot(stage3 + 1) + (routers - 1) * self.slot + self.adapter
