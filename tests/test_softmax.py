"""The softmax on the fabric (docs/nonlinear.md, "Softmax on the fabric"): a float network's
outputs turned into probabilities by the tiles themselves, along each input's row.

- the reference (:func:`wafertile.sim.models.rows.softmax`) against a scalar implementation
  written here from the document, on rows with special values;
- a bf16 network with ``softmax = 1`` through its .npz file on the RTL (Icarus): every
  output bit exact, and the performance model's event level against the RTL's cycles;
- what is refused, with one line each.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from wafertile import Config
from wafertile.hdl.flit import Opcode
from wafertile.network import Layer, Network, NetworkError, load_network, save_network
from wafertile.sim.models import nonlinear as nl

from .conftest import seed_for
from .test_float import _sim, documented_network, numbers, same, to_format


def _word(v) -> int:
    return int(np.asarray(v, np.float32).view(np.uint32))


def _value(w) -> np.float32:
    return np.array([w], np.uint32).view(np.float32)[0]


def documented_softmax(x: np.ndarray, parts: list, dtype: str) -> np.ndarray:
    """One row ``x`` (float32), element by element as the document writes it: the tiles'
    maxima in slot order (MAX: NaN if either is NaN, else the later one if greater), the
    tiles in column order; ``c`` the maximum rounded to the format; ``x - c`` by a MAC with
    weight -1 (nothing if ``c`` is a zero); exp; the tiles' sums in slot order, then added in
    column order; ``r`` the reciprocal rounded to the format; each element times ``r`` (+0 if
    ``r`` is a zero)."""
    def mx(a, d):
        return np.float32("nan") if np.isnan(a) or np.isnan(d) else (d if d > a else a)

    tiles = [list(p) for p in parts if len(p)]
    with np.errstate(all="ignore"):
        maxima = []
        for part in tiles:
            m = x[part[0]]
            for i in part[1:]:
                m = mx(m, x[i])
            maxima.append(m)
        m = maxima[0]
        for v in maxima[1:]:
            m = mx(m, v)
        c = to_format(np.float32(m), dtype)
        e = np.empty(len(x), np.float32)
        for i, v in enumerate(x):
            d = v if c == 0 else np.float32(v + np.float32(-1.0) * c)
            e[i] = _value(nl.exp(np.array([_word(d)], np.uint32))[0])
        sums = []
        for part in tiles:
            s = e[part[0]]
            for i in part[1:]:
                s = np.float32(s + e[i])
            sums.append(s)
        total = sums[0]
        for v in sums[1:]:
            total = np.float32(total + v)
        r = to_format(_value(nl.reciprocal(np.array([_word(total)], np.uint32))[0]), dtype)
        r = np.float32(0.0) if r == 0 else np.float32(r)
        return np.array([np.float32(v * r) for v in e], np.float32)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reference_follows_the_document(request, dtype):
    """The vectorized reference equals the scalar one written from the document, on random
    rows and rows with a NaN, an infinity of each sign, zeros of both signs, subnormals,
    huge and tiny values, split over tiles as a plan splits them."""
    from wafertile.sim.models.rows import softmax

    rng = np.random.default_rng(seed_for(request))
    parts = [np.array([3, 0, 6]), np.array([1, 4]), np.array([2, 5]), np.array([], np.int64)]
    rows = [rng.normal(0, s, 7) for s in (0.1, 1, 4, 30)]
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -3e38, 3e38, 80.0, -120.0]
    for _ in range(40):
        row = rng.normal(0, rng.choice([1, 10]), 7)
        row[rng.random(7) < 0.3] = rng.choice(special)
        rows.append(row)
    rows.append(np.full(7, -np.inf))  # every element masked: NaN
    x = np.array(rows, np.float32)
    got = softmax(x.view(np.uint32), parts, dtype).view(np.float32)
    for b, row in enumerate(x):
        want = documented_softmax(row, parts, dtype)
        assert same(got[b], want).all(), (seed_for(request), row, got[b], want)
    finite = np.isfinite(x).all(axis=1) & (np.abs(x).max(axis=1) < 1e4)
    assert np.allclose(got[finite].sum(axis=1), 1.0, atol=4e-3)


def _network(rng, dtype: str):
    sizes = [12, 9, 7]
    layers = [(numbers(rng, (sizes[1], sizes[0]), dtype, zeros=0.4, spread=2),
               rng.normal(0, 1, sizes[1]).astype(np.float32), True),
              (numbers(rng, (sizes[2], sizes[1]), dtype, zeros=0.4, spread=2),
               rng.normal(0, 1, sizes[2]).astype(np.float32), False)]
    net = Network([Layer(w, b, None, None, relu) for w, b, relu in layers], 16, name="softmax",
                  dtype=dtype, softmax=True)
    return net, layers, numbers(rng, (3, sizes[0]), dtype, zeros=0.2, spread=2)


def _without_carry(predict_phase):
    """``predict_phase`` that neither takes nor gives the cores' unfinished work."""
    def run(*args, carry=None, gap=0, carried=None, **kwargs):
        return predict_phase(*args, **kwargs)
    return run


