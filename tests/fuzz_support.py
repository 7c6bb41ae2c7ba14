"""The machinery of ``tests/test_fuzz.py``: running ``wafertile.cli.main`` on one fuzzed case
(in-process or in a subprocess), the properties every outcome must have, the stand-ins that
keep a case from building or simulating anything, and the fuzzed input files.

The property of every case (:func:`check_outcome`):

- no exception escapes ``main()`` (a warning counts: warnings are errors under pytest);
  the exception is raised again as it is, so each bug is its own failure in Hypothesis;
- the command answers within :data:`HANG_SECONDS` (no hang on a FIFO, /dev/zero, ...);
- the exit status is 0, 1 or 2, and no traceback is printed;
- on status 2: stderr is exactly one line, ``wafertile: error: ...``, and nothing in the
  case's directory was created, changed or removed;
- whatever the status: nothing outside the outputs the command line names (``-o``, ``--out``,
  ``--work-dir``, ``--build-dir``, ...; or their defaults) was touched, in particular not
  the sentinel directory ``outside/`` that symlinks in the working directory point into.

A case that gets past every check reaches a step the fuzzer does not run (a simulation, a
synthesis, a solver, a serial port, a large compile): a stand-in raises :class:`ReachedWork`
there, which ends the case (the properties about files still hold).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent

#: Seconds a case may take before it counts as a hang.
HANG_SECONDS = float(os.environ.get("WAFERTILE_FUZZ_TIMEOUT", "15"))
#: Memory (RLIMIT_DATA) a case may add to the process (beyond it: MemoryError, a failure).
MEMORY_HEADROOM = 3 << 30
#: Seconds a subprocess case (FIFO, /dev/zero) may take before it counts as a hang.
SUBPROCESS_SECONDS = 20.0

#: Tiles, activation rows and array sizes above which a compile or a prediction is not run
#: (the case ends there as one that passed every check).
SMALL_TILES = 64
SMALL_BATCH = 64
SMALL_SIZE = 200_000


# -- stand-ins for the expensive steps ---------------------------------------------------------


class ReachedWork(BaseException):
    """A case got past every check to a step the fuzzer does not run."""


class Hang(BaseException):
    """The case did not finish within :data:`HANG_SECONDS`."""


def _reached(name: str) -> Callable[..., Any]:
    def stand_in(*_args, **_kwargs):
        raise ReachedWork(name)
    return stand_in


def _small(config, args: Sequence[Any]) -> bool:
    """Whether a compile or prediction of these arguments is cheap enough to run: a small
    array, few activation rows (the first array is X), small arrays, few layers."""
    if config.rows * config.cols > SMALL_TILES:
        return False
    arrays = []
    for a in args:
        if isinstance(a, np.ndarray):
            arrays.append(a)
        elif hasattr(a, "layers"):
            if len(a.layers) > 8:
                return False
            arrays += [np.asarray(layer.weights) for layer in a.layers]
    x = next((a for a in args if isinstance(a, np.ndarray)), None)
    if x is not None and x.ndim and x.shape[0] > SMALL_BATCH:
        return False
    return all(arr.size <= SMALL_SIZE for arr in arrays)


def _guarded(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def call(config, *args, **kwargs):
        if not _small(config, args):
            raise ReachedWork(f"{name} of a large case (not run)")
        return real(config, *args, **kwargs)
    return call


def _emit_guard(real: Callable[..., Any]) -> Callable[..., Any]:
    def emit(block, config, outdir, *args, **kwargs):
        if block not in ("mac", "sram"):
            raise ReachedWork(f"emit of block {block!r} (not run)")
        return real(block, config, outdir, *args, **kwargs)
    return emit


def stand_ins() -> dict[str, Callable[[Any], Any]]:
    """``"module.attribute" -> make(real)``: what :func:`install_stubs` replaces."""
    return {
        "wafertile.run.simulate": lambda real: _reached("simulate"),
        "wafertile.network.run.simulate": lambda real: _reached("simulate (network)"),
        "wafertile.device.run_on_device": lambda real: _reached("run_on_device"),
        "wafertile.synth.flow.run_synth": lambda real: _reached("run_synth"),
        "wafertile.synth.boards.build_board": lambda real: _reached("build_board"),
        "wafertile.sweep.driver.dask_client": lambda real: _reached("the sweep's Dask cluster"),
        "wafertile.trainer.command._fabric": lambda real: _reached("the training's fabric"),
        "wafertile.trainer.command._run": lambda real: _reached("the training steps"),
        "wafertile.formal.sby.sby_environment": lambda real: _reached("formal solver"),
        "wafertile.sim.toolchain.run_verilator_lint": lambda real: _reached("verilator lint"),
        "wafertile.hdl.generate.emit": _emit_guard,
        "wafertile.run.compile_layer": lambda real: _guarded("compile_layer", real),
        "wafertile.network.run.compile_network": lambda real: _guarded("compile_network", real),
        "wafertile.model.command.predict_layer": lambda real: _guarded("predict_layer", real),
        "wafertile.model.command.predict_network": lambda real: _guarded("predict_network",
                                                                         real),
    }


def install_stubs(setattr_: Callable[[Any, str, Any], None] = setattr) -> None:
    """Replace the expensive steps (``setattr_``: ``monkeypatch.setattr`` in a test).

    Every module is imported before anything is replaced: a module first imported after
    ``wafertile.run.simulate`` became a stand-in would bind the stand-in by ``from ..run
    import simulate`` and keep it after the test (``wafertile.network.run`` did, when no test
    module had imported it before test_fuzz ran)."""
    import importlib

    targets = [(importlib.import_module(t.rsplit(".", 1)[0]), t.rsplit(".", 1)[1], make)
               for t, make in stand_ins().items()]
    for module, attr, make in targets:
        setattr_(module, attr, make(getattr(module, attr)))


# -- the working directory of a case -----------------------------------------------------------


@dataclass
class Workspace:
    """A case's directory: ``ws/`` (the working directory: inputs and outputs) and
    ``outside/`` (the sentinel, reached from ``ws/`` through symlinks)."""

    root: Path

    @property
    def ws(self) -> Path:
        return self.root / "ws"

    @property
    def outside(self) -> Path:
        return self.root / "outside"


#: The good input files of every workspace, and the paths a fuzzed flag may name.
GOOD_W = np.array([[1, 0, 0, -2, 0, 0, 3, 0], [0, 0, 4, 0, 0, 0, 0, -5],
                   [0, 6, 0, 0, 0, 0, 0, 0], [7, 0, 0, 0, 0, -8, 0, 0]], np.int8)
GOOD_X = np.arange(-8, 8, dtype=np.int8).reshape(2, 8)


def good_network() -> dict[str, Any]:
    """The arrays of a tiny valid 2-layer int8 network file (3 inputs, 2 outputs)."""
    return {"format": np.array("wafertile-network/1"), "data_width": np.array(8),
            "layers": np.array(2), "name": np.array("tiny"),
            "w0": np.array([[1, -2, 0], [0, 3, 1], [2, 0, -1], [0, 0, 4]], np.int8),
            "b0": np.array([1, 0, -1, 2], np.int64), "mult0": np.array(3, np.int64),
            "shift0": np.array(2, np.int64), "relu0": np.array(1),
            "w1": np.array([[1, 0, -1, 2], [0, 2, 1, 0]], np.int8),
            "b1": np.array([0, 1], np.int64), "input_scale": np.array(0.05)}


def make_template(base: Path) -> Path:
    """The template of every workspace (copied per case: symlinks are relative)."""
    root = base / "template"
    if root.exists():
        return root
    ws, out = root / "ws", root / "outside"
    ws.mkdir(parents=True)
    out.mkdir()
    (out / "keep.txt").write_text("sentinel\n")
    np.save(out / "keep.npy", np.arange(4).reshape(2, 2))
    (out / "dir").mkdir()
    (out / "dir" / "inner.txt").write_text("inner\n")
    (out / "keep.toml").write_text("rows = 2\ncols = 2\n")
    np.save(ws / "w.npy", GOOD_W)
    np.save(ws / "x.npy", GOOD_X)
    np.save(ws / "x3.npy", np.array([[1, 2, 3], [-4, 5, 0], [7, -8, 9]], np.int64))
    np.save(ws / "xf.npy", np.array([[0.5, -1.0, 2.0]], np.float32))
    np.save(ws / "labels.npy", np.array([0, 1, 1], np.int64))
    np.save(ws / "calib.npy", np.random.default_rng(0).standard_normal((8, 3)))
    np.savez(ws / "net.npz", **good_network())
    (ws / "m.onnx").write_bytes(onnx_bytes(Onnx()))
    (ws / "cfg.toml").write_text("rows = 2\ncols = 2\ndata_width = 8\nacc_width = 24\n")
    (ws / "spec.toml").write_text(
        'measure = ["run"]\nfidelity = "model"\n[base]\nrows = 2\ncols = 2\n'
        '[grid]\nbuffer_depth = [2, 4]\n[[workloads]]\nkind = "random"\ndensity = 0.5\n'
        'inputs = 8\n')
    (ws / "a_file").write_text("a plain file\n")
    (ws / "a_dir").mkdir()
    (ws / "full_dir").mkdir()
    (ws / "full_dir" / "other.txt").write_text("not wafertile's\n")
    (ws / "dir.npy").mkdir()
    for name, target in (("link_file.txt", "../outside/keep.txt"),
                         ("link_file.npy", "../outside/keep.npy"),
                         ("link_file.toml", "../outside/keep.toml"),
                         ("link_dir", "../outside/dir"),
                         ("link_missing.npy", "../outside/missing.npy"),
                         ("link_missing.npz", "../outside/missing.npz"),
                         ("link_missing_dir", "../outside/missing_dir"),
                         ("link_loop.npy", "link_loop.npy")):
        os.symlink(target, ws / name)
    return root


def new_workspace(template: Path) -> Workspace:
    root = Path(tempfile.mkdtemp(dir=template.parent, prefix="case-"))
    shutil.copytree(template, root, symlinks=True, dirs_exist_ok=True)
    return Workspace(root)


def remove_workspace(ws: Workspace) -> None:
    for dirpath, dirnames, _ in os.walk(ws.root):
        for d in dirnames:
            with contextlib.suppress(OSError):
                p = os.path.join(dirpath, d)
                if not os.path.islink(p):
                    os.chmod(p, 0o755)
    shutil.rmtree(ws.root, ignore_errors=True)


#: Paths a path-valued flag may name (relative to ``ws/``), besides the fuzzed files.
PATH_POOL = ("w.npy", "x.npy", "x3.npy", "xf.npy", "labels.npy", "calib.npy", "net.npz",
             "m.onnx", "cfg.toml", "spec.toml", "a_file", "a_dir", "full_dir", "dir.npy",
             "link_file.txt", "link_file.npy", "link_file.toml", "link_dir",
             "link_missing.npy", "link_missing.npz", "link_missing_dir", "link_loop.npy",
             "missing.npy", "missing.npz", "missing.onnx", "missing.toml", "missing_dir/y.npy",
             "a_file/sub", "a_file/y.npy", "/proc/x", "/proc/x.npy", "/dev/null", "", ".", "..",
             "../outside", "../outside/keep.npy", "../outside/dir", "out", "out.npy",
             "new/deep/dir", "\u00e9t\u00e9.npy", "sp ace.npy", "-", "~", "nl\nname.npy",
             "bad.npy", "bad.npz", "bad.toml", "bad.onnx")


# -- snapshots ----------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (symlinks not followed): type, and for files size, mtime
    and mode, for symlinks the target. A directory's mtime is left out (its entries are
    compared one by one)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            try:
                s = os.lstat(p)
            except OSError:
                continue
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(s.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(s.st_mode):
                out[rel] = ("dir", stat.S_IMODE(s.st_mode))
            elif stat.S_ISREG(s.st_mode):
                out[rel] = ("file", s.st_size, s.st_mtime_ns, stat.S_IMODE(s.st_mode))
            else:
                out[rel] = ("special", stat.S_IFMT(s.st_mode))
    return out


def changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """The entries created, changed or removed, as ``"+ path"``, ``"~ path"``, ``"- path"``."""
    out = [f"+ {p}" for p in sorted(set(after) - set(before))]
    out += [f"- {p}" for p in sorted(set(before) - set(after))]
    out += [f"~ {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return out


def named_outputs(argv: Sequence[str], cwd: Path) -> list[Path]:
    """The outputs the command line names, or their defaults (absolute, not resolved)."""
    from wafertile.cli import _parser

    try:
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            args, _ = _parser().parse_known_args(list(argv))
    except SystemExit:
        return []
    except Exception:  # the parser itself failing is for the property check to see
        return []
    command = getattr(args, "command", None)
    named: list[Any] = []
    if command == "generate":
        named.append(args.output)
    elif command == "run":
        named.append(args.out)
    elif command == "synth":
        named.append(args.build_dir if args.build_dir is not None else Path("wafertile-synth"))
    elif command == "formal":
        named.append(args.work_dir)
    elif command == "train":
        named.append(args.output if args.output is not None else Path("wafertile-train"))
    elif command == "sweep":
        if args.output is not None:
            named.append(args.output)
        elif args.spec is not None:
            named.append(Path("wafertile-sweep") / args.spec.stem)
        named.append(args.cache)
        if args.plot is not None:
            named.append(Path(args.plot) / "plots")
    return [cwd / p for p in named if p is not None and str(p) != ""]


def _allowed(path: Path, kind: str, outputs: list[Path]) -> bool:
    """Whether a change at ``path`` is one the named ``outputs`` allow: the output itself,
    anything under it (through a symlink too), or a new directory on the way to it."""
    for out in outputs:
        targets = {Path(os.path.abspath(out)), Path(os.path.realpath(out))}
        for t in targets:
            if path == t or t in path.parents:
                return True
            if kind == "dir" and path in t.parents:
                return True
    return False


# -- running one case --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run of ``main(argv)`` did."""

    argv: list[str]
    status: int | None = None
    out: str = ""
    err: str = ""
    exc: BaseException | None = None
    hung: bool = False
    reached: str | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        what = (f"exception {type(self.exc).__name__}: {self.exc}" if self.exc is not None
                else "hang" if self.hung else f"reached {self.reached}" if self.reached
                else f"exit status {self.status}")
        return (f"argv: {self.argv!r}\n{what} after {self.seconds:.2f} s\n"
                f"stderr: {self.err[-2000:]!r}\nstdout: {self.out[-500:]!r}")


