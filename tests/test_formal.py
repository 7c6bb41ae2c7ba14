"""Formal checks (``wafertile formal``): every block's checks in their small configuration in
the default run (the compact router's proof, minutes long, by its bounded check; the voq
router's not at all), deeper and bigger ones and both routers' proofs with ``--run-slow``;
the mutations, each of which must fail with a counterexample; the command line's refusals;
the property naming and report."""

from __future__ import annotations

import json

import pytest
from amaranth.hdl import Fragment, Module, Signal

from wafertile.errors import ToolError
from wafertile.formal import BLOCKS, checks_for, mutation_checks, run_check
from wafertile.formal.mutations import MUTATION_NAMES
from wafertile.formal.props import Properties, name_checks
from wafertile.formal.report import CheckResult, FormalReport, PropertyResult
from wafertile.formal.sby import DEFAULT_SOLVER, sby_environment


@pytest.fixture(scope="session")
def formal_tools(tmp_path_factory):
    """Skip (with the reason) when YoWASP's sby or the solver is not installed."""
    try:
        sby_environment(DEFAULT_SOLVER, tmp_path_factory.mktemp("formal_bin"))
    except ToolError as exc:
        pytest.skip(str(exc))


#: Default checks that run only with --run-slow, where their deeper version runs (the voq
#: router's bounded sample, BMC to depth 3, takes about 70 s; --run-slow and the command line
#: run its proof).
SLOW_CHECKS = {"router_voq_p1"}
#: Default checks that run with --run-slow only (each 25 to 40 s): the default run keeps the
#: compact router, the integer core and the float core with the nonlinear unit (whose
#: operations include the plain float core's).
SAMPLED_OUT = {"router_parallel_p1", "router_lite_p2", "core_fp16"}


def _cases(deep):
    out = []
    for block in BLOCKS:
        for check in checks_for(block, deep=deep, quick=not deep):
            if not deep and check.name in SLOW_CHECKS:
                continue
            marks = pytest.mark.slow if deep or check.name in SAMPLED_OUT else ()
            out.append(pytest.param(check, id=f"{check.name}{'-deep' if deep else ''}",
                                    marks=marks))
    return out


def _explain(result: CheckResult) -> str:
    return "; ".join(f"{p.name}: {p.status} {p.trace or ''}" for p in result.failed) or \
        result.error


@pytest.mark.parametrize("check", _cases(False) + _cases(True))
def test_check(check, tmp_path, formal_tools):
    result = run_check(check, tmp_path)
    assert result.ok, f"{check.name} ({result.workdir}): {_explain(result)}"
    asserts = [p for p in result.properties if p.kind == "assert"]
    assert asserts
    want = "proved" if check.mode == "prove" else "passed"
    assert all(p.status == want for p in asserts)
    assert all(p.status == "reached" and p.trace.exists()
               for p in result.properties if p.kind == "cover")


#: Mutations of the voq router, whose checks run with --run-slow as its proof does (its BMC to
#: depth 3, about 65 s; the proof's harness to the fault at step 2, about 25 s).
SLOW_MUTATIONS = {"router_voq_youngest_first", "router_voq_frees_early",
                  # the default run keeps one of each block's kinds of fault: the router's
                  # ignore_ready, the core's other hand-off and stage mutations
                  "router_corrupts_payload", "core_handoff_takes_multiplier"}


@pytest.mark.parametrize(("block", "name"), [
    pytest.param(block, name, marks=pytest.mark.slow if name in SLOW_MUTATIONS else ())
    for block, names in MUTATION_NAMES.items() for name in names])
def test_mutation_is_caught(block, name, tmp_path, formal_tools):
    (check,) = [c for c in mutation_checks(block) if c.name == name]
    result = run_check(check, tmp_path, covers=False)
    failed = [p for p in result.properties if p.status == "failed"]
    assert failed, f"the {check.name} mutation was not caught: {result.properties}"
    for prop in failed:
        assert prop.trace is not None and prop.trace.suffix == ".vcd" and prop.trace.exists()
        assert "$enddefinitions" in prop.trace.read_text()
    assert result.ok  # a mutation's check is ok when it fails with a counterexample


