"""What the two tile cores share: the decoder, its control word, the units a table needs,
and the pipeline's control (the hold, the accumulator's readers and writers, the output,
the status flags, the tile registers).

A core decodes the opcode once, in its first stage (:class:`Decoder`), into a control word
(:class:`Control`: a named struct made from the operation table, :mod:`.ops`) that travels
down the pipeline beside the request; every later stage reads the word's fields, never the
opcode. The word's fields:

============== =====================================================================
``legal``      an operation the core executes (:meth:`~.ops.OpTable.legal`); 0: no
               effect, the sticky ``error``
``act_by_addr`` the activation is addressed by ``addr`` (else by ``addr_b``)
``act_write``  it writes the activation (the low ``data_width`` bits of ``data``)
``mac``        an operation of the MAC unit: the operand is the product, and it has no
               effect for a zero weight or activation (:attr:`~.ops.Op.skips_zero`)
``counts_mac`` it counts as a MAC (``mac_done`` / ``mac_skipped``)
``acc_read``   it reads ``acc[addr]``
``acc_write``  it writes ``acc[addr]`` (a MAC only for a nonzero pair)
``acc_data``   the value written is the request's ``data`` (else its unit's result)
``act_weight`` the product's weight is a second activation (GRAD), not ``data``
``sum_data``   the accumulator unit adds to the request's ``data``, not to an
               accumulator (GRAD: it reads none)
``emit_sum``   the output's data is the accumulator unit's sum (GRAD), in a core that
               emits after the unit's latency
``reg_write``  it writes tile register ``addr`` (SET)
``emits``      it emits a flit from the last stage
``holds``      its output unit works beside the pipeline and emits the output itself,
               :meth:`~.units.Requantizer.delay` cycles after the operation leaves the
               last stage (the integer hand-off: a unit with a ``delay``)
``iterate``    its unit is the iterative one (NONLINEAR, MUL, MAX): the accumulator
               read's stage holds until the unit is done; a field of the word only in a
               core that has an iterative unit, as are the next two
``func_data``  the iterative unit's function is numbered by the low bits of ``data``
               (NONLINEAR)
``func``       else the function it runs (:attr:`~.ops.Op.function`: its code in the
               unit's ``FUNCTIONS``)
``unit``       which accumulator unit (an index into :attr:`Control.acc_units`)
``out_unit``   which output unit (an index into :attr:`Control.out_units`)
``emit``       which output (an index into :attr:`Control.emits`)
============== =====================================================================

``illegal`` is the complement of ``legal``: exactly the codes that the table does not define
for the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import Component, In, Out

from ...config import Config
from .._util import ConfiguredComponent, any_of
from ..flit import Opcode, finish_act, payload_layout
from .ops import OPS, Emit, Op, OpTable
from .sram import bank_ports
from .units import beside_pipeline, unit_kind

__all__ = ["Control", "CoreBase", "Decoder", "acc_reads", "acc_writes", "act_address",
           "check_units", "core_ports", "drive_output", "emit_opcode", "make_units",
           "output_flit", "pick_output", "pick_result", "pipeline_hold", "second_act_read",
           "status_flags", "tile_registers"]

#: The one-bit fields of the control word, in the struct's order.
_FLAGS = ("legal", "act_by_addr", "act_write", "mac", "counts_mac", "acc_read", "acc_write",
          "acc_data", "act_weight", "sum_data", "emit_sum", "reg_write", "emits", "holds")


def _index_shape(n: int) -> range:
    return range(max(n, 2))


@dataclass(frozen=True)
class Control:
    """The control word of a core: its layout, and the word of each operation.

    Parameters
    ----------
    ops : OpTable
    config : Config
    units : mapping of str to unit class
        The core's units (:mod:`.units`), by the name a row's ``unit`` gives.

    Attributes
    ----------
    rows : tuple of Op
        The operations the core executes (:meth:`~.ops.OpTable.legal`), in code order.
    emits : tuple of Emit
        The distinct outputs of ``rows``, in code order of their first row.
    acc_units : tuple of unit classes
        The distinct accumulator units of ``rows`` (names mapped to one class are one
        unit), in code order of their first row.
    out_units : tuple of unit classes
        The distinct output units of ``rows``, likewise.
    iter_unit : unit class or None
        The iterative unit of ``rows`` (at most one), or None.
    weight_field : str or None
        The payload field that addresses the second activation of the rows that read one
        (:attr:`~.ops.Op.act_weight`; one field for all), or None.
    layout : amaranth.lib.data.StructLayout
    units : mapping of str to unit class
        The ``units`` it was made with.
    emit_ops : tuple of tuple of Opcode
        The opcodes each of :attr:`emits` can have on this core
        (:meth:`~.ops.Emit.opcodes`): one, or the choices its request's ``data`` picks from
        bit ``choice_at[k]`` up.
    choice_at : tuple of int
        Where each of :attr:`emits` finds its choice bits in the request's ``data``
        (:meth:`~.ops.Emit.choice_at`: right above the route or the hand-off).
    data_act : tuple of (int, int) or None
        Where each of :attr:`emits` finds the ``act`` field of a FINISH's ``data``
        (``"data_act"``, :attr:`~wafertile.Config.finish_fields`): its first bit and width,
        or None where the output takes no address from it on this core.
    """

    rows: tuple[Op, ...]
    emits: tuple[Emit, ...]
    acc_units: tuple[type, ...]
    out_units: tuple[type, ...]
    iter_unit: type | None
    weight_field: str | None
    layout: data.StructLayout
    units: Mapping[str, type]
    emit_ops: tuple[tuple[Opcode, ...], ...] = ()
    choice_at: tuple[int, ...] = ()
    data_act: tuple[tuple[int, int] | None, ...] = ()

    @classmethod
    def of(cls, ops: OpTable, config: Config, units: Mapping[str, type]) -> Control:
        rows = ops.legal(config)
        emits: list[Emit] = []
        kinds: dict[str | None, list[type]] = {"acc": [], "output": [], "iterative": []}
        for row in rows:
            if row.emit is not None and row.emit not in emits:
                emits.append(row.emit)
            if row.unit is not None:
                found = kinds.setdefault(unit_kind(units[row.unit]), [])
                if units[row.unit] not in found:
                    found.append(units[row.unit])
        fields = {row.act_weight for row in rows if row.act_weight}
        if len(fields) > 1:
            raise ValueError(f"the second activation of every operation must come from one "
                             f"field, not {sorted(fields)}")
        if len(kinds["iterative"]) > 1:
            raise ValueError(f"a core has at most one iterative unit, not "
                             f"{', '.join(c.__name__ for c in kinds['iterative'])}")
        flags = _FLAGS + (("iterate", "func_data") if kinds["iterative"] else ())
        funcs = ({"func": _index_shape(len(kinds["iterative"][0].FUNCTIONS))}
                 if kinds["iterative"] else {})
        layout = data.StructLayout({**{name: 1 for name in flags}, **funcs,
                                    "unit": _index_shape(len(kinds["acc"])),
                                    "out_unit": _index_shape(len(kinds["output"])),
                                    "emit": _index_shape(len(emits))})
        # the bits that pick an output's opcode sit above the route or hand-off in the data
        # field (Config checks that a FINISH's fields fit it)
        assert all(e.choice_at(config) + (len(e.opcodes(config)) - 1).bit_length()
                   <= config.acc_width for e in emits)
        data_act = tuple(finish_act(config)
                         if "data_act" in (e.addr, e.addr_b) and e.chooses(config) else None
                         for e in emits)
        return cls(rows, tuple(emits), tuple(kinds["acc"]), tuple(kinds["output"]),
                   kinds["iterative"][0] if kinds["iterative"] else None,
                   fields.pop() if fields else None, layout, units,
                   tuple(e.opcodes(config) for e in emits),
                   tuple(e.choice_at(config) for e in emits), data_act)

    def kind(self, row: Op) -> str | None:
        """The kind of ``row``'s unit (:func:`~.units.unit_kind`), or None."""
        return unit_kind(self.units[row.unit]) if row.unit is not None else None

    def word(self, row: Op) -> dict[str, int]:
        """The control word of ``row`` (a row of :attr:`rows`), as field values."""
        kind = self.kind(row)
        word = {
            "legal": 1,
            "act_by_addr": int(row.act_field == "addr"),
            "act_write": int(row.act_write is not None),
            "mac": int(row.skips_zero),
            "counts_mac": int(row.counts_mac),
            "acc_read": int(row.acc_read),
            "acc_write": int(row.acc_write is not None),
            "acc_data": int(row.acc_write == "data"),
            "act_weight": int(row.act_weight is not None),
            "sum_data": int(kind == "acc" and not row.acc_read),
            "emit_sum": int(kind == "acc" and row.emit is not None and row.emit.data == "unit"),
            "reg_write": int(row.reg_write),
            "emits": int(row.emit is not None),
            "holds": int(kind == "output" and beside_pipeline(self.units[row.unit])),
            "unit": self.acc_units.index(self.units[row.unit]) if kind == "acc" else 0,
            "out_unit": self.out_units.index(self.units[row.unit]) if kind == "output" else 0,
            "emit": self.emits.index(row.emit) if row.emit is not None else 0,
        }
        if self.iter_unit is not None:
            word["iterate"] = int(kind == "iterative")
            word["func_data"] = int(kind == "iterative" and row.data == "function")
            word["func"] = (self.iter_unit.FUNCTIONS.index(row.function)
                            if kind == "iterative" and row.function is not None else 0)
        return word


