"""The reference of causal self-attention on the fabric (``docs/attention.md``,
``wafertile.sim.models.attention``): bit for bit against a scalar implementation written from
the page (each score a chain of MACs over the features in ascending order, each row's softmax
the fabric's of one tile, each output a chain of MACs over the positions in ascending order;
the masked scores never made), on random heads with zeros of both signs and wide magnitudes;
within the formats' rounding of float64 attention; its refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wafertile.sim.models.attention import attention, attention_grad

from .conftest import seed_for
from .test_float import numbers, same, to_format
from .test_softmax import documented_softmax


def _mac(s, w, a):
    """The float tile's MAC as the page writes it: ``fp32(s + fp32(w) * fp32(a))``, ``s`` as
    it is where ``w`` or ``a`` is +0 or -0."""
    if w == 0 or a == 0:
        return s
    with np.errstate(all="ignore"):
        return np.float32(s + np.float32(np.float32(w) * np.float32(a)))


def _dot(w, a):
    """The MACs of weights ``w`` on activations ``a`` in index order, from +0."""
    s = np.float32(0.0)
    for wk, ak in zip(w, a, strict=True):
        s = _mac(s, wk, ak)
    return s


def documented_attention(q, k, v, heads, dtype):
    """``docs/attention.md``'s arithmetic, one number at a time (float32 in, float32 out)."""
    T, width = q.shape
    D = width // heads
    out = np.zeros((T, width), np.float32)
    probs = np.zeros((heads, T, T), np.float32)
    for h in range(heads):
        cols = slice(h * D, (h + 1) * D)
        Q, K, V = (to_format(a[:, cols], dtype) for a in (q, k, v))
        for i in range(T):
            scores = np.array([_dot(K[j], Q[i]) for j in range(i + 1)], np.float32)
            probs[h, i, :i + 1] = documented_softmax(scores, [np.arange(i + 1)], dtype)
            P = to_format(probs[h, i, :i + 1], dtype)
            for e in range(D):
                o = np.float32(0.0)
                for j in range(i + 1):
                    o = _mac(o, P[j], V[j, e])
                out[i, h * D + e] = o
    return out, probs


def _words(a):
    return np.asarray(a, np.float32).view(np.uint32)


def _floats(w):
    return np.asarray(w, np.uint32).view(np.float32)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize(("T", "heads", "D"), [(1, 1, 3), (5, 2, 4), (9, 3, 2)])
def test_reference_follows_the_document(request, dtype, T, heads, D):
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    q, k, v = (numbers(rng, (T, heads * D), dtype, zeros=0.15, spread=3) for _ in range(3))
    k[0, :D] = 0.0                        # a key of zeros: a row of scores +0 for j = 0
    got = attention(_words(q), _words(k), _words(v), heads, dtype)
    want, probs = documented_attention(q, k, v, heads, dtype)
    assert same(_floats(got["out"]), want).all(), f"seed {seed}"
    causal = np.tril(np.ones((T, T), bool))
    assert same(_floats(got["probs"]), probs).all(), f"seed {seed}"
    assert (got["probs"][:, ~causal] == 0).all()
    assert (_floats(got["scores"])[:, ~causal] == -np.inf).all()


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_special_values_follow_the_document(request, dtype):
    """Infinities, NaN, -0 and huge products (which overflow) in the queries and keys: the
    reference still equals the page's arithmetic, NaN for NaN."""
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    T, heads, D = 4, 1, 3
    q, k, v = (numbers(rng, (T, D), dtype, spread=2) for _ in range(3))
    big = 60000.0 if dtype == "fp16" else 1e38
    q[1] = [big, -0.0, 1.0]
    k[0] = [big, 1.0, -0.0]               # q[1] . k[0] overflows to +inf: P of row 1 is NaN
    k[2, 1] = np.inf
    v[3, 0] = np.nan
    got = attention(_words(q), _words(k), _words(v), heads, dtype)
    want, _ = documented_attention(q, k, v, heads, dtype)
    assert same(_floats(got["out"]), want).all(), f"seed {seed}"
    assert np.isnan(want).any()


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reference_is_close_to_float64_attention(request, dtype):
    """Against float64 attention of the same rounded inputs: the outputs within a few units
    of the format's rounding (the scores, probabilities and the sums are rounded on the way)."""
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    T, heads, D = 16, 2, 16
    q, k, v = (to_format(rng.normal(0, 1, (T, heads * D)).astype(np.float32), dtype)
               for _ in range(3))
    q = to_format(q * np.float32(0.25), dtype)      # 1 / sqrt(16), folded into the queries
    got = _floats(attention(_words(q), _words(k), _words(v), heads, dtype)["out"])
    want = np.zeros((T, heads * D))
    for h in range(heads):
        cols = slice(h * D, (h + 1) * D)
        s = to_format(q[:, cols], dtype).astype(np.float64) @ \
            to_format(k[:, cols], dtype).astype(np.float64).T
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        want[:, cols] = p @ to_format(v[:, cols], dtype).astype(np.float64)
    ulp = 2.0 ** (-8 if dtype == "bf16" else -11)
    err = np.abs(got - want) / np.maximum(np.abs(v).max(), 1e-30)
    assert err.max() < 4 * ulp, f"seed {seed}: {err.max() / ulp:.2f} ulp"


