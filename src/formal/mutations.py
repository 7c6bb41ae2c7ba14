"""Known faults, each injected into one block, that its formal check must catch.

A proof that cannot fail proves nothing (an assumption that rules out every input, a
property that is always true, a harness that watches the wrong signal). Each mutation here
wraps the real component and breaks one thing; its check (:data:`MUTATIONS`) runs the same
harness with the mutant and must fail with a counterexample trace. Nothing in
:mod:`wafertile.hdl` is changed: the mutants are subclasses that put the real component
inside and alter one signal on its way.

- ``buffer_skip_pointer``: :class:`~wafertile.hdl.noc.VcBuffer` whose read pointer skips its
  update when VC 0 is full (the pop is lost): occupancy no longer counts pops.
- ``buffer_wrong_head``: a :class:`~wafertile.hdl.noc.VcBuffer` that shows VC 1's head word
  for VC 0 while VC 1 is full: a flit read out of its VC is not the one that went in (FIFO
  data).
- ``router_ignore_ready``: a router that takes VC 1's ``ready`` on its east output as always
  high: it sends into a full downstream buffer (link rule), for every micro-architecture.
- ``router_corrupts_payload``: a router whose east output flips a payload bit of VC 1's flits
  (a flit leaves changed).
- ``router_voq_youngest_first``: a ``voq`` router whose per-output queues serve the youngest
  flit for an output instead of the oldest (flits reordered).
- ``router_voq_frees_early``: a ``voq`` router that frees a slot when one branch of its flit
  has gone (a multicast's other branches lost). No safety property of the bare harness sees a
  lost flit (only the bounded liveness one, out of reach), so it runs on the proof's harness,
  whose invariants do.
- ``core_wrong_stage``: a tile core whose accumulator read port is not transparent, so the
  accumulator read of a flit misses the write of the stage ahead of it (the forwarding from
  the wrong stage): back-to-back MACs into one accumulator lose an update.
- ``core_fp_wrong_stage``: the same fault in the float core (fp16), whose hazard bubble
  relies on the transparent read for the flit two stages behind a write.
- ``core_register_reset``: a tile core whose hand-off unit declares MULT with reset value 0
  instead of 1: a FINISH before any SET hands off the wrong activation.
- ``core_grad_operands``: a float core (fp16) whose GRAD adds its data and the product the
  other way round (``product + data`` on a sum that is not commutative, as the cut sum is
  not): a GRAD's output data is wrong.
- ``core_nonlinear_no_wait``: a float core (fp16, with the nonlinear unit) whose unit says
  ``done`` the cycle after every start, while it is still busy (its output junk): the
  accumulator a NONLINEAR writes is wrong.
- ``core_send_ignores_pick``: a float core (fp16, with the nonlinear unit) whose SEND emits
  ADD whatever the data bits above its route pick (MUL, MAX or WRITE_ACC).
- ``core_finish_mac_act``: a float core (fp16, with the nonlinear unit) whose FINISH's
  output takes no activation address from its data: a MAC output's ``addr_b`` is 0.
- ``handoff_takes_busy_multiplier``: the integer hand-off unit (real arithmetic) taking the
  MAC's multiplier in a cycle it is not free.
- ``handoff_ties_up``: the hand-off unit rounding a negative tie up (-2.5 -> -2) instead of
  away from zero.
- ``handoff_shift_off_by_one``: the hand-off unit behind a SHIFT of 3 where the register says
  2: its activation is not the FINISH's.
- ``phit_wrong_register``: a serializer that sends phit 0 again in the slot's last phase
  instead of the last phit.
"""

from __future__ import annotations

from dataclasses import replace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring

from ..config import Config
from ..hdl.core import SramBank, TileCore
from ..hdl.core.ops import OpTable
from ..hdl.core.units import Requantizer
from ..hdl.flit import Opcode, Port, Reg, header_layout
from ..hdl.noc import PhitTx, VcBuffer, VoqRouter, make_router, phase_counter
from .buffer import BufferCountHarness, BufferFifoHarness
from .core import CoreHarness
from .cut import CutNonlinear, CutRequantizer, CutSum, accumulate
from .handoff import HandoffHarness
from .phit import PhitHarness
from .router import RouterHarness, VoqRouterProof

__all__ = ["MUTANT_HARNESSES", "MUTATIONS", "MUTATION_NAMES", "SkipPointerBuffer",
           "WrongHeadBuffer", "mutant", "send_without_pick"]


