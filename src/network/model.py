"""A quantized network of fully connected layers, and its ``.npz`` file format.

A network is a chain of layers ``x_{l+1} = requant_l(x_l @ W_l.T + b_l)``: integer weights
``W_l`` (``I_l x J_l``, ``J_{l+1} = I_l``), biases ``b_l`` at accumulator scale, and for every
layer but the last a requantization to the next layer's activations (``docs/network.md``)::

    x_{l+1} = clamp(relu?(round(acc * mult / 2**shift)), data_min, data_max)

with ``round`` to nearest, ties away from zero (the tile's FINISH). ``mult`` and ``shift``
are one value per layer or one per output. The last layer's accumulators are the network's
outputs (logits): they leave the array as they are.

A floating-point network (``dtype`` ``"fp16"`` or ``"bf16"``) has float weights that are
numbers of its format, FP32 biases (the accumulators' starting values) and no ``mult`` /
``shift``: its hand-off is ReLU or GELU (if set) in FP32 and the rounding of the FP32
accumulator to the format, to nearest even (``docs/float.md``; GELU, the tanh form, is
``docs/nonlinear.md``'s, on tiles with the nonlinear unit)::

    x_{l+1} = to_half(act(x_l @ W_l.T + b_l))          accumulated in FP32, act: relu, gelu
                                                       or none

The ``.npz`` file (``numpy.savez``): ``format = "wafertile-network/1"``, ``data_width`` (8 or
16), ``layers`` (L), and per layer ``l``: ``w{l}`` (integers, ``I x J``), ``b{l}`` (optional,
``I`` integers, default 0), and for ``l < L - 1``: ``mult{l}`` and ``shift{l}`` (a scalar or
``I`` integers), ``relu{l}`` (0 or 1). Optional ``dtype`` (``"int8"``, ``"int16"``,
``"fp16"``, ``"bf16"``; default the integer format of ``data_width``); with ``"fp16"`` or
``"bf16"`` (and ``data_width = 16``), ``w{l}`` are float16 or float32 arrays of numbers of the
format, ``b{l}`` float32 values, and there are no ``mult{l}`` / ``shift{l}``; for ``l < L -
1`` an optional ``gelu{l}`` (0 or 1, default 0; not with ``relu{l} = 1``), and an optional
``softmax`` (0 or 1, default 0: the outputs are then the softmax of the last layer's
accumulators, per input, made on the fabric: ``docs/nonlinear.md``), and per layer optional
``ln_g{l}`` and ``ln_b{l}`` (together: ``I`` float32 values each, LayerNorm's scale and shift)
and ``ln_eps{l}`` (default 1e-5): LayerNorm of the layer's accumulators per input, before its
hand-off, made on the fabric; for ``l < L - 1`` an optional ``attn{l}`` (the number of heads
``H``, default 0: none): layer ``l`` is then the projection of causal self-attention, its
``3 H D`` outputs the queries (already scaled), keys and values of ``H`` heads of ``D``
features, and the next layer's inputs are the attention's ``H D`` outputs
(``docs/attention.md``), and with attention an optional ``seq`` (positions per sequence: the
inputs are sequences of ``seq`` rows each, one after the other, each attending to its own
positions only; default: the inputs are one sequence); an optional ``res{l}`` (an earlier layer
``k``, ``0 <= k < l``, with as many outputs): the residual connection, layer ``l``'s
accumulators add layer ``k``'s outputs as they were before its LayerNorm, rounded to the
format (``docs/network.md``, "Residual connections"). Optional:
``name`` (a string), ``input_scale`` (the float value of one input step, for float inputs),
``float_accuracy`` and ``float_pruned_accuracy`` (information: the float model's accuracy,
dense and pruned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DTYPES
from ..errors import InputError
from ..files import read_npy, read_npz
from ..formats import float_words, fp32_words
from ..hdl.flit import MULT_WIDTH

__all__ = ["FORMAT", "Layer", "Network", "NetworkError", "load_labels", "load_network",
           "save_network"]

#: The value of the ``format`` key of a network file.
FORMAT = "wafertile-network/1"
#: Optional float information a network file may carry.
_META = ("input_scale", "float_accuracy", "float_pruned_accuracy")


class NetworkError(InputError):
    """A network (file) cannot be used: the message names the key or layer and the rule."""


@dataclass(frozen=True)
class Layer:
    """One fully connected layer: ``weights`` (``I x J``), ``bias`` (``I``), and, but for the
    last layer, the requantization: ``mult`` and ``shift`` (``I`` each) and ``relu`` (a float
    layer: ``relu`` or ``gelu`` only)."""

    weights: np.ndarray
    bias: np.ndarray
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    relu: bool = False
    gelu: bool = False
    #: LayerNorm of the accumulators before the hand-off (float layers: docs/nonlinear.md):
    #: gamma and beta, FP32, one per output (None: no LayerNorm), and eps (FP32)
    ln_gamma: np.ndarray | None = None
    ln_beta: np.ndarray | None = None
    ln_eps: float = 1e-5
    #: causal self-attention after the layer (float layers: docs/attention.md): its number
    #: of heads (0: none); the layer's outputs are then q, k and v of ``attn`` heads
    attn: int = 0
    #: the residual connection (float layers: docs/network.md): the earlier layer whose
    #: outputs (before its LayerNorm, rounded to the format) this layer's accumulators add
    #: after their MACs (None: none)
    res: int | None = None

    @property
    def layernorm(self) -> bool:
        return self.ln_gamma is not None

    @property
    def outputs(self) -> int:
        return self.weights.shape[0]

    @property
    def hands_on(self) -> int:
        """What the next layer takes: the outputs, or the attention's (a third of them)."""
        return self.outputs // 3 if self.attn else self.outputs

    @property
    def inputs(self) -> int:
        return self.weights.shape[1]

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.weights))


