"""Formal verification of wafertile's blocks with SymbiYosys (YoWASP) and a PyPI SMT solver.

Modules, each importing only the ones listed before it:

- :mod:`.props`: named ``Assert`` / ``Assume`` / ``Cover`` statements;
- :mod:`.harness`: :class:`~.harness.Harness` (a wrapper around one block) and
  :class:`~.harness.Check` (a harness, a configuration, a mode and a depth);
- :mod:`.link`: the link and stream rules as properties;
- :mod:`.route`, :mod:`.buffer`, :mod:`.router`, :mod:`.core`, :mod:`.sram`,
  :mod:`.phit`: one harness module per block;
- :mod:`.mutations`: known faults, which the checks must catch;
- :mod:`.checks`: the checks of each block, with their configurations and depths;
- :mod:`.report`, :mod:`.sby`: running a check and its per-property result;
- :mod:`.cli`: ``wafertile formal``.

Imports go one way: this package uses :mod:`wafertile.hdl`; nothing in ``hdl`` or ``sim``
imports it. See ``docs/formal.md``.
"""

from .checks import BLOCKS, checks_for, mutation_checks
from .harness import Check, Harness
from .report import CheckResult, FormalReport, PropertyResult
from .sby import DEFAULT_SOLVER, SOLVERS, run_check

__all__ = ["BLOCKS", "DEFAULT_SOLVER", "SOLVERS", "Check", "CheckResult", "FormalReport",
           "Harness", "PropertyResult", "checks_for", "mutation_checks", "run_check"]
