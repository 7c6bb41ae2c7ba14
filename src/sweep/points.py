"""The points of a sweep: every (configuration, workload, measurement, fidelity) of a spec,
each with a stable id.

A point's id is a hash of everything that decides its result: the whole configuration,
the workload (for a layer file, its content), the measurement, the fidelity and the
measurement's options. The same point in another sweep, or in the same sweep run again, has
the same id; that is how ``--resume`` knows what is done. A ``synth`` point has no workload
(one per configuration); a ``derived`` point names the ``run`` and ``synth`` points it is
computed from.

:func:`expand` orders the points for running: the long ``synth`` points first, then the
``run`` points with consecutive points on different configurations, so that workers build
different designs at the same time instead of waiting for each other's build.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from .measures import MEASUREMENTS
from .spec import Spec
from .workloads import VARYING_COLUMNS, Workload

__all__ = ["Point", "expand", "point_id"]


@dataclass(frozen=True)
class Point:
    """One point of a sweep: what a worker (or, for ``derived``, the driver) measures.

    Attributes
    ----------
    id : str
        12 hex digits, :func:`point_id`.
    measurement, fidelity : str
        What is taken, and how.
    config : Config
        The configuration.
    workload : Workload or None
        The workload (None for per-configuration measurements: ``synth``).
    options : dict
        The measurement's options (``derived``: ``{"run": ..., "synth": ...}``).
    label : str
        A short description for listings and progress: the measurement, the parameters that
        vary in the sweep, the workload.
    inputs : tuple of str
        For ``derived``: the ids of its ``run`` and ``synth`` points.
    """

    id: str
    measurement: str
    fidelity: str
    config: Config
    workload: Workload | None
    options: dict[str, Any] = field(hash=False)
    label: str = ""
    inputs: tuple[str, ...] = ()

    @property
    def estimate(self) -> bool:
        """True when the figures are scaled from one tile (synth mode ``tile``)."""
        if self.measurement == "synth":
            return self.options["mode"] == "tile"
        if self.measurement == "derived":
            return self.options["synth"]["mode"] == "tile"
        return False

    def columns(self) -> dict[str, Any]:
        """The row's identity, parameter and workload columns."""
        out: dict[str, Any] = {"id": self.id, "measurement": self.measurement,
                               "fidelity": self.fidelity, "estimate": self.estimate}
        out.update(self.config.as_dict())
        if self.workload is not None:
            out.update(self.workload.columns(self.config))
        return out


def point_id(measurement: str, fidelity: str, config: Config, workload: Workload | None,
             options: dict[str, Any]) -> str:
    """The stable id of a point: the first 12 hex digits of a SHA-256 of everything that
    decides its result."""
    what = {"measurement": measurement, "fidelity": fidelity, "config": config.as_dict(),
            "workload": None if workload is None else workload.identity(), "options": options}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def _labeller(spec: Spec):
    """A function (config, workload) -> the short text that tells points apart."""
    fields = ("name", *VARYING_COLUMNS[1:])  # the workload column is its name
    wvary = [f for f in fields if len({getattr(w, f) for w in spec.workloads}) > 1]

    def label(config: Config, workload: Workload | None) -> str:
        parts = [f"{k}={getattr(config, k)}" for k in spec.varying]
        for f in wvary if workload is not None else ():
            value = getattr(workload, f)
            if f == "name":
                parts.append(value)
            else:
                parts.append(f"{f}={value:g}" if isinstance(value, float) else f"{f}={value}")
        return " ".join(parts) or "the one configuration"

    return label


def expand(spec: Spec) -> list[Point]:
    """Every point of ``spec``, in running order (see the module's docstring)."""
    label = _labeller(spec)
    points: list[Point] = []
    synths: dict[tuple, Point] = {}
    for fidelity in spec.fidelities:
        by_key: dict[tuple, Point] = {}
        if "synth" in spec.measure:
            opts = spec.options["synth"]
            # a fidelity synth does not have (the model) takes synth at rtl, once
            taken = fidelity if fidelity in MEASUREMENTS["synth"].fidelities else "rtl"
            for config in spec.configs:
                p = synths.get((taken, config))
                if p is None:
                    p = Point(point_id("synth", taken, config, None, opts), "synth", taken,
                              config, None, opts, f"synth {label(config, None)}")
                    synths[(taken, config)] = p
                    points.append(p)
                by_key[("synth", config)] = p
        if "run" in spec.measure:
            opts = spec.options["run"]
            for workload in spec.layer_workloads:
                for config in spec.configs:
                    p = Point(point_id("run", fidelity, config, workload, opts), "run",
                              fidelity, config, workload, opts,
                              f"run {label(config, workload)}")
                    by_key[("run", config, workload)] = p
                    points.append(p)
        if "train" in spec.measure and fidelity in MEASUREMENTS["train"].fidelities:
            for workload in spec.gpt_workloads:
                for config in spec.configs:
                    points.append(Point(
                        point_id("train", fidelity, config, workload, {}), "train", fidelity,
                        config, workload, {}, f"train {label(config, workload)}"))
        if "derived" in spec.measure:
            opts = {"run": spec.options["run"], "synth": spec.options["synth"]}
            for workload in spec.layer_workloads:
                for config in spec.configs:
                    inputs = (by_key[("run", config, workload)].id,
                              by_key[("synth", config)].id)
                    points.append(Point(
                        point_id("derived", fidelity, config, workload, opts), "derived",
                        fidelity, config, workload, opts, f"derived {label(config, workload)}",
                        inputs))
    return points
