"""Flit ("wavelet") format: the opcode, the operation payload, and a Python codec.

A flit is one word that carries an operation for a tile. This module is the single
definition of its layout: the hardware uses the :class:`~amaranth.lib.data.StructLayout`
objects, the testbenches and host tools use :func:`pack` / :func:`unpack` on the same
layouts, and ``manifest.json`` is made by :func:`describe`. Fields are packed from the least
significant bit upwards in the order listed.

Payload fields (see ``docs/architecture.md`` for the meaning of every opcode):

========  =====================  ==========================================================
field     width                  meaning
========  =====================  ==========================================================
op        4                      :class:`Opcode`
addr      ``addr_width``         accumulator address (activation address for the ACT ops)
addr_b    ``addr_width``         activation address of a MAC; target address of a SEND
data      ``acc_width`` signed   weight (MAC, low ``data_width`` bits), activation
                                 (WRITE_ACT, low ``data_width`` bits), addend (ADD),
                                 value (WRITE_ACC, REPLY)
========  =====================  ==========================================================

With a floating-point ``dtype`` the layout is the same and ``data`` carries raw bits: FP16 /
BF16 words in bits 15:0 (weights, activations), FP32 words in all 32 bits (ADD, WRITE_ACC,
REPLY of an accumulator); ``manifest.json``'s ``number_format`` says which (``docs/flit.md``).
"""

from __future__ import annotations

import enum as py_enum
import functools
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np
from amaranth.hdl import Shape, ShapeCastable, signed, unsigned
from amaranth.lib import data, enum

from ..config import Config

__all__ = ["MESH_PORTS", "MULT_WIDTH", "Opcode", "Port", "Reg", "decode_handoff", "decode_route",
           "describe", "encode_handoff", "encode_route", "field_slice", "finish_act",
           "finish_layout", "flit_layout", "handoff_layout", "header_layout", "leaf_names",
           "pack", "pack_columns", "payload_layout", "route_layout", "unpack", "unpack_columns",
           "words_per_flit"]


class Opcode(enum.Enum, shape=4):
    """Operation carried by a flit (``docs/architecture.md``)."""

    #: ``act[addr] = data`` (low ``data_width`` bits).
    WRITE_ACT = 0
    #: ``acc[addr] = data``.
    WRITE_ACC = 1
    #: Reply with ``act[addr]`` (sign-extended) as a REPLY flit.
    READ_ACT = 2
    #: Reply with ``acc[addr]`` as a REPLY flit.
    READ_ACC = 3
    #: ``acc[addr] += weight * act[addr_b]``, weight = low ``data_width`` bits of data.
    #: Skipped (no multiply, no write) when the weight or the activation is zero.
    MAC = 4
    #: ``acc[addr] += data`` (on-fabric reduction of partial sums).
    ADD = 5
    #: Emit an ADD flit ``{addr: addr_b, data: acc[addr]}`` (forward a partial sum).
    SEND = 6
    #: A reply (output only): ``{addr, addr_b, data}`` echo the request and carry the word.
    REPLY = 7
    #: Write tile register ``addr`` (:class:`Reg`) with ``data`` (the requantization of
    #: FINISH, per layer or per output).
    SET = 8
    #: Finish an output: ``act = requant(acc[addr])`` (multiplier, rounding right shift,
    #: optional ReLU, saturation to ``data_width``), sent as a WRITE_ACT ``{addr: addr_b,
    #: data: act}`` to the tiles of the rectangle in ``data`` (:func:`handoff_layout`); on a
    #: float tile with the nonlinear unit, a MAC ``{addr: addr_b, addr_b: act field, data:
    #: act}`` instead where the ``pick`` bit is set, and the rectangle's rows ``y .. y + dy``
    #: (:func:`finish_layout`).
    FINISH = 9
    #: Float tiles (training, ``docs/training.md``): emit a GRAD ``{addr, addr_b, data:
    #: data + act[addr] * act[addr_b]}`` (FP32 ``data``; unchanged when either activation is
    #: zero) to the tile below in the same column, or out of the south edge from the last row.
    GRAD = 10
    #: Float tiles (training): finish an input gradient, ``g = to_half(acc[addr])`` if
    #: ``act[addr_b] > 0`` else +0, sent as a WRITE_ACT ``{addr: addr_b, data: g}`` to the
    #: rectangle in ``data``, as FINISH.
    FINISH_BACK = 11
    #: Float tiles with the nonlinear unit (``nonlinear = true``, ``docs/nonlinear.md``):
    #: ``acc[addr] = f(acc[addr])`` in FP32, ``f`` by the low 3 bits of ``data``: 0 exp,
    #: 1 reciprocal, 2 reciprocal square root, 3 GELU, 4 GELU's derivative (5 to 7 as 4).
    NONLINEAR = 12
    #: Float tiles with the nonlinear unit: ``acc[addr] = fp32(acc[addr] * data)`` (FP32
    #: ``data``), on the unit.
    MUL = 13
    #: Float tiles with the nonlinear unit: ``acc[addr] = max(acc[addr], data)`` (FP32; NaN if
    #: either is NaN, of equal values the accumulator), on the unit.
    MAX = 14