def _play(cfg: Config, net: Network, layers, x, build_root):
    """Compile ``net`` on ``x``, play it on Icarus: the program, the run, its stats, the
    outputs (float32) and the document's softmax of the document's logits."""
    from wafertile.network.compiler import compile_network
    from wafertile.run import simulate
    from wafertile.stream import plan_layer

    program = compile_network(cfg, net, x)
    run = simulate(cfg, [program], sim=_sim("3x5bf16"), build_root=build_root)
    (y, stats), = run.results
    y = np.asarray(y, np.int64).astype(np.uint32).view(np.float32)
    logits = documented_network(layers, x, cfg.act_depth, cfg.dtype)
    parts = plan_layer(cfg, net.layers[-1].weights, streams=False).parts(0)
    want = np.array([documented_softmax(row, parts, cfg.dtype) for row in logits])
    return program, run, stats, y, want


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory):
    """The bf16 network with ``softmax = 1`` on a 2 x 3 array (Icarus), through its file (the
    seed: $WAFERTILE_SEED, else fixed; the assertions print it)."""

    cfg = Config(rows=2, cols=3, dtype="bf16", act_depth=16, acc_depth=16, nonlinear=True)
    seed = int(os.environ.get("WAFERTILE_SEED") or zlib.crc32(b"test_softmax.py::softmax_run"))
    rng = np.random.default_rng(seed)
    cache = tmp_path_factory.mktemp("softmax-cache")
    net, layers, x = _network(rng, cfg.dtype)
    path = tmp_path_factory.mktemp("softmax") / "net.npz"
    save_network(net, path)
    net = load_network(path)
    assert net.softmax
    program, run, stats, y, want = _play(cfg, net, layers, x, cache / "builds")
    return cfg, net, x, program, run, stats, y, want, seed, cache / "builds"


def test_softmax_network_on_the_rtl(softmax_run):
    """Every probability bit exact against the document's arithmetic (and the reference),
    the network's sum of each row near 1 (the reciprocal crosses the row as a bf16 number),
    and the event level of the performance model gives the RTL's cycles for every phase of
    the layers and, as a lower bound, for the softmax's (see the next test)."""
    from wafertile.model.layer import predict_network
    from wafertile.sim.models.network import network_reference

    cfg, net, x, _, run, stats, y, want, seed, _ = softmax_run
    assert run.error_flags == 0
    assert same(y, want).all(), (seed, y, want)
    assert same(y, network_reference(cfg, net, x)[0]).all()
    assert np.allclose(y.sum(axis=1), 1.0, atol=4e-3)
    rtl = [int(c) for c in stats["phase_cycles"]]
    predicted = predict_network(cfg, net, x, dense=False, detail="mesh").sparse.phase_cycles
    assert predicted == rtl
    # the phases start on the work the last ones left in the cores (a SEND's MAX or MUL in
    # its unit): a model that plays every phase from idle cores is off
    from wafertile.model import predict

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict, "predict_phase", _without_carry(predict.predict_phase))
        idle = predict_network(cfg, net, x, dense=False, detail="mesh").sparse.phase_cycles
    assert idle != rtl


