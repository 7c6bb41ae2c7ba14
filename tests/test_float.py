"""Floating-point tiles through the whole stack (issue 14): layers and networks no one has seen,
with subnormals, infinities, NaNs, signed zeros and cancellation, on the RTL (Verilator's
harness and Icarus through cocotb), 4 x 4 and 3 x 5 arrays, fp16 and bf16, with and without
reduction splits, against the arithmetic of docs/float.md written again here with numpy
float32 scalars; ``wafertile run --dtype ... --json``; the refusals of inputs that are not
numbers of the format; the compiler's reduction order; the lint of the float tile.

The documented arithmetic (docs/float.md): per output, and per chunk of the activation row
when the layer is split over K tiles (chunk = ceil(J / K), K = ceil(J / act_depth))::

    acc = float32(acc + float32(w) * float32(a))     j ascending; skip j where w or a is +-0
    Y   = float32(...float32(float32(p0 + p1) + p2) ... + p[K-1])

A network adds its FP32 bias as the starting value of chunk 0, then per hidden layer
``relu`` (NaN passes, -0 -> +0) and the rounding to the format, to nearest even.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from wafertile import Config
from wafertile.cli import main
from wafertile.network import Layer, Network, load_network, save_network
from wafertile.network.run import run_network
from wafertile.run import run_layer
from wafertile.sim.models.array import port_hazards
from wafertile.sim.toolchain import icarus_available
from wafertile.stream import LayerError, compile_layer

from .conftest import seed_for

CONFIGS = {
    "4x4fp16": Config(rows=4, cols=4, dtype="fp16", act_depth=16, acc_depth=16),
    "3x5bf16": Config(rows=3, cols=5, dtype="bf16", act_depth=16, acc_depth=16),
    # the other two pairings, on Icarus
    "3x5fp16": Config(rows=3, cols=5, dtype="fp16", act_depth=16, acc_depth=16),
    "4x4bf16": Config(rows=4, cols=4, dtype="bf16", act_depth=16, acc_depth=16),
}


# -- the documented arithmetic, again -----------------------------------------------------------

def to_format(values, dtype: str) -> np.ndarray:
    """float32 values rounded to nearest even in ``dtype``, as float32 (NaN stays NaN)."""
    v = np.asarray(values, np.float32)
    if dtype == "fp16":
        with np.errstate(over="ignore"):
            return v.astype(np.float16).astype(np.float32)
    u = v.view(np.uint32).astype(np.uint64)
    top = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return np.where(np.isnan(v), v, top.astype(np.uint32).view(np.float32))


def documented(x, w, act_depth: int, bias=None) -> np.ndarray:
    """Y of a float layer by the documented arithmetic (numpy float32, output by output)."""
    x, w = np.asarray(x, np.float32), np.asarray(w, np.float32)
    (B, J), I = x.shape, w.shape[0]
    K = max(1, -(-J // act_depth))
    chunk = -(-J // K)
    y = np.zeros((B, I), np.float32)
    with np.errstate(all="ignore"):
        for b in range(B):
            for i in range(I):
                total = None
                for start in range(0, J, chunk):
                    acc = np.float32(0.0) if start or bias is None else np.float32(bias[i])
                    for j in range(start, min(J, start + chunk)):
                        if w[i, j] == 0 or x[b, j] == 0:
                            continue
                        acc = np.float32(acc + np.float32(w[i, j]) * np.float32(x[b, j]))
                    total = acc if total is None else np.float32(total + acc)
                y[b, i] = total
    return y


def documented_network(layers, x, act_depth: int, dtype: str) -> np.ndarray:
    """The network's outputs: each layer from its FP32 bias, ReLU (``relu`` True) or GELU
    (``"gelu"``: docs/nonlinear.md's, whose reference tests/test_nonlinear.py checks against
    the document) and the rounding between."""
    from wafertile.sim.models.nonlinear import gelu

    a = np.asarray(x, np.float32)
    for n, (w, bias, act) in enumerate(layers):
        acc = documented(a, w, act_depth, bias)
        if n == len(layers) - 1:
            return acc
        if act == "gelu":
            acc = gelu(acc.view(np.uint32)).view(np.float32)
        elif act:
            acc = np.where(np.isnan(acc) | ~np.signbit(acc), acc, np.float32(0.0))
        a = to_format(acc, dtype)
    raise AssertionError("no layers")


def same(a, b) -> np.ndarray:
    """Elementwise: the same FP32 word, any NaN equal to any NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))


