"""The operations of a tile core, one row each: the one place that says what an opcode does.

Per opcode (:class:`~wafertile.hdl.flit.Opcode`) a row (:class:`Op`) says what the operation
reads (the activation, addressed by which payload field; the accumulator at ``addr``), which
unit computes its result, what it writes (the activation, the accumulator, a tile register),
whether it emits a flit and which (:class:`Emit`: its opcode, the request fields it carries,
where its data comes from), what the request's ``data`` field carries (which also says how
the tile routes the output), and its flags (counts as a MAC, skipped on a zero operand, needs
the hand-off unit, the number formats that define it).

Everything else derives its per-opcode decisions from :data:`OPS`: the cores
(:mod:`.mac`, :mod:`.fpmac`), the tile, the numpy core model, the formal core
specification, the coverage model, the testbenches' random streams and the performance
model; ``docs/architecture.md``'s opcode table is checked against it (``tests/test_ops.py``).
A new operation is a row here (and a unit, :mod:`.units`, if it computes something new): a
test adds one with :meth:`OpTable.with_rows` and gives the cores its unit's class.

The wire encoding of the opcodes stays :class:`~wafertile.hdl.flit.Opcode`; a row holds its
code and name, so that a table may also hold a row for a code the enumeration does not name,
or a row of another name in place of an operation the enumeration names (a test's: 13 .. 15
are MUL, MAX and one free code). The rows of a table are in code order: the cores decode the opcode
(:mod:`.control`) with one case per row in that order, so the Verilog does not depend on how
a table was made.

Units (:attr:`Op.unit`) the cores have (:mod:`.units`): ``"mac"`` (``acc + weight * act``),
``"add"`` (``acc + data``), ``"handoff"`` (the hand-off unit: FINISH's activation from the
accumulator, the requantization of an integer core or the rounding of a float core; SET
writes its registers), and the float cores' training units (``docs/training.md``):
``"grad"`` (``data + act * act``, GRAD's step of a weight gradient: the MAC's multiplier and
adder with other operands) and ``"backprop"`` (FINISH_BACK's ``act > 0 ? to_half(acc) : +0``);
the float cores' optional ``"nonlinear"`` (NONLINEAR's ``f(acc)``, MUL's ``acc * data`` and
MAX's ``max(acc, data)``, ``docs/nonlinear.md``: an iterative unit, :mod:`.units`, there only
with ``config.nonlinear``).
"""

from __future__ import annotations

import enum as py_enum
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from functools import reduce
from typing import Any

from amaranth.hdl import Const, Value

from ...config import Config
from ..flit import Opcode, finish_act

__all__ = ["DATA_KINDS", "FIELDS", "FORMATS", "LOW_BITS", "OPS", "OPTIONS", "OUT_FIELDS",
           "ROUTES", "SOURCES", "UNITS",
           "Emit", "Op", "OpTable", "absent", "code_of", "codes", "emitting", "legal",
           "matches"]

#: The payload fields that address something or are carried into an output.
FIELDS = ("addr", "addr_b")
#: What an output's ``addr`` / ``addr_b`` may be: a payload field (:data:`FIELDS`) or
#: ``"data_act"``, the ``act`` field a FINISH carries in its ``data`` above its hand-off and
#: its output's pick (:attr:`~wafertile.Config.finish_fields`; 0 on a core without the
#: output's ``choice_option``).
OUT_FIELDS = (*FIELDS, "data_act")
#: What the low bits of a request's ``data`` carry for an output that goes to the request's
#: route (:attr:`Emit.after`): its route or its hand-off; an output's choice bits sit right
#: above them.
LOW_BITS = ("route", "handoff")
#: Where an output's data comes from: the activation the operation read, the accumulator it
#: read, its unit's result.
SOURCES = ("act", "acc", "unit")
#: What a request's ``data`` field carries: a MAC's weight (low ``data_width`` bits), an
#: activation (low ``data_width`` bits), an accumulator word (a value to write or add), a
#: tile register's value, the output's route (:func:`~wafertile.hdl.flit.route_layout`: a
#: unicast), its hand-off (:func:`~wafertile.hdl.flit.handoff_layout`: a row rectangle) or a
#: function's number (low 3 bits: NONLINEAR's ``f``).
DATA_KINDS = ("weight", "activation", "value", "register", "route", "handoff", "function")
#: The units of the cores (module documentation).
UNITS = ("mac", "add", "handoff", "grad", "backprop", "nonlinear")
#: The configuration's flags that add an optional unit, and with it the operations that need
#: it (:attr:`Op.option`).
OPTIONS = ("handoff", "nonlinear")
#: Where a tile sends an operation's output: ``"request"`` (the route or hand-off its
#: request's ``data`` carries) or ``"down"`` (the tile below in the same column; from the last
#: row, out of the array's south edge: GRAD's chain).
ROUTES = ("request", "down")
#: The number formats: ``"int"`` (int8, int16: :class:`~.mac.MacCore`) and ``"float"``
#: (fp16, bf16: :class:`~.fpmac.FpMacCore`).
FORMATS = frozenset({"int", "float"})

