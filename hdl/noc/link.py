"""The router link: one direction of a connection between two routers (or a router and an
endpoint), carrying whole flits or phits, with one ready bit per virtual channel.

Interface attributes (seen from the sender, :class:`LinkSignature`):

- ``valid`` (out, 1 bit): a word is offered this cycle.
- ``flit`` (out, :func:`~wafertile.hdl.flit.flit_layout`) on a flit link, or ``phit`` (out,
  ``Config.phit_width`` bits) on a phit link: the word. On a phit link, phit ``k`` of a flit
  is offered in phase ``k`` of a slot (:mod:`.phit`).
- ``ready`` (in, ``num_vcs`` bits): bit ``v`` is high when the receiver has room for a whole
  flit of VC ``v``. It depends only on the receiver's state, never on ``valid``: a sender
  chooses what to offer from ``ready`` (credit flow control with the counter kept at the
  receiver), with no combinational loop between neighbours.

A flit of VC ``v`` is transferred in a cycle with ``valid & ready[v]`` (on a phit link: the
flit starts in such a cycle in phase 0 and its other phits follow, one per cycle). A sender
only raises ``valid`` for a flit whose VC is ready and holds it, with the word unchanged,
until the transfer (for a phit link: for the whole slot).
"""

from __future__ import annotations

from amaranth.hdl import Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...config import Config
from ..flit import flit_layout

__all__ = ["LinkInterface", "LinkSignature"]


class LinkSignature(wiring.Signature):
    """One direction of a router link, seen from the sender (see the module documentation).

    Parameters
    ----------
    config : Config
        Flit layout, ``num_vcs`` and, for a phit link, ``phit_width``.
    phit : bool
        A phit link (``phit_width`` bits a cycle, ``config.phits`` cycles a flit) instead of a
        whole-flit link. Needs ``config.phits > 1``.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    ValueError
        For a phit link with ``config.phits == 1``.
    """

    def __init__(self, config: Config, *, phit: bool = False):
        if not isinstance(config, Config):
            raise TypeError(f"Link config must be a Config, not {config!r}")
        if phit and config.phits == 1:
            raise ValueError("a phit link needs phits > 1 (with phits = 1 a link carries whole "
                             "flits)")
        self._config = config
        self._phit = bool(phit)
        word = unsigned(config.phit_width) if phit else flit_layout(config)
        super().__init__({"valid": Out(1), self.word_name: Out(word),
                          "ready": In(config.num_vcs)})

    @classmethod
    def between_routers(cls, config: Config) -> LinkSignature:
        """The link between two routers of ``config``: phits when ``config.phits > 1``,
        whole flits otherwise. Every mesh link, tile port and router port but the lite
        router's local input uses it."""
        return cls(config, phit=config.phits > 1)

    @property
    def config(self) -> Config:
        return self._config

    @property
    def phit(self) -> bool:
        """Whether the link carries phits (else whole flits)."""
        return self._phit

    @property
    def word_name(self) -> str:
        """The name of the word member: ``"phit"`` or ``"flit"`` (also in Verilog names,
        ``<port>__phit``)."""
        return "phit" if self._phit else "flit"

    @property
    def word_width(self) -> int:
        return self._config.phit_width if self._phit else self._config.flit_width

    def __eq__(self, other):
        if type(other) is type(self):
            return self._config == other._config and self._phit == other._phit
        return super().__eq__(other)

    def __hash__(self):
        return hash((type(self), self._config, self._phit))

    def __repr__(self):
        return f"LinkSignature({self._config!r}, phit={self._phit})"

    def create(self, *, path=None, src_loc_at=0):
        return LinkInterface(self, path=path, src_loc_at=1 + src_loc_at)


class LinkInterface(wiring.PureInterface):
    """An interface of a :class:`LinkSignature`: ``valid``, ``flit`` or ``phit``, ``ready``,
    and :attr:`word`, the word whatever its name."""

    @property
    def word(self) -> Value:
        """The ``flit`` (as raw bits) or ``phit`` member."""
        return Value.cast(getattr(self, self.signature.word_name))
