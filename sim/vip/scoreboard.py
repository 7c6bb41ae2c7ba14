"""Scoreboards: what a bench observed, checked against the numpy models of
:mod:`wafertile.sim.models`.

- :class:`NocScoreboard`: flits injected into and delivered by a router or a mesh, against
  :class:`~wafertile.sim.models.NocModel` (lost, duplicated, misrouted, reordered);
- :class:`CoreScoreboard`: the tile core's output flits and their tags, in order, against
  :class:`~wafertile.sim.models.CoreModel`;
- :class:`LayerScoreboard`: the replies of a compiled layer program, phase by phase, placed
  into Y, against a reference Y.

Each collects error messages; :meth:`Scoreboard.assert_ok` fails with the first of them and
the seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ...config import Config
from ...hdl.flit import payload_layout, unpack
from ..models import CoreModel, Endpoint, NocModel, collect_outputs

__all__ = ["CoreScoreboard", "LayerScoreboard", "NocScoreboard", "Scoreboard"]


class Scoreboard:
    """Error messages, and a failing assertion that shows them."""

    def __init__(self):
        self.errors: list[str] = []

    def check(self) -> list[str]:
        """Every error found so far (subclasses compare against their model here)."""
        return list(self.errors)

    def assert_ok(self, where: str = "") -> None:
        errors = self.check()
        assert not errors, f"{len(errors)} errors {where}:\n" + "\n".join(errors[:10])


class NocScoreboard(Scoreboard):
    """Injections into and deliveries out of a router or mesh, checked by ``model``.

    Call :meth:`sent` when a source's flit is taken and :meth:`received` when an endpoint
    takes a delivery (e.g. as the ``on_sent`` / ``on_received`` of link parts).
    """

    def __init__(self, model: NocModel):
        super().__init__()
        self.model = model
        self.injected: list[tuple[Endpoint, int]] = []
        self.delivered: dict[Endpoint, list[int]] = defaultdict(list)
        self.sent_cycle: dict[tuple[Endpoint, int], int] = {}
        self.received_cycle: dict[tuple[Endpoint, int], int] = {}
        self._expected = 0

    def sent(self, source: Endpoint, word: int, cycle: int | None = None) -> None:
        source = Endpoint.of(*source)
        self.injected.append((source, word))
        self._expected += len(self.model.destinations(source, word))
        if cycle is not None:
            self.sent_cycle[source, word] = cycle

    def received(self, dest: Endpoint, word: int, cycle: int | None = None) -> None:
        dest = Endpoint.of(*dest)
        self.delivered[dest].append(word)
        if cycle is not None:
            self.received_cycle.setdefault((dest, word), cycle)

    @property
    def outstanding(self) -> int:
        """Deliveries the model still expects (0 when everything sent has arrived)."""
        return self._expected - sum(len(v) for v in self.delivered.values())

    def check(self) -> list[str]:
        return self.errors + self.model.check(self.injected, self.delivered)


class CoreScoreboard(Scoreboard):
    """The tile core's outputs and ``o_tag`` values, in order, against a
    :class:`~wafertile.sim.models.CoreModel` run of the same input flits."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.layout = payload_layout(config)
        self.outputs: list[dict[str, Any]] = []
        self.tags: list[int] = []
        self.mac_done = 0
        self.mac_skipped = 0

    def received(self, word: int, tag: int) -> None:
        self.outputs.append(unpack(self.layout, word))
        self.tags.append(tag)

    def compare(self, flits: Iterable[Mapping[str, Any]], *, error: bool) -> CoreModel:
        """Run the model on ``flits`` and record every difference from what was received
        (output flits, tags, MAC counts, the error output)."""
        model = CoreModel(self.config)
        ref = model.run(flits)
        if len(self.outputs) != len(ref.outputs):
            self.errors.append(f"core emitted {len(self.outputs)} flits, model "
                               f"{len(ref.outputs)}")
        for n, (g, r) in enumerate(zip(self.outputs, ref.outputs, strict=False)):
            if g != r:
                self.errors.append(f"output flit {n}: core {g}, model {r}")
        if self.tags != ref.tags[:len(self.tags)] or len(self.tags) != len(ref.tags):
            self.errors.append("o_tag differs from the requests' data fields")
        for name in ("mac_done", "mac_skipped"):
            if getattr(self, name) != getattr(ref, name):
                self.errors.append(f"{name} pulses {getattr(self, name)}, model "
                                   f"{getattr(ref, name)}")
        if bool(error) != ref.error:
            self.errors.append(f"error output {int(error)}, model {int(ref.error)}")
        return model


class LayerScoreboard(Scoreboard):
    """Replies of a compiled layer program at the west edge, phase by phase, into Y.

    Call :meth:`received` with each reply flit's payload at its row, :meth:`end_phase` when a
    phase is over (every expected reply must have come, none other), and :meth:`compare`
    with the reference Y at the end.
    """

    def __init__(self, config: Config, shape: tuple[int, int]):
        super().__init__()
        self.config = config
        self.y = np.zeros(shape, dtype=np.int64)
        self.replies: dict[int, list[dict]] = {r: [] for r in range(config.rows)}

    def received(self, row: int, payload: dict) -> None:
        self.replies[row].append(payload)

    @property
    def count(self) -> int:
        return sum(map(len, self.replies.values()))

    def end_phase(self, phase) -> None:
        collect_outputs(phase, self.replies, self.y)
        for r in self.replies.values():
            r.clear()

    def compare(self, expected: np.ndarray, *, seed: int | None = None) -> None:
        bad = np.argwhere(self.y != expected)
        if bad.size:
            first = tuple(bad[0])
            self.errors.append(f"{len(bad)} of {expected.size} outputs differ"
                               f"{'' if seed is None else f' (seed {seed})'}, first Y{first}: "
                               f"array {self.y[first]}, numpy {expected[first]}")
