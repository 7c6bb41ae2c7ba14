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
from ..formats import float_words, fp32_words
from ..hdl.core.fp import float_format
from ..hdl.flit import Opcode, Port
from ..network.compiler import handoff_phases
from ..stream import LayerProgram, Phase, PhaseBuilder
from ..stream.compiler import add_activations, add_zero, read_phase, stream_phase
from ..stream.plan import plan_layer
from ..train import TrainError

__all__ = ["GradFlits", "StepCompiler", "StepProgram", "compile_step", "gradient_words",
           "step_layout"]


@dataclass
class GradFlits:
    """The GRADs of one layer's gradient phase, in injection order: the column each goes
    down, its ``addr`` / ``addr_b``, and which gradient it is (output ``i``; input ``k``, or
    -1 for the bias)."""

    layer: int
    column: np.ndarray
    addr: np.ndarray
    addr_b: np.ndarray
    i: np.ndarray
    k: np.ndarray


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


def step_layout(config: Config, sizes: list[int]) -> dict[str, int]:
    """The activation regions of a tile (docs/training.md, "What a tile keeps"):
    ``A_l`` at ``J_0 + ... + J_{l-1}``, ``G`` after them, ``ONE`` after ``G``.

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
    if need > config.act_depth:
        raise TrainError(f"a training step keeps every layer's inputs, the loss gradient and "
                         f"a 1.0 in each tile: {' + '.join(map(str, sizes))} + 1 = {need} "
                         f"activation words > act_depth = {config.act_depth}")
    return regions


def _words(config: Config, name: str, values) -> np.ndarray:
    w = float_words(config.dtype, name, np.asarray(values, np.float32), error=TrainError)
    return np.where((w & 0x7FFF) == 0, 0, w)


def compile_step(config: Config, weights, biases, masks, x, dy, carry=None) -> StepProgram:
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
    carry : list of (dW words, db words), optional
        The partial sums the previous group left, FP32 words per layer (default +0).
    """
    cfg = config
    R, C = cfg.rows, cfg.cols
    L = len(weights)
    sizes = [np.shape(w)[1] for w in weights] + [np.shape(weights[-1])[0]]
    regions = step_layout(cfg, sizes)
    fmt = float_format(cfg.dtype)
    ws = [_words(cfg, f"w{n}", w) for n, w in enumerate(weights)]
    bs = [fp32_words(f"b{n}", b, error=TrainError) for n, b in enumerate(biases)]
    xw, dyw = _group_words(cfg, x, dy, sizes[0], sizes[-1])
    plans = [plan_layer(cfg, w) for w in ws]
    phases: list[Phase] = []
    grads: list[GradFlits | None] = []
    roles: list[str] = []
    role = "forward"

    def add(phase: Phase, grad: GradFlits | None = None) -> None:
        phases.append(phase)
        grads.append(grad)
        roles.append(role)

    # -- forward: as inference, layer l's inputs in region A_l -------------------------------
    relu = SimpleNamespace(relu=1)
    for n, plan in enumerate(plans):
        for p in range(plan.passes):
            load = PhaseBuilder()
            if n == 0 and p == 0:
                add_activations(load, plan, xw, base=regions["A0"])
            add_zero(load, plan, p, R, bias=bs[n])
            add(load.phase("load"))
            add(stream_phase(plan, p, R, base=regions[f"A{n}"]))
            if n == L - 1:
                add(read_phase(plan, p, R))
            else:
                for phase in handoff_phases(cfg, plan, relu, p, R, plans[n + 1],
                                            regions[f"A{n + 1}"]):
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
        dy_base = regions["G"] if n == L - 1 else regions[f"A{n + 1}"]
        ii, kk = np.nonzero(np.asarray(masks[n], bool))
        ii = np.r_[ii, np.arange(sizes[n + 1])]
        kk = np.r_[kk, np.full(sizes[n + 1], -1)]
        m = len(ii)
        column = np.arange(m) % C
        addr_b = np.where(kk >= 0, regions[f"A{n}"] + kk, regions["ONE"])
        start = _starts(ii, kk, None if carry is None else carry[n])
        role = "gradients"
        grad = PhaseBuilder()
        grad.add(np.arange(m) % R, m, x0=column, x1=column, y0=0, y1=0, vc=0,
                 exit=Port.LOCAL.value, op=Opcode.GRAD.value, addr=dy_base + ii,
                 addr_b=addr_b, data=start)
        add(grad.phase("grad"), GradFlits(n, column, dy_base + ii, addr_b, ii, kk))
        if n == 0:
            break
        tplan = plan_layer(cfg, ws[n].T.copy())
        for p in range(tplan.passes):
            role = "backward"
            load = PhaseBuilder()
            add_zero(load, tplan, p, R)
            add(load.phase("load"))
            add(stream_phase(tplan, p, R, base=dy_base))
            role = "backward_handoff"
            row = SimpleNamespace(chunk=sizes[n], G=C)  # every tile of the row
            for phase in handoff_phases(cfg, tplan, None, p, R, row, regions[f"A{n}"],
                                        op=Opcode.FINISH_BACK):
                add(phase)
    nnz = sum(int(np.count_nonzero(w)) for w in ws)
    return StepProgram(cfg, (R, sizes[-1], sizes[0]), phases, nnz,
                       dense_flits=sum(w.size for w in ws), grads=grads, roles=roles,
                       regions=regions)