# -- the command line ------------------------------------------------------------------------

@pytest.fixture
def no_run(monkeypatch):
    def forbidden(*_args, **_kwargs):
        pytest.fail("run_check was called: the input should have been refused first")
    monkeypatch.setattr("wafertile.formal.sby.run_check", forbidden)


@pytest.mark.parametrize("argv, message", [
    (["--depth", "0"], "--depth must be an integer >= 1, not 0"),
    (["--block", "nope"], "argument --block: invalid choice: 'nope'"),
    (["--block", "route", "--mutate"], "--mutate needs --block one of buffer, router, core, "
                                       "phit, handoff, not 'route'"),
    (["--solver", "cvc5"], "argument --solver: invalid choice: 'cvc5'"),
])
def test_cli_refuses(argv, message, capsys, no_run):
    from wafertile.cli import main
    with pytest.raises(SystemExit) if "invalid choice" in message else _no_raise():
        status = main(["formal", *argv])
        assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wafertile: error: ") and message in err


def test_cli_refuses_bad_config(tmp_path, capsys, no_run):
    from wafertile.cli import main
    bad = tmp_path / "bad.toml"
    bad.write_text('buffer_depth = 3\n')
    assert main(["formal", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == ("wafertile: error: buffer_depth must be a power of two from 2 to 64, "
                   "not 3\n")
    missing = tmp_path / "missing.toml"
    assert main(["formal", "--config", str(missing)]) == 2
    assert capsys.readouterr().err == (f"wafertile: error: configuration file {str(missing)!r} "
                                       f"does not exist\n")


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_cli_help_lists_defaults(capsys):
    from wafertile.cli import main
    with pytest.raises(SystemExit):
        main(["formal", "--help"])
    out = capsys.readouterr().out
    for option in ("--block", "--config", "--depth", "--solver", "--mutate", "--no-covers",
                   "--work-dir", "--json"):
        assert option in out
    assert f"default: {DEFAULT_SOLVER}" in out and "default: router" in out


def test_cli_json(tmp_path, capsys, formal_tools):
    from wafertile.cli import main
    cfg = tmp_path / "small.toml"
    cfg.write_text("rows = 2\ncols = 2\n")
    status = main(["formal", "--block", "route", "--config", str(cfg), "--json",
                   "--work-dir", str(tmp_path / "work")])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["ok"]
    (check,) = report["checks"]
    assert check["check"] == "route_2x2" and check["mode"] == "prove"
    assert {p["status"] for p in check["properties"]} == {"proved"}


# -- the pieces ------------------------------------------------------------------------------

def test_properties_need_unique_identifiers():
    m = Module()
    m._MustUse__silence = True  # never elaborated
    props = Properties(m)
    props.check("one", Signal(), "a")
    with pytest.raises(ValueError, match=r"^property name 'one' is used twice$"):
        props.check("one", Signal(), "b")
    with pytest.raises(ValueError, match=r"^property name must be a lower-case identifier, "
                                         r"not 'Two words'$"):
        props.check("Two words", Signal(), "c")


def test_name_checks_renames_cells_after_their_message():
    from amaranth.back import rtlil

    a = Signal()
    m = Module()
    Properties(m).check("a_is_high", a, "a is high")
    text = name_checks(rtlil.convert(m, ports=[a]))
    assert "cell $check \\a_is_high\n" in text


def test_report_text_and_json(tmp_path):
    trace = tmp_path / "trace.vcd"
    trace.write_text("$enddefinitions $end\n")
    result = CheckResult("c", "router", "bmc", 5, {}, "boolector", 1.0, tmp_path, [
        PropertyResult("p", "assert", "passed", 5, text="p holds"),
        PropertyResult("q", "assert", "failed", 3, trace, "q holds"),
        PropertyResult("r", "cover", "reached", 2, trace, "r happens"),
    ])
    report = FormalReport([result], "boolector", 1.0)
    assert not report.ok
    text = report.text()
    assert "p  passed to depth 5" in text and f"q  failed at step 3  {trace}" in text
    data = report.as_json()
    assert data["checks"][0]["properties"][1]["trace"] == str(trace)
    result.expect_fail = True
    assert report.ok


def test_cli_config_overrides_the_small_configuration(tmp_path, monkeypatch, capsys):
    """A file is read over the small formal configuration: acc_width = 24 is fine there
    (data_width 8) though not over the generator's defaults (data_width 16)."""
    from wafertile.cli import main
    seen = []

    def fake_run(check, workdir, **_kwargs):
        seen.append(check)
        return CheckResult(check.name, check.block, check.mode, check.depth, {}, "boolector",
                           0.0, tmp_path, [PropertyResult("p", "assert", "proved")])

    monkeypatch.setattr("wafertile.formal.sby.run_check", fake_run)
    cfg = tmp_path / "wide.toml"
    cfg.write_text('acc_width = 24\nrouter_arch = "parallel"\n')
    assert main(["formal", "--block", "router", "--config", str(cfg)]) == 0
    assert [c.config.router_arch for c in seen] == ["parallel"]
    assert seen[0].config.acc_width == 24 and seen[0].config.data_width == 8
    assert "1 of 1 checks ok" in capsys.readouterr().out


def test_proof_only_views_need_asking_for():
    """The proof-only views (a router's ``state``, the proof harnesses) refuse what they cannot
    show; the quick sample replaces the compact and voq routers' proofs by their bounded
    checks only."""
    from wafertile.config import Config
    from wafertile.formal.router import CompactRouterProof, VoqRouterProof
    from wafertile.hdl.noc.compact import CompactRouter
    from wafertile.hdl.noc.voq import VoqRouter
    cfg = Config.from_mapping({"router_arch": "compact"})
    plain, peeking = CompactRouter(cfg), CompactRouter(cfg, peek=True)
    with pytest.raises(ValueError, match="needs a router made with peek=True"):
        _ = plain.state
    assert len(peeking.state["buffers"]) == 5
    for router in (plain, peeking):  # elaborated (buffers and all), as any design is
        Fragment.get(router, None)
    vcfg = Config.from_mapping({"router_arch": "voq"})
    vplain, vpeeking = VoqRouter(vcfg), VoqRouter(vcfg, peek=True)
    with pytest.raises(ValueError, match="needs a router made with peek=True"):
        _ = vplain.state
    state = vpeeking.state
    assert len(state["stored"]) == 5 and len(state["stored"][0]) == vcfg.num_vcs
    assert len(state["rem"][0][0]) == vcfg.buffer_depth and state["older"][0][0][1][1] is None
    for router in (vplain, vpeeking):
        Fragment.get(router, None)
    lite = Config.from_mapping({"router_arch": "lite", "phits": 2})
    with pytest.raises(ValueError, match="compact router with whole flits"):
        CompactRouterProof(lite)
    with pytest.raises(ValueError, match="voq router with whole flits"):
        VoqRouterProof(cfg)
    full = {c.name: c for c in checks_for("router")}
    quick = {c.name: c for c in checks_for("router", quick=True)}
    proved = {"router_compact_p1", "router_voq_p1"}
    assert {n for n, c in full.items() if c.mode == "prove"} == proved
    assert all(quick[n].mode == "bmc" for n in proved)
    assert {n: c.mode for n, c in full.items() if n not in proved} == \
        {n: c.mode for n, c in quick.items() if n not in proved}


def test_handoff_block_is_the_integer_unit():
    """A float configuration for the integer hand-off unit's proof is refused, not ignored;
    an integer one is taken as the file says."""
    with pytest.raises(ValueError, match="dtype must be int8 or int16, not 'fp16'"):
        checks_for("handoff", {"dtype": "fp16"})
    (check,) = checks_for("handoff", {"data_width": 16, "acc_width": 40})
    assert check.mode == "prove" and check.config.acc_width == 40