# -- layers no one has seen ---------------------------------------------------------------------

def numbers(rng, shape, dtype: str, *, zeros: float = 0.0, spread: int = 8) -> np.ndarray:
    """Numbers of ``dtype`` of both signs over 2**-spread .. 2**spread, a share ``zeros`` of
    them +0 or -0."""
    v = rng.uniform(1.0, 2.0, shape) * 2.0 ** rng.integers(-spread, spread + 1, shape)
    v = to_format(v * rng.choice([-1.0, 1.0], shape), dtype)
    zero = rng.random(shape) < zeros
    return np.where(zero, np.copysign(np.float32(0.0), rng.choice([-1.0, 1.0], shape)),
                    v).astype(np.float32)


def corner_layer(rng, dtype: str, b: int = 5, i: int = 14, j: int = 40):
    """A layer of mixed magnitudes with the corners put in: subnormal activations and weights
    (and, for BF16, products below FP32's normal range), an infinity of each sign and a NaN
    among the activations, the largest finite values (BF16: products beyond FP32's range),
    signed zeros, outputs whose terms cancel exactly, and sums that round half to even."""
    x = numbers(rng, (b, j), dtype, zeros=0.1)
    w = numbers(rng, (i, j), dtype, zeros=0.5)
    tiny = 2.0 ** -24 if dtype == "fp16" else 2.0 ** -133
    top = 65504.0 if dtype == "fp16" else float(to_format(3.38e38, "bf16"))
    x[0, :6] = [tiny, 3 * tiny, -tiny, np.inf, -0.0, top]
    x[1, :6] = [-np.inf, np.nan, 0.0, tiny, -top, 2.0 ** -12]
    w[0, :6] = [1.5, -tiny, 2.0, 0.5, 7.0, 3.0]
    w[2, :] = 0.0
    w[2, 3] = -0.0
    w[3, :] = 0.0
    w[3, 6:10] = [2.0, -2.0, 0.25, -0.25]      # cancellation on equal activations
    x[:, 7] = x[:, 6]
    x[:, 9] = x[:, 8]
    w[4, :] = 0.0                              # 1 + 2**-24: half an ulp, a tie, stays 1
    w[4, 10:12] = [1.0, 2.0 ** -12]
    x[:, 10] = 1.0
    x[:, 11] = 2.0 ** -12
    w[5, 20:24] = [tiny, tiny, -tiny, tiny]    # subnormal products (BF16: below FP32's range)
    x[2 % b, 20:24] = [tiny, 0.5, 2.0, 3.0 * 2.0 ** -9]
    w[6, :3] = [top, top, top]                 # the top of the range (BF16: overflow)
    x[3 % b, :3] = [top, top, -top]
    return x, to_format(w, dtype)


def random_layer(rng, dtype: str, b: int, i: int, j: int, density: float):
    return numbers(rng, (b, j), dtype, zeros=0.1), numbers(rng, (i, j), dtype,
                                                           zeros=1.0 - density)