@pytest.mark.parametrize(("shapes", "heads", "message"), [
    (((4, 6), (4, 6), (4, 5)), 2, "one shape"),
    (((4, 6), (4, 6), (4, 6)), 4, "6 features do not split into 4 heads"),
    (((6,), (6,), (6,)), 1, "T x (H D) arrays"),
])
def test_bad_shapes_are_refused(shapes, heads, message):
    arrays = [np.zeros(s, np.uint32) for s in shapes]
    with pytest.raises(ValueError, match=re.escape(message)):
        attention(*arrays, heads, "bf16")


# -- the phases on the array -------------------------------------------------------------------


def attention_program(cfg, T, heads, D, q, k, v):
    """The package's standalone attention program (:func:`wafertile.stream.attention.
    attention_program`) for these shapes."""
    from wafertile.stream.attention import AttentionLayout
    from wafertile.stream.attention import attention_program as program

    return program(AttentionLayout(cfg, T, heads, D), q, k, v)[0]


def _case(rng, T, heads, D, dtype):
    q, k, v = (numbers(rng, (T, heads * D), dtype, zeros=0.1, spread=2) for _ in range(3))
    return tuple(_words(a) for a in (q, k, v))


@pytest.mark.parametrize(("rows", "cols", "T", "heads", "D"), [
    (3, 2, 3, 2, 2), (4, 4, 4, 2, 8), (4, 3, 3, 3, 5), (2, 4, 2, 1, 3)])
def test_phases_on_the_array_model(request, rows, cols, T, heads, D):
    """The compiled phases on the functional array model (every interleaving the fabric may
    choose, seeded): every output word equals the reference's."""
    from wafertile import Config
    from wafertile.sim.models.array import ArrayModel

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = Config(rows=rows, cols=cols, dtype="bf16", act_depth=64, acc_depth=64,
                 nonlinear=True)
    q, k, v = _case(rng, T, heads, D, cfg.dtype)
    program = attention_program(cfg, T, heads, D, q, k, v)
    want = attention(q, k, v, heads, cfg.dtype)["out"]
    for s in (seed, seed + 1):
        got = ArrayModel(cfg).run(program, seed=s) & 0xFFFFFFFF
        assert np.array_equal(got, want), f"seed {seed}, interleaving {s}"


# the default run's attention on the RTL is the GPT block's (tests/test_gpt_block.py) and
# generation's (tests/test_gpt.py); these two behind --run-slow
@pytest.mark.parametrize(("sim", "dtype", "shape"), [
    pytest.param("icarus", "bf16", (3, 2, 3, 2, 2), marks=pytest.mark.slow),
    pytest.param("verilator", "fp16", (4, 3, 4, 3, 3), marks=pytest.mark.slow)])
def test_attention_on_the_rtl(request, tmp_path, sim, dtype, shape):
    """The phases on the RTL: every output word of every head and position equals the
    reference's (docs/attention.md), and every MAC the phases expect was done or skipped."""
    from wafertile import Config
    from wafertile.run import simulate

    from .test_float import _sim

    rows, cols, T, heads, D = shape
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = Config(rows=rows, cols=cols, dtype=dtype, act_depth=32, acc_depth=32,
                 nonlinear=True)
    q, k, v = _case(rng, T, heads, D, dtype)
    program = attention_program(cfg, T, heads, D, q, k, v)
    want = attention(q, k, v, heads, dtype)
    run = simulate(cfg, [program], sim=sim if sim == "verilator" else _sim("3x2"),
                   build_root=tmp_path)
    (y, stats), = run.results
    got = np.asarray(y, np.int64) & 0xFFFFFFFF
    bad = np.argwhere(got != want["out"])
    assert not len(bad), f"seed {seed}: (position, feature) {bad.tolist()} differ"
    macs = sum(p.expected_macs for p in program.phases)
    assert sum(stats["mac_done"]) + sum(stats["mac_skipped"]) == macs
    assert macs == heads * D * T * (T + 1) // 2 + heads * D * T * (T + 1) // 2