def _starts(ii: np.ndarray, kk: np.ndarray, carry) -> np.ndarray:
    """The data fields of a layer's GRADs (outputs ``ii``, inputs ``kk``, -1 for a bias):
    the partial sums ``carry`` = (dW words, db words) as signed 32-bit fields, or +0."""
    if carry is None:
        return np.zeros(len(ii), np.int64)
    cw, cb = carry
    start = np.where(kk >= 0, np.asarray(cw)[ii, np.maximum(kk, 0)], np.asarray(cb)[ii])
    return np.where(start >= 1 << 31, start - (1 << 32), start)


class StepCompiler:
    """:func:`compile_step` for every group of one step, fast: the program is compiled once
    (with zero inputs, loss gradient and partial sums) and each group's differs only in the
    data fields of its first load (the inputs), its loss-gradient phase and its GRADs (the
    partial sums), which :meth:`group` fills in. ``compile_step(...)`` and
    ``StepCompiler(...).group(...)`` give the same flits."""

    def __init__(self, config: Config, weights, biases, masks):
        self.config = config
        self.sizes = [np.shape(w)[1] for w in weights] + [np.shape(weights[-1])[0]]
        R = config.rows
        self.template = compile_step(config, weights, biases, masks,
                                     np.zeros((R, self.sizes[0]), np.float32),
                                     np.zeros((R, self.sizes[-1]), np.float32))
        self._loss = self.template.roles.index("loss")

    def group(self, x, dy, carry=None) -> StepProgram:
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
        for n, grad in enumerate(t.grads):
            if grad is not None:
                start = _starts(grad.i, grad.k, None if carry is None else carry[grad.layer])
                with_data(n, lambda data, start=start: data.__setitem__(slice(None), start))
        return replace(t, phases=phases)


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


def gradient_words(program: StepProgram, results: dict[tuple[int, int, int], int],
                   shapes: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The partial sums a group's GRAD results carry, per layer ``(dW, db)`` as FP32 words
    (``int64``; +0 outside the mask), from ``results``: ``{(column, addr, addr_b): data}``
    (the south edge's GRAD flits; one per GRAD of ``program``).

    Raises
    ------
    AssertionError
        If a GRAD's result is missing.
    """
    out: list = [None] * len(shapes)
    for grad in program.grads:
        if grad is None:
            continue
        dw = np.zeros(shapes[grad.layer], np.int64)
        db = np.zeros(shapes[grad.layer][0], np.int64)
        for c, a, b, i, k in zip(grad.column.tolist(), grad.addr.tolist(), grad.addr_b.tolist(),
                                 grad.i.tolist(), grad.k.tolist(), strict=True):
            word = results.get((c, a, b))
            assert word is not None, f"no GRAD result for layer {grad.layer}, output {i}, " \
                                     f"{'the bias' if k < 0 else f'input {k}'}"
            if k >= 0:
                dw[i, k] = word & 0xFFFFFFFF
            else:
                db[i] = word & 0xFFFFFFFF
        out[grad.layer] = (dw, db)
    return out
