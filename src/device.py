"""Host side of the flit-over-UART bridge: run a compiled layer on a board.

The framing is defined by :mod:`wafertile.hdl.uart` (and ``docs/fpga.md``). The layer is
compiled by the same :func:`~wafertile.stream.compile_layer` that the simulator runs, and
played by :func:`drive`, a generator that knows nothing about the transport: it yields
``("send", bytes)`` and ``("recv", None)`` requests and receives the bytes that arrived (maybe
none) for each ``recv``. :func:`run_on_device` plays it on a serial port (pyserial); the cocotb
bridge test plays the very same generator on a simulated UART, so the host code a board runs is
the code the regression verifies.

Phases end as on the simulator: a load or read phase when all its replies are back; a stream
or hand-off phase when the bridge's operation counter (the ``mac_done``, ``mac_skipped`` and
``act_written`` pulses of every tile, read with a status request) has advanced by the MACs
and activation writes of every phase so far.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Config
from .errors import InputError
from .stream import LayerProgram

__all__ = ["DeviceError", "Protocol", "drive", "run_on_device"]

Request = tuple[str, bytes | None]


class DeviceError(RuntimeError):
    """The board did not answer as the protocol says (the message says what was pending)."""


class Protocol:
    """Frames to the bridge and a parser of its byte stream (no I/O)."""

    def __init__(self, config: Config):
        from .hdl.flit import flit_layout
        from .hdl.uart import flit_bytes, window

        self.config = config
        self.layout = flit_layout(config)
        self.nbytes = flit_bytes(config)
        self.window = window(config)
        self._buf = bytearray()

    def inject(self, row: int, flit: dict[str, Any] | int) -> bytes:
        """The frame that injects ``flit`` (nested field values, or the packed word) at the
        west port of ``row``."""
        from .hdl.flit import pack
        from .hdl.uart import INJECT

        if not 0 <= row < self.config.rows:
            raise ValueError(f"row {row} is not a west port of a {self.config.rows}-row array")
        word = flit if isinstance(flit, int) else pack(self.layout, flit)
        return bytes([INJECT, row]) + word.to_bytes(self.nbytes, "little")

    @staticmethod
    def status_request() -> bytes:
        from .hdl.uart import STATUS_REQ
        return bytes([STATUS_REQ])

    def feed(self, data: bytes) -> list[tuple]:
        """Parse ``data``; return the complete events: ``("ack",)``, ``("reply", row,
        payload dict)``, ``("status", mac_count, flags)``."""
        from .hdl.flit import unpack
        from .hdl.uart import ACK, REPLY, STATUS

        self._buf += data
        events: list[tuple] = []
        buf = self._buf
        while buf:
            head = buf[0]
            if head == ACK:
                events.append(("ack",))
                del buf[:1]
            elif head == REPLY:
                if len(buf) < self.nbytes + 2:
                    break
                word = int.from_bytes(buf[2:2 + self.nbytes], "little")
                events.append(("reply", buf[1], unpack(self.layout, word)["payload"]))
                del buf[:self.nbytes + 2]
            elif head == STATUS:
                if len(buf) < 6:
                    break
                events.append(("status", int.from_bytes(buf[1:5], "little"), buf[5]))
                del buf[:6]
            else:
                raise DeviceError(f"unexpected byte 0x{head:02x} from the board (not an ack, "
                                  f"reply or status frame): wrong baud rate or another design?")
        return events


@dataclass
class _State:
    outstanding: int = 0
    status: tuple[int, int] | None = None
    replies: dict[int, list[dict]] | None = None


def drive(config: Config, program: LayerProgram, *, idle_limit: int = 200
          ) -> Generator[Request, bytes | None, tuple[np.ndarray, dict[str, Any]]]:
    """Play ``program`` through the bridge; return ``(Y, stats)``.

    ``idle_limit``: consecutive ``recv`` requests that may return nothing while something is
    awaited before :class:`DeviceError` is raised.

    ``stats``: ``frames`` sent, ``macs`` (the bridge's count less the activation writes it
    counted), ``flags`` of the last status.
    """
    from .sim.models import collect_outputs

    proto = Protocol(config)
    state = _State()
    frames = 0

    def handle(data: bytes | None) -> None:
        for event in proto.feed(data or b""):
            if event[0] == "ack":
                if state.outstanding == 0:
                    raise DeviceError("the board acknowledged a frame that was not sent")
                state.outstanding -= 1
            elif event[0] == "reply":
                if state.replies is None or event[1] not in state.replies:
                    raise DeviceError(f"unexpected reply at row {event[1]}: {event[2]}")
                state.replies[event[1]].append(event[2])
            else:
                state.status = (event[1], event[2])

    def wait(what: str, done) -> Generator[Request, bytes | None, None]:
        idle = 0
        while not done():
            data = yield ("recv", None)
            idle = 0 if data else idle + 1
            if idle > idle_limit:
                raise DeviceError(f"no answer from the board while waiting for {what} "
                                  f"({state.outstanding} frames unacknowledged)")
            handle(data)

    def status() -> Generator[Request, bytes | None, tuple[int, int]]:
        state.status = None
        yield ("send", proto.status_request())
        yield from wait("a status word", lambda: state.status is not None)
        return state.status

    B, I, _ = program.shape
    y_out = np.zeros((B, I), dtype=np.int64)
    base, _ = yield from status()
    expected = writes = 0
    win = proto.window
    for phase in program.phases:
        state.replies = {r: [] for r in range(config.rows)}
        words = phase.words(proto.layout)
        for row, packed in zip(phase.port.tolist(), words, strict=True):
            if state.outstanding >= win:
                yield from wait("frame acknowledgements", lambda: state.outstanding < win)
            state.outstanding += 1
            frames += 1
            yield ("send", proto.inject(row, int.from_bytes(packed.tobytes(), "little")))
        yield from wait("frame acknowledgements", lambda: state.outstanding == 0)
        expected += phase.expected_macs + phase.expected_writes
        writes += phase.expected_writes
        if phase.kind in ("stream", "handoff"):
            idle = 0
            while True:
                count, _flags = yield from status()
                done = (count - base) % (1 << 32)
                if done == expected % (1 << 32):
                    break
                if done > expected:
                    raise DeviceError(f"the tiles executed {done} operations, the program "
                                      f"has {expected}")
                idle += 1
                if idle > idle_limit:
                    raise DeviceError(f"the tiles executed {done} of {expected} operations "
                                      f"and stopped")
        else:
            total = phase.expected_replies
            yield from wait(f"{total} replies of a {phase.kind} phase",
                            lambda t=total: sum(map(len, state.replies.values())) >= t)
        collect_outputs(phase, state.replies, y_out)
    count, flags = yield from status()
    return y_out, {"frames": frames, "macs": (count - base) % (1 << 32) - writes,
                   "flags": flags}


def run_on_device(config: Config, program: LayerProgram, port: str, *, baud: int = 115200,
                  timeout: float = 10.0) -> tuple[np.ndarray, dict[str, Any]]:
    """Play ``program`` on a board whose bridge is on serial ``port``.

    Raises
    ------
    InputError
        If ``baud`` is not a positive integer, or a rate the serial port refuses.
    DeviceError
        If the port cannot be opened or the board does not answer as the protocol says.
    """
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise InputError(f"baud must be a positive integer (bits per second), not {baud!r}")
    try:
        import serial
    except ImportError as exc:  # pragma: no cover - pyserial is a dependency
        raise DeviceError("pyserial is not installed (pip install pyserial)") from exc
    poll = 0.05
    try:
        link = serial.Serial(port, baud, timeout=poll)
    except ValueError as exc:  # a rate the port does not support
        raise InputError(f"cannot open serial port {port} at {baud} baud: {exc}") from None
    except (serial.SerialException, OSError) as exc:
        raise DeviceError(f"cannot open serial port {port}: {exc}") from None
    start = time.monotonic()
    with link:
        link.reset_input_buffer()
        gen = drive(config, program, idle_limit=max(1, int(timeout / poll)))
        request = next(gen)
        while True:
            try:
                if request[0] == "send":
                    link.write(request[1])
                    request = gen.send(None)
                else:
                    request = gen.send(link.read(max(1, link.in_waiting)))
            except StopIteration as stop:
                y, stats = stop.value
                break
    stats["wall_seconds"] = time.monotonic() - start
    return y, stats
