"""The weight-streaming compiler, checked on the functional array model against numpy."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wafertile import Config
from wafertile.hdl.flit import Opcode, Port, decode_route
from wafertile.sim.models import ArrayModel
from wafertile.stream import LayerError, compile_layer, reference

from .conftest import seed_for


def _layer(rng, cfg, b, i, j, density):
    x = rng.integers(cfg.data_min, cfg.data_max + 1, (b, j))
    x[rng.random((b, j)) < 0.1] = 0
    w = rng.integers(cfg.data_min, cfg.data_max + 1, (i, j))
    w[rng.random((i, j)) >= density] = 0
    return x, w


@pytest.mark.parametrize(("rows", "cols", "b", "i", "j", "density", "overflow"), [
    (4, 4, 4, 32, 32, 0.1, "wrap"),
    (3, 5, 7, 23, 17, 0.3, "wrap"),       # shapes that do not divide the array
    (2, 2, 2, 40, 16, 1.0, "saturate"),   # more outputs than one pass holds
    (1, 1, 3, 5, 9, 0.5, "saturate"),
    (4, 4, 4, 16, 16, 0.0, "wrap"),       # all-zero weights
])
def test_compiled_layer_matches_numpy(request, rows, cols, b, i, j, density, overflow):
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = Config(rows=rows, cols=cols, data_width=8, acc_width=16, overflow=overflow,
                 act_depth=32, acc_depth=16)
    x, w = _layer(rng, cfg, b, i, j, density)
    prog = compile_layer(cfg, x, w)
    assert prog.nnz == np.count_nonzero(w)
    assert prog.stream_flits == prog.nnz * -(-b // rows)  # one flit per nonzero per group
    got = ArrayModel(cfg).run(prog, seed=seed)
    np.testing.assert_array_equal(got, reference(cfg, x, w))
    dense = compile_layer(cfg, x, w, dense=True)
    assert dense.stream_flits == i * j * -(-b // rows)
    np.testing.assert_array_equal(ArrayModel(cfg).run(dense, seed=seed), got)
    if overflow == "wrap":
        exact = x.astype(np.int64) @ w.astype(np.int64).T
        wrapped = ((exact + (1 << 15)) % (1 << 16)) - (1 << 15)
        np.testing.assert_array_equal(got, wrapped)


def test_columns_balanced():
    cfg = Config(rows=4, cols=4)
    rng = np.random.default_rng(3)
    x, w = _layer(rng, cfg, 4, 256, 256, 0.1)
    prog = compile_layer(cfg, x, w)
    stream = next(p for p in prog.phases if p.kind == "stream")
    per_col = np.bincount([f["header"]["x0"] for _, f in stream.injections], minlength=4)
    per_port = np.bincount([q for q, _ in stream.injections], minlength=4)
    assert per_col.max() <= 1.02 * prog.nnz / 4 + 64, per_col
    assert per_port.max() <= 1.02 * prog.nnz / 4 + 64, per_port


@pytest.mark.parametrize(("x_shape", "w_shape", "message"), [
    ((2, 8), (4, 9), "activations are 2 x 8 and weights 4 x 9: Y = X @ W.T needs the same "
                     "number of columns (J)"),
    ((2, 129), (4, 129), "an activation row has 129 values (J) but a tile's activation bank "
                         "holds act_depth = 32: the row needs 5 tiles of a row and the array "
                         "has cols = 4, so the layer's activations do not fit"),
    ((2, 2, 2), (4, 2), "activations must be a 2-D integer array, not 3-D (shape (2, 2, 2))"),
])
def test_rejects_bad_shapes(x_shape, w_shape, message):
    cfg = Config(act_depth=32, acc_depth=16)
    with pytest.raises(LayerError, match=f"^{re.escape(message)}$"):
        compile_layer(cfg, np.zeros(x_shape, dtype=int), np.zeros(w_shape, dtype=int))


def test_rejects_values_out_of_range():
    cfg = Config(data_width=8, acc_width=16, act_depth=32, acc_depth=16)
    x = np.zeros((2, 4), dtype=int)
    w = np.full((3, 4), 200)
    with pytest.raises(LayerError, match=r"^weights must be within the 8-bit signed range "
                                         r"-128\.\.127, found 200\.\.200$"):
        compile_layer(cfg, x, w)
    with pytest.raises(LayerError, match=r"^activations must be integers, not float64$"):
        compile_layer(cfg, np.zeros((2, 4)), np.zeros((3, 4), dtype=int))


# (rows, cols, act_depth, acc_depth, B, I, J, density): K = ceil(J / act_depth) > 1.
REDUCTION_CASES = {
    "K2": (2, 4, 16, 16, 2, 12, 32, 0.3),
    "K2_uneven_J": (3, 5, 16, 16, 3, 14, 27, 0.4),             # J not a multiple of K; 1 idle col
    "K3": (3, 5, 16, 16, 3, 17, 40, 0.3),                      # J = 14 + 14 + 12; 2 idle cols
    "K_eq_C": (2, 3, 16, 16, 2, 7, 47, 0.5),                   # one group: columns 1, 2 send
    "K_eq_C_4": (2, 4, 16, 16, 2, 9, 61, 0.5),
    "passes": (2, 4, 16, 16, 2, 70, 30, 0.3),                  # G = 2: 35 outputs, 3 passes
    "passes_K3": (2, 4, 16, 16, 2, 40, 40, 0.3),               # G = 1: 40 outputs, 3 passes
    "batch_groups": (2, 4, 16, 16, 5, 11, 33, 0.3),            # 3 batch groups
    "passes_and_groups": (3, 5, 32, 16, 7, 50, 90, 0.2),     # K = 3, 4 passes, 3 groups
    "all_zero": (2, 2, 16, 16, 2, 5, 20, 0.0),
    "one_row_one_col_chunks": (1, 3, 16, 16, 2, 3, 33, 1.0),  # R = 1, K = C = 3
}


@pytest.mark.parametrize("case", REDUCTION_CASES)
def test_reduction_matches_numpy(request, case):
    """J over K tiles of a row: partial sums reduced with SEND/ADD on the functional model."""
    rows, cols, act_depth, acc_depth, b, i, j, density = REDUCTION_CASES[case]
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = Config(rows=rows, cols=cols, data_width=8, acc_width=16, act_depth=act_depth,
                 acc_depth=acc_depth)
    x, w = _layer(rng, cfg, b, i, j, density)
    k_chunks = -(-j // act_depth)
    assert 1 < k_chunks <= cols
    groups = -(-b // rows)
    exact = x.astype(np.int64) @ w.astype(np.int64).T
    wrapped = ((exact + (1 << 15)) % (1 << 16)) - (1 << 15)
    for dense in (False, True):
        prog = compile_layer(cfg, x, w, dense=dense)
        assert prog.stream_flits == (i * j if dense else prog.nnz) * groups
        got = ArrayModel(cfg).run(prog, seed=seed)
        np.testing.assert_array_equal(got, reference(cfg, x, w), err_msg=f"dense={dense}")
        np.testing.assert_array_equal(got, wrapped)
        kinds = [p.kind for p in prog.phases]
        assert kinds.count("reduce") == kinds.count("read") == kinds.count("stream")
        assert all(kinds[n + 1] == "reduce" for n, k in enumerate(kinds) if k == "stream")


def test_reduction_layout():
    """Chunk k of J goes to column block k; MACs to (k * G + g); SENDs from blocks k >= 1."""
    cfg = Config(rows=2, cols=5, data_width=8, acc_width=16, act_depth=16, acc_depth=16)
    j = 40  # K = 3, chunk = 14, G = 1, column 3 and 4 idle
    x = np.arange(2 * j).reshape(2, j) % 100 + 1
    w = np.ones((3, j), dtype=int)
    prog = compile_layer(cfg, x, w)
    load = prog.phases[0]
    acts = [(q, f) for q, f in load.injections if f["payload"]["op"] == Opcode.WRITE_ACT]
    assert len(acts) == 2 * j  # one multicast per activation
    for q, f in acts:
        assert (f["header"]["y0"], f["header"]["y1"]) == (q, q)
    assert [(f["header"]["x0"], f["header"]["x1"], f["payload"]["addr"])
            for q, f in acts if q == 0] == [(jj // 14, jj // 14, jj % 14) for jj in range(j)]
    stream = prog.phases[1]
    assert {f["header"]["x0"] for _, f in stream.injections} == {0, 1, 2}
    for _, f in stream.injections:
        assert f["payload"]["addr_b"] < 14
    # port q starts with chunk q (the ports feed different column blocks at the same time)
    for q in range(2):
        first = next(f for p_, f in stream.injections if p_ == q)
        assert first["header"]["x0"] == q
    reduce = prog.phases[2]
    assert reduce.kind == "reduce"
    sends = [(q, f) for q, f in reduce.injections if f["payload"]["op"] == Opcode.SEND]
    assert len(sends) == 2 * 2 * 3  # rows x chunks k >= 1 x slots
    for q, f in sends:
        assert f["header"]["x0"] in (1, 2) and f["header"]["y0"] == q
        assert decode_route(cfg, f["payload"]["data"]) == {
            "x": 0, "y": q, "exit": Port.LOCAL, "vc": cfg.num_vcs - 1}
    assert reduce.replies == {(y, 0, c): None for y in range(2) for c in (1, 2)}
    # each sending tile's fence is injected after its SENDs, from the same port
    for q in range(2):
        mine = [f for p_, f in reduce.injections if p_ == q]
        for c in (1, 2):
            at_c = [f["payload"]["op"] for f in mine if f["header"]["x0"] == c]
            assert at_c == [Opcode.SEND] * 3 + [Opcode.READ_ACC]
    read = prog.phases[3]
    assert {f["header"]["x0"] for _, f in read.injections} == {0}
    np.testing.assert_array_equal(ArrayModel(cfg).run(prog), reference(cfg, x, w))


@pytest.mark.parametrize(("rows", "cols", "i", "j", "depth"), [
    (8, 8, 48, 64, 16),    # K = 4, G = 2: four ports a group, one per column of it
    (4, 4, 40, 96, 32),    # K = 3, G = 1: three ports of four (column 3 idle)
    (6, 5, 30, 40, 16),    # K = 3, G = 1, fewer columns than rows
    (4, 8, 21, 48, 16),    # K = 3, G = 2: fewer ports than the columns they feed
])
def test_split_streams_use_one_port_per_column_each_on_its_own_chunk(rows, cols, i, j,
                                                                     depth):
    """With K > 1 the stream uses ``min(rows, K * G)`` ports (more share the K columns of a
    group and slow each other down); the ports whose outputs are in one group start on
    chunks 0, 1, 2, ... (mod K), so they begin on different columns."""
    cfg = Config(rows=rows, cols=cols, data_width=8, acc_width=24, act_depth=depth,
                 acc_depth=64)
    K = -(-j // depth)
    G = cols // K
    rng = np.random.default_rng(7)
    x = rng.integers(1, 5, (rows, j))
    w = rng.integers(1, 5, (i, j))
    prog = compile_layer(cfg, x, w)
    stream = next(p for p in prog.phases if p.kind == "stream")
    used = sorted({q for q, _ in stream.injections})
    assert used == list(range(min(rows, K * G)))
    starts: dict[int, list[int]] = {}
    for q in used:
        first = next(f for p_, f in stream.injections if p_ == q)["header"]["x0"]
        starts.setdefault(first % G, []).append(first // G)  # group, then chunk
    for group, chunks in starts.items():
        want = [n % K for n in range(len(chunks))]
        assert chunks == want, (group, chunks)
    np.testing.assert_array_equal(ArrayModel(cfg).run(prog), reference(cfg, x, w))


def test_reduction_needs_its_phase():
    """Without the reduce phase the model reads partial sums: the check is not vacuous."""
    cfg = Config(rows=2, cols=2, data_width=8, acc_width=16, act_depth=16, acc_depth=16)
    rng = np.random.default_rng(5)
    x, w = _layer(rng, cfg, 2, 6, 30, 1.0)
    prog = compile_layer(cfg, x, w)
    prog.phases = [p for p in prog.phases if p.kind != "reduce"]
    assert not np.array_equal(ArrayModel(cfg).run(prog), reference(cfg, x, w))


def test_reduction_refused_with_saturate():
    cfg = Config(rows=2, cols=4, overflow="saturate", act_depth=16, acc_depth=16)
    x, w = np.zeros((2, 20), dtype=int), np.zeros((3, 20), dtype=int)
    message = ("an activation row has 20 values (J) and a tile's activation bank holds "
               "act_depth = 16: splitting it over 2 tiles adds partial sums, which overflow = "
               "'saturate' would clamp per tile (not after every MAC); use overflow = 'wrap' "
               "or act_depth >= 20")
    with pytest.raises(LayerError, match=f"^{re.escape(message)}$"):
        compile_layer(cfg, x, w)
    compile_layer(cfg, x[:, :16], w[:, :16])  # fits one tile: no reduction, accepted


def test_reduction_refused_beyond_columns():
    cfg = Config(rows=2, cols=3, act_depth=16, acc_depth=16)
    compile_layer(cfg, np.zeros((2, 48), dtype=int), np.zeros((3, 48), dtype=int))  # K = C
    message = ("an activation row has 49 values (J) but a tile's activation bank holds "
               "act_depth = 16: the row needs 4 tiles of a row and the array has cols = 3, so "
               "the layer's activations do not fit")
    with pytest.raises(LayerError, match=f"^{re.escape(message)}$"):
        compile_layer(cfg, np.zeros((2, 49), dtype=int), np.zeros((3, 49), dtype=int))


def _read_phase():
    cfg = Config(rows=2, cols=2, data_width=8, acc_width=16, act_depth=32, acc_depth=16)
    x = np.array([[1, 2], [3, 4]])
    w = np.array([[1, 0], [0, 1], [2, 2]])
    prog = compile_layer(cfg, x, w)
    return prog, next(p for p in prog.phases if p.kind == "read")


def _replies(phase, drop=None, extra=None, op=None):
    """The phase's expected replies as arrays (data = 100 * b + i), with changes."""
    keep = np.ones(phase.expected_replies, bool)
    if drop is not None:
        keep[drop] = False
    row, slot, x = phase.reply_row[keep], phase.reply_slot[keep], phase.reply_x[keep]
    data = 100 * phase.reply_b[keep] + phase.reply_i[keep]
    if extra is not None:
        row, slot, x, data = (np.append(a, v) for a, v in zip((row, slot, x, data), extra,
                                                                 strict=True))
    ops = np.full(len(row), Opcode.REPLY.value if op is None else op)
    return row, ops, slot, x, data