#: The codes an ``op`` field holds, and the opcodes the enumeration names by code.
_CODES = range(1 << Opcode.as_shape().width)
_NAMED = {op.value: op for op in Opcode}


@dataclass(frozen=True)
class Emit:
    """The flit an operation emits, from the core's last stage.

    Attributes
    ----------
    op : Opcode
        The output flit's opcode.
    addr, addr_b : str or None
        The request's payload field (:data:`FIELDS`) that the output's ``addr`` /
        ``addr_b`` is, ``"data_act"`` (the ``act`` field of a FINISH's ``data``,
        :data:`OUT_FIELDS`), or None for 0.
    data : str
        Where the output's ``data`` comes from (:data:`SOURCES`): ``"act"`` (the activation
        the operation read, sign-extended; a float core's 16 bits zero-extended), ``"acc"``
        (the accumulator it read), ``"unit"`` (its unit's result).
    route : str
        Where the tile sends it (:data:`ROUTES`): ``"request"`` (the route or hand-off in the
        request's ``data``) or ``"down"`` (the tile below; the south edge from the last row).
    choices : tuple of Opcode
        Empty, or the opcodes the output may have (2 or 4, the first ``op``): on a core with
        ``choice_option``, the request's ``data`` bits right above its route or hand-off
        (from bit :meth:`choice_at`: 1 or 2 of them) pick one (:meth:`opcode`); on other
        cores the output is ``op`` and the bits are ignored.
    choice_option : str or None
        The configuration flag (:data:`OPTIONS`) that enables ``choices`` (None: always).
    after : str
        What the request's ``data`` carries in its low bits (:data:`LOW_BITS`): ``"route"``
        (:attr:`~wafertile.Config.route_width` bits) or ``"handoff"``
        (:attr:`~wafertile.Config.handoff_width`); for an output to the request's route, the
        operation's :attr:`Op.data`.
    """

    op: Opcode
    addr: str | None
    addr_b: str | None
    data: str
    route: str = "request"
    choices: tuple[Opcode, ...] = ()
    choice_option: str | None = None
    after: str = "route"

    def __post_init__(self) -> None:
        if not isinstance(self.op, Opcode):
            raise TypeError(f"an output's op must be an Opcode, not {self.op!r}")
        if self.choices and (len(self.choices) not in (2, 4) or self.choices[0] != self.op
                             or not all(isinstance(c, Opcode) for c in self.choices)):
            raise ValueError(f"an output's choices must be 2 or 4 opcodes, the first its op "
                             f"{self.op.name}, not {self.choices!r}")
        if self.choices and self.route != "request":
            raise ValueError("an output with choices goes to the route in the request")
        if self.choice_option not in (*OPTIONS, None):
            raise ValueError(f"an output's choice_option must be one of {OPTIONS} or None, "
                             f"not {self.choice_option!r}")
        for name in ("addr", "addr_b"):
            if getattr(self, name) not in (*OUT_FIELDS, None):
                raise ValueError(f"an output's {name} must be one of {OUT_FIELDS} or None, "
                                 f"not {getattr(self, name)!r}")
        if self.after not in LOW_BITS:
            raise ValueError(f"an output's after must be one of {LOW_BITS}, not "
                             f"{self.after!r}")
        if "data_act" in (self.addr, self.addr_b) and not (self.after == "handoff" and
                                                          self.choices):
            raise ValueError("an output's address from a FINISH's data (data_act) needs a "
                             "hand-off in the request and choices")
        if self.data not in SOURCES:
            raise ValueError(f"an output's data must be one of {SOURCES}, not {self.data!r}")
        if self.route not in ROUTES:
            raise ValueError(f"an output's route must be one of {ROUTES}, not {self.route!r}")

    def chooses(self, config: Config) -> bool:
        """Whether the core of ``config`` picks the output's opcode from :attr:`choices`."""
        return bool(self.choices) and (self.choice_option is None or
                                       getattr(config, self.choice_option))

    def opcodes(self, config: Config) -> tuple[Opcode, ...]:
        """The opcodes the output can have on a core of ``config``: :attr:`choices` where
        their option is set, else ``(op,)``."""
        return self.choices if self.chooses(config) else (self.op,)

    def choice_at(self, config: Config) -> int:
        """The bit of the request's ``data`` where the choice bits start: right above its
        route or hand-off (:attr:`after`)."""
        return config.route_width if self.after == "route" else config.handoff_width

    def opcode(self, config: Config, data: int) -> Opcode:
        """The output's opcode for a request whose ``data`` field is ``data`` (an ``int``;
        negative as the signed field): :meth:`opcodes` indexed by the bits above the route
        or hand-off (:meth:`choice_at`)."""
        ops = self.opcodes(config)
        return ops[(data >> self.choice_at(config)) & (len(ops) - 1)]

    def field(self, name: str, config: Config, payload: dict[str, int]) -> int:
        """The output's ``addr`` or ``addr_b`` (``name``) for a request ``payload`` (its
        ``addr``, ``addr_b`` and ``data``, ``data`` as the signed field) on a core of
        ``config``."""
        source = getattr(self, name)
        if source is None:
            return 0
        if source != "data_act":
            return payload[source]
        if not self.chooses(config):
            return 0
        at, width = finish_act(config)
        return (payload["data"] >> at) & ((1 << width) - 1)


