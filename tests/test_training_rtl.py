"""Training steps on the Verilator harness (``wafertile.trainer.rtl``): every logit and
gradient that leaves the array equals the reference step, bit for bit, over several steps of
the store's updates (the harness reads GRAD results at the south edge)."""

from __future__ import annotations

import numpy as np
import pytest

from wafertile.config import Config
from wafertile.hdl.core.fp import float_format
from wafertile.hdl.flit import flit_layout
from wafertile.stream.plan import plan_layer
from wafertile.stream.program import LayerError
from wafertile.stream.rows import gelu_back_phases
from wafertile.train import ParameterStore, TrainConfig, TrainError
from wafertile.trainer import random_network
from wafertile.trainer.compiler import StepCompiler, compile_step, gradient_words
from wafertile.trainer.model import ModelFabric
from wafertile.trainer.rtl import ROLES, RtlFabric

from .conftest import seed_for


@pytest.mark.parametrize("dtype", ["fp16"])
def test_steps_on_the_harness_equal_the_reference(request, dtype):
    seed = seed_for(request)
    cfg = Config(rows=2, cols=2, dtype=dtype, act_depth=32, acc_depth=16)
    fmt = float_format(dtype)
    rng = np.random.default_rng(seed)
    w, b, m = random_network((6, 5, 3), 0.7, seed % 1000)
    store = ParameterStore(w, b, m, TrainConfig(dtype=dtype, lr=0.05, init_scale=64.0))
    fabric = RtlFabric(cfg)  # the build is cached, shared with test_training_model
    x = fmt.values(fmt.bits(rng.random((5, 6)).astype(np.float32)))
    labels = rng.integers(0, 3, 5)
    losses = []
    for _ in range(3):
        r = fabric.step(store.stream_weights(), store.biases, store.masks, x, labels,
                        float(store.scale))
        assert r.exact, f"{r.mismatches} (seed {seed})"
        assert store.apply(r.dw, r.db)
        losses.append(r.reference.loss)
        assert set(r.cycles) == {*ROLES, "total", "check"} and r.cycles["total"] == sum(
            r.cycles[k] for k in ROLES) and r.cycles["check"] > 0
        assert r.cycles["gradients"] > 0 and r.cycles["backward"] > 0
        # GRAD results: one per mask position and bias per group (3 groups of 2 rows)
        grads = sum(int(mask.sum()) + mask.shape[0] for mask in m)
        assert r.flits_out >= 3 * grads
    assert losses[-1] < losses[0], f"the loss did not fall: {losses} (seed {seed})"
    # the read-back of dX is outside the step: without it, the same step cycles and flits
    plain = RtlFabric(cfg, read_dx=False).step(
        store.stream_weights(), store.biases, store.masks, x, labels, float(store.scale))
    again = fabric.step(store.stream_weights(), store.biases, store.masks, x, labels,
                        float(store.scale))
    assert plain.exact and plain.cycles["check"] == 0
    assert {k: plain.cycles[k] for k in ROLES} == {k: again.cycles[k] for k in ROLES}
    assert (plain.flits_in, plain.flits_out) == (again.flits_in, again.flits_out)


@pytest.mark.slow  # the default run trains a GELU network on the RTL through the command
def test_gelu_steps_on_the_harness_equal_the_reference_and_the_model(request):
    """A chain with GELU after its first two layers (docs/training.md, "GELU layers"): the
    kept inputs U, GELU's derivative by NONLINEAR, MUL and FINISH, every logit, dX and
    gradient bit exact; the model's event level gives every role's cycles."""
    seed = seed_for(request)
    cfg = Config(rows=2, cols=2, dtype="bf16", act_depth=64, acc_depth=16, nonlinear=True)
    fmt = float_format("bf16")
    rng = np.random.default_rng(seed)
    w, b, m = random_network((6, 7, 5, 3), 0.7, seed % 1000)
    store = ParameterStore(w, b, m, TrainConfig(dtype="bf16", lr=0.05, init_scale=64.0))
    fabric = RtlFabric(cfg)
    x = fmt.values(fmt.bits(rng.normal(size=(5, 6)).astype(np.float32)))
    labels = rng.integers(0, 3, 5)
    gelu = (True, True, False)
    for _ in range(2):
        args = (store.stream_weights(), store.biases, store.masks, x, labels,
                float(store.scale))
        r = fabric.step(*args, gelu=gelu)
        assert r.exact, f"{r.mismatches} (seed {seed})"
        assert r.reference.kept[0] is not None and r.reference.kept[2] is None
        model = ModelFabric(cfg, detail="mesh").step(*args, gelu=gelu)
        assert {k: model.cycles[k] for k in ROLES} == {k: r.cycles[k] for k in ROLES}, \
            f"seed {seed}"
        assert store.apply(r.dw, r.db)
    # the same chain with ReLU: the flags change the program, not only the numbers
    relu = ModelFabric(cfg, detail="mesh").step(*args)
    assert relu.cycles["backward_handoff"] < r.cycles["backward_handoff"]


