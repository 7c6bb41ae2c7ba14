"""Small helpers shared by the Amaranth components."""

from __future__ import annotations

from amaranth.hdl import Const, Mux
from amaranth.lib import wiring

from ..config import Config

__all__ = ["CheckedComponent", "ConfiguredComponent", "any_of", "check_stages", "pick"]


def pick(select, values):
    """The value whose one-hot ``select`` bit is set (``values[0]`` if none), as a chain of
    2:1 multiplexers."""
    out = values[0]
    for k in range(1, len(values)):
        out = Mux(select[k], values[k], out)
    return out


def index_bits(n: int) -> int:
    """Bits of an index into ``n`` things (at least 1)."""
    return max(1, (n - 1).bit_length())


def any_of(bits):
    """The OR of ``bits`` (0 for none)."""
    out = Const(0)
    for b in bits:
        out = out | b
    return out


def check_stages(owner: str, stages: object) -> None:
    """Refuse a pipeline depth ``stages`` other than 1 or 2 (an ``int``), naming ``owner``.

    Raises
    ------
    TypeError
        ``<owner> stages must be 1 or 2, not <stages!r>``.
    """
    if type(stages) is not int or stages not in (1, 2):
        raise TypeError(f"{owner} stages must be 1 or 2, not {stages!r}")


class CheckedComponent(wiring.Component):
    """A component whose constructor arguments are checked before the object exists.

    :meth:`check` (a classmethod, called with the constructor's arguments) raises on a bad
    argument; because it runs in ``__new__``, a rejected component is never created, so
    Amaranth never warns that it was "created but never used".
    """

    def __new__(cls, *args, src_loc_at: int = 0, **kwargs):
        cls.check(*args, **kwargs)
        return super().__new__(cls, src_loc_at=src_loc_at + 1)

    @classmethod
    def check(cls, *args, **kwargs) -> None:
        """Raise ``TypeError`` / ``ValueError`` for a bad constructor argument."""


class ConfiguredComponent(CheckedComponent):
    """A component made from a :class:`Config`, which it keeps read-only as ``config``.

    Subclasses extend :meth:`check` for their other arguments and rules, then derive their
    members from the config and call ``super().__init__(config, members)``.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    """

    def __init__(self, config: Config, members: dict[str, wiring.Member]):
        self._config = config
        super().__init__(members)

    @classmethod
    def check(cls, config: object, *args, **kwargs) -> None:
        if not isinstance(config, Config):
            raise TypeError(f"{cls.__name__} config must be a Config, not {config!r}")

    @property
    def config(self) -> Config:
        return self._config
