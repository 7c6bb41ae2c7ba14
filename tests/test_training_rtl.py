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


def test_gradient_words_of_layernorm_layers():
    """A LayerNorm layer's GRAD results (gamma's, then beta's) land on ``(dgamma, dbeta)``
    apart from the layer's bias, whose GRADs read the same ``dY`` region; a missing one is
    named."""
    cfg = Config(rows=2, cols=3, dtype="fp16", act_depth=64, acc_depth=16, nonlinear=True)
    w, b, m = random_network((5, 6, 3), 0.5, 4)
    fmt = float_format("fp16")
    w = [fmt.values(fmt.bits(a)) for a in w]
    ln = [(np.ones(6, np.float32), np.zeros(6, np.float32), 1e-5), None]
    program = compile_step(cfg, w, b, m, np.zeros((2, 5), np.float32),
                           np.zeros((2, 3), np.float32), ln=ln)
    grads = [g for g in program.grads if g is not None]
    assert [(g.layer, g.norm) for g in grads] == [(1, False), (0, True), (0, False)]
    keys = np.concatenate([(g.column << 42) | (g.addr << 21) | g.addr_b for g in grads])
    assert len(np.unique(keys)) == len(keys)  # no two GRADs of the step alike
    rng = np.random.default_rng(6)
    data = [rng.integers(0, 1 << 32, len(g.i)) for g in grads]
    pick = [np.concatenate(a) for a in zip(*[(g.column, g.addr, g.addr_b, d)
                                            for g, d in zip(grads, data, strict=True)],
                                          strict=True)]
    norm: dict = {}
    out = gradient_words(program, *pick, [np.shape(a) for a in w], norm)
    g = grads[1]
    assert np.array_equal(norm[0][0][g.i[g.k == 0]], data[1][g.k == 0])
    assert np.array_equal(norm[0][1][g.i[g.k < 0]], data[1][g.k < 0])
    bias = grads[2].k < 0
    assert np.array_equal(out[0][1][grads[2].i[bias]], data[2][bias])
    n = len(grads[0].i) + 7  # the eighth of LayerNorm 0's: output 1's beta
    with pytest.raises(ValueError, match=r"^no GRAD result for layer 0's LayerNorm, output 1, "
                                         r"beta$"):
        gradient_words(program, *(np.delete(a, n) for a in pick), [np.shape(a) for a in w])


def _layernorm_chain(rng, sizes, norms):
    """Gamma near 1 and beta near 0 (eps 1e-5) for the layers ``norms`` of a chain of
    ``sizes``, None for the others."""
    ln = [None] * (len(sizes) - 1)
    for n in norms:
        ln[n] = (rng.normal(1, 0.3, sizes[n + 1]).astype(np.float32),
                 rng.normal(0, 0.3, sizes[n + 1]).astype(np.float32), 1e-5)
    return ln


def _layernorm_steps(request, cfg, sizes, norms, steps, **chain):
    """``steps`` steps of a chain with LayerNorm layers ``norms`` (``chain``: its ``gelu``
    and ``res``) on the harness: every logit, every tile's dY, every gradient (gamma's and
    beta's too) bit exact; the model's event level gives every role's cycles; gamma and
    beta trained by the store between steps. Returns the last step, its arguments and its
    LayerNorms."""
    seed = seed_for(request)
    fmt = float_format(cfg.dtype)
    rng = np.random.default_rng(seed)
    w, b, m = random_network(sizes, 0.7, seed % 1000)
    store = ParameterStore(w, b, m, TrainConfig(dtype=cfg.dtype, lr=0.05, init_scale=64.0),
                           _layernorm_chain(rng, sizes, norms))
    fabric = RtlFabric(cfg)
    x = fmt.values(fmt.bits(rng.normal(size=(5, sizes[0])).astype(np.float32)))
    labels = rng.integers(0, sizes[-1], 5)
    for _ in range(steps):
        args = (store.stream_weights(), store.biases, store.masks, x, labels,
                float(store.scale))
        ln = store.norms
        r = fabric.step(*args, ln=ln, **chain)
        assert r.exact, f"{r.mismatches} (seed {seed})"
        for n in norms:  # the GRADs of gamma and beta came back, and not all zero
            assert all(np.abs(v).max() > 0 for v in r.dln[n]), f"layer {n} (seed {seed})"
        model = ModelFabric(cfg, detail="mesh").step(*args, ln=ln, **chain)
        assert {k: model.cycles[k] for k in ROLES} == {k: r.cycles[k] for k in ROLES}, \
            f"seed {seed}"
        assert store.apply(r.dw, r.db, r.dln)
    return r, args, ln


