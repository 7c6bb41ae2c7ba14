"""The parameter store and the optimizer outside the array (``docs/training.md``, The parameter
store and the optimizer): every update against the document's arithmetic written again here,
parameter by parameter, bit for bit; masks; loss scaling; the stream's rounding; checkpoints
(resume, atomicity, refusals); the export; every refusal.

The reference below is written from the document alone: Python float (float64) arithmetic
with a rounding to FP32 after every operation. For ``+ - * / sqrt`` of FP32 operands that is
the correctly rounded FP32 result (float64 has more than 2 x 24 + 2 bits, so the double
rounding is innocuous), so it checks the store's numpy ``float32`` lines without sharing them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from wafertile import files
from wafertile.config import Config
from wafertile.errors import InputError
from wafertile.network import Layer, Network, load_network, save_network
from wafertile.network.compiler import check_network
from wafertile.sim.models.network import network_reference
from wafertile.train import (
    OPTIMIZERS,
    ParameterStore,
    TrainConfig,
    TrainError,
    export_network,
    fingerprint,
    from_network,
    learning_rate,
    load_checkpoint,
    save_checkpoint,
)

from .conftest import seed_for

# -- the reference, from the document ----------------------------------------------------------


def fp32(x: float) -> float:
    """``x`` rounded to binary32, to nearest even (as a Python float)."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def ref_lr(c: dict, t: int) -> float:
    """The learning-rate schedule, as written in the document."""
    w, total = c["warmup_steps"], c["total_steps"]
    warm = t / w if t <= w else 1.0
    if c["schedule"] == "constant":
        decay = 1.0
    elif c["schedule"] == "step":
        decay = c["gamma"] ** ((t - 1) // c["step_size"])
    else:
        p = min(1.0, max(0.0, (t - w - 1) / (total - w)))
        decay = 0.5 * (1.0 + math.cos(math.pi * p))
    return fp32((c["lr"] * warm) * decay)


class Ref:
    """A parameter store written from the document: one dict per parameter."""

    def __init__(self, weights, biases, masks, c: dict):
        self.c, self.shapes = c, [w.shape for w in weights]
        self.params = []
        for n, (w, m) in enumerate(zip(weights, masks, strict=True)):
            for i in range(w.shape[0]):
                for j in range(w.shape[1]):
                    if m[i, j]:
                        self.params.append({"layer": n, "at": (i, j), "bias": False,
                                            "w": float(w[i, j]), "m": 0.0, "v": 0.0})
        for n, b in enumerate(biases):
            for i in range(b.shape[0]):
                self.params.append({"layer": n, "at": (i,), "bias": True, "w": float(b[i]),
                                    "m": 0.0, "v": 0.0})
        self.p1 = self.p2 = 1.0
        self.scale = c["init_scale"] if c["loss_scaling"] else 1.0
        self.good = self.step = self.skipped = 0

    def apply(self, dW, db) -> bool:
        c = self.c
        grads = [float((db if p["bias"] else dW)[p["layer"]][p["at"]]) for p in self.params]
        if not all(math.isfinite(g) for g in grads):
            self.skipped += 1
            if c["loss_scaling"]:
                self.scale = max(self.scale * c["backoff_factor"], c["min_scale"])
                self.good = 0
            return False
        r = fp32(1 / self.scale)
        t = self.step + 1
        lr = ref_lr(c, t)
        b1, b2, mu = fp32(c["beta1"]), fp32(c["beta2"]), fp32(c["momentum"])
        eps, wd = fp32(c["eps"]), fp32(c["weight_decay"])
        c1, c2 = fp32(1 - b1), fp32(1 - b2)
        d = fp32(lr * wd)
        if c["optimizer"] == "adam":
            self.p1, self.p2 = fp32(self.p1 * b1), fp32(self.p2 * b2)
            k1, k2 = fp32(1 - self.p1), fp32(1 - self.p2)
        for p, big in zip(self.params, grads, strict=True):
            g = fp32(big * r)
            w = p["w"]
            decay = not p["bias"] and wd != 0
            if c["optimizer"] == "sgd":
                if decay:
                    w = fp32(w - fp32(d * w))
                w = fp32(w - fp32(lr * g))
            elif c["optimizer"] == "momentum":
                p["v"] = fp32(fp32(mu * p["v"]) + g)
                if decay:
                    w = fp32(w - fp32(d * w))
                w = fp32(w - fp32(lr * p["v"]))
            else:
                p["m"] = fp32(fp32(b1 * p["m"]) + fp32(c1 * g))
                p["v"] = fp32(fp32(b2 * p["v"]) + fp32(c2 * fp32(g * g)))
                mh = fp32(p["m"] / k1)
                vh = fp32(p["v"] / k2)
                u = fp32(mh / fp32(fp32(math.sqrt(vh)) + eps))
                if decay:
                    w = fp32(w - fp32(d * w))
                w = fp32(w - fp32(lr * u))
            p["w"] = w
        self.step = t
        if c["loss_scaling"]:
            self.good += 1
            if self.good == c["growth_interval"]:
                self.scale = min(self.scale * c["growth_factor"], c["max_scale"])
                self.good = 0
        return True

    def dense(self, key: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``key`` (``"w"``, ``"m"``, ``"v"``) of the weights (``I x J``, +0 elsewhere) and of
        the biases, per layer."""
        ws = [np.zeros(s, np.float32) for s in self.shapes]
        bs = [np.zeros(s[0], np.float32) for s in self.shapes]
        for p in self.params:
            (bs if p["bias"] else ws)[p["layer"]][p["at"]] = p[key]
        return ws, bs


def bits(arrays) -> list[np.ndarray]:
    return [np.asarray(a, np.float32).view(np.uint32) for a in arrays]


def assert_same(got, want) -> None:
    """The same FP32 words, array by array."""
    assert len(got) == len(want)
    for g, w in zip(bits(got), bits(want), strict=True):
        np.testing.assert_array_equal(g, w)


def assert_matches(store: ParameterStore, ref: Ref) -> None:
    ws, bs = ref.dense("w")
    assert_same(store.weights, ws)
    assert_same(store.biases, bs)
    for name, (sw, sb) in store.optimizer_state().items():
        rw, rb = ref.dense(name)
        assert_same(sw, rw)
        assert_same(sb, rb)
    assert (store.step, store.skipped, store.good_steps) == (ref.step, ref.skipped, ref.good)
    assert float(store.scale) == ref.scale


# -- networks and gradients --------------------------------------------------------------------

def _magnitudes(rng, shape, low=-6.0, high=1.0) -> np.ndarray:
    """Values of mixed magnitudes (10^low .. 10^high), both signs, some zeros of both signs."""
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(low, high, shape)
    x[rng.random(shape) < 0.05] = 0.0
    x[rng.random(shape) < 0.03] = -0.0
    return x.astype(np.float32)


def random_chain(rng, layers=None, density=0.6):
    """Weights, biases and masks of a random chain; some weights of the masks are 0."""
    sizes = [int(n) for n in rng.integers(2, 7, (layers or int(rng.integers(1, 4))) + 1)]
    weights, biases, masks = [], [], []
    for n in range(len(sizes) - 1):
        shape = (sizes[n + 1], sizes[n])
        mask = rng.random(shape) < density
        mask[0, 0] = True
        w = _magnitudes(rng, shape, -2, 0.5) * mask
        w[0, 0] = 0.0  # a weight of the mask that is 0 is still a parameter
        weights.append(w.astype(np.float32))
        biases.append(_magnitudes(rng, shape[0], -2, 0.5))
        masks.append(mask)
    return weights, biases, masks


def random_grads(rng, shapes, scale: float, bad: float = 0.0):
    """Gradients times ``scale``; NaNs and infinities outside... anywhere when ``bad`` hits."""
    dW = [(_magnitudes(rng, s, -8, 1).astype(np.float64) * scale).astype(np.float32)
          for s in shapes]
    db = [(_magnitudes(rng, s[0], -8, 1).astype(np.float64) * scale).astype(np.float32)
          for s in shapes]
    if rng.random() < bad:
        arr = dW[int(rng.integers(len(dW)))] if rng.random() < 0.7 else db[0]
        arr.flat[int(rng.integers(arr.size))] = rng.choice([np.inf, -np.inf, np.nan])
    return dW, db


def _garbage_outside(rng, dW, masks):
    """Values outside the masks that must never be read: NaNs, infinities, huge numbers."""
    for g, m in zip(dW, masks, strict=True):
        g[~m] = rng.choice([np.nan, np.inf, -np.inf, 3e38], size=int((~m).sum()))


SCHEDULE_PARAMS = {"constant": {}, "step": {"step_size": 4, "gamma": 0.5, "warmup_steps": 2},
                   "cosine": {"warmup_steps": 3, "total_steps": 9}}


def _config(**kw) -> tuple[TrainConfig, dict]:
    cfg = TrainConfig(**kw)
    return cfg, cfg.as_dict()


# -- the update, bit for bit ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.03])
@pytest.mark.parametrize("schedule", list(SCHEDULE_PARAMS))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_updates_match_the_documented_arithmetic(request, optimizer, schedule, weight_decay,
                                                 dtype):
    """Random chains, mixed-magnitude gradients (garbage outside the masks, a step in five
    with an infinity or a NaN), compared with the reference after every step."""
    rng = np.random.default_rng(seed_for(request))
    cfg, c = _config(dtype=dtype, optimizer=optimizer, lr=float(rng.uniform(0.01, 0.2)),
                     weight_decay=weight_decay, schedule=schedule, init_scale=2.0 ** 10,
                     growth_interval=3, max_scale=2.0 ** 12, **SCHEDULE_PARAMS[schedule])
    weights, biases, masks = random_chain(rng)
    store = ParameterStore(weights, biases, masks, cfg)
    ref = Ref(weights, biases, masks, c)
    assert_matches(store, ref)
    for _ in range(12):
        dW, db = random_grads(rng, store.shapes, float(store.scale), bad=0.2)
        _garbage_outside(rng, dW, masks)
        assert store.learning_rate() == np.float32(ref_lr(c, ref.step + 1))
        assert store.apply(dW, db) == ref.apply(dW, db)
        assert_matches(store, ref)
    assert store.step > 0


def test_sgd_by_hand():
    store = ParameterStore([np.array([[1.0, 0.5]], np.float32)], [np.array([0.25], np.float32)],
                           None, TrainConfig(optimizer="sgd", lr=0.5))
    assert store.apply([np.array([[0.25, -1.0]], np.float32)], [np.array([0.5], np.float32)])
    assert_same(store.weights, [np.array([[0.875, 1.0]], np.float32)])
    assert_same(store.biases, [np.array([0.0], np.float32)])


def test_a_subnormal_unscaled_gradient_rounds_to_even():
    """``G = 3 * 2^-149`` at ``S = 2``: ``g = 1.5 * 2^-149`` rounds to ``2^-148``; a weight
    of the mask that is 0 moves to ``-g`` (lr 1)."""
    cfg = TrainConfig(dtype="fp16", optimizer="sgd", lr=1.0, init_scale=2.0)
    store = ParameterStore([np.zeros((1, 1), np.float32)], None, [np.ones((1, 1), bool)], cfg)
    assert store.scale == 2.0
    tiny = np.array([[3]], np.uint32).view(np.float32)
    assert store.apply([tiny], [np.zeros(1, np.float32)])
    assert store.weights[0].view(np.uint32)[0, 0] == 0x80000002


def test_learning_rate_schedules():
    cases = [dict(schedule="constant", lr=0.3), dict(schedule="constant", lr=0.1, warmup_steps=7),
             dict(schedule="step", lr=0.2, step_size=3, gamma=0.7, warmup_steps=2),
             dict(schedule="cosine", lr=0.05, warmup_steps=5, total_steps=20),
             dict(schedule="cosine", lr=1e-3, total_steps=2)]
    for kw in cases:
        cfg, c = _config(**kw)
        got = [learning_rate(cfg, t) for t in range(1, 30)]
        assert all(isinstance(v, np.float32) for v in got)
        assert [float(v) for v in got] == [ref_lr(c, t) for t in range(1, 30)], kw
    cfg = TrainConfig(schedule="cosine", lr=1e-3, total_steps=2)
    assert learning_rate(cfg, 1) == np.float32(1e-3)
    assert learning_rate(cfg, 2) == np.float32(1e-3 * 0.5)
    assert learning_rate(cfg, 3) == 0 and learning_rate(cfg, 100) == 0
    warm = TrainConfig(lr=0.1, warmup_steps=4)
    assert [float(learning_rate(warm, t)) for t in (1, 2, 4, 5)] == [
        fp32(0.1 * 0.25), fp32(0.1 * 0.5), fp32(0.1), fp32(0.1)]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_zero_learning_rate_leaves_the_weights(optimizer):
    """After the cosine the rate is 0: the weights stay, bit for bit (decay included)."""
    rng = np.random.default_rng(5)
    weights, biases, masks = random_chain(rng, layers=2)
    cfg = TrainConfig(optimizer=optimizer, schedule="cosine", total_steps=1, weight_decay=0.1)
    store = ParameterStore(weights, biases, masks, cfg)
    assert store.apply(*random_grads(rng, store.shapes, 1.0))
    before = store.weights, store.biases
    assert store.learning_rate() == 0
    assert store.apply(*random_grads(rng, store.shapes, 1.0))
    assert_same(store.weights, before[0])
    assert_same(store.biases, before[1])


# -- masks ---------------------------------------------------------------------------------------

def test_masked_weights_stay_zero_and_their_gradients_are_never_read(request):
    rng = np.random.default_rng(seed_for(request))
    weights, biases, masks = random_chain(rng, layers=3, density=0.3)
    store = ParameterStore(weights, biases, masks,
                           TrainConfig(optimizer="adam", lr=0.5, weight_decay=0.1))
    assert store.nnz == sum(int(m.sum()) for m in masks)
    for _ in range(10):
        dW, db = random_grads(rng, store.shapes, float(store.scale))
        _garbage_outside(rng, dW, masks)
        assert store.apply(dW, db)
        views = [store.weights, store.stream_weights("fp16"), store.stream_weights("bf16"),
                 *(w for w, _ in store.optimizer_state().values())]
        for view in views:
            for w, m in zip(view, masks, strict=True):
                assert not w.view(np.uint32)[~m].any()  # +0 exactly
    for n, m in enumerate(store.masks):
        np.testing.assert_array_equal(m, masks[n])
        assert not m.flags.writeable
    # the zero weight of the mask (random_chain's [0, 0]) was trained
    assert all(w[0, 0] != 0 for w in store.weights)


# -- loss scaling ----------------------------------------------------------------------------------

def test_a_skipped_step_changes_only_the_count_and_the_scale():
    rng = np.random.default_rng(11)
    weights, biases, masks = random_chain(rng, layers=2)
    store = ParameterStore(weights, biases, masks, TrainConfig(dtype="fp16", growth_interval=5))
    for _ in range(2):
        assert store.apply(*random_grads(rng, store.shapes, float(store.scale)))
    before = store.arrays()
    lr = store.learning_rate()
    assert store.good_steps == 2 and store.scale == 65536
    for bad in (np.inf, -np.inf, np.nan):
        dW, db = random_grads(rng, store.shapes, float(store.scale))
        dW[1][masks[1]] = np.where(np.arange(masks[1].sum()) == 0, bad, dW[1][masks[1]])
        assert not store.apply(dW, db)
    dW, db = random_grads(rng, store.shapes, float(store.scale))
    db[0][-1] = np.nan
    assert not store.apply(dW, db)
    after = store.arrays()
    assert store.skipped == 4 and store.step == 2 and store.good_steps == 0
    assert store.scale == 65536 / 16 and store.learning_rate() == lr
    for key in before:
        if key != "scale":
            assert before[key].tobytes() == after[key].tobytes(), key


def test_the_scale_backs_off_to_min_and_grows_to_max():
    cfg = TrainConfig(dtype="fp16", optimizer="sgd", init_scale=4.0, min_scale=1.0,
                      max_scale=16.0, growth_interval=2, growth_factor=2.0, backoff_factor=0.5)
    store = ParameterStore([np.ones((2, 2), np.float32)], None, None, cfg)
    good = [np.ones((2, 2), np.float32)], [np.ones(2, np.float32)]
    bad = [np.full((2, 2), np.inf, np.float32)], [np.ones(2, np.float32)]
    seen = []
    for grads in [bad, bad, bad, good, good, good, bad, good, good, good, good, good, good,
                  good, good]:
        store.apply(*grads)
        seen.append((float(store.scale), store.good_steps))
    assert seen == [(2, 0), (1, 0), (1, 0), (1, 1), (2, 0), (2, 1), (1, 0), (1, 1), (2, 0),
                    (2, 1), (4, 0), (4, 1), (8, 0), (8, 1), (16, 0)]
    store.apply(*good), store.apply(*good)
    assert (store.scale, store.good_steps) == (16, 0)


def test_bf16_scales_by_one_and_still_skips():
    store = ParameterStore([np.ones((2, 2), np.float32)], None, None, TrainConfig())
    assert store.config.loss_scaling is False and store.scale == 1
    assert not store.apply([np.full((2, 2), np.nan, np.float32)], [np.zeros(2, np.float32)])
    assert (store.skipped, store.step, store.scale, store.good_steps) == (1, 0, 1, 0)
    for _ in range(3):
        assert store.apply([np.ones((2, 2), np.float32)], [np.zeros(2, np.float32)])
    assert (store.scale, store.good_steps) == (1, 0)
    assert TrainConfig(dtype="fp16").loss_scaling is True
    assert TrainConfig(dtype="fp16", loss_scaling=False).loss_scaling is False


# -- the stream ------------------------------------------------------------------------------------

def _bf16_model(x: float) -> float:
    """Round the FP32 number ``x`` to BF16 by distance: the two BF16 neighbours (truncated, and
    one unit further from zero; 2^128 stands for the one past the largest), the nearer one, the
    even one on a tie."""
    word = int(np.array([x], np.float32).view(np.uint32)[0])
    low = word & 0xFFFF0000
    high = low + 0x10000
    lo = float(np.array([low], np.uint32).view(np.float32)[0])
    hi_word = np.array([high], np.uint32).view(np.float32)[0]
    hi = math.copysign(2.0 ** 128, x) if np.isinf(hi_word) else float(hi_word)
    d_lo, d_hi = abs(x - lo), abs(hi - x)
    if d_lo < d_hi or (d_lo == d_hi and not (low >> 16) & 1):
        return lo
    return float(hi_word)


def _stream_values(rng) -> np.ndarray:
    """FP32 numbers around BF16 and FP16 roundings: ties, one ulp either side, overflow."""
    top = rng.integers(0, 0x7F7F, 300).astype(np.uint32) << 16
    low = rng.choice(np.array([0x8000, 0x7FFF, 0x8001, 0x0000, 0x0001], np.uint32), 300)
    low = np.where(rng.random(300) < 0.3, rng.integers(0, 0x10000, 300).astype(np.uint32), low)
    sign = (rng.random(300) < 0.5).astype(np.uint32) << 31
    words = np.concatenate([(top | low | sign).astype(np.uint32),
                            np.array([0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x00000001],
                                     np.uint32)])
    fp16 = np.concatenate([rng.uniform(-7e4, 7e4, 100), [65504, 65519.99, 65520, -65520,
                                                           2.0 ** -25, 3 * 2.0 ** -26,
                                                           2.0 ** -24 * 1.5, 1 + 2.0 ** -11]])
    return np.concatenate([words.view(np.float32), fp16.astype(np.float32)])


def test_the_stream_rounds_to_the_format(request):
    rng = np.random.default_rng(seed_for(request))
    values = _stream_values(rng)
    values = values[values != 0]
    w = values.reshape(1, -1)
    store = ParameterStore([w], None, [np.ones(w.shape, bool)], TrainConfig(dtype="fp16"))
    with np.errstate(over="ignore"):
        want16 = w.astype(np.float16).astype(np.float32)
    assert_same(store.stream_weights(), [want16])
    assert_same(store.stream_weights("fp16"), [want16])
    want_bf = np.array([[_bf16_model(float(x)) for x in values]], np.float32)
    assert_same(store.stream_weights("bf16"), [want_bf])
    # the largest FP32 of both signs, and the tie above the largest BF16 (odd: to infinity)
    assert np.isinf(store.stream_weights("bf16")[0]).sum() == 3


# -- checkpoints -----------------------------------------------------------------------------------

def _train(store, rng, steps, start=0, skip=(1, 6)):
    """Steps ``start .. start + steps - 1`` with random gradients; those in ``skip`` (and one
    in five at random) hold an infinity or a NaN."""
    for k in range(start, start + steps):
        dW, db = random_grads(rng, store.shapes, float(store.scale), bad=0.2)
        if k in skip:
            db[0][0] = np.inf
        store.apply(dW, db)


def _saved(path: Path, seed: int, steps: int = 2, rng_state=None, **config):
    """A store of a random 2-layer chain after ``steps`` steps, saved to ``path``; returns the
    store, its rng (for more steps) and its chain (weights, biases, masks)."""
    rng = np.random.default_rng(seed)
    chain = random_chain(rng, layers=2)
    store = ParameterStore(*chain, TrainConfig(**config))
    _train(store, rng, steps)
    save_checkpoint(path, store, rng_state=rng_state)
    return store, rng, chain


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_resume_is_bit_identical(request, tmp_path, optimizer):
    """K steps straight against K1 steps, a checkpoint, a reload and K - K1 steps (the
    gradients from an RNG whose state travels in the checkpoint)."""
    seed = seed_for(request)
    weights, biases, masks = random_chain(np.random.default_rng(seed), layers=3)
    cfg = TrainConfig(dtype="fp16", optimizer=optimizer, lr=0.05, weight_decay=0.01,
                      schedule="cosine", warmup_steps=2, total_steps=12, growth_interval=2)
    straight = ParameterStore(weights, biases, masks, cfg)
    _train(straight, np.random.default_rng(seed + 1), 10)

    first = ParameterStore(weights, biases, masks, cfg)
    rng = np.random.default_rng(seed + 1)
    _train(first, rng, 4)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, first, rng_state=rng.bit_generator.state)
    del first, rng
    fresh = ParameterStore(weights, biases, masks, cfg)
    resumed, state = load_checkpoint(path, expect=fresh)
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    _train(resumed, rng, 6, start=4)

    assert straight.counters() == resumed.counters()
    a, b = straight.arrays(), resumed.arrays()
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
    assert straight.skipped > 0 and straight.step > 4


def test_checkpoint_holds_what_the_doc_says(tmp_path):
    store, _, (_, _, masks) = _saved(tmp_path / "c.npz", 3, steps=3, optimizer="adam",
                                     rng_state={"any": [1, "json", 2.5]})
    with np.load(tmp_path / "c.npz") as data:
        keys = set(data.files)
        meta = json.loads(str(data["meta"]))
        assert str(data["format"]) == "wafertile-checkpoint/1"
        assert data["powers"].dtype == np.float32 and data["powers"].shape == (2,)
        assert data["w1"].shape == (int(masks[1].sum()),)
    assert keys == {"format", "meta", "mask0", "mask1", "w0", "w1", "b0", "b1", "m_w0", "m_w1",
                    "m_b0", "m_b1", "v_w0", "v_w1", "v_b0", "v_b1", "powers", "scale"}
    assert sorted(meta) == sorted(["fingerprint", "config", "shapes", "step", "skipped", "good",
                                   "rng"])
    assert meta["rng"] == {"any": [1, "json", 2.5]} and meta["step"] == store.step
    assert meta["config"]["loss_scaling"] is False
    # the fingerprint, as the document defines it
    head = json.dumps({"config": meta["config"], "format": "wafertile-checkpoint/1",
                       "shapes": meta["shapes"]}, sort_keys=True).encode()
    digest = hashlib.sha256(head + b"".join(np.packbits(m).tobytes() for m in masks))
    assert meta["fingerprint"] == digest.hexdigest()
    back, state = load_checkpoint(tmp_path / "c.npz")
    assert state == {"any": [1, "json", 2.5]} and back.config == store.config


class _HalfWriter:
    """A file whose write stores half of the bytes, then fails (a run killed mid-write)."""

    def __init__(self, f):
        self._f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def write(self, data):
        self._f.write(data[:len(data) // 2])
        raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["writing", "renaming"])
def test_a_failed_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch, where):
    path = tmp_path / "ckpt.npz"
    store, rng, _ = _saved(path, 4, dtype="fp16")
    old, counters = path.read_bytes(), store.counters()
    _train(store, rng, 3, start=2)
    if where == "writing":
        real = os.fdopen
        monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: _HalfWriter(real(*a, **k)))
    else:
        def replace(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, store)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]  # no temporary file
    back, _ = load_checkpoint(path)
    assert back.counters() == counters != store.counters()


def _refused(call, message: str) -> None:
    with pytest.raises(TrainError, match="^" + re.escape(message) + "$") as info:
        call()
    assert isinstance(info.value, InputError) and "\n" not in str(info.value)


def _rewrite(src: Path, dst: Path, **changes) -> None:
    """A copy of the checkpoint ``src`` with some keys changed (None: removed)."""
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(dst, **arrays)


def test_unusable_checkpoints_are_refused(tmp_path):
    good = tmp_path / "good.npz"
    store, _, (_, _, masks) = _saved(good, 6, optimizer="momentum")
    data = good.read_bytes()

    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(TrainError, match=r"^checkpoint '.*cut\.npz' is not a \.npz archive"):
        load_checkpoint(cut)
    flipped = tmp_path / "flipped.npz"
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("w0.npy")
    at = info.header_offset + 30 + len(info.filename) + info.file_size - 2
    flipped.write_bytes(data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:])
    with pytest.raises(TrainError, match=r"^checkpoint '.*flipped\.npz', key 'w0', is damaged"):
        load_checkpoint(flipped)
    text = tmp_path / "text.npz"
    text.write_text("not a checkpoint\n")
    with pytest.raises(TrainError, match=r"^checkpoint '.*text\.npz' is not a \.npz archive"):
        load_checkpoint(text)
    _refused(lambda: load_checkpoint(tmp_path / "none.npz"),
             f"checkpoint {str(tmp_path / 'none.npz')!r} does not exist")
    _refused(lambda: load_checkpoint(tmp_path), f"checkpoint {str(tmp_path)!r} is a directory, "
                                                f"not a file")

    net = tmp_path / "net.npz"
    export_network(store, net)
    _refused(lambda: load_checkpoint(net),
             f"checkpoint {str(net)!r} is not a wafertile checkpoint (format "
             f"'wafertile-network/1'; a checkpoint has format 'wafertile-checkpoint/1')")

    label = f"checkpoint {str(tmp_path / 'bad.npz')!r} is damaged: "
    with np.load(good) as d:
        meta = json.loads(str(d["meta"]))
    other = dict(meta, config=dict(meta["config"], lr=0.5))  # fingerprint kept
    for changes, why in [
            ({"w0": None}, "key 'w0' is missing"),
            ({"v_b1": None}, "key 'v_b1' is missing"),
            ({"w1": np.zeros(3, np.float64)},
             f"w1 must be float32 of shape ({int(masks[1].sum())},), not float64 of shape (3,)"),
            ({"extra": np.zeros(1)}, "unknown key 'extra'"),
            ({"meta": np.array(json.dumps(other))},
             "its fingerprint does not match its contents"),
            ({"meta": np.array("{")}, "meta is not valid JSON"),
            ({"meta": np.array(json.dumps(dict(meta, step=-1)))},
             "step must be an integer of at least 0, not -1"),
            ({"meta": np.array(json.dumps(dict(meta, config=dict(meta["config"], lr=-1))))},
             "lr must be a positive finite number, not -1"),
            ({"scale": np.float32(3)},
             "loss scale 3.0 and count 0 with loss scaling off (1 and 0)")]:
        _rewrite(good, tmp_path / "bad.npz", **changes)
        _refused(lambda: load_checkpoint(tmp_path / "bad.npz"), label + why)


def test_a_checkpoint_of_another_network_or_configuration_is_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    store, _, (weights, biases, masks) = _saved(path, 8, steps=0, lr=0.001)
    cfg = store.config
    label = f"checkpoint {str(path)!r}"

    w2, b2, m2 = random_chain(np.random.default_rng(9), layers=3)
    other = ParameterStore(w2, b2, m2, cfg)
    shapes = ", ".join(f"{i}x{j}" for i, j in store.shapes)
    shapes2 = ", ".join(f"{i}x{j}" for i, j in other.shapes)
    _refused(lambda: load_checkpoint(path, expect=other),
             f"{label} is of another network: layer shapes [{shapes}] there, [{shapes2}] here")
    m3 = [m.copy() for m in masks]
    m3[1][-1, -1] = not m3[1][-1, -1]
    w3 = [w * m for w, m in zip(weights, m3, strict=True)]
    _refused(lambda: load_checkpoint(path, expect=ParameterStore(w3, biases, m3, cfg)),
             f"{label} is of another network: mask 1 differs ({int(masks[1].sum())} nonzeros "
             f"there, {int(m3[1].sum())} here)")
    _refused(lambda: load_checkpoint(
        path, expect=ParameterStore(weights, biases, masks, TrainConfig(lr=0.002))),
        f"{label} was written with another configuration: lr = 0.001 there, 0.002 here")
    _refused(lambda: load_checkpoint(
        path, expect=ParameterStore(weights, biases, masks, TrainConfig(dtype="fp16"))),
        f"{label} was written with another configuration: dtype = \"bf16\" there, \"fp16\" here")
    assert load_checkpoint(path, expect=ParameterStore(weights, biases, masks, cfg))[0].step == 0


def test_checkpoint_paths_are_checked(tmp_path):
    store = ParameterStore([np.ones((2, 2), np.float32)])
    _refused(lambda: save_checkpoint(tmp_path / "c.txt", store),
             f"checkpoint {str(tmp_path / 'c.txt')!r} must name a .npz file (the name must end "
             f"in .npz)")
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "target.npz")
    _refused(lambda: save_checkpoint(link, store),
             f"checkpoint {str(link)!r} is a symbolic link; wafertile does not write through "
             f"links (name the file itself)")
    _refused(lambda: save_checkpoint(tmp_path / "c.npz", store, rng_state=object()),
             "rng_state must be JSON data (numbers, strings, lists, dicts), not object "
             "(Object of type object is not JSON serializable)")
    _refused(lambda: export_network(store, tmp_path / "n.txt"),
             f"network export {str(tmp_path / 'n.txt')!r} must name a .npz file (the name must "
             f"end in .npz)")
    _refused(lambda: export_network(store, tmp_path / "n.npz", dtype="int16"),
             "dtype must be 'fp16' or 'bf16' (training runs on float tiles), not 'int16'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz"]


# -- export --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_export_round_trip(request, tmp_path, dtype):
    rng = np.random.default_rng(seed_for(request))
    weights, biases, masks = random_chain(rng, layers=3)
    store = ParameterStore(weights, biases, masks, TrainConfig(dtype=dtype, lr=0.1))
    _train(store, rng, 5)
    path = tmp_path / "trained.npz"
    export_network(store, path, name="trained")
    net = load_network(path)
    assert net.dtype == dtype and net.name == "trained" and len(net.layers) == 3
    assert [layer.relu for layer in net.layers] == [True, True, False]
    assert_same([np.asarray(layer.weights, np.float32) for layer in net.layers],
                store.stream_weights())
    assert_same([layer.bias for layer in net.layers], store.biases)
    # what `wafertile run --network` checks before it builds, and the float reference
    x = store.stream_weights()[0][:2].copy()
    check_network(Config(dtype=dtype), net, x)
    out, _ = network_reference(Config(dtype=dtype), net, x)
    assert out.shape == (2, store.shapes[-1][0])
    # and back: a store from the exported network starts from the streamed weights
    back = from_network(net)
    assert back.config.dtype == dtype
    assert_same(back.weights, store.stream_weights())
    # the other format on request
    export_network(store, path, dtype="bf16" if dtype == "fp16" else "fp16")
    assert load_network(path).dtype != dtype


def test_from_network_refusals():
    w = np.ones((2, 2), np.float32)
    intnet = Network([Layer(np.ones((2, 2), np.int64), np.zeros(2, np.int64))], 8)
    _refused(lambda: from_network(intnet),
             "training starts from a float network (fp16 or bf16), not an int8 one")
    flat = Network([Layer(w, np.zeros(2, np.float32)), Layer(w, np.zeros(2, np.float32))], 16,
                   dtype="bf16")
    _refused(lambda: from_network(flat),
             "layer 0 has neither ReLU, GELU nor a LayerNorm; the trained chain has one of "
             "them after every layer but the last")
    g = np.ones(2, np.float32)
    for layers, message in [
        ([Layer(w, g, relu=True, ln_gamma=g, ln_beta=g), Layer(w, g)],
         "layer 0 has a LayerNorm (ln_g0): a trained LayerNorm has no activation after it "
         "(relu0)"),
        ([Layer(w, g, ln_gamma=g, ln_beta=g), Layer(w, g, ln_gamma=g, ln_beta=g)],
         "layer 1 has a LayerNorm (ln_g1): the last layer's logits go to the loss as they "
         "are")]:
        _refused(lambda layers=layers: from_network(Network(layers, 16, dtype="bf16")),
                 message)
    nan = Network([Layer(np.array([[1.0, np.nan]], np.float32), np.zeros(1, np.float32))], 16,
                  dtype="bf16")
    _refused(lambda: from_network(nan), "w0[0, 1] = nan is not finite")


def test_from_a_network_file_names_the_file(tmp_path):
    path = tmp_path / "n.npz"
    net = Network([Layer(np.array([[np.inf, 1.0]], np.float32), np.zeros(1, np.float32))], 16,
                  dtype="fp16")
    save_network(net, path)
    _refused(lambda: from_network(load_network(path)),
             f"network file {str(path)!r}: w0[0, 0] = inf is not finite")


# -- refusals --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"lr": -0.1}, "lr must be a positive finite number, not -0.1"),
    ({"lr": float("nan")}, "lr must be a positive finite number, not nan"),
    ({"lr": float("inf")}, "lr must be a positive finite number, not inf"),
    ({"lr": 0}, "lr must be a positive finite number, not 0"),
    ({"lr": 1e-50}, "lr must be a positive finite number, not 1e-50"),
    ({"lr": True}, "lr must be a positive finite number, not True"),
    ({"lr": "0.1"}, "lr must be a positive finite number, not '0.1'"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of 'sgd', 'momentum', 'adam', not "
                               "'rmsprop'"),
    ({"beta1": 1.0}, "beta1 must be a number in [0, 1), not 1.0"),
    ({"beta2": -0.1}, "beta2 must be a number in [0, 1), not -0.1"),
    ({"beta2": 0.99999999}, "beta2 must be a number in [0, 1), not 0.99999999"),
    ({"momentum": 1.5}, "momentum must be a number in [0, 1), not 1.5"),
    ({"eps": 0.0}, "eps must be a positive finite number, not 0.0"),
    ({"eps": 1e-50}, "eps must be a positive finite number, not 1e-50"),
    ({"weight_decay": -1.0}, "weight_decay must be a finite number of at least 0, not -1.0"),
    ({"dtype": "int8"}, "dtype must be 'fp16' or 'bf16' (training runs on float tiles), not "
                        "'int8'"),
    ({"schedule": "linear"}, "schedule must be one of 'constant', 'step', 'cosine', not "
                             "'linear'"),
    ({"schedule": "cosine", "warmup_steps": 100},
     "total_steps must be more than warmup_steps (100) with schedule 'cosine', not 0"),
    ({"gamma": 0.0}, "gamma must be a number in (0, 1], not 0.0"),
    ({"step_size": 0}, "step_size must be an integer of at least 1, not 0"),
    ({"warmup_steps": 1.5}, "warmup_steps must be an integer of at least 0, not 1.5"),
    ({"init_scale": 3.0}, "init_scale must be a power of two, not 3.0"),
    ({"init_scale": 2.0 ** 30},
     "init_scale must be from min_scale (1.0) to max_scale (16777216.0), not 1073741824.0"),
    ({"growth_factor": 1.0}, "growth_factor must be a power of two above 1, not 1.0"),
    ({"backoff_factor": 0.3}, "backoff_factor must be a power of two below 1, not 0.3"),
    ({"growth_interval": 0}, "growth_interval must be an integer of at least 1, not 0"),
    ({"min_scale": 0.5}, "min_scale must be a power of two from 1 to 2**126, not 0.5"),
    ({"min_scale": 4.0, "max_scale": 2.0}, "min_scale (4.0) must not be above max_scale (2.0)"),
    ({"loss_scaling": "yes"}, "loss_scaling must be true, false or None (on for fp16), not "
                              "'yes'"),
])
def test_bad_configuration(kwargs, message):
    _refused(lambda: TrainConfig(**kwargs), message)


def test_unknown_configuration_key():
    with pytest.raises(TrainError, match=r"^unknown training parameter 'nesterov' \(known: "
                                         r"dtype, optimizer, lr, "):
        TrainConfig.from_dict({"nesterov": True})


W2 = np.ones((3, 2), np.float32)


@pytest.mark.parametrize("args, message", [
    (([],), "weights must hold at least one layer"),
    ((W2,), "weights must be a list of arrays, one per layer, not ndarray"),
    (([W2, np.ones((4, 2), np.float32)],), "w1 has 2 inputs but layer 0 has 3 outputs"),
    (([np.ones(3, np.float32)],), "w0 must be a non-empty 2-D array, not shape (3,)"),
    (([np.ones((3, 2), np.int64)],), "w0 must be a float array (float16, float32, or float64 "
                                     "values that float32 holds exactly), not int64"),
    (([np.full((3, 2), 0.1)],), "w0[0, 0] = 0.1 is not a float32 number (nearest: "
                                "0.10000000149011612)"),
    (([np.array([[1.0, 2.0], [3.0, np.inf], [0, 0]], np.float32)],),
     "w0[1, 1] = inf is not finite"),
    (([W2], None, [np.ones((2, 3), bool)]), "mask 0 has shape (2, 3), but w0 has shape (3, 2)"),
    (([W2], None, [np.ones((3, 2))]), "mask 0 must be bool (or 0 and 1), not float64"),
    (([W2], None, [np.full((3, 2), 2)]), "mask 0 must be bool (or 0 and 1), not int64"),
    (([W2], None, [np.eye(3, 2, dtype=bool)]),
     "w0[0, 1] = 1.0 lies outside mask 0 (a masked-out weight is 0)"),
    (([W2], None, [W2 != 0, W2 != 0]), "masks has 2 arrays, but weights has 1 layers"),
    (([W2], [np.zeros(2, np.float32)]), "b0 must have 3 values, not shape (2,)"),
    (([W2], [np.array([0, np.nan, 0], np.float32)]), "b0[1] = nan is not finite"),
    (([W2], None, None, {"lr": 1}), "config must be a TrainConfig, not dict"),
])
def test_bad_network(args, message):
    _refused(lambda: ParameterStore(*args), message)


def test_bad_gradients_change_nothing():
    store = ParameterStore([W2, np.ones((2, 3), np.float32)], None, None,
                           TrainConfig(optimizer="adam"))
    before = store.arrays()
    dW = [np.ones((3, 2), np.float32), np.ones((2, 3), np.float32)]
    db = [np.ones(3, np.float32), np.ones(2, np.float32)]
    for args, message in [
            ((dW[:1], db), "dW has 1 arrays, but the network has 2 layers"),
            ((dW[0], db), "dW must be a list of arrays, one per layer, not ndarray"),
            (([dW[0], dW[0]], db), "dW[1] has shape (3, 2), not the layer's (2, 3)"),
            (([dW[0], dW[1].astype(np.float64)], db),
             "dW[1] must be a float32 array, not float64"),
            ((dW, [db[0], db[0]]), "db[1] has shape (3,), not the layer's (2,)"),
            ((dW, [db[0].astype(np.float16), db[1]]), "db[0] must be a float32 array, not "
                                                      "float16")]:
        _refused(lambda a=args: store.apply(*a), message)
    after = store.arrays()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
    assert (store.step, store.skipped) == (0, 0)
    _refused(lambda: store.stream_weights("int8"),
             "dtype must be 'fp16' or 'bf16' (training runs on float tiles), not 'int8'")


def test_the_store_runs_without_the_fabric_simulator():
    """The store is its own box: importing it loads no simulator, cocotb or FPGA code."""
    code = ("import sys, wafertile.train; print(sorted(m for m in sys.modules if "
            "m.startswith(('wafertile.sim', 'wafertile.synth', 'cocotb'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- LayerNorm layers' gamma and beta ----------------------------------------------------------

def _norm_chain(rng, layers=3):
    """A random chain with a LayerNorm on its first layer: (weights, biases, masks, norms)."""
    weights, biases, masks = random_chain(rng, layers=layers)
    I = weights[0].shape[0]
    norms = [(_magnitudes(rng, I, -1, 0.5), _magnitudes(rng, I, -2, 0.5), 1e-5)] + \
        [None] * (layers - 1)
    return weights, biases, masks, norms


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_layernorm_parameters_update_as_the_biases(request, optimizer):
    """docs/training.md, "One step, in order": gamma and beta follow the optimizer's lines
    without the decay line, as biases do (the document's store with them as two more
    layers' biases), skipped steps included; their gradients are unscaled as every other."""
    rng = np.random.default_rng(seed_for(request))
    weights, biases, masks, norms = _norm_chain(rng)
    cfg, c = _config(dtype="fp16", optimizer=optimizer, lr=0.05, weight_decay=0.03,
                     init_scale=2.0 ** 10, growth_interval=3)
    store = ParameterStore(weights, biases, masks, cfg, norms)
    I = weights[0].shape[0]
    none = np.zeros((I, 1), np.float32)
    ref = Ref([*weights, none, none], [*biases, *norms[0][:2]],
              [*masks, none > 0, none > 0], c)
    assert store.norm_layers == [0]
    for k in range(10):
        dW, db = random_grads(rng, store.shapes, float(store.scale), bad=0.2)
        dln = [tuple((_magnitudes(rng, I, -8, 1).astype(np.float64) * float(store.scale)
                      ).astype(np.float32) for _ in range(2)), None, None]
        if k == 3:  # an infinite gradient of beta skips the step
            dln[0][1][-1] = np.inf
        assert store.apply(dW, db, dln) == ref.apply([*dW, none, none], [*db, *dln[0]])
        ws, bs = ref.dense("w")
        assert_same(store.weights, ws[:3])
        assert_same(store.biases, bs[:3])
        assert_same(store.norms[0][:2], bs[3:])
        arrays = store.arrays()
        for name in store.optimizer_state():
            assert_same([arrays[f"{name}_ln_g0"], arrays[f"{name}_ln_b0"]],
                        ref.dense(name)[1][3:])
    assert store.step > 0 and store.skipped > 0
    assert store.norms[0][2] == np.float32(1e-5) and store.norms[1] is None


def test_layernorm_checkpoints_and_exports(request, tmp_path):
    """A store with a LayerNorm layer resumes bit for bit from its checkpoint (gamma, beta,
    eps and their optimizer state in it); a checkpoint of the chain without it, or with
    another eps, is of another network; the exported network has the LayerNorm, no
    activation after it, and starts the same store again."""
    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    weights, biases, masks, norms = _norm_chain(rng)
    cfg = TrainConfig(dtype="bf16", optimizer="adam", lr=0.05)
    store = ParameterStore(weights, biases, masks, cfg, norms)
    I = weights[0].shape[0]

    def steps(s, k):
        for _ in range(k):
            dW, db = random_grads(rng, s.shapes, float(s.scale))
            s.apply(dW, db, [(np.full(I, 0.5, np.float32), np.full(I, -0.25, np.float32)),
                             None, None])

    steps(store, 3)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, store)
    back, _ = load_checkpoint(path, expect=ParameterStore(weights, biases, masks, cfg, norms))
    a, b = store.arrays(), back.arrays()
    assert sorted(a) == sorted(b) and {"ln_g0", "ln_b0", "ln_eps0", "m_ln_g0", "v_ln_b0"} <= set(a)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    _refused(lambda: load_checkpoint(path, expect=ParameterStore(weights, biases, masks, cfg)),
             f"checkpoint {str(path)!r} is of another network: LayerNorm layers [0] there, "
             f"[] here")
    other = [(norms[0][0], norms[0][1], 1e-3), None, None]
    _refused(lambda: load_checkpoint(path, expect=ParameterStore(weights, biases, masks, cfg,
                                                                   other)),
             f"checkpoint {str(path)!r} is of another network: ln_eps0 = "
             f"{float(np.float32(1e-5))!r} there, {float(np.float32(1e-3))!r} here")
    # a chain without LayerNorm keeps its fingerprint of before
    plain = ParameterStore(weights, biases, masks, cfg)
    assert fingerprint(cfg, plain.masks, plain.norms) == fingerprint(cfg, plain.masks)
    assert fingerprint(cfg, store.masks, store.norms) != fingerprint(cfg, store.masks)
    out = tmp_path / "net.npz"
    export_network(store, out)
    net = load_network(out)
    assert [layer.layernorm for layer in net.layers] == [True, False, False]
    assert (net.layers[0].relu, net.layers[0].gelu) == (False, False)
    assert_same([net.layers[0].ln_gamma, net.layers[0].ln_beta], store.norms[0][:2])
    again = from_network(net)
    assert again.norm_layers == [0] and again.norms[0][2] == store.norms[0][2]
    assert_same(again.norms[0][:2], store.norms[0][:2])


def test_layernorm_refusals_change_nothing():
    rng = np.random.default_rng(2)
    weights, biases, masks, norms = _norm_chain(rng)
    I = weights[0].shape[0]
    _refused(lambda: ParameterStore(weights, biases, masks, None,
                                    [None, None, (np.ones(weights[2].shape[0], np.float32),
                                                  np.zeros(weights[2].shape[0], np.float32),
                                                  1e-5)]),
             "layer 2 has a LayerNorm: the chain's last layer gives the logits, which the loss "
             "takes as they are")
    _refused(lambda: ParameterStore(weights, biases, masks, None,
                                    [(np.ones(I + 1, np.float32), norms[0][1], 1e-5), None,
                                     None]),
             f"ln_g0 must have {I} values, not shape ({I + 1},)")
    _refused(lambda: ParameterStore(weights, biases, masks, None,
                                    [(norms[0][0], norms[0][1], -1.0), None, None]),
             "ln_eps0 must be a finite number of at least 0, not -1.0")
    store = ParameterStore(weights, biases, masks, None, norms)
    before = store.arrays()
    dW, db = random_grads(rng, store.shapes, float(store.scale))
    _refused(lambda: store.apply(dW, db), "dln is missing: the network has LayerNorm layers "
                                          "[0]")
    _refused(lambda: store.apply(dW, db, [None, None, None]),
             "dln[0] must be (dgamma, dbeta): layer 0 has LayerNorm")
    _refused(lambda: store.apply(dW, db, [(np.zeros(I, np.float64), np.zeros(I, np.float32)),
                                         None, None]),
             f"dln[0]'s dgamma must be float32 of shape ({I},), not float64 of shape ({I},)")
    plain = ParameterStore(weights, biases, masks)
    _refused(lambda: plain.apply(dW, db, [(np.zeros(I, np.float32),) * 2, None, None]),
             "dln has LayerNorm gradients, but the network has no LayerNorm layer")
    after = store.arrays()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
