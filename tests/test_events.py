"""The tiles' event counters (``Config.counters``, docs/counters.md) against the performance
model's count of the same events (``wafertile.model.events``): exact per tile and event, on
Verilator and Icarus, for layers, networks with hand-offs and a scaled-down GPT block.

The default run plays a 2 x 2 integer array (layers that need passes and reduction, and
networks) and the GPT block on Verilator, and a phit-link array on Icarus; ``--run-slow``
adds every router micro-architecture of the model's validation set.
"""

from __future__ import annotations

import numpy as np
import pytest

from wafertile import Config
from wafertile.hdl.counters import EVENTS
from wafertile.model import predict_program
from wafertile.model.events import program_events
from wafertile.model.layer import network_nonzero
from wafertile.model.validation import CONFIGS, layer_cases, network_cases
from wafertile.network.compiler import compile_network
from wafertile.network.model import NetworkError
from wafertile.run import simulate
from wafertile.stream import LayerError, compile_layer

from .conftest import seed_for


def _workloads(cfg: Config, seed: int) -> list:
    """(label, program, nonzero tables or None): seeded layers, then networks."""
    out = []
    for case in layer_cases(cfg, 4, seed):
        x, w = case.arrays(cfg)
        try:
            out.append((case.label(), compile_layer(cfg, x, w), None))
        except LayerError:
            continue
    for case in network_cases(seed):
        net, x = case.build(cfg)
        try:
            program = compile_network(cfg, net, x)
        except NetworkError:
            continue
        out.append((case.label(), program, network_nonzero(cfg, net, x, program)))
    return out


def _check(cfg: Config, workloads: list, sim: str, tmp_path, seed: int, *,
           cycles: bool = False) -> list[dict]:
    """Run ``workloads`` with counters; every event of every tile equals the model's count;
    with ``cycles``, the model's cycles too (as tests/test_model.py checks them: total
    cycles within 10% on each workload, 3% on average)."""
    run = simulate(cfg, [p for _, p, _ in workloads], sim=sim, build_root=tmp_path)
    got = []
    errors = []
    for (label, program, nonzero), (_, stats) in zip(workloads, run.results, strict=True):
        if cycles:
            predicted = predict_program(cfg, program, nonzero=nonzero).total_cycles
            errors.append(abs(predicted / stats["total_cycles"] - 1))
            assert errors[-1] <= 0.10, f"seed {seed}: {label}: cycles {predicted} against " \
                                       f"the RTL's {stats['total_cycles']}"
        want = program_events(cfg, program, nonzero)
        for name in EVENTS:
            assert stats["events"][name] == want[name], \
                f"seed {seed}: {label}: {name} per tile: RTL {stats['events'][name]}, " \
                f"model {want[name]}"
        # the counters agree with the harness's own MAC count
        assert stats["events"]["mac_done"] == stats["mac_done"], f"seed {seed}: {label}"
        got.append(stats["events"])
    assert not errors or np.mean(errors) <= 0.03, f"seed {seed}: {errors}"
    return got


_SLOW = ["voq-3x3", "parallel-3x5", "lite-4x4-p4", "compact-3x2-v4", "lite-2x4-p2-v3"]


@pytest.mark.parametrize("name", ["compact-2x2", *(pytest.param(n, marks=pytest.mark.slow)
                                                   for n in _SLOW)])
def test_counters_equal_the_model_on_verilator(request, tmp_path, name):
    seed = seed_for(request)
    cfg = CONFIGS[name].replace(counters=True)
    workloads = _workloads(cfg, seed)
    assert len(workloads) >= 5
    events = _check(cfg, workloads, "verilator", tmp_path, seed, cycles=True)
    # multicast branches and skipped MACs occur, so the check can tell them apart
    assert any(sum(e["mac_skipped"]) for e in events)
    assert all(sum(e["link_out"]) > sum(e["core_in"]) / (cfg.rows * cfg.cols)
               for e in events)


def test_counters_equal_the_model_on_icarus(request, tmp_path):
    """A phit-link array (lite, 2 phits: the counters see a flit in its slot's phase 0) on
    Icarus, through the cocotb testbench."""
    seed = seed_for(request)
    cfg = CONFIGS["lite-2x3-p2"].replace(counters=True)
    workloads = _workloads(cfg, seed)[:3]
    _check(cfg, workloads, "icarus", tmp_path, seed)