class _WrappedBuffer(VcBuffer):
    """A :class:`VcBuffer` around a real one, every member passed through but those
    :meth:`alter` drives."""

    def alter(self, m: Module, inner: VcBuffer, name: str) -> bool:
        """Drive member ``name`` between ``self`` and ``inner`` the faulty way (True), or
        leave it to be passed through (False)."""
        return False

    def elaborate(self, platform):
        m = Module()
        inner = VcBuffer(num_vcs=self._num_vcs, depth=self._depth, width=self._width,
                         phits=self._phits, head_width=self._head_width, peek=self._peek)
        m.submodules.inner = inner
        for name, member in self.signature.members.items():
            if self.alter(m, inner, name):
                continue
            for a, b in _leaves(getattr(self, name), getattr(inner, name)):
                m.d.comb += b.eq(a) if member.flow == wiring.In else a.eq(b)
        return m


def _leaves(ours, theirs):
    """The signal pairs of two members of one shape (arrays of any depth)."""
    if not isinstance(ours, list):
        return [(ours, theirs)]
    return [pair for a, b in zip(ours, theirs, strict=True) for pair in _leaves(a, b)]


class SkipPointerBuffer(_WrappedBuffer):
    """A :class:`VcBuffer` whose read pointer of VC 0 does not move on a pop when VC 0 is
    full (the pop is dropped on its way in)."""

    def alter(self, m, inner, name):
        if name != "pop":
            return False
        full0 = self.level[0] == self._depth
        m.d.comb += inner.pop.eq(Cat(self.pop[0] & ~full0, self.pop[1:]))
        return True


class WrongHeadBuffer(_WrappedBuffer):
    """A :class:`VcBuffer` that shows VC 1's head word when VC 0's is asked for while VC 1 is
    full (a read address multiplexer with a wrong select term)."""

    def alter(self, m, inner, name):
        if name != "r_vc":
            return False
        full1 = self.level[1] == self._depth
        m.d.comb += inner.r_vc.eq(Mux((self.r_vc == 0) & full1, 1, self.r_vc))
        return True


def _ignore_ready(config: Config):
    """A router whose east output takes VC 1's ready as always high."""
    def fault(word, ready):
        return word, ready | 0b10
    return _east_fault(config, fault)


def _corrupt_payload(config: Config):
    """A router whose east output flips the payload bit above the watched flits' mark on
    VC 1."""
    def fault(word, ready):
        vc1 = Value.cast(data.View(header_layout(config), word[:config.header_width]).vc) == 1
        bit = config.header_width + 2  # the watched flits' mark is bits 0-1
        return Cat(word[:bit], word[bit] ^ vc1, word[bit + 1:]), ready
    return _east_fault(config, fault)


class _YoungestFirst(VoqRouter):
    """A ``voq`` router whose per-output queues serve the slot that arrived *last*: the real
    head search on the age relation turned around."""

    @staticmethod
    def _oldest(cand, older):
        return VoqRouter._oldest(cand, [list(row) for row in zip(*older, strict=True)])


class _FreesEarly(VoqRouter):
    """A ``voq`` router that frees a slot as soon as one branch of its flit has gone (a
    multicast's other branches are lost)."""

    @staticmethod
    def _remaining(rem, gone):
        return Mux(gone != 0, 0, rem)


def _frees_early(config: Config) -> VoqRouter:
    return _FreesEarly(config, peek=True)


def _east_fault(config: Config, fault):
    """The router of ``config`` inside a wrapper that passes every port through but the east
    output, whose word and ready go through ``fault(word, ready)`` (the word the router sends,
    the ready from downstream; it returns the word sent on and the ready the router sees)."""
    inner = make_router(config)

    class EastFault(wiring.Component):
        def __init__(self):
            super().__init__(inner.signature)

        @property
        def inputs(self):
            return [getattr(self, f"in_{p}") for p in "lnesw"]

        @property
        def outputs(self):
            return [getattr(self, f"out_{p}") for p in "lnesw"]

        def elaborate(self, platform):
            m = Module()
            m.submodules.inner = inner
            m.d.comb += [inner.x.eq(self.x), inner.y.eq(self.y)]
            for a, b in zip(self.inputs, inner.inputs, strict=True):
                wiring.connect(m, wiring.flipped(a), b)
            for k, (a, b) in enumerate(zip(self.outputs, inner.outputs, strict=True)):
                if k != Port.EAST.value:
                    wiring.connect(m, b, wiring.flipped(a))
                    continue
                name = b.signature.word_name
                word, ready = fault(getattr(b, name).as_value(), a.ready)
                m.d.comb += [a.valid.eq(b.valid), getattr(a, name).eq(word),
                             b.ready.eq(ready)]
            return m

    return EastFault()


