"""GPT models as wafertile networks: the parameters of a pre-LayerNorm GPT, its mapping onto a
chain of layers (docs/network.md, "Residual connections, and a GPT block"), its FP32 forward
pass in numpy, and the same model as an ONNX graph (the ``onnx`` package's helpers), which an
independent runtime (onnxruntime) evaluates.

The model (GPT-2's block, the tanh form of GELU, the output projection tied to the token
embedding):

```
x  = wte[token] + wpe[position]
per block:  x = x + proj(attention(ln1(x)));  x = x + fc2(gelu(fc(ln2(x))))
logits = ln_f(x) @ wte.T
```

Parameters are a dict of float32 arrays named ``wte`` (V x D), ``wpe`` (T x D), and per block
``b`` ``h{b}.ln1.g``, ``h{b}.ln1.b``, ``h{b}.qkv.w`` (3D x D: queries, keys, values, head by
head), ``h{b}.qkv.b``, ``h{b}.proj.w`` (D x D), ``h{b}.proj.b``, ``h{b}.ln2.g``, ``h{b}.ln2.b``,
``h{b}.fc.w`` (F x D), ``h{b}.fc.b``, ``h{b}.fc2.w`` (D x F), ``h{b}.fc2.b``, and ``ln_f.g``,
``ln_f.b``, and optionally ``head.w`` (V x D) and ``head.b``: an output projection of its own
instead of ``wte``. Weights are ``outputs x inputs``, as a network's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..hdl.core.fp import float_format
from .model import Layer, Network, NetworkError

__all__ = ["EPS", "GPTShape", "gelu", "gelu_grad", "gpt_logits", "gpt_network", "gpt_onnx",
           "one_hot"]

#: LayerNorm's epsilon (GPT-2's).
EPS = 1e-5


@dataclass(frozen=True)
class GPTShape:
    """A GPT's sizes: vocabulary, context (positions), width, heads, blocks, MLP width."""

    vocab: int
    context: int
    width: int
    heads: int
    blocks: int
    hidden: int

    @classmethod
    def of(cls, params: dict[str, np.ndarray]) -> GPTShape:
        """The shape of ``params`` (heads from ``heads``, a 0-D entry)."""
        V, D = params["wte"].shape
        blocks = sum(1 for k in params if k.endswith(".ln1.g"))
        return cls(V, params["wpe"].shape[0], D, int(params["heads"]), blocks,
                   params["h0.fc.w"].shape[0])

    @property
    def head_width(self) -> int:
        return self.width // self.heads


def one_hot(ids: np.ndarray, shape: GPTShape) -> np.ndarray:
    """The embedding layer's inputs of one sequence ``ids`` (at most ``context`` tokens): per
    position a one-hot token (``vocab`` values) and a one-hot position (``context``)."""
    ids = np.asarray(ids, np.int64)
    T = len(ids)
    lo, hi = (int(ids.min()), int(ids.max())) if T else (0, 0)
    if not 1 <= T <= shape.context or lo < 0 or hi >= shape.vocab:
        raise NetworkError(f"a sequence must be 1 .. {shape.context} token ids from 0 .. "
                           f"{shape.vocab - 1}: found {T} tokens, ids {lo}..{hi}")
    x = np.zeros((T, shape.vocab + shape.context), np.float32)
    x[np.arange(T), ids] = 1.0
    x[np.arange(T), shape.vocab + np.arange(T)] = 1.0
    return x


def _round(dtype: str, values) -> np.ndarray:
    """``values`` rounded to the format, to nearest even, as float32 numbers of it."""
    fmt = float_format(dtype)
    return fmt.values(fmt.bits(np.asarray(values, np.float32))).astype(np.float32)


