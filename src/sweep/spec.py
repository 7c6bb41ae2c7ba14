"""The sweep spec: a TOML file, read and validated before anything runs.

Top-level keys (``docs/sweep.md`` has the full reference and an example):

- ``measure``: list of :data:`~wafertile.sweep.measures.MEASUREMENTS` (default ``["run"]``);
- ``fidelity``: one of :data:`~wafertile.sweep.measures.FIDELITIES` or a list of them
  (default ``"rtl"``);
- ``[base]``: parameters fixed for every point (any :data:`~wafertile.config.PARAMETERS`);
- ``[grid]``: parameters varied, each a non-empty list; the configurations are their
  product;
- ``[[points]]``: a list of configurations (parameter tables), each crossed with the grid;
- ``[[workloads]]``: :mod:`~wafertile.sweep.workloads` entries (needed by ``run``);
- ``[run]``, ``[synth]``: the measurements' options;
- ``[[plots]]``: plots drawn at the end (``x``, ``y``, optional ``by`` and ``where``);
- ``skip_invalid``: leave out combinations that :class:`~wafertile.config.Config` rejects
  (default false: such a combination is an error naming the point).

Every problem raises :class:`SpecError` with one line that starts with the spec's path and
names the key, the value and the rule, e.g.
``sweep.toml: [grid] data_width must be one of 8, 16, not 12``.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PARAMETERS, Config, ConfigError
from ..errors import InputError
from ..files import read_text, toml_reason
from .measures import FIDELITIES, MEASUREMENTS
from .results import COLUMNS, check_axes
from .workloads import Workload, parse_workload

__all__ = ["TOP_KEYS", "PlotSpec", "Spec", "SpecError", "load_spec", "parse_spec"]

#: The keys a spec may have at its top level.
TOP_KEYS = ("measure", "fidelity", "base", "grid", "points", "workloads", "run", "synth",
            "plots", "skip_invalid")

_RULES = {r.name: r for r in PARAMETERS}


#: The most configurations ([grid] x [[points]]) one spec may make.
MAX_CONFIGS = 100_000


class SpecError(InputError):
    """A sweep spec was rejected. The message is one line, starting with the spec's path."""


@dataclass(frozen=True)
class PlotSpec:
    """One plot: ``y`` against ``x``, one line per value of ``by``, rows filtered by
    ``where`` (column -> value)."""

    x: str
    y: str
    by: str | None = None
    where: dict[str, Any] = field(default_factory=dict)


@dataclass
class Spec:
    """A validated sweep spec.

    Attributes
    ----------
    path : Path
        The spec file (``"<spec>"`` for a spec made from a dict).
    measure : tuple of str
        The measurements, in the spec's order.
    fidelities : tuple of str
        The fidelities every measurement is taken at.
    configs : list of Config
        Every configuration (base, points and grid combined), validated, without duplicates.
    varying : tuple of str
        The parameters that take more than one value across ``configs``.
    workloads : list of Workload
        Every workload, expanded.
    arrays : dict
        ``digest -> (X, W)`` of the layer-file workloads.
    options : dict
        Measurement name -> its options (defaults filled in).
    plots : list of PlotSpec
        Plots to draw when the sweep ends.
    skipped : list of str
        One line per combination left out by ``skip_invalid``.
    """

    path: Path
    measure: tuple[str, ...]
    fidelities: tuple[str, ...]
    configs: list[Config]
    varying: tuple[str, ...]
    workloads: list[Workload]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    options: dict[str, dict[str, Any]]
    plots: list[PlotSpec]
    skipped: list[str]

    @property
    def layer_workloads(self) -> list[Workload]:
        """The workloads ``run`` takes (all but the GPTs, which are ``train``'s)."""
        return [w for w in self.workloads if w.kind != "gpt"]

    @property
    def gpt_workloads(self) -> list[Workload]:
        """The workloads ``train`` takes."""
        return [w for w in self.workloads if w.kind == "gpt"]


def load_spec(path: str | Path) -> Spec:
    """Read and validate the spec file ``path``.

    Raises
    ------
    SpecError
        If the file cannot be read, is not TOML, or any key or value is wrong (one line).
    """
    path = Path(path)
    try:
        text = read_text(path, f"sweep spec {str(path)!r}")
    except InputError as exc:
        raise SpecError(str(exc)) from None
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # see Config.from_toml
        raise SpecError(f"{path}: not valid TOML: {toml_reason(exc)}") from None
    return parse_spec(data, source=str(path), base=path.parent)