class Reg(enum.Enum, shape=2):
    """The tile registers that SET writes (``addr``); reset values in brackets."""

    #: requantization multiplier, 0 .. 2**MULT_WIDTH - 1 [1]
    MULT = 0
    #: requantization right shift, 0 .. acc_width + MULT_WIDTH - 1 [0]
    SHIFT = 1
    #: 1: ReLU before saturation [0]
    RELU = 2


#: Bits of the requantization multiplier (unsigned): it fits the data field of the smallest
#: accumulator (16 bits signed).
MULT_WIDTH = 15


class Port(enum.Enum, shape=3):
    """The five ports of a router, and the port a flit leaves the fabric by (``exit``).

    The one numbering of ports in wafertile: router members ``in_<letter>`` / ``out_<letter>``,
    route masks (bit ``p`` = port ``p``), the header's ``exit`` field, the NoC model and the
    testbenches all use it. As an ``exit``: ``LOCAL`` delivers to the tile;
    ``NORTH``/``EAST``/``SOUTH``/``WEST`` make the tiles of the destination rectangle that lie
    on that edge of the array send the flit out of the array through their edge port instead
    (a reply to the host on the west edge of row ``y``: rectangle ``x0 = x1 = 0, y0 = y1 = y``,
    exit ``WEST``); tiles of the rectangle not on that edge deliver locally.
    """

    LOCAL = 0
    NORTH = 1
    EAST = 2
    SOUTH = 3
    WEST = 4

    @property
    def letter(self) -> str:
        """``"l"``, ``"n"``, ``"e"``, ``"s"`` or ``"w"``: the port's name in member and
        Verilog port names (``in_w``, ``w_in__flit``)."""
        return "lnesw"[self.value]

    @classmethod
    def from_letter(cls, letter: str) -> Port:
        """The port named ``letter`` (``"l"``, ``"n"``, ``"e"``, ``"s"``, ``"w"``)."""
        index = "lnesw".find(letter) if isinstance(letter, str) and len(letter) == 1 else -1
        if index < 0:
            raise ValueError(f"port must be one of l, n, e, s, w, not {letter!r}")
        return cls(index)

    @property
    def opposite(self) -> Port:
        """The port facing this one across a link (``LOCAL`` for ``LOCAL``)."""
        return self if self is Port.LOCAL else Port((self.value + 1) % 4 + 1)

    @property
    def step(self) -> tuple[int, int]:
        """(dx, dy) from a tile to the neighbour this port leads to (y grows southwards)."""
        return {Port.LOCAL: (0, 0), Port.NORTH: (0, -1), Port.EAST: (1, 0),
                Port.SOUTH: (0, 1), Port.WEST: (-1, 0)}[self]


#: The four ports that lead to a neighbour or off the array, in port order.
MESH_PORTS = (Port.NORTH, Port.EAST, Port.SOUTH, Port.WEST)

#: Fields that are an enumeration rather than a plain number (the width comes from Config).
_ENUM_FIELDS = {"op": Opcode, "exit": Port}


