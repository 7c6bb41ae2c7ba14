"""The performance model on training steps (``wafertile.trainer.model``,
``wafertile.trainer.validation``): every phase of every batch group of random steps predicted
exactly, against the Verilator harness; the float core's hazard bubbles need the tiles'
nonzero activations (without them the prediction is wrong, so the comparison can fail); the
model fabric's step equals the RTL fabric's part by part."""

from __future__ import annotations

import numpy as np
import pytest

from wafertile.hdl.core.fp import float_format
from wafertile.model import predict_program
from wafertile.sim.harness import run_harness
from wafertile.sim.models.training import training_step
from wafertile.train import ParameterStore, TrainConfig
from wafertile.trainer import random_network
from wafertile.trainer.compiler import StepCompiler
from wafertile.trainer.model import GroupTables, ModelFabric
from wafertile.trainer.rtl import ROLES, RtlFabric
from wafertile.trainer.validation import TRAIN_CONFIGS, measure_training, training_cases

from .conftest import seed_for

#: the sample CI runs; the whole set: ``benchmarks/model.py --training`` (or --run-slow)
SAMPLE = ["compact-2x2-fp16"]
SLOW = [pytest.param(n, marks=pytest.mark.slow) for n in TRAIN_CONFIGS if n not in SAMPLE]


@pytest.mark.parametrize("name", [*SAMPLE, *SLOW])
def test_every_phase_of_training_steps_is_predicted_exactly(request, name):
    seed = seed_for(request)
    config = TRAIN_CONFIGS[name]
    pairs = measure_training(name, config, training_cases(config, seed))
    assert pairs, name
    kinds = set()
    for p in pairs:
        wrong = [(n, k, r, m) for n, (k, r, m) in enumerate(zip(p.kinds, p.rtl, p.model,
                                                                strict=True)) if r != m]
        assert not wrong, f"{name}, {p.workload}: (phase, kind, rtl, model) {wrong[:5]} " \
                          f"(seed {seed})"
        kinds |= set(p.kinds)
    assert kinds >= {"load", "stream", "handoff", "read", "grad"}
    if config.nonlinear:  # the GPT-like chains' row operations
        assert "reduce" in kinds and any("LayerNorm" in p.workload for p in pairs)


def test_without_the_nonzero_activations_the_streams_are_mispredicted():
    """The mutation of the check above: the model told that every activation is nonzero
    (every MAC pair into one accumulator then bubbles) mispredicts streams that the RTL runs
    with zero activations; with the tiles' real activations it is exact."""
    config = TRAIN_CONFIGS["compact-2x2-fp16"]
    # a case of the set whose first group has a pair of MACs into one accumulator, one slot
    # apart, with a zero activation (the 10-14-6 chain at density 0.1 of seed 5)
    case = training_cases(config, 5)[1]
    w, b, m, x, labels = case.arrays(config)
    fabric = RtlFabric(config, read_dx=False)
    ref = training_step(config, w, b, m, x, labels)
    R = config.rows
    compiler = StepCompiler(config, w, b, m)
    program = compiler.group(x[:R], ref.dys[-1][:R])
    _, stats = run_harness(fabric.exe, config, program, fabric.workdir, packed=compiler.packed)
    tables = GroupTables(config, w, b, x, ref)(program, 0)
    right = predict_program(config, program, detail="mesh", nonzero=tables)
    wrong = predict_program(config, program, detail="mesh",
                            nonzero={n: np.ones_like(t) for n, t in tables.items()})
    assert right.phase_cycles == [int(c) for c in stats["phase_cycles"]]
    assert wrong.phase_cycles != right.phase_cycles
    assert any(k == "stream" and a != c for k, a, c in zip(right.kinds, right.phase_cycles,
                                                           wrong.phase_cycles, strict=True))


def test_the_model_fabric_steps_as_the_rtl_fabric():
    """ModelFabric (wafertile train --fidelity model) against RtlFabric over steps of the
    store: the same numerics (the reference's), the same cycles part by part, the same
    flits."""
    config = TRAIN_CONFIGS["compact-2x2-fp16"]
    w, b, m = random_network((10, 12, 4), 0.5, 3)
    store = ParameterStore(w, b, m, TrainConfig(dtype="fp16", lr=0.05, init_scale=64.0))
    rng = np.random.default_rng(3)
    fmt = float_format("fp16")
    x = fmt.values(fmt.bits(rng.random((5, 10)).astype(np.float32)))
    labels = rng.integers(0, 4, 5)
    rtl, model = RtlFabric(config, read_dx=False), ModelFabric(config)
    for _ in range(2):
        args = (store.stream_weights(), store.biases, store.masks, x, labels,
                float(store.scale))
        a, p = rtl.step(*args), model.step(*args)
        assert a.exact and p.exact is None
        assert {k: a.cycles[k] for k in (*ROLES, "total")} == \
            {k: p.cycles[k] for k in (*ROLES, "total")}
        assert (a.flits_in, a.flits_out, a.step_cycles) == (p.flits_in, p.flits_out,
                                                            p.step_cycles)
        for got, want in zip(p.dw, a.dw, strict=True):
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
        assert store.apply(p.dw, p.db)
