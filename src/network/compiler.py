"""The network compiler: a chain of layers as one program for the array, with every layer's
activations produced and distributed by the fabric itself.

Per batch group of ``rows`` inputs (``docs/network.md``):

- **layer 0**: the host writes the inputs into the tiles (as for a single layer);
- **every layer**, per pass: the accumulators start from the bias (WRITE_ACC, fenced), the
  MAC stream (only nonzero weights), the on-fabric reduction when the layer's inputs are split
  over several column blocks; then
- **hand-off** (every layer but the last): SET writes the layer's requantization into the tiles
  that hold its outputs (a float network: only RELU; its hand-off is the rounding of the FP32
  accumulator to the format), and one FINISH per output makes that tile send the activation as a
  WRITE_ACT multicast to every tile of its row that needs it (the next layer's column block of
  that input), at the next layer's activation address. The FINISHes go out in *rounds* of at
  most ``handoff_window(config)`` per tile; a round ends when every activation write it causes
  has been counted (``act_written``). A tile then never has more hand-off flits in flight than
  its router's local input can hold, so a core never waits on its own output, every core always
  takes its input, and the row multicasts always drain: the hand-off cannot deadlock (not even
  a tile that multicasts to itself);
- **last layer**: its accumulators are read back (READ_ACC): the only data that leaves the
  array.

The host sends weights and control flits only: :func:`edge_flits` counts what crosses the
array's edge in each direction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..config import Config, Overflow
from ..formats import float_words, fp32_words
from ..hdl.core.fp import float_format
from ..hdl.core.nonlinear import FUNCTIONS
from ..hdl.core.ops import OPS, codes
from ..hdl.flit import Opcode, Reg, encode_handoff
from ..stream import (
    LayerPlan,
    LayerProgram,
    Phase,
    PhaseBuilder,
    add_activations,
    add_zero,
    handoff_window,
    plan_layer,
    read_phase,
    reduce_phases,
    stream_phase,
)
from ..stream.attention import AttentionLayout, attention_phases, check_attention
from ..stream.program import LayerError
from ..stream.rows import check_layernorm, check_softmax, layernorm_phases, softmax_phases
from .model import Layer, Network, NetworkError

__all__ = ["NetworkProgram", "attention_handoff", "attention_layout", "check_network",
           "compile_network",
           "edge_flits", "handoff_phases", "handoff_window", "output_places", "residual_phase"]


#: NONLINEAR's function number of GELU (``data[2:0]``, :data:`~.nonlinear.FUNCTIONS`).
GELU = FUNCTIONS.index("gelu")


@dataclass
class NetworkProgram(LayerProgram):
    """A compiled network: :class:`~wafertile.stream.LayerProgram` (``shape`` is ``(B,
    outputs, inputs)``) with the layer of every phase and the per-layer plans."""

    #: the layer each phase belongs to
    phase_layer: list[int] = None
    #: what each phase does: ``"layer"``, ``"layernorm"`` or ``"softmax"`` for the phases of
    #: a LayerNorm or the softmax (:mod:`wafertile.stream.rows`), ``"attention"`` for the
    #: attention's (:mod:`wafertile.stream.attention`; its outputs' hand-off is ``"layer"``),
    #: ``"residual"`` for a residual's MACs and the hand-off that keeps a layer's outputs
    phase_step: list[str] = None
    #: the activation base address of each layer
    bases: list[int] = None
    plans: list[LayerPlan] = None
    #: the activation address of a residual's kept outputs (``act_depth``: none)
    keep_base: int = None


def _bases(config: Config, plans: list[LayerPlan]) -> list[int]:
    """Where each layer's activations live in the bank: in place of the layer before (its
    MACs are done by the hand-off), unless that layer needs several passes over its inputs
    (then beside them)."""
    bases = [0]
    for n in range(1, len(plans)):
        prev, here = plans[n - 1], plans[n]
        if prev.passes == 1:
            bases.append(0)
            continue
        lo, hi = bases[-1], bases[-1] + prev.chunk
        base = 0 if here.chunk <= lo else hi
        if base + here.chunk > config.act_depth:
            raise NetworkError(
                f"layer {n - 1} needs {prev.passes} passes over its {prev.chunk} activations "
                f"per tile, so layer {n}'s {here.chunk} activations per tile must fit beside "
                f"them: {prev.chunk} + {here.chunk} > act_depth = {config.act_depth} (raise "
                f"act_depth or acc_depth, or use more columns)")
        bases.append(base)
    return bases


def check_network(config: Config, net: Network, x: np.ndarray) -> None:
    """Raise :class:`NetworkError` (one line) for ``net`` on inputs ``x`` that
    :func:`compile_network` would refuse on ``config``, without compiling anything."""
    net.check()
    if not config.handoff and len(net.layers) > 1:
        raise NetworkError(
            f"a network of {len(net.layers)} layers needs the tiles' hand-off unit (SET/FINISH) "
            f"between its layers: handoff = false leaves it out; use handoff = true")
    if (net.is_float or config.is_float) and net.dtype != config.dtype:
        raise NetworkError(f"the network is {net.dtype} but the configuration has dtype "
                           f"{config.dtype!r} (use --dtype {net.dtype})")
    if net.is_float:
        gelu = [n for n, layer in enumerate(net.layers) if layer.gelu]
        if gelu and not config.nonlinear:
            raise net.error(f"layer {gelu[0]} has GELU (gelu{gelu[0]} = 1): it needs the "
                            f"tiles' nonlinear unit, nonlinear = true (--nonlinear true)")
        if x.ndim != 2 or x.shape[1] != net.inputs or x.shape[0] < 1:
            raise NetworkError(f"inputs must be B x {net.inputs} (B >= 1), not shape {x.shape}")
        float_words(net.dtype, "inputs", x, error=NetworkError)
        for n, layer in enumerate(net.layers):
            _check_size(config, n, layer)
        try:
            for n, layer in enumerate(net.layers):
                if layer.attn:
                    _check_attention(config, net, n, x.shape[0])
                if layer.layernorm:
                    check_layernorm(plan_layer(config, layer.weights, streams=False),
                                    f"the LayerNorm of layer {n}'s outputs")
            if net.keeps:
                plans = _plans(config, net, streams=False)
                _keep_base(config, net, plans, _bases(config, plans),
                           _positions(config, net, x.shape[0]))
            if net.softmax:
                last = len(net.layers) - 1
                check_softmax(plan_layer(config, net.layers[last].weights, streams=False),
                              f"the softmax of layer {last}'s outputs")
        except LayerError as exc:
            raise net.error(str(exc)) from None
        return
    if net.data_width != config.data_width:
        raise NetworkError(f"the network has {net.data_width}-bit activations and weights but "
                           f"the configuration has data_width = {config.data_width} (use "
                           f"--data-width {net.data_width})")
    if x.ndim != 2 or x.shape[1] != net.inputs or x.shape[0] < 1:
        raise NetworkError(f"inputs must be B x {net.inputs} (B >= 1), not shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise NetworkError(f"inputs must be integers, not {x.dtype}")
    if x.min() < config.data_min or x.max() > config.data_max:
        raise NetworkError(f"inputs must be within the {config.data_width}-bit signed range "
                           f"{config.data_min}..{config.data_max}, found {x.min()}..{x.max()}")
    for n, layer in enumerate(net.layers):
        _check_size(config, n, layer)
        lo, hi = layer.bias.min(initial=0), layer.bias.max(initial=0)
        if lo < config.acc_min or hi > config.acc_max:
            raise net.error(f"b{n} must fit the {config.acc_width}-bit accumulator "
                            f"(acc_width = {config.acc_width}): {config.acc_min}.."
                            f"{config.acc_max}, found {lo}..{hi}")
        if n < len(net.layers) - 1 and layer.shift.max() > config.acc_width + 14:
            raise net.error(f"shift{n} must be at most acc_width + 14 = "
                            f"{config.acc_width + 14}, found {layer.shift.max()}")


def attention_layout(config: Config, layer: Layer, rows: int, seq: int | None = None
               ) -> AttentionLayout:
    """The attention of an ``attn`` layer over a batch group of ``rows`` positions:
    sequences of ``seq`` positions (default: the group is one sequence)."""
    T = rows if seq is None else seq
    return AttentionLayout(config, T, layer.attn, layer.outputs // (3 * layer.attn),
                           rows // T)


def _positions(config: Config, net: Network, batch: int) -> int:
    """The positions of a sequence of ``net``'s attention in a batch of ``batch`` inputs."""
    return min(batch, config.rows) if net.seq is None else net.seq


