"""The operation table (``hdl/core/ops.py``): its rows and helpers, ``docs/architecture.md``'s
opcode table checked against it, and the extension point: a test adds operations (rows, and a
unit of the numpy model) and everything that reads the table picks them up."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Mux
from amaranth.lib.wiring import Component, In, Out

from wafertile import Config
from wafertile.hdl.core import FpMacCore, MacCore, TileCore
from wafertile.hdl.core.ops import (
    OPS,
    Emit,
    Op,
    OpTable,
    absent,
    code_of,
    codes,
    emitting,
    legal,
)
from wafertile.hdl.flit import Opcode, pack, payload_layout
from wafertile.hdl.generate import verilog_text
from wafertile.sim.models import CoreModel
from wafertile.sim.stimulus import dump, random_stream
from wafertile.sim.vip.coverpoints import CoreCoverModel, core_covergroup

from .conftest import seed_for
from .test_mac_amaranth import _check, simulate

ROOT = Path(__file__).parents[1]

INT = Config(act_depth=16, acc_depth=16)
FLOAT = Config(dtype="fp16", act_depth=64, acc_depth=64)


def _names(rows):
    return [row.name for row in rows]


# -- the table ----------------------------------------------------------------------------------


def test_one_row_per_opcode_in_code_order():
    assert [(row.name, row.code) for row in OPS] == [(op.name, op.value) for op in Opcode]
    assert all(OPS[op] is OPS[op.name] is OPS[op.value] for op in Opcode)
    assert OPS.get(15) is None and OPS.get("x") is None


#: The operations of the nonlinear unit (float tiles with ``nonlinear = true``).
UNIT_OPS = ["NONLINEAR", "MUL", "MAX"]


def test_legal_sets():
    base = ["WRITE_ACT", "WRITE_ACC", "READ_ACT", "READ_ACC", "MAC", "ADD", "SEND"]
    for dtype in ("int8", "int16", "fp16", "bf16"):
        # the float tiles' training operations: GRAD always, FINISH_BACK with the hand-off
        grad = ["GRAD"] if dtype.startswith(("fp", "bf")) else []
        back = ["FINISH_BACK"] if grad else []
        assert _names(legal(Config(dtype=dtype))) == [*base, "SET", "FINISH", *grad, *back]
        assert _names(legal(Config(dtype=dtype, handoff=False))) == [*base, *grad]
        assert _names(absent(Config(dtype=dtype, handoff=False))) == \
            ["SET", "FINISH", *(["GRAD"] if not grad else []), "FINISH_BACK", *UNIT_OPS]
        assert _names(absent(Config(dtype=dtype))) == \
            (UNIT_OPS if grad else ["GRAD", "FINISH_BACK", *UNIT_OPS])
        if grad:  # the nonlinear unit: float tiles only, with the flag
            with_unit = Config(dtype=dtype, nonlinear=True)
            assert _names(legal(with_unit)) == [*base, "SET", "FINISH", *grad, *back,
                                                *UNIT_OPS]
            assert _names(legal(with_unit.replace(handoff=False))) == [*base, *grad,
                                                                       *UNIT_OPS]
            assert OPS.units(with_unit) - OPS.units(Config(dtype=dtype)) == {"nonlinear"}
    assert "REPLY" not in _names(OPS.operations())
    assert [row.option for row in OPS if row.option] == ["handoff"] * 3 + ["nonlinear"] * 3
    assert [row.name for row in OPS if row.handoff] == ["SET", "FINISH", "FINISH_BACK"]


def test_what_emits_reads_and_writes():
    assert _names(emitting(Config())) == ["READ_ACT", "READ_ACC", "SEND", "FINISH"]
    assert _names(emitting()) == ["READ_ACT", "READ_ACC", "SEND", "FINISH", "GRAD",
                                  "FINISH_BACK"]
    assert _names(emitting(Config(handoff=False))) == ["READ_ACT", "READ_ACC", "SEND"]
    assert _names(emitting(Config(dtype="bf16"))) == ["READ_ACT", "READ_ACC", "SEND", "FINISH",
                                                      "GRAD", "FINISH_BACK"]
    assert [row.emit.op for row in emitting(Config())] == [Opcode.REPLY, Opcode.REPLY, Opcode.ADD,
                                                   Opcode.WRITE_ACT]
    assert [row.emit.route for row in emitting(Config(dtype="fp16"))] == \
        ["request"] * 4 + ["down", "request"]
    assert _names(OPS.where(lambda r: r.data == "handoff")) == ["FINISH", "FINISH_BACK"]
    assert _names(OPS.where(lambda r: r.uses_acc)) == ["WRITE_ACC", "READ_ACC", "MAC", "ADD",
                                                       "SEND", "FINISH", "FINISH_BACK",
                                                       *UNIT_OPS]
    assert _names(OPS.where(lambda r: r.counts_mac)) == ["MAC"]
    assert _names(OPS.where(lambda r: r.act_weight is not None)) == ["GRAD"]
    assert OPS["GRAD"].act_fields == ("addr_b", "addr")
    assert {row.name: row.addr_space for row in OPS.operations()} == {
        "WRITE_ACT": "act", "WRITE_ACC": "acc", "READ_ACT": "act", "READ_ACC": "acc",
        "MAC": "acc", "ADD": "acc", "SEND": "acc", "SET": "reg", "FINISH": "acc",
        "GRAD": "act", "FINISH_BACK": "acc", "NONLINEAR": "acc", "MUL": "acc", "MAX": "acc"}
    assert OPS.units(Config()) == {"mac", "add", "handoff"}
    assert OPS.units(Config(handoff=False)) == {"mac", "add"}
    assert OPS.units(Config(dtype="fp16")) == {"mac", "add", "handoff", "grad", "backprop"}


def test_send_picks_its_output_on_cores_with_the_nonlinear_unit():
    """SEND's output (docs/architecture.md): ADD, MUL, MAX or WRITE_ACC by the two data bits
    above the route on a core with the nonlinear unit; ADD on every other core."""
    emit = OPS["SEND"].emit
    picks = (Opcode.ADD, Opcode.MUL, Opcode.MAX, Opcode.WRITE_ACC)
    with_unit = Config(dtype="bf16", nonlinear=True, rows=8, cols=8)
    for cfg in (Config(), Config(dtype="fp16"), Config(dtype="bf16", handoff=False)):
        assert emit.opcodes(cfg) == (Opcode.ADD,)
        assert {emit.opcode(cfg, d) for d in (0, 1 << cfg.route_width, -1)} == {Opcode.ADD}
    assert emit.opcodes(with_unit) == picks
    at = with_unit.route_width
    assert [emit.opcode(with_unit, k << at | (1 << at) - 1) for k in range(4)] == list(picks)
    assert emit.opcode(with_unit, -1) is Opcode.WRITE_ACC       # every bit set
    assert emit.opcode(with_unit, -(1 << 31) | 2 << at) is Opcode.MAX
    # the other outputs but FINISH's have one opcode everywhere
    assert all(len(row.emit.opcodes(with_unit)) == 1 for row in emitting(with_unit)
               if row.name not in ("SEND", "FINISH"))


def test_finish_picks_a_mac_on_cores_with_the_nonlinear_unit():
    """FINISH's output (docs/architecture.md): a WRITE_ACT, or with the bit right above the
    hand-off set a MAC whose addr_b is the act field above the pick and dy bits; on cores
    without the unit a WRITE_ACT with addr_b 0 whatever the bits above the hand-off."""
    emit = OPS["FINISH"].emit
    with_unit = Config(dtype="bf16", nonlinear=True, rows=8, cols=4, act_depth=64)
    at = with_unit.handoff_width
    assert at == 2 * 2 + 3 + with_unit.vc_width           # x0, x1 (4 columns), y (8 rows), vc
    act_at = at + 1 + 3                                     # pick, dy (8 rows)
    for data in (5, 1 << at | 5, 1 << at | 6 << at + 1 | 63 << act_at | 5, -1):
        request = {"addr": 3, "addr_b": 11, "data": data}
        pick = (data >> at) & 1
        assert emit.opcode(with_unit, data) is (Opcode.MAC if pick else Opcode.WRITE_ACT)
        assert emit.field("addr", with_unit, request) == 11
        assert emit.field("addr_b", with_unit, request) == (data >> act_at) & 63
    for cfg in (Config(), Config(dtype="bf16"), Config(dtype="fp16", rows=8, cols=4)):
        request = {"addr": 3, "addr_b": 11, "data": -1}
        assert emit.opcode(cfg, -1) is Opcode.WRITE_ACT
        assert emit.field("addr_b", cfg, request) == 0
    # FINISH_BACK's output has no choices
    assert OPS["FINISH_BACK"].emit.opcodes(with_unit) == (Opcode.WRITE_ACT,)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"choices": (Opcode.ADD, Opcode.MUL, Opcode.MAX)}, "must be 2 or 4 opcodes"),
    ({"choices": (Opcode.MUL, Opcode.ADD)}, "the first its op ADD"),
    ({"choices": (Opcode.ADD, 13)}, "must be 2 or 4 opcodes"),
    ({"choices": (Opcode.ADD, Opcode.MUL), "route": "down"}, "goes to the route"),
    ({"choices": (Opcode.ADD, Opcode.MUL), "choice_option": "fast"},
     "choice_option must be one of"),
])
def test_bad_output_choices_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Emit(Opcode.ADD, "addr_b", "addr", "acc", **kwargs)


def test_helpers():
    assert code_of(Opcode.SEND) == 6 == code_of(np.int64(6)) == code_of(OPS["SEND"])
    with pytest.raises(TypeError):
        code_of(True)
    assert codes(emitting(Config())) == (2, 3, 6, 9)
    assert codes(emitting()) == (2, 3, 6, 9, 10, 11)


@pytest.mark.parametrize(("columns", "message"), [
    ({"name": "MAC", "code": 5}, "code 5 is Opcode.ADD"),
    ({"name": "MAC", "code": 15}, "code 15 is no opcode"),
    ({"name": "X", "code": 16}, "code must be an integer from 0 to 15"),
    ({"name": "X", "code": 15, "acc_write": "unit"}, "a unit is needed"),
    ({"name": "X", "code": 15, "unit": "add"}, "a unit is needed"),
    ({"name": "X", "code": 15, "data": "value",
      "emit": Emit(Opcode.REPLY, "addr", None, "acc"), "acc_read": True}, "route or hand-off"),
    ({"name": "X", "code": 15, "data": "route",
      "emit": Emit(Opcode.REPLY, "addr", None, "act")}, "an activation it does not read"),
    ({"name": "X", "code": 15, "skips_zero": True}, "and an activation read"),
    ({"name": "X", "code": 15, "operation": False, "acc_read": True}, "no operation"),
    ({"name": "X", "code": 15, "formats": frozenset({"fixed"})}, "formats"),
    ({"name": "X", "code": 15, "option": "fast"}, "option must be one of"),
])
def test_bad_rows_are_refused(columns, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Op(**columns)


def test_tables_refuse_clashes():
    with pytest.raises(ValueError, match="same code"):
        OpTable([*OPS, Op("X", 15), Op("Y", 15)])
    with pytest.raises(ValueError, match="same name"):
        OpTable([*OPS.where(lambda r: r.code < 13), Op("X", 15), Op("X", 14)])
    with pytest.raises(TypeError):
        OpTable([*OPS, "MAC"])


# -- docs/architecture.md's opcode table ---------------------------------------------------------


def _doc_table() -> list[list[str]]:
    """The rows of the opcode table of docs/architecture.md (op, value, effect, output)."""
    lines = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| op | value | effect | output |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _output_fields(text: str) -> dict[str, str]:
    """``{addr: addr_b, data: acc[addr]}`` -> {"addr": "addr_b", "data": "acc[addr]"};
    a bare ``addr`` is ``addr: addr``."""
    body = re.search(r"\{(.*)\}", text).group(1)
    out = {}
    for part in body.split(","):
        key, _, value = part.partition(":")
        out[key.strip()] = value.strip() or key.strip()
    return out


def test_docs_opcode_table_agrees_with_the_table():
    doc = _doc_table()
    free = [code for code in range(16) if OPS.get(code) is None]
    *named, rest = doc
    assert [(cells[0], cells[1]) for cells in named] == \
        [(f"`{row.name}`", str(row.code)) for row in OPS], "the rows, in code order"
    span = f"{free[0]} .. {free[-1]}" if len(free) > 1 else f"{free[0]}"
    assert rest[0] == span and free == list(range(free[0], 16)), "the codes with no operation"
    assert "not an operation" in rest[2] or "not operations" in rest[2]
    for row, (_, _, effect, output) in zip(OPS, named, strict=True):
        where = f"docs/architecture.md, {row.name}"
        text = f"{effect} {output}"
        if not row.operation:
            assert "not an operation" in effect, where
            continue
        assert ("`handoff = false`" in effect) == row.handoff, where
        assert ("`nonlinear = true`" in effect) == (row.option == "nonlinear"), where
        assert ("skipped" in effect) == row.skips_zero, where
        assert ("acc[addr]" in text) == row.uses_acc, where
        assert ("tile register" in effect) == row.reg_write, where
        for name in row.act_fields:
            assert f"act[{name}]" in text, where
        if row.act_write:
            assert f"`act[{row.act_write}] = data" in effect, where
        if row.acc_write == "data":
            assert "`acc[addr] = data`" in effect, where
        elif row.acc_write == "unit" and row.unit == "nonlinear":  # the iterative unit
            call = {None: "nonlinear(acc[addr])", "mul": "fp32(acc[addr] * data)",
                    "max": "max(acc[addr], data)"}[row.function]
            assert f"`acc[addr] = {call}`" in effect, where
            assert "on the nonlinear unit" in effect or row.function is None, where
        elif row.acc_write == "unit":
            assert "`acc[addr] +=" in effect, where
        if row.emit is None:
            assert output == "—", where
            continue
        assert output.startswith(f"{row.emit.op.name} `{{"), where
        fields = _output_fields(output)
        for name in ("addr", "addr_b"):
            assert fields.get(name) == getattr(row.emit, name), (where, name)
        unit = "requant(" if row.unit == "handoff" else f"{row.unit}("
        source = {"act": "act[", "acc": "acc[", "unit": unit}[row.emit.data]
        assert fields["data"].startswith(source), where
        assert ("rectangle" in output) == (row.data == "handoff"), where
        assert ("the tile below" in output) == (row.emit.route == "down"), where
        assert ("float tiles only" in effect) == (row.formats == {"float"}), where


# -- the cores -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [INT, FLOAT], ids=["int16", "fp16"])
def test_verilog_does_not_depend_on_the_order_a_table_is_built_in(cfg):
    shuffled = OpTable(reversed(list(OPS)))
    core = FpMacCore if cfg.is_float else MacCore
    assert verilog_text("mac", cfg, core(cfg, shuffled)) == verilog_text("mac", cfg)


def test_cores_refuse_what_they_cannot_execute():
    with pytest.raises(TypeError, match="ops must be an OpTable"):
        MacCore(INT, list(OPS))
    table = OPS.with_rows(MAX)
    for cfg in (INT, FLOAT):
        with pytest.raises(ValueError, match="has no unit 'max' \\(operation ACC_MAX\\)"):
            TileCore(cfg, table)


# -- the extension point: operations added by a test ---------------------------------------------

#: A dummy operation that the existing units and paths carry: REPLY with ``act[addr_b]``. It
#: and ADD_B take the codes of MUL and MAX (operations of the float tiles' nonlinear unit),
#: which a test's table may give to rows of other names.
READ_ACT_B = Op("READ_ACT_B", 13, act_read="addr_b", data="route",
                emit=Emit(Opcode.REPLY, "addr", "addr_b", "act"))
#: Another: ``acc[addr] += data`` under a second code (the ADD unit).
ADD_B = Op("ADD_B", 14, acc_read=True, unit="add", acc_write="unit", data="value")
#: One with a unit of its own: ``acc[addr] = max(acc[addr], data)``.
MAX = Op("ACC_MAX", 15, acc_read=True, unit="max", acc_write="unit", data="value")
DUMMIES = OPS.with_rows(READ_ACT_B, ADD_B)


def _acc_max(model: CoreModel, o) -> int:
    """The ``max`` unit of the numpy model (integer accumulators)."""
    return max(o.acc, o.data)


def test_added_rows_are_legal_and_counted():
    assert _names(DUMMIES.legal(INT))[-2:] == ["READ_ACT_B", "ADD_B"]
    assert _names(DUMMIES.emitting(Config(handoff=False))) == ["READ_ACT", "READ_ACC", "SEND",
                                                              "READ_ACT_B"]
    assert _names(DUMMIES.where(lambda r: r.uses_acc))[-1] == "ADD_B"
    assert len(DUMMIES) == len(OPS) and "MUL" not in _names(DUMMIES)
    assert DUMMIES[13].opcode is None and OPS[13].opcode is Opcode.MUL


def test_the_model_executes_added_rows_and_units():
    flits = [{"op": Opcode.WRITE_ACT, "addr": 3, "data": -7},
             {"op": Opcode.WRITE_ACC, "addr": 1, "data": 40},
             {"op": 13, "addr": 5, "addr_b": 3, "data": 77},
             {"op": 14, "addr": 1, "data": 2},
             {"op": 15, "addr": 1, "data": 100},
             {"op": 15, "addr": 1, "data": -5},
             {"op": Opcode.READ_ACC, "addr": 1}]
    result = CoreModel(INT, OPS.with_rows(READ_ACT_B, ADD_B, MAX), {"max": _acc_max}).run(flits)
    assert result.outputs == [{"op": Opcode.REPLY, "addr": 5, "addr_b": 3, "data": -7},
                              {"op": Opcode.REPLY, "addr": 1, "addr_b": 0, "data": 100}]
    assert result.tags == [77, 0] and not result.error
    # the default table does not know them: no effect, the sticky error
    plain = CoreModel(INT).run(flits)
    assert plain.error and plain.outputs == [{"op": Opcode.REPLY, "addr": 1, "addr_b": 0,
                                              "data": 40}]
    with pytest.raises(ValueError, match="no unit 'max'"):
        CoreModel(INT, OPS.with_rows(MAX))


def test_random_streams_and_coverage_pick_added_rows_up():
    rng = np.random.default_rng(1)
    flits = random_stream(INT, rng, 2000, 0.5, ops=DUMMIES)
    ops = {code_of(f["op"]) for f in flits}
    assert {13, 14} <= ops and ops <= set(codes(DUMMIES.legal(INT)))
    group = core_covergroup(DUMMIES, registry={})
    model = CoreCoverModel(INT, DUMMIES, group)
    layout = payload_layout(INT)
    for f in flits[:400]:
        model.step(i_valid=True, i_ready=True, payload=pack(layout, f), o_valid=False,
                   o_ready=True)
    assert group.hits["op"]["READ_ACT_B"] and group.hits["op"]["ADD_B"]
    # a hazard is crossed for the operation that uses an accumulator, not for the other
    bins = group.items()["op x hazard x dtype"]
    assert "ADD_B x 1 x int16" in bins and "ADD_B x none x int16" not in bins
    assert "READ_ACT_B x none x int16" in bins and "READ_ACT_B x 1 x int16" not in bins


@pytest.mark.parametrize("cfg", [INT, Config(dtype="int8", overflow="saturate", act_depth=16,
                                               acc_depth=32), FLOAT],
                         ids=["int16", "int8sat", "fp16"])
def test_the_cores_execute_added_rows(request, cfg):
    """Rows that the existing units and paths carry run on the cores (Amaranth's simulator)
    with no edit outside the table: legality, activation addressing, accumulator writes,
    the ADD unit, the output and its data, the float core's hazard, all from the table."""
    seed = seed_for(request)
    directed = [{"op": Opcode.WRITE_ACT, "addr": 3, "data": 5},
                {"op": 13, "addr": 1, "addr_b": 3, "data": 9},
                {"op": Opcode.WRITE_ACC, "addr": 2, "data": 0},
                {"op": 14, "addr": 2, "data": 4}, {"op": 14, "addr": 2, "data": 4},
                {"op": Opcode.READ_ACC, "addr": 2}]
    flits = directed + random_stream(cfg, np.random.default_rng(seed), 300, 0.5,
                                     ops=DUMMIES) + dump(cfg)
    got = simulate(cfg, flits, seed=seed, idle=0.2, stall=0.3, ops=DUMMIES)
    _check(cfg, flits, got, DUMMIES)
    assert not got["error"]
    assert got["outputs"][0] == {"op": Opcode.REPLY, "addr": 1, "addr_b": 3, "data": 5}
    if not cfg.is_float:
        assert got["outputs"][1] == {"op": Opcode.REPLY, "addr": 2, "addr_b": 0, "data": 8}


class AccMax(Component):
    """A trivial accumulator unit (the test's, :mod:`wafertile.hdl.core.units`):
    ``o = max(a, b)`` of the words as signed integers; ``latency`` 0 (the integer core's) or
    1 (the float core's: a register loaded while ``en``)."""

    kind = "acc"

    def __init__(self, config):
        width = 32 if config.is_float else config.acc_width
        super().__init__({"a": In(width), "b": In(width), "en": In(1), "o": Out(width)})

    def elaborate(self, platform):
        m = Module()
        bigger = Mux(self.a.as_signed() > self.b.as_signed(), self.a, self.b)
        if self.latency:
            with m.If(self.en):
                m.d.sync += self.o.eq(bigger)
        else:
            m.d.comb += self.o.eq(bigger)
        return m


class AccMaxInt(AccMax):
    latency = 0


class AccMaxFloat(AccMax):
    latency = 1


@pytest.mark.parametrize("cfg", [INT, Config(dtype="int8", overflow="saturate", act_depth=16,
                                               acc_depth=32), FLOAT],
                         ids=["int16", "int8sat", "fp16"])
def test_the_cores_execute_an_added_unit(request, cfg):
    """A row with a unit of its own (ACC_MAX) and the unit's class run on the cores with no
    edit outside the table and the unit: the decoder, the control word, the accumulator
    write and the float core's hazard come from the row, the result from the unit."""
    seed = seed_for(request)
    table = OPS.with_rows(MAX, ADD_B)
    unit = AccMaxFloat if cfg.is_float else AccMaxInt
    directed = [{"op": Opcode.WRITE_ACC, "addr": 1, "data": 40},
                {"op": 15, "addr": 1, "data": 100}, {"op": 15, "addr": 1, "data": -5},
                {"op": Opcode.READ_ACC, "addr": 1}, {"op": 15, "addr": 1, "data": 300},
                {"op": 14, "addr": 1, "data": 1}, {"op": Opcode.READ_ACC, "addr": 1}]
    flits = directed + random_stream(cfg, np.random.default_rng(seed), 300, 0.5,
                                     ops=table) + dump(cfg)
    assert 15 in {code_of(f["op"]) for f in flits[len(directed):]}
    got = simulate(cfg, flits, seed=seed, idle=0.2, stall=0.3, ops=table,
                   units={"max": unit})
    _check(cfg, flits, got, table, {"max": _acc_max})
    assert not got["error"]
    assert got["outputs"][0]["data"] == 100
    if not cfg.is_float:
        assert got["outputs"][1]["data"] == 301
    # the wrong latency for the core is refused, naming the unit
    other = AccMaxInt if cfg.is_float else AccMaxFloat
    with pytest.raises(ValueError, match=f"unit 'max' \\({other.__name__}\\) has latency "):
        TileCore(cfg, table, {"max": other})


def test_register_writes_need_the_handoff_unit():
    """A row that writes a tile register needs the hand-off unit (its registers)."""
    only_set = OpTable(row for row in OPS if row.name != "FINISH")
    assert only_set.units(Config()) == {"mac", "add", "handoff"}