class Decoder(Component):
    """The opcode's control word (:class:`Control`), combinational: the word of the row of
    ``op`` if the core executes it, all zeros (``legal`` 0) otherwise.

    Members
    -------
    op : ``In(Opcode)``
    ctrl : ``Out(control.layout)``
    """

    def __init__(self, control: Control):
        self._words = {row.code: control.layout.const(control.word(row)).as_bits()
                       for row in control.rows}
        super().__init__({"op": In(Opcode), "ctrl": Out(control.layout)})

    def elaborate(self, platform):
        m = Module()
        # Each bit of the word is the OR of the opcode tests of the rows that set it: plain
        # continuous logic (no always block, which an event-driven simulator such as Icarus
        # does not run at time 0 while the opcode has not changed: the word would stay X).
        hits = {code: Signal(name=f"is_{code}") for code in self._words}
        for code, hit in hits.items():
            m.d.comb += hit.eq(self.op.as_value() == code)
        width = len(self.ctrl.as_value())
        bits = []
        for k in range(width):
            terms = [hit for code, hit in hits.items() if (self._words[code] >> k) & 1]
            bits.append(any_of(terms))
        m.d.comb += self.ctrl.eq(Cat(*bits))
        return m


def make_units(core, m: Module, units: Mapping[str, type]) -> dict[type, Any]:
    """The units ``core``'s operations need, one instance per class, added to ``m`` as
    submodules named after their first name in ``units``: ``{class: instance}``. The
    multiplier (``units["multiply"]``) only for a table with a MAC-unit operation. (The
    core's :meth:`CoreBase.check` has checked ``units`` against the table when the core was
    made: :func:`check_units`.)
    """
    names: dict[type, str] = {}
    for row in core.ops.legal(core.config):
        if row.unit is not None:
            names.setdefault(units[row.unit], row.unit)
        if row.skips_zero:
            names.setdefault(units["multiply"], "multiply")
    if any(row.reg_write for row in core.ops.legal(core.config)):
        names.setdefault(units["handoff"], "handoff")
    made = {}
    for cls, name in names.items():
        made[cls] = cls(core.config)
        m.submodules[name] = made[cls]
    return made


