"""Event counters of a tile (``Config.counters``): what the energy of a run is made of.

With ``counters = true`` every tile counts, in saturating :data:`COUNTER_WIDTH`-bit
registers, the events of :data:`EVENTS` (``docs/counters.md``), and the array has one more
output, ``events``: per tile (``y * cols + x``) the counters side by side, event ``e`` at
bits ``e * COUNTER_WIDTH`` upwards of the tile's :data:`COUNTER_WIDTH` ``* len(EVENTS)``
bits. The performance model counts the same events (:mod:`wafertile.model.events`) and is
exact against these counters on its validation set. Off by default: the counters cost logic
(and they are not needed to run).

What an access is: the operations' own, by the operation table (:mod:`.core.ops`): an
operation that reads the activation (``act_read``; GRAD's second one, ``act_weight``, too)
reads one word each, one that reads or writes its accumulator one word, except a MAC skipped
on a zero operand, which neither reads nor writes it. The banks' read ports are enabled on
every cycle the core's pipeline moves, whether an operation uses the word or not (a simpler
and faster enable); those idle reads are not counted.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value

from ..config import Config
from .core.ops import OpTable, matches
from .flit import header_layout

__all__ = ["COUNTER_WIDTH", "EVENTS", "EVENT_HELP", "count_events", "event_bits",
           "events_line", "link_transfer", "op_counts"]

#: Bits of each counter (it saturates at ``2 ** COUNTER_WIDTH - 1``).
COUNTER_WIDTH = 32

#: The events a tile counts, in the order of the ``events`` port, with what each counts.
EVENT_HELP = {
    "mac_done": "MACs executed with a nonzero pair (a multiply and an accumulation)",
    "mac_skipped": "MACs skipped on a zero weight or activation",
    "act_reads": "activation words operations read (a skipped MAC's included)",
    "act_writes": "activation words written (WRITE_ACT)",
    "acc_reads": "accumulator words operations read (a skipped MAC reads none)",
    "acc_writes": "accumulator words operations write (a skipped MAC writes none)",
    "core_in": "flits the router delivered to the core (its local output)",
    "core_out": "flits the core sent into the router (replies, SEND's ADD, FINISH's "
                "activations, GRAD's chain)",
    "link_out": "flits the router sent on its four mesh outputs, a multicast's branches each "
                "(out of the array's edge included)",
}
EVENTS = tuple(EVENT_HELP)


def event_bits() -> int:
    """The bits of one tile's counters in the ``events`` port."""
    return COUNTER_WIDTH * len(EVENTS)


def events_line(events: dict[str, list[int]], how: str, energy: dict | None = None) -> str:
    """A report's line of ``events`` (per event, a count per tile) summed over the tiles;
    ``how``: who counted them; with ``energy`` (``energy_j``, ``energy_parts_j``,
    ``energy_source``: what :func:`wafertile.model.energy.price_events` makes of them) a
    second line."""
    line = "events           " + ", ".join(f"{k} {sum(v)}" for k, v in events.items()) + \
        f" ({how}, docs/counters.md)"
    if energy is None:
        return line
    parts = ", ".join(f"{k} {v * 1e9:,.1f}" for k, v in energy["energy_parts_j"].items())
    return line + f"\nenergy           {energy['energy_j'] * 1e9:,.1f} nJ ({parts}; " \
        f"{energy['energy_source']})"


def link_transfer(config: Config, link, phase: Value | None) -> Value:
    """Whether a flit starts across ``link`` (a :class:`~.noc.link.LinkInterface` seen from
    its sender) this cycle: ``valid`` with ``ready`` of the flit's VC, on a phit link only
    in phase 0 (``phase``, the fabric's phase counter), where phit 0 holds the header."""
    if link.signature.phit:
        header = header_layout(config)(link.phit[:header_layout(config).size])
        return (phase == 0) & link.valid & link.ready.bit_select(header.vc, 1)
    return link.valid & link.ready.bit_select(link.flit.header.vc, 1)


