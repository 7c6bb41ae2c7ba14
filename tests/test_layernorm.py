"""LayerNorm on the fabric (docs/nonlinear.md, "LayerNorm on the fabric"): a float layer's
outputs normalized per input by the tiles themselves, before its hand-off.

- the reference (:func:`wafertile.sim.models.rows.layernorm`) against a scalar implementation
  written here from the document, and both near float64's LayerNorm;
- a bf16 network with LayerNorm on its hidden layer (then ReLU) and on its last layer, through
  its .npz file, on the RTL (Icarus): every output bit exact, the event level exact;
- what is refused, with one line each.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import replace

import numpy as np
import pytest

from wafertile import Config
from wafertile.hdl.flit import Opcode
from wafertile.network import Network, NetworkError, load_network, save_network
from wafertile.sim.models import nonlinear as nl

from .test_float import _sim, same, to_format
from .test_softmax import _network, _value, _word


def tile_sum(values, tiles) -> np.float32:
    """Each tile's values added in slot order (the first a copy), then the tiles' sums in
    tile order, in float32, as the document writes it."""
    f32 = np.float32
    sums = []
    for part in tiles:
        s = values[part[0]]
        for i in part[1:]:
            s = f32(s + values[i])
        sums.append(s)
    total = sums[0]
    for v in sums[1:]:
        total = f32(total + v)
    return total


def documented_layernorm(x, parts, dtype, gamma, beta, eps) -> np.ndarray:
    """One row ``x`` (float32) as the document writes it, scalar by scalar."""
    f32 = np.float32
    tiles = [list(p) for p in parts if len(p)]

    def minus(v, c):  # a MAC with weight -1 on c: nothing if c is a zero
        return v if c == 0 else f32(v + f32(-1.0) * c)


    with np.errstate(all="ignore"):
        n = f32(1.0) / f32(len(x))
        mu = f32(tile_sum(x, tiles) * n)
        c1 = to_format(mu, dtype)
        c2 = to_format(minus(mu, c1), dtype)
        d = np.array([minus(minus(v, c1), c2) for v in x], f32)
        q = np.array([f32(v * v) for v in d], f32)
        v = f32(f32(tile_sum(q, tiles) * n) + f32(eps))
        r = to_format(_value(nl.rsqrt(np.array([_word(v)], np.uint32))[0]), dtype)
        z = f32(0.0) if r == 0 else f32(r)
        return np.array([f32(f32(f32(d[i] * z) * gamma[i]) + beta[i]) for i in range(len(x))],
                        f32)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reference_follows_the_document(request, dtype):
    """The vectorized reference equals the scalar one written from the document on random
    rows of every scale (and a constant row: v = eps), and both are within the format's
    rounding of float64's LayerNorm on the well-scaled ones."""
    from wafertile.sim.models.rows import layernorm

    seed = int(os.environ.get("WAFERTILE_SEED") or zlib.crc32(request.node.nodeid.encode()))
    rng = np.random.default_rng(seed)
    parts = [np.array([3, 0, 6]), np.array([1, 4]), np.array([2, 5]), np.array([], np.int64)]
    rows = [rng.normal(m, s, 7) for m in (0, 5, -300) for s in (0.01, 1, 50)]
    rows += [np.full(7, 2.5), rng.normal(0, 1, 7) * 1e-20, np.array([1e30, -1e30, 0, 0, 1, 2, 3])]
    x = np.array(rows, np.float32)
    gamma = rng.normal(1, 0.3, 7).astype(np.float32)
    beta = rng.normal(0, 0.3, 7).astype(np.float32)
    eps = np.float32(1e-5)
    words = [v.view(np.uint32) for v in (gamma, beta)]
    got = layernorm(x.view(np.uint32), parts, dtype, words[0], words[1],
                    np.array(eps).view(np.uint32)).view(np.float32)
    for b, row in enumerate(x):
        want = documented_layernorm(row, parts, dtype, gamma, beta, eps)
        assert same(got[b], want).all(), (seed, row, got[b], want)
    x64 = x.astype(np.float64)
    exact = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    exact = exact * gamma + beta
    ulp = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}[dtype]
    scale = np.abs(gamma).max() * 4 + np.abs(beta).max()
    good = np.ptp(x64, axis=1) > 1e-3 * np.abs(x64).max(axis=1)  # not cancelled away
    assert np.all(np.abs(got[:9][good[:9]] - exact[:9][good[:9]]) <= 4 * ulp * scale)