@dataclass
class Network:
    """A chain of :class:`Layer` s over ``data_width``-bit activations and weights of number
    format ``dtype`` (default: the integer format of ``data_width``)."""

    layers: list[Layer]
    data_width: int
    name: str = ""
    #: information carried along (``input_scale``, ``float_accuracy``, ...)
    meta: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None
    #: where the network was read from, for the messages about its keys (``"network file
    #: 'net.npz'"``; empty for a network made in Python)
    source: str = field(default="", compare=False)
    #: the outputs are the softmax of the last layer's accumulators, made on the fabric (a
    #: float network on tiles with the nonlinear unit; docs/nonlinear.md)
    softmax: bool = False
    #: positions per sequence of a network with attention: the inputs are sequences of
    #: ``seq`` rows each (None: the inputs are one sequence; docs/attention.md)
    seq: int | None = None

    def __post_init__(self) -> None:
        if self.dtype is None:
            self.dtype = {8: "int8"}.get(self.data_width, "int16")

    def error(self, message: str) -> NetworkError:
        """A :class:`NetworkError` about one of the network's keys, naming its file first
        (``"network file 'net.npz': b0 must ..."``) when it was read from one."""
        return NetworkError(f"{self.source}: {message}" if self.source else message)

    @property
    def is_float(self) -> bool:
        return self.dtype in ("fp16", "bf16")

    @property
    def inputs(self) -> int:
        return self.layers[0].inputs

    @property
    def outputs(self) -> int:
        return self.layers[-1].outputs

    @property
    def nnz(self) -> int:
        return sum(layer.nnz for layer in self.layers)

    @property
    def density(self) -> float:
        return self.nnz / max(1, sum(layer.weights.size for layer in self.layers))

    def check(self) -> None:
        """Raise :class:`NetworkError` for a network that breaks the format's rules."""
        if self.data_width not in (8, 16):
            raise NetworkError(f"data_width must be 8 or 16, not {self.data_width!r}")
        if self.dtype not in DTYPES:
            raise NetworkError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, not "
                               f"{self.dtype!r}")
        if DTYPES[self.dtype] != self.data_width:
            raise NetworkError(f"data_width must be {DTYPES[self.dtype]} with dtype "
                               f"{self.dtype!r}, not {self.data_width}")
        if not self.layers:
            raise NetworkError("a network needs at least one layer")
        if self.seq is not None:
            if not any(layer.attn for layer in self.layers):
                raise self.error(f"seq = {self.seq} has no meaning without attention (attn{{l}}):"
                                 f" the layers see each input on its own")
            if isinstance(self.seq, bool) or not isinstance(self.seq, (int, np.integer)) or \
                    self.seq < 1:
                raise self.error(f"seq must be an integer >= 1 (positions per sequence), not "
                                 f"{self.seq!r}")
        scale = self.meta.get("input_scale")
        if scale is not None and not (np.isfinite(scale) and scale > 0):
            raise NetworkError(f"input_scale must be a positive finite number (the float "
                               f"value of one input step), not {scale!r}")
        if self.is_float:
            self._check_float()
            return
        ln = [n for n, layer in enumerate(self.layers) if layer.layernorm]
        if ln:
            raise self.error(f"ln_g{ln[0]} needs a float dtype ('fp16' or 'bf16': LayerNorm is "
                             f"computed in FP32 by the nonlinear unit), not {self.dtype!r}")
        if self.softmax:
            raise self.error(f"softmax needs a float dtype ('fp16' or 'bf16': the softmax is "
                             f"computed in FP32 by the nonlinear unit), not {self.dtype!r}")
        lo, hi = -(1 << (self.data_width - 1)), (1 << (self.data_width - 1)) - 1
        for n, layer in enumerate(self.layers):
            w = layer.weights
            if w.ndim != 2 or 0 in w.shape:
                raise NetworkError(f"w{n} must be a non-empty 2-D array, not shape {w.shape}")
            if n and w.shape[1] != self.layers[n - 1].hands_on:
                raise NetworkError(f"w{n} has {w.shape[1]} inputs but layer {n - 1} has "
                                   f"{self.layers[n - 1].hands_on} outputs"
                                   + (" (its attention's)" if self.layers[n - 1].attn else ""))
            if w.min() < lo or w.max() > hi:
                raise NetworkError(f"w{n} must be within the {self.data_width}-bit signed range "
                                   f"{lo}..{hi}, found {w.min()}..{w.max()}")
            if layer.bias.shape != (w.shape[0],):
                raise NetworkError(f"b{n} must have {w.shape[0]} values, not shape "
                                   f"{layer.bias.shape}")
            if layer.gelu:
                raise NetworkError(f"gelu{n} needs a float dtype ('fp16' or 'bf16': GELU is "
                                   f"computed in FP32), not {self.dtype!r}")
            if layer.attn:
                raise NetworkError(f"attn{n} needs a float dtype ('fp16' or 'bf16': the "
                                   f"attention's softmax is computed in FP32), not "
                                   f"{self.dtype!r}")
            if layer.res is not None:
                raise NetworkError(f"res{n} needs a float dtype ('fp16' or 'bf16': an integer "
                                   f"layer's outputs and accumulators have different scales), "
                                   f"not {self.dtype!r}")
            last = n == len(self.layers) - 1
            if last:
                continue
            for key, values, top in (("mult", layer.mult, (1 << MULT_WIDTH) - 1),
                                     ("shift", layer.shift, 80)):
                if values is None:
                    raise NetworkError(f"{key}{n} is missing (every layer but the last "
                                       f"requantizes its outputs)")
                if values.shape != (w.shape[0],):
                    raise NetworkError(f"{key}{n} must be a scalar or {w.shape[0]} values, not "
                                       f"shape {values.shape}")
                if values.min() < 0 or values.max() > top:
                    raise NetworkError(f"{key}{n} must be from 0 to {top}, found "
                                       f"{values.min()}..{values.max()}")


    def _check_float(self) -> None:
        for n, layer in enumerate(self.layers):
            w = np.asarray(layer.weights)
            if w.ndim != 2 or 0 in w.shape:
                raise NetworkError(f"w{n} must be a non-empty 2-D array, not shape {w.shape}")
            if n and w.shape[1] != self.layers[n - 1].hands_on:
                raise NetworkError(f"w{n} has {w.shape[1]} inputs but layer {n - 1} has "
                                   f"{self.layers[n - 1].hands_on} outputs"
                                   + (" (its attention's)" if self.layers[n - 1].attn else ""))
            float_words(self.dtype, f"w{n}", w, error=NetworkError)
            if np.shape(layer.bias) != (w.shape[0],):
                raise NetworkError(f"b{n} must have {w.shape[0]} values, not shape "
                                   f"{np.shape(layer.bias)}")
            fp32_words(f"b{n}", layer.bias, error=NetworkError)
            if (layer.ln_gamma is None) != (layer.ln_beta is None):
                raise NetworkError(f"ln_g{n} and ln_b{n} go together (LayerNorm's scale and "
                                   f"shift)")
            if layer.layernorm:
                for key, values in ((f"ln_g{n}", layer.ln_gamma), (f"ln_b{n}", layer.ln_beta)):
                    if np.shape(values) != (w.shape[0],):
                        raise NetworkError(f"{key} must have {w.shape[0]} values, not shape "
                                           f"{np.shape(values)}")
                    words = fp32_words(key, values, error=NetworkError)
                    if not np.isfinite(np.asarray(values, np.float64)).all():
                        raise NetworkError(f"{key} must be finite, found {words}")
                eps = np.float32(layer.ln_eps)
                if not (np.isfinite(eps) and eps > 0):
                    raise NetworkError(f"ln_eps{n} must be a positive finite FP32 number, not "
                                       f"{layer.ln_eps!r}")
            if layer.gelu and layer.relu:
                raise NetworkError(f"relu{n} and gelu{n} are both set: a layer's hand-off has "
                                   f"one activation function")
            if layer.attn:
                if n == len(self.layers) - 1:
                    raise NetworkError(f"attn{n} has no meaning on the last layer (the "
                                       f"attention's outputs go to a next layer)")
                if layer.attn < 0 or w.shape[0] % (3 * layer.attn):
                    raise NetworkError(f"attn{n} = {layer.attn}: layer {n}'s {w.shape[0]} "
                                       f"outputs must be the queries, keys and values of "
                                       f"{layer.attn} heads (a multiple of {3 * layer.attn})")
                for flag, on in (("relu", layer.relu), ("gelu", layer.gelu),
                                 ("ln_g", layer.layernorm)):
                    if on:
                        raise NetworkError(f"{flag}{n} and attn{n} are both set: the "
                                           f"attention takes the projection's accumulators "
                                           f"as they are")
            if layer.gelu and n == len(self.layers) - 1:
                raise NetworkError(f"gelu{n} has no meaning on the last layer (its FP32 "
                                   f"accumulators are the outputs)")
            for key, values in (("mult", layer.mult), ("shift", layer.shift)):
                if values is not None:
                    raise NetworkError(f"{key}{n} has no meaning with dtype {self.dtype!r} (the "
                                       f"hand-off of a float layer is the rounding to "
                                       f"{self.dtype}, with ReLU if relu{n} = 1)")
        self._check_residuals()

    def sequences(self, batch: int) -> tuple[int, int]:
        """``(S, T)``: a batch of ``batch`` inputs as ``S`` sequences of ``T`` positions
        (``seq``, or the whole batch as one); :class:`NetworkError` if ``seq`` does not divide
        it."""
        if self.seq is None:
            return 1, batch
        if batch % self.seq:
            raise self.error(f"the {batch} inputs are not whole sequences of seq = {self.seq} "
                             f"positions")
        return batch // self.seq, self.seq

    @property
    def keeps(self) -> dict[int, int]:
        """The residual connections: each layer whose outputs are kept -> the layer that
        adds them (``res``)."""
        return {layer.res: n for n, layer in enumerate(self.layers) if layer.res is not None}

    def _check_residuals(self) -> None:
        """Each ``res{l} = k``: an earlier layer of as many outputs, not an attention
        projection; one kept vector at a time (layer ``k``'s kept outputs are added by layer
        ``l`` before any later layer keeps its own)."""
        for n, layer in enumerate(self.layers):
            k = layer.res
            if k is None:
                continue
            if not 0 <= k < n:
                raise NetworkError(f"res{n} = {k}: the residual comes from an earlier layer, "
                                   f"0 .. {n - 1}")
            source = self.layers[k]
            if source.attn:
                raise NetworkError(f"res{n} = {k}: layer {k} is an attention projection "
                                   f"(attn{k}); its accumulators are queries, keys and values")
            if source.outputs != layer.outputs:
                raise NetworkError(f"res{n} = {k}: layer {n} has {layer.outputs} outputs and "
                                   f"layer {k} {source.outputs}; a residual adds them one to "
                                   f"one")
        why = residual_overlap([layer.res for layer in self.layers])
        if why:
            raise NetworkError(why)