def _exit_code(code: Any, err: io.StringIO) -> int:
    """What the interpreter makes of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)
    err.write(f"{code}\n")
    return 1


class _Alarm:
    armed = False
    seconds = HANG_SECONDS

    @classmethod
    def handler(cls, _signum, _frame):
        if cls.armed:
            raise Hang(f"no answer within {cls.seconds:g} s")


def _vm_bytes() -> int:
    """The process's data size (VmData: what RLIMIT_DATA limits)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def run_in_process(argv: Sequence[str], cwd: Path, *, timeout: float = HANG_SECONDS
                   ) -> Outcome:
    """Run ``main(argv)`` in ``cwd`` with stdout and stderr captured, a timeout (SIGALRM) and
    a memory limit (RLIMIT_DATA: current size + :data:`MEMORY_HEADROOM`; not RLIMIT_AS,
    which the WebAssembly Yosys of Amaranth, reserving address space, does not survive)."""
    from wafertile.cli import main

    outcome = Outcome(list(argv))
    out, err = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    old_handler = signal.signal(signal.SIGALRM, _Alarm.handler)
    limits = resource.getrlimit(resource.RLIMIT_DATA)
    start = time.monotonic()
    try:
        os.chdir(cwd)
        soft = _vm_bytes() + MEMORY_HEADROOM
        if limits[1] != resource.RLIM_INFINITY:
            soft = min(soft, limits[1])
        resource.setrlimit(resource.RLIMIT_DATA, (soft, limits[1]))
        _Alarm.seconds = timeout
        _Alarm.armed = True
        signal.setitimer(signal.ITIMER_REAL, timeout, 1.0)  # again every second if swallowed
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                outcome.status = _exit_code(main(list(argv)), err)
            except SystemExit as exc:
                outcome.status = _exit_code(exc.code, err)
    except Hang:
        outcome.hung = True
    except ReachedWork as exc:
        outcome.reached = str(exc)
    except BaseException as exc:
        outcome.exc = exc
    finally:
        _Alarm.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_DATA, limits)
        os.chdir(old_cwd)
    outcome.seconds = time.monotonic() - start
    outcome.out, outcome.err = out.getvalue(), err.getvalue()
    if isinstance(outcome.exc, KeyboardInterrupt):
        raise outcome.exc
    return outcome


