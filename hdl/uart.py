"""Flit-over-UART host bridge: a board's serial port to the array's west-edge host ports.

Framing (bytes, 8N1, least significant byte of a flit first; ``N = ceil(flit width / 8)``;
the full description with examples is in ``docs/fpga.md``):

host -> board
    ``0x5A, row, f[0] .. f[N-1]``  inject flit ``f`` into the west port of ``row``;
    ``0x5B``                       ask for the status word.
board -> host
    ``0x06``                       one injected frame has entered the array (a credit);
    ``0xA5, row, f[0] .. f[N-1]``  flit ``f`` left the array at the west port of ``row``;
    ``0xB5, c[0] .. c[3], flags``  status: ``c`` = counted operations the tiles have
                                   executed: MACs (done + skipped) and activation writes
                                   (32 bits, wrapping), ``flags`` bit 0 = a
                                   tile's error flag, bit 1 = a frame named a row that does
                                   not exist (the frame was dropped), bit 2 = a byte arrived
                                   while the receive FIFO was full (it was lost).

Flow control: the receiver has a FIFO of :data:`RX_FIFO_BYTES` bytes and the parser holds a
frame until its west port accepts it. A host may therefore have at most
:func:`window` frames not yet acknowledged by ``0x06``; then no byte is ever lost. Bytes that
do not start a frame are skipped (resynchronisation after a reset of either side).

Replies: the bridge takes one flit at a time from the west outputs, visiting the rows in turn;
``ready`` of a row depends only on the bridge's state (the link protocol of
:mod:`wafertile.hdl.noc.link`), so a row is offered the slot for one cycle at a
time while the bridge is empty. Flits leaving by the north, east and south edges are not
served (their ``ready`` is 0): the streaming compiler sends every reply west.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..config import Config
from ._util import CheckedComponent, ConfiguredComponent
from .flit import flit_layout
from .noc import LinkSignature

__all__ = ["ACK", "INJECT", "REPLY", "RX_FIFO_BYTES", "STATUS", "STATUS_REQ", "HostBridge",
           "UartRx", "UartTx", "flit_bytes", "window"]

INJECT = 0x5A
STATUS_REQ = 0x5B
ACK = 0x06
REPLY = 0xA5
STATUS = 0xB5
#: Depth of the bridge's receive FIFO (bytes).
RX_FIFO_BYTES = 64


def flit_bytes(config: Config) -> int:
    """Bytes per flit in a frame."""
    return -(-config.flit_width // 8)


def window(config: Config) -> int:
    """Frames a host may send ahead of their acknowledgements without overrunning the FIFO
    (the parser holds one more frame)."""
    return max(1, RX_FIFO_BYTES // (flit_bytes(config) + 2))


def _check_divisor(divisor: object) -> None:
    if type(divisor) is not int or divisor < 4:
        raise ValueError(f"UART clock divisor (clock cycles per bit) must be an integer >= 4, "
                         f"not {divisor!r}")


class _Uart(CheckedComponent):
    @classmethod
    def check(cls, divisor) -> None:
        _check_divisor(divisor)


class UartRx(_Uart):
    """8N1 receiver. ``valid`` pulses for one cycle with ``data`` after a good stop bit.

    ``divisor`` is the number of clock cycles per bit (clock frequency / baud rate, >= 4). The
    line is synchronised with two flip-flops and sampled in the middle of each bit.
    """

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "data": Out(8), "valid": Out(1),
                          "frame_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]
        timer = Signal(range(div))
        bits = Signal(range(9))
        shift = Signal(8)
        m.d.sync += [self.valid.eq(0), self.frame_error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):  # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), shift.eq(Cat(shift[1:], line)),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(line):
                        m.d.sync += [self.data.eq(shift), self.valid.eq(1)]
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                    m.next = "IDLE"
        return m


class UartTx(_Uart):
    """8N1 transmitter with a valid/ready byte input (``ready`` while the line is idle)."""

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"tx": Out(1, init=1), "data": In(8), "valid": In(1),
                          "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        left = Signal(range(11))
        shift = Signal(10, init=0x3FF)
        m.d.comb += [self.tx.eq(shift[0]), self.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.valid):
                m.d.sync += [shift.eq(Cat(Const(0, 1), self.data, Const(1, 1))),
                             left.eq(10), timer.eq(div - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), left.eq(left - 1),
                         timer.eq(div - 1)]
        return m


class HostBridge(ConfiguredComponent):
    """The flit-over-UART bridge (see the module documentation for the framing).

    Members
    -------
    rx : In(1), tx : Out(1)
        The serial lines (idle high).
    w_in : ``Out(LinkSignature(config)).array(rows)``
        To the array's west edge ports, ``w_in[r]`` to row ``r``.
    w_out : ``In(LinkSignature(config)).array(rows)``
        From the array's west edge ports.
    mac_done, mac_skipped, act_written, error : In(rows * cols)
        The array's per-tile pulses and error flags (for the status word).
    """

    def __init__(self, config: Config, divisor: int):
        self.divisor = divisor
        n = config.rows * config.cols
        link = LinkSignature(config)
        members = {"rx": In(1, init=1), "tx": Out(1, init=1),
                   "mac_done": In(n), "mac_skipped": In(n), "act_written": In(n),
                   "error": In(n),
                   "w_in": Out(link).array(config.rows), "w_out": In(link).array(config.rows)}
        super().__init__(config, members)

    @classmethod
    def check(cls, config, divisor) -> None:
        super().check(config)
        _check_divisor(divisor)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        rows = cfg.rows
        nbytes = flit_bytes(cfg)
        width = cfg.flit_width
        m.submodules.urx = urx = UartRx(self.divisor)
        m.submodules.utx = utx = UartTx(self.divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=RX_FIFO_BYTES)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]

        flags = Signal(3)  # bit 1: bad row, bit 2: overrun (bit 0 is live: tile errors)
        m.d.comb += [fifo.w_data.eq(urx.data), fifo.w_en.eq(urx.valid)]
        with m.If(urx.valid & ~fifo.w_rdy):
            m.d.sync += flags[2].eq(1)

        # Counter of the operations a host waits for (MACs, activation writes): the status word.
        count = Signal(32)
        pulses = Cat(self.mac_done, self.mac_skipped, self.act_written)
        m.d.sync += count.eq(count + sum(pulses[i] for i in range(len(pulses))))

        # Receive parser: INJECT frames into the west ports, STATUS_REQ sets a request.
        row = Signal(range(max(rows, 2)))
        bad_row = Signal()
        flit = Signal(nbytes * 8)
        got = Signal(range(nbytes + 1))
        acks = Signal(range(2 * RX_FIFO_BYTES))
        status_req = Signal()
        injected = Signal()
        sent_ack = Signal()
        sent_status = Signal()
        m.d.sync += acks.eq(acks + injected - sent_ack)
        with m.If(sent_status):
            m.d.sync += status_req.eq(0)
        vc = data.View(flit_layout(cfg), flit[:width]).header.vc
        with m.FSM(name="rx_fsm") as rx_fsm:
            with m.State("SYNC"):
                with m.If(fifo.r_rdy):
                    with m.If(fifo.r_data == INJECT):
                        m.next = "ROW"
                    with m.Elif(fifo.r_data == STATUS_REQ):
                        m.d.sync += status_req.eq(1)
            with m.State("ROW"):
                with m.If(fifo.r_rdy):
                    m.d.sync += [row.eq(fifo.r_data), bad_row.eq(fifo.r_data >= rows),
                                 got.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(fifo.r_rdy):
                    m.d.sync += [flit.eq(Cat(flit[8:], fifo.r_data)), got.eq(got + 1)]
                    with m.If(got == nbytes - 1):
                        m.next = "HOLD"
            with m.State("HOLD"):
                with m.If(bad_row):
                    m.d.sync += flags[1].eq(1)
                with m.If(injected):
                    m.next = "SYNC"
        # The combinational outputs are plain expressions of the state, not assignments inside
        # the FSM: a Verilog `always @*` whose inputs never change after time 0 would never be
        # evaluated by Icarus, leaving its outputs undefined.
        in_hold = rx_fsm.ongoing("HOLD")
        row_ready = Cat(self.w_in[r].ready.bit_select(vc, 1) for r in range(rows))
        # A frame naming a missing row is consumed (and credited back) without injecting it.
        m.d.comb += [fifo.r_en.eq(~in_hold),
                     injected.eq(in_hold & (bad_row | row_ready.bit_select(row, 1)))]
        for r in range(rows):
            port = self.w_in[r]
            m.d.comb += [port.valid.eq(in_hold & ~bad_row & (row == r)),
                         port.flit.eq(flit[:width])]

        # Reply capture: one flit at a time, offering the slot to one row per cycle.
        held = Signal(width)
        held_row = Signal(range(max(rows, 2)))
        full = Signal()
        turn = Signal(range(max(rows, 2)))
        took = Signal()
        takes = []
        for r in range(rows):
            port = self.w_out[r]
            offer = ~full & (turn == r)
            m.d.comb += port.ready.eq(offer.replicate(cfg.num_vcs))
            takes.append(offer & port.valid)
            with m.If(offer & port.valid):
                m.d.sync += [held.eq(port.flit), held_row.eq(r), full.eq(1)]
        m.d.comb += took.eq(Cat(takes).any())
        with m.If(~full & ~took):
            m.d.sync += turn.eq(Mux(turn == rows - 1, 0, turn + 1))

        # Transmitter: acknowledgements first, then the status word, then a reply frame.
        out = Signal(8 * (nbytes + 2))
        left = Signal(range(nbytes + 3))
        with m.FSM(name="tx_fsm") as tx_fsm:
            with m.State("IDLE"):
                with m.If(acks != 0):
                    pass  # the ACK byte goes out (below)
                with m.Elif(status_req):
                    m.d.sync += [out.eq(Cat(Const(STATUS, 8), count,
                                            Cat(self.error.any(), flags[1:]), Const(0, 5))),
                                 left.eq(6)]
                    m.next = "SEND"
                with m.Elif(full):
                    m.d.sync += [out.eq(Cat(Const(REPLY, 8), held_row,
                                            Const(0, 8 - len(held_row)), held)),
                                 left.eq(nbytes + 2), full.eq(0)]
                    m.next = "SEND"
            with m.State("SEND"):
                with m.If(utx.ready):
                    m.d.sync += [out.eq(out >> 8), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.next = "IDLE"
        in_idle, in_send = tx_fsm.ongoing("IDLE"), tx_fsm.ongoing("SEND")
        m.d.comb += [utx.valid.eq((in_idle & (acks != 0)) | in_send),
                     utx.data.eq(Mux(in_send, out[:8], ACK)),
                     sent_ack.eq(in_idle & (acks != 0) & utx.ready),
                     sent_status.eq(in_idle & (acks == 0) & status_req)]
        return m