def residual_overlap(res) -> str | None:
    """Why the residual connections ``res`` (per layer None or the earlier layer ``k`` it
    adds) break the rule of one kept vector at a time (layer ``k``'s kept outputs are added
    by layer ``l`` before any later layer keeps its own), or None."""
    held: tuple[int, int] | None = None  # the (source, layer) whose vector is kept
    for n, k in enumerate(res):
        if k is None:
            continue
        if held is not None and k < held[1]:
            return (f"res{n} = {k} and res{held[1]} = {held[0]} overlap: layer {k}'s outputs "
                    f"would be kept while layer {held[0]}'s are (one residual at a time: the "
                    f"next starts at or after layer {held[1]})")
        held = (k, n)
    return None


def _int_array(data: Any, key: str) -> np.ndarray:
    a = np.asarray(data)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise NetworkError(f"{key} must be integers, not {a.dtype}")
    return a.astype(np.int64)


def load_network(path: str | Path) -> Network:
    """Read a network ``.npz`` file (see the module documentation).

    Raises
    ------
    NetworkError
        For a missing or unreadable file, a missing key, a value of the wrong type, shape or
        range; the message names the file and the key.
    """
    path = Path(path)
    try:
        data = read_npz(path, f"network file {str(path)!r}")
    except NetworkError:
        raise
    except InputError as exc:
        raise NetworkError(str(exc)) from None
    try:
        net = _from_mapping(data)
    except NetworkError as exc:
        raise NetworkError(f"network file {str(path)!r}: {exc}") from None
    net.source = f"network file {str(path)!r}"
    return net


