"""Small helpers shared by the Amaranth components."""

from __future__ import annotations

import re

from amaranth.lib import wiring

from ..config import Config

__all__ = ["ConfiguredComponent", "check_config", "verilog_ports"]


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
