"""Shared pytest options: seeds for random tests, the slow marker, simulator selection."""

from __future__ import annotations

import os
import zlib

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the long regressions marked slow")
    parser.addoption("--sim", action="append", choices=["verilator", "icarus"],
                     help="simulator(s) for the cocotb regressions (default: both)")
    _coverage_options(parser)


#: Simulators the cocotb regressions run on (``--sim`` chooses among them).
SIMULATORS = ("verilator", "icarus")


def sim_cases(cases, *, slow=None, ids=None):
    """Parameters ``(sim, *case)`` of a cocotb regression: every case on every simulator.

    ``slow(sim, *case)`` says which pairs are long regressions, marked ``slow`` (left out of
    the default run, which keeps a sample; ``--run-slow`` runs them all). ``ids(*case)`` names
    a case (default: its values joined by dashes).
    """
    out = []
    for sim in SIMULATORS:
        for case in cases:
            case = case if isinstance(case, tuple) else (case,)
            name = ids(*case) if ids is not None else "-".join(str(v) for v in case)
            marks = pytest.mark.slow if slow is not None and slow(sim, *case) else ()
            out.append(pytest.param(sim, *case, id=f"{sim}-{name}", marks=marks))
    return out


def pytest_collection_modifyitems(config, items):
    chosen = config.getoption("--sim")
    if chosen:  # --sim: drop the other simulators' cases
        keep, drop = [], []
        for item in items:
            sim = getattr(getattr(item, "callspec", None), "params", {}).get("sim")
            (drop if sim is not None and sim not in chosen else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    if config.getoption("--run-slow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long regression: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def seed_for(request) -> int:
    """The seed of a random test: $WAFERTILE_SEED if set, else a hash of the test's name.

    Fixed by default so that CI is reproducible; set WAFERTILE_SEED to explore other seeds.
    A failing test prints its seed and the command that reruns it.
    """
    env = os.environ.get("WAFERTILE_SEED")
    seed = int(env) if env else zlib.crc32(request.node.nodeid.encode())
    request.node.user_properties.append(("seed", seed))
    return seed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        seeds = [v for k, v in item.user_properties if k == "seed"]
        if seeds:
            report.sections.append((
                "wafertile seed",
                f"seed={seeds[0]}; rerun with: WAFERTILE_SEED={seeds[0]} "
                f"pytest '{item.nodeid}'"))
    return report


def pytest_generate_tests(metafunc):
    """Parametrize a test that takes ``sim`` (and does not parametrize it itself, as
    :func:`sim_cases` does) over the chosen simulators (default: both)."""
    explicit = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        explicit |= set(names.split(",") if isinstance(names, str) else names)
    if "sim" in metafunc.fixturenames and "sim" not in {n.strip() for n in explicit}:
        chosen = metafunc.config.getoption("--sim") or list(SIMULATORS)
        metafunc.parametrize("sim", chosen)


@pytest.fixture
def sim_env(sim):
    """Skip (with the reason) when ``sim`` is not installed; else the simulator's name."""
    from wafertile.sim.toolchain import ToolError, simulator_env

    try:
        simulator_env(sim)
    except ToolError as exc:
        pytest.skip(str(exc))
    return sim


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    """Root of simulator build directories: $WAFERTILE_BUILD_DIR or a per-session temp dir."""
    env = os.environ.get("WAFERTILE_BUILD_DIR")
    if env:
        from pathlib import Path
        return Path(env).resolve()
    return tmp_path_factory.mktemp("sim_build")


# -- functional coverage (wafertile.sim.vip.coverage; docs/verification.md) -------------------

def _coverage_options(parser):
    parser.addoption("--cover-report", default="functional-coverage", metavar="DIR",
                     help="where the functional coverage report of the cocotb benches goes "
                          "(coverage.json and coverage.txt; default %(default)s)")
    parser.addoption("--require-full-coverage", action="store_true",
                     help="fail the run if any coverage bin is a hole (for the full "
                          "regression: pytest --run-slow --require-full-coverage)")


def pytest_configure(config):
    import tempfile

    from wafertile.sim.vip import coverage

    # every simulator process of this session dumps its counts here as it exits
    config._wafertile_cov_dir = tempfile.mkdtemp(prefix="wafertile-coverage-")
    os.environ["WAFERTILE_COVERAGE_DIR"] = config._wafertile_cov_dir
    coverage.collecting_here()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    import json
    import shutil
    from pathlib import Path

    from wafertile.sim.vip import coverage, coverpoints  # noqa: F401 (declares the groups)

    config = session.config
    where = Path(config._wafertile_cov_dir)
    parts = [coverage.counts()] + [coverage.load(f) for f in sorted(where.glob("cov-*.json"))]
    shutil.rmtree(where, ignore_errors=True)
    total = coverage.merge(parts)
    config._wafertile_cov = None
    if not total:
        return
    rep = coverage.report(total)
    out = Path(config.getoption("--cover-report"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "coverage.json").write_text(json.dumps(rep, indent=1))
    (out / "coverage.txt").write_text(coverage.format_text(rep) + "\n")
    config._wafertile_cov = (rep, out)
    if config.getoption("--require-full-coverage") and rep["hit"] < rep["bins"]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    found = getattr(config, "_wafertile_cov", None)
    if not found:
        return
    from wafertile.sim.vip import coverage

    rep, out = found
    terminalreporter.section("functional coverage")
    full = config.getoption("--require-full-coverage")
    for line in coverage.format_text(rep, holes=None if full else 0).splitlines():
        if "more holes" not in line:
            terminalreporter.write_line(line)
    terminalreporter.write_line(f"report: {out / 'coverage.txt'} and {out / 'coverage.json'}"
                                + ("" if rep["hit"] == rep["bins"] else
                                   "; holes listed there"))
    if full and rep["hit"] < rep["bins"]:
        terminalreporter.write_line(f"--require-full-coverage: {rep['bins'] - rep['hit']} "
                                    f"bins were never hit", red=True)