def _from_mapping(data: dict[str, np.ndarray]) -> Network:
    fmt = str(data.get("format", ""))
    if fmt != FORMAT:
        raise NetworkError(f"format must be {FORMAT!r}, not {fmt!r}")
    for key in ("data_width", "layers"):
        if key not in data:
            raise NetworkError(f"key {key!r} is missing")
    count = _scalar_int(data["layers"], "layers")
    if count < 1:
        raise NetworkError(f"layers must be at least 1, not {count}")
    known = {"format", "data_width", "layers", "name", "dtype", "softmax", "seq", *_META}
    width = _scalar_int(data["data_width"], "data_width")
    dtype = _scalar_str(data["dtype"], "dtype") if "dtype" in data else None
    floating = dtype in ("fp16", "bf16")
    # what every layer but the last carries: the requantization, or (float) ReLU only
    extra = ("relu",) if floating else ("mult", "shift", "relu")
    layers = []
    for n in range(count):
        if f"w{n}" not in data:
            raise NetworkError(f"key 'w{n}' is missing (layers = {count})")
        w = np.asarray(data[f"w{n}"]) if floating else _int_array(data[f"w{n}"], f"w{n}")
        outputs = w.shape[0] if w.ndim == 2 else 0
        if f"b{n}" not in data:
            b = np.zeros(outputs, np.float32 if floating else np.int64)
        else:
            b = np.asarray(data[f"b{n}"]) if floating else _int_array(data[f"b{n}"], f"b{n}")
        known |= {f"w{n}", f"b{n}"}
        mult = shift = None
        relu = gelu = False
        if n < count - 1:
            known |= {f"{key}{n}" for key in extra}
            for key in extra:
                if f"{key}{n}" not in data:
                    raise NetworkError(f"key '{key}{n}' is missing (every layer but the last "
                                       + ("has one)" if floating else
                                          "requantizes its outputs)"))
            if not floating:
                mult = _per_output(data, f"mult{n}", outputs)
                shift = _per_output(data, f"shift{n}", outputs)
            relu = _flag(data, f"relu{n}")
            if floating and f"gelu{n}" in data:
                known.add(f"gelu{n}")
                gelu = _flag(data, f"gelu{n}")
        ln: dict = {}
        if floating and (f"ln_g{n}" in data or f"ln_b{n}" in data):
            known |= {f"ln_g{n}", f"ln_b{n}", f"ln_eps{n}"}
            for key in ("ln_g", "ln_b"):
                if f"{key}{n}" not in data:
                    raise NetworkError(f"ln_g{n} and ln_b{n} go together (LayerNorm's scale "
                                       f"and shift): '{key}{n}' is missing")
            ln = {"ln_gamma": np.asarray(data[f"ln_g{n}"]),
                  "ln_beta": np.asarray(data[f"ln_b{n}"])}
            if f"ln_eps{n}" in data:
                ln["ln_eps"] = _scalar_float(data[f"ln_eps{n}"], f"ln_eps{n}")
        if floating and f"attn{n}" in data:
            known.add(f"attn{n}")
            ln["attn"] = _scalar_int(data[f"attn{n}"], f"attn{n}")
        if floating and f"res{n}" in data:
            known.add(f"res{n}")
            ln["res"] = _scalar_int(data[f"res{n}"], f"res{n}")
        layers.append(Layer(w, b, mult, shift, relu, gelu, **ln))
    unknown = sorted(set(data) - known)
    if unknown:
        what = f"a {dtype} network" if floating else "a network"
        keys = ", ".join(f"{key}.." for key in (*extra, *(("gelu", "ln_g", "ln_b", "ln_eps",
                                                           "attn", "res") if floating else ())))
        raise NetworkError(f"unknown key {unknown[0]!r} ({what} of {count} layers has "
                           f"w0..w{count - 1}, b.., {keys} and format, data_width, "
                           f"{'dtype, softmax, seq, ' if floating else ''}layers, name, "
                           f"{', '.join(_META)})")
    meta = {k: _scalar_float(data[k], k) for k in _META if k in data}
    name = _scalar_str(data["name"], "name") if "name" in data else ""
    net = Network(layers, width, name=name, meta=meta, dtype=dtype,
                  softmax=_flag(data, "softmax") if "softmax" in data else False,
                  seq=_scalar_int(data["seq"], "seq") if "seq" in data else None)
    net.check()
    return net


