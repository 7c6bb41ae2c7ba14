"""The workload shipped with wafertile: a pruned int8 classifier of handwritten digits.

scikit-learn carries the 8 x 8 digits data set in its wheel (``load_digits``, 1797 images, no
download). :func:`train` fits an MLP 64-128-64-10 with ReLU in numpy (Adam, cross-entropy,
fixed seed) on a stratified 75% split, prunes it by weight magnitude to 10% nonzero weights in
steps (60%, 40%, 25%, 15%, 10% kept), fine-tuning 30 epochs after each step and 40 more at a
lower rate at the end, with the pruned weights held at zero, and quantizes it to int8
(:func:`~wafertile.network.quantize.quantize`, calibrated on the training images). Measured:
float dense 98.4%, float pruned 96.9%, int8 pruned 96.9% on the 450 test images.

The result is cached in ``$WAFERTILE_CACHE/networks`` (default ``~/.cache/wafertile``) under a
hash of this file, so it is made once per machine (about 5 s) and remade when the recipe
changes; ``python -m wafertile.network.digits`` rebuilds it and prints the accuracies.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from ..files import cache_root
from .model import Network, load_network, save_network
from .quantize import FloatLayer, float_forward, prune, quantize

__all__ = ["SIZES", "digits_network", "split", "test_set", "train"]

_log = logging.getLogger(__name__)

#: Layer sizes of the classifier.
SIZES = (64, 128, 64, 10)
#: Share of the weights kept after pruning (90% zero weights).
DENSITY = 0.10
SEED = 0


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, x_test, y_train, y_test``: scikit-learn's bundled digits, pixels scaled to
    0 .. 1 (``pixel / 16``, float64), split 75% / 25% stratified with seed 0 (1347 and 450
    images): the split every digits workload of wafertile uses."""
    return _data()


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0  # pixel values 0 .. 16
    return train_test_split(x, digits.target, test_size=0.25, random_state=SEED,
                            stratify=digits.target)


def _fit(layers, masks, x, y, *, epochs: int, rng, lr: float = 2e-3) -> None:
    """Adam on the cross-entropy, mini-batches of 64; pruned weights stay zero."""
    params = [p for layer in layers for p in (layer.weights, layer.bias)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    onehot = np.eye(SIZES[-1])[y]
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            acts = [x[idx], *float_forward(layers, x[idx])]
            logits = acts[-1] - acts[-1].max(axis=1, keepdims=True)
            prob = np.exp(logits)
            prob /= prob.sum(axis=1, keepdims=True)
            grad = (prob - onehot[idx]) / len(idx)
            grads = []
            for n in reversed(range(len(layers))):
                layer = layers[n]
                if layer.relu:
                    grad = grad * (acts[n + 1] > 0)
                grads = [grad.T @ acts[n], grad.sum(axis=0), *grads]
                grad = grad @ layer.weights
            t += 1
            for k, (p, g) in enumerate(zip(params, grads, strict=True)):
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                p -= lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
            for layer, mask in zip(layers, masks, strict=True):
                layer.weights *= mask


def _accuracy(layers, x, y) -> float:
    return float(np.mean(np.argmax(float_forward(layers, x)[-1], axis=1) == y))


def train() -> tuple[Network, dict[str, float]]:
    """Train, prune and quantize the classifier; return it and the accuracies (float dense,
    float pruned) on the test split. BLAS runs on one thread: the matrices are small, and on a
    busy machine a thread pool made training 60x slower (measured: 661 ms instead of 10 ms an
    epoch at a load of 8 on 2 cores)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _train()


def _train() -> tuple[Network, dict[str, float]]:
    x_train, x_test, y_train, y_test = _data()
    rng = np.random.default_rng(SEED)
    layers = []
    for n in range(len(SIZES) - 1):
        fan_in = SIZES[n]
        layers.append(FloatLayer(rng.normal(0, np.sqrt(2 / fan_in), (SIZES[n + 1], fan_in)),
                                 np.zeros(SIZES[n + 1]), n < len(SIZES) - 2))
    dense_masks = [np.ones_like(layer.weights, dtype=bool) for layer in layers]
    _fit(layers, dense_masks, x_train, y_train, epochs=60, rng=rng)
    float_dense = _accuracy(layers, x_test, y_test)
    for keep in (0.6, 0.4, 0.25, 0.15, DENSITY):
        masks = prune(layers, keep)
        for layer, mask in zip(layers, masks, strict=True):
            layer.weights *= mask
        _fit(layers, masks, x_train, y_train, epochs=30, rng=rng)
    _fit(layers, masks, x_train, y_train, epochs=40, rng=rng, lr=5e-4)
    float_pruned = _accuracy(layers, x_test, y_test)
    # inputs in steps of 16/127: a pixel of 16 is 127
    net = quantize(layers, x_train, data_width=8, input_scale=1 / 127, name="digits")
    net.meta["float_accuracy"] = float_dense
    net.meta["float_pruned_accuracy"] = float_pruned
    return net, {"float_accuracy": float_dense, "float_pruned_accuracy": float_pruned}


def test_set(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test images as the network's int8 inputs, and their labels."""
    _x_train, x_test, _y_train, y_test = _data()
    scale = net.meta.get("input_scale", 1 / 127)
    x = np.clip(np.round(x_test / scale), -127, 127).astype(np.int64)
    return x, y_test.astype(np.int64)


def _cache_file() -> Path:
    base = cache_root()
    recipe = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return Path(base) / "networks" / f"digits-{recipe}.npz"


def digits_network(*, rebuild: bool = False) -> Network:
    """The cached classifier (trained on first use)."""
    path = _cache_file()
    if path.exists() and not rebuild:
        return load_network(path)
    _log.info(f"training the digits classifier (once; cached in {path})")
    net, _ = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    save_network(net, tmp)
    tmp.replace(path)
    return load_network(path)


if __name__ == "__main__":  # pragma: no cover - the recipe, by hand
    import time

    start = time.perf_counter()
    net, acc = train()
    from ..config import Config
    from ..sim.models.network import network_reference
    x, y = test_set(net)
    logits, _ = network_reference(Config(data_width=8, acc_width=32), net, x)
    print(f"float dense {100 * acc['float_accuracy']:.1f}%, float pruned "
          f"{100 * acc['float_pruned_accuracy']:.1f}%, int8 pruned "
          f"{100 * np.mean(np.argmax(logits, axis=1) == y):.1f}% ({net.nnz} nonzero weights, "
          f"density {net.density:.3f}) in {time.perf_counter() - start:.1f} s")