_BATCH_CODE = (
    "import sys; sys.path.insert(0, {repo!r}); "
    "from tests.fuzz_support import batch_main; batch_main(sys.argv[1])")


def batch_main(plan: str) -> None:
    """A subprocess that runs several cases one after the other (the imports paid once),
    each as :func:`run_in_process` does (SIGALRM timeout, memory limit), with faulthandler's
    watchdog behind it (a hang SIGALRM cannot break ends the process, stacks printed). The
    plan is a JSON list of ``{"id", "argv", "cwd"}``; one JSON line per case goes to
    ``plan + ".out"`` (a ``started`` line first, so the parent knows which case hung)."""
    import faulthandler
    import traceback

    global MEMORY_HEADROOM
    MEMORY_HEADROOM = 1536 << 20
    install_stubs()
    import wafertile.cli  # noqa: F401 (the imports, before any timing)

    timeout = float(os.environ.get("WAFERTILE_FUZZ_CHILD_TIMEOUT", SUBPROCESS_SECONDS))
    out_path = plan + ".out"
    done = set()
    if os.path.exists(out_path):
        with open(out_path) as f:
            done = {json.loads(line)["id"] for line in f}
    with open(plan) as f:
        cases = json.load(f)
    for case in cases:
        if case["id"] in done:
            continue
        with open(out_path, "a") as f:
            f.write(json.dumps({"id": case["id"], "started": True}) + "\n")
        faulthandler.dump_traceback_later(timeout + 10, exit=True)
        o = run_in_process(case["argv"], Path(case["cwd"]), timeout=timeout)
        faulthandler.cancel_dump_traceback_later()
        err, status = o.err, o.status
        if o.exc is not None:  # what the interpreter would print, and its exit status
            err += "".join(traceback.format_exception(o.exc))
            status = 1
        with open(out_path, "a") as f:
            f.write(json.dumps({"id": case["id"], "status": status, "out": o.out[-4000:],
                                "err": err[-8000:], "hung": o.hung, "reached": o.reached,
                                "seconds": o.seconds}) + "\n")