def _ln_network(rng, dtype: str) -> Network:
    net, _, _ = _network(rng, dtype)
    first, last = net.layers
    first = replace(first, ln_gamma=rng.normal(1, 0.3, first.outputs).astype(np.float32),
                    ln_beta=rng.normal(0, 0.3, first.outputs).astype(np.float32))
    last = replace(last, ln_gamma=rng.normal(1, 0.3, last.outputs).astype(np.float32),
                   ln_beta=rng.normal(0, 0.3, last.outputs).astype(np.float32), ln_eps=1e-3)
    return Network([first, last], 16, name="layernorm", dtype=dtype)


# both with --run-slow since 2026-12-07 (the 2 x 5 one took 12 to 19 s): the default run keeps
# LayerNorm on the RTL in the GPT block (tests/test_gpt_block.py, Icarus) and in training
# (tests/test_training_rtl.py and tests/test_train_command.py, Verilator)
@pytest.mark.parametrize("cols", [pytest.param(3, marks=pytest.mark.slow),
                                  pytest.param(5, marks=pytest.mark.slow)])
def test_layernorm_network_on_the_rtl(tmp_path, cols):
    """LayerNorm on the hidden layer (then its ReLU) and on the last layer (eps 1e-3) of a
    bf16 network, on a 2 x 3 and a 2 x 5 array (Icarus) through its .npz file: every output
    bit exact against the reference, near float64's LayerNorm of the reference's logits, and
    the event level of the performance model exact on every phase. On 3 columns the tiles'
    sums reach tile 0 in a chain; on 5, as copies that tile 0 then adds in order
    (docs/nonlinear.md)."""
    from wafertile.model.layer import predict_network
    from wafertile.network.compiler import compile_network
    from wafertile.run import simulate
    from wafertile.sim.models.network import network_reference

    cfg = Config(rows=2, cols=cols, dtype="bf16", act_depth=16, acc_depth=16, nonlinear=True)
    seed = int(os.environ.get("WAFERTILE_SEED") or zlib.crc32(b"test_layernorm.py::rtl"))
    rng = np.random.default_rng(seed)
    net = _ln_network(rng, cfg.dtype)
    save_network(net, tmp_path / "net.npz")
    net = load_network(tmp_path / "net.npz")
    assert [layer.layernorm for layer in net.layers] == [True, True]
    assert net.layers[1].ln_eps == pytest.approx(1e-3)
    _, _, x = _network(np.random.default_rng(seed), cfg.dtype)
    program = compile_network(cfg, net, x)
    assert program.phase_step.count("layernorm") > 0
    copies = [p for p in program.phases if (p.flits["payload.op"] == Opcode.SEND.value).any()
              and ((p.flits["payload.data"] >> cfg.route_width) & 3 == 3).any()
              and (p.flits["header.x0"] > 0).all()]
    assert bool(copies) == (cols == 5)  # the copies to tile 0: only on 5 columns
    run = simulate(cfg, [program], sim=_sim("3x5bf16"), build_root=tmp_path / "builds")
    (y, stats), = run.results
    y = np.asarray(y, np.int64).astype(np.uint32).view(np.float32)
    want, acts = network_reference(cfg, net, x)
    assert run.error_flags == 0 and same(y, want).all(), (seed, y, want)
    # the last layer's normalized outputs: mean beta-ish, near float64's LayerNorm
    last = net.layers[1]
    logits = (acts[1].astype(np.float64) @ np.asarray(last.weights, np.float64).T
              + last.bias)
    exact = (logits - logits.mean(1, keepdims=True)) / np.sqrt(
        logits.var(1, keepdims=True) + 1e-3) * last.ln_gamma + last.ln_beta
    assert np.abs(y - exact).max() < 0.05, (y, exact)
    predicted = predict_network(cfg, net, x, dense=False, detail="mesh").sparse.phase_cycles
    assert predicted == [int(c) for c in stats["phase_cycles"]]