def gpt_network(params: dict[str, np.ndarray], dtype: str, name: str = "gpt") -> Network:
    """The GPT as a float network of ``dtype`` (docs/network.md): the embedding layer on
    one-hot inputs (:func:`one_hot`), per block the projection (``attn``, the queries'
    weights and biases times ``1 / sqrt(D_h)``), the attention's output projection
    (``res``, LayerNorm 2), the MLP (GELU; ``res``, the next LayerNorm), and the output
    projection (``wte``, tied). Weights rounded to the format and biases to FP32, to nearest
    even (after the scaling)."""
    shape = GPTShape.of(params)
    D, H = shape.width, shape.heads
    scale = np.float32(1.0 / math.sqrt(shape.head_width))

    def p(key):
        return np.asarray(params[key], np.float32)

    def ln(key):
        return {"ln_gamma": p(f"{key}.g"), "ln_beta": p(f"{key}.b"), "ln_eps": EPS}

    layers = [Layer(_round(dtype, np.concatenate([p("wte").T, p("wpe").T], axis=1)),
                    np.zeros(D, np.float32), **ln("h0.ln1"))]
    for b in range(shape.blocks):
        h = f"h{b}"
        w, bias = p(f"{h}.qkv.w").copy(), p(f"{h}.qkv.b").copy()
        w[:D] *= scale
        bias[:D] *= scale
        res = len(layers) - 1
        layers.append(Layer(_round(dtype, w), bias, attn=H))
        layers.append(Layer(_round(dtype, p(f"{h}.proj.w")), p(f"{h}.proj.b"),
                            res=res, **ln(f"{h}.ln2")))
        layers.append(Layer(_round(dtype, p(f"{h}.fc.w")), p(f"{h}.fc.b"),
                            gelu=True))
        after = f"h{b + 1}.ln1" if b + 1 < shape.blocks else "ln_f"
        layers.append(Layer(_round(dtype, p(f"{h}.fc2.w")), p(f"{h}.fc2.b"),
                            res=len(layers) - 2, **ln(after)))
    # the output projection: tied to the token embedding unless the model has its own
    layers.append(Layer(_round(dtype, p("head.w") if "head.w" in params else p("wte")),
                        p("head.b") if "head.b" in params else
                        np.zeros(shape.vocab, np.float32)))
    net = Network(layers, 16, name=name, dtype=dtype)
    net.check()
    return net


# -- the FP32 model -----------------------------------------------------------------------------


def _layernorm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(EPS)) * g + b


def gelu(x):
    """GELU's tanh form in float32 numpy (the FP32 model's)."""
    c = np.float32(math.sqrt(2.0 / math.pi))
    return np.float32(0.5) * x * (np.float32(1) + np.tanh(c * (x + np.float32(0.044715) *
                                                                x ** 3)))


def gelu_grad(x):
    """The derivative of :func:`gelu`, in float32 numpy (the FP32 training baseline's)."""
    c = np.float32(math.sqrt(2.0 / math.pi))
    t = np.tanh(c * (x + np.float32(0.044715) * x ** 3))
    return np.float32(0.5) * (np.float32(1) + t) + np.float32(0.5) * x * (
        np.float32(1) - t * t) * c * (np.float32(1) + np.float32(3 * 0.044715) * x * x)


def gpt_logits(params: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """The FP32 model's logits (``T x V``) of one sequence ``ids``, in numpy float32."""
    shape = GPTShape.of(params)
    D, H, Dh = shape.width, shape.heads, shape.head_width
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}
    T = len(ids)
    x = p["wte"][ids] + p["wpe"][:T]
    mask = np.triu(np.ones((T, T), bool), 1)
    for b in range(shape.blocks):
        h = f"h{b}"
        qkv = _layernorm(x, p[f"{h}.ln1.g"], p[f"{h}.ln1.b"]) @ p[f"{h}.qkv.w"].T + \
            p[f"{h}.qkv.b"]
        q, k, v = (qkv[:, n * D:(n + 1) * D].reshape(T, H, Dh).transpose(1, 0, 2)
                   for n in range(3))
        s = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(Dh))
        s = np.where(mask, -np.inf, s)
        e = np.exp(s - s.max(-1, keepdims=True))
        a = (e / e.sum(-1, keepdims=True)) @ v
        x = x + a.transpose(1, 0, 2).reshape(T, D) @ p[f"{h}.proj.w"].T + p[f"{h}.proj.b"]
        m = gelu(_layernorm(x, p[f"{h}.ln2.g"], p[f"{h}.ln2.b"]) @ p[f"{h}.fc.w"].T +
                  p[f"{h}.fc.b"])
        x = x + m @ p[f"{h}.fc2.w"].T + p[f"{h}.fc2.b"]
    head = p.get("head.w", p["wte"])
    return _layernorm(x, p["ln_f.g"], p["ln_f.b"]) @ head.T + p.get("head.b", np.float32(0))


