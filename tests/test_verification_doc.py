"""docs/verification.md's example runs as written: its test module and its build-and-run code,
on Icarus (and on Verilator with --run-slow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import sim_cases

DOC = Path(__file__).parents[1] / "docs" / "verification.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_doc_has_the_two_blocks():
    test_module, runner = _blocks()
    assert "@cocotb.test()" in test_module and "run_cocotb(" in runner
    assert len(test_module.splitlines()) <= 40  # "about 30 lines"


@pytest.mark.parametrize("sim", sim_cases([()], slow=lambda sim: sim == "verilator",
                                          ids=lambda: "doc"))
def test_example_runs_as_written(sim_env, tmp_path, monkeypatch):
    test_module, runner = _blocks()
    (tmp_path / "test_my_mesh.py").write_text(test_module, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))  # "importable": cocotb's PYTHONPATH is ours
    monkeypatch.chdir(tmp_path)
    code = runner.replace("icarus", sim_env)  # the simulator and its build directory
    exec(compile(code, str(DOC), "exec"), {})  # fails the test if the cocotb test fails
    results = (tmp_path / "build" / sim_env / "results.xml").read_text()
    assert 'name="multicast_from_the_west"' in results and "<failure" not in results


def test_the_example_catches_a_wrong_expectation(tmp_path, monkeypatch):
    """The doc's checks can fail: told that the flits entered at the north port of (0, 0)
    (which reaches column 0 only), the scoreboard finds the deliveries wrong (lost at column
    0, misrouted elsewhere) and the test fails (run on Icarus)."""
    from wafertile.sim.toolchain import ToolError, simulator_env
    try:
        simulator_env("icarus")
    except ToolError as exc:
        pytest.skip(str(exc))
    test_module, runner = _blocks()
    broken = test_module.replace("west = Endpoint(0, 0, Port.WEST)",
                                 "west = Endpoint(0, 0, Port.NORTH)")
    assert broken != test_module
    (tmp_path / "test_my_mesh.py").write_text(broken, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BaseException):  # noqa: B017 - cocotb's runner fails the caller
        exec(compile(runner, str(DOC), "exec"), {})
    results = (tmp_path / "build" / "icarus" / "results.xml").read_text()
    assert "<failure" in results and re.search(r"\d+ errors \(seed 7\)", results)
    assert "never reached" in results or "misrouted" in results
