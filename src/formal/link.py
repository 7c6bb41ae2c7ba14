"""The link and stream rules as properties: asserted where the block under test is the
sender, assumed where the environment is.

Flit link (:mod:`wafertile.hdl.noc.link`), sender's side:

- ``offers_ready``: ``valid`` only for a flit whose VC is ready (``ready[flit.vc]``), so a
  flit moves in the cycle it is offered;
- ``holds``: an offer that is not taken stays, with the flit unchanged, in the next cycle
  (implied by ``offers_ready`` for a router output; the rule a host's sender keeps);
- ``vc_in_range``: the VC is below ``num_vcs`` (only when ``num_vcs`` is not a power of two).

Phit link (:mod:`wafertile.hdl.noc.phit`), sender's side, with the fabric's phase:

- ``starts_ready``: a flit starts only in phase 0, and only for a VC that is ready then;
- ``whole_slot``: ``valid`` does not change within a slot (it is held for every phit).

Stream (:mod:`amaranth.lib.stream`, the tile core's ``i`` and ``o``), sender's side:

- ``holds``: a ``valid`` payload stays, unchanged, until it is taken.

The receiver's side of a link (``ready`` depends only on the receiver's state, never on
``valid``) is a structural rule with no state to check; every transfer counted by the
harnesses is ``valid & ready[vc]``, as the receiver sees it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import data

from ..config import Config
from ..hdl.flit import header_layout
from .props import Properties

__all__ = ["flit_link_rules", "flit_transfer", "phit_link_rules", "stream_rules"]


def _rule(props: Properties, dut: bool):
    return props.check if dut else props.assume


def _vc(link) -> Value:
    return Value.cast(link.flit.header.vc)


def flit_transfer(link) -> Value:
    """A flit moves on ``link`` in this cycle: ``valid & ready[flit.vc]``."""
    return link.valid & link.ready.bit_select(_vc(link), 1)


def flit_link_rules(m: Module, props: Properties, config: Config, link, name: str, *,
                    dut: bool, offers_ready: bool = True) -> None:
    """The sender's rules of flit link ``link``, named ``<name>_<rule>``: asserted if
    ``dut`` (the block under test sends), else assumed. ``offers_ready=False`` leaves out
    the rule that a flit is only offered to a ready VC (a host sender holds its flit
    instead)."""
    rule = _rule(props, dut)
    who = "the block" if dut else "the environment"
    if offers_ready:
        rule(f"{name}_offers_ready", ~link.valid | link.ready.bit_select(_vc(link), 1),
             f"{name}: {who} offers a flit only on a VC that is ready")
    waiting = Signal(name=f"{name}_waiting")
    held = Signal.like(link.flit.as_value(), name=f"{name}_held")
    m.d.sync += [waiting.eq(link.valid & ~flit_transfer(link)), held.eq(link.flit.as_value())]
    with m.If(waiting):
        rule(f"{name}_holds", link.valid & (link.flit.as_value() == held),
             f"{name}: {who} holds an offer that was not taken, with the flit unchanged")
    if config.num_vcs & (config.num_vcs - 1):
        rule(f"{name}_vc_in_range", ~link.valid | (_vc(link) < config.num_vcs),
             f"{name}: {who} offers flits of VCs below num_vcs only")


def phit_link_rules(m: Module, props: Properties, config: Config, link, name: str,
                    phase: Value, *, dut: bool) -> None:
    """The sender's rules of phit link ``link`` in the fabric's ``phase`` (module
    documentation)."""
    rule = _rule(props, dut)
    who = "the block" if dut else "the environment"
    vc = Value.cast(data.View(header_layout(config), link.phit[:config.header_width]).vc)
    with m.If(phase == 0):
        rule(f"{name}_starts_ready", ~link.valid | link.ready.bit_select(vc, 1),
             f"{name}: {who} starts a flit only in phase 0 on a VC that is ready then")
    before = Signal(name=f"{name}_valid_before")
    m.d.sync += before.eq(link.valid)
    with m.If(phase != 0):
        rule(f"{name}_whole_slot", link.valid == before,
             f"{name}: {who} holds valid for the whole slot (one phit per phase)")


def stream_rules(m: Module, props: Properties, stream, name: str, *, dut: bool) -> None:
    """The sender's rule of an Amaranth stream: a valid payload stays until taken."""
    rule = _rule(props, dut)
    who = "the block" if dut else "the environment"
    waiting = Signal(name=f"{name}_waiting")
    held = Signal.like(stream.payload.as_value(), name=f"{name}_held")
    m.d.sync += [waiting.eq(stream.valid & ~stream.ready), held.eq(stream.payload.as_value())]
    with m.If(waiting):
        rule(f"{name}_holds", stream.valid & (stream.payload.as_value() == held),
             f"{name}: {who} holds a valid payload, unchanged, until it is taken")