def run_batches(cases: Sequence[tuple[str, Sequence[str], Path]], *, workers: int = 4,
                timeout: float = SUBPROCESS_SECONDS) -> dict[str, Outcome]:
    """Run ``(id, argv, cwd)`` cases in ``workers`` subprocesses (:func:`batch_main`); a
    case whose process died in it (the watchdog) is a hang, and the rest of its batch goes
    on in a new process. Returns ``id -> Outcome``."""
    env = dict(os.environ, PYTHONWARNINGS="error", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    plans_dir = Path(tempfile.mkdtemp(prefix="wafertile-fuzz-batches-"))
    groups = [list(cases[k::workers]) for k in range(workers)]
    argv_of_id = {cid: list(argv) for cid, argv, _ in cases}
    results: dict[str, Outcome] = {}
    try:
        plans = []
        for k, group in enumerate(g for g in groups if g):
            plan = plans_dir / f"plan{k}.json"
            plan.write_text(json.dumps([{"id": cid, "argv": list(argv), "cwd": str(cwd)}
                                        for cid, argv, cwd in group]))
            plans.append((plan, {cid for cid, _, _ in group}))
        pending = list(plans)
        while pending:
            procs = [(plan, ids, subprocess.Popen(
                [sys.executable, "-W", "error", "-c", _BATCH_CODE.format(repo=str(REPO)),
                 str(plan)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True))
                for plan, ids in pending]
            pending = []
            for plan, ids, proc in procs:
                try:
                    _, err = proc.communicate(timeout=len(ids) * (timeout + 15) + 120)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    _, err = proc.communicate()
                lines = []
                out_path = Path(str(plan) + ".out")
                if out_path.exists():
                    lines = [json.loads(line) for line in out_path.read_text().splitlines()]
                finished = {e["id"]: e for e in lines if not e.get("started")}
                started = [e["id"] for e in lines if e.get("started")]
                for cid, e in finished.items():
                    results[cid] = Outcome(argv_of_id[cid], status=e["status"], out=e["out"],
                                           err=e["err"], hung=e["hung"], reached=e["reached"],
                                           seconds=e["seconds"])
                dead = [cid for cid in started if cid not in finished]
                for cid in dead:  # the watchdog ended the process in this case: a hang
                    results[cid] = Outcome(argv_of_id[cid], err=err[-8000:], hung=True,
                                           seconds=timeout + 10)
                    with out_path.open("a") as f:
                        f.write(json.dumps({"id": cid, "status": None, "out": "", "err": "",
                                            "hung": True, "reached": None,
                                            "seconds": timeout}) + "\n")
                if not dead and not ids <= set(finished):  # died at start: do not loop
                    for cid in ids - set(finished):
                        results[cid] = Outcome(argv_of_id[cid], status=proc.returncode,
                                               err=err[-8000:])
                elif ids - set(results):
                    pending.append((plan, ids))
    finally:
        shutil.rmtree(plans_dir, ignore_errors=True)
    return results


# -- the properties -----------------------------------------------------------------------------


class FuzzFailure(AssertionError):
    """A property of the command line does not hold (one subclass per property and
    command, so that Hypothesis reports each as its own bug)."""


_KINDS: dict[str, type] = {}


def _kind(prop: str, argv: Sequence[str], detail: str = "") -> type:
    """The failure class of ``prop`` for the command of ``argv`` (and ``detail``)."""
    command = next((a for a in argv if not a.startswith("-")), "none")
    command = command if command in ("run", "generate", "lint", "synth", "sweep",
                                     "formal") else "other"
    name = re.sub(r"\W+", "_", f"{prop}_{command}_{detail}").strip("_")[:80]
    if name not in _KINDS:
        _KINDS[name] = type(name, (FuzzFailure,), {})
    return _KINDS[name]


def _shape_of(line: str) -> str:
    """A stderr line with names, numbers and quoted text taken out (what kind of line)."""
    line = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "", line)
    return "_".join(line.split()[:4])


def check_outcome(outcome: Outcome, before: dict[str, tuple], after: dict[str, tuple],
                  outputs: list[Path], ws: Workspace, case: Any = None) -> None:
    """Raise if ``outcome`` breaks a property (see the module's docstring)."""
    context = f"{outcome.summary()}\ncase: {case!r}"
    if outcome.exc is not None:
        exc = outcome.exc
        with contextlib.suppress(Exception):
            exc.add_note(f"--- fuzz: an exception escaped wafertile.cli.main\n{context}")
        raise exc
    argv = outcome.argv
    if outcome.hung:
        raise _kind("hang", argv)(f"the command did not finish in time\n{context}")
    text = outcome.out + outcome.err
    if "Traceback (most recent call last)" in text:
        last = [ln for ln in outcome.err.splitlines() if ln and not ln.startswith(" ")][-1:]
        raise _kind("traceback", argv, _shape_of(last[0]) if last else "")(
            f"a traceback was printed\n{context}")
    if outcome.reached is None:
        if outcome.status not in (0, 1, 2):
            raise _kind("exit_status", argv, str(outcome.status))(
                f"exit status {outcome.status}, not 0, 1 or 2\n{context}")
        if outcome.status == 2:
            err = outcome.err
            if not (err.startswith("wafertile: error: ") and err.endswith("\n")
                    and err.count("\n") == 1):
                first = err.splitlines()[0] if err.strip() else "empty"
                raise _kind("error_not_one_line", argv, _shape_of(first))(
                    f"exit status 2 must come with one line 'wafertile: error: ...' on "
                    f"stderr\n{context}")
            made = changes(before, after)
            if made:
                raise _kind("wrote_on_error", argv)(
                    f"exit status 2, but files changed: {made[:10]}\n{context}")
    stray = []
    for entry in changes(before, after):
        rel = entry[2:]
        kind = (after.get(rel) or before.get(rel) or ("?",))[0]
        if not _allowed(ws.root / rel, kind, outputs):
            stray.append(entry)
    if stray:
        raise _kind("wrote_outside_outputs", argv)(
            f"files changed outside the named outputs {[str(o) for o in outputs]}: "
            f"{stray[:10]}\n{context}")


def run_case(argv: Sequence[str], ws: Workspace, case: Any = None, *,
             timeout: float = HANG_SECONDS) -> Outcome:
    """Run ``argv`` in ``ws`` in-process and check every property."""
    outputs = named_outputs(argv, ws.ws)
    before = snapshot(ws.root)
    outcome = run_in_process(argv, ws.ws, timeout=timeout)
    after = snapshot(ws.root)
    log_outcome(outcome, case)
    check_outcome(outcome, before, after, outputs, ws, case)
    return outcome


def where(exc: BaseException) -> list[str]:
    """Where ``exc`` was raised: the last frames in wafertile (not the fuzzer), then the
    last frame of all."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/tests/" not in f.filename]
    ours = [f for f in frames if "site-packages" not in f.filename
            and "/lib/python3" not in f.filename]
    shown = ours[-3:] + [f for f in frames[-1:] if f not in ours[-3:]]
    return [f"{f.filename.split('/work/main/')[-1]}:{f.lineno} {f.name}" for f in shown]


def log_outcome(outcome: Outcome, case: Any = None) -> None:
    """Append the outcome to $WAFERTILE_FUZZ_LOG (JSON lines), if set: for the report."""
    path = os.environ.get("WAFERTILE_FUZZ_LOG")
    if not path:
        return
    entry = {"argv": outcome.argv, "status": outcome.status, "hung": outcome.hung,
             "reached": outcome.reached, "seconds": round(outcome.seconds, 3),
             "err": outcome.err[-600:], "case": repr(case)[:600],
             "exc": None if outcome.exc is None else
             f"{type(outcome.exc).__name__}: {str(outcome.exc)[:300]}"}
    if outcome.exc is not None:
        entry["where"] = where(outcome.exc)
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def _quiet(make: Callable[..., Any]) -> Callable[..., Any]:
    """A file builder with numpy's warnings (casts of NaN, overflows) silenced: they are
    the fuzzer's own, not the command's."""
    import functools
    import warnings

    @functools.wraps(make)
    def call(*args, **kwargs):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return make(*args, **kwargs)
    return call


# -- fuzzed .npy files ------------------------------------------------------------------------


@dataclass(frozen=True)
class Npy:
    """How a fuzzed .npy file is made (its repr is what a falsifying example shows).

    kind: ``array`` (np.save of ``dtype`` / ``shape`` / ``fill``), ``truncated`` (that file
    cut to ``cut`` per mille), ``lying`` (a header claiming ``shape`` over ``cut`` bytes of
    data), ``header`` (magic, version ``cut``, then the header text ``text``), ``random``
    (``blob``), ``magic`` (the .npy magic, then ``blob``), ``empty``, ``npz`` (an archive),
    ``pickle`` (an object array), ``text`` (``text`` as a file).
    """

    kind: str = "array"
    dtype: str = "<i8"
    shape: tuple = (2, 3)
    fill: str = "small"
    seed: int = 0
    cut: int = 0
    text: str = ""
    blob: bytes = b""


@_quiet
def fill_array(dtype: str, shape: tuple, fill: str, seed: int) -> np.ndarray:
    """An array of ``dtype`` and ``shape``, its values by ``fill``."""
    rng = np.random.default_rng(seed)
    dt = np.dtype([("a", "<i4"), ("b", "<f4")]) if dtype == "struct" else np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    small = rng.integers(-3, 4, n)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if fill == "extreme":
            vals = rng.choice(np.array([info.min, info.max, 0, -1 if dt.kind == "i" else 1],
                                       dtype=dt), n)
        elif fill == "zero":
            vals = np.zeros(n, dt)
        else:
            vals = (np.abs(small) if dt.kind == "u" else small).astype(dt)
    elif dt.kind == "f":
        special = {"nan": np.nan, "inf": np.inf, "huge": np.finfo(dt).max, "tiny":
                   np.finfo(dt).smallest_subnormal, "zero": 0.0}
        if fill in special:
            vals = np.where(rng.random(n) < 0.5, special[fill], small).astype(dt)
        elif fill == "random":
            vals = rng.standard_normal(n).astype(dt)
        elif fill == "extreme":
            vals = np.where(rng.random(n) < 0.5, -np.inf, np.nan).astype(dt)
        else:
            vals = small.astype(dt)
    elif dt.kind == "c":
        vals = (small + 1j * (fill != "small")).astype(dt)
        if fill == "nan":
            vals[::2] = complex(np.nan, 0)
    elif dt.kind == "b":
        vals = small > 0
    elif dt.kind in "mM":
        vals = small.astype(np.int64).view(dt) if fill != "extreme" else \
            np.full(n, np.iinfo(np.int64).min, np.int64).view(dt)
    elif dt.kind in "US":
        vals = np.array([str(v) for v in small], dtype=dt)
    elif dt.kind == "V" and dt.names:
        vals = np.zeros(n, dt)
        for name in dt.names:
            vals[name] = small.astype(dt[name])
    else:  # void / other
        vals = np.zeros(n, dt)
    return np.asarray(vals).reshape(shape)


def _npy_header(header: str, version: int = 1) -> bytes:
    text = header.encode("latin1", "replace") if version < 3 else header.encode()
    width = 2 if version == 1 else 4
    pad = 64 - (10 + (width - 2) + len(text) + 1) % 64
    text = text + b" " * (pad % 64) + b"\n"
    size = len(text).to_bytes(width, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + text


@_quiet
def npy_bytes(spec: Npy) -> bytes:
    """The content of the .npy file ``spec`` describes."""
    buf = io.BytesIO()
    if spec.kind in ("array", "truncated"):
        np.save(buf, fill_array(spec.dtype, spec.shape, spec.fill, spec.seed))
        data = buf.getvalue()
        return data if spec.kind == "array" else data[:len(data) * spec.cut // 1000]
    if spec.kind == "lying":
        header = str({"descr": np.dtype(spec.dtype).str if spec.dtype != "O" else "|O",
                      "fortran_order": False, "shape": tuple(spec.shape)})
        return _npy_header(header) + bytes(range(256))[:spec.cut]
    if spec.kind == "header":  # version byte ``cut`` (a real one is 1, 2 or 3)
        head = _npy_header(spec.text, spec.cut if spec.cut in (1, 2, 3) else 1)
        return head[:6] + bytes([spec.cut % 256]) + head[7:] + spec.blob
    if spec.kind == "random":
        return spec.blob
    if spec.kind == "magic":
        return b"\x93NUMPY" + spec.blob
    if spec.kind == "empty":
        return b""
    if spec.kind == "npz":
        np.savez(buf, a=fill_array(spec.dtype, spec.shape, spec.fill, spec.seed))
        return buf.getvalue()
    if spec.kind == "pickle":
        np.save(buf, np.array([[1, "a"], [None, 2.5]], dtype=object), allow_pickle=True)
        return buf.getvalue()
    if spec.kind == "text":
        return spec.text.encode("utf-8", "surrogatepass")
    raise ValueError(spec.kind)


DTYPES = ("<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u8", ">i4", "<f2", "<f4", "<f8",
          ">f8", "<c8", "<c16", "|b1", "<M8[s]", "<m8[ns]", "<U3", "|S2", "|V4",
          "struct")
SHAPES = st.one_of(st.lists(st.sampled_from([0, 1, 2, 3, 5, 8, 17]), min_size=0, max_size=3)
                   .map(tuple), st.just((2, 8)), st.just((4, 8)), st.just((3, 3)))
LYING_SHAPES = st.sampled_from([(100000, 100000), (2**31, 2**31), (10**12,), (3, 10**9),
                                (2**62, 4), (2**63 - 1,), (4, 8), (0, 10**15), (-1, 3),
                                (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
                                 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33)])
BAD_HEADERS = st.sampled_from([
    "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }",
    "{'descr': '<i8', 'fortran_order': 'yes', 'shape': (2, 2), }",
    "{'descr': 'x9', 'fortran_order': False, 'shape': (2, 2), }",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (-2, 2), }",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (2.5, 2), }",
    "{'descr': '<i8', 'fortran_order': False, 'shape': 4, }",
    "{'descr': '<i8', 'fortran_order': False}",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), 'extra': 1}",
    "{'descr': 'O', 'fortran_order': False, 'shape': (2, 2), }",
    "{'descr': '|O', 'fortran_order': True, 'shape': (1, 1), }",
    "{'descr': [('a', '<i4', (2**40,))], 'fortran_order': False, 'shape': (1, 1), }",
    "{'descr': '<U99999999', 'fortran_order': False, 'shape': (1, 1), }",
    "{'descr': '<M8[Y]', 'fortran_order': True, 'shape': (2, 3), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (" + "(" * 150 + ")" * 150 + ")}",
    "[1, 2, 3]",
    "__import__('os').system('true')",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }" + " " * 20000,
    "",
    "\u00e9\u00e9\u00e9",
])


def npy_specs(*, arrays: bool = True) -> st.SearchStrategy[Npy]:
    """Fuzzed .npy files: real arrays of every dtype and shape, and damaged files."""
    array = st.builds(Npy, kind=st.just("array"), dtype=st.sampled_from(DTYPES), shape=SHAPES,
                      fill=st.sampled_from(["small", "zero", "extreme", "nan", "inf", "huge",
                                            "tiny", "random"]),
                      seed=st.integers(0, 3))
    damaged = st.one_of(
        st.builds(Npy, kind=st.just("truncated"), dtype=st.sampled_from(DTYPES), shape=SHAPES,
                  fill=st.just("small"), cut=st.integers(0, 999)),
        st.builds(Npy, kind=st.just("lying"),
                  dtype=st.sampled_from(["<i8", "<i1", "<f4", "<c16", "|b1", "<U4", "<M8[s]"]),
                  shape=LYING_SHAPES, cut=st.integers(0, 200)),
        st.builds(Npy, kind=st.just("header"), text=BAD_HEADERS, cut=st.sampled_from(
            [1, 2, 3, 0, 9, 255]), blob=st.binary(max_size=64)),
        st.builds(Npy, kind=st.just("random"), blob=st.binary(max_size=200)),
        st.builds(Npy, kind=st.just("magic"), blob=st.binary(max_size=200)),
        st.just(Npy(kind="empty")),
        st.builds(Npy, kind=st.just("npz"), dtype=st.just("<i8"), shape=st.just((2, 8))),
        st.just(Npy(kind="pickle")),
        st.builds(Npy, kind=st.just("text"), text=st.sampled_from(
            ["1,2,3\n4,5,6\n", "", "\ufeff1 2\n", "PK\x03\x04junk", "\x93NUMP"])),
    )
    return st.one_of(array, damaged) if arrays else damaged


# -- fuzzed network .npz files -----------------------------------------------------------------


@dataclass(frozen=True)
class Val:
    """A value of a network file's key: an array (``dtype``, ``shape``, ``fill``) or a Python
    value (``py``)."""

    dtype: str = "<i8"
    shape: tuple = ()
    fill: str = "small"
    py: Any = None

    def make(self) -> Any:
        if self.py is not None:
            return np.array(self.py) if not isinstance(self.py, np.ndarray) else self.py
        return fill_array(self.dtype, self.shape, self.fill, 0)


@dataclass(frozen=True)
class Net:
    """How a fuzzed network file is made.

    kind: ``keys`` (the tiny good network with ``changes``: ``(key, Val or None)``, None
    drops the key), ``float`` (a float network of dtype ``fp16`` with ``changes``),
    ``lying`` (the good network with member ``member`` claiming ``shape``), ``foreign`` (a
    zip of ``member`` holding ``blob``), ``truncated`` (the good file cut to ``cut`` per
    mille), ``random`` (``blob``), ``npy`` (a single .npy array), ``empty_zip``.
    """

    kind: str = "keys"
    changes: tuple = ()
    member: str = "w0"
    shape: tuple = ()
    cut: int = 0
    blob: bytes = b""


def _float_network() -> dict[str, Any]:
    return {"format": np.array("wafertile-network/1"), "data_width": np.array(16),
            "layers": np.array(2), "dtype": np.array("fp16"),
            "w0": np.array([[1, -2, 0], [0, 0.5, 1], [2, 0, -1], [0, 0, 4]], np.float16),
            "b0": np.array([1, 0, -1, 2], np.float32), "relu0": np.array(1),
            "w1": np.array([[1, 0, -1, 2], [0, 2, 1, 0]], np.float16),
            "b1": np.array([0, 1], np.float32)}


@_quiet
def npz_bytes(spec: Net) -> bytes:
    """The content of the network file ``spec`` describes."""
    buf = io.BytesIO()
    if spec.kind in ("keys", "float"):
        arrays = good_network() if spec.kind == "keys" else _float_network()
        for key, val in spec.changes:
            if val is None:
                arrays.pop(key, None)
            else:
                arrays[key] = val.make()
        np.savez(buf, **arrays)
        return buf.getvalue()
    if spec.kind == "lying":
        with zipfile.ZipFile(buf, "w") as z:
            for key, arr in good_network().items():
                if key == spec.member:
                    header = str({"descr": "|i1", "fortran_order": False,
                                  "shape": tuple(spec.shape)})
                    z.writestr(f"{key}.npy", _npy_header(header) + b"\x01\x02\x03\x04")
                else:
                    b = io.BytesIO()
                    np.save(b, arr)
                    z.writestr(f"{key}.npy", b.getvalue())
        return buf.getvalue()
    if spec.kind == "foreign":
        with zipfile.ZipFile(buf, "w") as z:
            for key, arr in good_network().items():
                b = io.BytesIO()
                np.save(b, arr)
                z.writestr(f"{key}.npy", b.getvalue())
            z.writestr(spec.member, spec.blob)
        return buf.getvalue()
    if spec.kind == "truncated":
        np.savez(buf, **good_network())
        data = buf.getvalue()
        return data[:len(data) * spec.cut // 1000]
    if spec.kind == "random":
        return b"PK\x03\x04" + spec.blob if spec.cut else spec.blob
    if spec.kind == "npy":
        np.save(buf, np.arange(6).reshape(2, 3))
        return buf.getvalue()
    if spec.kind == "empty_zip":
        with zipfile.ZipFile(buf, "w"):
            pass
        return buf.getvalue()
    raise ValueError(spec.kind)


NET_KEYS = ("format", "data_width", "layers", "name", "dtype", "input_scale",
            "float_accuracy", "w0", "b0", "mult0", "shift0", "relu0", "w1", "b1", "mult1",
            "relu1", "w2", "extra")


def net_values() -> st.SearchStrategy[Val]:
    py = st.one_of(
        st.integers(-3, 20), st.sampled_from([0, 1, 2, 8, 16, 7, 2**31, 2**62, -2**63, 10**3,
                                              10**9]),
        st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
        st.sampled_from(["wafertile-network/1", "wafertile-network/2", "", "int8", "int16",
                         "fp16", "bf16", "float32", "tiny", "\u00e9", "1"]),
        st.lists(st.integers(-3, 3), min_size=0, max_size=4),
        st.lists(st.floats(allow_nan=True), min_size=2, max_size=3),
        st.lists(st.sampled_from(["a", "b"]), min_size=2, max_size=2))
    return st.one_of(
        st.builds(Val, py=py),
        st.builds(Val, dtype=st.sampled_from(DTYPES), shape=SHAPES,
                  fill=st.sampled_from(["small", "zero", "extreme", "nan", "inf", "huge"])))


def net_specs() -> st.SearchStrategy[Net]:
    change = st.tuples(st.sampled_from(NET_KEYS), st.one_of(st.none(), net_values()))
    return st.one_of(
        st.builds(Net, kind=st.just("keys"), changes=st.lists(change, max_size=3).map(tuple)),
        st.builds(Net, kind=st.just("float"), changes=st.lists(change, max_size=3).map(tuple)),
        st.builds(Net, kind=st.just("lying"), member=st.sampled_from(["w0", "b0", "mult0",
                                                                      "w1", "layers"]),
                  shape=LYING_SHAPES),
        st.builds(Net, kind=st.just("foreign"), member=st.sampled_from(
            ["w2.npy", "notes.txt", "dir/", "w0", "../evil.npy", "x.npy"]),
                  blob=st.binary(max_size=64)),
        st.builds(Net, kind=st.just("truncated"), cut=st.integers(0, 999)),
        st.builds(Net, kind=st.just("random"), blob=st.binary(max_size=200),
                  cut=st.integers(0, 1)),
        st.just(Net(kind="npy")),
        st.just(Net(kind="empty_zip")),
    )


# -- fuzzed TOML files --------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A TOML value written as it is (a date, a time)."""

    text: str


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    """``v`` as a TOML value (tables inline)."""
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_text(table: dict[str, Any]) -> str:
    """A TOML document of ``table`` (every key at the top, tables inline)."""
    return "".join(f"{_toml_key(k)} = {toml_value(v)}\n" for k, v in table.items())


@dataclass(frozen=True)
class Toml:
    """How a fuzzed TOML file is made.

    kind: ``table`` (``table``: ``((key, value), ...)`` written as TOML), ``cut`` (that text
    cut to ``cut`` per mille), ``bytes`` (``blob``), ``text`` (``text``), ``huge_int``,
    ``deep`` (arrays nested ``cut`` deep), ``big`` (``cut`` x 100 kB of comments, then the
    table), ``long_key``, ``many_keys``, ``utf16``, ``bom``.
    """

    kind: str = "table"
    table: tuple = ()
    cut: int = 0
    text: str = ""
    blob: bytes = b""


@_quiet
def toml_bytes(spec: Toml) -> bytes:
    text = toml_text(dict(spec.table))
    if spec.kind == "table":
        return text.encode()
    if spec.kind == "cut":
        data = text.encode()
        return data[:len(data) * spec.cut // 1000]
    if spec.kind == "bytes":
        return spec.blob
    if spec.kind == "text":
        return spec.text.encode("utf-8", "surrogatepass")
    if spec.kind == "huge_int":
        return f"rows = {'1' * 5000}\n".encode()
    if spec.kind == "deep":
        return ("rows = " + "[" * spec.cut + "]" * spec.cut + "\n").encode()
    if spec.kind == "big":
        return ("# padding\n" * 10_000 * max(1, spec.cut)).encode() + text.encode()
    if spec.kind == "long_key":
        return f'{"k" * 1_000_000} = 1\nrows = "{"x" * 1_000_000}"\n'.encode()
    if spec.kind == "many_keys":
        return "".join(f"key{i} = {i}\n" for i in range(100_000)).encode()
    if spec.kind == "utf16":
        return text.encode("utf-16")
    if spec.kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    raise ValueError(spec.kind)


JUNK_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00",
                                           blacklist_categories=("Cs",)), max_size=10)