def _flag(data: dict[str, np.ndarray], key: str) -> bool:
    """``data[key]`` as a flag: one integer, 0 or 1."""
    r = _int_array(data[key], key)
    if r.ndim or int(r) not in (0, 1):
        raise NetworkError(f"{key} must be 0 or 1, not {r.tolist()!r}")
    return bool(r)


def _scalar_int(data: Any, key: str) -> int:
    """``data[key]`` as one integer (a 0-D integer array)."""
    a = _int_array(data, key)
    if a.ndim:
        raise NetworkError(f"{key} must be one integer, not an array of shape {a.shape}")
    return int(a)


def _scalar_float(data: Any, key: str) -> float:
    """``data[key]`` as one finite number (a 0-D bool, integer or float array)."""
    a = np.asarray(data)
    if a.ndim or a.dtype.kind not in "biuf":
        raise NetworkError(f"{key} must be one number, not a {a.dtype} array of shape "
                           f"{a.shape}")
    value = float(a)
    if not np.isfinite(value):
        raise NetworkError(f"{key} must be a finite number, not {value}")
    return value


def _scalar_str(data: Any, key: str) -> str:
    """``data[key]`` as one string (a 0-D string array)."""
    a = np.asarray(data)
    if a.ndim or a.dtype.kind != "U":
        raise NetworkError(f"{key} must be one string, not a {a.dtype} array of shape "
                           f"{a.shape}")
    return str(a)