@pytest.mark.parametrize(("kwargs", "shape", "message"), [
    ({"dtype": "int16"}, (2, 1, 2), "needs float tiles with the nonlinear unit (dtype fp16 or "
                                    "bf16, nonlinear = true), not dtype 'int16' with nonlinear "
                                    "= false"),
    ({}, (5, 1, 2), "has 5 positions and the array 4 rows (one position per row)"),
    ({}, (2, 4, 2), "has 4 heads and the array 3 columns (one head per column)"),
    ({}, (0, 1, 2), "needs at least one position, head and feature, not T = 0, 1 heads of 2"),
    ({"acc_depth": 16}, (4, 3, 4), "(4 positions, 3 heads of 4) needs 21 accumulators per "
                                   "tile, acc_depth is 16"),
    ({"act_depth": 16}, (4, 3, 4), "(4 positions, 3 heads of 4) needs 21 activations per "
                                   "tile, act_depth is 16"),
    ({"router_arch": "lite"}, (2, 1, 2), "needs a router whose local input holds at least 2 "
                                         "flits per VC"),
])
def test_bad_attention_is_refused(kwargs, shape, message):
    from wafertile import Config
    from wafertile.stream import LayerError
    from wafertile.stream.attention import AttentionLayout, attention_phases

    base = {"rows": 4, "cols": 3, "dtype": "bf16", "nonlinear": True, "act_depth": 64,
            "acc_depth": 64}
    if kwargs.get("dtype") == "int16":
        base["nonlinear"] = False
    cfg = Config(**{**base, **kwargs})
    with pytest.raises(LayerError, match=re.escape(f"the attention {message}")):
        attention_phases(AttentionLayout(cfg, *shape))


def test_attention_program_refuses_bad_inputs():
    from wafertile import Config
    from wafertile.stream import LayerError
    from wafertile.stream.attention import AttentionLayout
    from wafertile.stream.attention import attention_program as program

    cfg = Config(rows=2, cols=2, dtype="bf16", nonlinear=True, act_depth=32, acc_depth=32)
    ok = np.zeros((2, 4), np.uint32)
    with pytest.raises(LayerError, match=re.escape("q, k and v must be 2 x 4 arrays, not "
                                                   "(2, 4), (2, 3), (2, 4)")):
        program(AttentionLayout(cfg, 2, 2, 2), ok, ok[:, :3], ok)


# -- attention in a network ----------------------------------------------------------------------


def _attention_network(rng, dtype, J=6, heads=2, D=2, out=5):
    """A float network: a projection of ``J`` inputs to the queries, keys and values of
    ``heads`` heads of ``D`` (30% of its weights zero) with ``attn0``, then a last layer."""
    from wafertile.network import Layer, Network

    w0 = numbers(rng, (3 * heads * D, J), dtype, zeros=0.3, spread=1)
    w1 = numbers(rng, (out, heads * D), dtype, spread=1)
    b0 = rng.normal(0, 0.2, 3 * heads * D).astype(np.float32)
    return Network([Layer(w0, b0, attn=heads), Layer(w1, np.zeros(out, np.float32))], 16,
                   dtype=dtype)


