"""The parameter store: the FP32 master weights of a masked chain of fully connected layers,
their optimizer state, the loss scale, and the update (``docs/training.md``).

The store is the box outside the array (the role of Cerebras' MemoryX): it hands out the
weights in the tiles' format (:meth:`ParameterStore.stream_weights`) and the loss scale, and
takes back the scaled gradients (:meth:`ParameterStore.apply`). It knows nothing of the array:
the only thing it shares with the fabric is the definition of the FP16 / BF16 formats and
their rounding (:class:`~wafertile.hdl.core.fp.FloatFormat`, the one conversion the host and
the reference models use).

Inside, a layer's master weights are the mask's positions only, in row-major order, and all
layers' are one FP32 vector (the biases another): the update is elementwise, so one vector
operation per line of the document updates every layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..hdl.core.fp import float_format
from .config import TrainConfig, TrainError, check_dtype
from .optim import make_optimizer
from .scaling import LossScale
from .schedule import learning_rate

__all__ = ["ParameterStore"]


def _float32(name: str, values) -> np.ndarray:
    """``values`` as float32, if they are float values that float32 holds exactly."""
    arr = np.asarray(values)
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise TrainError(f"{name} must be a float array (float16, float32, or float64 values "
                         f"that float32 holds exactly), not {arr.dtype}")
    with np.errstate(over="ignore"):
        single = arr.astype(np.float32)
    inexact = (single.astype(arr.dtype) != arr) & ~np.isnan(arr)
    if inexact.any():
        where = list(map(int, np.unravel_index(int(np.argmax(inexact)), arr.shape)))
        raise TrainError(f"{name}{where} = {float(arr[tuple(where)])!r} is not a float32 "
                         f"number (nearest: {float(single[tuple(where)])!r})")
    bad = ~np.isfinite(single)
    if bad.any():
        where = list(map(int, np.unravel_index(int(np.argmax(bad)), arr.shape)))
        raise TrainError(f"{name}{where} = {float(single[tuple(where)])} is not finite")
    return single


def _eps(layer: int, value) -> np.float32:
    """A LayerNorm's ``eps`` as FP32: finite and at least 0."""
    try:
        eps = np.float32(value)
    except (TypeError, ValueError):
        raise TrainError(f"ln_eps{layer} must be a number, not {value!r}") from None
    if np.ndim(eps) or not (np.isfinite(eps) and eps >= 0):
        raise TrainError(f"ln_eps{layer} must be a finite number of at least 0, not {value!r}")
    return eps


def _mask(name: str, values, shape: tuple[int, ...], weights: str) -> np.ndarray:
    arr = np.asarray(values)
    if not (arr.dtype == bool or (arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all())):
        raise TrainError(f"{name} must be bool (or 0 and 1), not {arr.dtype}")
    if arr.shape != shape:
        raise TrainError(f"{name} has shape {arr.shape}, but {weights} has shape {shape}")
    return arr.astype(bool)


def _per_layer(name: str, arrays, count: int, what: str = "the network has") -> list:
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence):
        raise TrainError(f"{name} must be a list of arrays, one per layer, not "
                         f"{type(arrays).__name__}")
    if len(arrays) != count:
        raise TrainError(f"{name} has {len(arrays)} arrays, but {what} {count} layers")
    return list(arrays)


