"""The one validated configuration object of a wafertile fabric.

Everything a user can set lives in :class:`Config`: array size, number format, data and
accumulator widths, overflow mode, SRAM depths, router buffering, virtual channels and
micro-architecture. A
:class:`Config` is frozen and validated when it is made; every derived width (address,
coordinate, virtual-channel fields) is computed here and nowhere else.

A configuration can come from keyword arguments, from a TOML file (flat keys, the same names),
or from both (file first, then overrides)::

    cfg = Config.from_toml("tile.toml", data_width=8)

Every rejected value raises :class:`ConfigError` with one line that names the parameter, the
value and the rule, e.g. ``data_width must be one of 8, 16, not 12``.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import read_text, toml_reason

__all__ = ["DTYPES", "PARAMETERS", "Config", "ConfigError", "Overflow"]


class ConfigError(InputError):
    """A configuration value, key or file was rejected. The message is one line."""


class Overflow(enum.Enum):
    """What the accumulator does when a sum does not fit ``acc_width`` signed bits."""

    #: Keep the low ``acc_width`` bits (two's complement wrap-around).
    WRAP = "wrap"
    #: Clamp to the most positive / most negative value.
    SATURATE = "saturate"


#: The number formats (``dtype``) and the width of their weights and activations: signed
#: integers with an integer accumulator, or FP16 / BF16 with an FP32 accumulator
#: (``docs/float.md``).
DTYPES: dict[str, int] = {"int8": 8, "int16": 16, "fp16": 16, "bf16": 16}

#: The floating-point formats among :data:`DTYPES`.
_FLOAT_DTYPES = ("fp16", "bf16")


def _is_pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


@dataclasses.dataclass(frozen=True)
class _Rule:
    """One parameter's documentation and its single-value check."""

    name: str
    kind: type
    help: str
    rule: str  # the rule as it reads in an error message ("must be ...")
    check: Callable[[Any], bool]

    @property
    def kind_text(self) -> str:
        """The kind of value, as an error message words it ("must be an integer")."""
        return {int: "an integer", str: "a string", bool: "true or false"}[self.kind]


#: Every user-settable parameter, in the order the CLI and the docs list them.
PARAMETERS: tuple[_Rule, ...] = (
    _Rule("rows", int, "rows of tiles in the array (y, 0 = north edge)",
          "must be an integer from 1 to 4096", lambda v: 1 <= v <= 4096),
    _Rule("cols", int, "columns of tiles in the array (x, 0 = west edge)",
          "must be an integer from 1 to 4096", lambda v: 1 <= v <= 4096),
    _Rule("dtype", str,
          "number format of weights and activations: 'int8', 'int16' (signed integers, "
          "integer accumulators of acc_width bits) or 'fp16', 'bf16' (floating point, FP32 "
          "accumulators); default: the integer format of data_width",
          "must be one of 'int8', 'int16', 'fp16', 'bf16'", lambda v: v in DTYPES),
    _Rule("data_width", int, "bits of a weight or activation (follows dtype: 8 for int8, 16 "
          "otherwise)",
          "must be one of 8, 16", lambda v: v in (8, 16)),
    _Rule("acc_width", int, "bits of a signed accumulator (at least 2 * data_width)",
          "must be an integer from 16 to 64", lambda v: 16 <= v <= 64),
    _Rule("overflow", str, "accumulator overflow: 'wrap' (two's complement) or 'saturate'",
          "must be one of 'wrap', 'saturate'", lambda v: v in ("wrap", "saturate")),
    _Rule("act_depth", int, "activation words per tile SRAM bank",
          "must be a power of two from 16 to 65536", lambda v: _is_pow2(v) and 16 <= v <= 65536),
    _Rule("acc_depth", int, "accumulator words per tile SRAM bank",
          "must be a power of two from 16 to 65536", lambda v: _is_pow2(v) and 16 <= v <= 65536),
    _Rule("num_vcs", int, "virtual channels (colors) per router port",
          "must be an integer from 2 to 8", lambda v: 2 <= v <= 8),
    _Rule("buffer_depth", int, "flits buffered per virtual channel per router input",
          "must be a power of two from 2 to 64", lambda v: _is_pow2(v) and 2 <= v <= 64),
    _Rule("router_arch", str,
          "router micro-architecture: 'compact' (one VC head per input per cycle, about half "
          "the area of 'parallel'), 'parallel' (every VC head competes at every output, higher "
          "saturation throughput), 'lite' (smallest: links of 1/phits of a flit, for FPGAs) or "
          "'voq' (virtual output queues, two reads per input: the highest saturation "
          "throughput per area)",
          "must be one of 'compact', 'parallel', 'lite', 'voq'",
          lambda v: v in ("compact", "parallel", "lite", "voq")),
    _Rule("phits", int,
          "cycles a flit takes on a link: the links, buffers and switch are flit_width / phits "
          "bits wide ('lite' router only; 1 elsewhere)",
          "must be an integer from 1 to 8", lambda v: 1 <= v <= 8),
    _Rule("link_slice", bool,
          "whether each router input of a 'lite' router with phits > 1 registers its link "
          "(the phits in, the ready bits out): the wires between tiles leave the paths of "
          "allocation and switch, for a higher clock on an FPGA; the cycle hides in the slot "
          "(the same cycles, docs/router.md)",
          "must be true or false", lambda v: True),
    _Rule("handoff", bool,
          "whether the tile cores have the hand-off unit of whole networks (SET and FINISH: "
          "requantization registers, an accumulator turned into the next layer's activation); "
          "false leaves it out (SET and FINISH are then unknown opcodes) for smaller, faster "
          "tiles that run single layers",
          "must be true or false", lambda v: True),
    _Rule("counters", bool,
          "whether every tile counts its events (MACs done and skipped, SRAM words read and "
          "written, flits in and out of the core and on the links) in 32-bit saturating "
          "counters, read out of the array's events port (docs/counters.md); off by "
          "default: they cost logic",
          "must be true or false", lambda v: True),
    _Rule("nonlinear", bool,
          "whether the float tile cores have the nonlinear unit (NONLINEAR: exp, reciprocal, "
          "reciprocal square root or GELU of an accumulator in FP32, docs/nonlinear.md; about "
          "2 300 LUT4 sites and 4 multipliers per tile); fp16 and bf16 only; false (the "
          "default) leaves it out and NONLINEAR is an unknown opcode",
          "must be true or false", lambda v: True),
)