TOML_SCALARS = st.one_of(
    st.integers(-5, 70),
    st.sampled_from([0, 1, 2, 4, 8, 16, 24, 32, 64, 128, 512, 4096, 65536, 2**31, 2**63 - 1,
                     -2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.sampled_from(["int8", "int16", "fp16", "bf16", "wrap", "saturate", "compact",
                     "parallel", "lite", "true", "8", "", "run", "synth", "derived", "rtl",
                     "model", "random", "layer", "network", "digits"]),
    JUNK_TEXT,
    st.sampled_from([Raw("1979-05-27T07:32:00Z"), Raw("07:32:00"), Raw("1979-05-27"),
                     Raw("1979-05-27T00:32:00.999999-07:00")]))


def _toml_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=3),
                     st.dictionaries(st.one_of(JUNK_TEXT, st.sampled_from(["rows", "kind", "x"])),
                                     inner, max_size=2))


TOML_VALUES = st.recursive(TOML_SCALARS, _toml_containers, max_leaves=6)

#: Each parameter's plausible values (valid and boundary), for configs and sweep specs.
PARAM_VALUES: dict[str, list[Any]] = {
    "rows": [1, 2, 3, 4, 0, -1, 4096, 4097], "cols": [1, 2, 4, 5, 0, 4097],
    "dtype": ["int8", "int16", "fp16", "bf16", "int4", "INT8"],
    "data_width": [8, 16, 12, 0], "acc_width": [16, 24, 32, 64, 15, 65, 37],
    "overflow": ["wrap", "saturate", "clip"], "act_depth": [16, 32, 512, 65536, 17, 131072],
    "acc_depth": [16, 512, 15, 1 << 20], "num_vcs": [2, 3, 8, 1, 9],
    "buffer_depth": [2, 4, 64, 3, 128, 1], "router_arch": ["compact", "parallel", "lite", "x"],
    "phits": [1, 2, 4, 8, 9, 0], "handoff": [True, False, "true", 1],
}
PARAM_NAMES = tuple(PARAM_VALUES)