def _layout(fields: Mapping[str, int], signed_fields: tuple[str, ...] = ()) -> data.StructLayout:
    """The struct of ``fields`` (name -> width), one object per distinct set of fields: the
    layouts of a configuration are made again and again on the host's hot paths (a hand-off's
    ``data`` per FINISH), and :func:`_leaves` caches per layout object."""
    return _struct(tuple(fields.items()), tuple(signed_fields))


@functools.cache
def _struct(fields: tuple[tuple[str, int], ...], signed_fields: tuple[str, ...]
            ) -> data.StructLayout:
    out: dict[str, Any] = {}
    for name, width in fields:
        kind = _ENUM_FIELDS.get(name)
        if kind is not None:
            if Shape.cast(kind).width != width:  # pragma: no cover - a Config/enum mismatch
                raise AssertionError(f"field {name!r} is {width} bits, {kind.__name__} "
                                     f"{Shape.cast(kind).width}")
            out[name] = kind
        else:
            out[name] = signed(width) if name in signed_fields else unsigned(width)
    return data.StructLayout(out)


def payload_layout(config: Config) -> data.StructLayout:
    """The operation payload of a flit for ``config`` (fields: :attr:`Config.payload_fields`).

    ``op`` is an :class:`Opcode`; ``addr`` the accumulator address (activation address for the
    ACT ops); ``addr_b`` the activation address of a MAC, the target address of a SEND;
    ``data`` (signed) the weight (MAC, low ``data_width`` bits), activation (WRITE_ACT),
    addend (ADD), value (WRITE_ACC, REPLY), or the output's route (READ, SEND:
    :func:`route_layout`).
    """
    return _layout(config.payload_fields, signed_fields=("data",))


def header_layout(config: Config) -> data.StructLayout:
    """The routing header of a flit for ``config`` (see ``docs/flit.md``).

    Destination rectangle ``x0..x1`` (columns, 0 = west) by ``y0..y1`` (rows, 0 = north),
    inclusive; a unicast is a 1 x 1 rectangle. ``vc`` is the virtual channel the flit travels
    on from injection to delivery; ``exit`` is a :class:`Port`.
    """
    return _layout(config.header_fields)


def flit_layout(config: Config) -> data.StructLayout:
    """A whole single-flit packet: ``header`` (LSBs) then ``payload``."""
    return data.StructLayout({
        "header": header_layout(config),
        "payload": payload_layout(config),
    })


def route_layout(config: Config) -> data.StructLayout:
    """Where a tile sends the output of a READ or SEND: carried in the low bits of the
    request's ``data`` field (fields: :attr:`Config.route_fields`).

    A READ's reply and a SEND's ADD flit go to tile (``x``, ``y``) on virtual channel ``vc``,
    leaving the array through edge port ``exit`` if that tile is on that edge (a reply to the
    host on the west edge of row ``y``: ``x = 0, exit = WEST``), else delivered to the tile.
    """
    return _layout(config.route_fields)


def handoff_layout(config: Config) -> data.StructLayout:
    """Where a FINISH sends its activation: carried in the low bits of its ``data`` field
    (fields: :attr:`Config.handoff_fields`): tiles ``x0 .. x1`` of row ``y``, on VC ``vc``."""
    return _layout(config.handoff_fields)


def finish_layout(config: Config) -> data.StructLayout:
    """What a FINISH carries in its ``data`` field on a float tile with the nonlinear unit
    (fields: :attr:`Config.finish_fields`): its hand-off (:func:`handoff_layout`), then
    ``pick`` (its output: 0 a WRITE_ACT of the activation, 1 a MAC whose weight is the
    activation), ``dy`` (the rectangle is rows ``y .. y + dy``) and ``act`` (the MAC's
    activation address, its ``addr_b``)."""
    return _layout(config.finish_fields)


def finish_act(config: Config) -> tuple[int, int]:
    """``(offset, width)`` of the ``act`` field in a FINISH's ``data`` (:func:`finish_layout`):
    where a MAC output's activation address sits."""
    return field_slice(finish_layout(config), "act")