def _check(cfg: Config, x, w, y, report) -> None:
    want = documented(x, w, cfg.act_depth)
    bad = ~same(y, want)
    assert not bad.any(), (f"{int(bad.sum())} of {bad.size} outputs differ, first at "
                           f"{np.argwhere(bad)[0].tolist()}: {y[bad][0]!r} vs {want[bad][0]!r}")
    assert report.passed and report.mismatches == 0 and report.dtype == cfg.dtype
    assert y.dtype == np.float32


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One wafertile cache for the module: the CLI and run_layer share the array builds."""
    return tmp_path_factory.mktemp("float-cache")


#: The default run builds one float array on Verilator (4 x 4, fp16) and runs bf16 on Icarus;
#: --run-slow adds the 3 x 5 bf16 array on Verilator.
# both with --run-slow (44 s for 4x4fp16): float layers reach the harness by default through
# the training steps (tests/test_training_rtl.py, tests/test_train_command.py) and the CLI
VERILATOR = [pytest.param("4x4fp16", marks=pytest.mark.slow),
             pytest.param("3x5bf16", marks=pytest.mark.slow)]


def _sim(cfg_name: str) -> str:
    """The simulator of the CLI and network tests: Verilator for 4x4fp16, else Icarus."""
    if cfg_name == "4x4fp16":
        return "verilator"
    if not icarus_available():
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    return "icarus"


@pytest.mark.parametrize("cfg_name", VERILATOR)
def test_layers_on_verilator(request, cache, cfg_name):
    """Corner and random layers (split over K = 3 tiles and reduced, more outputs than the
    accumulator bank, a second batch group, dense) through the compiled Verilator harness."""
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(seed_for(request))
    layers = [corner_layer(rng, cfg.dtype),                       # J = 40: K = 3
              random_layer(rng, cfg.dtype, 6, 40, 12, 0.6),       # passes, two batch groups
              random_layer(rng, cfg.dtype, 3, 9, 16, 1.0),        # dense, K = 1
              random_layer(rng, cfg.dtype, 2, 7, 33, 0.3)]        # K = 3, a short last chunk
    for x, w in layers:
        report, y = run_layer(cfg, x, w, sim="verilator", build_root=cache / "builds")
        _check(cfg, x, w, y, report)


@pytest.mark.parametrize("cfg_name", ["3x5fp16", "4x4bf16"])
def test_corner_layer_on_icarus(request, cache, cfg_name):
    if not icarus_available():
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    cfg = CONFIGS[cfg_name]
    x, w = corner_layer(np.random.default_rng(seed_for(request)), cfg.dtype, b=4, i=10, j=36)
    report, y = run_layer(cfg, x, w, sim="icarus", build_root=cache / "builds")
    _check(cfg, x, w, y, report)


# 4x4fp16 with --run-slow (fp16 through `wafertile run` on Verilator: test_onnx_mlp_in_fp16)
@pytest.mark.parametrize("cfg_name", [pytest.param("4x4fp16", marks=pytest.mark.slow),
                                      "3x5bf16"])
def test_cli_run_json(request, cache, monkeypatch, tmp_path, capsys, cfg_name):
    """``wafertile run --dtype ... --weights W.npy --activations X.npy --out Y.npy --json``:
    float16 arrays for fp16 (Verilator), float32 arrays of BF16 numbers for bf16 (Icarus);
    Y float32."""
    cfg = CONFIGS[cfg_name]
    monkeypatch.setenv("WAFERTILE_CACHE", str(cache))
    x, w = corner_layer(np.random.default_rng(seed_for(request)), cfg.dtype, b=3, i=8, j=30)
    kind = np.float16 if cfg.dtype == "fp16" else np.float32
    np.save(tmp_path / "W.npy", w.astype(kind))
    np.save(tmp_path / "X.npy", x.astype(kind))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in cfg.as_dict().items()
             if k in ("rows", "cols", "dtype", "act_depth", "acc_depth")]
    code = main(["run", *flags, "--sim", _sim(cfg_name), "--weights", str(tmp_path / "W.npy"),
                 "--activations", str(tmp_path / "X.npy"), "--out", str(tmp_path / "Y.npy"),
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["pass"] is True and report["dtype"] == cfg.dtype
    y = np.load(tmp_path / "Y.npy")
    assert y.dtype == np.float32 and same(y, documented(x, w, cfg.act_depth)).all()


# both with --run-slow (36 s for 4x4fp16 on Verilator, 24 s for 3x5bf16 on Icarus): float
# networks reach the RTL in the default run through test_onnx_mlp_in_fp16 (fp16, Verilator, a
# layer split over two tiles) and test_gelu_network_on_the_rtl (bf16, Icarus, a split layer,
# ReLU and GELU)
@pytest.mark.parametrize("cfg_name", [pytest.param("4x4fp16", marks=pytest.mark.slow),
                                      pytest.param("3x5bf16", marks=pytest.mark.slow)])
def test_network_on_the_rtl(request, cache, tmp_path, cfg_name):
    """A float network no one has seen (one layer split over K = 2 tiles, ReLU on one hidden
    layer, biases of both signs and a -0 bias) through its .npz file, on the RTL."""
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(seed_for(request))
    sizes = [24, 18, 11, 6]
    layers = []
    for n in range(3):
        w = numbers(rng, (sizes[n + 1], sizes[n]), cfg.dtype, zeros=0.6, spread=3)
        bias = rng.normal(0, 4, sizes[n + 1]).astype(np.float32)
        bias[0] = -0.0
        layers.append((w, bias, n == 0))
    net = Network([Layer(w, b, None, None, relu) for w, b, relu in layers], 16,
                  name="unseen", dtype=cfg.dtype)
    save_network(net, tmp_path / "net.npz")
    x = numbers(rng, (5, sizes[0]), cfg.dtype, zeros=0.2, spread=3)
    report, y = run_network(cfg, load_network(tmp_path / "net.npz"), x, sim=_sim(cfg_name),
                            build_root=cache / "builds")
    want = documented_network(layers, x, cfg.act_depth, cfg.dtype)
    assert same(y, want).all() and report.passed and report.dtype == cfg.dtype


# with --run-slow (11 s on Icarus, 2026-12-07): the default run keeps GELU layers on the RTL
# in tests/test_gpt_block.py (Icarus, the block's MLP) and tests/test_train_command.py
# (Verilator, a GELU network trained and run)
@pytest.mark.slow
def test_gelu_network_on_the_rtl(request, cache, tmp_path):
    """A bf16 network with a GELU hidden layer (NONLINEAR before each FINISH, on tiles with
    ``nonlinear = true``) and a ReLU one, through its .npz file, on Icarus: every output bit
    exact against the documented arithmetic, and the performance model's event level
    (``detail = "mesh"``) gives the RTL's cycles for every phase, the hand-offs whose cores
    wait for the unit included."""
    from wafertile.model.layer import predict_network
    from wafertile.network.compiler import compile_network
    from wafertile.run import simulate

    cfg = Config(rows=2, cols=3, dtype="bf16", act_depth=16, acc_depth=16, nonlinear=True)
    rng = np.random.default_rng(seed_for(request))
    sizes = [20, 9, 6, 4]
    layers = []
    for n, act in enumerate(("gelu", True, False)):
        w = numbers(rng, (sizes[n + 1], sizes[n]), cfg.dtype, zeros=0.5, spread=2)
        layers.append((w, rng.normal(0, 2, sizes[n + 1]).astype(np.float32), act))
    net = Network([Layer(w, b, None, None, act is True, act == "gelu") for w, b, act in layers],
                  16, name="gelu", dtype=cfg.dtype)
    save_network(net, tmp_path / "net.npz")
    net = load_network(tmp_path / "net.npz")
    assert [layer.gelu for layer in net.layers] == [True, False, False]
    x = numbers(rng, (3, sizes[0]), cfg.dtype, zeros=0.2, spread=2)
    program = compile_network(cfg, net, x)
    run = simulate(cfg, [program], sim=_sim("3x5bf16"), build_root=cache / "builds")
    (y, stats), = run.results
    y = np.asarray(y, np.int64).astype(np.uint32).view(np.float32)
    want = documented_network(layers, x, cfg.act_depth, cfg.dtype)
    assert same(y, want).all() and run.error_flags == 0, rng
    predicted = predict_network(cfg, net, x, dense=False, detail="mesh").sparse
    assert predicted.phase_cycles == [int(c) for c in stats["phase_cycles"]]
    # the GELU layer's hand-offs wait for the unit: 187 cycles per output at least
    handoffs = [c for p, c in zip(program.phases, predicted.phase_cycles, strict=True)
                if p.kind == "handoff" and (p.flits["payload.op"] == 12).any()]
    assert handoffs and min(handoffs) > 187


def test_gelu_needs_the_unit_and_a_float_layer(tmp_path):
    """GELU layers: refused without the nonlinear unit (one line naming the layer), next to
    ReLU, on the last layer and in an integer network."""
    from wafertile.network import NetworkError
    from wafertile.network.compiler import check_network

    w = np.ones((2, 3), np.float32)
    net = Network([Layer(w, np.zeros(2, np.float32), gelu=True),
                   Layer(np.ones((1, 2), np.float32), np.zeros(1, np.float32))], 16,
                  dtype="bf16")
    x = np.ones((1, 3), np.float32)
    cfg = Config(rows=2, cols=2, dtype="bf16", act_depth=16, acc_depth=16)
    with pytest.raises(NetworkError, match=r"^layer 0 has GELU \(gelu0 = 1\): it needs the "
                                           r"tiles' nonlinear unit, nonlinear = true"):
        check_network(cfg, net, x)
    check_network(cfg.replace(nonlinear=True), net, x)
    bad = [(Network([Layer(w, np.zeros(2, np.float32), relu=True, gelu=True),
                     net.layers[1]], 16, dtype="bf16"), "relu0 and gelu0 are both set"),
           (Network([net.layers[0], Layer(np.ones((1, 2), np.float32), np.zeros(1, np.float32),
                                          gelu=True)], 16, dtype="bf16"),
            "gelu1 has no meaning on the last layer"),
           (Network([Layer(np.ones((2, 3), np.int64), np.zeros(2, np.int64), np.ones(2, np.int64),
                           np.zeros(2, np.int64), gelu=True),
                     Layer(np.ones((1, 2), np.int64), np.zeros(1, np.int64))], 16),
            "gelu0 needs a float dtype")]
    for network, message in bad:
        with pytest.raises(NetworkError, match=re.escape(message)):
            network.check()
    # an integer network's file has no gelu key; a float one's is 0 or 1
    save_network(net, tmp_path / "f.npz")
    data = dict(np.load(tmp_path / "f.npz"))
    np.savez(tmp_path / "g.npz", **{**data, "gelu0": 2})
    with pytest.raises(NetworkError, match=r"gelu0 must be 0 or 1"):
        load_network(tmp_path / "g.npz")


def _gelu_onnx(path, rng, approximate="tanh", last=False):
    """An ONNX MLP 8 -> 6 -> 3 whose hidden layer ends in Gelu (opset 20), made with
    onnx.helper as a user's script would."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w0 = rng.normal(0, 0.5, (8, 6)).astype(np.float32)
    w1 = rng.normal(0, 0.5, (6, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["m0"], name="matmul0"),
             helper.make_node("Gelu", ["m0"], ["g0"], name="gelu0",
                              **({"approximate": approximate} if approximate else {})),
             helper.make_node("MatMul", ["g0", "W1"], ["y"], name="matmul1")]
    out = "y"
    if last:
        nodes.append(helper.make_node("Gelu", ["y"], ["z"], name="gelu1", approximate="tanh"))
        out = "z"
    graph = helper.make_graph(
        nodes, "gelu_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(w0, "W0"), numpy_helper.from_array(w1, "W1")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    return w0, w1


def test_onnx_gelu_import(request, tmp_path):
    """An ONNX Gelu (approximate = "tanh") becomes a GELU layer of a float network; the erf
    form, a Gelu at the end and an integer import are refused, naming the node or layer."""
    from wafertile.network import NetworkError
    from wafertile.network.compiler import check_network
    from wafertile.network.onnx import import_onnx, import_onnx_float
    from wafertile.network.quantize import float_forward

    rng = np.random.default_rng(seed_for(request))
    w0, w1 = _gelu_onnx(tmp_path / "g.onnx", rng)
    net = import_onnx_float(tmp_path / "g.onnx", "bf16")
    assert [layer.gelu for layer in net.layers] == [True, False]
    assert [layer.relu for layer in net.layers] == [False, False]
    check_network(Config(rows=2, cols=2, dtype="bf16", act_depth=16, acc_depth=16,
                         nonlinear=True), net, np.zeros((1, 8), np.float32))
    # the float model the importer keeps: GELU's tanh form, computed here from the formula
    from wafertile.network.onnx import float_layers
    x = rng.normal(0, 1, (4, 8))
    h = x @ w0
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    np.testing.assert_allclose(float_forward(float_layers(tmp_path / "g.onnx"), x)[-1],
                               h @ w1, rtol=1e-6)
    _gelu_onnx(tmp_path / "erf.onnx", rng, approximate=None)
    with pytest.raises(NetworkError, match=r"node 'gelu0' \(Gelu\) has approximate = 'none' "
                                           r"\(the erf form\)"):
        import_onnx_float(tmp_path / "erf.onnx", "bf16")
    _gelu_onnx(tmp_path / "last.onnx", rng, last=True)
    with pytest.raises(NetworkError, match="the last layer must not end in Gelu"):
        import_onnx_float(tmp_path / "last.onnx", "bf16")
    with pytest.raises(NetworkError, match=r"^layer 0 ends in Gelu: GELU runs on float tiles"):
        import_onnx(tmp_path / "g.onnx", np.zeros((2, 8)))


# with --run-slow (51 s, a Verilator build of its own): the default run imports float ONNX
# files (test_onnx_gelu_import and the refusals) and runs float networks on the RTL
# (test_gelu_network_on_the_rtl, test_cli_run_json)
@pytest.mark.slow
def test_onnx_mlp_in_fp16(request, cache, monkeypatch, tmp_path, capsys):
    """A float ONNX MLP made outside the project runs in FP16 (``--dtype fp16``: weights
    rounded to FP16, no calibration), pruned, a layer split over K = 2 tiles, on Verilator."""
    from wafertile.network.onnx import import_onnx_float

    from .test_network import _onnx_mlp

    rng = np.random.default_rng(seed_for(request))
    _onnx_mlp(tmp_path / "mlp.onnx", rng, [12, 20, 16, 5])
    x = rng.random((6, 12)).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setenv("WAFERTILE_CACHE", str(cache))
    code = main(["run", "--network", str(tmp_path / "mlp.onnx"), "--dtype", "fp16", "--prune",
                 "0.5", "--inputs", str(tmp_path / "x.npy"), "--rows", "4", "--cols", "4",
                 "--act-depth", "16", "--acc-depth", "16", "--out", str(tmp_path / "y.npy"),
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["pass"] is True and report["dtype"] == "fp16"
    net = import_onnx_float(tmp_path / "mlp.onnx", "fp16", prune_to=0.5)
    want = documented_network([(np.asarray(layer.weights), layer.bias, layer.relu)
                               for layer in net.layers], x, 16, "fp16")
    assert same(np.load(tmp_path / "y.npy"), want).all()


def test_reduction_is_one_phase_per_block():
    """The compiler's order of partial sums: one fenced reduce phase per block k = 1, 2, ...,
    each with only block k's SENDs (integer layers keep one phase for all blocks)."""
    cfg = CONFIGS["3x5bf16"]
    rng = np.random.default_rng(0)
    x, w = random_layer(rng, cfg.dtype, 2, 4, 45, 1.0)            # K = 3, G = 1
    phases = [p for p in compile_layer(cfg, x, w).phases if p.kind == "reduce"]
    assert len(phases) == 2
    for k, phase in enumerate(phases, start=1):
        sends = phase.flits["payload.op"] == 6
        assert set(phase.flits["header.x0"][sends].tolist()) == {k}
    icfg = Config(rows=3, cols=5, data_width=8, acc_width=16, act_depth=16, acc_depth=16)
    ix = rng.integers(-5, 5, (2, 45))
    iw = rng.integers(-5, 5, (4, 45))
    assert sum(p.kind == "reduce" for p in compile_layer(icfg, ix, iw).phases) == 1


def test_compiler_streams_rarely_hit_the_bubble():
    """On the compiler's streams a tile almost never gets two flits in a row for the same
    accumulator (an upper bound: consecutive MACs of one port for one column and slot)."""
    cfg = Config(rows=4, cols=4, dtype="fp16")
    rng = np.random.default_rng(1)
    x, w = random_layer(rng, "fp16", 4, 256, 256, 1.0)
    program = compile_layer(cfg, x, w)
    pairs, flits = port_hazards(program)
    assert pairs == 0 and flits == 256 * 256


@pytest.mark.parametrize(("argv", "message"), [
    (["--dtype", "fp16", "--overflow", "saturate"],
     "overflow = 'saturate' has no meaning with dtype 'fp16' (floating-point sums round to "
     "nearest and overflow to infinity): leave overflow = 'wrap', the default"),
    (["--dtype", "bf16", "--data-width", "8"],
     "data_width must be 16 with dtype 'bf16' (the number format sets the width of weights "
     "and activations), not 8"),
    (["--dtype", "fp16", "--acc-width", "24"],
     "acc_width must be 32 with dtype 'fp16' (floating-point formats accumulate in FP32), "
     "not 24"),
])
def test_cli_refuses_format_conflicts(capsys, argv, message):
    assert main(["run", *argv]) == 2
    assert capsys.readouterr().err == f"wafertile: error: {message}\n"


@pytest.mark.parametrize(("dtype", "x", "w", "message"), [
    ("fp16", np.ones((2, 3), np.float32), np.full((2, 3), 0.1, np.float32),
     "weights[0, 0] = 0.10000000149011612, which FP16 cannot represent exactly (nearest: "
     "0.0999755859375); dtype 'fp16' takes a float16 array or float32 values that are FP16 "
     "numbers"),
    ("bf16", np.array([[1.0, 1.0 + 2.0 ** -10]], np.float32), np.ones((1, 2), np.float32),
     "activations[0, 1] = 1.0009765625, which BF16 cannot represent exactly (nearest: 1.0); "
     "dtype 'bf16' takes float32 values that are BF16 numbers (numpy has no bfloat16; or an "
     "ml_dtypes.bfloat16 array)"),
    ("fp16", np.ones((2, 3), np.float64), np.ones((2, 3), np.float16),
     "activations must be a float16 array or float32 values that are FP16 numbers (dtype "
     "'fp16'), not a float64 array"),
    ("bf16", np.ones((2, 3), np.float32), np.ones((2, 3), np.int16),
     "weights must be float32 values that are BF16 numbers (numpy has no bfloat16; or an "
     "ml_dtypes.bfloat16 array) (dtype 'bf16'), not a int16 array"),
    ("fp16", np.array([[70000.0]], np.float32), np.ones((1, 1), np.float16),
     "activations[0, 0] = 70000.0, which FP16 cannot represent exactly (nearest: inf); "
     "dtype 'fp16' takes a float16 array or float32 values that are FP16 numbers"),
])
def test_cli_refuses_inputs_that_are_not_numbers_of_the_format(tmp_path, capsys, dtype, x, w,
                                                               message):
    """One line before any build, naming the first value that is not a number of the format
    (infinities and NaNs are numbers of both formats)."""
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "W.npy", w)
    assert main(["run", "--dtype", dtype, "--weights", str(tmp_path / "W.npy"),
                 "--activations", str(tmp_path / "X.npy")]) == 2
    assert capsys.readouterr().err == f"wafertile: error: {message}\n"
    with pytest.raises(LayerError):
        compile_layer(Config(dtype=dtype), x, w)


def test_specials_are_numbers_of_both_formats():
    for dtype in ("fp16", "bf16"):
        x = np.array([[np.inf, -np.inf, np.nan, -0.0]], np.float32)
        program = compile_layer(Config(dtype=dtype), x, np.ones((1, 4), np.float32))
        assert program.nnz == 4


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_float_tile_lints_clean(capsys, dtype):
    assert main(["lint", "--block", "tile", "--dtype", dtype]) == 0
    assert "is clean" in capsys.readouterr().out


def test_sends_picks_across_tiles_on_the_rtl(request, cache):
    """SEND's outputs other than ADD, between the tiles of each row on the RTL array (bf16,
    ``nonlinear = true``, Icarus): every tile's value reaches tile 0 of its row as a MAX into
    one accumulator (the row's maximum, in one phase: a maximum does not depend on the order),
    as a MUL into another (the row's product in the order of the tiles, one fenced phase per
    tile, as a float reduction), and as a WRITE_ACC into an accumulator of its own (a copy).
    Against values computed here with numpy float32, bit for bit; and the performance model's
    event level gives the RTL's cycles for every phase (the MULs and MAXes hold tile 0's core
    for the unit)."""
    from wafertile.hdl.flit import Opcode, Port
    from wafertile.model import predict_program
    from wafertile.run import simulate
    from wafertile.stream.plan import reply_route, route_to
    from wafertile.stream.program import LayerProgram, PhaseBuilder

    cfg = Config(rows=2, cols=3, dtype="bf16", act_depth=16, acc_depth=16, nonlinear=True)
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(seed_for(request))
    x = rng.normal(0, 3, (R, C)).astype(np.float32)
    x[1, 2] = -np.inf                          # a masked position: MAX leaves the others
    words = x.view(np.int32).astype(np.int64)  # FP32 words as the signed data field
    at = cfg.route_width
    pick = {"MUL": 1, "MAX": 2, "WRITE_ACC": 3}
    to_host = reply_route(cfg, R)
    phases = []
    # load: acc[0] = acc[1] = x at every tile; acc[2] = x at tile 0 (the product's start)
    load = PhaseBuilder()
    for y in range(R):
        for c in range(C):
            for a in (0, 1, 2) if c == 0 else (0, 1):
                load.add(y, 1, x0=c, x1=c, y0=y, y1=y, op=Opcode.WRITE_ACC.value, addr=a,
                         data=words[y, c])
        load.add(y, 1, x0=C - 1, x1=C - 1, y0=y, y1=y, op=Opcode.READ_ACC.value,
                 addr_b=C - 1, data=to_host[y])
    load.reply(np.arange(R), 0, C - 1)
    phases.append(load.phase("load"))

    def sends(tiles, addr, target, how):
        """Each tile of ``tiles`` SENDs acc[addr] to tile 0's acc[target(c)] as ``how``,
        then a fence READ whose reply follows it west (as the float reduction's)."""
        phase = PhaseBuilder()
        for y in range(R):
            for c in tiles:
                phase.add(y, 1, x0=c, x1=c, y0=y, y1=y, op=Opcode.SEND.value, addr=addr,
                          addr_b=target(c), data=route_to(cfg, 0, y, Port.LOCAL) |
                          pick[how] << at)
                phase.add(y, 1, x0=c, x1=c, y0=y, y1=y, op=Opcode.READ_ACC.value, addr_b=c,
                          data=to_host[y])
                phase.reply(y, 0, c)
        return phase.phase("reduce")

    phases.append(sends(range(1, C), 0, lambda c: 0, "MAX"))
    phases += [sends([c], 1, lambda c: 2, "MUL") for c in range(1, C)]
    phases.append(sends(range(1, C), 1, lambda c: 2 + c, "WRITE_ACC"))
    read = PhaseBuilder()
    slots = np.array([0, 2, *range(3, C + 2)])  # the maximum, the product, the copies
    for y in range(R):
        read.add(y, C + 1, x0=0, x1=0, y0=y, y1=y, op=Opcode.READ_ACC.value, addr=slots,
                 addr_b=0, data=to_host[y])
        read.reply(y, slots, 0, y, np.arange(C + 1))
    phases.append(read.phase("read"))
    program = LayerProgram(cfg, (R, C + 1, C), phases, 0, 0)

    run = simulate(cfg, [program], sim=_sim("3x5bf16"), build_root=cache / "builds")
    (y, stats), = run.results
    got = np.asarray(y, np.int64).astype(np.uint32).view(np.float32)
    want = np.zeros((R, C + 1), np.float32)
    for r in range(R):
        want[r, 0] = x[r].max()
        prod = x[r, 0]
        for c in range(1, C):
            prod = np.float32(prod * x[r, c])
        want[r, 1] = prod
        want[r, 2:] = x[r, 1:]
    assert same(got, want).all() and run.error_flags == 0, (got, want)
    predicted = predict_program(cfg, program, detail="mesh")
    assert predicted.phase_cycles == [int(c) for c in stats["phase_cycles"]]
    # a model that took every SEND's output for an ADD (no wait for the unit) is off
    from wafertile.model import mesh

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mesh, "_emitted_ops", lambda config, op, data: mesh._output_ops(config)[op])
        assert predict_program(cfg, program, detail="mesh").phase_cycles != \
            predicted.phase_cycles