def parse_spec(data: dict[str, Any], *, source: str = "<spec>", base: Path = Path(".")) -> Spec:
    """Validate a spec given as a dict (as TOML reads it).

    Parameters
    ----------
    data : dict
        The spec.
    source : str
        Its name at the start of error messages.
    base : Path
        The directory that layer-file paths are relative to.

    Raises
    ------
    SpecError
        On the first problem, with one line starting with ``source``.
    """
    def fail(message: str) -> SpecError:
        return SpecError(f"{source}: {message}")

    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (allowed: {', '.join(TOP_KEYS)})")
    measure = _measure(data.get("measure", ["run"]), fail)
    fidelities = _fidelities(data.get("fidelity", "rtl"), measure, fail)
    options = {m: _options(m, data.get(m, {}), fail) for m in measure}
    for m in ("run", "synth"):
        if m in data and m not in measure:
            raise fail(f"[{m}] is given but measure does not hold {m!r}")
    skip_invalid = data.get("skip_invalid", False)
    if not isinstance(skip_invalid, bool):
        raise fail(f"skip_invalid must be true or false, not {skip_invalid!r}")
    configs, varying, skipped = _configs(data, skip_invalid, fail)
    workloads, arrays = _workloads(data.get("workloads", []), base, fail)
    gpts = [w for w in workloads if w.kind == "gpt"]
    for m in measure:
        if not MEASUREMENTS[m].per_workload:
            continue
        if not workloads:
            raise fail(f"measure {m!r} needs at least one [[workloads]] entry")
        if m == "train" and not gpts:
            raise fail("measure 'train' needs at least one [[workloads]] entry of kind 'gpt'")
        if m != "train" and len(gpts) == len(workloads):
            raise fail(f"measure {m!r} needs at least one [[workloads]] entry of a layer or "
                       f"network (kind 'gpt' is for measure 'train')")
    if gpts and "train" not in measure:
        raise fail("a [[workloads]] entry of kind 'gpt' needs measure 'train' (a training "
                   "step at wafer scale, predicted)")
    plots = _plots(data.get("plots", []), fail)
    return Spec(Path(source), measure, fidelities, configs, varying, workloads, arrays,
                options, plots, skipped)


def _table(value: Any, what: str, fail) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(f"{what} must be a table, not {value!r}")
    return value


def _list_of_tables(value: Any, what: str, fail) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise fail(f"{what} must be an array of tables ([[{what.strip('[]')}]] entries), "
                   f"not {value!r}")
    return value


def _measure(value: Any, fail) -> tuple[str, ...]:
    names = ", ".join(repr(m) for m in MEASUREMENTS)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise fail(f"measure must be a non-empty list of {names}, not {value!r}")
    for m in value:
        if m not in MEASUREMENTS:
            raise fail(f"measure must hold only {names}, not {m!r}")
    if len(set(value)) != len(value):
        raise fail(f"measure names {next(m for m in value if value.count(m) > 1)!r} twice")
    for m in value:
        missing = [n for n in MEASUREMENTS[m].needs if n not in value]
        if missing:
            raise fail(f"measure {m!r} is computed from {' and '.join(map(repr, missing))}, "
                       f"which measure must hold too")
    return tuple(value)


def _fidelities(value: Any, measure: tuple[str, ...], fail) -> tuple[str, ...]:
    names = ", ".join(repr(f) for f in FIDELITIES)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise fail(f"fidelity must be one of {names} or a non-empty list of them, not []")
    for f in values:
        if f not in FIDELITIES:
            raise fail(f"fidelity must be one of {names}, not {f!r}")
        # a measurement without this fidelity (synth has no model) is taken at rtl
        if not any(f in MEASUREMENTS[m].fidelities for m in measure):
            raise fail(f"measure {', '.join(map(repr, measure))} cannot be taken at fidelity "
                       f"{f!r} (only {', '.join(map(repr, MEASUREMENTS[measure[0]].fidelities))})")
    return tuple(dict.fromkeys(values))


def _options(measure: str, value: Any, fail) -> dict[str, Any]:
    table = _table(value, f"[{measure}]", fail)
    spec = MEASUREMENTS[measure]
    known = {o.name: o for o in spec.options}
    for key, v in table.items():
        if key not in known:
            allowed = ", ".join(known) if known else "none"
            raise fail(f"[{measure}] unknown key {key!r} (allowed: {allowed})")
        if not known[key].accepts(v):
            raise fail(f"[{measure}] {key} {known[key].rule}, not {v!r}")
    out = {**spec.defaults(), **table}
    for o in spec.options:  # 50 and 50.0 MHz are one point (and one id)
        if float in o.kinds:
            out[o.name] = float(out[o.name])
    return out