@pytest.mark.parametrize("change, message", [
    ({"buffer_depth": 2}, "the LayerNorm of layer 0's outputs needs a router whose local input "
                          "holds at least 4 flits per VC (three SENDs and their fence): "
                          "buffer_depth = 2"),
    ({"nonlinear": False}, "the LayerNorm of layer 0's outputs needs float tiles with the "
                           "nonlinear unit"),
    ({"cols": 1, "outputs": 14}, "the LayerNorm of layer 0's outputs leaves 2 of a tile's 16 "
                                 "accumulators free and LayerNorm needs 3"),
])
def test_layernorm_refused(change, message):
    """A LayerNorm that cannot run is refused before anything is built, one line naming
    why."""
    from wafertile.network.compiler import check_network

    rng = np.random.default_rng(4)
    net = _ln_network(rng, "bf16")
    _, _, x = _network(np.random.default_rng(4), "bf16")
    change = dict(change)
    if "outputs" in change:  # a wider first layer: 14 outputs on one column of 16
        m = change.pop("outputs")
        first = replace(net.layers[0], weights=np.ones((m, 12), np.float32),
                        bias=np.zeros(m, np.float32), ln_gamma=np.ones(m, np.float32),
                        ln_beta=np.zeros(m, np.float32))
        second = replace(net.layers[1], weights=np.ones((7, m), np.float32))
        net = Network([first, second], 16, dtype="bf16")
    options = {"rows": 2, "cols": 3, "dtype": "bf16", "act_depth": 16, "acc_depth": 16,
               "nonlinear": True, **change}
    with pytest.raises(NetworkError) as info:
        check_network(Config(**options), net, x)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_layernorm_keys(tmp_path):
    """ln_g{l} and ln_b{l} go together, have one value per output, are finite; ln_eps{l}
    is positive; an integer network with them is refused."""
    rng = np.random.default_rng(6)
    net = _ln_network(rng, "fp16")
    save_network(net, tmp_path / "a.npz")
    data = dict(np.load(tmp_path / "a.npz"))
    cases = [({"drop": "ln_b0"}, "ln_g0 and ln_b0 go together"),
             ({"ln_g0": np.ones(3, np.float32)}, "ln_g0 must have 9 values, not shape (3,)"),
             ({"ln_b1": np.full(7, np.inf, np.float32)}, "ln_b1 must be finite"),
             ({"ln_eps1": np.float32(-1)}, "ln_eps1 must be a positive finite FP32 number")]
    for k, (change, message) in enumerate(cases):
        bad = dict(data)
        if "drop" in change:
            del bad[change["drop"]]
        else:
            bad.update(change)
        np.savez(tmp_path / f"b{k}.npz", **bad)
        with pytest.raises(NetworkError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_network(tmp_path / f"b{k}.npz")
    from wafertile.network import Layer

    with pytest.raises(NetworkError, match="ln_g0 needs a float dtype"):
        Network([Layer(np.ones((2, 3), np.int64), np.zeros(2, np.int64),
                       ln_gamma=np.ones(2), ln_beta=np.zeros(2))], 16).check()


def test_onnx_layernormalization_import(tmp_path):
    """An ONNX LayerNormalization (opset 17) after a layer's MatMul and Add is the layer's
    LayerNorm (scale, bias, epsilon); the float model the importer keeps computes it; over
    another axis, twice, or in an integer import it is refused naming the node or layer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from wafertile.network.compiler import check_network
    from wafertile.network.onnx import float_layers, import_onnx, import_onnx_float
    from wafertile.network.quantize import float_forward

    rng = np.random.default_rng(7)
    w0 = rng.normal(0, 0.5, (8, 6)).astype(np.float32)
    w1 = rng.normal(0, 0.5, (6, 4)).astype(np.float32)
    g0 = rng.normal(1, 0.2, 6).astype(np.float32)
    b0 = rng.normal(0, 0.2, 6).astype(np.float32)

    def save(path, axis=-1, twice=False, softmax=True):
        ln = [helper.make_node("LayerNormalization", ["m0", "G0", "B0"], ["n0"], name="ln0",
                               axis=axis, epsilon=1e-3)]
        if twice:
            ln.append(helper.make_node("LayerNormalization", ["n0", "G0", "B0"], ["n1"],
                                       name="ln1"))
        nodes = [helper.make_node("MatMul", ["x", "W0"], ["m0"], name="matmul0"), *ln,
                 helper.make_node("Relu", [ln[-1].output[0]], ["r0"], name="relu0"),
                 helper.make_node("MatMul", ["r0", "W1"], ["y"], name="matmul1"),
                 helper.make_node("Softmax", ["y"], ["p"], name="softmax")][:5 + twice
                                                                          - (not softmax)]
        graph = helper.make_graph(
            nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
            [helper.make_tensor_value_info("p" if softmax else "y", TensorProto.FLOAT,
                                           [None, 4])],
            [numpy_helper.from_array(a, k) for k, a in
             (("W0", w0), ("W1", w1), ("G0", g0), ("B0", b0))])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                  str(path))

    save(tmp_path / "ln.onnx")
    net = import_onnx_float(tmp_path / "ln.onnx", "bf16")
    first = net.layers[0]
    assert first.layernorm and first.relu and net.softmax and not net.layers[1].layernorm
    assert np.array_equal(first.ln_gamma, g0) and np.array_equal(first.ln_beta, b0)
    assert first.ln_eps == pytest.approx(1e-3)
    check_network(Config(rows=2, cols=2, dtype="bf16", act_depth=16, acc_depth=16,
                         nonlinear=True), net, np.zeros((1, 8), np.float32))
    x = rng.normal(0, 1, (3, 8))
    h = x @ w0
    h = np.maximum((h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + 1e-3)
                   * g0 + b0, 0)
    np.testing.assert_allclose(float_forward(float_layers(tmp_path / "ln.onnx"), x)[-1],
                               h @ w1, rtol=1e-5)
    save(tmp_path / "axis.onnx", axis=0)
    with pytest.raises(NetworkError, match=r"node 'ln0' \(LayerNormalization\) must normalize"):
        import_onnx_float(tmp_path / "axis.onnx", "bf16")
    save(tmp_path / "twice.onnx", twice=True)
    with pytest.raises(NetworkError, match=r"node 'ln1' \(LayerNormalization\) must normalize"):
        import_onnx_float(tmp_path / "twice.onnx", "bf16")
    save(tmp_path / "plain.onnx", softmax=False)
    assert not import_onnx_float(tmp_path / "plain.onnx", "fp16").softmax
    with pytest.raises(NetworkError, match=r"^layer 0 has a LayerNormalization: it runs on float "
                                           r"tiles only"):
        import_onnx(tmp_path / "plain.onnx", np.zeros((2, 8)))


def test_training_refuses_a_layernorm(tmp_path):
    """Training takes chains with ReLU only: a network with a LayerNorm is refused, naming
    the layer (not trained as if it had none)."""
    from wafertile.train import TrainError
    from wafertile.train.export import from_network

    net = _ln_network(np.random.default_rng(8), "bf16")
    with pytest.raises(TrainError, match=r"layer 0 has a LayerNorm \(ln_g0\)"):
        from_network(net)


# -- LayerNorm's derivative (docs/nonlinear.md, "LayerNorm's derivative on the fabric") ---------

def documented_layernorm_grad(dy, parts, dtype, gamma, xhat, r, *, mutate: bool = False
                              ) -> np.ndarray:
    """One row's ``dX`` as the document writes it, scalar by scalar (float32 values; ``xhat``
    and ``r`` numbers of the format). ``mutate``: the mean of ``g`` as one number of the
    format, ``c1`` without ``c2`` (a wrong rounding the checks must catch)."""
    f32 = np.float32
    tiles = [list(p) for p in parts if len(p)]

    def fmt(v):
        return f32(to_format(np.float32(v), dtype))

    def mac(acc, w, a):  # a MAC: nothing if w or a is a zero
        return acc if (w == 0 or a == 0) else f32(acc + f32(f32(w) * f32(a)))

    with np.errstate(all="ignore"):
        n = f32(1.0) / f32(len(dy))
        g = [f32(f32(dy[i]) * f32(gamma[i])) for i in range(len(dy))]          # 1.
        sums = []
        for part in tiles:                                                     # 2.
            p = f32(0.0)
            for i in part:
                p = mac(p, fmt(g[i]), xhat[i])
            sums.append(p)
        k = fmt(f32(tile_sum(sums, [[t] for t in range(len(sums))]) * n))
        m = f32(tile_sum(g, tiles) * n)                                        # 3.
        c1 = fmt(m)
        c2 = f32(0.0) if mutate else fmt(mac(m, -1.0, c1))
        e = [mac(mac(gi, -1.0, c1), -1.0, c2) for gi in g]
        w = fmt(mac(f32(0.0), -1.0, k))                                        # 4.
        e = [mac(e[i], w, xhat[i]) for i in range(len(dy))]
        z = mac(f32(0.0), 1.0, r)                                              # 5.
        return np.array([f32(v * z) for v in e], f32)


def _ln_forward64(x: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """float64 LayerNorm's normalized rows and reciprocal square roots."""
    x = np.asarray(x, np.float64)
    r = 1.0 / np.sqrt(x.var(1, keepdims=True) + eps)
    return (x - x.mean(1, keepdims=True)) * r, r[:, 0]