def param_entries(max_size: int = 6) -> st.SearchStrategy[dict[str, Any]]:
    """A table of configuration parameters: mostly real names and plausible values."""
    key = st.one_of(st.sampled_from(PARAM_NAMES), st.sampled_from(PARAM_NAMES).map(
        lambda k: k.replace("_", "-")), JUNK_TEXT)
    value = st.one_of(st.sampled_from(sorted({repr(v): v for vs in PARAM_VALUES.values()
                                              for v in vs}.values(), key=repr)),
                      TOML_SCALARS, TOML_VALUES)
    good = st.sampled_from(PARAM_NAMES).flatmap(
        lambda k: st.tuples(st.just(k), st.sampled_from(PARAM_VALUES[k])))
    return st.lists(st.one_of(good, good, st.tuples(key, value)), max_size=max_size).map(dict)


def toml_specs(tables: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Toml]:
    """Fuzzed TOML files around ``tables``: written well, cut, or damaged."""
    as_tuple = tables.map(lambda t: tuple(t.items()))
    return st.one_of(
        st.builds(Toml, kind=st.just("table"), table=as_tuple),
        st.builds(Toml, kind=st.just("table"), table=as_tuple),
        st.builds(Toml, kind=st.just("cut"), table=as_tuple, cut=st.integers(0, 999)),
        st.builds(Toml, kind=st.just("bytes"), blob=st.binary(max_size=100)),
        st.builds(Toml, kind=st.just("text"), text=st.one_of(JUNK_TEXT, st.sampled_from(
            ["[rows]\n", "rows = 2\nrows = 3\n", "rows=", "a.b.c = 1\n", "[[x]]\n",
             "rows = 2 # \x7f\n", "rows = '''\n", "\\u0000", "rows = 0b102\n",
             "rows = 1_000_000_000_000_000_000_000\n", "rows = 2\r\n", "\ud800"]))),
        st.builds(Toml, kind=st.sampled_from(["huge_int", "long_key", "many_keys", "utf16",
                                              "bom"]), table=as_tuple),
        st.builds(Toml, kind=st.just("deep"), cut=st.sampled_from([50, 1000, 20000])),
        st.builds(Toml, kind=st.just("big"), table=as_tuple, cut=st.integers(1, 30)),
    )


