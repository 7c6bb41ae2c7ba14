"""Import of a GPT from ONNX: the graph a pre-LayerNorm GPT exports, read into the parameters
of :mod:`wafertile.network.gpt` (then :func:`~.gpt.gpt_network` maps it onto the fabric).

The graph is read by following what each tensor *is* (the token ids, an embedding, the
residual stream, a LayerNorm of it, a projection, a head's queries, scores, probabilities, an
attention's output, GELU of a projection, the logits), node by node in the graph's order.
Operators: Gather (the embeddings: the token ids' and the positions', ``0 .. T - 1``), Add,
LayerNormalization (over the last axis), MatMul or Gemm with a constant weight and Add of a
constant bias, Split or three Slices (queries, keys, values), Reshape and Transpose (the
heads), Mul or Div by a constant (the scale ``1 / sqrt(D_h)``), Where with a constant causal
mask and -inf (or Add of a constant causal mask of -inf or at most -1e4), Softmax over the
last axis, GELU as one Gelu node (opset 20, ``approximate = "tanh"``) or written out in its
tanh form (Pow, Mul, Add, Tanh), Identity and Constant. An operator outside these is named
with its node; a node that does not fit a GPT block is named with what it should be. The
erf form of GELU is refused: the fabric computes the tanh form (docs/nonlinear.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..files import one_line
from .gpt import EPS
from .model import NetworkError
from .onnx import load_model

__all__ = ["GPT_OPERATORS", "import_onnx_gpt", "is_gpt_graph"]

#: The operators a GPT graph may use.
GPT_OPERATORS = ("Gather", "Add", "LayerNormalization", "MatMul", "Gemm", "Split", "Slice",
                 "Reshape", "Transpose", "Mul", "Div", "Where", "Softmax", "Gelu", "Pow",
                 "Tanh", "Identity", "Constant")


class _V:
    """What a tensor is: ``kind`` and its fields."""

    def __init__(self, kind: str, **fields):
        self.kind = kind
        self.__dict__.update(fields)

    def __repr__(self):  # pragma: no cover - debugging
        return f"<{self.kind}>"


def _constants(model, label: str) -> dict[str, np.ndarray]:
    """The initializers: in the file (not external), finite but for a one-value fill (the
    mask's -inf)."""
    from onnx import TensorProto, numpy_helper

    out = {}
    for t in model.graph.initializer:
        what = f"{label}, initializer {t.name!r}"
        if t.data_location == TensorProto.EXTERNAL or t.external_data:
            raise NetworkError(f"{what} keeps its data in an external file; wafertile reads "
                               f"self-contained models only (onnx.save without external data)")
        try:
            a = numpy_helper.to_array(t)
        except Exception as exc:
            raise NetworkError(f"{what} cannot be read: {one_line(exc)}") from None
        if a.dtype.kind not in "biuf":
            raise NetworkError(f"{what} holds {a.dtype} values; a GPT's constants are numbers")
        if a.dtype.kind == "f" and a.size > 1 and not np.all(np.isfinite(a)):
            raise NetworkError(f"{what} holds NaN or infinite values")
        out[t.name] = a
    return out


def is_gpt_graph(path: str | Path) -> bool:
    """True if the ONNX model at ``path`` takes integer token ids (a GPT), not floats (an
    MLP, :mod:`.onnx`)."""
    model = load_model(Path(path))
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    return len(inputs) == 1 and inputs[0].type.tensor_type.elem_type in (6, 7)


def _close(value, want: float) -> bool:
    """``value`` (a number, or a constant of one value) is ``want`` to 1e-6."""
    value = np.asarray(value)
    return value.size == 1 and math.isclose(float(value.reshape(-1)[0]), want, rel_tol=1e-6)


#: A masked score: -inf, or a number at most this low.
_MASKED = -1e4


def _tensor_and_constant(args: list, cs: list) -> tuple:
    """``(tensor, constant)`` of a binary node with one constant operand (either side)."""
    return (args[0], cs[1]) if args[0] is not None else (args[1], cs[0])


def _matrix(c: np.ndarray | None) -> np.ndarray | None:
    """``c`` as a square matrix (its leading dimensions all 1: ``[T, T]``, ``[1, 1, T, T]``),
    or None."""
    if c is None or c.ndim < 2 or c.shape[-1] != c.shape[-2] or \
            c.size != c.shape[-1] * c.shape[-2]:
        return None
    return c.reshape(c.shape[-2:])


def _above(shape: tuple) -> np.ndarray:
    """Where a causal mask masks: ``j > i``."""
    return np.triu(np.ones(shape, bool), 1)


def _additive_mask(c: np.ndarray) -> bool:
    """``c`` is an additive causal mask: 0 where ``j <= i``, -inf or at most
    :data:`_MASKED` above."""
    c = _matrix(c)
    if c is None:
        return False
    upper = _above(c.shape)
    return bool(np.all(c[~upper] == 0) and np.all(c[upper] <= _MASKED))


def import_onnx_gpt(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(params, metadata)``: the GPT of the ONNX model at ``path`` as the parameters of
    :mod:`.gpt` (float32; ``heads``), and the model's metadata properties (tinygpt keeps its
    vocabulary and held text there).

    Raises
    ------
    NetworkError
        For a file that is not an ONNX model, an operator outside :data:`GPT_OPERATORS`
        (named with its node), or a node that does not fit a GPT (named, with what it should
        be).
    """
    path = Path(path)
    label = f"ONNX file {str(path)!r}"
    model = load_model(path)
    graph = model.graph
    consts = _constants(model, label)
    for node in graph.node:
        if node.op_type == "Constant":
            from onnx import numpy_helper
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    inputs = [i.name for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise NetworkError(f"{label}: a GPT graph has one input, the token ids, not "
                           f"{len(inputs)}: {inputs}")
    values: dict[str, _V] = {inputs[0]: _V("ids")}
    blocks: list[dict[str, np.ndarray]] = []
    params: dict[str, np.ndarray] = {}
    ln_eps: list[float] = []

    for index, node in enumerate(graph.node):
        op = node.op_type
        name = node.name or f"#{index}"
        where = f"node {name!r} ({op})"
        if op not in GPT_OPERATORS:
            raise NetworkError(f"unsupported ONNX operator {op!r} (node {name!r}); a GPT graph "
                               f"imports {', '.join(GPT_OPERATORS)}")
        if op == "Constant":
            continue
        attrs = {a.name: a for a in node.attribute}
        args = [values.get(i) for i in node.input]
        cs = [consts.get(i) for i in node.input]

        def fail(what: str, where=where):
            raise NetworkError(f"{where} does not fit a GPT block: {what}")

        def out(v: _V, node=node):
            values[node.output[0]] = v

        if op == "Identity":
            if node.input[0] in consts:
                consts[node.output[0]] = consts[node.input[0]]
            elif args[0] is not None:
                out(args[0])
            continue
        if op == "Transpose" and node.input[0] in consts and args[0] is None:
            perm = list(attrs["perm"].ints) if "perm" in attrs else None
            consts[node.output[0]] = np.transpose(cs[0], perm)
            continue
        if op == "Gather":
            if cs[0] is None or cs[0].ndim != 2:
                fail("a Gather takes rows of a constant embedding table")
            if args[1] is not None and args[1].kind == "ids":
                out(_V("embedding", wte=cs[0]))
            elif cs[1] is not None and np.array_equal(cs[1].reshape(-1),
                                                      np.arange(cs[1].size)):
                out(_V("positions", wpe=cs[0], T=cs[1].size))
            else:
                fail("a Gather picks the token ids' rows or the positions 0 .. T - 1")
            continue
        if op == "LayerNormalization":
            axis = attrs["axis"].i if "axis" in attrs else -1
            if args[0] is None or args[0].kind != "stream" or axis not in (-1, 1, 2) or \
                    cs[1] is None:
                fail("a LayerNormalization normalizes the residual stream over its last axis "
                     "with a constant scale (and bias)")
            shift = cs[2] if len(cs) > 2 and cs[2] is not None else np.zeros_like(cs[1])
            ln_eps.append(attrs["epsilon"].f if "epsilon" in attrs else 1e-5)
            out(_V("ln", g=cs[1], b=shift, stream=args[0]))
            continue
        if op in ("MatMul", "Gemm"):
            src, w = args[0], cs[1]
            if src is not None and src.kind == "hfirst" and args[1] is not None and \
                    args[1].kind == "keys_t":  # a scale may come with the queries or keys
                if src.H != args[1].H:
                    fail(f"queries of {src.H} heads and keys of {args[1].H}")
                out(_V("scores", att={"q": src.src, "k": args[1].src, "H": src.H},
                       scale=src.scale * args[1].scale))
                continue
            if src is not None and src.kind == "probs" and args[1] is not None and \
                    args[1].kind == "hfirst":
                if src.att["H"] != args[1].H:
                    fail(f"probabilities of {src.att['H']} heads and values of {args[1].H}")
                out(_V("attn", att={**src.att, "v": args[1].src}))
                continue
            if src is None or w is None or w.ndim != 2 or \
                    src.kind not in ("ln", "attn_out", "gelu"):
                fail("a MatMul multiplies a LayerNorm, the attention's output or GELU by a "
                     "constant weight (or the heads' queries by their keys, or the "
                     "probabilities by the values)")
            trans = op == "Gemm" and "transB" in attrs and attrs["transB"].i
            weight = w if trans else w.T  # outputs x inputs
            bias = cs[2] if op == "Gemm" and len(cs) > 2 and cs[2] is not None else None
            out(_V("linear", src=src, w=weight, b=bias))
            continue
        if op == "Add":
            a, b = args
            if a is not None and b is not None and {a.kind, b.kind} == {"embedding",
                                                                          "positions"}:
                emb, pos = (a, b) if a.kind == "embedding" else (b, a)
                params["wte"], params["wpe"] = emb.wte, pos.wpe
                out(_V("stream"))
                continue
            if a is not None and b is not None and {a.kind, b.kind} == {"linear", "cube_c"}:
                lin, cube = (a, b) if a.kind == "linear" else (b, a)
                if cube.f is not lin:
                    fail("GELU's x + 0.044715 x^3 adds the same x")
                out(_V("inner", f=lin))
                continue
            if a is not None and b is not None and {a.kind, b.kind} == {"stream", "linear"}:
                lin = b if a.kind == "stream" else a
                out(_V("stream"))
                _residual(lin, blocks, where)
                continue
            v, c = _tensor_and_constant(args, cs)
            if v is None or c is None:
                fail("an Add adds the embeddings, a projection to the residual stream, or a "
                     "constant")
            if v.kind == "linear" and v.b is None:
                out(_V("linear", src=v.src, w=v.w, b=c.reshape(-1)))
            elif v.kind in ("scores", "scaled") and _additive_mask(c):
                out(_V("masked", att=v.att, scale=v.scale))
            elif v.kind == "tanh" and _close(c, 1.0):
                out(_V("tanh1", f=v.f))
            else:
                fail("an Add of a constant is a projection's bias, the causal mask, or the 1 "
                     "of GELU's 1 + tanh")
            continue
        if op == "Split":
            src = args[0]
            if src is None or src.kind != "linear" or src.src.kind != "ln" or \
                    len(node.output) != 3:
                fail("a Split cuts the attention's projection into queries, keys and values")
            sizes = cs[1] if len(cs) > 1 and cs[1] is not None else \
                (np.array(attrs["split"].ints) if "split" in attrs else None)
            width = src.w.shape[0] // 3
            if sizes is not None and list(sizes) != [width] * 3:
                fail(f"a Split into three equal parts of {width}, not {list(sizes)}")
            for n, o in enumerate(node.output):
                values[o] = _V("part", qkv=src, n=n)
            continue
        if op == "Slice":
            src = args[0]
            if src is None or src.kind != "linear" or cs[1] is None or cs[2] is None:
                fail("a Slice cuts the attention's projection into queries, keys and values")
            width = src.w.shape[0] // 3
            start = int(cs[1].reshape(-1)[0])
            if start % width or int(cs[2].reshape(-1)[0]) not in (start + width, 2 ** 63 - 1):
                fail(f"a Slice takes a third of the projection ({width} outputs)")
            out(_V("part", qkv=src, n=start // width))
            continue
        if op == "Reshape":
            src, shape = args[0], cs[1]
            # a third of the fused projection, or a projection of its own, to (T, H, D_h),
            # or (1, T, H, D_h) with a batch of one; -1 for one of H, D_h
            if src is not None and (src.kind == "part" or (src.kind == "linear" and
                                                            src.src.kind == "ln")) and \
                    shape is not None and len(shape) in (3, 4):
                D = src.qkv.w.shape[0] // 3 if src.kind == "part" else src.w.shape[0]
                H, Dh = int(shape[-2]), int(shape[-1])
                H, Dh = (D // Dh, Dh) if H == -1 and Dh > 0 else \
                    (H, D // H) if Dh == -1 and H > 0 else (H, Dh)
                if H < 1 or H * Dh != D:
                    fail(f"the queries, keys or values reshaped to (T, H, {D} / H)")
                out(_V("heads", src=src, H=H))
            elif src is not None and src.kind == "attn_t" and shape is not None and \
                    len(shape) in (2, 3):
                out(_V("attn_out", att=src.att))
            else:
                fail("a Reshape splits a part of the projection into heads (T, H, D_h) or "
                     "joins the heads' outputs (T, H D_h)")
            continue
        if op == "Transpose":
            src = args[0]
            perm = list(attrs["perm"].ints) if "perm" in attrs else []
            # without and with a batch of one: heads first, the keys' features first (from
            # the heads or from the reshape), the positions back first
            if src is not None and src.kind == "heads" and perm in ([1, 0, 2], [0, 2, 1, 3]):
                out(_V("hfirst", src=src.src, H=src.H, scale=1.0))
            elif src is not None and src.kind == "hfirst" and perm in ([0, 2, 1],
                                                                        [0, 1, 3, 2]):
                out(_V("keys_t", src=src.src, H=src.H, scale=src.scale))
            elif src is not None and src.kind == "heads" and perm in ([1, 2, 0], [0, 2, 3, 1]):
                out(_V("keys_t", src=src.src, H=src.H, scale=1.0))
            elif src is not None and src.kind == "attn" and perm in ([1, 0, 2], [0, 2, 1, 3]):
                out(_V("attn_t", att=src.att))
            else:
                fail("a Transpose moves the heads first (perm 1, 0, 2; with a batch 0, 2, 1, "
                     "3), the keys' features first (0, 2, 1; 0, 1, 3, 2) or the positions "
                     "back first")
            continue
        if op in ("Mul", "Div"):
            a, b = args
            v, c = _tensor_and_constant(args, cs)
            if a is not None and b is not None:
                if {a.kind, b.kind} == {"half", "tanh1"} and a.f is b.f:
                    out(_V("gelu", f=a.f))
                    continue
                fail("a Mul of two tensors is GELU's 0.5 x (1 + tanh(...))")
            if v is None or c is None or c.size != 1:
                fail("a Mul or Div by one constant")
            k = float(c.reshape(-1)[0])
            k = 1.0 / k if op == "Div" else k
            if v.kind in ("scores", "scaled"):
                out(_V("scaled", att=v.att, scale=v.scale * k))
            elif v.kind in ("hfirst", "keys_t"):  # scaled before the product
                out(_V(v.kind, src=v.src, H=v.H, scale=v.scale * k))
            elif v.kind == "linear" and _close(k, 0.5):
                out(_V("half", f=v))
            elif v.kind == "cube" and _close(k, 0.044715):
                out(_V("cube_c", f=v.f))
            elif v.kind == "inner" and _close(k, math.sqrt(2 / math.pi)):
                out(_V("inner_s", f=v.f))
            elif v.kind == "linear" and op == "Div" and _close(1 / k, math.sqrt(2)):
                fail("GELU's erf form (x / sqrt(2), then Erf): the fabric computes the tanh "
                     "form; export GELU with approximate = 'tanh'")
            else:
                fail("a Mul or Div by a constant is the attention's scale or a step of GELU's "
                     "tanh form")
            continue
        if op == "Pow":
            if args[0] is None or args[0].kind != "linear" or cs[1] is None or \
                    not _close(cs[1], 3.0):
                fail("a Pow is GELU's x^3")
            out(_V("cube", f=args[0]))
            continue
        if op == "Tanh":
            if args[0] is None or args[0].kind != "inner_s":
                fail("a Tanh is GELU's tanh(sqrt(2 / pi) (x + 0.044715 x^3))")
            out(_V("tanh", f=args[0].f))
            continue
        if op == "Where":
            mask, fill, v = _matrix(cs[0]), cs[1], args[2] if len(args) > 2 else None
            if mask is None or fill is None or v is None or v.kind not in ("scores",
                                                                           "scaled") or \
                    not np.all(fill <= _MASKED) or \
                    not np.array_equal(mask.astype(bool), _above(mask.shape)):
                fail("a Where is the causal mask: where j > i, -inf, else the scores")
            out(_V("masked", att=v.att, scale=v.scale))
            continue
        if op == "Softmax":
            axis = attrs["axis"].i if "axis" in attrs else -1
            if args[0] is None or args[0].kind != "masked" or axis not in (-1, 2, 3):
                fail("a Softmax takes the masked scores over their last axis")
            out(_V("probs", att={**args[0].att, "scale": args[0].scale}))
            continue
        if op == "Gelu":
            form = attrs["approximate"].s.decode() if "approximate" in attrs else "none"
            if form != "tanh":
                fail(f"approximate = {form!r} (the erf form); the fabric computes GELU's tanh "
                     f"form: export it with approximate = 'tanh'")
            if args[0] is None or args[0].kind != "linear":
                fail("a Gelu takes a projection")
            out(_V("gelu", f=args[0]))
            continue
    # the end: the logits
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1 or outputs[0] not in values or values[outputs[0]].kind != "linear":
        raise NetworkError(f"{label}: a GPT graph has one output, the logits: the final "
                           f"LayerNorm's projection")
    last = values[outputs[0]]
    if last.src.kind != "ln":
        raise NetworkError(f"{label}: the logits must be a projection of the final LayerNorm")
    if "wte" not in params or not blocks:
        raise NetworkError(f"{label}: a GPT graph has token and position embeddings and at "
                           f"least one block")
    params["ln_f.g"], params["ln_f.b"] = last.src.g, last.src.b
    head = last.w
    if not (head.shape == params["wte"].shape and np.array_equal(head, params["wte"])):
        params["head.w"] = head
    if last.b is not None and np.any(last.b != 0):
        params["head.b"] = last.b
    for n, block in enumerate(blocks):
        if set(block) != {"attn", "mlp"}:
            raise NetworkError(f"{label}: block {n} needs an attention and an MLP, in that "
                               f"order, each added to the residual stream")
        params.update({f"h{n}.{k}": v for k, v in block["attn"].items() if k != "heads"})
        params.update({f"h{n}.{k}": v for k, v in block["mlp"].items()})
    heads = {block["attn"]["heads"] for block in blocks}
    if len(heads) != 1:
        raise NetworkError(f"{label}: every block must have the same heads, found {heads}")
    if any(not math.isclose(e, EPS, rel_tol=1e-3) for e in ln_eps):
        raise NetworkError(f"{label}: every LayerNormalization must have epsilon {EPS} (the "
                           f"GPT of wafertile.network.gpt), found {sorted(set(ln_eps))}")
    out_params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    out_params["heads"] = np.array(heads.pop())
    meta = {p.key: p.value for p in model.metadata_props}
    return out_params, meta


def _residual(lin, blocks: list[dict], where: str) -> None:
    """A projection added to the residual stream: the attention's output projection or the
    MLP's second layer; record the block's parameters."""
    src = lin.src
    bias = lin.b if lin.b is not None else np.zeros(lin.w.shape[0])
    if src.kind == "attn_out":
        att = src.att
        q, k, v = att["q"], att["k"], att["v"]
        if all(x.kind == "part" for x in (q, k, v)) and q.qkv is k.qkv is v.qkv and \
                (q.n, k.n, v.n) == (0, 1, 2):  # one projection, split
            qkv = q.qkv
            w = np.array(qkv.w, np.float64)
            b = np.array(qkv.b if qkv.b is not None else np.zeros(w.shape[0]), np.float64)
        elif all(x.kind == "linear" for x in (q, k, v)) and q.src is k.src is v.src and \
                q.w.shape == k.w.shape == v.w.shape:  # three projections of one LayerNorm
            qkv = q
            w = np.concatenate([x.w for x in (q, k, v)]).astype(np.float64)
            b = np.concatenate([x.b if x.b is not None else np.zeros(x.w.shape[0])
                                for x in (q, k, v)]).astype(np.float64)
        else:
            raise NetworkError(f"{where} does not fit a GPT block: the attention's queries, "
                               f"keys and values must be the three parts of one projection, "
                               f"in that order, or three projections of one LayerNorm")
        if qkv.src.kind != "ln":
            raise NetworkError(f"{where} does not fit a GPT block: the attention's projection "
                               f"must take a LayerNorm of the residual stream")
        D = w.shape[0] // 3
        # the graph's scale of the scores, in the queries (gpt_network folds 1 / sqrt(D_h))
        factor = att["scale"] * math.sqrt(D // att["H"])
        if not math.isclose(factor, 1.0, rel_tol=1e-6):
            w[:D] *= factor
            b[:D] *= factor
        blocks.append({"attn": {"ln1.g": qkv.src.g, "ln1.b": qkv.src.b, "qkv.w": w,
                                "qkv.b": b, "proj.w": lin.w, "proj.b": bias,
                                "heads": att["H"]}})
        return
    if src.kind == "gelu":
        fc = src.f
        if not blocks or "mlp" in blocks[-1] or fc.src.kind != "ln":
            raise NetworkError(f"{where} does not fit a GPT block: the MLP follows the "
                               f"block's attention and takes a LayerNorm of the residual "
                               f"stream")
        blocks[-1]["mlp"] = {"ln2.g": fc.src.g, "ln2.b": fc.src.b, "fc.w": fc.w,
                             "fc.b": fc.b if fc.b is not None else np.zeros(fc.w.shape[0]),
                             "fc2.w": lin.w, "fc2.b": bias}
        return
    raise NetworkError(f"{where} does not fit a GPT block: the residual stream adds the "
                       f"attention's output projection or the MLP's second layer")