def encode_handoff(config: Config, *, x0: int, x1: int, y: int, vc: int, dy: int = 0,
                   mac: bool = False, act: int = 0) -> int:
    """The ``data`` field of a FINISH whose activation goes to tiles ``x0 .. x1`` of rows
    ``y .. y + dy`` on VC ``vc`` (:func:`handoff_layout`); with ``mac``, as a MAC's weight on
    activation ``act`` of each of those tiles (:func:`finish_layout`).

    Raises
    ------
    ValueError
        For ``dy``, ``mac`` or ``act`` on a core whose FINISH has no such fields (without
        the nonlinear unit), or a rectangle past the array.
    """
    fields = {"x0": x0, "x1": x1, "y": y, "vc": vc}
    if not (config.handoff and config.nonlinear):
        if dy or mac or act:
            raise ValueError("a FINISH's rows, MAC output and activation address need a "
                             "float tile with the nonlinear unit (nonlinear = true)")
        return pack(handoff_layout(config), fields)
    if not (0 <= y <= y + dy < config.rows and 0 <= x0 <= x1 < config.cols):
        raise ValueError(f"a FINISH's rectangle x {x0} .. {x1}, y {y} .. {y + dy} is not "
                         f"in the {config.rows} x {config.cols} array")
    word = pack(finish_layout(config), {**fields, "pick": int(mac), "dy": dy, "act": act})
    return word - (1 << config.acc_width) if word >> (config.acc_width - 1) else word  # signed


def decode_handoff(config: Config, data_field: int) -> dict[str, Any]:
    """The hand-off in the ``data`` field of a FINISH (its low :attr:`Config.handoff_width`
    bits; on a float tile with the nonlinear unit also ``pick``, ``dy`` and ``act``:
    :func:`finish_layout`)."""
    if config.handoff and config.nonlinear:
        width = sum(config.finish_fields.values())
        return unpack(finish_layout(config), data_field & ((1 << width) - 1))
    return unpack(handoff_layout(config), data_field & ((1 << config.handoff_width) - 1))


def encode_route(config: Config, *, x: int, y: int, exit: Port | int = Port.LOCAL,
                 vc: int) -> int:
    """The ``data`` field of a READ or SEND whose output goes to ``route``
    (:func:`route_layout`), as a non-negative integer (it fits ``acc_width``: Config checks)."""
    return pack(route_layout(config), {"x": x, "y": y, "exit": exit, "vc": vc})


def decode_route(config: Config, data_field: int) -> dict[str, Any]:
    """The route in the ``data`` field of a READ or SEND (its low :attr:`Config.route_width`
    bits; the tile ignores the others, but on a float tile with the nonlinear unit the two
    right above them pick a SEND's output opcode: :meth:`~.core.ops.Emit.opcode`)."""
    return unpack(route_layout(config), data_field & ((1 << config.route_width) - 1))


def _fields(layout: data.StructLayout, prefix: str = ""):
    """Yield (dotted name, shape, offset) for every leaf field, LSB first."""
    for name, field in sorted(layout, key=lambda item: item[1].offset):
        full = f"{prefix}{name}"
        if isinstance(field.shape, data.StructLayout):
            for sub, shape, offset in _fields(field.shape, f"{full}."):
                yield sub, shape, field.offset + offset
        else:
            yield full, field.shape, field.offset


def _is_enum(shape: Any) -> bool:
    return isinstance(shape, type) and issubclass(shape, py_enum.Enum)


def _plain(shape: Any) -> Shape:
    return Shape.cast(shape.as_shape() if isinstance(shape, ShapeCastable) else shape)


def describe(layout: data.StructLayout) -> list[dict[str, Any]]:
    """Every leaf field as ``{name, offset, width, signed[, values]}``, LSB first."""
    out = []
    for name, shape, offset in _fields(layout):
        plain = _plain(shape)
        entry: dict[str, Any] = {"name": name, "offset": offset, "width": plain.width,
                                 "signed": plain.signed}
        if _is_enum(shape):
            entry["values"] = {member.name: member.value for member in shape}
        out.append(entry)
    return out