def test_collect_reply_arrays_places_every_output():
    from wafertile.sim.models import collect_reply_arrays
    _, phase = _read_phase()
    y = np.full((2, 3), -1)
    collect_reply_arrays(phase, *_replies(phase), y)
    np.testing.assert_array_equal(y, 100 * np.arange(2)[:, None] + np.arange(3)[None, :])


@pytest.mark.parametrize(("change", "message"), [
    ({"drop": 0}, r"^1 replies missing in a read phase, e\.g\. \[\("),
    ({"extra": (0, 7, 1, 5)}, r"^unexpected reply \(0, 7, 1\) in a read phase$"),
    ({"op": Opcode.ADD.value}, r"^unexpected flit at west port \d: op ADD$"),
])
def test_collect_reply_arrays_refuses(change, message):
    from wafertile.sim.models import collect_reply_arrays
    _, phase = _read_phase()
    with pytest.raises(AssertionError, match=message):
        collect_reply_arrays(phase, *_replies(phase, **change), np.zeros((2, 3), np.int64))


def test_collect_reply_arrays_refuses_a_duplicate():
    from wafertile.sim.models import collect_reply_arrays
    _, phase = _read_phase()
    first = (phase.reply_row[0], phase.reply_slot[0], phase.reply_x[0], 0)
    with pytest.raises(AssertionError, match=r"^duplicated reply \("):
        collect_reply_arrays(phase, *_replies(phase, extra=first), np.zeros((2, 3), np.int64))
