"""Plots of a sweep's table (matplotlib, drawn off-screen into PNG files).

- :func:`plot_metric`: any column against any other (``--x density --y speedup --by
  router_arch``): one colour per value of ``by``, one line per combination of the other
  parameters and workload fields that vary (rows can be pinned with ``where``). The rows are
  those of the first measurement (run, synth, derived) that has both ``x`` and ``y``.
- :func:`plot_pareto`: time per inference (``time_us``) against area (``luts``) of the
  ``derived`` rows, every point drawn and the Pareto front (no other point is both smaller
  and faster) joined and labelled, one front per value of ``by`` (default: per workload).

Figures are :class:`matplotlib.figure.Figure` objects saved straight to PNG: no pyplot, no
display, nothing global.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..files import write_bytes
from .measures import MEASUREMENTS
from .results import COLUMNS, PARAMETER_COLUMNS, check_axes
from .workloads import VARYING_COLUMNS

__all__ = ["default_plots", "pareto_front", "plot_metric", "plot_pareto"]

_UNITS = {c.name: c.unit for m in MEASUREMENTS.values() for c in m.columns}
_WORKLOAD_FIELDS = VARYING_COLUMNS
#: The Pareto plots: measurement -> (x: cost, y: time, title, file name, how to get them).
PARETO = {
    "derived": ("luts", "time_us", "time per inference vs area",
                "measure = ['run', 'synth', 'derived']"),
    "train": ("energy_j", "step_seconds", "training step time vs energy",
              "measure = ['train'] and a workload of kind 'gpt'"),
}


def _label(column: str) -> str:
    unit = _UNITS.get(column, "")
    return f"{column} ({unit})" if unit and unit not in ("bool", "") else column


def _filter(df: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    for key, value in where.items():
        column = df[key]
        numeric = pd.to_numeric(column, errors="coerce")
        try:
            wanted = float(value)
        except (TypeError, ValueError):
            wanted = None
        if wanted is not None and numeric.notna().any():
            df = df[numeric == wanted]
        else:
            df = df[column.astype(str) == str(value)]
    return df


def _rows_for(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The ok rows of the first measurement that has values of both ``x`` and ``y``."""
    ok = df[df["status"] == "ok"]
    for measurement in MEASUREMENTS:
        rows = ok[ok["measurement"] == measurement]
        rows = rows[rows[x].notna() & pd.to_numeric(rows[y], errors="coerce").notna()]
        if not rows.empty:
            return rows
    raise ValueError(f"no ok row of the table has values of both {x!r} and {y!r}")


def _file_name(*parts: str) -> str:
    return "-".join(p.replace("/", "_").replace(" ", "_") for p in parts if p) + ".png"


def plot_metric(df: pd.DataFrame, x: str, y: str, out_dir: Path, *, by: str | None = None,
                where: Mapping[str, Any] | None = None) -> Path:
    """Plot column ``y`` against column ``x`` of the table ``df`` into ``out_dir``; return
    the PNG's path (``<y>-vs-<x>[-by-<by>][-<k>=<v>...].png``).

    Raises
    ------
    ValueError
        If a name is not a column, or no row has both values.
    """
    where = dict(where or {})
    check_axes(COLUMNS, x, y, by, where)
    rows = _rows_for(_filter(df, where), x, y).copy()
    rows[y] = pd.to_numeric(rows[y])
    others = [c for c in (*PARAMETER_COLUMNS, *_WORKLOAD_FIELDS)
              if c not in (x, by) and rows[c].nunique(dropna=True) > 1]
    numeric_x = pd.to_numeric(rows[x], errors="coerce").notna().all()
    if numeric_x:
        rows[x] = pd.to_numeric(rows[x])
        positions = None
    else:
        positions = {v: i for i, v in enumerate(sorted(rows[x].astype(str).unique()))}
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    colours: dict[Any, str] = {}
    labelled: set[Any] = set()
    names = [*([by] if by else []), *others]
    groups = list(rows.groupby(names, dropna=False, sort=True)) if names else [((), rows)]
    many = len(groups) > 12
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        colour_key = key[0] if by else None
        colour = colours.setdefault(colour_key, f"C{len(colours) % 10}")
        if many:  # the legend names the colours only
            label = f"{by}={colour_key}" if by and colour_key not in labelled else None
            labelled.add(colour_key)
        else:
            label = ", ".join(f"{k}={v}" for k, v in zip(names, key, strict=True)) or None
        line = group.groupby(x, sort=True)[y].mean()
        xs = list(line.index) if positions is None else [positions[str(v)] for v in line.index]
        ax.plot(xs, list(line.values), marker="o", color=colour, label=label,
                alpha=0.5 if many else 1.0)
    if positions is not None:
        ax.set_xticks(list(positions.values()), list(positions))
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    title = f"{y} vs {x}" + (f" by {by}" if by else "")
    if where:
        title += " (" + ", ".join(f"{k}={v}" for k, v in where.items()) + ")"
    if many and others:
        title += f"\none line per {', '.join(others)}"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize="small")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / _file_name(y, "vs", x, *(["by", by] if by else []),
                                *(f"{k}={v}" for k, v in where.items()))
    _save(fig, path)
    return path