def _document_network(net, x, dtype):
    """The network from the documents: the projection's FP32 accumulators (MACs in
    ascending input order from the bias, zero operands skipped), the page's attention, its
    outputs rounded, the last layer's accumulators."""
    layer0, layer1 = net.layers
    width = layer0.outputs // 3
    acc = np.zeros((len(x), layer0.outputs), np.float32)
    for b in range(len(x)):
        for o in range(layer0.outputs):
            s = np.float32(layer0.bias[o])
            for j in range(layer0.inputs):
                s = _mac(s, to_format(np.float32(layer0.weights[o, j]), dtype), x[b, j])
            acc[b, o] = s
    o, _ = documented_attention(acc[:, :width], acc[:, width:2 * width], acc[:, 2 * width:],
                                layer0.attn, dtype)
    h = to_format(o, dtype)
    y = np.zeros((len(x), layer1.outputs), np.float32)
    for b in range(len(x)):
        for i in range(layer1.outputs):
            s = np.float32(layer1.bias[i])
            for j in range(layer1.inputs):
                s = _mac(s, np.float32(layer1.weights[i, j]), h[b, j])
            y[b, i] = s
    return y


def test_attention_network_on_the_model_and_in_its_file(request, tmp_path):
    """A network with ``attn0 = 2`` through its .npz file: the reference equals the
    documents' arithmetic, and the compiled program on the functional array model (two
    interleavings) equals the reference; the file keeps the key."""
    from wafertile import Config
    from wafertile.network import load_network, save_network
    from wafertile.network.compiler import compile_network
    from wafertile.sim.models.array import ArrayModel
    from wafertile.sim.models.network import network_reference

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = Config(rows=3, cols=2, dtype="bf16", act_depth=32, acc_depth=32, nonlinear=True)
    net = _attention_network(rng, "bf16")
    save_network(net, tmp_path / "net.npz")
    net = load_network(tmp_path / "net.npz")
    assert [layer.attn for layer in net.layers] == [2, 0]
    x = numbers(rng, (3, 6), "bf16", zeros=0.1, spread=1)
    want, _ = network_reference(cfg, net, x)
    assert same(want, _document_network(net, x, "bf16")).all(), f"seed {seed}"
    program = compile_network(cfg, net, x)
    assert "attention" in program.phase_step
    for s in (seed, seed + 1):
        got = ArrayModel(cfg).run(program, seed=s)
        assert same(_floats(got & 0xFFFFFFFF), want).all(), f"seed {seed}, interleaving {s}"


@pytest.mark.slow
def test_attention_network_on_the_rtl(request, tmp_path):
    """`run_network` of a bf16 network with attention on Icarus: every output bit equals the
    reference's, and the report keeps the attention's cycles apart."""
    from wafertile import Config
    from wafertile.network.run import run_network
    from wafertile.sim.models.network import network_reference

    from .test_float import _sim

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = Config(rows=3, cols=2, dtype="bf16", act_depth=32, acc_depth=32, nonlinear=True)
    net = _attention_network(rng, "bf16")
    x = numbers(rng, (3, 6), "bf16", zeros=0.1, spread=1)
    report, y = run_network(cfg, net, x, sim=_sim("3x2"), dense=False, build_root=tmp_path)
    want, _ = network_reference(cfg, net, x)
    assert same(np.asarray(y, np.float32), want).all(), f"seed {seed}"
    first = report.per_layer[0]
    assert first["attention_cycles"] > 0 and report.per_layer[1]["attention_cycles"] == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"attn": 5}, "attn0 = 5: layer 0's 12 outputs must be the queries, keys and values of 5 "
                  "heads (a multiple of 15)"),
    ({"relu": True}, "relu0 and attn0 are both set: the attention takes the projection's "
                     "accumulators as they are"),
])
def test_bad_attention_layers_are_refused(change, message):
    from dataclasses import replace

    from wafertile.network import NetworkError

    net = _attention_network(np.random.default_rng(0), "bf16")
    net.layers[0] = replace(net.layers[0], **change)
    with pytest.raises(NetworkError, match=re.escape(message)):
        net.check()