class _OldDataBank(SramBank):
    """A :class:`SramBank` whose accumulator read port is not transparent."""

    _acc_transparent = False  # the fault


class _WrongStageCore(TileCore):
    """A :class:`TileCore` on the :class:`_OldDataBank`."""

    _bank_class = _OldDataBank


class _AroundReal:
    """A mutant around a real block of class ``real``, whose registers (``state``, for the
    invariants) are the real block's."""

    real: type

    def __init__(self, config: Config):
        super().__init__(config)
        self._inner = self.real(config)

    @property
    def state(self) -> dict:
        return self._inner.state


class _WrongRegisterTx(_AroundReal, PhitTx):
    """A :class:`PhitTx` that sends phit 0 again in the last phase."""

    real = PhitTx

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.inner = inner = self._inner
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        phase = phase_counter(m, cfg)
        first = Signal(cfg.phit_width)
        with m.If(phase == 0):
            m.d.sync += first.eq(inner.o.phit)
        m.d.comb += [self.o.valid.eq(inner.o.valid), inner.o.ready.eq(self.o.ready),
                     self.o.phit.eq(Mux(phase == cfg.phits - 1, first, inner.o.phit))]
        return m


class _SkipPointerHarness(BufferCountHarness):
    buffer_class = SkipPointerBuffer


class _WrongHeadHarness(BufferFifoHarness):
    buffer_class = WrongHeadBuffer


def _with_dut(harness: type, make) -> type:
    """``harness`` around the block ``make(config)`` builds instead of its own."""
    return type(f"{harness.__name__}_{make.__name__.strip('_')}", (harness,),
                {"make_dut": lambda self: make(self.config)})


class _WrongStageHarness(CoreHarness):
    def make_dut(self):
        return _WrongStageCore(self.config, units=self.units())


class _WrongResetRequantizer(CutRequantizer):
    """The cut requantizer with MULT reset to 0 (the fault)."""

    @classmethod
    def registers(cls, config: Config) -> dict:
        regs = dict(super().registers(config))
        regs[Reg.MULT] = (regs[Reg.MULT][0], 0)
        return regs


class _WrongResetHarness(CoreHarness):
    def make_dut(self):
        return TileCore(self.config, units={**self.units(), "handoff": _WrongResetRequantizer})


class _GreedyRequantizer(CutRequantizer):
    """The cut requantizer taking the MAC's multiplier whether or not a MAC moves into S2
    (the fault: that MAC's product register gets a limb's product)."""

    def may_multiply(self):
        return 1


class _GreedyHarness(CoreHarness):
    def make_dut(self):
        return TileCore(self.config, units={**self.units(), "handoff": _GreedyRequantizer})


class _GreedyUnit(Requantizer):
    """The hand-off unit (real arithmetic) taking the multiplier whether or not it is free."""

    def may_multiply(self):
        return 1


class _TiesUpUnit(Requantizer):
    """The hand-off unit rounding every tie up (-2.5 -> -2): the negative-tie correction of
    its rounding left out."""

    def rounds_up(self, shift, sign, low_zero):
        return shift != 0


class _ShiftOffByOne(_AroundReal, Requantizer):
    """The hand-off unit behind a wrong SHIFT: 3 where the register says 2 (a fault in the
    register's path into the unit)."""

    real = Requantizer

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self._inner
        for name, member in self.signature.members.items():
            ours, theirs = getattr(self, name), getattr(inner, name)
            if name == "shift":
                m.d.comb += theirs.eq(Mux(ours == 2, 3, ours))
            else:
                m.d.comb += theirs.eq(ours) if member.flow == wiring.In else ours.eq(theirs)
        return m


class _SwappedGradSum(CutSum):
    """The cut sum with its operands the other way round (GRAD's only, the fault)."""

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.o.eq(accumulate(self.b, self.a))
        return m


class _SwappedGradHarness(CoreHarness):
    def make_dut(self):
        return TileCore(self.config, units={**self.units(), "grad": _SwappedGradSum})


class _HastyNonlinear(CutNonlinear):
    """The cut nonlinear unit, with ``done`` high the cycle after every start."""

    def hasty(self):
        return Const(1)


class _HastyNonlinearHarness(CoreHarness):
    def make_dut(self):
        return TileCore(self.config, units={**self.units(), "nonlinear": _HastyNonlinear})