def _lookup(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = values
    for part in path:
        try:
            node = node[part]
        except (KeyError, TypeError, IndexError):
            return 0
    return node


# id(layout) -> (layout, leaves); the layout is kept so that its id is never reused.
_LEAVES: dict[int, tuple[data.StructLayout, list]] = {}


def _leaves(layout: data.StructLayout) -> list[tuple[str, Any, int, Shape, int, int, tuple]]:
    """(name, shape, offset, plain shape, min, max, path) of every leaf field, computed once
    per layout object (packing is on the host's hot path: one call per flit)."""
    cached = _LEAVES.get(id(layout))
    if cached is None:
        out = []
        for name, shape, offset in _fields(layout):
            plain = _plain(shape)
            lo = -(1 << (plain.width - 1)) if plain.signed else 0
            hi = (1 << (plain.width - 1)) - 1 if plain.signed else (1 << plain.width) - 1
            out.append((name, shape, offset, plain, lo, hi, tuple(name.split("."))))
        cached = _LEAVES[id(layout)] = (layout, out)
    return cached[1]


def field_slice(layout: data.StructLayout, name: str) -> tuple[int, int]:
    """``(offset, width)`` of the leaf field ``name`` (dotted: ``"header.vc"``) in ``layout``,
    for reading one field of many words fast: ``(word >> offset) & ((1 << width) - 1)``.

    Raises
    ------
    ValueError
        If ``layout`` has no such leaf field.
    """
    for leaf, _shape, offset, plain, *_ in _leaves(layout):
        if leaf == name:
            return offset, plain.width
    raise ValueError(f"layout has no field {name!r} (fields: "
                     f"{', '.join(leaf[0] for leaf in _leaves(layout))})")


def pack(layout: data.StructLayout, values: Mapping[str, Any]) -> int:
    """Pack nested field values into an integer. Missing fields are zero.

    Raises
    ------
    ValueError
        If a value does not fit its field (nothing is truncated), or a key names no field.
    """
    leaves = _leaves(layout)
    _check_keys(values, {leaf[0] for leaf in leaves}, "")
    word = 0
    for name, shape, offset, plain, lo, hi, path in leaves:
        value = _lookup(values, path)
        if _is_enum(shape):
            if isinstance(value, str):
                try:
                    value = shape[value]
                except KeyError:
                    raise ValueError(f"flit field {name!r} must be one of "
                                     f"{', '.join(m.name for m in shape)}, not {value!r}") from None
            if isinstance(value, py_enum.Enum):
                value = shape(value).value
            # a number that names no member is still a field value (a core flags it)
        if type(value) is bool or not isinstance(value, int):
            try:
                value = operator.index(value)  # numpy integers; never a float, never rounded
            except TypeError:
                raise ValueError(f"flit field {name!r} must be an integer, not {value!r}") from None
        if not lo <= value <= hi:
            kind = "signed" if plain.signed else "unsigned"
            raise ValueError(f"flit field {name!r} must be from {lo} to {hi} "
                             f"({plain.width}-bit {kind}), not {value}")
        word |= (value & ((1 << plain.width) - 1)) << offset
    return word


def _check_keys(values: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key, value in values.items():
        full = f"{prefix}{key}"
        if type(value) is dict or (not isinstance(value, int) and isinstance(value, Mapping)):
            _check_keys(value, known, f"{full}.")
        elif full not in known:
            raise ValueError(f"flit has no field {full!r} (fields: {', '.join(sorted(known))})")


def unpack(layout: data.StructLayout, word: int) -> dict[str, Any]:
    """Unpack an integer into nested field values (enum fields become members; a number that
    names no member stays a number)."""
    out: dict[str, Any] = {}
    for name, shape, offset, plain, _, _, _ in _leaves(layout):
        value = (word >> offset) & ((1 << plain.width) - 1)
        if plain.signed and value >> (plain.width - 1):
            value -= 1 << plain.width
        if _is_enum(shape) and value in shape._value2member_map_:
            value = shape(value)
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


# -- many flits at once (numpy) -----------------------------------------------------------------


def leaf_names(layout: data.StructLayout) -> list[str]:
    """The dotted names of the leaf fields of ``layout``, LSB first (``"header.x0"``, ...)."""
    return [leaf[0] for leaf in _leaves(layout)]


def words_per_flit(layout: data.StructLayout) -> int:
    """32-bit words of a packed ``layout`` (:func:`pack_columns`)."""
    return (Shape.cast(layout).width + 31) // 32


def _column(name: str, values: Any, n: int) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype == object:  # enum members
        v = np.array([x.value if isinstance(x, py_enum.Enum) else x for x in v.ravel()])
    if v.dtype == bool or not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"flit field {name!r} must be integers, not {v.dtype}")
    if v.ndim == 0:
        v = np.full(n, v, dtype=np.int64)
    if v.shape != (n,):
        raise ValueError(f"flit field {name!r} has {v.shape[0] if v.ndim else 1} values, "
                         f"the other fields {n}")
    return v.astype(np.int64, copy=False)


def pack_columns(layout: data.StructLayout, columns: Mapping[str, Any]) -> np.ndarray:
    """Pack many flits at once: ``columns`` maps dotted leaf names (:func:`leaf_names`) to
    arrays of one value per flit (or scalars); missing fields are zero. Returns a
    ``(n, words_per_flit)`` array of ``uint32``, least significant word first (word ``k`` holds
    bits ``32 k`` upwards of :func:`pack`'s integer).

    Raises
    ------
    ValueError
        If a value does not fit its field (nothing is truncated; the message names the field
        and the first such value), a name is not a leaf field, or the arrays differ in length.
    """
    leaves = _leaves(layout)
    known = {leaf[0] for leaf in leaves}
    unknown = sorted(set(columns) - known)
    if unknown:
        raise ValueError(f"flit has no field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    sizes = {np.size(v) for v in columns.values() if np.ndim(v) > 0}
    if len(sizes) > 1:
        raise ValueError(f"flit field columns differ in length: {sorted(sizes)}")
    n = sizes.pop() if sizes else 1
    nw = words_per_flit(layout)
    out = np.zeros((n, nw + 1), dtype=np.uint64)  # one spare word for the carry-out
    for name, _shape, offset, plain, lo, hi, _path in leaves:
        if name not in columns:
            continue
        v = _column(name, columns[name], n)
        if v.size:
            bad = (v < lo) | (v > hi)
            if bad.any():
                kind = "signed" if plain.signed else "unsigned"
                raise ValueError(f"flit field {name!r} must be from {lo} to {hi} "
                                 f"({plain.width}-bit {kind}), not {int(v[bad.argmax()])}")
        u = v.view(np.uint64)
        if plain.width < 64:
            u = u & np.uint64((1 << plain.width) - 1)
        for half, piece in enumerate((u & np.uint64(0xFFFFFFFF), u >> np.uint64(32))):
            pos = offset + 32 * half
            if half and plain.width <= 32:
                break
            k, sh = divmod(pos, 32)
            out[:, k] |= (piece << np.uint64(sh)) & np.uint64(0xFFFFFFFF)
            if sh:
                out[:, k + 1] |= piece >> np.uint64(32 - sh)
    return out[:, :nw].astype(np.uint32)


def unpack_columns(layout: data.StructLayout, words: np.ndarray) -> dict[str, np.ndarray]:
    """The inverse of :func:`pack_columns`: ``(n, words_per_flit)`` words to a dict of
    ``int64`` arrays, one per leaf field (signed fields sign-extended; enum fields as their
    numbers)."""
    words = np.asarray(words, dtype=np.uint64)
    if words.ndim != 2 or words.shape[1] != words_per_flit(layout):
        raise ValueError(f"packed flits must be an (n, {words_per_flit(layout)}) array, not "
                         f"{words.shape}")
    padded = np.concatenate([words, np.zeros((len(words), 1), dtype=np.uint64)], axis=1)
    out = {}
    for name, _shape, offset, plain, *_ in _leaves(layout):
        u = np.zeros(len(words), dtype=np.uint64)
        for half in range(2 if plain.width > 32 else 1):
            k, sh = divmod(offset + 32 * half, 32)
            piece = padded[:, k] >> np.uint64(sh)
            if sh:
                piece |= padded[:, k + 1] << np.uint64(32 - sh)
            u |= (piece & np.uint64(0xFFFFFFFF)) << np.uint64(32 * half)
        if plain.width < 64:
            u &= np.uint64((1 << plain.width) - 1)
        v = u.view(np.int64)
        if plain.signed and plain.width < 64:
            v = v - (((v >> (plain.width - 1)) & 1) << plain.width)
        out[name] = v
    return out