def test_attention_network_refusals():
    """One line each, before anything is built: a batch longer than the rows (also in the
    performance model), a last layer with attention, an integer network, training."""
    from dataclasses import replace

    from wafertile import Config
    from wafertile.model.layer import predict_network
    from wafertile.network import NetworkError
    from wafertile.network.compiler import compile_network
    from wafertile.train.export import from_network

    rng = np.random.default_rng(1)
    cfg = Config(rows=3, cols=2, dtype="bf16", act_depth=32, acc_depth=32, nonlinear=True)
    net = _attention_network(rng, "bf16")
    x = numbers(rng, (4, 6), "bf16", spread=1)
    with pytest.raises(NetworkError, match=re.escape(
            "the attention after layer 0 takes the batch as one sequence, one position per "
            "row: 4 inputs and 3 rows")):
        compile_network(cfg, net, x)
    with pytest.raises(NetworkError, match=re.escape(
            "the attention after layer 0 takes the batch as one sequence")):
        predict_network(cfg, net, x)
    with pytest.raises(Exception, match=re.escape("layer 0 has attention after it (attn0)")):
        from_network(net)
    last = replace(net.layers[1], attn=1, weights=np.zeros((3, 4), np.float32),
                   bias=np.zeros(3, np.float32))
    with pytest.raises(NetworkError, match=re.escape("attn1 has no meaning on the last layer")):
        replace(net, layers=[net.layers[0], last]).check()
    with pytest.raises(NetworkError, match=re.escape("needs the tiles' nonlinear unit")
                       + "|" + re.escape("nonlinear = true")):
        compile_network(cfg.replace(nonlinear=False), net, x[:3])


def _mul(a, b):
    """The nonlinear unit's MUL of two FP32 numbers: their product rounded to FP32."""
    with np.errstate(all="ignore"):
        return np.float32(np.float32(a) * np.float32(b))


def documented_attention_grad(q, k, v, do, heads, dtype):
    """``docs/attention.md``, "The derivative", one number at a time (float32 values): the
    forward pass's kept words from :func:`documented_attention`, then dQ, dK, dV."""
    T, width = q.shape
    D = width // heads
    _, probs = documented_attention(q, k, v, heads, dtype)
    dq, dk, dv = (np.zeros((T, width), np.float32) for _ in range(3))
    for h in range(heads):
        cols = slice(h * D, (h + 1) * D)
        Q, K, V, dO = (to_format(a[:, cols], dtype) for a in (q, k, v, do))
        P = to_format(probs[h], dtype)
        dS = np.zeros((T, T), np.float32)
        for i in range(T):
            dP = np.array([_dot(V[j], dO[i]) for j in range(i + 1)], np.float32)
            p = [_mac(np.float32(0.0), 1.0, P[i, j]) for j in range(i + 1)]
            t = [_mul(dP[j], p[j]) for j in range(i + 1)]
            c = t[0]
            for j in range(1, i + 1):
                c = np.float32(c + t[j])
            c1 = to_format(np.float32(c), dtype)
            c2 = to_format(_mac(c, -1.0, c1), dtype)
            for j in range(i + 1):
                e_ = _mac(_mac(dP[j], -1.0, c1), -1.0, c2)
                dS[i, j] = _mul(e_, p[j])
        W = to_format(dS, dtype)
        for i in range(T):
            for d in range(D):
                s = np.float32(0.0)
                for j in range(i + 1):
                    s = _mac(s, W[i, j], K[j, d])
                dq[i, h * D + d] = s
        for j in range(T):
            for d in range(D):
                sk, sv = np.float32(0.0), np.float32(0.0)
                for i in range(j, T):
                    sk = _mac(sk, W[i, j], Q[i, d])
                    sv = _mac(sv, dO[i, d], P[i, j])
                dk[j, h * D + d], dv[j, h * D + d] = sk, sv
    return dq, dk, dv


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize(("T", "heads", "D"), [(1, 1, 3), (5, 2, 4), (7, 3, 2)])
def test_derivative_follows_the_document(request, dtype, T, heads, D):
    """docs/attention.md, "The derivative": the reference against the page's lines written
    out number by number (zeros in every operand, a key row of zeros); and two sequences side
    by side are each the derivative of the sequence alone."""
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    q, k, v, do = (numbers(rng, (T, heads * D), dtype, zeros=0.15, spread=3)
                   for _ in range(4))
    k[0, :D] = 0.0
    fwd = attention(_words(q), _words(k), _words(v), heads, dtype)
    got = attention_grad(fwd, _words_of(do, dtype), heads, dtype)
    want = documented_attention_grad(q, k, v, do, heads, dtype)
    for name, w in zip(("dq", "dk", "dv"), want, strict=True):
        assert same(_floats(got[name]), w).all(), f"{name}, seed {seed}"
    # two sequences: each its own
    q2, k2, v2, do2 = (numbers(rng, (T, heads * D), dtype, zeros=0.15, spread=3)
                       for _ in range(4))
    both = attention_grad(attention(*(_words(np.vstack(p)) for p in ((q, q2), (k, k2), (v, v2))),
                                    heads, dtype, 2),
                          _words_of(np.vstack((do, do2)), dtype), heads, dtype, 2)
    second = attention_grad(attention(_words(q2), _words(k2), _words(v2), heads, dtype),
                            _words_of(do2, dtype), heads, dtype)
    for name in ("dq", "dk", "dv"):
        assert np.array_equal(both[name][:T], got[name]), f"{name}, seed {seed}"
        assert np.array_equal(both[name][T:], second[name]), f"{name}, seed {seed}"