def _check_value(where: str, key: str, value: Any, fail) -> None:
    """Check one parameter value on its own (its type and rule), as Config words it."""
    if key not in _RULES:
        raise fail(f"{where} unknown parameter {key!r} "
                   f"(known: {', '.join(r.name for r in PARAMETERS)})")
    rule = _RULES[key]
    if type(value) is not rule.kind:
        raise fail(f"{where} {key} must be {rule.kind_text}, not {value!r}")
    if not rule.check(value):
        raise fail(f"{where} {key} {rule.rule}, not {value!r}")


def _parameters(where: str, table: dict[str, Any], fail) -> dict[str, Any]:
    for key, value in table.items():
        _check_value(where, key, value, fail)
    return table


def _configs(data: dict[str, Any], skip_invalid: bool, fail
             ) -> tuple[list[Config], tuple[str, ...], list[str]]:
    base = _parameters("[base]", _table(data.get("base", {}), "[base]", fail), fail)
    grid = _table(data.get("grid", {}), "[grid]", fail)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise fail(f"[grid] {key} must be a non-empty list of values, not {values!r} "
                       f"(a single value goes in [base])")
        for v in values:
            _check_value("[grid]", key, v, fail)
        if len(set(values)) != len(values):
            raise fail(f"[grid] {key} lists {next(v for v in values if values.count(v) > 1)!r} "
                       f"twice")
        if key in base:
            raise fail(f"[grid] {key} is also set in [base]; a parameter is fixed or varied, "
                       f"not both")
    points = [_parameters(f"[[points]] {i + 1}:", p, fail) for i, p in
              enumerate(_list_of_tables(data.get("points", []), "[[points]]", fail))]
    for i, p in enumerate(points):
        both = [k for k in p if k in grid]
        if both:
            raise fail(f"[[points]] {i + 1}: {both[0]} is also in [grid]; a parameter is "
                       f"listed or varied, not both")
    count = max(1, len(points)) * int(np.prod([len(v) for v in grid.values()],
                                               dtype=np.float64))
    if count > MAX_CONFIGS:
        raise fail(f"[grid] and [[points]] make {count:.0f} configurations, more than the "
                   f"{MAX_CONFIGS} a sweep may have; split the sweep into several specs")
    combos = [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]
    configs: dict[Config, None] = {}
    skipped = []
    for p in points or [{}]:
        for combo in combos:
            values = {**base, **p, **combo}
            try:
                configs.setdefault(Config.from_mapping(values, source="the sweep spec"))
            except ConfigError as exc:
                # every parameter the spec gives this point, in the configuration's order
                where = ", ".join(f"{r.name}={values[r.name]!r}" for r in PARAMETERS
                                  if r.name in values) or "the defaults"
                if not skip_invalid:
                    raise fail(f"point ({where}): {exc}; skip_invalid = true leaves such "
                               f"points out") from None
                skipped.append(f"({where}): {exc}")
    if not configs:
        raise fail("every combination of [grid] and [[points]] is invalid (skip_invalid "
                   "left none)")
    varying = tuple(r.name for r in PARAMETERS
                    if len({getattr(c, r.name) for c in configs}) > 1)
    return list(configs), varying, skipped


def _workloads(value: Any, base: Path, fail
               ) -> tuple[list[Workload], dict[str, tuple[np.ndarray, np.ndarray]]]:
    workloads: dict[Workload, None] = {}
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, entry in enumerate(_list_of_tables(value, "[[workloads]]", fail)):
        try:
            made, files = parse_workload(entry, base)
        except ValueError as exc:
            raise fail(f"[[workloads]] {i + 1}: {exc}") from None
        for w in made:
            workloads.setdefault(w)
        arrays.update(files)
    return list(workloads), arrays


def _plots(value: Any, fail) -> list[PlotSpec]:
    out = []
    for i, entry in enumerate(_list_of_tables(value, "[[plots]]", fail)):
        unknown = [k for k in entry if k not in ("x", "y", "by", "where")]
        if unknown:
            raise fail(f"[[plots]] {i + 1}: unknown key {unknown[0]!r} (allowed: x, y, by, "
                       f"where)")
        where = entry.get("where", {})
        if not isinstance(where, dict):
            raise fail(f"[[plots]] {i + 1}: where must be a table (column = value), not "
                       f"{where!r}")
        for key in ("x", "y"):
            if not isinstance(entry.get(key), str):
                raise fail(f"[[plots]] {i + 1}: {key} must be a column name, not "
                           f"{entry.get(key)!r}")
        try:
            check_axes(COLUMNS, entry["x"], entry["y"], entry.get("by"), where)
        except ValueError as exc:
            raise fail(f"[[plots]] {i + 1}: {exc}") from None
        out.append(PlotSpec(entry["x"], entry["y"], entry.get("by"), where))
    return out