def test_layernorm_steps_on_the_harness_equal_the_reference_and_the_model(request):
    """A chain with a LayerNorm on its first layer (docs/training.md, "LayerNorm layers"),
    on the 2 x 2 fp16 array with the unit that tests/test_train_command.py builds."""
    cfg = Config(rows=2, cols=2, dtype="fp16", act_depth=32, acc_depth=16, nonlinear=True)
    r, args, _ = _layernorm_steps(request, cfg, (6, 6, 4, 3), (0,), 1)
    assert r.reference.norm[0] is not None and r.reference.norm[1] is None
    # the same chain with ReLU: the LayerNorm changes the program, not only the numbers
    relu = ModelFabric(cfg, detail="mesh").step(*args)
    assert relu.cycles["forward"] < r.cycles["forward"]
    assert relu.cycles["backward_handoff"] < r.cycles["backward_handoff"]
    assert relu.cycles["gradients"] < r.cycles["gradients"]


def test_a_residual_on_the_harness(request):
    """A chain whose third layer adds the first layer's accumulators (docs/training.md,
    "Residual connections"), on the same array: the kept outputs and their MACs forward, the
    adding layer's gradient added to the first layer's LayerNorm derivative backward."""
    cfg = Config(rows=2, cols=2, dtype="fp16", act_depth=32, acc_depth=16, nonlinear=True)
    res = (None, None, 0, None)
    r, args, ln = _layernorm_steps(request, cfg, (4, 4, 3, 4, 3), (0,), 1, res=res)
    plain = ModelFabric(cfg, detail="mesh").step(*args, ln=ln)
    assert r.cycles["forward"] > plain.cycles["forward"]
    assert r.cycles["backward_handoff"] > plain.cycles["backward_handoff"]


@pytest.mark.slow
def test_a_gpt_like_chain_on_the_harness(request):
    """LayerNorm, GELU, a layer that adds the first's accumulators and normalizes again, over
    three columns, two steps (bf16)."""
    cfg = Config(rows=2, cols=3, dtype="bf16", act_depth=64, acc_depth=16, nonlinear=True)
    _layernorm_steps(request, cfg, (6, 8, 5, 8, 3), (0, 2), 2, gelu=(False, True, False, False),
                     res=(None, None, 0, None))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_layernorm_layers_in_a_row_on_the_harness(request, dtype):
    """LayerNorms on two layers in a row, over three columns (the sums along a row in a
    chain of tiles), two steps."""
    cfg = Config(rows=2, cols=3, dtype=dtype, act_depth=64, acc_depth=16, nonlinear=True)
    _layernorm_steps(request, cfg, (6, 9, 5, 3), (0, 1), 2)


