"""The training loop: the fabric's step (:func:`wafertile.sim.models.training.training_step`)
and the store's update, batch after batch; and the FP32 baseline."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..hdl.core.fp import FP32
from ..network.gpt import gelu as fp32_gelu
from ..network.gpt import gelu_grad as fp32_gelu_grad
from ..sim.models.training import StepResult, forward, gelus, training_step
from ..train import ParameterStore

__all__ = ["StepRecord", "TrainRun", "accuracy", "batches", "fp32_forward", "train",
           "train_fp32"]


@dataclass(frozen=True)
class StepRecord:
    """One step: its number (from 1), the batch's mean loss, the share of the batch the
    forward pass classified right, whether the store applied the update (False: a gradient
    was not finite, the step was skipped) and the loss scale it ran with."""

    step: int
    loss: float
    batch_accuracy: float
    applied: bool
    scale: float


@dataclass
class TrainRun:
    """A run's store (trained in place) and its records."""

    store: ParameterStore
    records: list[StepRecord] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        return [r.loss for r in self.records]


def batches(n: int, batch: int, steps: int, seed: int) -> Iterator[np.ndarray]:
    """The indices of ``steps`` batches of a data set of ``n``: epoch after epoch, each a
    permutation (``numpy.random.default_rng(seed)``, one generator for the run) cut into
    batches of ``batch`` in order, the last of an epoch smaller when ``batch`` does not divide
    ``n``."""
    if n < 1 or batch < 1 or steps < 0:
        raise ValueError(f"batches needs n >= 1, batch >= 1, steps >= 0, not {n}, {batch}, "
                         f"{steps}")
    rng = np.random.default_rng(seed)
    made = 0
    while made < steps:
        order = rng.permutation(n)
        for start in range(0, n, batch):
            if made == steps:
                return
            yield order[start:start + batch]
            made += 1


def accuracy(config: Config, weights, biases, x, y, gelu=None, ln=None, res=None) -> float:
    """The share of ``x`` whose largest logit (the fabric's forward pass, its numerics) is the
    label; ``gelu``: per layer, GELU after it instead of ReLU; ``ln``: per layer, a
    LayerNorm instead (None or ``(gamma, beta, eps)``); ``res``: per layer, None or the
    earlier layer whose accumulators it adds."""
    logits, _acts = forward(config, weights, biases, x, gelu, ln=ln, res=res)
    return float(np.mean(np.argmax(FP32.values(logits), axis=1) == np.asarray(y)))


def train(config: Config, store: ParameterStore, x, y, *, steps: int, batch: int, seed: int,
          on_step: Callable[[StepRecord, StepResult], None] | None = None, gelu=None,
          res=None) -> TrainRun:
    """Train ``store`` (in place) for ``steps`` steps on the fabric's numerics.

    Each step streams ``store.stream_weights()``, the FP32 biases and the LayerNorm layers'
    gamma and beta (``store.norms``), runs
    :func:`~wafertile.sim.models.training.training_step` on the batch with the store's loss
    scale, and hands the gradients to ``store.apply``. ``on_step`` sees each record and the
    step's full result.
    """
    run = TrainRun(store)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    for step, idx in enumerate(batches(len(x), batch, steps, seed), 1):
        scale = float(store.scale)
        result = training_step(config, store.stream_weights(), store.biases, store.masks,
                               x[idx], y[idx], scale, gelu, store.norms, res)
        applied = store.apply(result.dw, result.db, result.dln)
        hits = np.argmax(result.logits, axis=1) == y[idx]
        record = StepRecord(step, result.loss, float(np.mean(hits)), applied, scale)
        run.records.append(record)
        if on_step is not None:
            on_step(record, result)
    return run


