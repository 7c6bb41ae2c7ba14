"""Reading the port list of a module in the Verilog that Amaranth (Yosys) writes."""

from __future__ import annotations

import re

__all__ = ["verilog_ports"]


def verilog_ports(text: str, module: str) -> list[tuple[str, str, int]]:
    """(direction, name, width) of the ports of ``module`` in Amaranth/Yosys Verilog ``text``
    (one ``input``/``output`` declaration per line, as Yosys writes them).

    Raises
    ------
    ValueError
        If ``text`` defines no module ``module``.
    """
    start = text.index(f"module {module}(")
    body = text[start:text.index("endmodule", start)]
    return [(m.group(1), m.group(3), int(m.group(2)) + 1 if m.group(2) else 1)
            for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?"
                                 r"(?:\[(\d+):0\]\s*)?\\?([\w$.]+)\s*;", body, re.M)]