def _ln_grad64(dy, gamma, xhat, r) -> np.ndarray:
    """float64: r (g - mean(g) - xhat mean(g xhat)), g = dy gamma."""
    g = np.asarray(dy, np.float64) * gamma
    return r[:, None] * (g - g.mean(1, keepdims=True)
                         - xhat * (g * xhat).mean(1, keepdims=True))


def _ln_grad_case(rng, dtype: str, rows: int, outputs: int):
    """Random rows of a LayerNorm's backward pass: (dy, gamma, xhat, r) as float32 values
    (xhat and r rounded to the format, as the forward pass keeps them), and float64's
    normalized rows and r."""
    x = rng.normal(rng.normal(0, 3, (rows, 1)), rng.uniform(0.1, 10, (rows, 1)),
                   (rows, outputs))
    xhat64, r64 = _ln_forward64(x)
    dy = (rng.normal(0, 1, (rows, outputs)) * 10.0 ** rng.integers(-3, 3, (rows, 1))
          ).astype(np.float32)
    gamma = rng.normal(1, 0.3, outputs).astype(np.float32)
    xhat = to_format(xhat64.astype(np.float32), dtype)
    r = to_format(r64.astype(np.float32), dtype)
    return dy, gamma, xhat, r, xhat64, r64


def _half_words(values, dtype: str) -> np.ndarray:
    """float32 values that are numbers of ``dtype``, as its words."""
    from wafertile.hdl.core.fp import float_format

    return float_format(dtype).bits(np.asarray(values, np.float32)).astype(np.int64)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_layernorm_grad_follows_the_document(request, dtype):
    """The vectorized reference of LayerNorm's derivative equals the scalar one written from
    the document (rows of every scale; a zero gradient row, a zero gamma, a zero normalized
    output), a sum in another order is caught, and both are within a few of the format's
    ulps of float64's derivative; that derivative is checked against central differences of
    float64's LayerNorm."""
    from wafertile.sim.models.rows import layernorm_grad

    from .conftest import seed_for

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    parts = [np.array([3, 0, 6]), np.array([1, 4]), np.array([2, 5]), np.array([], np.int64)]
    dy, gamma, xhat, r, xhat64, r64 = _ln_grad_case(rng, dtype, 12, 7)
    dy[1] = 0.0
    gamma[4] = 0.0
    xhat[2, 3] = 0.0
    got = layernorm_grad(dy.view(np.uint32), parts, dtype, gamma.view(np.uint32),
                         _half_words(xhat, dtype), _half_words(r, dtype)).view(np.float32)
    caught = 0
    for b in range(len(dy)):
        want = documented_layernorm_grad(dy[b], parts, dtype, gamma, xhat[b], r[b])
        assert same(got[b], want).all(), (seed, b, got[b], want)
        wrong = documented_layernorm_grad(dy[b], parts, dtype, gamma, xhat[b], r[b],
                                          mutate=True)
        caught += not same(got[b], wrong).all()
    assert caught > 0, f"seed {seed}: the mean's second part made no difference on any row"
    assert not got[1].any(), f"seed {seed}: a zero gradient row"
    # near float64's derivative: its error is the format's rounding of fmt(g), X^, k and r
    exact = _ln_grad64(dy, gamma, xhat64, r64)
    ulp = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}[dtype]
    scale = r64 * np.abs(dy * gamma).max(axis=1)
    err = np.abs(got - exact).max(axis=1)
    kept = np.arange(len(dy)) != 2  # row 2's zeroed normalized output is not float64's
    assert (err <= 4 * ulp * scale)[kept].all(), (seed, err, ulp * scale)
    # the formula itself: central differences of sum(dy * LayerNorm(x)) in float64
    x = rng.normal(0, 2, (3, 7))
    h = 1e-6
    numeric = np.zeros_like(x)
    for i in range(7):
        step = np.zeros_like(x)
        step[:, i] = h
        up, down = (_ln_forward64(x + s)[0] * gamma for s in (step, -step))
        numeric[:, i] = (dy[:3] * (up - down)).sum(1) / (2 * h)
    xh, rr = _ln_forward64(x)
    assert np.allclose(_ln_grad64(dy[:3], gamma, xh, rr), numeric, rtol=1e-5, atol=1e-7)