def check_units(owner: str, config: Config, ops: OpTable, units: Mapping[str, type],
                acc_latency: int, emits_sums: bool = False, iterates: bool = False) -> None:
    """Raise ``ValueError`` if an operation of ``ops`` for ``config`` needs a unit that
    ``units`` does not name, or one of the wrong kind or latency (the accumulator units'
    ``acc_latency``, the output units' 0); if the MAC-unit operations are not exactly those
    that skip a zero operand (with GRAD's unit, the one that skips and emits its sum); if
    an operation emits an accumulator unit's sum (or reads a second activation) in a core
    that does not (``emits_sums``: the float core); or if an iterative unit's operation
    does not read and write its accumulator and emit nothing, or is in a core without
    iterative units (``iterates``: the float core)."""
    def need(name: str, kind: str, latency: int, why: str) -> None:
        cls = units.get(name)
        if cls is None:
            raise ValueError(f"{owner} has no unit {name!r} ({why}); its units: "
                             f"{', '.join(sorted(units))}")
        if unit_kind(cls) != kind:
            raise ValueError(f"{owner}'s unit {name!r} ({cls.__name__}) is of kind "
                             f"{unit_kind(cls)!r}, not {kind!r} ({why})")
        if getattr(cls, "latency", None) != latency:
            raise ValueError(f"{owner}'s unit {name!r} ({cls.__name__}) has latency "
                             f"{getattr(cls, 'latency', None)!r}; {owner} needs {latency} "
                             f"({why})")

    for row in ops.legal(config):
        why = f"operation {row.name}"
        sums_out = row.act_weight is not None
        if (row.unit == "mac" or sums_out) != row.skips_zero:
            raise ValueError(f"{owner} skips the zero operands of exactly the operations of "
                             f"its MAC unit and those whose product's weight is an activation "
                             f"({why})")
        if sums_out and not emits_sums:
            raise ValueError(f"{owner} cannot read a second activation or emit a sum ({why})")
        if row.skips_zero:
            need("multiply", "multiply", 1, why)
        if row.unit is not None and unit_kind(units.get(row.unit)) == "iterative":
            if not iterates:
                raise ValueError(f"{owner} has no iterative units ({why})")
            if not (row.acc_read and row.acc_write == "unit" and row.emit is None and
                    not row.skips_zero):
                raise ValueError(f"{owner}: an iterative unit's operation reads and writes "
                                 f"its accumulator and emits nothing ({why})")
            need(row.unit, "iterative", None, why)
            if row.function is not None and row.function not in units[row.unit].FUNCTIONS:
                raise ValueError(f"{owner}: {units[row.unit].__name__} has no function "
                                 f"{row.function!r} ({why})")
        elif row.function is not None:
            raise ValueError(f"{owner}: only an iterative unit runs a function ({why})")
        elif row.acc_write == "unit" or sums_out:
            need(row.unit, "acc", acc_latency, why)
        elif row.unit is not None:
            need(row.unit, "output", 0, why)
        if row.reg_write:
            need("handoff", "output", 0, f"{why} writes its registers")


