"""Named properties: the ``Assert``, ``Assume`` and ``Cover`` statements of a formal harness.

Amaranth 0.5 gives a property no name of its own: its ``$check`` cell is numbered, and
SymbiYosys reports it by that number and its source line. A harness therefore makes every
property through :class:`Properties`, which puts the property's name into the statement's
message; :func:`name_checks` then renames each ``$check`` cell of the RTLIL after its
message, so that sby reports ``top.<name>`` and a failure names the rule that broke.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from amaranth.hdl import Assert, Assume, Cover, Module

__all__ = ["Properties", "Property", "name_checks"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Property:
    """One named property of a harness.

    Members
    -------
    name : str
        An identifier, unique in its harness (the ``$check`` cell's name).
    kind : str
        ``"assert"``, ``"assume"`` or ``"cover"``.
    text : str
        What it says, in one sentence (shown in the report).
    """

    name: str
    kind: str
    text: str


class Properties:
    """The properties of one harness module, each with a unique name and a sentence.

    Parameters
    ----------
    m : Module
        The harness module the statements go into (``m.d.comb``, under whatever ``m.If`` is
        open when a method is called).
    """

    def __init__(self, m: Module):
        self._m = m
        self._props: dict[str, Property] = {}

    def _add(self, kind: str, name: str, test, text: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"property name must be a lower-case identifier, not {name!r}")
        if name in self._props:
            raise ValueError(f"property name {name!r} is used twice")
        self._props[name] = Property(name, kind, text)
        statement = {"assert": Assert, "assume": Assume, "cover": Cover}[kind]
        self._m.d.comb += statement(test, name, src_loc_at=2)

    def check(self, name: str, test, text: str) -> None:
        """Assert ``test`` (a property of the design under test)."""
        self._add("assert", name, test, text)

    def assume(self, name: str, test, text: str) -> None:
        """Assume ``test`` (a promise of the environment)."""
        self._add("assume", name, test, text)

    def cover(self, name: str, test, text: str) -> None:
        """Cover ``test`` (a state the checks must be able to reach)."""
        self._add("cover", name, test, text)

    def __iter__(self):
        return iter(self._props.values())

    def __getitem__(self, name: str) -> Property:
        return self._props[name]

    def __contains__(self, name: str) -> bool:
        return name in self._props


_CHECK = re.compile(r'cell \$check \$\d+\n((?:    parameter [^\n]*\n)*?)    parameter \\FORMAT "'
                    r'([a-z][a-z0-9_]*)"')


def name_checks(rtlil: str) -> str:
    """``rtlil`` with every ``$check`` cell whose message is a property name renamed after
    it (``\\<name>``); cells of other messages (Amaranth's own invariants) keep their
    numbers."""
    return _CHECK.sub(lambda mt: f'cell $check \\{mt[2]}\n{mt[1]}    parameter \\FORMAT "{mt[2]}"',
                      rtlil)