def _save(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG to ``path`` through a temporary file (a link at ``path`` is
    replaced, not followed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def pareto_front(area: list[float], time: list[float]) -> list[int]:
    """Indices of the points that no other point beats on both ``area`` and ``time``
    (smaller is better), in order of area."""
    order = sorted(range(len(area)), key=lambda i: (area[i], time[i]))
    front, best = [], float("inf")
    for i in order:
        if time[i] < best:
            front.append(i)
            best = time[i]
    return front


def plot_pareto(df: pd.DataFrame, out_dir: Path, *, by: str | None = None,
                measurement: str = "derived") -> Path:
    """Plot time per inference against LUTs of the ``derived`` rows (``measurement =
    "train"``: a training step's time against its energy, :data:`PARETO`), with the Pareto
    front per value of ``by`` (default: per workload, when several); return the PNG's path
    (``pareto[-train][-by-<by>].png``).

    Raises
    ------
    ValueError
        If ``by`` is not a column, or no derived row has both values.
    """
    cost, when, title, needs = PARETO[measurement]
    check_axes(COLUMNS, cost, when, by, {})
    rows = df[(df["measurement"] == measurement) & (df["status"] == "ok")].copy()
    for c in (cost, when):
        rows[c] = pd.to_numeric(rows[c], errors="coerce")
    rows = rows.dropna(subset=[cost, when])
    if rows.empty:
        raise ValueError(f"no ok {measurement!r} row has both {cost} and {when} (the sweep "
                         f"needs {needs})")
    # One front per workload: time is only comparable on the same job.
    keys = [by] if by else [c for c in _WORKLOAD_FIELDS if rows[c].nunique() > 1]
    params = [c for c in PARAMETER_COLUMNS if rows[c].nunique() > 1 and c != by]
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    groups = rows.groupby(keys, sort=True) if keys else [((), rows)]
    for n, (value, group) in enumerate(groups):
        colour = f"C{n % 10}"
        area, time = list(group[cost]), list(group[when])
        value = value if isinstance(value, tuple) else (value,)
        name = ", ".join(f"{k}={v}" for k, v in zip(keys, value, strict=True)) or "points"
        ax.scatter(area, time, color=colour, alpha=0.4, label=name)
        front = pareto_front(area, time)
        ax.plot([area[i] for i in front], [time[i] for i in front], color=colour,
                drawstyle="steps-post", marker="o")
        for i in front:
            text = ", ".join(f"{c}={group.iloc[i][c]}" for c in params)
            if text:
                ax.annotate(text, (area[i], time[i]), fontsize="x-small",
                            xytext=(4, 4), textcoords="offset points")
    estimate = rows["estimate"].astype(str).eq("True").any()
    ax.set_xlabel(_label(cost) + (" (estimate: one tile x tiles)" if estimate else ""))
    ax.set_ylabel(_label(when))
    ax.set_title(f"{title}: Pareto front" + (f" by {by}" if by else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / _file_name("pareto", *([] if measurement == "derived" else
                                            [measurement]), *(["by", by] if by else []))
    _save(fig, path)
    return path


def default_plots(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The plots a sweep draws without being asked: the Pareto front when the table has
    ``derived`` rows (and a training step's time against its energy when it has ``train``
    rows); for ``run`` rows, cycles and speedup against ``density`` (or the first
    parameter that varies) by the first parameter that varies besides it."""
    out = []
    ok = df[df["status"] == "ok"]
    for measurement in PARETO:
        if (ok["measurement"] == measurement).any():
            out.append(plot_pareto(df, out_dir, measurement=measurement))
    runs = ok[ok["measurement"] == "run"]
    varying = [c for c in ("density", *PARAMETER_COLUMNS) if runs[c].nunique() > 1]
    if not runs.empty and varying:
        x, rest = varying[0], varying[1:]
        for y in ("cycles", "speedup"):
            if runs[y].notna().any():
                out.append(plot_metric(df, x, y, out_dir, by=rest[0] if rest else None))
    return out