def op_counts(row) -> dict[str, int]:
    """What one operation (a row of the table, :class:`~.core.ops.Op`) counts when its core
    takes it: activation words read (``act_read``, and GRAD's second, ``act_weight``) and
    written, accumulator words read and written unless it skips on a zero operand (a MAC:
    its ``mac_done`` then stands for both), whether it counts as a MAC and whether it
    emits a flit. The RTL's counters and the model's count (:mod:`wafertile.model.events`)
    both take it from here."""
    return {"act_reads": (row.act_read is not None) + (row.act_weight is not None),
            "act_writes": int(row.act_write is not None),
            "acc_reads": int(row.acc_read and not row.skips_zero),
            "acc_writes": int(row.acc_write is not None and not row.skips_zero),
            "mac": int(row.counts_mac), "emits": int(row.emit is not None)}


def _per_op(ops: OpTable, config: Config, value) -> list[tuple[int, list[int]]]:
    """(count, opcodes) pairs: the legal operations grouped by ``value(row)``, zeros left
    out."""
    groups: dict[int, list[int]] = {}
    for row in ops.legal(config):
        n = value(row)
        if n:
            groups.setdefault(n, []).append(row.code)
    return sorted(groups.items())


def _count_of(op: Value, groups: list[tuple[int, list[int]]]) -> Value:
    """How many of an event the operation ``op`` makes (``groups``: :func:`_per_op`)."""
    total = Value.cast(0)
    for n, codes in groups:
        total = Mux(matches(op, codes), n, total)
    return total


def count_events(m: Module, config: Config, ops: OpTable, *, core_in, core_in_op,
                 core_out, mac_done, mac_skipped, act_written, links, phase) -> Value:
    """Add a tile's counters to ``m``; return their value (:func:`event_bits` bits).

    ``core_in``: a flit enters the core, ``core_in_op`` its opcode; ``core_out``: the core's
    output is taken; ``mac_done``, ``mac_skipped``, ``act_written``: the core's pulses;
    ``links``: the router's four mesh outputs (:func:`link_transfer`), ``phase`` the phase
    counter (phit links) or None.
    """
    for row in ops.legal(config):
        # a skipped operation's accumulator access is one that counts as a MAC (mac_done
        # then stands for its access): true of MAC, the one operation that has both
        assert not (row.skips_zero and (row.acc_read or row.acc_write) and not row.counts_mac)
    act_reads, acc_reads, acc_writes = (
        _per_op(ops, config, lambda r, k=k: op_counts(r)[k])
        for k in ("act_reads", "acc_reads", "acc_writes"))
    took = core_in

    def taken(groups):
        return Mux(took, _count_of(core_in_op, groups), 0)

    moves = sum((link_transfer(config, link, phase) for link in links), Value.cast(0))
    increments = {
        "mac_done": mac_done, "mac_skipped": mac_skipped, "act_reads": taken(act_reads),
        "act_writes": act_written, "acc_reads": taken(acc_reads) + mac_done,
        "acc_writes": taken(acc_writes) + mac_done, "core_in": core_in,
        "core_out": core_out, "link_out": moves,
    }
    top = (1 << COUNTER_WIDTH) - 1
    out = []
    for name in EVENTS:
        # the increment is registered first: the router's and the core's handshakes stay
        # off the counter's carry chain (a count lands a cycle late; a run reads the
        # counters once they are still)
        step = Signal(3, name=f"ev_{name}_step")
        counter = Signal(COUNTER_WIDTH, name=f"ev_{name}")
        total = Signal(COUNTER_WIDTH + 3, name=f"ev_{name}_next")
        m.d.sync += step.eq(increments[name])
        m.d.comb += total.eq(counter + step)
        m.d.sync += counter.eq(Mux(total > top, top, total))
        out.append(counter)
    return Cat(*out)