def test_layernorm_layers_are_refused_in_one_line():
    """What a step with LayerNorm layers cannot have, refused before anything is built."""
    fmt = float_format("fp16")

    def network(sizes):
        w, b, m = random_network(sizes, 0.7, 0)
        return [fmt.values(fmt.bits(v)) for v in w], b, m

    def norm(I):
        return np.ones(I, np.float32), np.zeros(I, np.float32), 1e-5

    x, dy = np.zeros((2, 6), np.float32), np.zeros((2, 3), np.float32)
    cfg = Config(rows=2, cols=2, dtype="fp16", act_depth=32, acc_depth=16, nonlinear=True)
    w, b, m = network((6, 6, 4, 3))
    cases = [
        (cfg, [None, None, norm(3)], None, r"^layer 2 has a LayerNorm: the chain's last layer "
                                           r"gives the logits, which the loss takes as they "
                                           r"are$"),
        (cfg, [norm(6), None, None], (True, False, False),
         r"^layer 0 has a LayerNorm and GELU: a LayerNorm layer feeds the next layer with no "
         r"activation$"),
        (cfg, [norm(5), None, None], None, r"^layer 0's LayerNorm has 5 gamma values for its "
                                           r"6 outputs$"),
        (cfg, [norm(6), None], None, r"^ln has 2 entries for 3 layers$"),
        (cfg.replace(nonlinear=False), [norm(6), None, None], None,
         r"^layer 0 has a LayerNorm, which needs float tiles with the nonlinear unit \(dtype "
         r"fp16 or bf16, nonlinear = true, --nonlinear true\)$"),
        (cfg.replace(act_depth=16), [norm(6), None, None], None,
         r"^a training step keeps every layer's inputs, the loss gradient, a 1.0 and what GELU, "
         r"LayerNorm, residual and attention layers keep in each tile: 6 \+ 6 \+ 4 \+ 3 \+ 1 \+ 6 "
         r"\(XH0\) \+ 1 \(R0\) \+ 3 \(LS\) = 30 activation words > act_depth = 16$"),
        (cfg.replace(router_arch="lite"), [norm(6), None, None], None,
         r"^layer 0's LayerNorm needs a router whose local input holds at least 2 flits per "
         r"VC"),
    ]
    for config, ln, gelu, message in cases:
        with pytest.raises(TrainError, match=message):
            compile_step(config, w, b, m, x, dy, ln=ln, gelu=gelu)
    # on one column: 14 outputs leave 2 accumulators of 16 and the forward pass needs 3 (the
    # derivative, on the transposed next layer's as many outputs, needs 2: 13 fit both)
    one = cfg.replace(cols=1, act_depth=64)
    w, b, m = network((6, 14, 4, 3))
    with pytest.raises(TrainError, match=r"^layer 0's LayerNorm leaves 2 of a tile's 16 "
                                         r"accumulators free and LayerNorm needs 3"):
        compile_step(one, w, b, m, x, dy, ln=[norm(14), None, None])
    w, b, m = network((6, 4, 13, 3))
    program = compile_step(one, w, b, m, x, dy, ln=[None, norm(13), None])
    assert [(s.layer, s.backward) for s in program.norms] == [(1, False), (1, True)]


def test_residuals_are_refused_in_one_line():
    """What a step's residual connections cannot be, refused before anything is built."""
    fmt = float_format("fp16")
    w, b, m = random_network((4, 4, 3, 4, 3), 0.7, 0)
    w = [fmt.values(fmt.bits(v)) for v in w]
    x, dy = np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32)
    cfg = Config(rows=2, cols=2, dtype="fp16", act_depth=32, acc_depth=16, nonlinear=True)
    one = (np.ones(4, np.float32), np.zeros(4, np.float32), 1e-5)
    ln = [one, None, None, None]
    for res, lns, message in [
        ((None, None, 2, None), ln, r"^layer 2 adds layer 2's outputs \(res2 = 2\): a residual "
                                    r"comes from an earlier layer$"),
        ((None, 0, None, None), ln, r"^layer 1 adds layer 0's outputs \(res1 = 0\): 4 of them "
                                    r"to its 3$"),
        ((None, None, 0, None), None, r"^layer 2 adds layer 0's outputs \(res2 = 0\), which "
                                      r"have no LayerNorm: training keeps a residual of a "
                                      r"LayerNorm layer's accumulators"),
        ((None, 0), ln, r"^res has 2 entries for 4 layers$")]:
        with pytest.raises(TrainError, match=message):
            compile_step(cfg, w, b, m, x, dy, ln=lns, res=res)
    w2, b2, m2 = random_network((4, 4, 4, 4, 3), 0.7, 0)
    w2 = [fmt.values(fmt.bits(v)) for v in w2]
    with pytest.raises(TrainError, match=r"^res2 = 0 and res1 = 0 overlap: layer 0's outputs "
                                         r"would be kept while layer 0's are \(one residual at a "
                                         r"time: the next starts at or after layer 1\)$"):
        compile_step(cfg, w2, b2, m2, x, dy, ln=ln, res=(None, 0, 0, None))
    program = compile_step(cfg, w, b, m, x, dy, ln=ln, res=(None, None, 0, None))
    assert [(n, base) for n, base, _ in program.residuals] == [(2, program.regions["K2"])]


def _attention_chain(rng, dtype, shapes, density=0.8):
    """Weights, biases and masks of layers of ``shapes`` ``(J, I)`` (an attention's
    projection gives ``3 H D`` outputs and the next layer takes ``H D``)."""
    from .test_training_reference import chain

    w, b, m = [], [], []
    for J, I in shapes:
        a, bb, mm = chain(rng, dtype, (J, I), density)
        w, b, m = w + a, b + bb, m + mm
    return w, b, m