# -- fuzzed ONNX models ------------------------------------------------------------------------


@dataclass(frozen=True)
class Onnx:
    """How a fuzzed .onnx file is made.

    kind: ``mlp`` (a float MLP of layer ``sizes`` with ``ops``, weight ``values``,
    initializer data type ``dtype``, the first initializer's dims replaced by ``lie`` (dims,
    or ``transposed``, ``flat``, ``extra_dim``: the same values in another shape), its data
    ``external`` (a file name) instead of inline), ``truncated`` (the good model cut to
    ``cut`` per mille), ``random`` (``blob``).
    """

    kind: str = "mlp"
    sizes: tuple = (3, 4, 2)
    ops: str = "matmul"
    values: str = "small"
    dtype: int = 1
    lie: tuple | str | None = None
    external: str = ""
    cut: int = 0
    blob: bytes = b""


@_quiet
def onnx_bytes(spec: Onnx) -> bytes:
    """The content of the .onnx file ``spec`` describes."""
    if spec.kind == "random":
        return spec.blob
    if spec.kind == "truncated":
        data = onnx_bytes(Onnx())
        return data[:len(data) * spec.cut // 1000]
    from onnx import TensorProto, helper

    rng = np.random.default_rng(len(spec.sizes))
    nodes, inits = [], []
    sizes = spec.sizes
    x = "x"
    np_types = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64,
                9: np.bool_, 10: np.float16, 11: np.float64, 14: np.complex64}

    def tensor(name: str, shape: tuple, values: str) -> Any:
        n = int(np.prod(shape)) if shape else 1
        v = rng.uniform(-1, 1, n)
        v = {"nan": np.where(np.arange(n) % 2, np.nan, v), "inf": np.where(
            np.arange(n) % 2, np.inf, v), "huge": np.full(n, 3e38), "zero": np.zeros(n),
             "tiny": np.full(n, 1e-45)}.get(values, v)
        dt = spec.dtype
        if dt == TensorProto.STRING:
            t = helper.make_tensor(name, dt, shape, [b"1.5"] * n)
        elif dt in np_types:
            t = helper.make_tensor(name, dt, shape, np.asarray(v).astype(
                np_types[dt]).tobytes(), raw=True)
        else:
            t = helper.make_tensor(name, TensorProto.FLOAT, shape,
                                   np.asarray(v, np.float32).tobytes(), raw=True)
            t.data_type = dt
        return t

    for n in range(len(sizes) - 1):
        j, i = sizes[n] + (spec.ops == "mismatch" and n == 1), sizes[n + 1]
        w, b = f"w{n}", f"b{n}"
        if spec.ops == "gemm" or (spec.ops == "gemm_transA" and n == 0):
            inits.append(tensor(w, (i, j), spec.values))
            attrs = {"transB": 1, **({"transA": 1} if spec.ops == "gemm_transA" else {})}
            inits.append(tensor(b, (i,), spec.values))
            nodes.append(helper.make_node("Gemm", [x, w, b], [f"h{n}"], name=f"gemm{n}",
                                          **attrs))
        elif spec.ops == "matmul1d" and n == 0:
            inits.append(tensor(w, (j,), spec.values))
            nodes.append(helper.make_node("MatMul", [x, w], [f"h{n}"], name=f"mm{n}"))
        elif spec.ops == "conv" and n == 0:
            inits.append(tensor(w, (i, j, 1, 1), spec.values))
            nodes.append(helper.make_node("Conv", [x, w], [f"h{n}"], name=f"conv{n}"))
        else:
            inits.append(tensor(w, (j, i), spec.values))
            nodes.append(helper.make_node("MatMul", [x, w], [f"m{n}"], name=f"mm{n}"))
            shape = (1, i) if spec.ops == "add2d" else (i,)
            inits.append(tensor(b, shape if spec.ops != "add2d" or n else (i, i), spec.values))
            nodes.append(helper.make_node("Add", [f"m{n}", b], [f"h{n}"], name=f"add{n}"))
        x = f"h{n}"
        if n < len(sizes) - 2 or spec.ops == "relu_last":
            nodes.append(helper.make_node("Relu", [x], [f"r{n}"], name=f"relu{n}"))
            x = f"r{n}"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, sizes[0]])]
    if spec.ops == "two_inputs":
        inputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, sizes[0]]))
    if spec.ops == "no_nodes":
        nodes = []
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [None, sizes[-1]])]
    if inits and spec.lie is not None:
        real = list(inits[0].dims)
        lie = {"transposed": real[::-1], "flat": [int(np.prod(real))],
               "extra_dim": [*real, 1]}.get(spec.lie, spec.lie) \
            if isinstance(spec.lie, str) else spec.lie
        del inits[0].dims[:]
        inits[0].dims.extend(lie)
    if inits and spec.external:
        t = inits[0]
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", spec.external), ("offset", "0"),
                     ("length", str(4 * max(1, int(np.prod(list(t.dims)) or 1))))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


#: What each field of a fuzzed model may be instead of the good value.
ONNX_FAULTS: dict[str, st.SearchStrategy[Any]] = {
    "ops": st.sampled_from(["gemm", "gemm_transA", "conv", "two_inputs", "no_nodes",
                            "relu_last", "add2d", "matmul1d", "mismatch"]),
    "values": st.sampled_from(["nan", "inf", "huge", "zero", "tiny"]),
    "dtype": st.sampled_from([2, 3, 6, 7, 8, 9, 10, 11, 14, 16, 0, 999]),
    "lie": st.one_of(st.sampled_from(["transposed", "flat", "extra_dim"]), LYING_SHAPES,
                     st.sampled_from([(4, 3), (), (3,), (12,), (2, 6), (3, 4, 1), (0, 4)])),
    "external": st.sampled_from(["missing.bin", "ext.bin", "../outside/keep.txt",
                                 "/etc/hostname", "a_dir", "link_file.txt",
                                 "link_missing.npy", "w.npy"]),
}


@st.composite
def onnx_specs(draw) -> Onnx:
    """A good float MLP (of random layer sizes) with zero, one or two faults, or a cut or
    random file."""
    kind = draw(st.sampled_from(["mlp"] * 6 + ["truncated", "random"]))
    if kind == "truncated":
        return Onnx(kind="truncated", cut=draw(st.integers(0, 999)))
    if kind == "random":
        return Onnx(kind="random", blob=draw(st.binary(max_size=200)))
    sizes = draw(st.one_of(st.just((3, 4, 2)), st.lists(
        st.sampled_from([1, 2, 3, 4, 8]), min_size=1, max_size=4).map(lambda s: (3, *s))))
    faults = draw(st.lists(st.sampled_from(sorted(ONNX_FAULTS)), min_size=1, max_size=2,
                           unique=True))
    if draw(st.integers(0, 2)) == 0:
        faults = []
    return Onnx(sizes=sizes, **{f: draw(ONNX_FAULTS[f]) for f in faults})


# -- fuzzed command-line values ----------------------------------------------------------------

#: Integers as text: plausible ones three times in four, else boundaries and junk.
WEIRD_INT = st.one_of(
    st.sampled_from(["0", "4097", "65537", "2147483648", "9223372036854775807",
                     "9223372036854775808", "-1", "-9223372036854775809", "1" + "0" * 30,
                     "1" * 5000, "", " ", "+3", " 7 ", "0x10", "1e3", "1.0", "nan", "inf",
                     "\u0663", "\uff11\uff16", "1_6", "-0", "00", "007"]),
    st.integers(-10**40, 10**40).map(str), JUNK_TEXT)
