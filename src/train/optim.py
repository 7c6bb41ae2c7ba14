"""The update rules of the parameter store: SGD, SGD with momentum, Adam (AdamW), each an
exact sequence of FP32 operations (``docs/training.md``, The optimizers, exactly).

Every line below is one numpy ``float32`` operation on ``float32`` operands (an array and a
0-D constant), so each result is rounded to FP32 at once, to nearest even, and no multiply-add
is fused. The update is elementwise; the lines follow the document's lines one for one.

One class per rule (:class:`Sgd`, :class:`Momentum`, :class:`Adam`), picked once from the
configuration by :func:`make_optimizer`; each names its per-parameter state vectors
(:attr:`Optimizer.slots`) and its per-run scalars (Adam's powers ``p1``, ``p2``).
"""

from __future__ import annotations

import numpy as np

from .config import TrainConfig

__all__ = ["Adam", "Momentum", "Optimizer", "Sgd", "make_optimizer"]

_ONE = np.float32(1)


class Optimizer:
    """An update rule: the FP32 constants of a configuration and the update of one group of
    parameters (the weights, or the biases).

    Parameters
    ----------
    config : TrainConfig
        The run's parameters; the constants are their FP32 roundings, made once here.

    Members
    -------
    slots : tuple of str
        The names of the per-parameter state vectors, each starting at +0.
    """

    name = ""
    slots: tuple[str, ...] = ()

    def __init__(self, config: TrainConfig):
        self._wd = config.fp32("weight_decay")

    def initial_scalars(self) -> np.ndarray:
        """The per-run FP32 scalars at the start (none but Adam's powers)."""
        return np.zeros(0, np.float32)

    def advance(self, scalars: np.ndarray) -> np.ndarray:
        """The scalars of the next update, from the current ones (once per applied update)."""
        return scalars

    def decay(self, lr: np.float32) -> np.float32 | None:
        """``d = fp32(lr * wd)``, or None when ``weight_decay`` is 0 (no decay line)."""
        return None if self._wd == 0 else lr * self._wd

    def update(self, w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray],
               scalars: np.ndarray, lr: np.float32, d: np.float32 | None
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One update of the parameters ``w`` by their unscaled gradients ``g``.

        Parameters
        ----------
        w, g : numpy.ndarray
            ``float32`` vectors of one length: the parameters and their gradients.
        state : dict
            The state vectors of :attr:`slots` (``float32``, as long as ``w``).
        scalars : numpy.ndarray
            This update's scalars (:meth:`advance`'s result).
        lr : numpy.float32
            This update's learning rate.
        d : numpy.float32 or None
            The decay ``fp32(lr * wd)`` for weights (None: no decay line; biases always None).

        Returns
        -------
        (numpy.ndarray, dict)
            The new parameters and state; the arguments are not changed.
        """
        raise NotImplementedError


class Sgd(Optimizer):
    """Plain SGD: ``w = fp32(w - fp32(lr * g))`` after the decay line."""

    name = "sgd"

    def update(self, w, g, state, scalars, lr, d):
        if d is not None:
            w = w - d * w
        w = w - lr * g
        return w, {}


class Momentum(Optimizer):
    """SGD with heavy-ball momentum (no dampening, no Nesterov): ``v = fp32(fp32(mu * v) +
    g)``, then the decay line and ``w = fp32(w - fp32(lr * v))``."""

    name = "momentum"
    slots = ("v",)

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self._mu = config.fp32("momentum")

    def update(self, w, g, state, scalars, lr, d):
        v = self._mu * state["v"] + g
        if d is not None:
            w = w - d * w
        w = w - lr * v
        return w, {"v": v}


class Adam(Optimizer):
    """Adam with decoupled weight decay (AdamW); bias corrections from the FP32 powers
    ``p1 = fp32(p1 * b1)``, ``p2 = fp32(p2 * b2)`` kept as state."""

    name = "adam"
    slots = ("m", "v")

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self._b1, self._b2 = config.fp32("beta1"), config.fp32("beta2")
        self._c1, self._c2 = _ONE - self._b1, _ONE - self._b2
        self._eps = config.fp32("eps")

    def initial_scalars(self) -> np.ndarray:
        """``[p1, p2] = [1, 1]``."""
        return np.ones(2, np.float32)

    def advance(self, scalars: np.ndarray) -> np.ndarray:
        """``[fp32(p1 * b1), fp32(p2 * b2)]``."""
        return np.array([scalars[0] * self._b1, scalars[1] * self._b2], np.float32)

    def update(self, w, g, state, scalars, lr, d):
        k1 = _ONE - scalars[0]
        k2 = _ONE - scalars[1]
        m = self._b1 * state["m"] + self._c1 * g
        v = self._b2 * state["v"] + self._c2 * (g * g)
        mh = m / k1
        vh = v / k2
        u = mh / (np.sqrt(vh) + self._eps)
        if d is not None:
            w = w - d * w
        w = w - lr * u
        return w, {"m": m, "v": v}


_KINDS: dict[str, type[Optimizer]] = {k.name: k for k in (Sgd, Momentum, Adam)}


def make_optimizer(config: TrainConfig) -> Optimizer:
    """The update rule ``config.optimizer`` names, with the configuration's constants."""
    return _KINDS[config.optimizer](config)