def _plans(config: Config, net: Network, **kw) -> list[LayerPlan]:
    """Every layer's plan (``kw``: :func:`plan_layer`'s); an attention's projection has its
    outputs in the attention's columns (:meth:`AttentionLayout.groups`)."""
    return [plan_layer(config, layer.weights, **kw,
                       groups=(attention_layout(config, layer, 1).groups() if layer.attn
                               else None))
            for layer in net.layers]


def _check_attention(config: Config, net: Network, n: int, batch: int) -> None:
    """Layer ``n``'s attention runs on ``config`` over a batch of ``batch`` inputs: whole
    sequences (``net.seq``, or the batch as one) of at most ``rows`` positions, one position
    per row, and each batch group of ``rows`` inputs whole sequences; its projection's inputs
    in one tile."""
    what = f"the attention after layer {n}"
    layer, R = net.layers[n], config.rows
    S, T = net.sequences(batch)
    if net.seq is None and batch > R:
        raise LayerError(f"{what} takes the batch as one sequence, one position per row: "
                         f"{batch} inputs and {R} rows (several sequences: set seq)")
    if T > R:
        raise LayerError(f"{what} runs sequences of seq = {T} positions, one per row, and the "
                         f"array has {R} rows")
    if batch > R and R % T:
        raise LayerError(f"{what}: a batch group of rows = {R} inputs must hold whole "
                         f"sequences of seq = {T} positions ({S} sequences, {batch} inputs): "
                         f"use a multiple of {T} rows, or at most {R // T * T} inputs")
    if -(-layer.inputs // config.act_depth) > 1:
        raise LayerError(f"{what}: layer {n}'s {layer.inputs} inputs must fit one tile's "
                         f"activations (act_depth = {config.act_depth})")
    check_attention(attention_layout(config, layer, min(batch, R), net.seq), what)


def _check_size(config: Config, n: int, layer: Layer) -> None:
    """Layer ``n``'s inputs fit a row of tiles (and are not split under saturation)."""
    K = -(-layer.inputs // config.act_depth)
    if config.cols < K:
        raise NetworkError(f"layer {n} has {layer.inputs} inputs but a tile's activation "
                           f"bank holds act_depth = {config.act_depth}: they need {K} "
                           f"tiles of a row and the array has cols = {config.cols}")
    if K > 1 and config.overflow_mode is Overflow.SATURATE:
        raise NetworkError(f"layer {n} has {layer.inputs} inputs, more than act_depth = "
                           f"{config.act_depth}: splitting them over {K} tiles adds partial "
                           f"sums, which overflow = 'saturate' would clamp per tile; use "
                           f"overflow = 'wrap' or a larger act_depth")


def _as_words(net: Network) -> Network:
    """A float network with its weights as the words its MAC flits carry (a weight of -0 as
    +0: never sent) and its biases as the FP32 words of its WRITE_ACC flits."""
    layers = []
    for n, layer in enumerate(net.layers):
        w = float_words(net.dtype, f"w{n}", layer.weights, error=NetworkError)
        layers.append(replace(layer, weights=np.where((w & 0x7FFF) == 0, 0, w),
                              bias=fp32_words(f"b{n}", layer.bias, error=NetworkError)))
    return replace(net, layers=layers)


def handoff_phases(config: Config, plan: LayerPlan, layer, p: int, rows: int, nxt, base: int,
                   *, op: Opcode = Opcode.FINISH, slot_base: int = 0,
                   to: tuple[np.ndarray, np.ndarray] | None = None) -> list[Phase]:
    """The hand-off of pass ``p``'s outputs, in rounds of :func:`handoff_window` FINISHes per
    tile; the SETs of the layer's requantization first (per output where it varies). An
    integer layer's FINISHes (each after its own SETs) take turns over the tiles of a row; a
    GELU layer's NONLINEARs and FINISHes too, each tile's NONLINEAR in one turn and its
    FINISH in the next.

    ``nxt`` (the next layer's plan, or anything with its ``chunk`` and ``G``) says which
    tiles of the row take output ``i`` (its column block), at ``base + i`` within its chunk.
    ``op``: FINISH (forward), or FINISH_BACK (training's backward hand-off: no registers, so
    no SET; ``layer`` is then not read). ``slot_base``: the accumulator of slot 0 (the
    attention's outputs sit above its other numbers). ``to``: instead of ``nxt`` and
    ``base``, the one column and the activation address that take each output (indexed by
    output: a residual's kept outputs)."""
    window = handoff_window(config)

    def targets(i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x0, x1, addr)``: the columns and the activation address that take outputs
        ``i``."""
        if to is not None:
            return to[0][i], to[0][i], to[1][i]
        k = i // nxt.chunk
        return k * nxt.G, k * nxt.G + nxt.G - 1, base + i - k * nxt.chunk

    vc = config.num_vcs - 1
    parts = plan.parts(p)
    rounds = -(-max(len(part) for part in parts) // window)
    # a float layer has no requantization: its registers are "the same for every output"
    per_layer = config.is_float or (np.all(layer.mult == layer.mult[0]) and
                                    np.all(layer.shift == layer.shift[0]))
    phases = []
    current: dict[int, tuple[int, int]] = {}  # tile column -> (mult, shift) it holds
    for r in range(rounds):
        flits = PhaseBuilder()
        writes = 0
        for y in range(rows):
            regs = {g: current.get(g) for g in range(plan.G)}
            if op is not Opcode.FINISH:
                regs = dict.fromkeys(range(plan.G))  # FINISH_BACK reads no register
            elif r == 0:  # the layer's registers, in every tile that holds its outputs
                settings = [(Reg.RELU, int(layer.relu))]
                if per_layer and not config.is_float:
                    settings += [(Reg.MULT, int(layer.mult[0])), (Reg.SHIFT,
                                                                  int(layer.shift[0]))]
                for reg, value in settings:
                    flits.add(y, 1, x0=0, x1=plan.G - 1, y0=y, y1=y, op=Opcode.SET.value,
                              addr=reg.value, data=value)
                if per_layer:
                    regs = dict.fromkeys(range(plan.G), None if config.is_float else
                                         (int(layer.mult[0]), int(layer.shift[0])))
            # the integer FINISHes (with their SETs) go out round-robin over the tiles of the
            # row: each tile's hand-off unit works beside its pipeline, one FINISH at a time,
            # while the row's next flits go to the other tiles
            turns: list[list[list[dict]]] = [[] for _ in parts]
            # a GELU layer's FINISHes (each after the NONLINEAR that applies GELU to its
            # accumulator, 97 cycles of its core) take turns over the tiles of the row too, so
            # that the row's tiles work on their NONLINEARs at once
            gelu = op is Opcode.FINISH and config.is_float and layer.gelu
            for g, part in enumerate(parts):
                if (config.is_float and not gelu) or op is not Opcode.FINISH:  # one add a tile
                    s = np.arange(r * window, min((r + 1) * window, len(part)))
                    x0, x1, addr = targets(np.asarray(part, np.int64)[s])
                    data = {(a, b): encode_handoff(config, x0=a, x1=b, y=y, vc=vc)
                            for a, b in set(zip(x0.tolist(), x1.tolist(), strict=True))}
                    flits.add(y, len(s), x0=g, x1=g, y0=y, y1=y, op=op.value,
                              addr=slot_base + s, addr_b=addr,
                              data=np.array([data[ab] for ab in zip(x0.tolist(), x1.tolist(),
                                                                    strict=True)], np.int64))
                    writes += int(np.sum(x1 - x0 + 1))
                    continue
                for s in range(r * window, min((r + 1) * window, len(part))):
                    i = int(part[s])
                    want = None if config.is_float or op is not Opcode.FINISH else \
                        (int(layer.mult[i]), int(layer.shift[i]))
                    turn = []
                    if gelu:  # GELU first, in the accumulator
                        turn.append({"op": Opcode.NONLINEAR.value, "addr": slot_base + s,
                                     "data": GELU})
                    if regs[g] != want:  # this output's own requantization
                        for reg, value in ((Reg.MULT, want[0]), (Reg.SHIFT, want[1])):
                            turn.append({"op": Opcode.SET.value, "addr": reg.value,
                                         "data": value})
                        regs[g] = want
                    x0, x1, addr = (int(v) for v in targets(np.int64(i)))
                    turn.append({"op": op.value, "addr": slot_base + s, "addr_b": addr,
                                 "data": encode_handoff(config, x0=x0, x1=x1, y=y, vc=vc)})
                    # GELU: the NONLINEAR and the FINISH each a turn of their own, so the
                    # NONLINEARs of every tile of the row go first, then their FINISHes: the
                    # row's units work at once, while the FINISH at the head of the row's
                    # queue waits for its own (a core takes no flit while its unit works);
                    # with a FINISH after each NONLINEAR, the next tile's waited behind it
                    turns[g].extend([[f] for f in turn] if gelu else [turn])
                    writes += x1 - x0 + 1
            for j in range(max(map(len, turns), default=0)):
                for g, mine in enumerate(turns):
                    for fields in mine[j] if j < len(mine) else ():
                        flits.add(y, 1, x0=g, x1=g, y0=y, y1=y, **fields)
            if y == rows - 1:
                current = regs
        phases.append(flits.phase("handoff", handoff_writes=writes))
    return phases


def _group(config: Config, net: Network, plans: list[LayerPlan], bases: list[int],
           rows: int, keep_base: int) -> tuple[list[Phase], list[int], list[str]]:
    """The phases of one batch group of ``rows`` inputs (batch index 0 onwards; without the
    first layer's inputs), the layer of each and its step; ``keep_base``: the activation
    address of the kept outputs of a residual connection (:func:`_keep_base`)."""
    phases: list[Phase] = []
    layer_of: list[int] = []
    step_of: list[str] = []
    last = len(net.layers) - 1
    for n, (layer, plan) in enumerate(zip(net.layers, plans, strict=True)):
        for p in range(plan.passes):
            load = PhaseBuilder()
            add_zero(load, plan, p, rows, bias=layer.bias)
            here = [load.phase("load"), stream_phase(plan, p, rows, base=bases[n])]
            if plan.K > 1:
                here += reduce_phases(plan, p, rows)
            steps = ["layer"] * len(here)
            if layer.res is not None:  # the kept outputs, after the layer's own MACs
                here.append(residual_phase(plan, rows, keep_base))
                steps.append("residual")
            if n in net.keeps:  # before the LayerNorm: to the tiles that add them
                m = net.keeps[n]
                column, slot = output_places(plans[m])
                keep = handoff_phases(config, plan, replace(layer, relu=False, gelu=False), p,
                                      rows, None, 0, to=(column, keep_base + slot))
                here += keep
                steps += ["residual"] * len(keep)
            if layer.layernorm:
                words = [fp32_words(f"ln_{k}{n}", v, error=NetworkError) for k, v in
                         (("g", layer.ln_gamma), ("b", layer.ln_beta),
                          ("eps", np.float32(layer.ln_eps)))]
                norm = layernorm_phases(plan, p, rows, words[0], words[1], int(words[2]))
                here += norm
                steps += ["layernorm"] * len(norm)
            if layer.attn:  # the attention, then its outputs' hand-off (docs/attention.md)
                layout = attention_layout(config, layer, rows, net.seq)
                attention = attention_phases(layout)
                here += attention
                steps += ["attention"] * len(attention)
                here += attention_handoff(plan, layout, layer, rows, plans[n + 1],
                                          bases[n + 1])
            elif n == last:
                if net.softmax:
                    softmax = softmax_phases(plan, p, rows)
                    here += softmax
                    steps += ["softmax"] * len(softmax)
                here.append(read_phase(plan, p, rows))
            else:
                here += handoff_phases(config, plan, layer, p, rows, plans[n + 1],
                                       bases[n + 1])
            steps += ["layer"] * (len(here) - len(steps))
            phases += here
            layer_of += [n] * len(here)
            step_of += steps
    return phases, layer_of, step_of


def attention_handoff(plan: LayerPlan, layout: AttentionLayout, layer, rows: int, nxt,
                      base: int) -> list[Phase]:
    """The hand-off of the attention's outputs (in their accumulators above its other
    numbers, value feature ``f`` in column ``f mod cols``: docs/attention.md) to the next
    layer's inputs, as :func:`handoff_phases` of the projection's ``plan`` (``layer``'s
    activation; ``nxt`` and ``base`` its)."""
    f = np.arange(layout.width)
    outputs = replace(plan, I=layout.width, passes=1, groups=[
        f[layout.column(f) == c] for c in range(plan.config.cols)])
    return handoff_phases(plan.config, outputs, layer, 0, rows, nxt, base,
                          slot_base=int(layout.o_slot(0)))


def output_places(plan: LayerPlan) -> tuple[np.ndarray, np.ndarray]:
    """The column and the accumulator slot of each output of a one-pass layer (after a
    reduction: in block 0)."""
    column = np.zeros(plan.I, np.int64)
    slot = np.zeros(plan.I, np.int64)
    for g, part in enumerate(plan.parts(0)):
        column[part] = g
        slot[part] = np.arange(len(part))
    return column, slot


def _keep_base(config: Config, net: Network, plans: list[LayerPlan], bases: list[int],
               T: int) -> int:
    """Where a residual's kept outputs sit in the activation bank of the tiles that add them:
    at the top, ``act_depth - n`` onwards for the ``n`` outputs of the fullest tile, above
    every layer's activations and every attention's (over ``T`` positions); one pass for the
    layers that keep and that add (a kept output goes to the one accumulator that adds it).
    """
    if not net.keeps:
        return config.act_depth
    for k, m in net.keeps.items():
        for n in (k, m):
            if plans[n].passes > 1:
                raise NetworkError(
                    f"res{m} = {k}: layer {n}'s {plans[n].I} outputs need {plans[n].passes} "
                    f"passes over {plans[n].G} columns of acc_depth = {config.acc_depth} "
                    f"accumulators; a residual needs its layers in one pass (raise acc_depth "
                    f"or use more columns)")
    size = max(len(part) for m in net.keeps.values() for part in plans[m].parts(0))
    used, what = 0, ""
    for n, (layer, plan) in enumerate(zip(net.layers, plans, strict=True)):
        if bases[n] + plan.chunk > used:
            used, what = bases[n] + plan.chunk, f"layer {n}'s inputs"
        if layer.attn:
            need = attention_layout(config, layer, T).activations
            if need > used:
                used, what = need, f"the attention after layer {n}"
    if used + size > config.act_depth:
        raise NetworkError(
            f"the residual's kept outputs need {size} activations per tile above {what} "
            f"({used}): {used} + {size} > act_depth = {config.act_depth} (raise act_depth or "
            f"use more columns)")
    return config.act_depth - size


def residual_phase(plan: LayerPlan, rows: int, keep_base: int, *,
                   by_output: bool = False) -> Phase:
    """The residual's MACs: on each accumulator of the (one-pass) layer, weight 1 on the kept
    output at ``keep_base`` + its slot (``by_output``: + the output's index, a vector every
    tile of the row holds: training's backward pass), multicast down its column, the columns
    dealt over the west ports."""
    config = plan.config
    one = int(float_format(config.dtype).bits(np.float32(1)))
    flits = PhaseBuilder()
    column, slot = output_places(plan)
    order = np.lexsort((column, slot))  # slot 0 of every column, then slot 1, ...
    at = order if by_output else slot[order]
    flits.add(np.arange(plan.I) % config.rows, plan.I, x0=column[order], x1=column[order],
              y0=0, y1=max(rows - 1, 0), op=Opcode.MAC.value, addr=slot[order],
              addr_b=keep_base + at, data=one)
    return flits.phase("stream", expected_macs=plan.I * rows)


def _join(first: Phase, then: Phase) -> Phase:
    """One phase with the flits of ``first`` and then those of ``then`` (per port, in that
    order), and the counts and replies of both."""
    flits = {k: np.concatenate([first.flits[k], then.flits[k]]) for k in then.flits}
    return replace(then, port=np.concatenate([first.port, then.port]), flits=flits,
                   expected_macs=first.expected_macs + then.expected_macs,
                   expected_writes=first.expected_writes + then.expected_writes,
                   **{k: np.concatenate([getattr(first, k), getattr(then, k)])
                      for k in ("reply_row", "reply_slot", "reply_x", "reply_b", "reply_i")})


def compile_network(config: Config, net: Network, x: np.ndarray, *,
                    dense: bool = False) -> NetworkProgram:
    """Compile ``net`` on inputs ``x`` (``B x inputs`` integers; for a float network float
    numbers of its format) for ``config``.

    ``dense=True`` streams every weight, zeros included (the baseline of the speedup).

    Raises
    ------
    NetworkError
        If the configuration has no hand-off unit (``handoff = false``) and the network more
        than one layer, or if the network does not fit the configuration (sizes in the
        message): data width,
        an activation vector longer than a row of tiles can hold, saturation with a split
        layer, values out of range, activation buffers that do not fit the bank.
    """
    x = np.asarray(x)
    check_network(config, net, x)
    if net.is_float:
        net = _as_words(net)
        x = float_words(net.dtype, "inputs", x, error=NetworkError)
    plans = _plans(config, net, dense=dense)
    bases = _bases(config, plans)
    R = config.rows
    B = x.shape[0]
    keep_base = _keep_base(config, net, plans, bases, _positions(config, net, B))
    phases: list[Phase] = []
    layer_of: list[int] = []
    step_of: list[str] = []
    templates: dict[int, tuple[list[Phase], list[int], list[str]]] = {}
    for g0 in range(0, B, R):
        rows = min(R, B - g0)
        if rows not in templates:  # every batch group of this size runs the same flits
            templates[rows] = _group(config, net, plans, bases, rows, keep_base)
        template, layers, steps = templates[rows]
        # this group's own part: its inputs (before the first phase's flits) and the batch
        # index of its outputs
        inputs = PhaseBuilder()
        add_activations(inputs, plans[0], x[g0:g0 + rows], base=bases[0])
        phases.append(_join(inputs.phase("load"), template[0]))
        for phase in template[1:]:
            if phase.kind == "read" and g0:
                phase = replace(phase, reply_b=np.where(phase.reply_b >= 0, phase.reply_b + g0,
                                                        phase.reply_b))
            phases.append(phase)
        layer_of += layers
        step_of += steps
    return NetworkProgram(config, (B, net.outputs, net.inputs), phases, net.nnz,
                          dense_flits=sum(layer.weights.size for layer in net.layers),
                          phase_layer=layer_of, phase_step=step_of, bases=bases,
                          plans=plans, keep_base=keep_base)


def edge_flits(program: LayerProgram) -> dict[str, int]:
    """Flits that cross the array's edge: ``host_flits_in`` (everything the host injects:
    weights as MAC flits, control, and the first layer's inputs) and ``host_flits_out`` (the
    replies: fences and the outputs), and, inside the array, ``handoff_flits`` (the WRITE_ACT
    multicasts the tiles send each other: one per operation whose output goes to a hand-off
    rectangle, :data:`~wafertile.hdl.core.ops.OPS`: FINISH)."""
    handoffs = codes(OPS.where(lambda r: r.emit is not None and r.data == "handoff"))
    finish = sum(int(np.count_nonzero(np.isin(p.flits["payload.op"], handoffs)))
                 for p in program.phases)
    return {"host_flits_in": program.flits,
            "host_flits_out": program.replies,
            "handoff_flits": finish}
