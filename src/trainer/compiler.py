"""The training step as a program for the array (``docs/training.md``, "The phases of a
step"): one batch group of ``rows`` inputs through the forward pass, the loss gradient written
in by the host, and per layer, from the last, the GRAD chains (weight and bias gradients), the
backward data pass and the backward hand-off (FINISH_BACK).

The loss gradient depends on the logits the forward pass leaves; a program is made whole
before it runs, so the host's loss gradient is given (from the reference's logits: the run
then checks the fabric's logits equal them bit for bit, which makes it the loss gradient the
host would have computed from the fabric's own).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np

from ..config import Config
from ..formats import float_words, fp32_fields, fp32_values, fp32_words
from ..hdl.core.fp import float_format
from ..hdl.flit import Opcode, Port, flit_layout
from ..network.compiler import (
    attention_handoff,
    handoff_phases,
    output_places,
    residual_phase,
)
from ..network.model import residual_overlap
from ..sim.models.training import attentions, gelus, norms, residuals
from ..stream import LayerError, LayerProgram, Phase, PhaseBuilder
from ..stream.attention import (
    AttentionLayout,
    attention_grad_steps,
    attention_keep_phases,
    attention_steps,
    check_attention,
    check_attention_grad,
)
from ..stream.compiler import add_activations, add_zero, read_phase, stream_phase
from ..stream.plan import LayerPlan, plan_layer, reply_route
from ..stream.rows import (
    check_layernorm,
    check_layernorm_back,
    gelu_back_phases,
    gelu_back_scratch,
    layernorm_back_phases,
    layernorm_phases,
)
from ..train import TrainError

__all__ = ["AttentionPhases", "GradFlits", "NormPhases", "StepCompiler", "StepProgram",
           "check_attentions", "check_gelu", "check_norms", "check_residuals", "compile_step",
           "gradient_words", "step_layout"]


@dataclass
class GradFlits:
    """The GRADs of one layer's gradient phase, in injection order: the column each goes
    down, its ``addr`` / ``addr_b``, and which gradient it is (output ``i``; input ``k``, or
    -1 for the bias). ``norm``: the GRADs of the layer's LayerNorm instead (``k`` 0 for
    gamma, -1 for beta)."""

    layer: int
    column: np.ndarray
    addr: np.ndarray
    addr_b: np.ndarray
    i: np.ndarray
    k: np.ndarray
    norm: bool = False


@dataclass
class NormPhases:
    """Where a LayerNorm layer's row operation sits in a :class:`StepProgram`: its forward
    pass (:func:`~wafertile.stream.rows.layernorm_phases`, the hand-off that keeps the
    normalized outputs included) or its derivative
    (:func:`~wafertile.stream.rows.layernorm_back_phases`), phases ``first`` onwards,
    ``count`` of them, on ``plan`` (the layer's, or the transposed next layer's)."""

    layer: int
    backward: bool
    plan: LayerPlan
    first: int
    count: int


@dataclass
class AttentionPhases:
    """Where an attention layer's phases sit in a :class:`StepProgram`: the forward pass's
    (:func:`~wafertile.stream.attention.attention_steps`, then the keeping hand-offs,
    ``"kept"``) or the derivative's (:func:`~wafertile.stream.attention.
    attention_grad_steps`), phases ``first`` onwards, each one's step in ``labels``, on
    ``layout``."""

    layer: int
    backward: bool
    layout: AttentionLayout
    first: int
    labels: list[str]


@dataclass
class StepProgram(LayerProgram):
    """A compiled training step of one batch group: a :class:`~wafertile.stream.LayerProgram`
    whose ``"grad"`` phases end when their GRAD results are back at the south edge;
    ``grads[n]`` describes phase ``n``'s GRADs (None for the other phases)."""

    grads: list[GradFlits | None] = field(default_factory=list)
    #: each phase's part of the step: ``"forward"``, ``"loss"`` (the loss gradient written
    #: in), ``"gradients"`` (GRAD chains), ``"backward"`` (the transposed layers' zeroing and
    #: streams), ``"backward_handoff"`` (FINISH_BACK rounds)
    roles: list[str] = field(default_factory=list)
    #: where each region starts in the activation bank: ``"A0"`` ... , ``"G"``, ``"ONE"``
    regions: dict[str, int] = field(default_factory=dict)
    #: with ``read_dx``: per layer ``l >= 1`` from the last, ``(l, column, J_l)``: the
    #: replies of its ``"check"`` phase are ``Y[y, column + c x J_l + k]`` = ``dY_{l-1}[y, k]``
    #: as tile ``(c, y)`` keeps it (its format's word)
    dx: list[tuple[int, int, int]] = field(default_factory=list)
    #: the phases of each LayerNorm layer's forward pass and derivative
    norms: list[NormPhases] = field(default_factory=list)
    #: per residual connection ``(l, base, plan)``: layer ``l`` adds the outputs kept at
    #: ``base`` + their slot of ``plan`` (layer ``l``'s) in the tile that holds them
    residuals: list[tuple[int, int, LayerPlan]] = field(default_factory=list)
    #: the phases of each attention layer's forward pass and derivative
    attention: list[AttentionPhases] = field(default_factory=list)


def check_gelu(config: Config, gelu) -> None:
    """Refuse GELU layers (``gelu``: a flag per layer) that ``config``'s tiles cannot train:
    without the nonlinear unit, or with a router whose local input holds one flit per VC
    (the derivative's SENDs and their fence need two: ``lite``).

    Raises
    ------
    TrainError
        One line naming the first GELU layer and what it needs.
    """
    flags = tuple(bool(g) for g in (gelu or ()))[:-1]
    if not any(flags):
        return
    n = flags.index(True)
    if not config.nonlinear:
        raise TrainError(f"layer {n} has GELU, which needs tiles with the nonlinear unit "
                         f"(nonlinear = true, --nonlinear true)")
    if gelu_back_scratch(config) < 1:
        raise TrainError(f"layer {n} has GELU, whose derivative needs a router whose local "
                         f"input holds at least 2 flits per VC: router_arch = "
                         f"{config.router_arch!r} holds 1")


def check_norms(config: Config, weights, ln, gelu=None) -> tuple:
    """Refuse LayerNorm layers (``ln``: per layer None or ``(gamma, beta, eps)``) that a
    training step of ``weights`` (numbers of the format) on ``config`` cannot have: on the
    last layer, with GELU, with a ``gamma`` or ``beta`` of the wrong length, or whose forward
    pass or derivative the tiles cannot make (:func:`wafertile.stream.rows.check_layernorm`,
    :func:`~wafertile.stream.rows.check_layernorm_back` on the transposed next layer, in
    the step's layout, whose budget :func:`step_layout` checks). Returns
    :func:`wafertile.sim.models.training.norms`' words.

    Raises
    ------
    TrainError
        One line naming the first such layer and what is wrong.
    """
    L = len(weights)
    try:
        lns = norms(ln, L)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    flags = gelus(gelu, L)
    regions: dict[str, int] = {}
    for n, norm in enumerate(lns):
        if norm is None:
            continue
        if not (config.is_float and config.nonlinear):
            raise TrainError(f"layer {n} has a LayerNorm, which needs float tiles with the "
                             f"nonlinear unit (dtype fp16 or bf16, nonlinear = true, "
                             f"--nonlinear true)")
        I = np.shape(weights[n])[0]
        for name, v in zip(("gamma", "beta"), norm[:2], strict=True):
            if v.shape != (I,):
                raise TrainError(f"layer {n}'s LayerNorm has {v.size} {name} values for its "
                                 f"{I} outputs")
        if flags[n]:
            raise TrainError(f"layer {n} has a LayerNorm and GELU: a LayerNorm layer feeds "
                             f"the next layer with no activation")
        if not regions:
            sizes = [np.shape(w)[1] for w in weights] + [np.shape(weights[-1])[0]]
            regions = step_layout(config, sizes, flags, [m is not None for m in lns])
        try:
            check_layernorm(plan_layer(config, _words(config, f"w{n}", weights[n]),
                                       streams=False), f"layer {n}'s LayerNorm")
            back = plan_layer(config, _words(config, f"w{n + 1}", weights[n + 1]).T.copy(),
                              streams=False)
            check_layernorm_back(back, regions[f"XH{n}"], regions[f"R{n}"],
                                 _scratch(regions), f"layer {n}'s LayerNorm's derivative "
                                 f"(on layer {n + 1}'s transposed plan)")
        except LayerError as exc:
            raise TrainError(str(exc)) from None
    return lns


def check_attentions(config: Config, weights, attn, gelu=None, ln=None, res=None,
                     batch: int | None = None) -> tuple:
    """:func:`wafertile.sim.models.training.attentions` of a step of ``weights`` on
    ``config`` (``docs/training.md``, "Attention layers"): each group of ``rows`` inputs whole
    sequences (``T`` divides ``rows``), the attention's phases and its derivative's possible
    on the tiles (:func:`wafertile.stream.attention.check_attention`, the banks' depths in
    the step's layout, whose budget :func:`step_layout` checks), refused in one line
    (:class:`TrainError`)."""
    try:
        atts = attentions(attn, weights, batch, gelu, ln, res)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    for n, a in enumerate(atts):
        if a is None:
            continue
        T = a[1]
        if config.rows < T or config.rows % T:
            raise TrainError(f"the attention after layer {n} has sequences of T = {T} "
                             f"positions and the array {config.rows} rows: a batch group of "
                             f"rows inputs is whole sequences, one position per row (T must "
                             f"divide rows)")
        try:
            lay = _attention_layout(config, a)
            check_attention(lay, f"the attention after layer {n}")
            check_attention_grad(lay, f"the derivative of the attention after layer {n}")
        except LayerError as exc:
            raise TrainError(str(exc)) from None
    return atts


def _attention_layout(config: Config, att: tuple, act: int = 0, do: int = 0
                      ) -> AttentionLayout:
    """The layout of an attention ``(heads, T, D)`` in a group of ``rows`` inputs: its own
    activations from ``act``, ``dO`` at ``do``."""
    heads, T, D = att
    return AttentionLayout(config, T, heads, D, config.rows // T, act=act, do=do)


def _scratch(regions: dict[str, int]) -> tuple[int, int, int]:
    """The three scratch words of LayerNorm layers (region ``LS``)."""
    return regions["LS"], regions["LS"] + 1, regions["LS"] + 2


def check_residuals(weights, ln, res) -> tuple:
    """:func:`wafertile.sim.models.training.residuals` of a step of ``weights``, with one
    residual kept at a time as in inference (:func:`wafertile.network.model.residual_overlap`),
    refused in one line (:class:`TrainError`)."""
    sizes = [np.shape(w)[1] for w in weights] + [np.shape(weights[-1])[0]]
    try:
        out = residuals(res, len(weights), ln, sizes)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    why = residual_overlap(out)
    if why:
        raise TrainError(why)
    return out


def step_layout(config: Config, sizes: list[int], gelu=None, ln=None,
                kept: dict[int, int] | None = None, att: dict[int, tuple[int, int]] | None = None
                ) -> dict[str, int]:
    """The activation regions of a tile (docs/training.md, "What a tile keeps"):
    ``A_l`` at ``J_0 + ... + J_{l-1}``, ``G`` after them, ``ONE`` after ``G``, then ``U_l``
    (``I_l`` words) for each GELU layer ``l`` (``gelu``: a flag per layer), then ``XH_l``
    (``I_l`` words) and ``R_l`` (one) for each LayerNorm layer ``l`` (``ln``: a flag per
    layer) and, with any, the three scratch words ``LS``; then ``K_l`` (``kept[l]`` words) for
    each layer ``l`` that adds a residual; then ``DA_l`` and ``AT_l`` for each attention
    layer (``att[l]``: their words, docs/training.md, "Attention layers").

    Raises
    ------
    TrainError
        If they do not fit ``act_depth``.
    """
    regions, at = {}, 0
    for n, J in enumerate(sizes[:-1]):
        regions[f"A{n}"] = at
        at += J
    regions["G"] = at
    regions["ONE"] = at + sizes[-1]
    need = regions["ONE"] + 1
    terms = [*map(str, sizes), "1"]
    for n, g in enumerate(gelus(gelu, len(sizes) - 1)):
        if g:
            regions[f"U{n}"] = need
            need += sizes[n + 1]
            terms.append(f"{sizes[n + 1]} (U{n})")
    flags = [bool(f) for f in (ln or ())]
    for n, f in enumerate(flags):
        if f:
            regions[f"XH{n}"], regions[f"R{n}"] = need, need + sizes[n + 1]
            need += sizes[n + 1] + 1
            terms += [f"{sizes[n + 1]} (XH{n})", f"1 (R{n})"]
    if any(flags):
        regions["LS"] = need
        need += 3
        terms.append("3 (LS)")
    for n, words in sorted((kept or {}).items()):
        regions[f"K{n}"] = need
        need += words
        terms.append(f"{words} (K{n})")
    for n, (da, at) in sorted((att or {}).items()):
        regions[f"DA{n}"], regions[f"AT{n}"] = need, need + da
        need += da + at
        terms += [f"{da} (DA{n})", f"{at} (AT{n})"]
    if need > config.act_depth:
        what = (" the loss gradient, a 1.0 and what GELU, LayerNorm, residual and attention "
                "layers keep"
                if len(terms) > len(sizes) + 1 else " the loss gradient and a 1.0")
        raise TrainError(f"a training step keeps every layer's inputs,{what} in each tile: "
                         f"{' + '.join(terms)} = {need} activation words > act_depth = "
                         f"{config.act_depth}")
    return regions


def _words(config: Config, name: str, values) -> np.ndarray:
    w = float_words(config.dtype, name, np.asarray(values, np.float32), error=TrainError)
    return np.where((w & 0x7FFF) == 0, 0, w)


def compile_step(config: Config, weights, biases, masks, x, dy, *, read_dx: bool = False,
                 gelu=None, ln=None, res=None, attn=None) -> StepProgram:
    """The program of one batch group.

    Parameters
    ----------
    weights, biases, masks : lists per layer
        Numbers of the format (``I_l x J_l``), FP32 biases, bool masks.
    x : array
        The group's inputs, at most ``rows`` x ``J_0`` numbers of the format; a group of
        fewer rows is padded with zero inputs.
    dy : array
        The loss gradient of the group's rows (numbers of the format, ``x``'s rows x
        ``I_{L-1}``); padding rows get +0.
    read_dx : bool
        After each backward hand-off, read back every tile's copy of ``dY_{l-1}`` (a
        ``"check"`` phase of READ_ACTs, :attr:`StepProgram.dx`): the verification of every
        ``dX`` the tiles make; its cycles are not the step's.
    gelu : sequence of bool, optional
        Per layer, GELU after it instead of ReLU (docs/training.md, "GELU layers"; the last
        layer's flag is ignored). Needs tiles with the nonlinear unit.
    ln : sequence, optional
        Per layer, None or ``(gamma, beta, eps)``: a LayerNorm of its accumulators instead
        of ReLU (docs/training.md, "LayerNorm layers"; :func:`check_norms`).
    res : sequence, optional
        Per layer, None or the earlier LayerNorm layer whose accumulators it adds
        (docs/training.md, "Residual connections"; :func:`check_residuals`).
    attn : sequence, optional
        Per layer, None or ``(heads, T)``: the attention after it (docs/training.md,
        "Attention layers"; :func:`check_attentions`).
    """
    cfg = config
    R, C = cfg.rows, cfg.cols
    L = len(weights)
    flags = gelus(gelu, L)
    check_gelu(cfg, flags)
    lns = check_norms(cfg, weights, ln, flags)
    ress = check_residuals(weights, ln, res)
    atts = check_attentions(cfg, weights, attn, flags, ln, res)
    sources = {k: n for n, k in enumerate(ress) if k is not None}
    sizes = [np.shape(w)[1] for w in weights] + [np.shape(weights[-1])[0]]
    lnflags = [m is not None for m in lns]
    att_words = {n: (np.shape(weights[n])[0], max(lay.activations, lay.grad_activations))
                 for n, a in enumerate(atts) if a is not None
                 for lay in [_attention_layout(cfg, a)]}
    step_layout(cfg, sizes, flags, lnflags, att=att_words)  # the budget before the words
    fmt = float_format(cfg.dtype)
    ws = [_words(cfg, f"w{n}", w) for n, w in enumerate(weights)]
    bs = [fp32_words(f"b{n}", b, error=TrainError) for n, b in enumerate(biases)]
    xw, dyw = _group_words(cfg, x, dy, sizes[0], sizes[-1])
    plans = [plan_layer(cfg, w, groups=None if a is None else _attention_layout(cfg, a).groups())
             for w, a in zip(ws, atts, strict=True)]
    for n in sources.values():
        if plans[n].passes > 1:
            raise TrainError(f"layer {n} adds a residual (res{n}) and has {sizes[n + 1]} "
                             f"outputs, which take {plans[n].passes} passes over {plans[n].G} "
                             f"columns of {cfg.acc_depth} accumulators: a residual needs "
                             f"them at once (raise acc_depth or use more columns)")
    regions = step_layout(cfg, sizes, flags, lnflags, {
        n: max(len(part) for part in plans[n].parts(0)) for n in sources.values()}, att_words)
    layouts = {n: _attention_layout(cfg, a, regions[f"AT{n}"], regions[f"A{n + 1}"])
               for n, a in enumerate(atts) if a is not None}
    attention: list[AttentionPhases] = []
    phases: list[Phase] = []
    grads: list[GradFlits | None] = []
    roles: list[str] = []
    dx: list[tuple[int, int, int]] = []
    spans: list[NormPhases] = []
    role = "forward"

    def add(phase: Phase, grad: GradFlits | None = None) -> None:
        phases.append(phase)
        grads.append(grad)
        roles.append(role)

    # -- forward: as inference, layer l's inputs in region A_l -------------------------------
    relu = SimpleNamespace(relu=1, gelu=False)  # what handoff_phases reads of a layer
    keep = SimpleNamespace(relu=0, gelu=False)  # a hand-off of the accumulators as they are
    gelu_layer = SimpleNamespace(relu=0, gelu=True)
    for n, plan in enumerate(plans):
        for p in range(plan.passes):
            load = PhaseBuilder()
            if n == 0 and p == 0:
                add_activations(load, plan, xw, base=regions["A0"])
            add_zero(load, plan, p, R, bias=bs[n])
            add(load.phase("load"))
            add(stream_phase(plan, p, R, base=regions[f"A{n}"]))
            if ress[n] is not None:  # the kept outputs, after the layer's own MACs
                add(residual_phase(plan, R, regions[f"K{n}"]))
            if n in sources:  # before the LayerNorm: to the tiles that add them
                column, slot = output_places(plans[sources[n]])
                for phase in handoff_phases(cfg, plan, keep, p, R, None, 0, to=(
                        column, regions[f"K{sources[n]}"] + slot)):
                    add(phase)
            if n == L - 1:
                add(read_phase(plan, p, R))
                continue
            if n in layouts:  # the attention, what its derivative reads, its outputs' hand-off
                lay = layouts[n]
                steps = [*attention_steps(lay), ("kept", attention_keep_phases(lay))]
                attention.append(AttentionPhases(n, False, lay, len(phases), [
                    name for name, ps in steps for _ in ps]))
                for _, ps in steps:
                    for phase in ps:
                        add(phase)
                for phase in attention_handoff(plan, lay, keep, R, plans[n + 1],
                                               regions[f"A{n + 1}"]):
                    add(phase)
                continue
            row = SimpleNamespace(chunk=sizes[n + 1], G=C)  # every tile of the row
            if lns[n] is not None:  # (one pass: check_norms) keeping fmt(x^) and r
                xhat = handoff_phases(cfg, plan, keep, p, R, row, regions[f"XH{n}"])
                norm = layernorm_phases(plan, p, R, *(fp32_fields(fp32_values(v))
                                                      for v in lns[n]),
                                        acts=_scratch(regions)[:2], ra=regions[f"R{n}"],
                                        kept=xhat)
                spans.append(NormPhases(n, False, plan, len(phases), len(norm)))
                for phase in norm:
                    add(phase)
                for phase in handoff_phases(cfg, plan, keep, p, R, plans[n + 1],
                                            regions[f"A{n + 1}"]):
                    add(phase)
                continue
            if flags[n]:  # U_n = half(Z_n) into every tile of the row, then GELU's hand-off
                for phase in handoff_phases(cfg, plan, keep, p, R, row, regions[f"U{n}"]):
                    add(phase)
            for phase in handoff_phases(cfg, plan, gelu_layer if flags[n] else relu, p, R,
                                        plans[n + 1], regions[f"A{n + 1}"]):
                add(phase)
    # -- the loss gradient and the 1.0, written by the host --------------------------------
    loss = PhaseBuilder()
    one = int(fmt.bits(np.float32(1.0)))
    for y in range(R):
        loss.add(y, sizes[-1], x0=0, x1=C - 1, y0=y, y1=y, op=Opcode.WRITE_ACT.value,
                 addr=regions["G"] + np.arange(sizes[-1]), data=dyw[y])
        loss.add(y, 1, x0=0, x1=C - 1, y0=y, y1=y, op=Opcode.WRITE_ACT.value,
                 addr=regions["ONE"], data=one)
    role = "loss"
    add(loss.phase("handoff"))
    # -- backward, from the last layer ------------------------------------------------------
    for n in reversed(range(L)):
        dy_base = regions["G"] if n == L - 1 else regions[f"DA{n}"] if n in layouts else \
            regions[f"A{n + 1}"]
        ii, kk = np.nonzero(np.asarray(masks[n], bool))
        outputs = np.shape(ws[n])[0]  # I_n (after an attention 3 H D, not J_{n+1})
        ii = np.r_[ii, np.arange(outputs)]
        kk = np.r_[kk, np.full(outputs, -1)]
        m = len(ii)
        column = np.arange(m) % C
        addr_b = np.where(kk >= 0, regions[f"A{n}"] + kk, regions["ONE"])
        role = "gradients"
        grad = PhaseBuilder()
        grad.add(_grad_ports(cfg, m), m, x0=column, x1=column, y0=0, y1=0, vc=0,
                 exit=Port.LOCAL.value, op=Opcode.GRAD.value, addr=dy_base + ii,
                 addr_b=addr_b, data=0)
        add(grad.phase("grad"), GradFlits(n, column, dy_base + ii, addr_b, ii, kk))
        if n == 0:
            break
        # GELU's derivative takes scratch accumulators beside the outputs of each pass
        tplan = plan_layer(cfg, ws[n].T.copy(),
                           spare=gelu_back_scratch(cfg) if flags[n - 1] else 0)
        for p in range(tplan.passes):
            role = "backward"
            load = PhaseBuilder()
            add_zero(load, tplan, p, R)
            add(load.phase("load"))
            add(stream_phase(tplan, p, R, base=dy_base))
            role = "backward_handoff"
            row = SimpleNamespace(chunk=sizes[n], G=C)  # every tile of the row
            if n - 1 in layouts:  # dO = half(D), for the attention's derivative below
                for phase in handoff_phases(cfg, tplan, keep, p, R, row, regions[f"A{n}"]):
                    add(phase)
                continue
            if lns[n - 1] is not None:  # E = half(D), its GRADs, the derivative, dY_{n-1}
                for phase in handoff_phases(cfg, tplan, keep, p, R, row, regions[f"A{n}"]):
                    add(phase)
                role = "gradients"
                add(*_norm_grads(cfg, n - 1, sizes[n], regions))
                role = "backward_handoff"
                norm = layernorm_back_phases(tplan, p, R, fp32_fields(fp32_values(lns[n - 1][0])),
                                             xh=regions[f"XH{n - 1}"], ra=regions[f"R{n - 1}"],
                                             acts=_scratch(regions))
                spans.append(NormPhases(n - 1, True, tplan, len(phases), len(norm)))
                for phase in norm:
                    add(phase)
                if n - 1 in sources:  # the gradient of the layer that adds these outputs
                    m = sources[n - 1]
                    add(residual_phase(tplan, R, regions["G"] if m == L - 1 else
                                       regions[f"A{m + 1}"], by_output=True))
                for phase in handoff_phases(cfg, tplan, keep, p, R, row, regions[f"A{n}"]):
                    add(phase)
                continue
            if flags[n - 1]:  # GELU's derivative into the accumulators, then their hand-off
                # (check_gelu and the plan's spare accumulators leave it room: it cannot
                # refuse here)
                for phase in gelu_back_phases(tplan, p, R, regions[f"U{n - 1}"]):
                    add(phase)
                for phase in handoff_phases(cfg, tplan, keep, p, R, row, regions[f"A{n}"]):
                    add(phase)
                continue
            for phase in handoff_phases(cfg, tplan, None, p, R, row, regions[f"A{n}"],
                                        op=Opcode.FINISH_BACK):
                add(phase)
        if n - 1 in layouts:  # the attention's derivative, then dY_{n-1} = half(dQ | dK | dV)
            lay = layouts[n - 1]
            role = "attention_grad"
            steps = attention_grad_steps(lay)
            attention.append(AttentionPhases(n - 1, True, lay, len(phases), [
                name for name, ps in steps for _ in ps]))
            for _, ps in steps:
                for phase in ps:
                    add(phase)
            role = "backward_handoff"
            for phase in handoff_phases(cfg, plans[n - 1], keep, 0, R, SimpleNamespace(
                    chunk=plans[n - 1].I, G=C), regions[f"DA{n - 1}"]):
                add(phase)
        if read_dx:
            role = "check"
            read = PhaseBuilder()
            to_host = reply_route(cfg, R)
            # dY_{n-1}: at A_n, or after an attention at DA_{n-1}
            base, J = ((regions[f"DA{n - 1}"], plans[n - 1].I) if n - 1 in layouts else
                       (regions[f"A{n}"], sizes[n]))
            k = np.arange(J)
            column = sizes[-1] + sum(C * J for _, _, J in dx)
            for y in range(R):
                for c in range(C):
                    read.add(y, len(k), x0=c, x1=c, y0=y, y1=y, op=Opcode.READ_ACT.value,
                             addr=base + k, addr_b=c, data=to_host[y])
                    read.reply(y, base + k, c, y, column + c * J + k)
            add(read.phase("read"))
            dx.append((n, column, J))
    nnz = sum(int(np.count_nonzero(w)) for w in ws)
    width = sizes[-1] + sum(C * J for _, _, J in dx)
    return StepProgram(cfg, (R, width, sizes[0]), phases, nnz,
                       dense_flits=sum(w.size for w in ws), grads=grads, roles=roles,
                       regions=regions, dx=dx, norms=spans,
                       residuals=[(n, regions[f"K{n}"], plans[n]) for n in sorted(
                           sources.values())], attention=attention)


class StepCompiler:
    """:func:`compile_step` for every group of one step, fast: the program is compiled once
    (with zero inputs and loss gradient) and each group's differs only in the data fields of
    its first load (the inputs) and its loss-gradient phase, which :meth:`group` fills in.
    ``compile_step(...)`` and ``StepCompiler(...).group(...)`` give the same flits."""

    def __init__(self, config: Config, weights, biases, masks, *, read_dx: bool = False,
                 gelu=None, ln=None, res=None, attn=None):
        self.config = config
        self.sizes = [np.shape(w)[1] for w in weights] + [np.shape(weights[-1])[0]]
        R = config.rows
        self.template = compile_step(config, weights, biases, masks,
                                     np.zeros((R, self.sizes[0]), np.float32),
                                     np.zeros((R, self.sizes[-1]), np.float32),
                                     read_dx=read_dx, gelu=gelu, ln=ln, res=res, attn=attn)
        self._loss = self.template.roles.index("loss")
        layout = flit_layout(config)
        #: the template's phases packed once (:func:`wafertile.sim.harness.write_program`'s
        #: ``packed``): a group's program differs only in phase 0 and the loss phase
        self.packed = {n: phase.words(layout) for n, phase in enumerate(self.template.phases)
                       if n not in (0, self._loss)}

    def group(self, x, dy) -> StepProgram:
        """The program of the group ``x`` with loss gradient ``dy`` (as
        :func:`compile_step`)."""
        cfg, t = self.config, self.template
        R, J, I = cfg.rows, self.sizes[0], self.sizes[-1]
        xw, dyw = _group_words(cfg, x, dy, J, I)
        phases = list(t.phases)

        def with_data(n: int, write) -> None:
            data = phases[n].flits["payload.data"].copy()
            write(data)
            phases[n] = replace(phases[n], flits={**phases[n].flits, "payload.data": data})

        def inputs(data):
            data[:R * J] = xw.reshape(-1)  # add_activations' flits come first, row-major

        def loss(data):
            data.reshape(R, I + 1)[:, :I] = dyw  # per row: the loss gradient, then the 1.0

        with_data(0, inputs)
        with_data(self._loss, loss)
        return replace(t, phases=phases)


def _grad_ports(config: Config, m: int) -> np.ndarray:
    """The rows ``m`` GRADs are injected at: below row 0 (rows 1 .. R-1, dealt round-robin)
    when there is such a row. Reaching the column's top from the south, a GRAD is delivered
    through the compact router's D stage; from the west it would take T, which its result's
    turn south needs too (docs/training.md, "The phases of a step")."""
    R = config.rows
    return 1 + np.arange(m) % (R - 1) if R > 1 else np.zeros(m, np.int64)


def _norm_grads(config: Config, layer: int, I: int, regions: dict[str, int]
                ) -> tuple[Phase, GradFlits]:
    """The GRAD phase of LayerNorm layer ``layer``'s gamma and beta (``I`` each; docs/
    training.md, "LayerNorm layers"): ``E`` at ``A_{layer+1}``, gamma's times the kept
    normalized outputs, beta's as ``1.0 x E``."""
    i = np.r_[np.arange(I), np.arange(I)]
    k = np.r_[np.zeros(I, np.int64), np.full(I, -1)]
    e = regions[f"A{layer + 1}"] + i
    addr = np.where(k == 0, e, regions["ONE"])
    addr_b = np.where(k == 0, regions[f"XH{layer}"] + i, e)
    m = len(i)
    column = np.arange(m) % config.cols
    grad = PhaseBuilder()
    grad.add(_grad_ports(config, m), m, x0=column, x1=column, y0=0, y1=0, vc=0,
             exit=Port.LOCAL.value, op=Opcode.GRAD.value, addr=addr, addr_b=addr_b, data=0)
    return grad.phase("grad"), GradFlits(layer, column, addr, addr_b, i, k, norm=True)


def _group_words(config: Config, x, dy, J: int, I: int) -> tuple[np.ndarray, np.ndarray]:
    """A group's inputs and loss gradient as words, padded to ``rows`` rows with +0."""
    R = config.rows
    xw = np.zeros((R, J), np.int64)
    dyw = np.zeros((R, I), np.int64)
    rows = len(x)
    xw[:rows] = float_words(config.dtype, "inputs", np.asarray(x, np.float32),
                            error=TrainError)
    dyw[:rows] = float_words(config.dtype, "loss gradient", np.asarray(dy, np.float32),
                             error=TrainError)
    return xw, dyw


def gradient_words(program: StepProgram, column, addr, addr_b, data,
                   shapes: list[tuple[int, int]], norm: dict | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A group's partial sums per layer ``(dW, db)`` as FP32 words (``uint32``; +0 outside
    the mask), from the GRAD results that left the south edge: arrays ``column``, ``addr``,
    ``addr_b``, ``data`` (one element per result, in any order), matched to
    ``program.grads`` by ``(column, addr, addr_b)``. ``norm``, if given, takes per
    LayerNorm layer its ``(dgamma, dbeta)`` the same way.

    Raises
    ------
    ValueError
        If a GRAD's result is missing or came twice, naming the gradient.
    """
    def keys(c, a, b) -> np.ndarray:
        return (np.asarray(c, np.int64) << 42) | (np.asarray(a, np.int64) << 21) \
            | np.asarray(b, np.int64)

    got = keys(column, addr, addr_b)
    order = np.argsort(got, kind="stable")
    got, words = got[order], (np.asarray(data, np.int64) & 0xFFFFFFFF)[order]
    if len(got) > 1 and (got[1:] == got[:-1]).any():
        raise ValueError("a GRAD result came twice")
    out: list = [None] * len(shapes)
    for grad in program.grads:
        if grad is None:
            continue
        want = keys(grad.column, grad.addr, grad.addr_b)
        at = np.minimum(np.searchsorted(got, want), max(len(got) - 1, 0))
        found = (got[at] == want) if len(got) else np.zeros(len(want), bool)
        if not found.all():
            n = int(np.argmin(found))
            i, k = int(grad.i[n]), int(grad.k[n])
            what = (("beta" if k < 0 else "gamma") if grad.norm else
                    "the bias" if k < 0 else f"input {k}")
            layer = f"layer {grad.layer}" + ("'s LayerNorm" if grad.norm else "")
            raise ValueError(f"no GRAD result for {layer}, output {i}, {what}")
        w = words[at].astype(np.uint32)
        if grad.norm:
            if norm is not None:
                g = np.zeros(shapes[grad.layer][0], np.uint32)
                b = g.copy()
                g[grad.i[grad.k == 0]] = w[grad.k == 0]
                b[grad.i[grad.k < 0]] = w[grad.k < 0]
                norm[grad.layer] = (g, b)
            continue
        dw = np.zeros(shapes[grad.layer], np.uint32)
        bias = grad.k < 0
        dw[grad.i[~bias], grad.k[~bias]] = w[~bias]
        db = np.zeros(shapes[grad.layer][0], np.uint32)
        db[grad.i[bias]] = w[bias]
        out[grad.layer] = (dw, db)
    return out
