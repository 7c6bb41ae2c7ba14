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
    """The network's outputs: each layer from its FP32 bias, ReLU and the rounding between."""
    a = np.asarray(x, np.float32)
    for n, (w, bias, relu) in enumerate(layers):
        acc = documented(a, w, act_depth, bias)
        if n == len(layers) - 1:
            return acc
        if relu:
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


@pytest.mark.parametrize("cfg_name", ["4x4fp16", "3x5bf16"])
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