@dataclass(frozen=True)
class Op:
    """One operation: what it reads, computes, writes and emits.

    The accumulator an operation reads or writes is always ``acc[addr]``; a tile register it
    writes is register ``addr`` (:class:`~wafertile.hdl.flit.Reg`).

    Attributes
    ----------
    name : str
        The opcode's name (:class:`~wafertile.hdl.flit.Opcode`'s, for a code it names).
    code : int
        The opcode (0 .. 15).
    operation : bool
        False for a code that is no operation (REPLY: output only); a core consumes it with
        no effect and sets its sticky ``error``, like a code with no row.
    act_read, act_write : str or None
        The payload field (:data:`FIELDS`) whose low bits address the activation the
        operation reads / writes, or None.
    act_weight : str or None
        The payload field addressing a second activation it reads, which takes the weight's
        place as the product's first operand (GRAD: both operands are activations), or None
        (the weight is the low bits of ``data``).
    acc_read : bool
        It reads ``acc[addr]``.
    unit : str or None
        The unit that computes its result (:data:`UNITS`), or None.
    acc_write : str or None
        What it writes to ``acc[addr]``: ``"data"`` (the request's data field), ``"unit"``
        (the unit's result), or None.
    reg_write : bool
        It writes tile register ``addr`` with the low bits of ``data`` (a register of the
        hand-off unit).
    emit : Emit or None
        The flit it emits.
    data : str or None
        What the request's ``data`` field carries (:data:`DATA_KINDS`); for an operation
        whose output goes to the request's route (:attr:`Emit.route`), ``"route"`` or
        ``"handoff"``: how the tile routes the output.
    counts_mac : bool
        It counts as a MAC (``mac_done`` when it changes the accumulator, ``mac_skipped``
        when skipped).
    skips_zero : bool
        It has no effect (no product, no accumulator read or write) when the weight or the
        activation is zero (+0 or -0 in a float core); one that emits its unit's sum emits
        the sum's first operand unchanged.
    option : str or None
        The configuration flag (:data:`OPTIONS`) of the optional unit it needs: it is
        executed only where the flag is set (else the code is unknown: no effect, the sticky
        error): ``"handoff"`` (SET, FINISH, FINISH_BACK), ``"nonlinear"`` (NONLINEAR, MUL,
        MAX).
    function : str or None
        The function its iterative unit runs (one of the unit's ``FUNCTIONS``: MUL's
        ``"mul"``, MAX's ``"max"``, with ``data`` the second operand), or None: an operation
        whose ``data`` is a ``"function"`` (NONLINEAR) runs the unit's function of one
        operand that the low bits of ``data`` number.
    formats : frozenset of str
        The number formats (:data:`FORMATS`) whose core defines it.
    """

    name: str
    code: int
    operation: bool = True
    act_read: str | None = None
    act_write: str | None = None
    act_weight: str | None = None
    acc_read: bool = False
    unit: str | None = None
    acc_write: str | None = None
    reg_write: bool = False
    emit: Emit | None = None
    data: str | None = None
    counts_mac: bool = False
    skips_zero: bool = False
    option: str | None = None
    function: str | None = None
    formats: frozenset[str] = field(default=FORMATS)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"an operation's name must be an identifier, not {self.name!r}")
        if type(self.code) is not int or self.code not in _CODES:
            raise ValueError(f"operation {self.name}: code must be an integer from 0 to "
                             f"{_CODES[-1]}, not {self.code!r}")
        named = Opcode.__members__.get(self.name)
        if named is not None and named.value != self.code:
            raise ValueError(f"operation {self.name}: code {self.code} is "
                             f"{_NAMED.get(self.code, 'no opcode')}")
        for name in ("act_read", "act_write", "act_weight"):
            if getattr(self, name) not in (*FIELDS, None):
                raise ValueError(f"operation {self.name}: {name} must be one of {FIELDS} or "
                                 f"None, not {getattr(self, name)!r}")
        if self.act_read and self.act_write and self.act_read != self.act_write:
            raise ValueError(f"operation {self.name} reads and writes different activations")
        if self.act_weight and not (self.act_read and self.skips_zero and
                                    self.act_weight != self.act_read and not self.act_write):
            raise ValueError(f"operation {self.name}: a second activation is a product's "
                             f"weight: it needs a first activation of another field, zero "
                             f"skipping, and no activation write")
        if self.acc_write not in ("data", "unit", None):
            raise ValueError(f"operation {self.name}: acc_write must be 'data', 'unit' or "
                             f"None, not {self.acc_write!r}")
        if self.data not in (*DATA_KINDS, None):
            raise ValueError(f"operation {self.name}: data must be one of {DATA_KINDS} or "
                             f"None, not {self.data!r}")
        uses_unit = self.acc_write == "unit" or (self.emit is not None and
                                                 self.emit.data == "unit")
        if uses_unit != (self.unit is not None):
            raise ValueError(f"operation {self.name}: a unit is needed exactly when the "
                             f"accumulator or the output takes its result")
        if (self.emit is not None and self.emit.route == "request" and
                self.data != self.emit.after):
            raise ValueError(f"operation {self.name} emits to its request's route: its data "
                             f"must be its output's route or hand-off (the output's after, "
                             f"{self.emit.after!r}), not {self.data!r}")
        if self.emit is not None and self.emit.data == "act" and not self.act_read:
            raise ValueError(f"operation {self.name} emits an activation it does not read")
        if self.emit is not None and self.emit.data == "acc" and not self.acc_read:
            raise ValueError(f"operation {self.name} emits an accumulator it does not read")
        if self.skips_zero and not (self.act_read and (self.data == "weight" or
                                                       self.act_weight)):
            raise ValueError(f"operation {self.name} skips a zero operand: it needs a weight "
                             f"(or a second activation) and an activation read")
        if self.option not in (*OPTIONS, None):
            raise ValueError(f"operation {self.name}: option must be one of {OPTIONS} or "
                             f"None, not {self.option!r}")
        if self.function is not None and (self.unit is None or self.data == "function"):
            raise ValueError(f"operation {self.name}: a function is run by a unit, for an "
                             f"operation whose data is no function number")
        if not self.formats or not set(self.formats) <= FORMATS:
            raise ValueError(f"operation {self.name}: formats must be a nonempty subset of "
                             f"{sorted(FORMATS)}, not {self.formats!r}")
        if not self.operation and any(getattr(self, f.name) != f.default for f in fields(self)
                                      if f.name not in ("name", "code", "operation")):
            raise ValueError(f"{self.name} is no operation: it reads, writes and emits nothing")

    @property
    def opcode(self) -> Opcode | None:
        """The :class:`~wafertile.hdl.flit.Opcode` of :attr:`code`, None for a code it does
        not name or a row of another name (a test's)."""
        op = _NAMED.get(self.code)
        return op if op is not None and op.name == self.name else None

    @property
    def handoff(self) -> bool:
        """It needs the hand-off unit (``option == "handoff"``)."""
        return self.option == "handoff"

    @property
    def act_fields(self) -> tuple[str, ...]:
        """The payload fields of every activation it reads or writes."""
        return tuple(f for f in (self.act_read or self.act_write, self.act_weight) if f)

    @property
    def act_field(self) -> str | None:
        """The payload field that addresses the activation the operation reads or writes."""
        return self.act_read or self.act_write

    @property
    def addr_space(self) -> str | None:
        """What ``addr`` addresses: ``"act"`` (an activation), ``"reg"`` (a tile register),
        ``"acc"`` (an accumulator), or None (nothing: no operation)."""
        if not self.operation:
            return None
        if "addr" in self.act_fields:
            return "act"
        return "reg" if self.reg_write else "acc"

    @property
    def uses_acc(self) -> bool:
        """It reads or writes ``acc[addr]``."""
        return self.acc_read or self.acc_write is not None

    def defined(self, config: Config) -> bool:
        """Whether the core of ``config`` executes it."""
        fmt = "float" if config.is_float else "int"
        return self.operation and fmt in self.formats and (self.option is None or
                                                          getattr(config, self.option))