def _ln_grad_program(cfg: Config, rng, outputs: int):
    """LayerNorm's derivative of ``outputs`` outputs over all the array's rows: its program
    (normalized outputs at activations 4 .., r at 3), the reference's dX and the model's
    tables."""
    from wafertile.formats import fp32_fields
    from wafertile.model.layer import layernorm_back_tables
    from wafertile.sim.models.rows import layernorm_grad
    from wafertile.stream import plan_layer
    from wafertile.stream.rows import layernorm_back_program

    plan = plan_layer(cfg, np.ones((outputs, 2), np.float32), streams=False)
    dy, gamma, xhat, r, *_ = _ln_grad_case(rng, cfg.dtype, cfg.rows, outputs)
    dy[0, 1] = 0.0  # a zero gradient; in the last row each product has a zero operand, so
    dy[-1, ::2] = 0.0  # k and w are +0 and the MACs of weight w skipped on nonzero outputs
    xhat[-1, 1::2] = 0.0
    xw, rw = _half_words(xhat, cfg.dtype), _half_words(r, cfg.dtype)
    steps: dict = {}
    want = layernorm_grad(dy.view(np.uint32), plan.parts(0), cfg.dtype,
                          gamma.view(np.uint32), xw, rw, steps)
    program = layernorm_back_program(plan, dy.view(np.uint32), xw, rw,
                                     np.asarray(fp32_fields(gamma), np.int64), xh=4, ra=3)
    tables = layernorm_back_tables(plan, program.phases, steps, xw, xh=4)
    return program, want, tables