def test_attention_steps_on_the_harness_equal_the_reference_and_the_model(request):
    """docs/training.md, "Attention layers": a chain 3-6-3 whose first layer projects to 2
    heads of 1 feature, sequences of 2 positions (4 inputs, two groups), on the 2 x 2 fp16
    array of the LayerNorm tests: every logit, every tile's dY (dY_0 = half(dQ | dK | dV)
    read back from DA_0), every gradient bit exact on the harness; the model's event level
    gives every role's cycles. Without the forward pass's keeping hand-offs the derivative
    reads stale words and the step is not exact."""
    from wafertile.sim.harness import run_harness
    from wafertile.trainer.rtl import assemble, group_result, group_starts

    from .test_training_reference import numbers

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = Config(rows=2, cols=2, dtype="fp16", act_depth=32, acc_depth=16, nonlinear=True)
    w, b, m = _attention_chain(rng, "fp16", [(3, 6), (2, 3)])
    x = numbers(rng, "fp16", (4, 3), zeros=0.2)
    labels = rng.integers(0, 3, 4)
    attn = ((2, 2), None)
    fabric = RtlFabric(cfg)
    r = fabric.step(w, b, m, x, labels, 64.0, attn=attn)
    assert r.exact, f"{r.mismatches} (seed {seed})"
    assert r.reference.attn[0] is not None and np.abs(r.dw[0]).max() > 0, f"seed {seed}"
    assert r.cycles["attention_grad"] > 0
    model = ModelFabric(cfg, detail="mesh").step(w, b, m, x, labels, 64.0, attn=attn)
    assert {k: model.cycles[k] for k in ROLES} == {k: r.cycles[k] for k in ROLES}, \
        f"seed {seed}"
    # the same groups without the keeping hand-offs ("kept"): the derivative's words are stale
    compiler = StepCompiler(cfg, w, b, m, read_dx=True, attn=attn)
    span = next(a for a in compiler.template.attention if not a.backward)
    drop = {span.first + k for k, label in enumerate(span.labels) if label == "kept"}
    assert drop
    results = []
    for g0 in group_starts(len(x), cfg.rows):
        program = compiler.group(x[g0:g0 + 2], r.reference.dys[-1][g0:g0 + 2])
        keep = [n for n in range(len(program.phases)) if n not in drop]
        program.phases, program.roles, program.grads = (
            [seq[n] for n in keep] for seq in (program.phases, program.roles, program.grads))
        logits, stats = run_harness(fabric.exe, cfg, program, fabric.workdir)
        results.append(group_result(program, 2, logits, stats, [np.shape(a) for a in w]))
    broken = assemble(cfg, r.reference, m, results)
    assert not broken.exact and "dW_0" in broken.mismatches, f"seed {seed}"


def gpt_block(rng, dtype):
    """A scaled-down GPT training block as a chain: LayerNorm, the projection to 2 heads of 2
    (sequences of 2), the output projection adding layer 0's accumulators and normalizing,
    a GELU MLP whose second layer adds layer 2's and normalizes, the logits: ``(weights,
    biases, masks, kwargs)``."""
    w, b, m = _attention_chain(rng, dtype, [(4, 4), (4, 12), (4, 4), (4, 8), (8, 4), (4, 3)])
    ln = [None] * 6
    for n in (0, 2, 4):
        ln[n] = (rng.normal(1, 0.3, 4).astype(np.float32),
                 rng.normal(0, 0.3, 4).astype(np.float32), 1e-5)
    return w, b, m, {"gelu": (False, False, False, True, False, False), "ln": ln,
                     "res": (None, None, 0, None, 2, None),
                     "attn": (None, (2, 2), None, None, None, None)}