def test_gelu_steps_are_refused_without_the_unit_or_room():
    w, b, m = random_network((6, 7, 3), 0.7, 0)
    x, dy = np.zeros((2, 6), np.float32), np.zeros((2, 3), np.float32)
    plain = Config(rows=2, cols=2, dtype="bf16", act_depth=64, acc_depth=16)
    with pytest.raises(TrainError, match=r"^layer 0 has GELU, which needs tiles with the "
                                         r"nonlinear unit \(nonlinear = true, --nonlinear "
                                         r"true\)$"):
        compile_step(plain, w, b, m, x, dy, gelu=(True, False))
    small = Config(rows=2, cols=2, dtype="bf16", act_depth=16, acc_depth=16, nonlinear=True)
    with pytest.raises(TrainError, match=r"\+ 7 \(U0\) = 24 activation words > act_depth = "
                                         r"16$"):
        compile_step(small, w, b, m, x, dy, gelu=(True, False))
    # 16 outputs of layer 0 would fill the 16 accumulators of the one column: the transposed
    # layer takes two passes instead, each leaving 3 scratch accumulators (a plan without
    # them is refused by the derivative's phases)
    w, b, m = random_network((6, 16, 3), 0.7, 0)
    w = [float_format("bf16").values(float_format("bf16").bits(v)) for v in w]
    full = Config(rows=2, cols=1, dtype="bf16", act_depth=64, acc_depth=16, nonlinear=True)
    program = compile_step(full, w, b, m, x, dy, gelu=(True, False))
    derivative = [(p.flits["payload.op"] == 12) & (p.flits["payload.data"] == 4)
                  for p in program.phases]
    scratch = np.concatenate([p.flits["payload.addr"][d]
                              for p, d in zip(program.phases, derivative, strict=True)])
    assert len(scratch) == 2 * 16 and scratch.max() < 16   # 2 rows, 16 outputs
    with pytest.raises(LayerError, match=r"^GELU's derivative needs a scratch accumulator "
                                         r"per tile: the 16 outputs fill all 16 of a tile "
                                         r"\(raise acc_depth or use more columns\)$"):
        gelu_back_phases(plan_layer(full, w[1].T.copy()), 0, 2, 40)


def test_the_step_compiler_gives_compile_steps_flits():
    """StepCompiler.group (one compile per step, the group's data filled in) makes the same
    flits and counts as compile_step for each group."""
    cfg = Config(rows=2, cols=3, dtype="bf16", act_depth=64, acc_depth=16)
    fmt = float_format("bf16")
    rng = np.random.default_rng(3)
    w, b, m = random_network((7, 20, 4), 0.5, 3)
    w = [fmt.values(fmt.bits(a)) for a in w]
    compiler = StepCompiler(cfg, w, b, m)
    x = fmt.values(fmt.bits(rng.normal(0, 1, (3, 7)).astype(np.float32)))
    dy = fmt.values(fmt.bits(rng.normal(0, 1, (3, 4)).astype(np.float32)))
    for rows in (slice(0, 2), slice(2, 3)):
        want = compile_step(cfg, w, b, m, x[rows], dy[rows])
        got = compiler.group(x[rows], dy[rows])
        assert [p.kind for p in got.phases] == [p.kind for p in want.phases]
        for p, q in zip(got.phases, want.phases, strict=True):
            assert np.array_equal(p.port, q.port)
            assert all(np.array_equal(p.flits[k], q.flits[k]) for k in q.flits), p.kind
            assert (p.expected_macs, p.expected_writes) == (q.expected_macs, q.expected_writes)
        # the template's packed phases are those of the group compiled on its own
        layout = flit_layout(cfg)
        for n, words in compiler.packed.items():
            assert np.array_equal(words, want.phases[n].words(layout)), n


def test_gradient_words_match_results_in_any_order_and_name_a_missing_one():
    """A group's GRAD results, shuffled, land on their gradients; one missing or one twice is
    named."""
    cfg = Config(rows=2, cols=3, dtype="fp16", act_depth=64, acc_depth=16)
    w, b, m = random_network((5, 6, 3), 0.5, 4)
    fmt = float_format("fp16")
    w = [fmt.values(fmt.bits(a)) for a in w]
    program = compile_step(cfg, w, b, m, np.zeros((2, 5), np.float32),
                           np.zeros((2, 3), np.float32))
    rng = np.random.default_rng(5)
    cols, addrs, addr_bs, data, want = [], [], [], [], []
    for g in program.grads:
        if g is None:
            continue
        words = rng.integers(0, 1 << 32, len(g.i))
        cols += g.column.tolist()
        addrs += g.addr.tolist()
        addr_bs += g.addr_b.tolist()
        data += words.tolist()
        want.append((g.layer, g.i, g.k, words))
    order = rng.permutation(len(cols))
    pick = [np.asarray(a)[order] for a in (cols, addrs, addr_bs, data)]
    shapes = [np.shape(a) for a in w]
    out = gradient_words(program, *pick, shapes)
    for layer, i, k, words in want:
        dw, db = out[layer]
        got = np.where(k >= 0, dw[i, np.maximum(k, 0)], db[i])
        assert np.array_equal(got, words)
        assert not dw[~m[layer]].any()
    with pytest.raises(ValueError, match="no GRAD result for layer"):
        gradient_words(program, *(a[1:] for a in pick), shapes)
    with pytest.raises(ValueError, match="came twice"):
        gradient_words(program, *(np.r_[a, a[:1]] for a in pick), shapes)