class ParameterStore:
    """FP32 master weights and biases of a chain of fully connected layers with fixed masks,
    the optimizer state and the loss scale.

    Parameters
    ----------
    weights : list of array
        ``W_l``, ``I_l x J_l`` with ``J_{l+1} = I_l``: float16, float32, or float64 values that
        float32 holds exactly; finite; +0 or -0 outside the mask.
    biases : list of array, optional
        ``b_l``, ``I_l`` values of the same kind (default +0).
    masks : list of array, optional
        The fixed masks (bool, or integers 0 and 1), one per layer, of the weights' shapes
        (default: the weights' nonzeros).
    config : TrainConfig, optional
        The optimizer, schedule and loss scaling (default ``TrainConfig()``).
    norms : list, optional
        Per layer None or ``(gamma, beta, eps)``: a LayerNorm layer's scale and shift
        (``I_l`` values each, of the weights' kind) and its ``eps`` (a number, taken as
        FP32, finite and at least 0); not on the last layer (docs/training.md, "LayerNorm
        layers").

    Raises
    ------
    TrainError
        For an empty chain, layers that do not chain, a mask, bias, gamma or beta of the
        wrong shape or type, a weight that is not a finite FP32 number, or nonzero outside
        its mask, or a LayerNorm on the last layer.
    """

    def __init__(self, weights: Sequence, biases: Sequence | None = None,
                 masks: Sequence | None = None, config: TrainConfig | None = None,
                 norms: Sequence | None = None):
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise TrainError(f"config must be a TrainConfig, not {type(config).__name__}")
        if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
            raise TrainError(f"weights must be a list of arrays, one per layer, not "
                             f"{type(weights).__name__}")
        if not weights:
            raise TrainError("weights must hold at least one layer")
        count = len(weights)
        ws = [_float32(f"w{n}", w) for n, w in enumerate(weights)]
        for n, w in enumerate(ws):
            if w.ndim != 2 or 0 in w.shape:
                raise TrainError(f"w{n} must be a non-empty 2-D array, not shape {w.shape}")
            if n and w.shape[1] != ws[n - 1].shape[0]:
                raise TrainError(f"w{n} has {w.shape[1]} inputs but layer {n - 1} has "
                                 f"{ws[n - 1].shape[0]} outputs")
        if masks is None:
            ms = [w != 0 for w in ws]
        else:
            ms = [_mask(f"mask {n}", m, ws[n].shape, f"w{n}")
                  for n, m in enumerate(_per_layer("masks", masks, count, "weights has"))]
        for n, (w, m) in enumerate(zip(ws, ms, strict=True)):
            outside = (w != 0) & ~m
            if outside.any():
                i, j = map(int, np.unravel_index(int(np.argmax(outside)), w.shape))
                raise TrainError(f"w{n}[{i}, {j}] = {float(w[i, j])!r} lies outside mask {n} "
                                 f"(a masked-out weight is 0)")
        if biases is None:
            bs = [np.zeros(w.shape[0], np.float32) for w in ws]
        else:
            bs = [_float32(f"b{n}", b)
                  for n, b in enumerate(_per_layer("biases", biases, count, "weights has"))]
            for n, b in enumerate(bs):
                if b.shape != (ws[n].shape[0],):
                    raise TrainError(f"b{n} must have {ws[n].shape[0]} values, not shape "
                                     f"{b.shape}")
        ns: list = [None] * count
        if norms is not None:
            for n, norm in enumerate(_per_layer("norms", norms, count, "weights has")):
                if norm is None:
                    continue
                if n == count - 1:
                    raise TrainError(f"layer {n} has a LayerNorm: the chain's last layer gives "
                                     f"the logits, which the loss takes as they are")
                if not (isinstance(norm, Sequence) and len(norm) == 3):
                    raise TrainError(f"norms[{n}] must be None or (gamma, beta, eps)")
                g, b = (_float32(f"ln_{k}{n}", v) for k, v in zip("gb", norm[:2], strict=True))
                for k, v in (("g", g), ("b", b)):
                    if v.shape != (ws[n].shape[0],):
                        raise TrainError(f"ln_{k}{n} must have {ws[n].shape[0]} values, not "
                                         f"shape {v.shape}")
                ns[n] = (g, b, _eps(n, norm[2]))
        self._setup(config, ms, [w[m] for w, m in zip(ws, ms, strict=True)], bs, ns)

    def _setup(self, config: TrainConfig, masks: list[np.ndarray], flat: list[np.ndarray],
               biases: list[np.ndarray], norms: list | None = None) -> None:
        """The store of checked masks, the mask's weights (row-major), biases and LayerNorms
        (per layer None or ``(gamma, beta, eps)``); the state at its start."""
        self._config = config
        self._optimizer = make_optimizer(config)
        self._masks = [m.copy() for m in masks]
        for m in self._masks:
            m.flags.writeable = False
        self._w_ends = np.cumsum([int(m.sum()) for m in masks])
        self._b_ends = np.cumsum([m.shape[0] for m in masks])
        self._w = np.concatenate(flat).astype(np.float32)
        self._b = np.concatenate(biases).astype(np.float32)
        self._w_state = {n: np.zeros_like(self._w) for n in self._optimizer.slots}
        self._b_state = {n: np.zeros_like(self._b) for n in self._optimizer.slots}
        # a LayerNorm layer's gamma and beta, layer by layer, in one vector updated as the
        # biases; eps per layer (None: no LayerNorm)
        norms = norms or [None] * len(masks)
        self._eps = [None if v is None else np.float32(v[2]) for v in norms]
        parts = [np.asarray(a, np.float32) for v in norms if v is not None for a in v[:2]]
        self._n = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        self._n_ends = np.cumsum([len(a) for a in parts])
        self._n_state = {n: np.zeros_like(self._n) for n in self._optimizer.slots}
        self._scalars = self._optimizer.initial_scalars()
        self._loss_scale = LossScale.start(config)
        self._step = 0
        self._skipped = 0

    # -- what the store holds ---------------------------------------------------------------

    @property
    def config(self) -> TrainConfig:
        return self._config

    @property
    def layers(self) -> int:
        """The number of layers."""
        return len(self._masks)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """``(I_l, J_l)`` of every layer."""
        return [m.shape for m in self._masks]

    @property
    def masks(self) -> list[np.ndarray]:
        """The fixed masks (read-only bool arrays)."""
        return list(self._masks)

    @property
    def nnz(self) -> int:
        """The weights that are parameters (the masks' nonzeros), all layers."""
        return int(self._w.size)

    @property
    def step(self) -> int:
        """Updates applied."""
        return self._step

    @property
    def skipped(self) -> int:
        """Steps skipped for a gradient that was not finite."""
        return self._skipped

    @property
    def scale(self) -> np.float32:
        """The loss scale ``S`` of the next step (the loss gradient is multiplied by it)."""
        return np.float32(self._loss_scale.scale)

    @property
    def good_steps(self) -> int:
        """Updates applied since the last skipped step or the last growth of the loss
        scale."""
        return self._loss_scale.good

    def learning_rate(self) -> np.float32:
        """The learning rate the next update will use."""
        return learning_rate(self._config, self._step + 1)

    def _split(self, flat: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
        return np.split(flat, ends[:-1])

    def _dense(self, flat: np.ndarray) -> list[np.ndarray]:
        out = []
        for m, values in zip(self._masks, self._split(flat, self._w_ends), strict=True):
            dense = np.zeros(m.shape, np.float32)
            dense[m] = values
            out.append(dense)
        return out

    @property
    def weights(self) -> list[np.ndarray]:
        """The FP32 master weights, ``I_l x J_l`` (+0 outside the masks; copies)."""
        return self._dense(self._w)

    @property
    def biases(self) -> list[np.ndarray]:
        """The FP32 master biases (copies)."""
        return [b.copy() for b in self._split(self._b, self._b_ends)]

    @property
    def norm_layers(self) -> list[int]:
        """The LayerNorm layers, ascending."""
        return [n for n, e in enumerate(self._eps) if e is not None]

    @property
    def norms(self) -> list | None:
        """Per layer None or ``(gamma, beta, eps)`` of a LayerNorm layer (FP32 copies, ``eps``
        a float32), as ``training_step(ln=)`` takes them; None without LayerNorm layers."""
        if not self.norm_layers:
            return None
        parts = iter(self._split(self._n, self._n_ends))
        return [None if e is None else (next(parts).copy(), next(parts).copy(), e)
                for e in self._eps]

    def optimizer_state(self) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
        """Each state vector by name (``"v"``; ``"m"``, ``"v"``): ``(weights, biases)``,
        per layer, the weights' as ``I_l x J_l`` arrays (+0 outside the masks; copies)."""
        return {n: (self._dense(self._w_state[n]),
                    [b.copy() for b in self._split(self._b_state[n], self._b_ends)])
                for n in self._optimizer.slots}

    @property
    def powers(self) -> np.ndarray:
        """Adam's FP32 powers ``[p1, p2]`` (empty for the other optimizers; a copy)."""
        return self._scalars.copy()

    # -- a step -------------------------------------------------------------------------------

    def stream_weights(self, dtype: str | None = None) -> list[np.ndarray]:
        """The weights to stream to the tiles: the masters rounded to ``dtype`` (default the
        configuration's), to nearest even, as ``float32`` arrays of numbers of that format.

        Overflow gives an infinity, values below the format's range a subnormal or a signed
        zero; positions outside the masks are +0.

        Raises
        ------
        TrainError
            If ``dtype`` is not ``"fp16"`` or ``"bf16"``.
        """
        fmt = float_format(check_dtype(self._config.dtype if dtype is None else dtype))
        return [fmt.values(fmt.bits(w)) for w in self.weights]

    def _gather(self, name: str, grads, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        out = []
        for n, g in enumerate(_per_layer(name, grads, self.layers)):
            g = np.asarray(g)
            if g.dtype != np.float32:
                raise TrainError(f"{name}[{n}] must be a float32 array, not {g.dtype}")
            if g.shape != shapes[n]:
                raise TrainError(f"{name}[{n}] has shape {g.shape}, not the layer's "
                                 f"{shapes[n]}")
            out.append(g)
        return out

    def _gather_norms(self, dln: Sequence | None) -> np.ndarray:
        """The LayerNorm layers' gradients of ``dln`` (per layer None or ``(dgamma,
        dbeta)``) as one vector in the store's order."""
        layers = self.norm_layers
        if not layers:
            if dln is not None and any(d is not None for d in dln):
                raise TrainError("dln has LayerNorm gradients, but the network has no "
                                 "LayerNorm layer")
            return np.zeros(0, np.float32)
        if dln is None:
            raise TrainError(f"dln is missing: the network has LayerNorm layers {layers}")
        out = []
        for n, d in enumerate(_per_layer("dln", dln, self.layers)):
            if (d is None) != (n not in layers):
                raise TrainError(f"dln[{n}] must be {'(dgamma, dbeta)' if n in layers else None}"
                                 f": layer {n} {'has' if n in layers else 'has no'} LayerNorm")
            if d is None:
                continue
            if not (isinstance(d, Sequence) and len(d) == 2):
                raise TrainError(f"dln[{n}] must be (dgamma, dbeta)")
            for k, g in zip(("dgamma", "dbeta"), d, strict=True):
                g = np.asarray(g)
                if g.dtype != np.float32 or g.shape != (self.shapes[n][0],):
                    raise TrainError(f"dln[{n}]'s {k} must be float32 of shape "
                                     f"({self.shapes[n][0]},), not {g.dtype} of shape "
                                     f"{g.shape}")
                out.append(g)
        return np.concatenate(out)

    def apply(self, dW: Sequence, db: Sequence, dln: Sequence | None = None) -> bool:
        """One step with the gradients of a backward pass, multiplied by the loss scale
        (``docs/training.md``, One step, in order).

        Parameters
        ----------
        dW : list of numpy.ndarray
            ``float32``, ``I_l x J_l`` per layer; only the mask's positions are read.
        db : list of numpy.ndarray
            ``float32``, ``I_l`` per layer.
        dln : list, optional
            Per layer None or ``(dgamma, dbeta)`` (``float32``, ``I_l`` each): needed, for
            exactly its LayerNorm layers, by a store that has them.

        Returns
        -------
        bool
            True if the update was applied; False if a gradient was an infinity or a NaN and
            the step was skipped (nothing changed but :attr:`skipped` and the loss scale).

        Raises
        ------
        TrainError
            If the gradients are not one ``float32`` array of the layer's shape per layer;
            nothing changes then.
        """
        # 1-2. check and gather: the mask's positions, row-major; the biases
        dws = self._gather("dW", dW, self.shapes)
        dbs = self._gather("db", db, [(s[0],) for s in self.shapes])
        gw = np.concatenate([g[m] for g, m in zip(dws, self._masks, strict=True)])
        gb = np.concatenate(dbs)
        gn = self._gather_norms(dln)
        # 3. a gradient that is not finite skips the step
        if not (np.isfinite(gw).all() and np.isfinite(gb).all() and np.isfinite(gn).all()):
            self._skipped += 1
            self._loss_scale.skipped(self._config)
            return False
        opt = self._optimizer
        with np.errstate(all="ignore"):  # IEEE results (infinities, subnormals), no warnings
            # 4. unscale
            r = self._loss_scale.inverse()
            gw = gw * r
            gb = gb * r
            gn = gn * r
            # 5. this update's learning rate, scalars and decay
            t = self._step + 1
            lr = learning_rate(self._config, t)
            scalars = opt.advance(self._scalars)
            d = opt.decay(lr)
            # 6. the update: weights with the decay line, biases without
            w, w_state = opt.update(self._w, gw, self._w_state, scalars, lr, d)
            b, b_state = opt.update(self._b, gb, self._b_state, scalars, lr, None)
            g, n_state = opt.update(self._n, gn, self._n_state, scalars, lr, None)
        # 7. count
        self._w, self._w_state, self._b, self._b_state = w, w_state, b, b_state
        self._n, self._n_state = g, n_state
        self._scalars = scalars
        self._step = t
        self._loss_scale.applied(self._config)
        return True

    # -- the checkpoint's contents ---------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The store's arrays under the checkpoint's keys (``docs/training.md``,
        Checkpoints): ``mask{l}``, ``w{l}``, ``b{l}``, ``{name}_w{l}``, ``{name}_b{l}``; for
        LayerNorm layers ``ln_g{l}``, ``ln_b{l}``, ``ln_eps{l}``, ``{name}_ln_g{l}``,
        ``{name}_ln_b{l}``; ``powers`` (Adam), ``scale``."""
        out: dict[str, np.ndarray] = {}
        groups = {"w": (self._w, self._w_ends), "b": (self._b, self._b_ends)}
        groups.update({f"{n}_w": (v, self._w_ends) for n, v in self._w_state.items()})
        groups.update({f"{n}_b": (v, self._b_ends) for n, v in self._b_state.items()})
        for n, m in enumerate(self._masks):
            out[f"mask{n}"] = m.copy()
        for key, (flat, ends) in groups.items():
            for n, part in enumerate(self._split(flat, ends)):
                out[f"{key}{n}"] = part.copy()
        layers = self.norm_layers
        for prefix, flat in [("", self._n), *((f"{k}_", v) for k, v in self._n_state.items())]:
            parts = self._split(flat, self._n_ends) if layers else []
            for k, n in enumerate(layers):
                out[f"{prefix}ln_g{n}"] = parts[2 * k].copy()
                out[f"{prefix}ln_b{n}"] = parts[2 * k + 1].copy()
        for n in layers:
            out[f"ln_eps{n}"] = np.float32(self._eps[n])
        if self._scalars.size:
            out["powers"] = self._scalars.copy()
        out["scale"] = np.float32(self._loss_scale.scale)
        return out

    def counters(self) -> dict[str, int]:
        """``step``, ``skipped`` and ``good`` (the loss scale's count)."""
        return {"step": self._step, "skipped": self._skipped, "good": self._loss_scale.good}

    @classmethod
    def restore(cls, config: TrainConfig, shapes: list[tuple[int, int]],
                arrays: dict[str, np.ndarray], counters: dict[str, int]) -> ParameterStore:
        """The store that :meth:`arrays` and :meth:`counters` describe.

        Raises
        ------
        TrainError
            For a key missing or unknown, an array of the wrong type or shape, a counter that
            is not an integer of at least 0, or a loss-scale state that breaks the
            configuration's rules (the message names it, without a file).
        """
        store = cls.__new__(cls)
        arrays = dict(arrays)

        def take(key: str, dtype, shape: tuple[int, ...]) -> np.ndarray:
            if key not in arrays:
                raise TrainError(f"key {key!r} is missing")
            a = np.asarray(arrays.pop(key))
            if a.dtype != dtype or a.shape != shape:
                raise TrainError(f"{key} must be {np.dtype(dtype)} of shape {shape}, not "
                                 f"{a.dtype} of shape {a.shape}")
            return a

        masks = [take(f"mask{n}", bool, tuple(s)) for n, s in enumerate(shapes)]
        flat = [take(f"w{n}", np.float32, (int(m.sum()),)) for n, m in enumerate(masks)]
        biases = [take(f"b{n}", np.float32, (m.shape[0],)) for n, m in enumerate(masks)]
        layers = [n for n in range(len(masks)) if f"ln_g{n}" in arrays]
        norms: list = [None] * len(masks)
        for n in layers:
            norms[n] = (take(f"ln_g{n}", np.float32, (masks[n].shape[0],)),
                        take(f"ln_b{n}", np.float32, (masks[n].shape[0],)),
                        _eps(n, take(f"ln_eps{n}", np.float32, ())))
        if layers and layers[-1] == len(masks) - 1:
            raise TrainError(f"layer {layers[-1]} has a LayerNorm: the chain's last layer "
                             f"gives the logits")
        store._setup(config, masks, flat, biases, norms)
        for name in store._optimizer.slots:
            store._w_state[name] = np.concatenate(
                [take(f"{name}_w{n}", np.float32, f.shape) for n, f in enumerate(flat)])
            store._b_state[name] = np.concatenate(
                [take(f"{name}_b{n}", np.float32, b.shape) for n, b in enumerate(biases)])
            parts = [take(f"{name}_ln_{k}{n}", np.float32, (masks[n].shape[0],))
                     for n in layers for k in "gb"]
            store._n_state[name] = (np.concatenate(parts) if parts else
                                    np.zeros(0, np.float32))
        if store._scalars.size:
            store._scalars = take("powers", np.float32, store._scalars.shape).copy()
        scale = float(take("scale", np.float32, ()))
        if arrays:
            raise TrainError(f"unknown key {sorted(arrays)[0]!r}")
        for key in ("step", "skipped", "good"):
            value = counters.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TrainError(f"{key} must be an integer of at least 0, not {value!r}")
        store._step, store._skipped = counters["step"], counters["skipped"]
        store._loss_scale = LossScale(scale, counters["good"])
        why = store._loss_scale.check(config)
        if why:
            raise TrainError(why)
        return store
