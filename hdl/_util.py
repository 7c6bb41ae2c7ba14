"""Small helpers shared by the Amaranth components."""

from __future__ import annotations

import re

from amaranth.hdl import Const, Mux
from amaranth.lib import wiring

from ..config import Config

__all__ = ["ConfiguredComponent", "any_of", "check_config", "pick", "verilog_ports"]


def pick(select, values):
    """The value whose one-hot ``select`` bit is set (``values[0]`` if none), as a chain of
    2:1 multiplexers."""
    out = values[0]
    for k in range(1, len(values)):
        out = Mux(select[k], values[k], out)
    return out


def any_of(bits):
    """The OR of ``bits`` (0 for none)."""
    out = Const(0)
    for b in bits:
        out = out | b
    return out


def check_config(component: object, config: object) -> Config:
    """Return ``config`` if it is a :class:`Config`; else raise TypeError naming the component.

    A component whose constructor fails is never elaborated; Amaranth would warn that it was
    "created but never used", so the warning is silenced for it first.
    """
    if not isinstance(config, Config):
        component._MustUse__silence = True
        raise TypeError(f"{type(component).__name__} config must be a Config, not {config!r}")
    return config


class ConfiguredComponent(wiring.Component):
    """A component made from a :class:`Config`, which it keeps read-only as ``config``.

    Subclasses check the config (:func:`check_config`) before deriving their members from it,
    then call ``super().__init__(config, members)``.
    """

    def __init__(self, config: Config, members: dict[str, wiring.Member]):
        self._config = check_config(self, config)
        super().__init__(members)

    @property
    def config(self) -> Config:
        return self._config


def verilog_ports(text: str, module: str) -> list[tuple[str, str, int]]:
    """(direction, name, width) of the ports of ``module`` in Amaranth/Yosys Verilog ``text``
    (one ``input``/``output`` declaration per line, as Yosys writes them)."""
    start = text.index(f"module {module}(")
    body = text[start:text.index("endmodule", start)]
    return [(m.group(1), m.group(3), int(m.group(2)) + 1 if m.group(2) else 1)
            for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?"
                                 r"(?:\[(\d+):0\]\s*)?\\?([\w$.]+)\s*;", body, re.M)]