def send_without_pick(ops: OpTable) -> OpTable:
    """``ops`` with a SEND that has no choices: it emits ADD whatever its data bits pick (the
    fault of ``core_send_ignores_pick``, also the Amaranth tests')."""
    send = ops[Opcode.SEND]
    return ops.with_rows(replace(send, emit=replace(send.emit, choices=(),
                                                    choice_option=None)))


def finish_without_act(ops: OpTable) -> OpTable:
    """``ops`` with a FINISH whose output takes no activation address from its data: a MAC it
    emits multiplies activation 0 whatever its ``act`` field says (the fault of
    ``core_finish_mac_act``)."""
    finish = ops[Opcode.FINISH]
    return ops.with_rows(replace(finish, emit=replace(finish.emit, addr_b=None)))


class _TableMutant(TileCore):
    """A tile core built from a changed table (``change``), while its ``ops``, which the
    specification reads, stay the real table."""

    change = staticmethod(send_without_pick)

    def elaborate(self, platform):
        real = self._ops
        self._ops = self.change(real)
        try:
            return super().elaborate(platform)
        finally:
            self._ops = real


def _table_harness(change):
    """A core harness whose core is built from ``change(table)``."""
    core = type(f"_Mutant_{change.__name__}", (_TableMutant,),
                {"change": staticmethod(change)})

    class Harness(CoreHarness):
        def make_dut(self):
            return core(self.config, units=self.units())
    Harness.__name__ = Harness.__qualname__ = f"_Harness_{change.__name__}"
    return Harness


class _WrongRegisterHarness(PhitHarness):
    def make_tx(self):
        return _WrongRegisterTx(self.config)


#: Each block's mutations: ``{block: {name: (harness class or factory, kind[, depth])}}``;
#: the kind picks which of the block's default checks' configurations the mutation runs on:
#: the number format (``"int"``, ``"float"``, ``"nonlinear"``: float with the nonlinear unit,
#: or None for any), for the router the
#: micro-architecture (None: ``compact``); the depth, where given, is the least the
#: fault needs to show (else the check's).
MUTATIONS = {
    "buffer": {"buffer_skip_pointer": (_SkipPointerHarness, None),
               "buffer_wrong_head": (_WrongHeadHarness, None)},
    "router": {"router_ignore_ready": (
                   lambda config: _with_dut(RouterHarness, _ignore_ready)(config, drain=0), None),
               "router_corrupts_payload": (
                   lambda config: _with_dut(RouterHarness, _corrupt_payload)(config, drain=0),
                   None),
               "router_voq_youngest_first": (
                   lambda config: _with_dut(RouterHarness, _YoungestFirst)(config, drain=0),
                   "voq"),
               # a lost branch breaks no safety property of the bare harness (only the
               # bounded liveness one, out of reach): the proof's invariants catch it
               "router_voq_frees_early": (_with_dut(VoqRouterProof, _frees_early), "voq")},
    "core": {"core_wrong_stage": (_WrongStageHarness, "int"),
             "core_fp_wrong_stage": (_WrongStageHarness, "float"),
             "core_register_reset": (_WrongResetHarness, "int"),
             # its fault shows in the read of the MAC's accumulator, which waits in S2 for
             # the unit's activation: step 7 (a counterexample is found fast)
             "core_handoff_takes_multiplier": (_GreedyHarness, "int", 8),
             "core_grad_operands": (_SwappedGradHarness, "float"),
             "core_nonlinear_no_wait": (_HastyNonlinearHarness, "nonlinear"),
             "core_send_ignores_pick": (_table_harness(send_without_pick), "nonlinear"),
             "core_finish_mac_act": (_table_harness(finish_without_act), "nonlinear")},
    "phit": {"phit_wrong_register": (_WrongRegisterHarness, None)},
    "handoff": {"handoff_takes_busy_multiplier": (_with_dut(HandoffHarness, _GreedyUnit), None),
                "handoff_ties_up": (_with_dut(HandoffHarness, _TiesUpUnit), None),
                "handoff_shift_off_by_one": (_with_dut(HandoffHarness, _ShiftOffByOne), None)},
}

#: The mutant harness of each block's first mutation: ``MUTANT_HARNESSES[block](config)``.
MUTANT_HARNESSES = {block: next(iter(muts.values()))[0] for block, muts in MUTATIONS.items()}

#: The names of each block's mutations (check names, the report).
MUTATION_NAMES = {block: tuple(muts) for block, muts in MUTATIONS.items()}


def mutant(block: str, config: Config, name: str | None = None):
    """The mutant harness of ``block`` for ``config``: mutation ``name``, by default the
    block's first."""
    muts = MUTATIONS[block]
    return muts[name or next(iter(muts))][0](config)
