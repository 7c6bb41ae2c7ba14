"""The ``wafertile sweep`` command: its options (:func:`add_parser`) and what it does.

Every input (the spec, the flags, the output directory) is checked before a cluster starts;
a bad one is one line, ``wafertile: error: ...``, exit status 2
(:class:`~wafertile.errors.InputError`, reported by :func:`wafertile.cli.main`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import textwrap
from pathlib import Path
from typing import Any

from ..cluster import check_scheduler
from ..errors import InputError
from ..files import check_dir_writable, check_input_file
from .measures import MEASUREMENTS
from .results import COLUMNS, MARK, TABLE, check_axes, check_output_dir

__all__ = ["add_parser"]

_log = logging.getLogger(__name__)

#: What ``--scheduler`` accepts: a Dask address (``tcp://HOST:PORT``, or ``HOST:PORT``).
_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|ucx)://)?(\[[0-9a-fA-F:]+\]|[\w.-]+)(:\d{1,5})?$")

_DESCRIPTION = """\
Run a parameter sweep: every configuration of a spec (a grid and/or a list of parameter
sets: rows, cols, data_width, router_arch, buffer_depth, ...) x every workload (random
layers by shape and density, layer files) x every measurement ('run': cycles, utilization,
speedup on Verilator; 'synth': LUTs, FFs, BRAM, DSP, fmax, fits, or a per-tile estimate;
'derived': time per inference at fmax, MACs/s, MACs/s per LUT), each point a task on a Dask
cluster: by default a LocalCluster of --workers processes on this machine, or the workers
of a running `dask scheduler` (--scheduler). Rows are appended to DIR/results.csv as points
finish (one row per point, workload and measurement; every parameter a column: read it with
pandas.read_csv); a failing point records its error and the sweep goes on; --resume skips
the points already in the table. Verilator builds and synthesis results are cached (by the
generated Verilog, the configuration and the tool versions), so identical designs are never
rebuilt. At the end: a summary table, DIR/plots/*.png, and DIR/results.parquet if pyarrow is
installed. The spec (a TOML file: measure, fidelity, [base], [grid], [[points]],
[[workloads]], [run], [synth], [[plots]], skip_invalid) is checked before anything starts;
see docs/sweep.md. Exit status 1 if a point failed, 2 on bad input.
"""

_EPILOG = """\
examples:
  wafertile sweep sweep.toml -o out/             run it on a LocalCluster (one worker per core)
  wafertile sweep sweep.toml -o out/ --dry-run   list the points, run nothing
  wafertile sweep sweep.toml -o out/ --resume    continue: skip the points in out/results.csv
  wafertile sweep sweep.toml -o out/ --scheduler tcp://10.0.0.5:8786
  wafertile sweep --plot out/ --x density --y speedup --by router_arch
  wafertile sweep --plot out/ --x buffer_depth --y cycles --by router_arch --where density=0.1

a cluster by hand:
  dask scheduler                                 (prints tcp://HOST:8786)
  dask worker tcp://HOST:8786 --nthreads 1       (on each machine, as many as wanted)
"""

_MEASUREMENT_HELP = "; ".join(f"{m.name}: {m.help}" for m in MEASUREMENTS.values())


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` command to the ``wafertile`` command's ``subparsers``."""
    p = subparsers.add_parser(
        "sweep", help="run a parameter sweep on a Dask cluster into a table and plots",
        description=_DESCRIPTION + "\n" + textwrap.fill("measurements: " + _MEASUREMENT_HELP, 88),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", type=Path, metavar="SPEC.toml",
                   help="the sweep spec (TOML; docs/sweep.md); not with --plot")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help="output directory, created if missing: results.csv, spec.toml, "
                        "plots/, results.parquet (default: wafertile-sweep/<spec name>); a "
                        "non-empty directory that an earlier sweep did not make is refused "
                        "unless --force")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the local Dask cluster, >= 1, one thread each "
                        f"(default: the number of cores, {os.cpu_count() or 1} here); not "
                        "with --scheduler")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run on the existing Dask cluster of this scheduler "
                        "(tcp://HOST:8786, as `dask scheduler` prints it) instead of a local "
                        "one; its workers need the same wafertile installed")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in DIR: points whose id is in DIR/results.csv "
                        "(done or failed) are skipped; with nothing left, no cluster starts")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: run the points whose row is an error again (their "
                        "rows are replaced)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty DIR that is not a sweep's, or start DIR's "
                        "table over (without --resume, an existing table is refused)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the points (id, measurement, parameters, workload; with "
                        "--resume, whether each is in the table) and stop")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="cache of Verilator builds and synthesis results for the workers "
                        "(default: each worker's $WAFERTILE_CACHE or ~/.cache/wafertile, "
                        "as `wafertile run`)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object at the end (points, skipped, submitted, ok, "
                        "failed, seconds, table, plots; with --dry-run the points) instead "
                        "of the summary; progress stays on stderr")
    plots = p.add_argument_group("plots", textwrap.fill(
        "drawn into DIR/plots/ at the end of a sweep (with --x/--y: that plot too), or from "
        "an existing DIR with --plot DIR", 88))
    plots.add_argument("--plot", type=Path, default=None, metavar="DIR",
                       help="draw plots from the table in DIR (a sweep's -o) and stop; "
                            "without --x/--y the default ones (Pareto front of time_us vs "
                            "luts when DIR has derived rows, cycles and speedup vs density)")
    plots.add_argument("--x", metavar="COLUMN", default=None,
                       help="column on the x axis (a parameter, a workload field such as "
                            "density, or a figure); with --y")
    plots.add_argument("--y", metavar="COLUMN", default=None,
                       help="column on the y axis (speedup, cycles, luts, fmax_mhz, time_us, "
                            "...); with --x")
    plots.add_argument("--by", metavar="COLUMN", default=None,
                       help="one colour per value of this column (router_arch, ...); alone "
                            "with --plot: the Pareto front by it")
    plots.add_argument("--where", metavar="COLUMN=VALUE", action="append", default=[],
                       help="keep only the rows where COLUMN equals VALUE (repeatable)")
    p.set_defaults(func=_cmd_sweep, command_parser=p)
    return p


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


def _where(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        _check(bool(sep and key), f"--where must be COLUMN=VALUE, not {item!r}")
        out[key] = value
    return out


def _check_plot_flags(args: argparse.Namespace) -> dict[str, str]:
    _check((args.x is None) == (args.y is None), "--x and --y go together")
    where = _where(args.where)
    _check(not where or args.x is not None, "--where needs --x and --y")
    try:
        check_axes(COLUMNS, args.x, args.y, args.by, where)
    except ValueError as exc:
        raise InputError(f"--{exc!s}") from None
    return where


def _cmd_sweep(args: argparse.Namespace) -> int:
    where = _check_plot_flags(args)
    if args.plot is not None:
        _check(args.spec is None, "give a sweep spec or --plot DIR, not both")
        for flag in ("resume", "retry_failed", "dry_run", "force"):
            _check(not getattr(args, flag), f"--{flag.replace('_', '-')} applies to running "
                                            f"a sweep, not to --plot")
        return _cmd_plot(args, where)
    _check(args.spec is not None, "give a sweep spec (SPEC.toml) or --plot DIR")
    _check(args.workers is None or args.workers >= 1,
           f"--workers must be an integer >= 1, not {args.workers}")
    _check(args.workers is None or args.scheduler is None,
           "--workers sizes the local cluster; the workers of --scheduler are the ones started "
           "with `dask worker`")
    if args.scheduler is not None:
        check_scheduler(args.scheduler, reach=not args.dry_run)
    _check(not args.retry_failed or args.resume, "--retry-failed goes with --resume")
    if args.cache is not None:
        check_dir_writable("--cache", args.cache)

    from .spec import load_spec

    spec = load_spec(args.spec)
    output = args.output or Path("wafertile-sweep") / args.spec.stem
    if args.dry_run:
        return _dry_run(spec, output, args)
    check_output_dir(output, resume=args.resume, force=args.force)
    return _run(spec, output, args, where)


def _dry_run(spec, output: Path, args: argparse.Namespace) -> int:
    from .points import expand
    from .results import ResultTable

    points = expand(spec)
    done = set()
    if args.resume and (output / MARK).is_file() and (output / TABLE).is_file():
        done = ResultTable(output).ids()
    if args.json:
        print(json.dumps({"points": [
            {"id": p.id, "measurement": p.measurement, "fidelity": p.fidelity,
             "config": p.config.as_dict(),
             "workload": None if p.workload is None else p.workload.columns(p.config),
             "in_table": p.id in done} for p in points]}))
        return 0
    fidelity = len(spec.fidelities) > 1
    for p in points:
        state = "in table" if p.id in done else "to run" if not p.inputs else "derived"
        print(f"{p.id}  {state:8s}  {p.fidelity + '  ' if fidelity else ''}{p.label}"
              + (f"  [{p.workload.label()}]" if p.workload is not None and
                 len(spec.workloads) == 1 else ""))
    varying = ", ".join(spec.varying) or "none"
    print(f"{len(points)} point(s) ({', '.join(spec.measure)}) from {len(spec.configs)} "
          f"configuration(s) x {len(spec.workloads)} workload(s); varying parameters: "
          f"{varying}" + (f"; {len(done & {p.id for p in points})} in {output / TABLE}"
                          if done else ""))
    for line in spec.skipped:
        print(f"  left out (skip_invalid): {line}")
    return 0


def _run(spec, output: Path, args: argparse.Namespace, where: dict[str, str]) -> int:
    import pandas as pd

    from .driver import run_sweep
    from .results import ResultTable
    from .summary import summary_text

    if spec.skipped:
        _log.info(f"{len(spec.skipped)} invalid combination(s) left out (skip_invalid)")
    result = run_sweep(spec, output, workers=args.workers or os.cpu_count() or 1,
                       scheduler=args.scheduler, resume=args.resume,
                       retry_failed=args.retry_failed, cache=args.cache)
    df = pd.read_csv(result.table)
    order = {i: n for n, i in enumerate(result.ids)}  # the spec's order, not finishing order
    df = df[df["id"].isin(order)].sort_values("id", key=lambda ids: ids.map(order))
    plots = _plots(df, output / "plots", spec.plots, args, where)
    parquet = ResultTable(output).write_parquet()
    failed = int((df["status"] != "ok").sum())
    if args.json:
        print(json.dumps({**result.as_json(), "failed_rows": failed,
                          "plots": [str(p) for p in plots],
                          "parquet": None if parquet is None else str(parquet)}))
    else:
        print(summary_text(df))
        ran = (f"ran {result.submitted} point(s) on {result.cluster}" if result.submitted
               else "nothing to run (every point is in the table)")
        print(f"{ran}, {result.skipped} skipped, {result.derived} derived, in "
              f"{result.seconds:.1f} s")
        print(f"table    {result.table}" + (f" and {parquet}" if parquet else
                                             " (CSV only: pyarrow is not installed)"))
        for path in plots:
            print(f"plot     {path}")
    return 1 if failed else 0


def _plots(df, out_dir: Path, specs, args: argparse.Namespace, where: dict[str, str]
           ) -> list[Path]:
    """The default plots, the spec's and the flags' (a plot that cannot be drawn, for want
    of rows, is reported and skipped: the sweep's table is the result)."""
    from .plots import default_plots, plot_metric

    wanted = [(s.x, s.y, s.by, s.where) for s in specs]
    if args.x is not None:
        wanted.append((args.x, args.y, args.by, where))
    out = []
    try:
        out += default_plots(df, out_dir)
    except ValueError as exc:
        _log.warning(f"default plots not drawn: {exc}")
    for x, y, by, w in wanted:
        try:
            out.append(plot_metric(df, x, y, out_dir, by=by, where=w))
        except ValueError as exc:
            _log.warning(f"plot of {y} vs {x} not drawn: {exc}")
    return out


def _cmd_plot(args: argparse.Namespace, where: dict[str, str]) -> int:
    import pandas as pd

    from .plots import default_plots, plot_metric, plot_pareto

    table = args.plot / TABLE
    _check(args.plot.is_dir(), f"--plot {str(args.plot)!r} is not a directory (name the -o DIR "
                               f"of a `wafertile sweep`)")
    _check((args.plot / MARK).is_file() and (table.exists() or table.is_symlink()),
           f"--plot {str(args.plot)!r} holds no {TABLE} of a wafertile sweep (the -o DIR of a "
           f"`wafertile sweep`, marked by {MARK})")
    check_input_file(table, f"--plot {str(args.plot)!r}: {TABLE}")
    try:
        df = pd.read_csv(table)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise InputError(f"--plot {str(args.plot)!r}: {TABLE} is not a sweep's table "
                         f"({' '.join(str(exc).split())[:160]})") from None
    missing = [c for c in ("id", "status", "measurement") if c not in df.columns]
    _check(not missing, f"--plot {str(args.plot)!r}: {TABLE} is not a sweep's table (no "
                        f"{', '.join(missing)} column)")
    _check(len(df) > 0, f"--plot {str(args.plot)!r}: {TABLE} has no rows to plot")
    out_dir = args.plot / "plots"
    _check(not out_dir.is_symlink(), f"--plot {str(args.plot)!r}: plots is a symbolic link; "
                                     f"wafertile does not write through links")
    _check(not out_dir.exists() or out_dir.is_dir(),
           f"--plot {str(args.plot)!r}: plots is a file, so the plots cannot be written into "
           f"a plots directory")
    check_dir_writable("--plot", out_dir)
    try:
        if args.x is not None:
            paths = [plot_metric(df, args.x, args.y, out_dir, by=args.by, where=where)]
        elif args.by is not None:  # the Pareto front: derived rows', else train rows'
            derived = (df["measurement"] == "derived").any() or \
                not (df["measurement"] == "train").any()
            paths = [plot_pareto(df, out_dir, by=args.by,
                                 measurement="derived" if derived else "train")]
        else:
            paths = default_plots(df, out_dir)
    except ValueError as exc:
        raise InputError(f"--plot {str(args.plot)!r}: {exc}") from None
    _check(bool(paths), f"--plot {str(args.plot)!r}: nothing to plot by default (no derived "
                        f"rows, no run rows with a varying parameter); name --x and --y")
    if args.json:
        print(json.dumps({"plots": [str(p) for p in paths]}))
    else:
        for path in paths:
            print(f"plot     {path}")
    return 0