def _op(opcode: Opcode, **columns: Any) -> Op:
    return Op(opcode.name, opcode.value, **columns)


class OpTable:
    """The operations of a core, in code order (one row per code, names unique).

    Iterating gives the rows in code order; ``table[key]`` is the row of a code, an
    :class:`~wafertile.hdl.flit.Opcode` or a name.

    Raises
    ------
    TypeError
        If a row is not an :class:`Op`.
    ValueError
        If two rows have the same code or name.
    """

    def __init__(self, rows: Iterable[Op]):
        rows = tuple(rows)
        for row in rows:
            if not isinstance(row, Op):
                raise TypeError(f"a table's rows must be Op, not {row!r}")
        for key in ("code", "name"):
            seen: dict[Any, Op] = {}
            for row in rows:
                other = seen.setdefault(getattr(row, key), row)
                if other is not row:
                    raise ValueError(f"operations {other.name} and {row.name} have the same "
                                     f"{key}")
        self._rows = tuple(sorted(rows, key=lambda r: r.code))
        self._by_code = {row.code: row for row in self._rows}
        self._by_name = {row.name: row for row in self._rows}

    def __iter__(self) -> Iterator[Op]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, key: int | str | Opcode) -> Op:
        row = self._by_name.get(key) if isinstance(key, str) else self.get(key)
        if row is None:
            raise KeyError(key)
        return row

    def __repr__(self) -> str:
        return f"OpTable({', '.join(row.name for row in self._rows)})"

    def get(self, code: Any) -> Op | None:
        """The row of ``code`` (an int, an :class:`Opcode`, a numpy integer), or None."""
        try:
            return self._by_code.get(code_of(code))
        except TypeError:
            return None

    def with_rows(self, *rows: Op) -> OpTable:
        """This table with ``rows`` added (a row for a code the table has replaces it)."""
        codes_ = {row.code for row in rows}
        return OpTable([*(r for r in self._rows if r.code not in codes_), *rows])

    def where(self, test: Callable[[Op], bool], config: Config | None = None
              ) -> tuple[Op, ...]:
        """The rows for which ``test`` holds, in code order: of the operations ``config``'s
        core executes (:meth:`legal`), or of every operation without ``config``."""
        rows = self.legal(config) if config is not None else self.operations()
        return tuple(row for row in rows if test(row))

    def operations(self) -> tuple[Op, ...]:
        """The rows that are operations (every format, with and without the hand-off unit)."""
        return tuple(row for row in self._rows if row.operation)

    def legal(self, config: Config) -> tuple[Op, ...]:
        """The operations the core of ``config`` executes; any other code is consumed with no
        effect and sets the sticky ``error`` (SET and FINISH only with ``config.handoff``,
        NONLINEAR, MUL and MAX only with ``config.nonlinear``)."""
        return tuple(row for row in self._rows if row.defined(config))

    def absent(self, config: Config) -> tuple[Op, ...]:
        """The operations of the table that the core of ``config`` does not execute."""
        return tuple(row for row in self.operations() if not row.defined(config))

    def emitting(self, config: Config | None = None) -> tuple[Op, ...]:
        """The operations that emit a flit (of ``config``'s core, if given)."""
        return self.where(lambda row: row.emit is not None, config)

    def units(self, config: Config) -> frozenset[str]:
        """The units the operations of ``config``'s core need (an operation that writes a
        tile register needs the hand-off unit, whose registers they are)."""
        return frozenset({row.unit for row in self.legal(config) if row.unit is not None} |
                         ({"handoff"} if any(row.reg_write for row in self.legal(config))
                          else set()))