def pipeline_hold(m: Module, core, offers, hazard=None, busy=None):
    """The pipeline's hold, the same in both cores: everything moves as one (``advance``)
    unless the last stage offers an output (``offers``) that is not taken, or something is
    ``busy`` (the integer hand-off in the way); the stages before the accumulator read also hold on
    ``hazard`` (``move``: they advance and there is no hazard), and ``i.ready`` is ``move``.
    Returns ``(advance, move)``."""
    advance = Signal()
    m.d.comb += advance.eq((~offers | core.o.ready) & ~(busy if busy is not None else 0))
    if hazard is None:
        move = advance
    else:
        move = Signal()
        m.d.comb += move.eq(advance & ~hazard)
    m.d.comb += core.i.ready.eq(move)
    return advance, move


def acc_reads(ctrl, nonzero):
    """The operation reads its accumulator (a MAC only for a nonzero pair)."""
    return ctrl.acc_read & (~ctrl.mac | nonzero)


def acc_writes(ctrl, nonzero):
    """The operation writes its accumulator (a MAC only for a nonzero pair)."""
    return ctrl.acc_write & (~ctrl.mac | nonzero)


def drive_output(m: Module, core, control: Control, stage, ctrl, valid, sources) -> None:
    """A core's output flit from its last stage, combinational (the integer core): valid for
    an operation that emits, the fields of :func:`output_flit`, the tag the request's
    ``data``."""
    m.d.comb += [core.o.valid.eq(valid & ctrl.emits), core.o_tag.eq(stage.data.as_unsigned())]
    output_flit(m.d.comb, m, control, stage, ctrl, sources, core.o.p)