# -- the ONNX graph -----------------------------------------------------------------------------


def gpt_onnx(params: dict[str, np.ndarray], T: int, name: str = "gpt",
             metadata: dict[str, str] | None = None, gelu: str = "ops"):
    """The GPT as an ONNX model (opset 17) of one sequence of ``T`` token ids (input
    ``ids``, int64, shape ``[T]``) to ``logits`` (float32, ``[T, V]``): Gather, Add,
    LayerNormalization, MatMul, Split, Reshape, Transpose, Mul, Where (the causal mask),
    Softmax, Tanh and Pow (GELU's tanh form), as a GPT exports; the output projection tied
    to the token embedding. ``metadata``: the model's metadata properties. ``gelu``:
    ``"ops"`` (written out), or one Gelu node (opset 20) with ``approximate = "tanh"``
    (``"tanh"``) or the erf form (``"erf"``: a different function, which the fabric
    refuses)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = GPTShape.of(params)
    D, H, Dh, V = shape.width, shape.heads, shape.head_width, shape.vocab
    nodes, inits = [], []
    count = [0]

    def const(value, name=None):
        count[0] += 1
        name = name or f"c{count[0]}"
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, **attrs):
        count[0] += 1
        out = f"t{count[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def p(key):
        return const(np.asarray(params[key], np.float32), key)

    def linear(x, key):  # x @ W.T + b, W as a MatMul's (inputs x outputs)
        w = const(np.asarray(params[f"{key}.w"], np.float32).T.copy(), f"{key}.w")
        return node("Add", [node("MatMul", [x, w]), p(f"{key}.b")])

    def layernorm(x, key):
        return node("LayerNormalization", [x, p(f"{key}.g"), p(f"{key}.b")], axis=-1,
                    epsilon=EPS)

    wte = p("wte")
    x = node("Add", [node("Gather", [wte, "ids"]),
                     node("Gather", [p("wpe"), const(np.arange(T, dtype=np.int64))])])
    causal = const(np.triu(np.ones((T, T), bool), 1))
    heads = const(np.array([T, H, Dh], np.int64))
    for b in range(shape.blocks):
        h = f"h{b}"
        qkv = linear(layernorm(x, f"{h}.ln1"), f"{h}.qkv")
        parts = [f"{h}.{n}" for n in "qkv"]
        nodes.append(helper.make_node("Split", [qkv, const(np.array([D, D, D], np.int64))],
                                      parts, axis=-1))
        q, k, v = (node("Transpose", [node("Reshape", [t, heads])], perm=[1, 0, 2])
                   for t in parts)
        s = node("Mul", [node("MatMul", [q, node("Transpose", [k], perm=[0, 2, 1])]),
                         const(np.float32(1.0 / math.sqrt(Dh)))])
        s = node("Where", [causal, const(np.float32(-np.inf)), s])
        a = node("MatMul", [node("Softmax", [s], axis=-1), v])
        a = node("Reshape", [node("Transpose", [a], perm=[1, 0, 2]),
                             const(np.array([T, D], np.int64))])
        x = node("Add", [x, linear(a, f"{h}.proj")])
        f = linear(layernorm(x, f"{h}.ln2"), f"{h}.fc")
        if gelu != "ops":
            g = node("Gelu", [f], approximate="tanh" if gelu == "tanh" else "none")
            x = node("Add", [x, linear(g, f"{h}.fc2")])
            continue
        cube = node("Mul", [node("Pow", [f, const(np.float32(3))]), const(np.float32(0.044715))])
        t = node("Tanh", [node("Mul", [node("Add", [f, cube]),
                                       const(np.float32(math.sqrt(2.0 / math.pi)))])])
        g = node("Mul", [node("Mul", [f, const(np.float32(0.5))]),
                         node("Add", [t, const(np.float32(1))])])
        x = node("Add", [x, linear(g, f"{h}.fc2")])
    logits = node("MatMul", [layernorm(x, "ln_f"), node("Transpose", [wte], perm=[1, 0])])
    nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("ids", TensorProto.INT64, [T])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [T, V])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17 if gelu == "ops"
                                                                         else 20)],
                              producer_name="wafertile")
    model.ir_version = 8 if gelu == "ops" else 9
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return model