#: The operations of wafertile's tile cores (``docs/architecture.md``).
OPS = OpTable([
    _op(Opcode.WRITE_ACT, act_write="addr", data="activation"),
    _op(Opcode.WRITE_ACC, acc_write="data", data="value"),
    _op(Opcode.READ_ACT, act_read="addr", data="route",
        emit=Emit(Opcode.REPLY, "addr", "addr_b", "act")),
    _op(Opcode.READ_ACC, acc_read=True, data="route",
        emit=Emit(Opcode.REPLY, "addr", "addr_b", "acc")),
    _op(Opcode.MAC, act_read="addr_b", acc_read=True, unit="mac", acc_write="unit",
        data="weight", counts_mac=True, skips_zero=True),
    _op(Opcode.ADD, acc_read=True, unit="add", acc_write="unit", data="value"),
    _op(Opcode.SEND, acc_read=True, data="route",
        emit=Emit(Opcode.ADD, "addr_b", "addr", "acc",
                  choices=(Opcode.ADD, Opcode.MUL, Opcode.MAX, Opcode.WRITE_ACC),
                  choice_option="nonlinear")),
    _op(Opcode.REPLY, operation=False),
    _op(Opcode.SET, reg_write=True, data="register", option="handoff"),
    _op(Opcode.FINISH, acc_read=True, unit="handoff", data="handoff", option="handoff",
        emit=Emit(Opcode.WRITE_ACT, "addr_b", "data_act", "unit", after="handoff",
                  choices=(Opcode.WRITE_ACT, Opcode.MAC), choice_option="nonlinear")),
    _op(Opcode.GRAD, act_read="addr_b", act_weight="addr", unit="grad", data="value",
        skips_zero=True, formats=frozenset({"float"}),
        emit=Emit(Opcode.GRAD, "addr", "addr_b", "unit", route="down")),
    _op(Opcode.FINISH_BACK, act_read="addr_b", acc_read=True, unit="backprop",
        data="handoff", option="handoff", formats=frozenset({"float"}),
        emit=Emit(Opcode.WRITE_ACT, "addr_b", None, "unit", after="handoff")),
    _op(Opcode.NONLINEAR, acc_read=True, unit="nonlinear", acc_write="unit", data="function",
        option="nonlinear", formats=frozenset({"float"})),
    _op(Opcode.MUL, acc_read=True, unit="nonlinear", acc_write="unit", data="value",
        option="nonlinear", function="mul", formats=frozenset({"float"})),
    _op(Opcode.MAX, acc_read=True, unit="nonlinear", acc_write="unit", data="value",
        option="nonlinear", function="max", formats=frozenset({"float"})),
])