def _per_output(data: dict[str, np.ndarray], key: str, outputs: int) -> np.ndarray:
    """``data[key]``: integers, one per output, or one scalar for all of them."""
    values = _int_array(data[key], key)
    return np.broadcast_to(values, (outputs,)).copy() if values.ndim == 0 else values


def load_labels(path: Path) -> np.ndarray:
    """Integer class labels, one per input (1-D), from a ``.npy`` file; an unusable file is an
    :class:`~wafertile.errors.InputError` naming it."""
    label = f"labels file {str(path)!r}"
    arr = read_npy(path, label)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{label} must hold a 1-D integer array, not {arr.ndim}-D {arr.dtype}")
    return arr.astype(np.int64)


def save_network(net: Network, path: str | Path) -> None:
    """Write ``net`` as a network ``.npz`` file."""
    net.check()
    arrays: dict[str, Any] = {"format": np.array(FORMAT), "data_width": net.data_width,
                              "layers": len(net.layers), "name": np.array(net.name)}
    arrays.update({k: float(v) for k, v in net.meta.items()})
    if net.is_float:
        arrays["dtype"] = np.array(net.dtype)
        if net.softmax:
            arrays["softmax"] = 1
        if net.seq is not None:
            arrays["seq"] = int(net.seq)
        for n, layer in enumerate(net.layers):
            arrays[f"w{n}"] = np.asarray(layer.weights).astype(
                np.float16 if net.dtype == "fp16" else np.float32)
            arrays[f"b{n}"] = np.asarray(layer.bias).astype(np.float32)
            if layer.layernorm:
                arrays[f"ln_g{n}"] = np.asarray(layer.ln_gamma).astype(np.float32)
                arrays[f"ln_b{n}"] = np.asarray(layer.ln_beta).astype(np.float32)
                arrays[f"ln_eps{n}"] = np.float32(layer.ln_eps)
            if layer.res is not None:
                arrays[f"res{n}"] = int(layer.res)
            if n < len(net.layers) - 1:
                arrays[f"relu{n}"] = int(layer.relu)
                if layer.gelu:
                    arrays[f"gelu{n}"] = 1
                if layer.attn:
                    arrays[f"attn{n}"] = int(layer.attn)
        np.savez(path, **arrays)
        return
    for n, layer in enumerate(net.layers):
        arrays[f"w{n}"] = layer.weights.astype(np.int16 if net.data_width == 16 else np.int8)
        arrays[f"b{n}"] = layer.bias.astype(np.int64)
        if n < len(net.layers) - 1:
            arrays[f"mult{n}"] = layer.mult.astype(np.int64)
            arrays[f"shift{n}"] = layer.shift.astype(np.int64)
            arrays[f"relu{n}"] = int(layer.relu)
    np.savez(path, **arrays)