@pytest.mark.parametrize("sim, cols, dtype", [
    pytest.param("icarus", 5, "bf16", id="icarus-5-bf16"),
    pytest.param("icarus", 3, "fp16", id="icarus-3-fp16", marks=pytest.mark.slow),
    pytest.param("verilator", 5, "bf16", id="verilator-5-bf16", marks=pytest.mark.slow),
    pytest.param("verilator", 3, "fp16", id="verilator-3-fp16", marks=pytest.mark.slow),
])
def test_layernorm_grad_on_the_rtl(request, tmp_path, sim, cols, dtype):
    """LayerNorm's derivative of 9 outputs per row on a 2 x 5 (the sums across the tiles as
    copies at tile 0) and a 2 x 3 array (a chain): every dX bit exact against the reference,
    and the event level exact on every phase and the model's count of every event of every
    tile (docs/counters.md), with the words the FINISHes send taken from the reference (one
    row's k and w are +0: the MACs of weight w are skipped)."""
    from wafertile.model.events import EVENTS, program_events
    from wafertile.model.predict import predict_program
    from wafertile.run import simulate

    from .conftest import seed_for

    seed = seed_for(request)
    if sim == "icarus":
        _sim("3x5bf16")
    cfg = Config(rows=2, cols=cols, dtype=dtype, act_depth=16, acc_depth=16, nonlinear=True,
                 counters=True)
    program, want, (nonzero, sent) = _ln_grad_program(cfg, np.random.default_rng(seed), 9)
    run = simulate(cfg, [program], sim=sim, build_root=tmp_path / "builds")
    (y, stats), = run.results
    got = np.asarray(y, np.int64).astype(np.uint32)
    assert run.error_flags == 0 and same(got.view(np.float32), want.view(np.float32)).all(), \
        (seed, got.view(np.float32), want.view(np.float32))
    predicted = predict_program(cfg, program, nonzero=nonzero, sent=sent, detail="mesh")
    assert predicted.phase_cycles == [int(c) for c in stats["phase_cycles"]], f"seed {seed}"
    events = program_events(cfg, program, nonzero, sent)
    for name in EVENTS:
        assert stats["events"][name] == events[name], \
            f"seed {seed}: {name}: RTL {stats['events'][name]}, model {events[name]}"
    assert sum(stats["events"]["mac_skipped"]) > 0, f"seed {seed}"