_RULES = {r.name: r for r in PARAMETERS}


def _clog2(n: int) -> int:
    return max(1, (n - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class Config:
    """Parameters of a wafertile fabric (array, tile, SRAM bank, router).

    Parameters
    ----------
    rows, cols : int
        Array size in tiles. Any value from 1 to 4096 (not only powers of two).
    dtype : str, optional
        Number format of weights and activations (:data:`DTYPES`): ``"int8"`` or
        ``"int16"`` (signed integers, ``acc_width``-bit integer accumulators), ``"fp16"`` or
        ``"bf16"`` (IEEE binary16 or bfloat16, FP32 accumulators, ``docs/float.md``). Default:
        the integer format of ``data_width``.
    data_width : int, optional
        Width of weights and activations: 8 or 16. It follows ``dtype`` (8 for int8, 16 for
        the others); given alone it picks the integer format (``data_width = 8`` is int8).
        Default 16.
    acc_width : int
        Width of signed accumulators, from ``2 * data_width`` (one full product) to 64; 32
        with a floating-point ``dtype`` (FP32).
    overflow : str
        ``"wrap"`` or ``"saturate"``; see :class:`Overflow`. Integer formats only: a
        floating-point sum rounds (and overflows to infinity), so a float ``dtype`` takes
        ``"wrap"``, the default.
    act_depth, acc_depth : int
        Words in the activation and accumulator banks of each tile (powers of two).
    num_vcs : int
        Virtual channels per router port, at least 2 (requests and replies).
    buffer_depth : int
        Flits of buffering per virtual channel at each router input.
    router_arch : str
        ``"compact"``, ``"parallel"`` or ``"lite"`` router micro-architecture
        (``docs/router.md``).
    phits : int
        Cycles a flit takes on a link (``"lite"`` only): links, router buffers and switch are
        ``ceil(flit_width / phits)`` bits wide (:attr:`phit_width`).
    link_slice : bool
        Whether each mesh input of a ``"lite"`` router with ``phits > 1`` registers its link
        (phits in, ready out); the same cycles, a shorter clock period.
    handoff : bool
        Whether the tile cores contain the hand-off unit (SET, FINISH: the on-chip
        requantization that a network of several layers needs, ``docs/network.md``). Default
        True; False leaves out its logic and registers, and the cores treat SET and FINISH as
        unknown opcodes (sticky ``error``).
    counters : bool
        Whether every tile counts its events (:data:`wafertile.hdl.counters.EVENTS`) and the
        array has the ``events`` output (``docs/counters.md``). Default False.
    nonlinear : bool
        Whether the float tile cores contain the nonlinear unit (NONLINEAR: ``acc[addr] =
        f(acc[addr])`` for exp, the reciprocal, the reciprocal square root or GELU,
        ``docs/nonlinear.md``). fp16 and bf16 only. Default False: the opcode is unknown
        (sticky ``error``).

    Raises
    ------
    ConfigError
        On a value of the wrong type, out of its range, or in conflict with another.
    """

    rows: int = 4
    cols: int = 4
    # dtype and data_width: None means "follows the other one" (resolved when the object is
    # made: both are always set afterwards)
    dtype: str = None
    data_width: int = None
    acc_width: int = 32
    overflow: str = "wrap"
    act_depth: int = 512
    acc_depth: int = 512
    num_vcs: int = 2
    buffer_depth: int = 4
    router_arch: str = "compact"
    phits: int = 1
    link_slice: bool = False
    handoff: bool = True
    counters: bool = False
    nonlinear: bool = False

    def __post_init__(self) -> None:
        self._resolve_format()
        for rule in PARAMETERS:
            value = getattr(self, rule.name)
            # bool is an int in Python; a flag is never a width or a count.
            if type(value) is not rule.kind:
                raise ConfigError(f"{rule.name} must be {rule.kind_text}, not {value!r}")
            if not rule.check(value):
                raise ConfigError(f"{rule.name} {rule.rule}, not {value!r}")
        if self.data_width != DTYPES[self.dtype]:
            raise ConfigError(
                f"data_width must be {DTYPES[self.dtype]} with dtype {self.dtype!r} (the number "
                f"format sets the width of weights and activations), not {self.data_width}")
        if self.is_float and self.acc_width != 32:
            raise ConfigError(
                f"acc_width must be 32 with dtype {self.dtype!r} (floating-point formats "
                f"accumulate in FP32), not {self.acc_width}")
        if self.is_float and self.overflow != "wrap":
            raise ConfigError(
                f"overflow = {self.overflow!r} has no meaning with dtype {self.dtype!r} "
                f"(floating-point sums round to nearest and overflow to infinity): leave "
                f"overflow = 'wrap', the default")
        if self.nonlinear and not self.is_float:
            raise ConfigError(
                f"nonlinear = true needs a floating-point dtype ('fp16' or 'bf16': the "
                f"nonlinear unit computes in FP32), not {self.dtype!r}")
        if self.acc_width < 2 * self.data_width:
            raise ConfigError(
                f"acc_width must be at least 2 * data_width = {2 * self.data_width} "
                f"(room for one full product), not {self.acc_width}")
        carried = [("a READ/SEND carries its output's route", self.route_fields)]
        if self.handoff:  # without the hand-off unit no FINISH carries a hand-off
            carried.append(("a FINISH carries its hand-off", self.handoff_fields))
        if self.handoff and self.nonlinear:  # and its pick, extra rows and MAC's address
            carried.append(("a FINISH carries its hand-off and its output's pick, rows and "
                            "activation", self.finish_fields))
        for what, table in carried:
            need = sum(table.values())
            fields = " + ".join(f"{k} {w}" for k, w in table.items())
            if self.acc_width < need and table is not self.route_fields and self.is_float:
                raise ConfigError(
                    f"a {self.rows} x {self.cols} array with {self.num_vcs} VCs is too large "
                    f"for the float tiles' nonlinear unit: {what} in its 32-bit data field "
                    f"({fields} = {need} bits); use a smaller array (32 x 32 fits with the "
                    f"default act_depth), a smaller act_depth or nonlinear = false")
            if self.acc_width < need:
                raise ConfigError(
                    f"acc_width must be at least {need} for a {self.rows} x {self.cols} "
                    f"array with {self.num_vcs} VCs ({what} in its data field: {fields} "
                    f"bits), not {self.acc_width}")
        if self.phits > 1 and self.router_arch != "lite":
            raise ConfigError(
                f"phits must be 1 with router_arch {self.router_arch!r} (flits split into "
                f"phits need router_arch 'lite'), not {self.phits}")
        if self.link_slice and (self.router_arch != "lite" or self.phits < 2):
            raise ConfigError(
                f"link_slice = true needs router_arch 'lite' with phits >= 2 (the slice's "
                f"cycle hides in a slot of several phits; with whole flits it would add a "
                f"cycle per router), not {self.router_arch!r} with {self.phits} phit(s)")
        if self.phit_width < self.header_width:
            raise ConfigError(
                f"phits must leave the whole {self.header_width}-bit header in the first phit "
                f"(at most {self.flit_width // self.header_width} for a {self.flit_width}-bit "
                f"flit), not {self.phits}")

    def _resolve_format(self) -> None:
        """Set whichever of ``dtype`` and ``data_width`` was left out from the other (both
        out: int16). A value of the wrong kind is left for the rule table to reject."""
        dtype, width = self.dtype, self.data_width
        if width is None:
            width = DTYPES.get(dtype, 16) if isinstance(dtype, str) else 16
        if dtype is None:
            dtype = {8: "int8", 16: "int16"}.get(width, "int16") if type(width) is int \
                else "int16"
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "data_width", width)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "configuration") -> Config:
        """Make a configuration from a mapping, rejecting keys that are not parameters."""
        unknown = sorted(set(values) - set(_RULES))
        if unknown:
            raise ConfigError(
                f"unknown parameter {unknown[0]!r} in {source} "
                f"(known: {', '.join(r.name for r in PARAMETERS)})")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Config:
        """Read a flat TOML file of parameters; keyword ``overrides`` win over the file."""
        path = Path(path)
        try:
            text = read_text(path, f"configuration file {str(path)!r}")
        except ConfigError:
            raise
        except InputError as exc:
            raise ConfigError(str(exc)) from None
        try:
            values = tomllib.loads(text)
        except (ValueError, RecursionError) as exc:  # a TOMLDecodeError is a ValueError;
            # tomllib also raises ValueError for an integer of over 4300 digits, and
            # RecursionError for tables nested a thousand deep
            raise ConfigError(f"configuration file {str(path)!r} is not valid TOML: "
                              f"{toml_reason(exc)}") from None
        for key, value in values.items():
            if isinstance(value, dict):
                raise ConfigError(
                    f"configuration file {str(path)!r} has a table [{key}]; parameters are "
                    f"flat keys (e.g. data_width = 16)")
        values = _merge_format(values, overrides)
        return cls.from_mapping(values, source=f"configuration file {str(path)!r}")

    def replace(self, **changes: Any) -> Config:
        """A copy with some parameters changed (validated again). Changing ``dtype`` alone
        makes ``data_width`` follow it; changing ``data_width`` alone on an integer format
        picks the integer format of that width."""
        base = self.as_dict()
        if "data_width" in changes and "dtype" not in changes and self.is_float:
            return self.from_mapping({**base, **changes})  # a conflict: rejected, named
        return self.from_mapping(_merge_format(base, changes))

    def as_dict(self) -> dict[str, Any]:
        """The user-settable parameters, in declaration order."""
        return {r.name: getattr(self, r.name) for r in PARAMETERS}

    def to_toml(self) -> str:
        """The configuration as a flat TOML document that :meth:`from_toml` reads back."""
        return "".join(f"{name} = {toml_value(value)}\n"
                       for name, value in self.as_dict().items())

    # -- derived widths (the only place they are computed) ------------------------------------

    @property
    def overflow_mode(self) -> Overflow:
        return Overflow(self.overflow)

    @property
    def is_float(self) -> bool:
        """Whether ``dtype`` is a floating-point format (FP16, BF16; FP32 accumulators)."""
        return self.dtype in _FLOAT_DTYPES

    @property
    def acc_format(self) -> str:
        """The accumulators' number format: ``"fp32"`` or ``"int<acc_width>"``."""
        return "fp32" if self.is_float else f"int{self.acc_width}"

    @property
    def act_addr_width(self) -> int:
        """Address bits of the activation bank."""
        return _clog2(self.act_depth)

    @property
    def acc_addr_width(self) -> int:
        """Address bits of the accumulator bank."""
        return _clog2(self.acc_depth)

    @property
    def addr_width(self) -> int:
        """Width of the address fields of a flit (the wider of the two banks)."""
        return max(self.act_addr_width, self.acc_addr_width)

    @property
    def product_width(self) -> int:
        """Width of a full signed product of two data words (the FP32 product: 32)."""
        return 2 * self.data_width

    @property
    def x_width(self) -> int:
        """Bits of a column coordinate."""
        return _clog2(self.cols)

    @property
    def y_width(self) -> int:
        """Bits of a row coordinate."""
        return _clog2(self.rows)

    @property
    def vc_width(self) -> int:
        """Bits of a virtual-channel number."""
        return _clog2(self.num_vcs)

    # The fields of a flit and of the route a READ/SEND carries, in order from the least
    # significant bit, with their widths: the one table the layouts (wafertile.hdl.flit), the
    # widths below and the host's codecs are made from.

    @property
    def header_fields(self) -> dict[str, int]:
        """The routing header's fields and widths, LSB first (``docs/flit.md``)."""
        return {"x0": self.x_width, "x1": self.x_width, "y0": self.y_width, "y1": self.y_width,
                "vc": self.vc_width, "exit": 3}

    @property
    def payload_fields(self) -> dict[str, int]:
        """The operation payload's fields and widths, LSB first."""
        return {"op": 4, "addr": self.addr_width, "addr_b": self.addr_width,
                "data": self.acc_width}

    @property
    def route_fields(self) -> dict[str, int]:
        """The fields of the route that a READ or SEND carries in its ``data`` field: where the
        tile sends the reply or the ADD (tile x, y; exit port; VC), LSB first."""
        return {"x": self.x_width, "y": self.y_width, "exit": 3, "vc": self.vc_width}

    @property
    def handoff_fields(self) -> dict[str, int]:
        """The fields of the hand-off a FINISH carries in its ``data`` field: the rectangle
        ``x0 .. x1`` of row ``y`` whose tiles receive the activation, and its VC, LSB first."""
        return {"x0": self.x_width, "x1": self.x_width, "y": self.y_width, "vc": self.vc_width}

    @property
    def finish_fields(self) -> dict[str, int]:
        """The fields a FINISH carries in its ``data`` field on a float tile with the
        nonlinear unit, LSB first: its hand-off (:attr:`handoff_fields`), then ``pick`` (its
        output's opcode: 0 WRITE_ACT, 1 MAC), ``dy`` (the rectangle's rows are ``y .. y +
        dy``) and ``act`` (a MAC output's activation address). On other tiles the bits above
        the hand-off are ignored (``docs/architecture.md``)."""
        return {**self.handoff_fields, "pick": 1, "dy": self.y_width, "act": self.act_addr_width}

    @property
    def handoff_width(self) -> int:
        """Bits of the hand-off a FINISH carries in its data field."""
        return sum(self.handoff_fields.values())

    @property
    def header_width(self) -> int:
        """Bits of a flit's routing header."""
        return sum(self.header_fields.values())

    @property
    def payload_width(self) -> int:
        """Bits of a flit's operation payload."""
        return sum(self.payload_fields.values())

    @property
    def flit_width(self) -> int:
        """Bits of a flit: header (LSBs) + payload."""
        return self.header_width + self.payload_width

    @property
    def phit_width(self) -> int:
        """Bits of a link (and of the ``lite`` router's buffers and switch):
        ``ceil(flit_width / phits)``; phit ``k`` is flit bits ``k * phit_width`` upwards."""
        return -(-self.flit_width // self.phits)

    @property
    def route_width(self) -> int:
        """Bits of the route a READ or SEND carries in its data field."""
        return sum(self.route_fields.values())

    @property
    def acc_min(self) -> int:
        return -(1 << (self.acc_width - 1))

    @property
    def acc_max(self) -> int:
        return (1 << (self.acc_width - 1)) - 1

    @property
    def data_min(self) -> int:
        return -(1 << (self.data_width - 1))

    @property
    def data_max(self) -> int:
        return (1 << (self.data_width - 1)) - 1


def _merge_format(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``changes``, where a change of one of ``dtype`` and
    ``data_width`` (not both) drops the other from ``base``, so that it follows the change."""
    merged = dict(base)
    given = {"dtype", "data_width"} & set(changes)
    if len(given) == 1:
        merged.pop(({"dtype", "data_width"} - given).pop(), None)
    merged.update(changes)
    return merged


def toml_value(value: Any) -> str:
    """A parameter value as TOML writes it (``"wrap"``, ``16``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def parse_bool(name: str, text: str) -> bool:
    """A bool parameter given as text (a command-line flag): ``true`` or ``false`` (any
    case)."""
    value = {"true": True, "false": False}.get(text.strip().lower())
    if value is None:
        raise ConfigError(f"{name} must be true or false, not {text!r}")
    return value


def parameter_help() -> dict[str, str]:
    """Each parameter's help text with its rule and default, for ``--help``."""
    defaults = {name: str(v).lower() if isinstance(v, bool) else v
                for name, v in Config().as_dict().items()}
    return {r.name: f"{r.help}; {r.rule} (default {defaults[r.name]})" for r in PARAMETERS}
