"""Numpy reference of a training step on the fabric (``docs/training.md``, "The training step
on the fabric"), bit for bit: what the float tiles and the host compute, in their order.

A step of a chain of fully connected layers with ReLU or GELU (every layer but the last),
softmax cross-entropy, on a batch of ``B`` inputs:

- **forward** as inference (:func:`wafertile.stream.reference`, one chunk per layer: a
  training layer is never split over tiles): ``Z = fp32(Z + fp32(w) * fp32(x))`` from the
  bias, ``j`` ascending, zero operands skipped; ``X_{l+1} = half(relu(Z_l))``, or for a
  GELU layer ``half(GELU(Z_l))`` with ``U_l = half(Z_l)`` kept;
- **the loss gradient** on the host, from the FP32 logits, in float64
  (:func:`loss_gradient`), times the loss scale ``S``, rounded to FP32 and then to the format;
- **backward data** (layers ``L-1 .. 1``): the transposed layer from +0, ``i`` ascending,
  zero operands skipped; then ``FINISH_BACK``: ``half(D)`` where the forward activation
  ``X_l > 0``, else +0; after a GELU layer instead ``half(MUL(D, GELU_GRAD(z)))`` with ``z =
  mac(+0, 1.0, U)`` (:func:`gelu_back`);
- **weight and bias gradients** (``GRAD``): for every position of the mask and every bias,
  per group of ``rows`` batch rows a sum from +0 over the group's rows in order, zero
  operands skipped, the bias's second operand 1.0; the host adds the groups' sums in group
  order (:func:`sum_groups`);
- **LayerNorm layers** (``docs/training.md``, "LayerNorm layers"): inference's LayerNorm of
  ``Z_l`` (:func:`wafertile.sim.models.rows.layernorm`, the parts of layer ``l``'s plan), no
  activation after it, its normalized outputs ``fmt(x^)`` and ``r`` kept; backward, ``E =
  half(D)``, the GRAD chains of ``gamma`` (``E x^``) and ``beta`` (``E x 1.0``), and
  ``dY_l = half(layernorm_grad(D))`` on the parts of the transposed layer ``l + 1``'s plan
  (:func:`layernorm_back`).

Everything is vectorized: one numpy step per input index (forward), per output index
(backward data), per batch row (gradients). Words are raw bits (``uint16`` for the format,
``uint32`` for FP32), as in :mod:`.fp`; the results are returned as ``float32`` values too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...config import Config
from ...formats import fp32_fields
from ...hdl.core.fp import FP32, float_format
from ...stream.numpy_reference import reference
from ...stream.plan import plan_layer
from . import nonlinear as nl
from .attention import attention, attention_grad
from .fp import add, canonical, mac, relu, to_half
from .rows import layernorm, layernorm_grad

__all__ = ["StepResult", "attentions", "backward_data", "finish_back", "forward", "gelu_back",
           "gelus", "gradients", "layernorm_back", "loss_gradient", "norm_gradients", "norms",
           "sum_groups", "training_step"]


@dataclass
class StepResult:
    """One training step's results (``docs/training.md``).

    Attributes
    ----------
    loss : float
        The mean cross-entropy of the batch (float64, reported only: nothing depends on it).
    losses : numpy.ndarray
        float64, ``B``: each input's cross-entropy.
    logits : numpy.ndarray
        float32, ``B x I_{L-1}``: the last layer's accumulators.
    acts : list of numpy.ndarray
        float32, ``acts[l]`` = ``X_l`` (``B x J_l``): the activations entering layer ``l``
        (``acts[0]`` the inputs), as the tiles keep them for the backward pass.
    dys : list of numpy.ndarray
        float32, ``dys[l]`` = ``dY_l`` (``B x I_l``): the gradient of layer ``l``'s output as
        the tiles hold it (numbers of the format, times ``S``); ``dys[L-1]`` is the loss
        gradient the host writes in.
    dw, db : list of numpy.ndarray
        float32, ``I_l x J_l`` (+0 outside the mask) and ``I_l``: the weight and bias
        gradients times ``S``, as the store takes them.
    kept : list
        Per layer, for a GELU layer ``U_l = half(Z_l)`` (float32, ``B x I_l``: what the tiles
        keep for its derivative), else None.
    dln : list
        Per layer, for a LayerNorm layer ``(dgamma, dbeta)`` (float32, ``I_l`` each, times
        ``S``), else None.
    norm : list
        Per layer, for a LayerNorm layer what its forward and backward passes make as words
        of the format (:func:`forward`'s ``norm``, with ``"back"``: the derivative's steps,
        :func:`wafertile.sim.models.rows.layernorm_grad`, and ``"e"``: ``E = half(D)``),
        else None.
    """

    loss: float
    losses: np.ndarray
    logits: np.ndarray
    acts: list[np.ndarray]
    dys: list[np.ndarray]
    dw: list[np.ndarray]
    db: list[np.ndarray]
    kept: list = None  # type: ignore[assignment]
    dln: list = None  # type: ignore[assignment]
    norm: list = None  # type: ignore[assignment]
    #: per layer, for an attention layer its forward pass's words
    #: (:func:`wafertile.sim.models.attention.attention`'s) with ``"do"``, the outputs'
    #: gradient as the tiles hold it (words of the format), and ``"grad"``,
    #: :func:`~wafertile.sim.models.attention.attention_grad`'s; else None
    attn: list = None  # type: ignore[assignment]


def _words(values, fmt) -> np.ndarray:
    """The words of ``values`` (numbers of ``fmt``, as float32 or float16): every NaN the
    canonical one."""
    return canonical(fmt.bits(np.asarray(values, np.float32)), fmt)


def gelus(gelu, layers: int) -> tuple[bool, ...]:
    """``gelu`` (None, or one bool per layer: GELU instead of ReLU after that layer) as a
    tuple of ``layers`` bools; the last layer has neither."""
    flags = tuple(bool(g) for g in gelu) if gelu is not None else (False,) * layers
    if len(flags) != layers:
        raise ValueError(f"gelu has {len(flags)} flags for {layers} layers")
    return (*flags[:-1], False)


def norms(ln, layers: int) -> tuple:
    """``ln`` (None, or per layer None or ``(gamma, beta, eps)``: a LayerNorm of that layer's
    accumulators, FP32 values) as a tuple of ``layers`` entries, each None or the FP32 words
    ``(gamma, beta, eps)`` (``uint32``, NaNs canonical).

    Raises
    ------
    ValueError
        For a wrong count, or a LayerNorm on the last layer (the chain's logits).
    """
    if ln is None:
        return (None,) * layers
    ln = tuple(ln)
    if len(ln) != layers:
        raise ValueError(f"ln has {len(ln)} entries for {layers} layers")
    if ln and ln[-1] is not None:
        raise ValueError(f"layer {layers - 1} has a LayerNorm: the chain's last layer gives "
                         f"the logits, which the loss takes as they are")
    return tuple(None if norm is None else tuple(
        (fp32_fields(np.asarray(v, np.float32)) & 0xFFFFFFFF).astype(np.uint32)
        for v in (norm[0], norm[1], np.float32(norm[2]))) for norm in ln)


def attentions(attn, weights, batch: int | None = None, gelu=None, ln=None, res=None
               ) -> tuple:
    """``attn`` (None, or per layer None or ``(heads, T)``: layer ``l`` is the projection to
    the queries, keys and values of ``heads`` heads, the attention of sequences of ``T``
    positions after it, ``docs/training.md``, "Attention layers") as a tuple of
    ``len(weights)`` entries, each None or ``(heads, T, D)``.

    Raises
    ------
    ValueError
        For a wrong count, an attention on the last layer, or with GELU or a LayerNorm
        (``gelu``, ``ln``) or a residual (``res``), outputs that are not ``3 heads D``, a
        next layer whose inputs are not ``heads D``, ``T < 1``, or a ``batch`` that is not
        whole sequences.
    """
    L = len(weights)
    if attn is None:
        return (None,) * L
    attn = tuple(attn)
    if len(attn) != L:
        raise ValueError(f"attn has {len(attn)} entries for {L} layers")
    flags, lns = gelus(gelu, L), norms(ln, L)
    out = []
    for n, a in enumerate(attn):
        if a is None or (np.ndim(a) == 0 and not a):
            out.append(None)
            continue
        heads, T = (int(v) for v in a)
        I = np.shape(weights[n])[0]
        if n == L - 1:
            raise ValueError(f"layer {n} has attention (attn{n}): the chain's last layer gives "
                             f"the logits")
        if heads < 1 or T < 1 or I % (3 * heads):
            raise ValueError(f"attn{n} = ({heads}, {T}): layer {n}'s {I} outputs are not the "
                             f"queries, keys and values of {heads} heads of T = {T} positions "
                             f"(a multiple of {3 * max(heads, 1)} outputs, T >= 1)")
        if flags[n] or lns[n] is not None or (res is not None and res[n] is not None):
            what = "GELU" if flags[n] else "a LayerNorm" if lns[n] is not None else \
                f"a residual (res{n})"
            raise ValueError(f"layer {n} has attention and {what}: the projection's outputs "
                             f"are the attention's inputs")
        if np.shape(weights[n + 1])[1] != I // 3:
            raise ValueError(f"layer {n + 1} takes {np.shape(weights[n + 1])[1]} inputs and the "
                             f"attention after layer {n} gives {I // 3} ({heads} heads of "
                             f"{I // (3 * heads)})")
        if batch is not None and batch % T:
            raise ValueError(f"the batch of {batch} inputs is not whole sequences of T = {T} "
                             f"positions (attn{n})")
        out.append((heads, T, I // (3 * heads)))
    return tuple(out)


def residuals(res, layers: int, ln=None, sizes: list[int] | None = None) -> tuple:
    """``res`` (None, or per layer None or ``k``: the layer adds layer ``k``'s accumulators
    before its LayerNorm, rounded to the format: ``docs/training.md``, "Residual
    connections") as a tuple of ``layers`` entries.

    Raises
    ------
    ValueError
        For a wrong count, a source ``k`` not before its layer, of another size (``sizes``:
        the chain's, if given), or without a LayerNorm (``ln``: :func:`norms`' input). (The
        compiler also keeps one residual at a time, as inference does:
        :func:`wafertile.trainer.compiler.check_residuals`.)
    """
    if res is None:
        return (None,) * layers
    res = tuple(None if k is None else int(k) for k in res)
    if len(res) != layers:
        raise ValueError(f"res has {len(res)} entries for {layers} layers")
    lns = norms(ln, layers)
    for n, k in enumerate(res):
        if k is None:
            continue
        if not 0 <= k < n:
            raise ValueError(f"layer {n} adds layer {k}'s outputs (res{n} = {k}): a residual "
                             f"comes from an earlier layer")
        if sizes is not None and sizes[k + 1] != sizes[n + 1]:
            raise ValueError(f"layer {n} adds layer {k}'s outputs (res{n} = {k}): {sizes[k + 1]} "
                             f"of them to its {sizes[n + 1]}")
        if lns[k] is None:
            raise ValueError(f"layer {n} adds layer {k}'s outputs (res{n} = {k}), which have no "
                             f"LayerNorm: training keeps a residual of a LayerNorm layer's "
                             f"accumulators (docs/training.md, \"Residual connections\")")
    return res


def forward(config: Config, weights, biases, x, gelu=None, kept: list | None = None, *,
            ln=None, norm: list | None = None, res=None, held: dict | None = None,
            attn=None, att: list | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(logits, acts)``: the forward pass of a step, exactly inference's (``docs/network.md``,
    "Floating-point networks"; :func:`wafertile.stream.reference` per layer): ``logits`` FP32
    words ``B x I_{L-1}``, ``acts[l]`` the format's words of ``X_l``. ``gelu``: per layer,
    GELU instead of ReLU (:func:`gelus`); ``kept``, if given, gets per layer the format's
    words of ``U_l = half(Z_l)`` for a GELU layer, else None. ``ln``: per layer, a LayerNorm
    instead of ReLU (:func:`norms`); ``norm``, if given, gets per layer the LayerNorm's
    steps (:func:`wafertile.sim.models.rows.layernorm`'s: ``"mean"``, ``"mean2"``,
    ``"rsqrt"`` and the kept ``"xhat"``, words of the format), else None. ``res``: per
    layer, the earlier layer whose accumulators it adds (:func:`residuals`); ``held``, if
    given, gets per target layer the kept ``half(Z_k)`` it adds (words of the format).
    ``attn``: per layer, the attention after it (:func:`attentions`); ``att``, if given,
    gets per layer its :func:`~wafertile.sim.models.attention.attention` words, else None."""
    fmt = float_format(config.dtype)
    flags = gelus(gelu, len(weights))
    lns = norms(ln, len(weights))
    atts = attentions(attn, weights, len(x), gelu, ln)
    sources = {k: n for n, k in enumerate(residuals(res, len(weights), ln)) if k is not None}
    keep: dict[int, np.ndarray] = {}  # the kept half(Z_k), by target layer
    one = fmt.bits(np.float32(1.0))
    acts = [np.asarray(x, np.float32)]
    for n, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = FP32.bits(reference(config, acts[-1], np.asarray(w, np.float32), fp32_fields(b)))
        if n in keep:  # the residual: one MAC of weight 1.0 on each kept output
            z = mac(z, one, keep[n], fmt)
            if held is not None:
                held[n] = keep[n]
        if n in sources:  # before the LayerNorm
            keep[sources[n]] = to_half(z, fmt).astype(fmt.dtype)
        if kept is not None:
            kept.append(to_half(z, fmt) if flags[n] else None)
        if norm is not None:
            norm.append(None if lns[n] is None else {})
        if att is not None:
            att.append(None)
        if n == len(weights) - 1:
            return z, [_words(a, fmt) for a in acts]
        if atts[n] is not None:  # the queries, keys and values of the attention after it
            heads, T, D = atts[n]
            HD = heads * D
            words = attention(z[:, :HD], z[:, HD:2 * HD], z[:, 2 * HD:], heads, config.dtype,
                              len(z) // T)
            if att is not None:
                att[-1] = words
            acts.append(fmt.values(to_half(words["out"], fmt)))
            continue
        if lns[n] is not None:  # along each row, in the order of the tiles that hold it
            parts = plan_layer(config, np.asarray(w, np.float32), streams=False).parts(0)
            y = layernorm(z, parts, config.dtype, *lns[n],
                          None if norm is None else norm[-1])
            acts.append(fmt.values(to_half(y, fmt)))
            continue
        acts.append(fmt.values(to_half(nl.gelu(z) if flags[n] else relu(z), fmt)))
    raise ValueError("a network has at least one layer")


def loss_gradient(logits, labels, scale: float, batch: int, dtype: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(losses, dy)``: each row's cross-entropy (float64) and the loss gradient the host
    writes into the tiles, ``half(fp32((p - onehot) * (S / batch)))`` as the format's words.

    In float64, per row: ``m = max(z)``, ``e = exp(z - m)`` (numpy's), ``s = e_0 + e_1 + ...``
    in index order, ``p = e / s``; ``loss = log(s) - (z_y - m)``. ``batch`` is the step's
    batch ``B`` (the mean is over the step, not over one group).
    """
    fmt = float_format(dtype)
    z = FP32.values(np.asarray(logits, np.uint32)).astype(np.float64)
    labels = np.asarray(labels, np.int64)
    with np.errstate(all="ignore"):
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        s = e[:, 0].copy()
        for c in range(1, e.shape[1]):  # in index order (not numpy's pairwise sum)
            s = s + e[:, c]
        p = e / s[:, None]
        rows = np.arange(len(z))
        losses = np.log(s) - (z[rows, labels] - m[:, 0])
        d = p.copy()
        d[rows, labels] = p[rows, labels] - 1.0
        g = (d * (float(scale) / float(batch))).astype(np.float32)
    return losses, canonical(fmt.bits(g), fmt)


def backward_data(config: Config, w, dy) -> np.ndarray:
    """``D`` (FP32 words ``B x J``): ``dY @ W`` on the tiles, the transposed layer (weights
    ``W.T``) from +0, ``i`` ascending, zero operands skipped (:func:`wafertile.stream.reference`;
    ``dy``: the format's words ``B x I``)."""
    fmt = float_format(config.dtype)
    return FP32.bits(reference(config, fmt.values(dy), np.asarray(w, np.float32).T))


def finish_back(dtype: str, d, x) -> np.ndarray:
    """``FINISH_BACK``: ``half(D)`` where the forward activation ``x`` (the format's words)
    is greater than 0 (a positive number or +infinity), else +0: the format's words."""
    fmt = float_format(dtype)
    with np.errstate(invalid="ignore"):
        positive = fmt.values(x) > 0
    return np.where(positive, to_half(d, fmt), 0).astype(fmt.dtype)


def gelu_back(dtype: str, d, u) -> np.ndarray:
    """The backward hand-off after a GELU layer (``docs/training.md``, "GELU layers"): the
    derivative at the kept ``U`` (the format's words), copied into a zeroed scratch
    accumulator by a MAC of weight 1.0, ``z = mac(+0, 1.0, U)``; then ``g = GELU_GRAD(z)``
    (``docs/nonlinear.md``), ``D = MUL(D, g)`` and ``half(D)``: the format's words."""
    fmt = float_format(dtype)
    u = np.asarray(u).astype(fmt.dtype)
    one = np.full(u.shape, fmt.bits(np.float32(1.0)), fmt.dtype)
    z = mac(np.zeros(u.shape, np.uint32), one, u, fmt)
    return to_half(nl.mul(np.asarray(d, np.uint32), nl.gelu_grad(z)), fmt).astype(fmt.dtype)


def layernorm_back(config: Config, w, d, norm: tuple, xhat, r, steps: dict | None = None,
                   res=None) -> tuple[np.ndarray, np.ndarray]:
    """``(E, dY_l)``: the backward hand-off after a LayerNorm layer ``l`` (``docs/training.md``,
    "LayerNorm layers"), from ``D`` (``d``: FP32 words ``B x I_l``, the transposed layer
    ``l + 1``'s accumulators; ``w``: layer ``l + 1``'s weights, whose transposed plan's parts
    order the sums along the row): ``E = half(D)`` (what the GRADs of gamma and beta take)
    and ``dY_l = half(layernorm_grad(D))`` with ``norm`` (:func:`norms`' words), the kept
    ``xhat`` (words of the format) and ``r``: the format's words. ``steps`` takes the
    derivative's (:func:`wafertile.sim.models.rows.layernorm_grad`). ``res``: the gradient
    of a layer that adds these accumulators (words of the format, ``B x I_l``), added to the
    derivative before its rounding by one MAC of weight 1.0 (``docs/training.md``, "Residual
    connections")."""
    fmt = float_format(config.dtype)
    d = np.asarray(d, np.uint32)
    parts = plan_layer(config, np.asarray(w, np.float32).T.copy(), streams=False).parts(0)
    dz = layernorm_grad(d, parts, config.dtype, norm[0], xhat, r, steps)
    if res is not None:
        dz = mac(dz, fmt.bits(np.float32(1.0)), np.asarray(res), fmt)
    return to_half(d, fmt).astype(fmt.dtype), to_half(dz, fmt).astype(fmt.dtype)


def norm_gradients(dtype: str, e, xhat, rows: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(dgamma, dbeta)`` of a LayerNorm layer as FP32 words (``I`` each): per group of
    ``rows`` batch rows the GRAD chains from +0 over the group's rows in order, ``fp32(p +
    E x^)`` and ``fp32(p + E x 1.0)``, zero operands skipped (``e``: ``E = half(D)``, ``xhat``
    the kept normalized outputs, words of the format ``B x I``); the groups' sums added in
    group order (:func:`sum_groups`)."""
    fmt = float_format(dtype)
    e = np.asarray(e).astype(np.uint32)
    xhat = np.asarray(xhat).astype(np.uint32)
    B, I = e.shape
    rows = B if rows is None else rows
    if rows < 1:
        raise ValueError(f"norm_gradients needs rows >= 1, not {rows}")
    one = fmt.bits(np.float32(1.0))
    parts = []
    for g0 in range(0, B, rows):
        g = np.zeros(I, np.uint32)
        gb = np.zeros(I, np.uint32)
        for b in range(g0, min(g0 + rows, B)):
            g = mac(g, e[b], xhat[b], fmt)
            gb = mac(gb, e[b], one, fmt)
        parts.append((g, gb))
    if not parts:
        return np.zeros(I, np.uint32), np.zeros(I, np.uint32)
    return sum_groups(parts)


def gradients(dtype: str, mask, dy, x, rows: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(dW, db)`` as FP32 words (``I x J``, +0 outside ``mask``; ``I``): per group of
    ``rows`` batch rows (default: the whole batch is one group), the GRAD chains from +0 over
    the group's rows in order, zero operands skipped, the bias's operand 1.0; then the
    groups' partial sums added by the host in group order (:func:`sum_groups`)."""
    fmt = float_format(dtype)
    B = dy.shape[0]
    rows = B if rows is None else rows
    if rows < 1:
        raise ValueError(f"gradients needs rows >= 1, not {rows}")
    r, c = np.nonzero(np.asarray(mask, bool))
    one = fmt.bits(np.float32(1.0))
    parts = []
    for g0 in range(0, B, rows):
        g = np.zeros(len(r), np.uint32)
        gb = np.zeros(dy.shape[1], np.uint32)
        for b in range(g0, min(g0 + rows, B)):
            g = mac(g, dy[b, r], x[b, c], fmt)
            gb = mac(gb, dy[b], one, fmt)
        dw = np.zeros(np.shape(mask), np.uint32)
        dw[r, c] = g
        parts.append((dw, gb))
    if not parts:  # an empty batch: +0
        return np.zeros(np.shape(mask), np.uint32), np.zeros(dy.shape[1], np.uint32)
    return sum_groups(parts)


def sum_groups(parts) -> tuple[np.ndarray, np.ndarray]:
    """The host's sum of the groups' partial sums ``parts`` = ``[(dW words, db words), ...]``
    in group order: ``G = P_0``, then ``G = fp32(G + P_g)`` for ``g = 1, 2, ...`` (round to
    nearest even, a NaN canonical): FP32 words."""
    parts = list(parts)
    if not parts:
        raise ValueError("sum_groups needs at least one group")
    dw, db = (np.asarray(a).astype(np.uint32) for a in parts[0])
    for w, b in parts[1:]:
        dw = add(dw, np.asarray(w).astype(np.uint32))
        db = add(db, np.asarray(b).astype(np.uint32))
    return dw, db


def training_step(config: Config, weights, biases, masks, x, labels, scale: float = 1.0,
                  gelu=None, ln=None, res=None, attn=None) -> StepResult:
    """One step of the fabric's numerics (``docs/training.md``).

    Parameters
    ----------
    config : Config
        The fabric's (``dtype`` ``"fp16"`` or ``"bf16"``); a layer must not be split over tiles
        (``J_l <= act_depth``: the training compiler checks the whole step's budget).
    weights : list of arrays
        ``W_l`` (``I_l x J_l``), numbers of the format (``ParameterStore.stream_weights``).
    biases : list of arrays
        FP32 ``b_l``.
    masks : list of bool arrays
        ``M_l``: the positions whose gradients are computed.
    x : array
        ``B x J_0`` inputs, numbers of the format.
    labels : array
        ``B`` integers in ``0 .. I_{L-1} - 1``.
    scale : float
        The loss scale ``S``.
    gelu : sequence of bool, optional
        Per layer, GELU after it instead of ReLU (the last layer's flag is ignored).
    ln : sequence, optional
        Per layer, None or ``(gamma, beta, eps)``: a LayerNorm of its accumulators instead
        of ReLU (:func:`norms`; not on the last layer, not with GELU).
    res : sequence, optional
        Per layer, None or the earlier LayerNorm layer whose accumulators it adds
        (:func:`residuals`).
    attn : sequence, optional
        Per layer, None or ``(heads, T)``: the attention after it (:func:`attentions`).
    """
    dtype = config.dtype
    fmt = float_format(dtype)
    L = len(weights)
    lns = norms(ln, L)
    if any(g and n is not None for g, n in zip(gelus(gelu, L), lns, strict=True)):
        raise ValueError("a layer has both a LayerNorm and GELU")
    sizes = [np.shape(w)[1] for w in weights] + [np.shape(weights[-1])[0]]
    targets = {k: n for n, k in enumerate(residuals(res, L, ln, sizes)) if k is not None}
    atts = attentions(attn, weights, len(x), gelu, ln, res)
    kept: list = []
    norm: list = []
    att: list = []
    logits, acts = forward(config, weights, biases, x, gelu, kept, ln=ln, norm=norm, res=res,
                           attn=attn, att=att)
    losses, dy = loss_gradient(logits, labels, scale, len(logits), dtype)
    dys: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    dys[L - 1] = dy
    dw: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    db: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    dln: list = [None] * L
    for n in reversed(range(L)):
        gw, gb = gradients(dtype, masks[n], dys[n], acts[n], config.rows)
        dw[n], db[n] = FP32.values(gw), FP32.values(gb)
        if n > 0:
            d = backward_data(config, weights[n], dys[n])
            if atts[n - 1] is not None:  # dO, the derivative, dY = half(dQ | dK | dV)
                heads, T, _ = atts[n - 1]
                got = att[n - 1]
                got["do"] = to_half(d, fmt).astype(fmt.dtype)
                got["grad"] = attention_grad(got, got["do"], heads, dtype, len(d) // T)
                dys[n - 1] = to_half(np.hstack([got["grad"][k] for k in ("dq", "dk", "dv")]),
                                     fmt).astype(fmt.dtype)
                continue
            if lns[n - 1] is not None:
                got = norm[n - 1]
                got["back"] = {}
                add = dys[targets[n - 1]] if n - 1 in targets else None
                got["e"], dys[n - 1] = layernorm_back(config, weights[n], d, lns[n - 1],
                                                      got["xhat"], got["rsqrt"], got["back"],
                                                      add)
                dln[n - 1] = tuple(FP32.values(v) for v in norm_gradients(
                    dtype, got["e"], got["xhat"], config.rows))
                continue
            dys[n - 1] = (finish_back(dtype, d, acts[n]) if kept[n - 1] is None else
                          gelu_back(dtype, d, kept[n - 1]))
    return StepResult(
        loss=float(np.mean(losses)) if len(losses) else 0.0, losses=losses,
        logits=FP32.values(logits), acts=[fmt.values(a).astype(np.float32) for a in acts],
        dys=[fmt.values(d).astype(np.float32) for d in dys], dw=dw, db=db,
        kept=[None if k is None else fmt.values(k).astype(np.float32) for k in kept],
        dln=dln, norm=norm, attn=att)
