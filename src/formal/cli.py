"""``wafertile formal``: the parser set-up and the command (registered by
:func:`wafertile.cli._parser` through :func:`add_parser`)."""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

from ..config import Config
from ..errors import InputError
from ..files import check_dir_writable, check_own_dir, read_text
from .checks import BLOCKS
from .mutations import MUTATION_NAMES

__all__ = ["add_parser"]

_DESCRIPTION = """\
Build a formal harness around a block (Amaranth Assert/Assume/Cover in a wrapper; the
synthesized RTL is unchanged), run SymbiYosys from YoWASP with an SMT solver from PyPI, and
report every property: proved (k-induction), passed to depth N (bounded model checking), or
failed, with the counterexample written as a VCD file whose path is printed. Covers report
the states the checks can reach. Checks run on a small configuration (a 3 x 3 array, 8/16-bit
data, 16-word banks, 2 VCs x 2 flits); a --config file overrides it key by key. Exit status 1
when a property fails, 2 on bad input. docs/formal.md says what each property means.
"""


def _blocks_help() -> str:
    return "; ".join(f"{name}: {text}" for name, text in BLOCKS.items())


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``formal`` command to ``subparsers`` (an argparse sub-parser action)."""
    from .sby import DEFAULT_SOLVER, SOLVERS

    parser = subparsers.add_parser(
        "formal", help="formal checks of a block (SymbiYosys + an SMT solver from PyPI)",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block", default="router", choices=list(BLOCKS),
                        help=f"what to check (default: %(default)s). {_blocks_help()}")
    parser.add_argument("--config", metavar="FILE", type=Path, default=None,
                        help="flat TOML file of parameters overriding the small formal "
                             "configuration (same keys as `wafertile generate --config`; "
                             "router_arch picks one router micro-architecture, default: all "
                             "four)")
    parser.add_argument("--depth", type=int, default=None, metavar="N",
                        help="bound (BMC) or induction length (k-induction) of every check, "
                             ">= 1 (default: each check's documented depth)")
    parser.add_argument("--solver", choices=list(SOLVERS), default=DEFAULT_SOLVER,
                        help="SMT solver (default: %(default)s, the fastest measured)")
    parser.add_argument("--mutate", action="store_true",
                        help="run the block's mutations instead: known faults that the "
                             "checks must catch with a counterexample (blocks "
                             f"{', '.join(MUTATION_NAMES)})")
    parser.add_argument("--no-covers", action="store_true",
                        help="skip the cover runs (reachability of buffers full, multicasts, "
                             "back-to-back MACs)")
    parser.add_argument("--work-dir", type=Path, default=Path("wafertile-formal"),
                        metavar="DIR",
                        help="where each check's design, sby files, logs and traces go "
                             "(default: %(default)s; a check's own directory is replaced)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (keys ok, solver, seconds, checks: each "
                             "with its properties' status, depth and trace)")
    parser.set_defaults(func=_cmd_formal, command_parser=parser)
    return parser


def _overrides(path: Path | None) -> dict:
    """The parameters a --config file sets, checked with the small formal configuration
    under them (a file that cannot be read or parsed fails in the configuration's words)."""
    from .checks import SMALL

    if path is None:
        return {}
    try:
        given = tomllib.loads(read_text(path, f"configuration file {str(path)!r}"))
    except (InputError, ValueError, RecursionError):  # Config.from_toml says why
        given = None
    if not isinstance(given, dict) or any(isinstance(v, dict) for v in given.values()):
        Config.from_toml(path)  # raises ConfigError with the reason
    Config.from_toml(path, **{k: v for k, v in SMALL.items() if k not in given})
    return given


def _cmd_formal(args: argparse.Namespace) -> int:
    from .checks import checks_for, mutation_checks
    from .report import FormalReport
    from .sby import run_check

    # Every input is checked before any work starts.
    if args.depth is not None and args.depth < 1:
        raise InputError(f"--depth must be an integer >= 1, not {args.depth}")
    if args.mutate and args.block not in MUTATION_NAMES:
        raise InputError(f"--mutate needs --block one of {', '.join(MUTATION_NAMES)}, not "
                         f"{args.block!r}")
    given = _overrides(args.config)
    try:
        checks = mutation_checks(args.block) if args.mutate else \
            checks_for(args.block, given, depth=args.depth)
    except ValueError as exc:  # a configuration the file and the defaults make together
        raise InputError(str(exc)) from None
    # each check's directory is replaced: only one that an earlier run made (and marked)
    if check_dir_writable("--work-dir", args.work_dir):
        for c in checks:
            check_own_dir(args.work_dir / c.name, flag="--work-dir")
    start = time.perf_counter()
    results = [run_check(c, args.work_dir, solver=args.solver, covers=not args.no_covers)
               for c in checks]
    report = FormalReport(results, args.solver, time.perf_counter() - start)
    print(json.dumps(report.as_json()) if args.json else report.text())
    return 0 if report.ok else 1