def test_gpt_block_counters_equal_the_model(request, tmp_path):
    """A scaled-down GPT block (bf16: embedding, LayerNorms, attention, GELU, residuals) on
    Verilator: every event of every tile exact, the attention's MACs included. Their
    operands the tiles make themselves (queries, keys, values, probabilities, the softmax's
    maximum, LayerNorm's mean in two parts); the model takes from the reference which are
    zero (docs/counters.md). On the test's seed one row's mean is a number of the format,
    so its second part is +0: 4 MACs the RTL skips, which the model without the FINISHes'
    words takes as done (printed)."""
    from .test_gpt_block import _config, gpt_block, tokens

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = _config("bf16", counters=True)
    net = gpt_block(rng, "bf16")
    x = tokens(rng)
    program = compile_network(cfg, net, x)
    run = simulate(cfg, [program], sim="verilator", build_root=tmp_path)
    got = run.results[0][1]["events"]
    sent: dict = {}
    nonzero = network_nonzero(cfg, net, x, program, sent=sent)
    want = program_events(cfg, program, nonzero, sent)
    for name in EVENTS:
        assert got[name] == want[name], f"seed {seed}: {name}: RTL {got[name]}, " \
                                        f"model {want[name]}"
    blind = program_events(cfg, program, nonzero)  # the FINISHes' words taken as nonzero
    print(f"seed {seed}: MACs done {sum(got['mac_done'])}, skipped {sum(got['mac_skipped'])}; "
          f"without the sent words the model has {sum(blind['mac_done'])} done")


def test_model_counts_follow_the_values():
    """The model's count is not blind: a zero activation skips its MACs (no accumulator
    access), a multicast counts every branch, and the bank follows the host's writes."""
    cfg = Config(rows=2, cols=2, data_width=8, acc_width=24, act_depth=16, acc_depth=16)
    w = np.array([[1, 2, 0, 3], [0, 1, 1, 1]])
    x = np.array([[1, 0, 2, 3], [0, 0, 0, 0]])
    ev = program_events(cfg, compile_layer(cfg, x, w))
    # row 0's tiles multiply 5 nonzero pairs... of 6 MACs; row 1 (all zero) skips all 6
    assert sum(ev["mac_done"]) + sum(ev["mac_skipped"]) == 2 * int(np.count_nonzero(w))
    assert sum(ev["mac_done"]) == int(np.count_nonzero((x[:, None, :] != 0) & (w != 0)))
    assert sum(ev["acc_writes"]) > sum(ev["mac_done"])  # zeroing and bias writes besides
    ones = program_events(cfg, compile_layer(cfg, np.ones_like(x), w))
    assert sum(ones["mac_done"]) == 2 * int(np.count_nonzero(w))
    assert ones["link_out"] == ev["link_out"]  # routes do not depend on values