def fp32_forward(weights, biases, x, gelu=None, pre: list | None = None, *, ln=None,
                 norm: list | None = None, res=None) -> list[np.ndarray]:
    """The FP32 numpy forward pass of the baseline (matrix products, ReLU, or GELU after the
    layers ``gelu`` flags, or LayerNorm with no activation after those ``ln`` gives, but after
    the last layer): the activations entering each layer, then the logits; ``pre``, if given,
    gets each layer's output before its activation; ``norm`` each layer's ``(x^, r)`` of a
    LayerNorm (float32), else None; ``res``: per layer, None or the earlier layer whose
    output before its activation it adds."""
    acts = [np.asarray(x, np.float32)]
    flags = gelus(gelu, len(weights))
    lns = ln or [None] * len(weights)
    res = res or [None] * len(weights)
    zs: list[np.ndarray] = []
    for n, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = acts[-1] @ w.T + b
        if res[n] is not None:
            z = z + zs[res[n]]
        zs.append(z)
        if pre is not None:
            pre.append(z)
        if norm is not None:
            norm.append(None)
        if n == len(weights) - 1:
            acts.append(z)
        elif lns[n] is not None:
            g, beta, eps = lns[n]
            d = z - z.mean(axis=1, keepdims=True)
            r = np.float32(1) / np.sqrt((d * d).mean(axis=1, keepdims=True) + np.float32(eps))
            xhat = d * r
            if norm is not None:
                norm[-1] = (xhat, r)
            acts.append(xhat * g + beta)
        else:
            acts.append(fp32_gelu(z) if flags[n] else np.maximum(z, np.float32(0)))
    return acts


def train_fp32(store: ParameterStore, x, y, *, steps: int, batch: int, seed: int, gelu=None,
               res=None) -> TrainRun:
    """The baseline: a copy of ``store`` trained on the same batches (``seed``) with the same
    optimizer, its gradients computed in FP32 numpy (matrix products, no rounding to the
    tiles' format, no loss scale) from the FP32 master weights (and its LayerNorm layers'
    gamma and beta, through LayerNorm's exact derivative in FP32; a residual's layer sends its
    gradient to the layer it adds, ``res``)."""
    store = copy.deepcopy(store)
    run = TrainRun(store)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    for step, idx in enumerate(batches(len(x), batch, steps, seed), 1):
        ws = store.weights
        lns = store.norms or [None] * len(ws)
        pre: list[np.ndarray] = []
        norm: list = []
        acts = fp32_forward(ws, store.biases, x[idx], gelu, pre, ln=store.norms, norm=norm,
                            res=res)
        targets = {k: n for n, k in enumerate(res or ()) if k is not None}
        flags = gelus(gelu, len(ws))
        z = acts[-1].astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        rows = np.arange(len(idx))
        loss = float(np.mean(-np.log(p[rows, y[idx]])))
        hits = float(np.mean(np.argmax(z, axis=1) == y[idx]))
        p[rows, y[idx]] -= 1.0
        g = (p / len(idx)).astype(np.float32)
        dw, db = [None] * len(ws), [None] * len(ws)
        dln: list = [None] * len(ws)
        dz: dict[int, np.ndarray] = {}  # each layer's output gradient (before activation)
        for n in reversed(range(len(ws))):
            if n in targets:  # the layer that adds this one's outputs
                g = (g + dz[targets[n]]).astype(np.float32)
            dz[n] = g
            dw[n] = np.where(store.masks[n], g.T @ acts[n], np.float32(0)).astype(np.float32)
            db[n] = g.sum(axis=0, dtype=np.float32)
            if n and lns[n - 1] is not None:  # dX = r (g - mean(g) - x^ mean(g x^))
                xhat, r = norm[n - 1]
                dy = (g @ ws[n]).astype(np.float32)
                dln[n - 1] = ((dy * xhat).sum(axis=0, dtype=np.float32),
                              dy.sum(axis=0, dtype=np.float32))
                gg = dy * lns[n - 1][0]
                g = (r * (gg - gg.mean(axis=1, keepdims=True) - xhat * (
                    gg * xhat).mean(axis=1, keepdims=True))).astype(np.float32)
            elif n:
                slope = fp32_gelu_grad(pre[n - 1]) if flags[n - 1] else acts[n] > 0
                g = ((g @ ws[n]) * slope).astype(np.float32)
        scale = np.float32(store.scale)
        applied = store.apply([d * scale for d in dw], [d * scale for d in db],
                              [None if d is None else (d[0] * scale, d[1] * scale)
                               for d in dln])
        run.records.append(StepRecord(step, loss, hits, applied, float(scale)))
    return run