def test_softmax_across_five_tiles_on_the_array_model(request):
    """On 5 columns the tiles' sums reach tile 0 as copies that tile 0 adds in tile order
    (docs/nonlinear.md): every probability bit equals the document's arithmetic on the
    functional array model, in two interleavings (the copies race, the sum does not)."""
    from wafertile.network.compiler import compile_network
    from wafertile.sim.models.array import ArrayModel
    from wafertile.stream import plan_layer

    cfg = Config(rows=2, cols=5, dtype="bf16", act_depth=16, acc_depth=16, nonlinear=True)
    seed = seed_for(request)
    net, layers, x = _network(np.random.default_rng(seed), cfg.dtype)
    program = compile_network(cfg, net, x)
    assert any((p.flits["payload.op"] == Opcode.SEND.value).any()
               and ((p.flits["payload.data"] >> cfg.route_width) & 3 == 3).any()
               and (p.flits["header.x0"] > 0).all() for p in program.phases)
    logits = documented_network(layers, x, cfg.act_depth, cfg.dtype)
    parts = plan_layer(cfg, net.layers[-1].weights, streams=False).parts(0)
    assert len(parts) == 5
    want = np.array([documented_softmax(row, parts, cfg.dtype) for row in logits])
    for s in (seed, seed + 1):
        got = ArrayModel(cfg).run(program, seed=s) & 0xFFFFFFFF
        assert same(got.astype(np.uint32).view(np.float32), want).all(), f"seed {seed}, {s}"


