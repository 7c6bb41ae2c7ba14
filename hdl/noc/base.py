"""What every router micro-architecture shares: ports, coordinates, and the rules they keep."""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...config import Config
from .._util import ConfiguredComponent
from ..flit import Port
from .link import LinkSignature

__all__ = ["Router"]


class Router(ConfiguredComponent):
    """A 5-port single-flit mesh router with XY-tree multicast and ``num_vcs`` VCs (abstract:
    one subclass per micro-architecture, chosen by :func:`~.router.make_router`).

    Every micro-architecture keeps the same contract (``docs/router.md``): routing by
    :func:`~.route.route_mask`; a multicast flit is sent on every output of its route mask,
    in one cycle or in several, and leaves its buffer when its last branch has gone; flits
    from one input to one output on one VC leave in the order they arrived; a VC whose
    downstream buffer is full never holds up another VC for longer than a slot; arbitration
    is round-robin, so no flit starves while its downstream keeps draining; flits with a VC
    number ``>= num_vcs`` are never accepted. Links follow :mod:`.link`.

    Parameters
    ----------
    config : Config
        Flit format, ``num_vcs``, ``buffer_depth``, ``phits``, the array size (to know its
        edges) and ``router_arch``, which must name this class's micro-architecture.

    Members
    -------
    x, y : ``In``
        This router's coordinates (inputs, so that one module serves every tile).
    in_l, in_n, in_e, in_s, in_w : ``In(LinkSignature)``
        Input ports (:class:`~wafertile.hdl.flit.Port` order). ``ready[v]`` is high when VC
        ``v``'s buffer of that port has room. Mesh links carry phits when ``phits > 1``.
    out_l, out_n, out_e, out_s, out_w : ``Out(LinkSignature)``
        Output ports. ``valid`` is only raised for a flit whose VC is ready downstream.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    ValueError
        If ``config.router_arch`` is not this class's :attr:`arch`.
    """

    #: The value of ``Config.router_arch`` that selects this micro-architecture.
    arch: str = ""

    def __init__(self, config: Config):
        members = {"x": In(unsigned(config.x_width)), "y": In(unsigned(config.y_width))}
        for port in Port:
            members[f"in_{port.letter}"] = In(self.input_signature(config, port))
        for port in Port:
            members[f"out_{port.letter}"] = Out(LinkSignature.between_routers(config))
        super().__init__(config, members)

    @classmethod
    def check(cls, config) -> None:
        super().check(config)
        if not cls.arch:
            raise TypeError(f"{cls.__name__} is abstract: make a router with make_router() "
                            f"or one of its subclasses")
        if config.router_arch != cls.arch:
            raise ValueError(f"{cls.__name__} needs router_arch {cls.arch!r}, not "
                             f"{config.router_arch!r}")

    @classmethod
    def input_signature(cls, config: Config, port: Port) -> wiring.Signature:
        """The signature of input ``port`` (a mesh link; a subclass may differ at LOCAL)."""
        return LinkSignature.between_routers(config)

    @property
    def inputs(self) -> list:
        """The input links, indexed by port number."""
        return [getattr(self, f"in_{port.letter}") for port in Port]

    @property
    def outputs(self) -> list:
        """The output links, indexed by port number."""
        return [getattr(self, f"out_{port.letter}") for port in Port]