def test_counters_flag(capsys):
    """``--counters`` is a configuration flag: refused in one line when it is no boolean;
    off, the array has no ``events`` port (no logic spent)."""
    from wafertile.cli import main
    from wafertile.hdl.generate import verilog_text

    assert main(["run", "--counters", "maybe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["wafertile: error: --counters must be true or false, not 'maybe'"]
    off = verilog_text("array", Config(rows=1, cols=2))
    on = verilog_text("array", Config(rows=1, cols=2, counters=True))
    assert " events" not in off and "output [575:0] events;" in on


def test_run_reports_the_counters_and_the_model_the_same(tmp_path, capsys):
    """``wafertile run --counters true --json`` on Verilator and with ``--fidelity model``
    report the same ``events`` for the same layer (no events without ``--counters``)."""
    import json

    from wafertile.cli import main

    rng = np.random.default_rng(5)
    x = rng.integers(-4, 5, (3, 30))
    x[rng.random(x.shape) < 0.3] = 0
    w = rng.integers(-4, 5, (9, 30))
    w[rng.random(w.shape) < 0.6] = 0
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    common = ["run", "--rows", "3", "--cols", "2", "--data-width", "8", "--acc-width", "24",
              "--act-depth", "16", "--acc-depth", "16", "--activations", str(tmp_path / "x.npy"),
              "--weights", str(tmp_path / "w.npy"), "--no-dense", "--json"]
    reports = []
    for extra in (["--counters", "true"],
                  ["--counters", "true", "--fidelity", "model"], ["--fidelity", "model"]):
        assert main(common + extra) == 0
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    rtl, model, plain = reports
    assert rtl["pass"] and rtl["events"] == model["events"]
    assert sum(rtl["events"]["mac_skipped"]) > 0 and sum(rtl["events"]["link_out"]) > 0
    assert "events" not in plain and "energy_j" not in plain
    # the energy, priced from the counters by the default table (docs/wafer.md), by hand
    from wafertile.model.energy import ENERGY as E

    cfg = Config(rows=3, cols=2, data_width=8, acc_width=24, act_depth=16, acc_depth=16)
    n = {k: sum(v) for k, v in rtl["events"].items()}
    flits_in, flits_out = rtl["host_flits_in"], rtl["host_flits_out"]
    want = {"macs": n["mac_done"] * (0.2 + 0.1),
            "sram": (8 * (n["act_reads"] + n["act_writes"]) + 24 * (n["acc_reads"]
                                                                  + n["acc_writes"]))
            * 10 / 64,
            "network": (flits_in + n["link_out"]) * cfg.flit_width
            * (0.0404 * E.pitch_mm + 2 * 10 / 64),
            "stream": (flits_in + flits_out) * cfg.flit_width * 1300 / 64}
    for got in (rtl, model):
        assert got["energy_parts_j"] == pytest.approx({k: v * 1e-12 for k, v in want.items()})
        assert got["energy_j"] == pytest.approx(sum(want.values()) * 1e-12)
    assert flits_in > 3 * 30 and flits_out >= 3 * 9  # the activations in, the outputs back


def test_closed_form_routes_are_the_walks(request):
    """The energy's closed form per flit (``_route_totals``: links out of routers and cores
    reached by the XY-tree rule) against the hop-by-hop walk (``_walk``, ``route_bits``:
    the RTL's rule) on seeded random flits: rectangles anywhere, every exit port, from the
    west edge and from a tile's local input."""
    from wafertile.model.events import _route_totals, _walk
    from wafertile.model.mesh import PhaseFlits

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        R, C = (int(v) for v in rng.integers(1, 9, 2))
        cfg = Config(rows=R, cols=C)
        n = 300
        x0, x1 = np.sort(rng.integers(0, C, (2, n)), axis=0)
        y0, y1 = np.sort(rng.integers(0, R, (2, n)), axis=0)
        zeros = np.zeros(n, np.int64)
        f = PhaseFlits(port=zeros, x0=x0, x1=x1, y0=y0, y1=y1, vc=zeros,
                       exit=rng.integers(0, 5, n), kind=zeros, out=zeros - 1, hosts=n)
        local = rng.random(n) < 0.5
        sx = np.where(local, rng.integers(0, C, n), 0)
        sy = rng.integers(0, R, n)
        links, cores = _route_totals(cfg, f, np.arange(n), sx, sy, local)
        for i in range(n):
            counted = np.zeros(R * C, np.int64)
            got, _ = _walk(cfg, f, np.array([i]), sx[i:i + 1], sy[i:i + 1],
                           np.array([0 if local[i] else 4]), counted)
            assert (links[i], cores[i]) == (counted.sum(), len(got)), \
                f"seed {seed}: flit {i} of {R} x {C}"


@pytest.mark.slow  # a counters build of its own (about 30 s)
@pytest.mark.parametrize("chain", ["relu", "gpt-like", "gpt-block"])
def test_training_step_counters_equal_the_model(request, chain):
    """A training step's events on Verilator, every group of 5 inputs on 2 x 3 bf16 tiles
    with the nonlinear unit and counters: a ReLU chain (GRAD chains, FINISH_BACK), and a
    GPT-like chain (LayerNorm, GELU, a residual and a second LayerNorm: their derivatives,
    the GRADs of gamma and beta); and a GPT training block with attention
    (``tests/test_training_rtl.py``'s ``gpt_block``: the attention's keeping hand-offs and
    derivative) on 4 x 2 tiles, 6 inputs. Every event of every tile equals the model's
    (``program_events`` with the step's tables, :class:`~wafertile.trainer.model.GroupTables`)."""
    from wafertile.hdl.core.fp import float_format
    from wafertile.sim.harness import run_harness
    from wafertile.sim.models.training import training_step
    from wafertile.train import ParameterStore, TrainConfig
    from wafertile.trainer import random_network
    from wafertile.trainer.compiler import StepCompiler
    from wafertile.trainer.model import GroupTables
    from wafertile.trainer.rtl import RtlFabric, group_starts

    seed = seed_for(request)
    cfg = Config(rows=2, cols=3, dtype="bf16", act_depth=64, acc_depth=16, nonlinear=True,
                 counters=True)
    fmt = float_format("bf16")
    rng = np.random.default_rng(seed)
    sizes = (6, 8, 5, 8, 3)
    w, b, m = random_network(sizes, 0.7, seed % 1000)
    chain_args: dict = {}
    norms = None
    if chain == "gpt-like":
        norms = [(rng.normal(1, 0.2, 8).astype(np.float32),
                  rng.normal(0, 0.2, 8).astype(np.float32), 1e-5), None,
                 (rng.normal(1, 0.2, 8).astype(np.float32),
                  rng.normal(0, 0.2, 8).astype(np.float32), 1e-5), None]
        chain_args = {"gelu": (False, True, False, False), "res": (None, None, 0, None)}
    store = ParameterStore(w, b, m, TrainConfig(dtype="bf16", init_scale=64.0), norms)
    x = fmt.values(fmt.bits(rng.normal(size=(5, 6)).astype(np.float32)))
    labels = rng.integers(0, 3, 5)
    args = (store.stream_weights(), store.biases, store.masks, x, labels, float(store.scale))
    attn = None
    if chain == "gpt-block":
        from .test_training_rtl import gpt_block

        cfg = Config(rows=4, cols=2, dtype="bf16", act_depth=128, acc_depth=32,
                     nonlinear=True, counters=True)
        w, b, m, chain_args = gpt_block(rng, "bf16")
        norms, attn = chain_args["ln"], chain_args["attn"]
        x = fmt.values(fmt.bits(rng.normal(size=(6, 4)).astype(np.float32)))
        labels = rng.integers(0, 3, 6)
        args = (w, b, m, x, labels, 16.0)
    gelu, res = chain_args.get("gelu"), chain_args.get("res")
    ref = training_step(cfg, *args, gelu, norms, res, attn)
    fabric = RtlFabric(cfg, read_dx=False)
    compiler = StepCompiler(cfg, *args[:3], gelu=gelu, ln=norms, res=res, attn=attn)
    tables = GroupTables(cfg, args[0], args[1], x, ref, gelu, norms, res, attn)
    R = cfg.rows
    for g0 in group_starts(len(x), R):
        program = compiler.group(x[g0:g0 + R], ref.dys[-1][g0:g0 + R])
        _, stats = run_harness(fabric.exe, cfg, program, fabric.workdir,
                               packed=compiler.packed)
        sent: dict = {}
        nonzero = tables(program, g0, sent)
        model = program_events(cfg, program, nonzero, sent)
        for name in EVENTS:
            assert stats["events"][name] == model[name], \
                f"seed {seed}, group at row {g0}: {name}"


def test_the_wafer_models_events_are_the_compiled_phases(request):
    """The wafer-scale prediction prices events counted exactly: a dense layer's MAC stream
    (closed form) and its reduction (one row, counted flit by flit, times the rows) equal the
    events of the compiled layer's phases, and a GRAD phase's closed form those of the
    training compiler's GRAD phase."""
    from wafertile.hdl.core.fp import float_format
    from wafertile.model.events import energy_events, grad_events
    from wafertile.model.wafer import Fabric, GroupBuilder, memory_plan
    from wafertile.model.zoo import GptShape
    from wafertile.trainer.compiler import compile_step
    from wafertile.trainer.workload import random_network

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    fabric = Fabric(rows=4, cols=4)
    seen = []
    for I, J, depth in ((48, 32, 64), (40, 96, 32)):
        shape = GptShape("t", layers=1, d_model=J, heads=1, d_ff=I, context=4, vocab=8)
        memory = memory_plan(shape, fabric, 4)
        memory = type(memory)(depth, 64, False, 0, 0, 2, memory.sram_bytes)
        g = GroupBuilder(shape, fabric, memory, 4)
        g.linear("l", I, J, "forward", handoff=None)
        cfg = Config(rows=4, cols=4, dtype="bf16", act_depth=depth, acc_depth=64)
        w = rng.choice([-2.0, -1.0, 0.5, 1.0, 1.5], (I, J)).astype(np.float32)
        program = compile_layer(cfg, np.ones((4, J), np.float32), w)
        for kind, ours in (("stream", [p for p in g.phases if p.kind == "forward"][1::2]),
                           ("reduce", [p for p in g.phases if p.kind == "reduce"])):
            theirs = [energy_events(cfg, p) for p in program.phases if p.kind == kind]
            assert [(p.macs, p.hops, p.sram_bits) for p in ours] == \
                [(e.macs, e.hops, e.sram_bits) for e in theirs], f"seed {seed}: {kind}"
            seen += [kind] * len(theirs)
    assert {"stream", "reduce"} <= set(seen)
    cfg = Config(rows=3, cols=4, dtype="bf16", act_depth=64, acc_depth=64)
    w, b, m = random_network([6, 5, 3], 0.7, seed)
    fmt = float_format("bf16")
    w = [fmt.values(fmt.bits(a)) for a in w]
    step = compile_step(cfg, w, b, m, np.ones((3, 6), np.float32), np.ones((3, 3), np.float32))
    grads = [p for p in step.phases if p.kind == "grad"]
    assert grads
    for phase in grads:
        e = energy_events(cfg, phase)
        assert (e.hops, e.sram_bits) == (grad_events(cfg, len(phase)).hops,
                                         grad_events(cfg, len(phase)).sram_bits), f"seed {seed}"


SWEEP = """measure = ["run"]
fidelity = "model"

[base]
counters = true
data_width = 8
acc_width = 24
act_depth = 16
acc_depth = 16

[grid]
rows = [2, 4]
cols = [2, 3]

[[workloads]]
name = "fc"
kind = "random"
inputs = 24
outputs = 12
batch = 4
density = [0.3, 1.0]
seed = 3
"""


def test_a_sweep_reports_each_points_energy(tmp_path, capsys):
    """``wafertile sweep`` of ``run`` at fidelity model with ``counters = true`` (a real Dask
    LocalCluster): every row's ``energy_j`` is the compiled layer's events priced
    (``program_energy``), and the energy follows the array's size."""
    import pandas as pd

    from wafertile.cli import main
    from wafertile.model.energy import program_energy
    from wafertile.sweep.workloads import synthetic_layer

    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "-o", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 8 and (df["status"] == "ok").all()
    for _, row in df.iterrows():
        cfg = Config(rows=int(row["rows"]), cols=int(row["cols"]), data_width=8, acc_width=24,
                     act_depth=16, acc_depth=16, counters=True)
        x, w = synthetic_layer(cfg, batch=4, inputs=24, outputs=12,
                               density=float(row["density"]), seed=3)
        assert row["energy_j"] == pytest.approx(program_energy(cfg, compile_layer(cfg, x, w))[
            1]["energy_j"])
    assert df["energy_j"].nunique() > 1


def test_a_runs_energy_by_the_users_table(tmp_path, capsys):
    """``--energy T.toml`` prices a run's counted events by the user's table (here at
    fidelity model), names it, and is refused in one line without ``--counters true`` or
    for a file that is not there, before any work."""
    import json

    from wafertile.cli import main

    table = tmp_path / "e.toml"
    table.write_text('mul_int16_pj = 0.5\nadd_int_pj = 0.25\nsource = "my table"\n')
    argv = ["run", "--fidelity", "model", "--rows", "2", "--cols", "2", "--size", "16",
            "--no-dense", "--json"]
    assert main([*argv, "--counters", "true", "--energy", str(table)]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["energy_source"] == "my table"
    assert got["energy_parts_j"]["macs"] == pytest.approx(
        sum(got["events"]["mac_done"]) * 0.75e-12)
    for extra, message in (
            (["--energy", str(table)], "--energy prices the events of --train's prediction or "
                                       "of a run's counters: add --counters true (or --train)"),
            (["--counters", "true", "--energy", str(tmp_path / "no.toml")],
             f"energy table {str(tmp_path / 'no.toml')!r} does not exist")):
        assert main(["run", "--rows", "2", "--cols", "2", "--size", "16", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"wafertile: error: {message}"], err