@pytest.mark.parametrize("change, where, message", [
    ({"cols": 2, "outputs": 30}, {"xh": 0, "ra": 30}, "LayerNorm's derivative leaves 1 of a "
                                                      "tile's 16 accumulators free and needs 2"),
    ({}, {"xh": 10}, "the 9 normalized outputs at activations 10 .. 18 do not fit "
                     "act_depth = 16"),
    ({}, {"ra": 5}, "r at activation 5 overlaps another of its activations"),
    ({}, {"ra": 16}, "r at activation 16, outside the bank (act_depth = 16)"),
    ({}, {"xh": [4] * 9}, "two outputs of one tile at the same activation"),
    ({}, {"xh": [4] * 8}, "needs one address per output (9), not (8,)"),
    ({"nonlinear": False}, {}, "LayerNorm's derivative needs float tiles with the nonlinear "
                               "unit"),
])
def test_layernorm_grad_refused(change, where, message):
    """A LayerNorm's derivative that cannot run is refused before anything is built, one
    line naming why."""
    from wafertile.stream import LayerError, plan_layer
    from wafertile.stream.rows import check_layernorm_back

    change = dict(change)
    outputs = change.pop("outputs", 9)
    options = {"rows": 2, "cols": 3, "dtype": "bf16", "act_depth": 16, "acc_depth": 16,
               "nonlinear": True, **change}
    plan = plan_layer(Config(**options), np.ones((outputs, 2), np.float32), streams=False)
    with pytest.raises(LayerError) as info:
        check_layernorm_back(plan, **{"xh": 4, "ra": 3, **where})
    assert message in str(info.value) and "\n" not in str(info.value)