@pytest.mark.slow
def test_a_gpt_training_block_on_the_harness(request):
    """The whole block (gpt_block: LayerNorm, attention, residual, GELU MLP) on 4 x 2 bf16
    tiles, 6 inputs as 3 sequences of 2 in two groups (the second padded): bit exact, the
    model's event level giving every role's cycles."""
    from .test_training_reference import numbers

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = Config(rows=4, cols=2, dtype="bf16", act_depth=128, acc_depth=32, nonlinear=True,
                 counters=True)
    w, b, m, kw = gpt_block(rng, "bf16")
    x = numbers(rng, "bf16", (6, 4), zeros=0.1)
    labels = rng.integers(0, 3, 6)
    r = RtlFabric(cfg).step(w, b, m, x, labels, 16.0, **kw)
    assert r.exact, f"{r.mismatches} (seed {seed})"
    model = ModelFabric(cfg, detail="mesh").step(w, b, m, x, labels, 16.0, **kw)
    assert {k: model.cycles[k] for k in ROLES} == {k: r.cycles[k] for k in ROLES}, \
        f"seed {seed}"


def test_attention_layers_are_refused_in_one_line():
    """What a step's attention layers cannot be, refused before anything is built."""
    from wafertile.sim.models.training import training_step

    rng = np.random.default_rng(0)
    w, b, m = _attention_chain(rng, "fp16", [(3, 6), (2, 3)])
    x, dy = np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)
    cfg = Config(rows=2, cols=2, dtype="fp16", act_depth=32, acc_depth=16, nonlinear=True)
    ok = ((2, 2), None)
    for config, attn, kw, message in [
        (cfg, (None, (1, 2)), {}, r"^layer 1 has attention \(attn1\): the chain's last layer "
                                  r"gives the logits$"),
        (cfg, ((4, 2), None), {}, r"^attn0 = \(4, 2\): layer 0's 6 outputs are not the "
                                  r"queries, keys and values of 4 heads"),
        (cfg, ok, {"gelu": (True, False)}, r"^layer 0 has attention and GELU: the projection's "
                                           r"outputs are the attention's inputs$"),
        (cfg, ((2, 3), None), {}, r"^the attention after layer 0 has sequences of T = 3 "
                                  r"positions and the array 2 rows"),
        (cfg, ok, {}, None),
        (cfg.replace(act_depth=16), ok, {},
         r"^a training step keeps every layer's inputs, the loss gradient, a 1.0 and what GELU, "
         r"LayerNorm, residual and attention layers keep in each tile: 3 \+ 2 \+ 3 \+ 1 \+ 6 "
         r"\(DA0\) \+ 14 \(AT0\) = 29 activation words > act_depth = 16$"),
        (cfg.replace(router_arch="lite"), ok, {}, r"^the attention after layer 0 needs a "
                                                  r"router whose local input holds at least 2"),
        (cfg, (None,), {}, r"^attn has 1 entries for 2 layers$")]:
        if message is None:
            program = compile_step(config, w, b, m, x, dy, attn=attn, **kw)
            assert [(a.layer, a.backward) for a in program.attention] == [(0, False), (0, True)]
            continue
        with pytest.raises(TrainError, match=message):
            compile_step(config, w, b, m, x, dy, attn=attn, **kw)
    w4, b4, m4 = _attention_chain(rng, "fp16", [(3, 24), (8, 3)])
    with pytest.raises(TrainError, match=r"^the attention after layer 0 \(2 positions, 2 "
                                         r"heads of 4\) needs 19 accumulators per tile, "
                                         r"acc_depth is 16$"):
        compile_step(cfg.replace(act_depth=128), w4, b4, m4, x, dy, attn=ok)
    w5, b5, m5 = _attention_chain(rng, "fp16", [(3, 12), (4, 3)])  # forward 11, derivative 19
    with pytest.raises(TrainError, match=r"^the derivative of the attention after layer 0 \(2 "
                                         r"positions, 2 heads of 2\) needs 19 accumulators per "
                                         r"tile, acc_depth is 16$"):
        compile_step(cfg.replace(act_depth=128), w5, b5, m5, x, dy, attn=ok)
    w3, b3, m3 = _attention_chain(rng, "fp16", [(3, 6), (3, 3)])
    with pytest.raises(TrainError, match=r"^layer 1 takes 3 inputs and the attention after "
                                         r"layer 0 gives 2 \(2 heads of 1\)$"):
        compile_step(cfg, w3, b3, m3, x, dy, attn=ok)
    with pytest.raises(ValueError, match=r"^the batch of 3 inputs is not whole sequences of "
                                         r"T = 2 positions \(attn0\)$"):
        training_step(cfg, w, b, m, np.zeros((3, 3), np.float32), np.zeros(3, np.int64),
                      attn=ok)