def emit_opcode(domain, m: Module, target, ops, data, at: int) -> None:
    """Assign, in ``domain``, an output's opcode to ``target``: ``ops[0]`` if it has one,
    else the one the request's ``data`` bits from ``at`` (the route's width) up pick
    (:meth:`~.ops.Emit.opcode`)."""
    if len(ops) == 1:
        domain += target.eq(ops[0])
        return
    with m.Switch(data.as_unsigned()[at:at + (len(ops) - 1).bit_length()]):
        for j, op in enumerate(ops):
            with m.Case(j):
                domain += target.eq(op)


def output_flit(domain, m: Module, control: Control, stage, ctrl, sources, out) -> None:
    """Assign, in ``domain``, the fields of the output flit ``out``: the output
    (:class:`~.ops.Emit`) that the control word ``ctrl`` picks, its fields from the request
    ``stage``, its data from ``sources`` (``"act"``: the activation the operation read,
    ``"acc"``: the accumulator, ``"unit"``: the output unit's result)."""
    if not control.emits:
        return
    with m.Switch(ctrl.emit):
        for k, emit in enumerate(control.emits):
            with m.Case(k) if k < len(control.emits) - 1 else m.Default():
                emit_opcode(domain, m, out.op, control.emit_ops[k], stage.data,
                            control.choice_at[k])
                domain += [out.addr.eq(_out_field(stage, emit.addr, control.data_act[k])),
                           out.addr_b.eq(_out_field(stage, emit.addr_b, control.data_act[k])),
                           out.data.eq(sources[emit.data])]


def _out_field(stage, source: str | None, data_act: tuple[int, int] | None):
    """An output's ``addr`` / ``addr_b`` from the request ``stage``: a payload field, the
    ``act`` field of a FINISH's ``data`` (where the core has it), or 0."""
    if source is None or (source == "data_act" and data_act is None):
        return 0
    if source == "data_act":
        at, width = data_act
        return stage.data.as_unsigned()[at:at + width]
    return getattr(stage, source)


def status_flags(m: Module, core, fire, ctrl, nonzero) -> None:
    """``mac_done`` / ``mac_skipped`` for an operation counted as a MAC that leaves the last
    stage (``fire``) with or without a nonzero pair, and the sticky ``error`` for an opcode
    the core does not execute."""
    m.d.comb += [core.mac_done.eq(fire & ctrl.counts_mac & nonzero),
                 core.mac_skipped.eq(fire & ctrl.counts_mac & ~nonzero)]
    with m.If(fire & ~ctrl.legal):
        m.d.sync += core.error.eq(1)


def tile_registers(m: Module, unit, config: Config, write, stage) -> None:
    """The tile registers of output unit ``unit`` (its :meth:`registers`), held by the core
    and connected to the unit's inputs: ``write`` (a SET leaving the last stage) writes the
    low bits of ``stage.data`` into register ``stage.addr`` (a register the unit does not
    declare is not written)."""
    regs = {}
    for reg, (width, init) in type(unit).registers(config).items():
        regs[reg] = Signal(width, init=init, name=reg.name.lower())
        m.d.comb += getattr(unit, reg.name.lower()).eq(regs[reg])
    reg_addr = stage.addr[:2]
    with m.If(write):
        for k, (reg, value) in enumerate(regs.items()):
            with (m.If if k == 0 else m.Elif)(reg_addr == reg.value):
                m.d.sync += value.eq(stage.data[:len(value)])