PLAIN_INT = st.one_of(st.integers(0, 70).map(str),
                      st.sampled_from(["1", "2", "4", "8", "16", "32", "64", "256", "512",
                                       "4096", "65536"]))
INT_TEXT = st.one_of(PLAIN_INT, PLAIN_INT, PLAIN_INT, WEIRD_INT)
WEIRD_FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "infinity", "1e309", "-1e309", "1e-320",
                     "-0", "1.0000001", "", " 0.5", "1_0", "\u0660.\u0665", "2", "-1",
                     "0x1p-2", "1" * 5000]),
    JUNK_TEXT)
PLAIN_FLOAT = st.one_of(st.floats(0, 1).map(repr),
                        st.sampled_from(["0", "1", "0.5", "0.1", "0.9", "0.99999", "50", "60"]))
FLOAT_TEXT = st.one_of(PLAIN_FLOAT, PLAIN_FLOAT, PLAIN_FLOAT, WEIRD_FLOAT)
BOOL_TEXT = st.one_of(st.sampled_from(["true", "false", "true", "false", "TRUE", " False ",
                                       "yes", "1", "0", "", "tru"]), JUNK_TEXT)


def choice_text(choices: Sequence[str]) -> st.SearchStrategy[str]:
    """One of ``choices`` (three times in four), else another case of it or junk."""
    good = st.sampled_from(list(choices))
    return st.one_of(good, good, good, st.one_of(
        JUNK_TEXT, st.sampled_from([c.upper() for c in choices] + [c + " " for c in choices]
                                   + [""])))


def plausible(values: Sequence[Any], other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One of ``values`` as text (three times in four), else ``other``."""
    good = st.sampled_from([str(v) for v in values])
    return st.one_of(good, good, good, other)


CONFIG_FLAGS: dict[str, st.SearchStrategy[str]] = {
    "--rows": plausible([1, 2, 3, 4, 8, 4096], INT_TEXT),
    "--cols": plausible([1, 2, 3, 4, 8, 4096], INT_TEXT),
    "--dtype": choice_text(["int8", "int16", "fp16", "bf16"]),
    "--data-width": plausible([8, 16], INT_TEXT),
    "--acc-width": plausible([16, 24, 32, 40, 64], INT_TEXT),
    "--overflow": choice_text(["wrap", "saturate"]),
    "--act-depth": plausible([16, 32, 64, 512, 65536], INT_TEXT),
    "--acc-depth": plausible([16, 32, 512, 65536], INT_TEXT),
    "--num-vcs": plausible([2, 3, 4, 8], INT_TEXT),
    "--buffer-depth": plausible([2, 4, 8, 64], INT_TEXT),
    "--router-arch": choice_text(["compact", "parallel", "lite"]),
    "--phits": plausible([1, 2, 3, 4, 8], INT_TEXT),
    "--handoff": BOOL_TEXT,
}
RUN_FLAGS: dict[str, st.SearchStrategy[str]] = {
    "--density": FLOAT_TEXT, "--batch": plausible([1, 2, 3, 8, 64], INT_TEXT),
    "--size": plausible([1, 2, 3, 8, 16, 33, 64], INT_TEXT), "--seed": INT_TEXT,
    "--baud": plausible([9600, 115200, 3000000], INT_TEXT),
    "--images": plausible([1, 2, 3, 5], INT_TEXT), "--prune": FLOAT_TEXT,
    "--sim": choice_text(["verilator", "icarus"]),
    "--fidelity": choice_text(["rtl", "model"]),
    "--model-detail": choice_text(["auto", "analytic", "mesh"]),
    "--device": st.sampled_from(["no-such-port", "/dev/null", "/no/such/tty", "", "COM3",
                                 "./no-such-port"]),
    "--network": st.sampled_from(["digits", "net.npz", "m.onnx", "missing.npz", "net",
                                  "a_dir.npz", "", "DIGITS"]),
    "--inputs": st.sampled_from(["x3.npy", "xf.npy", "x.npy", "w.npy", "labels.npy"]),
    "--labels": st.sampled_from(["labels.npy", "x3.npy", "w.npy"]),
    "--calibration": st.sampled_from(["calib.npy", "xf.npy", "x.npy"]),
    "--weights": st.sampled_from(["w.npy", "x.npy", "x3.npy", "calib.npy"]),
    "--activations": st.sampled_from(["x.npy", "w.npy", "xf.npy"]),
}
RUN_SWITCHES = ("--no-dense", "--json", "--waves", "--force")
#: ``wafertile train``'s flags (files from the template: net.npz, m.onnx, bad.npz, ...)
TRAIN_FLAGS: dict[str, st.SearchStrategy[str]] = {
    "--network": st.sampled_from(["digits", "net.npz", "m.onnx", "bad.npz", "missing.npz",
                                  "", "a_dir.npz", "x.npy"]),
    "--data": st.sampled_from(["bad.npz", "net.npz", "missing.npz", "x.npy", "a_dir.npz"]),
    "--density": FLOAT_TEXT, "--epochs": INT_TEXT, "--steps": INT_TEXT,
    "--batch": plausible([1, 3, 8, 32], INT_TEXT), "--lr": FLOAT_TEXT,
    "--weight-decay": FLOAT_TEXT, "--momentum": FLOAT_TEXT, "--warmup": INT_TEXT,
    "--step-size": INT_TEXT, "--gamma": FLOAT_TEXT,
    "--seed": INT_TEXT, "--fabrics": plausible([1, 2, 9], INT_TEXT),
    "--checkpoint-every": INT_TEXT,
    "--optimizer": choice_text(["sgd", "momentum", "adam"]),
    "--schedule": choice_text(["constant", "step", "cosine"]),
    "--fidelity": choice_text(["rtl", "model"]),
    "--model-detail": choice_text(["auto", "analytic", "mesh"]),
    "--scheduler": st.sampled_from(["tcp://127.0.0.1:1", "nowhere", "tcp://[::1]:99999"]),
    "--dtype": choice_text(["bf16", "fp16", "int8"]),
    "-o": st.sampled_from(["out", "prev_gen", "a_dir.npz", "x.npy", ""]),
}
TRAIN_SWITCHES = ("--json", "--force", "--resume")


def flag_pairs(flags: dict[str, st.SearchStrategy[str]], *, max_size: int = 6
               ) -> st.SearchStrategy[list[tuple[str, str, bool]]]:
    """``(flag, value, joined)`` triples (``joined``: ``--flag=value``, one time in four)."""
    pair = st.one_of([st.tuples(st.just(f), v, st.integers(0, 3).map(lambda n: n == 0))
                      for f, v in flags.items()])
    return st.lists(pair, max_size=max_size)


def argv_of(pairs: Iterable[tuple[str, str, bool]]) -> list[str]:
    out: list[str] = []
    for flag, value, joined in pairs:
        out += [f"{flag}={value}"] if joined else [flag, value]
    return out


# -- the command line's vocabulary (for random command lines) ------------------------------


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    kind: str  # switch, int, float, path, choice, text
    choices: tuple[str, ...] = ()


def vocabulary() -> dict[str, list[Option]]:
    """Every command's options, from the parser itself (so new flags are fuzzed too)."""
    import argparse

    from wafertile.cli import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, list[Option]] = {}
    for name, p in sub.choices.items():
        opts = []
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            flags = tuple(a.option_strings) or ("",)
            if a.nargs == 0:
                kind = "switch"
            elif a.choices:
                kind = "choice"
            elif a.type is int:
                kind = "int"
            elif a.type is float:
                kind = "float"
            elif a.type is Path:
                kind = "path"
            else:
                kind = "text"
            opts.append(Option(flags, kind, tuple(map(str, a.choices or ()))))
        out[name] = opts
    return out


# -- helpers for the tests ---------------------------------------------------------------------


def write(ws: Workspace, name: str, data: bytes) -> str:
    path = ws.ws / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name


__all__ = [name for name in dir() if not name.startswith("_")]
