"""The weight-streaming compiler, checked on the functional array model against numpy."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wafertile import Config
from wafertile.sim.array_model import ArrayModel
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
    ((2, 40), (4, 40), "an activation row has 40 values (J) but a tile's activation bank holds "
                       "act_depth = 32: the layer's activations do not fit"),
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