def pick_result(control: Control, made: Mapping[type, Any], index, data_value, use_data):
    """The accumulator's new value: ``data_value`` where ``use_data``, else the result of
    the accumulator unit ``index`` picks (:attr:`Control.acc_units`)."""
    return Mux(use_data, data_value, _pick([made[cls].o for cls in control.acc_units], index,
                                           data_value))


def pick_output(control: Control, made: Mapping[type, Any], index, default):
    """The result of the output unit ``index`` picks (:attr:`Control.out_units`), or
    ``default`` for a core with none."""
    return _pick([made[cls].o for cls in control.out_units], index, default)


def _pick(results, index, default):
    value = results[0] if results else default
    for k in range(1, len(results)):
        value = Mux(index == k, results[k], value)
    return value


def act_address(config: Config, p, ctrl):
    """The activation address of request ``p`` with control word ``ctrl``: the low bits of
    ``addr`` or ``addr_b`` (``ctrl.act_by_addr``)."""
    return Mux(ctrl.act_by_addr, p.addr, p.addr_b)[:config.act_addr_width]


def second_act_read(ops: OpTable, config: Config) -> bool:
    """Whether a core of ``config`` executing ``ops`` reads a second activation (GRAD): its
    bank then has a second activation read port (``act_r2``)."""
    return any(row.act_weight for row in ops.legal(config))


def core_ports(config: Config) -> dict[str, wiring.Member]:
    """The stream and status members a tile core shows the tile (``i``, ``o``, ``o_tag``, ...)."""
    return {
        "i": In(stream.Signature(payload_layout(config))),
        "o": Out(stream.Signature(payload_layout(config))),
        "o_tag": Out(config.acc_width),
        "mac_done": Out(1),
        "mac_skipped": Out(1),
        "act_written": Out(1),
        "error": Out(1),
    }


class CoreBase(ConfiguredComponent):
    """What the integer and float cores share: the members (:func:`core_ports` and the bank's
    ports, flipped), the operation table and the units (:mod:`.units`).

    Subclasses set ``UNITS`` (their units by name), ``ACC_LATENCY`` (cycles from the
    accumulator read's data to the result an accumulator unit writes) and ``FLOAT`` (the
    number formats they execute: True for fp16 / bf16).

    Parameters
    ----------
    config : Config
    ops : OpTable
        The operations (by default :data:`~.ops.OPS`): the core derives every per-opcode
        decision from it.
    units : mapping of str to unit class, optional
        Units added to the core's own or replacing them, by name (:mod:`.units`).
    """

    UNITS: Mapping[str, type] = {}
    ACC_LATENCY = 0
    FLOAT = False
    #: it emits after its accumulator units' latency, so an output may carry a unit's sum
    #: and an operation may read a second activation (GRAD): the float core
    EMITS_SUMS = False
    #: it holds the accumulator read's stage for an iterative unit (NONLINEAR): the float core
    ITERATES = False

    def __init__(self, config: Config, ops: OpTable = OPS,
                 units: Mapping[str, type] | None = None):
        self._ops = ops
        self._units = {**self.UNITS, **(units or {})}
        ports = core_ports(config)
        ports.update({name: member.flip() for name, member in
                      bank_ports(config, second_act_read(ops, config)).items()})
        super().__init__(config, ports)

    @classmethod
    def check(cls, config: object, ops: OpTable = OPS,
              units: Mapping[str, type] | None = None) -> None:
        super().check(config)
        if config.is_float != cls.FLOAT:
            raise TypeError(cls._WRONG_FORMAT.format(dtype=repr(config.dtype)))
        if not isinstance(ops, OpTable):
            raise TypeError(f"{cls.__name__} ops must be an OpTable, not {ops!r}")
        check_units(cls.__name__, config, ops, {**cls.UNITS, **(units or {})},
                    cls.ACC_LATENCY, cls.EMITS_SUMS, cls.ITERATES)

    @property
    def ops(self) -> OpTable:
        """The operation table the core executes."""
        return self._ops

    @property
    def units(self) -> dict[str, type]:
        """The core's units by name."""
        return dict(self._units)