def legal(config: Config, table: OpTable = OPS) -> tuple[Op, ...]:
    """:meth:`OpTable.legal` of ``table`` (by default :data:`OPS`)."""
    return table.legal(config)


def absent(config: Config, table: OpTable = OPS) -> tuple[Op, ...]:
    """:meth:`OpTable.absent` of ``table`` (by default :data:`OPS`)."""
    return table.absent(config)


def emitting(config: Config | None = None, table: OpTable = OPS) -> tuple[Op, ...]:
    """:meth:`OpTable.emitting` of ``table`` (by default :data:`OPS`)."""
    return table.emitting(config)


def code_of(op: Any) -> int:
    """The code of ``op``: an :class:`Opcode` (or another enumeration member), an :class:`Op`,
    or an integer (numpy's too).

    Raises
    ------
    TypeError
        For anything else.
    """
    if isinstance(op, Op):
        return op.code
    if isinstance(op, py_enum.Enum):
        return op.value
    if type(op) is bool:
        raise TypeError(f"an opcode must be an integer, not {op!r}")
    return operator.index(op)


def codes(rows: Iterable[Op]) -> tuple[int, ...]:
    """The codes of ``rows``, in their order (for ``numpy.isin``)."""
    return tuple(row.code for row in rows)


def matches(op: Any, rows: Iterable[Op | Opcode | int], lead: Any = None) -> Value:
    """Whether the opcode ``op`` (a payload's ``op`` field) is the code of one of ``rows``
    (rows, opcodes or codes): ``(op == a) | (op == b) | ...`` in the order of ``rows`` (0
    for none), or with ``lead`` ``lead | (op == a) | (op == b) | ...``."""
    terms = [Value.cast(op) == code_of(row) for row in rows]
    if lead is not None:
        terms.insert(0, lead)
    return reduce(operator.or_, terms) if terms else Const(0)
