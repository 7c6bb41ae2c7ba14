"""Training steps on the Verilator harness (``wafertile.trainer.rtl``): every logit and
gradient that leaves the array equals the reference step, bit for bit, over several steps of
the store's updates (the harness reads GRAD results at the south edge)."""

from __future__ import annotations

import numpy as np
import pytest

from wafertile.config import Config
from wafertile.hdl.core.fp import float_format
from wafertile.train import ParameterStore, TrainConfig
from wafertile.trainer import random_network
from wafertile.trainer.rtl import ROLES, RtlFabric

from .conftest import seed_for


@pytest.mark.parametrize("dtype", ["fp16"])
def test_steps_on_the_harness_equal_the_reference(request, tmp_path, dtype):
    seed = seed_for(request)
    cfg = Config(rows=2, cols=2, dtype=dtype, act_depth=32, acc_depth=16)
    fmt = float_format(dtype)
    rng = np.random.default_rng(seed)
    w, b, m = random_network((6, 5, 3), 0.7, seed % 1000)
    store = ParameterStore(w, b, m, TrainConfig(dtype=dtype, lr=0.05, init_scale=64.0))
    fabric = RtlFabric(cfg, build_root=tmp_path)
    x = fmt.values(fmt.bits(rng.random((5, 6)).astype(np.float32)))
    labels = rng.integers(0, 3, 5)
    losses = []
    for _ in range(3):
        r = fabric.step(store.stream_weights(), store.biases, store.masks, x, labels,
                        float(store.scale))
        assert r.exact, f"{r.mismatches} (seed {seed})"
        assert store.apply(r.dw, r.db)
        losses.append(r.reference.loss)
        assert set(r.cycles) == {*ROLES, "total"} and r.cycles["total"] == sum(
            r.cycles[k] for k in ROLES)
        assert r.cycles["gradients"] > 0 and r.cycles["backward"] > 0
        # GRAD results: one per mask position and bias per group (3 groups of 2 rows)
        grads = sum(int(mask.sum()) + mask.shape[0] for mask in m)
        assert r.flits_out >= 3 * grads
    assert losses[-1] < losses[0], f"the loss did not fall: {losses} (seed {seed})"
