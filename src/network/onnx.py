"""Import of a float ONNX MLP: a chain of MatMul or Gemm, Add, LayerNormalization, Relu and
Gelu nodes, and a Softmax at its end.

Read with the ``onnx`` package (no runtime): the weights come from the graph's initializers
(or Constant nodes); each MatMul/Gemm starts a layer, an Add of a constant vector is its bias,
a Relu or a Gelu its activation (Gelu, opset 20, with ``approximate = "tanh"`` only: the
fabric's GELU is the tanh form, ``docs/nonlinear.md``; on float tiles with the nonlinear
unit only). A Softmax over the last axis as the graph's last node is the network's
``softmax`` (made on the fabric, float tiles with the unit); a LayerNormalization over the
last axis after a layer's Add is the layer's LayerNorm (the same). Anything else in the chain
(another operator, a weight computed at run time, a branch) is refused naming the operator
and the node. The float layers are then pruned
by magnitude (optional, no fine-tuning: post-training) and quantized from a calibration set
(:mod:`wafertile.network.quantize`), or, for a floating-point fabric, kept in floating point
(:func:`import_onnx_float`: weights rounded to FP16 or BF16, biases to FP32, to nearest even).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import check_input_file, memory_budget, one_line
from ..hdl.core.fp import float_format
from .model import Layer, Network, NetworkError
from .quantize import FloatLayer, prune, quantize

__all__ = ["SUPPORTED", "float_layers", "import_onnx", "import_onnx_float", "load_model"]

#: The operators an imported graph may use.
SUPPORTED = ("MatMul", "Gemm", "Add", "Relu", "Gelu", "Softmax", "LayerNormalization")


def _tensor(t, label: str) -> np.ndarray:
    """The values of the ONNX tensor ``t`` as float64, after checking that its data is in the
    file (not external), holds as many values as its dims claim, is a real number type, and
    is finite."""
    from onnx import TensorProto, helper, numpy_helper

    if t.data_location == TensorProto.EXTERNAL or t.external_data:
        raise NetworkError(f"{label} keeps its data in an external file; wafertile reads "
                           f"self-contained models only (onnx.save without external data)")
    if any(d < 0 for d in t.dims):
        raise NetworkError(f"{label} has a negative dimension {list(t.dims)}")
    count = int(np.prod(t.dims, dtype=np.float64)) if t.dims else 1
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    except Exception:
        raise NetworkError(f"{label} has an unknown element type {t.data_type}") from None
    if dtype.kind not in "biuf":
        raise NetworkError(f"{label} holds {dtype} values; weights must be real numbers")
    if t.HasField("raw_data") or t.raw_data:
        held = len(t.raw_data) // dtype.itemsize
    else:
        held = max(len(t.float_data), len(t.int32_data), len(t.int64_data),
                   len(t.double_data), len(t.uint64_data))
    if held != count:
        raise NetworkError(f"{label} claims {count} values (dims {list(t.dims)}) but holds "
                           f"{held}")
    if count * dtype.itemsize > memory_budget():
        raise NetworkError(f"{label} holds {count} values (dims {list(t.dims)}), more than the "
                           f"memory budget")
    try:
        values = numpy_helper.to_array(t).astype(np.float64)
    except Exception as exc:
        raise NetworkError(f"{label} cannot be read: {one_line(exc)}") from None
    if not np.all(np.isfinite(values)):
        raise NetworkError(f"{label} holds NaN or infinite values")
    return values


def load_model(path: Path):
    """The ONNX model at ``path`` (a regular file within the memory budget, its data in the
    file), or a :class:`NetworkError` naming it."""
    import onnx

    label = f"ONNX file {str(path)!r}"
    size = check_input_file(path, label)
    if size > memory_budget():
        raise NetworkError(f"{label} is larger than the memory budget "
                           f"({memory_budget() >> 20} MiB, WAFERTILE_MEMORY_BUDGET)")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # the onnx package raises several kinds on a bad file
        raise NetworkError(f"{label} is not an ONNX model: {one_line(exc)}") from None


def float_layers(path: str | Path) -> list[FloatLayer]:
    """The float layers of the ONNX model at ``path``.

    Raises
    ------
    NetworkError
        For a file that is not an ONNX model, an unsupported operator (named with its node),
        or a graph that is not a chain of the supported operators with constant weights.
    """
    path = Path(path)
    label = f"ONNX file {str(path)!r}"
    model = load_model(path)
    graph = model.graph
    consts = {t.name: _tensor(t, f"{label}, initializer {t.name!r}")
              for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = _tensor(
                        attr.t, f"{label}, node {node.name or node.output[0]!r} (Constant)")
    inputs = [i.name for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise NetworkError(f"the ONNX graph must have one input (not an initializer), not "
                           f"{len(inputs)}: {inputs}")
    current = inputs[0]
    layers: list[FloatLayer] = []
    for node in graph.node:
        name = node.name or f"#{list(graph.node).index(node)}"
        if node.op_type == "Constant":
            continue
        if node.op_type not in SUPPORTED:
            raise NetworkError(f"unsupported ONNX operator {node.op_type!r} (node {name!r}); "
                               f"wafertile imports {', '.join(SUPPORTED)}")
        if layers and layers[-1].softmax:
            raise NetworkError(f"node {name!r} ({node.op_type}) follows the Softmax: a Softmax "
                               f"must be the graph's last node")
        data = [i for i in node.input if i not in consts]
        if data != [current]:
            raise NetworkError(f"node {name!r} ({node.op_type}) does not continue the chain "
                               f"from {current!r} (inputs {list(node.input)}): only a chain of "
                               f"{', '.join(SUPPORTED)} with constant weights is imported")
        params = [consts[i] for i in node.input if i in consts]
        if node.op_type in ("MatMul", "Gemm"):
            layer = _dense(node, name, params)
            if layers and layer.weights.shape[1] != layers[-1].weights.shape[0]:
                raise NetworkError(f"node {name!r} ({node.op_type}) takes "
                                   f"{layer.weights.shape[1]} inputs, but the layer before it "
                                   f"has {layers[-1].weights.shape[0]} outputs")
            layers.append(layer)
        elif node.op_type == "Add":
            if not layers or len(params) != 1 or (params[0].ndim > 1
                                                   and params[0].shape[0] != 1):
                raise NetworkError(f"node {name!r} (Add) must add a constant vector to a "
                                   f"MatMul/Gemm's output")
            outputs = layers[-1].weights.shape[0]
            if params[0].size not in (1, outputs):
                raise NetworkError(f"node {name!r} (Add) adds {params[0].size} values to a "
                                   f"layer of {outputs} outputs")
            layers[-1].bias = layers[-1].bias + params[0].reshape(-1)
        elif node.op_type == "LayerNormalization":
            attrs = {a.name: a for a in node.attribute}
            axis = attrs["axis"].i if "axis" in attrs else -1
            eps = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
            if (not layers or layers[-1].relu or layers[-1].gelu
                    or layers[-1].ln_gamma is not None or axis not in (-1, 1)
                    or len(params) not in (1, 2) or node.input[0] != current):
                raise NetworkError(f"node {name!r} (LayerNormalization) must normalize a "
                                   f"MatMul/Gemm's outputs (with its Add, before its Relu or "
                                   f"Gelu) over their last axis with a constant scale and "
                                   f"bias")
            outputs = layers[-1].weights.shape[0]
            scale = params[0].reshape(-1)
            shift = params[1].reshape(-1) if len(params) == 2 else np.zeros(outputs)
            if scale.size != outputs or shift.size != outputs:
                raise NetworkError(f"node {name!r} (LayerNormalization) has {scale.size} "
                                   f"scales and {shift.size} biases for a layer of {outputs} "
                                   f"outputs")
            layers[-1].ln_gamma, layers[-1].ln_beta, layers[-1].ln_eps = scale, shift, eps
        elif node.op_type == "Softmax":
            axis = {a.name: a.i for a in node.attribute}.get("axis", -1)
            if not layers or layers[-1].relu or layers[-1].gelu or axis not in (-1, 1):
                raise NetworkError(f"node {name!r} (Softmax) must take the last layer's outputs "
                                   f"(a MatMul/Gemm's, with its Add) over their last axis "
                                   f"(axis -1 or 1), not axis {axis}" if layers else
                                   f"node {name!r} (Softmax) must follow a MatMul/Gemm")
            layers[-1].softmax = True
        else:  # Relu, Gelu
            if not layers or layers[-1].relu or layers[-1].gelu:
                raise NetworkError(f"node {name!r} ({node.op_type}) must follow a "
                                   f"MatMul/Gemm")
            if node.op_type == "Gelu":
                attrs = {a.name: a for a in node.attribute}
                form = attrs["approximate"].s.decode() if "approximate" in attrs else "none"
                if form != "tanh":
                    raise NetworkError(f"node {name!r} (Gelu) has approximate = {form!r} (the "
                                       f"erf form); the fabric computes GELU's tanh form: "
                                       f"export it with approximate = 'tanh'")
                layers[-1].gelu = True
            else:
                layers[-1].relu = True
        current = node.output[0]
    if not layers:
        raise NetworkError(f"the ONNX graph in {str(path)!r} has no MatMul or Gemm")
    if layers[-1].relu or layers[-1].gelu:  # the outputs leave the array as accumulators
        raise NetworkError(f"the last layer must not end in {'Relu' if layers[-1].relu else 'Gelu'}"
                           f" (its accumulators are the network's outputs, read back as they "
                           f"are)")
    return layers


def _dense(node, name: str, params: list[np.ndarray]) -> FloatLayer:
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "MatMul":
        if len(params) != 1 or params[0].ndim != 2:
            raise NetworkError(f"node {name!r} (MatMul) must multiply by a constant 2-D weight")
        w = params[0].T  # x @ W, W: J x I
        return FloatLayer(w, np.zeros(w.shape[0]), False)
    alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
    beta = attrs["beta"].f if "beta" in attrs else 1.0
    if attrs.get("transA") is not None and attrs["transA"].i:
        raise NetworkError(f"node {name!r} (Gemm) with transA = 1 is not supported")
    if not params or params[0].ndim != 2:
        raise NetworkError(f"node {name!r} (Gemm) must have a constant 2-D weight B")
    w = params[0] if ("transB" in attrs and attrs["transB"].i) else params[0].T
    bias = beta * params[1].reshape(-1) if len(params) > 1 else np.zeros(w.shape[0])
    if bias.size not in (1, w.shape[0]):
        raise NetworkError(f"node {name!r} (Gemm) has a bias C of {bias.size} values for "
                           f"{w.shape[0]} outputs")
    return FloatLayer(alpha * w, np.broadcast_to(bias, (w.shape[0],)).copy(), False)


def _pruned(path: str | Path, prune_to: float | None) -> list[FloatLayer]:
    layers = float_layers(path)
    if prune_to is not None:
        if not 0.0 <= prune_to < 1.0:
            raise NetworkError(f"--prune must be the share of zero weights, from 0 to below 1, "
                               f"not {prune_to:g}")
        for layer, mask in zip(layers, prune(layers, 1.0 - prune_to), strict=True):
            layer.weights = layer.weights * mask
    return layers


def import_onnx(path: str | Path, calibration: np.ndarray, *, data_width: int = 8,
                prune_to: float | None = None) -> tuple[Network, list[FloatLayer]]:
    """The integer network of the ONNX MLP at ``path``: pruned (``prune_to``: the share of
    zero weights, e.g. 0.9) and quantized from ``calibration`` (float inputs). Returns the
    network and the float layers it came from (pruned)."""
    layers = _pruned(path, prune_to)
    gelu = [n for n, layer in enumerate(layers) if layer.gelu]
    if gelu:
        raise NetworkError(f"layer {gelu[0]} ends in Gelu: GELU runs on float tiles only "
                           f"(--dtype fp16 or bf16, with --nonlinear true)")
    if layers[-1].softmax:
        raise NetworkError("the graph ends in Softmax: the softmax runs on float tiles only "
                           "(--dtype fp16 or bf16, with --nonlinear true)")
    norm = [n for n, layer in enumerate(layers) if layer.ln_gamma is not None]
    if norm:
        raise NetworkError(f"layer {norm[0]} has a LayerNormalization: it runs on float tiles "
                           f"only (--dtype fp16 or bf16, with --nonlinear true)")
    return quantize(layers, calibration, data_width=data_width, name=Path(path).stem), layers


def import_onnx_float(path: str | Path, dtype: str, *, prune_to: float | None = None
                      ) -> Network:
    """The ONNX MLP at ``path`` as a floating-point network of ``dtype`` (``"fp16"`` or
    ``"bf16"``): pruned as :func:`import_onnx` does, the weights rounded to FP32 and then to
    the format, the biases to FP32 (each to nearest even; no calibration, no requantization).
    A ReLU after the
    last layer is not applied (its accumulators are the outputs), as for integer networks; a
    Gelu layer is a GELU layer (:class:`~.model.Layer` ``gelu``: tiles with the nonlinear
    unit); a Softmax at the end is the network's ``softmax``."""
    fmt = float_format(dtype)
    layers = []
    pruned = _pruned(path, prune_to)
    for n, layer in enumerate(pruned):
        w = fmt.values(fmt.bits(np.asarray(layer.weights, np.float32)))
        ln = {} if layer.ln_gamma is None else {
            "ln_gamma": np.asarray(layer.ln_gamma, np.float32),
            "ln_beta": np.asarray(layer.ln_beta, np.float32),
            "ln_eps": float(np.float32(layer.ln_eps))}
        layers.append(Layer(w, np.asarray(layer.bias, np.float32), None, None,
                            bool(layer.relu) and n < len(pruned) - 1, bool(layer.gelu), **ln))
    return Network(layers, 16, name=Path(path).stem, dtype=dtype, softmax=pruned[-1].softmax)
