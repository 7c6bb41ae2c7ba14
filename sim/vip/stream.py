"""cocotb parts for an Amaranth stream (``<name>__valid``, ``__ready``, ``__payload``): the tile
core's operation input ``i`` and its output ``o``.

- :class:`StreamSource` offers payload words; once ``valid`` is high it holds, with the same
  payload, until the transfer (the stream rule); it counts the cycles it waited.
- :class:`StreamSink` takes words, with ``ready`` low in the cycles its backpressure generator
  says, and checks the stream rule on the sender: a ``valid`` word is never withdrawn or
  changed before it is taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .env import Part, Source
from .pause import never
from .signals import Element

__all__ = ["StreamSink", "StreamSource"]


class _Stream:
    """The three elements of a stream."""

    def __init__(self, dut, name: str):
        self.valid = Element(getattr(dut, f"{name}__valid"), 1)
        self.ready = Element(getattr(dut, f"{name}__ready"), 1)
        payload = getattr(dut, f"{name}__payload")
        self.payload = Element(payload, len(payload))


class StreamSource(Source):
    """Offers integer payloads on stream ``name`` of the DUT; once ``valid`` is high it holds,
    with the same payload, until the transfer.

    Parameters
    ----------
    pause : iterator of bool, optional
        Before offering each word, skip the cycles for which it yields True.
    on_sent : callable, optional
        Called with each word in the cycle it is taken.

    See :class:`~.env.Source` for ``send``, ``idle_now``, ``sent`` and ``stall_cycles``.
    """

    def __init__(self, dut, name: str, *, pause: Iterator[bool] | None = None,
                 on_sent: Callable[[int], None] | None = None):
        self.stream = _Stream(dut, name)
        super().__init__(dut, name, self.stream.valid, self.stream.payload, pause=pause,
                         on_sent=on_sent)

    def accepts(self, word: int) -> bool:
        return bool(self.stream.ready.get())


class StreamSink(Part):
    """Takes integer payloads from stream ``name`` of the DUT.

    Parameters
    ----------
    backpressure : iterator of bool, optional
        True: ``ready`` low in that cycle.
    on_received : callable, optional
        Called with each word in the cycle it is taken (in the ReadOnly phase, so the
        callback may read other outputs of the same cycle).

    Attributes
    ----------
    received : int
        Words taken.
    protocol_errors : list of str
        Breaches of the stream rule by the DUT.
    """

    def __init__(self, dut, name: str, *, backpressure: Iterator[bool] | None = None,
                 on_received: Callable[[int], None] | None = None):
        super().__init__(dut, name)
        stream = _Stream(dut, name)
        self.valid, self.ready, self.payload = stream.valid, stream.ready, stream.payload
        self.backpressure = backpressure if backpressure is not None else never()
        self.on_received = on_received
        self.received = 0
        self.protocol_errors: list[str] = []
        self._ready_now = False
        self._pending: int | None = None  # offered but not taken in the previous cycle

    def idle(self) -> None:
        self.ready.set(0)
        self._ready_now = False

    def drive(self) -> None:
        self._ready_now = not next(self.backpressure)
        self.ready.set(int(self._ready_now))

    def sample(self) -> None:
        if self.valid.get():
            word = self.payload.get()
            if self._pending is not None and word != self._pending:
                self.protocol_errors.append(
                    f"{self.name}: payload changed from {self._pending:#x} to {word:#x} while "
                    f"valid")
            if self._ready_now:
                self._pending = None
                self.received += 1
                self.log.debug("received %#x", word)
                if self.on_received is not None:
                    self.on_received(word)
            else:
                self._pending = word
        elif self._pending is not None:
            self.protocol_errors.append(f"{self.name}: valid dropped with payload "
                                        f"{self._pending:#x} untaken")
            self._pending = None