def _words_of(values, dtype):
    """Values (numbers of the format) as the format's words."""
    from wafertile.hdl.core.fp import float_format

    return float_format(dtype).bits(np.asarray(values, np.float32))


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_derivative_is_close_to_float64(request, dtype):
    """Against float64's gradient of the same attention (the same rounded q, k, v and dO):
    dQ, dK and dV within a few units of the format's rounding of their largest; without the
    softmax derivative's ``c`` term they are not."""
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    T, heads, D = 12, 2, 8
    q, k, v, do = (to_format(rng.normal(0, 1, (T, heads * D)).astype(np.float32), dtype)
                   for _ in range(4))
    q = to_format(q * np.float32(0.35), dtype)
    fwd = attention(_words(q), _words(k), _words(v), heads, dtype)
    got = attention_grad(fwd, _words_of(do, dtype), heads, dtype)
    ulp = 2.0 ** (-8 if dtype == "bf16" else -11)
    causal = np.tril(np.ones((T, T), bool))
    for h in range(heads):
        cols = slice(h * D, (h + 1) * D)
        Q, K, V, dO = (a[:, cols].astype(np.float64) for a in (q, k, v, do))
        s = np.where(causal, Q @ K.T, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        dP = dO @ V.T
        dS = p * (dP - (p * dP).sum(axis=1, keepdims=True))
        wrong = p * dP
        for name, want, bad in (("dq", dS @ K, wrong @ K), ("dk", dS.T @ Q, wrong.T @ Q),
                                ("dv", p.T @ dO, None)):
            mine = _floats(got[name])[:, cols].astype(np.float64)
            scale = np.abs(want).max()
            err = np.abs(mine - want).max() / scale
            assert err < 8 * ulp, f"{name}, head {h}, seed {seed}: {err / ulp:.2f} ulp"
            if bad is not None:
                assert np.abs(mine - bad).max() / scale > 8 * ulp, name


def _grad_case(rng, cfg, T, heads, D, sequences=1, zeros=0.1):
    """A seeded forward pass and outputs' gradient (a share ``zeros`` of each operand +0),
    the derivative's program, its steps' labels, its reference (``dq``, ``dk``, ``dv`` side by
    side), the layout and the reference's steps."""
    from wafertile.hdl.core.fp import float_format
    from wafertile.stream.attention import AttentionLayout, attention_grad_program

    fmt = float_format(cfg.dtype)
    q, k, v, do = (numbers(rng, (sequences * T, heads * D), cfg.dtype, zeros=zeros, spread=2)
                   for _ in range(4))
    fwd = attention(_words(q), _words(k), _words(v), heads, cfg.dtype, sequences)
    want = attention_grad(fwd, fmt.bits(do), heads, cfg.dtype, sequences)
    layout = AttentionLayout(cfg, T, heads, D, sequences)
    program, labels = attention_grad_program(layout, fwd, fmt.bits(do))
    return program, labels, np.hstack([want["dq"], want["dk"], want["dv"]]), layout, want


@pytest.mark.parametrize(("rows", "cols", "T", "heads", "D", "sequences", "dtype"), [
    (4, 2, 4, 2, 2, 1, "bf16"), (5, 3, 5, 3, 2, 1, "fp16"), (8, 4, 4, 2, 3, 2, "bf16"),
    (4, 5, 4, 1, 4, 1, "fp16")])
def test_derivative_phases_on_the_array_model(request, rows, cols, T, heads, D, sequences,
                                              dtype):
    """The derivative's phases (``attention_grad_program``) on the functional array model,
    two interleavings: every dQ, dK and dV word equals the reference's (a head's features
    over several columns and wrapping around, two sequences side by side)."""
    from wafertile import Config
    from wafertile.sim.models.array import ArrayModel

    seed = seed_for(request)
    cfg = Config(rows=rows, cols=cols, dtype=dtype, act_depth=128, acc_depth=64,
                 nonlinear=True)
    program, labels, want, _, _ = _grad_case(np.random.default_rng(seed), cfg, T, heads, D,
                                             sequences)
    assert set(labels) >= {"copies", "dp", "softmax", "ds", "grads"}
    for s in (seed, seed + 1):
        got = ArrayModel(cfg).run(program, seed=s) & 0xFFFFFFFF
        assert np.array_equal(got, want.astype(np.int64)), f"seed {seed}, interleaving {s}"


@pytest.mark.parametrize(("sim", "dtype", "shape"), [
    ("icarus", "fp16", (4, 2, 2, 2, 2, 2)),
    pytest.param("verilator", "bf16", (4, 2, 4, 2, 2, 1), marks=pytest.mark.slow)])
def test_derivative_on_the_rtl(request, sim, dtype, shape):
    """The derivative's phases on the RTL: every dQ, dK and dV word equals the reference's,
    and every MAC the phases expect was done or skipped (two sequences of 2 on Icarus; one
    of 4 on Verilator; a third of the operands +0). The performance model, given the
    reference's tables (``attention_grad_tables``), gives every phase's cycles and every
    event of every tile; without the words the FINISHes send it miscounts the MACs their
    zeros skip."""
    from wafertile import Config
    from wafertile.run import simulate

    from .test_float import _sim

    rows, cols, T, heads, D, sequences = shape
    seed = seed_for(request)
    cfg = Config(rows=rows, cols=cols, dtype=dtype, act_depth=64, acc_depth=32,
                 nonlinear=True, counters=True)
    program, labels, want, layout, grad = _grad_case(np.random.default_rng(seed), cfg, T,
                                                     heads, D, sequences, zeros=0.3)
    run = simulate(cfg, [program], sim=sim if sim == "verilator" else _sim("4x2"))
    (y, stats), = run.results
    got = np.asarray(y, np.int64) & 0xFFFFFFFF
    bad = np.argwhere(got != want)
    assert not len(bad), f"seed {seed}: (row, column) {bad.tolist()[:8]} differ"
    assert sum(stats["mac_done"]) + sum(stats["mac_skipped"]) == sum(
        p.expected_macs for p in program.phases)
    from wafertile.model import predict_program
    from wafertile.model.events import program_events
    from wafertile.model.layer import attention_grad_tables

    nonzero, sent = attention_grad_tables(layout, program, labels, grad)
    pred = predict_program(cfg, program, detail="mesh", nonzero=nonzero, sent=sent)
    assert pred.phase_cycles == [int(c) for c in stats["phase_cycles"]], f"seed {seed}"
    assert program_events(cfg, program, nonzero, sent) == stats["events"], f"seed {seed}"
    assert program_events(cfg, program, nonzero) != stats["events"], f"seed {seed}"


def test_derivative_refusals():
    """What the derivative's phases cannot run, one line each."""
    from wafertile import Config
    from wafertile.stream import LayerError
    from wafertile.stream.attention import AttentionLayout, attention_grad_program

    fwd = {name: np.zeros((1, 2, 4), np.int64) for name in ("q", "k", "v")}
    fwd["p"] = np.zeros((1, 2, 2), np.int64)
    base = Config(rows=2, cols=1, dtype="bf16", act_depth=64, acc_depth=32, nonlinear=True)
    for cfg, message in [
        (base.replace(buffer_depth=2), r"^the attention's derivative needs a router whose "
                                       r"local input holds at least 4 flits per VC"),
        (base.replace(acc_depth=16), r"^the attention's derivative \(2 positions, 1 heads of "
                                     r"4\) needs 31 accumulators per tile, acc_depth is 16$"),
        (base.replace(act_depth=16), r"^the attention's derivative \(2 positions, 1 heads of "
                                     r"4\) needs 28 activations per tile, act_depth is 16$"),
        (base.replace(nonlinear=False), r"^the attention's derivative needs float tiles with "
                                        r"the nonlinear unit")]:
        with pytest.raises(LayerError, match=message):
            attention_grad_program(AttentionLayout(cfg, 2, 1, 4), fwd, np.zeros((2, 4)))
    with pytest.raises(LayerError, match=r"^do must be 2 x 4 words, not \(3, 4\)$"):
        attention_grad_program(AttentionLayout(base, 2, 1, 4), fwd, np.zeros((3, 4)))