@pytest.mark.parametrize("cols", [3, 5, 9])
def test_row_sums_add_in_tile_order(request, cols):
    """``sum_at_tile0`` (the softmax's and LayerNorm's sums across a row: a chain on 3
    columns, copies that tile 0 adds in order on 5 and 9) gives ``fp32(...fp32(z_0 + z_1)
    ... + z_last)`` bit for bit on the array model, in two interleavings, on values whose
    sum depends on the order (1, -1, 2^-24, 2^-24, 2^-24, ...); the sum of the reversed
    order differs (the check can fail)."""
    from wafertile.sim.models.array import ArrayModel
    from wafertile.stream import LayerProgram, PhaseBuilder
    from wafertile.stream.plan import reply_route
    from wafertile.stream.rows import sum_at_tile0

    cfg = Config(rows=2, cols=cols, dtype="bf16", act_depth=16, acc_depth=16, nonlinear=True)
    z = 2
    rng = np.random.default_rng(seed_for(request))
    pattern = np.array([1.0, -1.0, 2.0 ** -24, 2.0 ** -24, 2.0 ** -24], np.float32)
    values = np.stack([np.resize(pattern, cols),
                       rng.normal(0, 1, cols) * 2.0 ** rng.integers(-30, 30, cols)]
                      ).astype(np.float32)
    words = values.view(np.uint32).astype(np.int64)
    words = np.where(words >= 1 << 31, words - (1 << 32), words)
    load, read = PhaseBuilder(), PhaseBuilder()
    to_host = reply_route(cfg, 2)
    for y in range(2):
        load.add(y, cols, x0=np.arange(cols), x1=np.arange(cols), y0=y, y1=y,
                 op=Opcode.WRITE_ACC.value, addr=z, data=words[y])
        load.add(y, 1, x0=0, x1=0, y0=y, y1=y, op=Opcode.READ_ACC.value, data=to_host[y])
        load.reply(y, 0, 0)
        read.add(y, 1, x0=0, x1=0, y0=y, y1=y, op=Opcode.READ_ACC.value, addr=z, addr_b=0,
                 data=to_host[y])
        read.reply(y, z, 0, y, 0)
    phases = sum_at_tile0(cfg, 2, z, list(range(1, cols)))
    assert len(phases) == (cols - 1 if cols == 3 else 1 + -(-(cols - 1) // 3))
    program = LayerProgram(cfg, (2, 1, 0), [load.phase("load"), *phases, read.phase("read")],
                           0, 0)

    def chain(row):
        acc = row[0]
        for v in row[1:]:
            acc = np.float32(acc + v)
        return acc

    want = np.array([[chain(row)] for row in values], np.float32)
    for s in (1, 2):
        got = (ArrayModel(cfg).run(program, seed=s) & 0xFFFFFFFF).astype(np.uint32)
        assert same(got.view(np.float32), want).all(), (cols, got.view(np.float32), want)
    reverse = np.float32(chain(np.concatenate([values[0, :1], values[0, :0:-1]])))
    assert not same(np.array([reverse]), want[0]).all()


# with --run-slow (an Icarus build of its own, about a minute): the default run plays the
# softmax on bf16 tiles (above); fp16's arithmetic is in test_reference_follows_the_document
@pytest.mark.slow
def test_softmax_network_fp16_on_the_rtl(tmp_path):
    """The same network on fp16 tiles (a 3 x 2 array: four outputs on each tile but the last),
    bit exact against the document's arithmetic, the event level exact on every phase."""
    from wafertile.model.layer import predict_network

    cfg = Config(rows=3, cols=2, dtype="fp16", act_depth=16, acc_depth=16, nonlinear=True)
    seed = int(os.environ.get("WAFERTILE_SEED") or zlib.crc32(b"test_softmax.py::fp16"))
    net, layers, x = _network(np.random.default_rng(seed), cfg.dtype)
    x = np.concatenate([x, x[:1] * 2])  # 4 inputs: a second batch group of one
    _, run, stats, y, want = _play(cfg, net, layers, x, tmp_path / "builds")
    assert run.error_flags == 0 and same(y, want).all(), (seed, y, want)
    predicted = predict_network(cfg, net, x, dense=False, detail="mesh").sparse.phase_cycles
    assert predicted == [int(c) for c in stats["phase_cycles"]]


def test_run_network_reports_the_softmax(softmax_run):
    """``run_network`` (``wafertile run --network``): passes, and the last layer's
    ``softmax_cycles`` are the RTL's cycles of the softmax's phases, kept out of its other
    columns."""
    from wafertile.network.run import run_network

    cfg, net, x, program, _, stats, _, _, _, builds = softmax_run
    report, y = run_network(cfg, net, x, sim=_sim("3x5bf16"), dense=False, build_root=builds)
    assert report.passed and same(y, softmax_run[6]).all()
    rtl = [int(c) for c in stats["phase_cycles"]]
    last = report.per_layer[-1]
    want = sum(c for c, step in zip(rtl, program.phase_step, strict=True) if step == "softmax")
    assert last["softmax_cycles"] == want > 0
    layer = sum(c for c, n, step in zip(rtl, program.phase_layer, program.phase_step,
                                        strict=True) if n == len(net.layers) - 1
                and step == "layer")
    assert last["stream_cycles"] + last["handoff_cycles"] + last["other_cycles"] == layer
    assert report.per_layer[0]["softmax_cycles"] == 0
    assert ", softmax " in report.text(cfg)


@pytest.mark.parametrize("change, message", [
    ({"dtype": "int16"}, "softmax needs a float dtype ('fp16' or 'bf16'"),
    ({"nonlinear": False}, "the softmax of layer 1's outputs needs float tiles with the "
                           "nonlinear unit (dtype fp16 or bf16, nonlinear = true), not dtype "
                           "'bf16' with nonlinear = false"),
    ({"router_arch": "lite"}, "needs a router whose local input holds at least 2 flits per VC"),
    ({"outputs": 48}, "the softmax of layer 1's outputs fills all 16 accumulators of a tile "
                      "and the softmax needs one more per tile (raise acc_depth"),
    ({"outputs": 49}, "the softmax of layer 1's outputs has 49 outputs: they need 2 passes "
                      "over 3 columns of 16 accumulators, and a softmax needs them all at "
                      "once"),
])
def test_softmax_refused(change, message):
    """A softmax that cannot run is refused before anything is built, one line naming why."""
    from wafertile.network.compiler import check_network

    rng = np.random.default_rng(1)
    net, _, x = _network(rng, "bf16")
    options = {"rows": 2, "cols": 3, "dtype": "bf16", "act_depth": 16, "acc_depth": 16,
               "nonlinear": True}
    if change.get("dtype") == "int16":
        net = Network([Layer(np.ones((2, 3), np.int64), np.zeros(2, np.int64))], 16,
                      softmax=True)
        with pytest.raises(NetworkError, match=message.replace("(", r"\(")):
            net.check()
        return
    if "outputs" in change:  # 16 accumulators a tile, 3 tiles
        w = np.ones((change.pop("outputs"), 9), np.float32)
        net = Network([net.layers[0], Layer(w, np.zeros(len(w), np.float32))], 16,
                      dtype="bf16", softmax=True)
    options.update(change)
    with pytest.raises(NetworkError) as info:
        check_network(Config(**options), net, x)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_softmax_key_in_the_file(tmp_path):
    """``softmax`` is a flag of a float network's file: written only when set, 0 or 1."""
    rng = np.random.default_rng(2)
    net, _, _ = _network(rng, "fp16")
    save_network(net, tmp_path / "a.npz")
    assert load_network(tmp_path / "a.npz").softmax
    net.softmax = False
    save_network(net, tmp_path / "b.npz")
    with np.load(tmp_path / "b.npz") as f:
        assert "softmax" not in f.files
    data = dict(np.load(tmp_path / "a.npz"))
    data["softmax"] = np.array(2)
    np.savez(tmp_path / "c.npz", **data)
    with pytest.raises(NetworkError, match="softmax must be 0 or 1, not 2"):
        load_network(tmp_path / "c.npz")


def _softmax_onnx(path, rng, *, axis=-1, after=False):
    """An ONNX classifier 8 -> 6 -> 4 ending in Softmax (opset 13), made with onnx.helper as
    a user's script would; ``after``: a Relu after the Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w0 = rng.normal(0, 0.5, (8, 6)).astype(np.float32)
    w1 = rng.normal(0, 0.5, (6, 4)).astype(np.float32)
    b1 = rng.normal(0, 0.5, 4).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["m0"], name="matmul0"),
             helper.make_node("Relu", ["m0"], ["r0"], name="relu0"),
             helper.make_node("MatMul", ["r0", "W1"], ["m1"], name="matmul1"),
             helper.make_node("Add", ["m1", "B1"], ["y"], name="add1"),
             helper.make_node("Softmax", ["y"], ["p"], name="softmax", axis=axis)]
    out = "p"
    if after:
        nodes.append(helper.make_node("Relu", ["p"], ["q"], name="relu2"))
        out = "q"
    graph = helper.make_graph(
        nodes, "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(w0, "W0"), numpy_helper.from_array(w1, "W1"),
         numpy_helper.from_array(b1, "B1")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_onnx_softmax_import(tmp_path):
    """An ONNX Softmax over the last axis at the end of the graph is the network's softmax;
    over another axis, followed by a node, or in an integer import it is refused, naming the
    node."""
    from wafertile.network.compiler import check_network
    from wafertile.network.onnx import import_onnx, import_onnx_float

    rng = np.random.default_rng(3)
    _softmax_onnx(tmp_path / "c.onnx", rng)
    net = import_onnx_float(tmp_path / "c.onnx", "fp16")
    assert net.softmax and [layer.relu for layer in net.layers] == [True, False]
    check_network(Config(rows=2, cols=2, dtype="fp16", act_depth=16, acc_depth=16,
                         nonlinear=True), net, np.zeros((1, 8), np.float16))
    _softmax_onnx(tmp_path / "axis.onnx", rng, axis=0)
    with pytest.raises(NetworkError, match=r"node 'softmax' \(Softmax\) must take the last "
                                           r"layer's outputs .* not axis 0"):
        import_onnx_float(tmp_path / "axis.onnx", "bf16")
    _softmax_onnx(tmp_path / "after.onnx", rng, after=True)
    with pytest.raises(NetworkError, match=r"node 'relu2' \(Relu\) follows the Softmax"):
        import_onnx_float(tmp_path / "after.onnx", "bf16")
    with pytest.raises(NetworkError, match=r"^the graph ends in Softmax: the softmax runs "
                                           r"on float tiles only"):
        import_onnx(tmp_path / "c.onnx", np.zeros((2, 8)))
