"""Functional coverage: cover groups of points and crosses with named bins, counted in every
process that samples them (the pytest process and each simulator's embedded Python) and merged
into one report.

A :class:`Covergroup` declares its bins up front, so that a report can list the *holes* (bins
never hit) of groups that were never sampled at all. :meth:`Covergroup.sample` takes one value
(a bin name) per point; every cross whose points are all given is sampled with them, unless
its ``ignore`` rule says the combination cannot happen (an ignored combination is not a bin).

When ``$WAFERTILE_COVERAGE_DIR`` is set, a process writes its counts there as it exits
(``cov-<pid>-<n>.json``); :func:`merge` adds such files and :func:`report` turns the sum into
bins hit and holes per group, point and cross, as a JSON-ready dict, and :func:`format_text`
as text. The pytest plugin in ``tests/conftest.py`` does that after every run
(``docs/verification.md``, "Functional coverage").

Why not cocotb-coverage: its database lives in one process and knows only the bins that were
sampled in it, while a wafertile regression is dozens of simulator processes whose holes are
the point of the report.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["GROUPS", "Covergroup", "collecting_here", "counts", "dump", "format_text", "load",
           "merge", "report"]

#: Every cover group declared in this process, by name.
GROUPS: dict[str, Covergroup] = {}
FORMAT = "wafertile-coverage/1"
SEP = " x "  # between the point bins of a cross bin


class Covergroup:
    """Points and crosses with declared bins, and their hit counts in this process.

    Parameters
    ----------
    name : str
        Unique among the groups of a process.
    points : mapping of str to sequence of str
        Each point's bins.
    crosses : mapping of str to (sequence of str, callable or None)
        Each cross: the points it crosses and an ``ignore(**bins)`` rule that is true for
        the combinations that cannot happen (they are not bins).
    doc : str
        What the group samples, for the report.
    registry : dict, optional
        Where the group is declared (default :data:`GROUPS`, the one the report covers).
    """

    def __init__(self, name: str, points: Mapping[str, Sequence[str]], *,
                 crosses: Mapping[str, tuple[Sequence[str],
                                             Callable[..., bool] | None]] | None = None,
                 doc: str = "", registry: dict[str, Covergroup] | None = None):
        registry = GROUPS if registry is None else registry
        if name in registry:
            raise ValueError(f"a cover group named {name!r} exists already")
        self.name, self.doc = name, doc
        self.points = {p: [str(b) for b in bins] for p, bins in points.items()}
        self.crosses: dict[str, tuple[tuple[str, ...], list[str]]] = {}
        for cname, (over, ignore) in (crosses or {}).items():
            unknown = [p for p in over if p not in self.points]
            if unknown:
                raise ValueError(f"cross {cname!r} of group {name!r} names unknown points "
                                 f"{unknown}")
            bins = [SEP.join(combo) for combo in itertools.product(
                *(self.points[p] for p in over))
                if ignore is None or not ignore(**dict(zip(over, combo, strict=True)))]
            self.crosses[cname] = (tuple(over), bins)
        self.hits: dict[str, Counter] = {item: Counter() for item in self.items()}
        self._legal = {item: set(bins) for item, bins in self.items().items()}
        registry[name] = self

    def items(self) -> dict[str, list[str]]:
        """Every point and cross with its bins."""
        return {**self.points, **{c: bins for c, (_, bins) in self.crosses.items()}}

    def sample(self, **values: str) -> None:
        """Count one observation: a bin name per point (points left out are not sampled, nor
        the crosses over them). A value that is no bin of its point is an error (the cover
        model and the bench disagree); a cross combination its ``ignore`` rule excludes is
        not counted."""
        for point, value in values.items():
            if point not in self.points:
                raise ValueError(f"cover group {self.name} has no point {point!r} (points: "
                                 f"{', '.join(self.points)})")
            if value not in self._legal[point]:
                raise ValueError(f"cover group {self.name}: {value!r} is not a bin of point "
                                 f"{point!r} (bins: {', '.join(self.points[point])})")
            self.hits[point][value] += 1
        for cname, (over, _) in self.crosses.items():
            if all(p in values for p in over):
                key = SEP.join(values[p] for p in over)
                if key in self._legal[cname]:
                    self.hits[cname][key] += 1

    @property
    def sampled(self) -> bool:
        return any(self.hits[p] for p in self.points)


def counts(groups: Mapping[str, Covergroup] | None = None) -> dict[str, dict[str, dict]]:
    """This process's hit counts (of :data:`GROUPS` by default): group, point or cross,
    bin."""
    groups = GROUPS if groups is None else groups
    return {g.name: {item: dict(c) for item, c in g.hits.items() if c}
            for g in groups.values() if g.sampled}


def dump(path: Path | str, groups: Mapping[str, Covergroup] | None = None) -> None:
    """Write this process's counts to ``path`` (JSON)."""
    Path(path).write_text(json.dumps({"format": FORMAT, "groups": counts(groups)}))


def load(path: Path | str) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    return data["groups"]


def merge(parts: Iterable[Mapping]) -> dict[str, dict[str, Counter]]:
    """The sum of count dicts (as :func:`counts` or :func:`load` give them)."""
    out: dict[str, dict[str, Counter]] = {}
    for part in parts:
        for group, items in part.items():
            for item, bins in items.items():
                out.setdefault(group, {}).setdefault(item, Counter()).update(bins)
    return out


def report(total: Mapping[str, Mapping[str, Mapping[str, int]]],
           groups: Mapping[str, Covergroup] | None = None) -> dict[str, Any]:
    """Bins, hits and holes of every declared group (:data:`GROUPS` by default) under the
    counts ``total``; a dict ready for JSON. Counts of groups not declared are ignored."""
    declared = GROUPS if groups is None else groups
    groups, n_bins, n_hit = {}, 0, 0
    for g in declared.values():
        got = total.get(g.name, {})
        items = {}
        for item, bins in g.items().items():
            hits = {b: int(got.get(item, {}).get(b, 0)) for b in bins}
            hit = sum(1 for v in hits.values() if v)
            items[item] = {"kind": "cross" if item in g.crosses else "point",
                           "bins": len(bins), "hit": hit,
                           "holes": [b for b, v in hits.items() if not v], "counts": hits}
            n_bins += len(bins)
            n_hit += hit
        bins = sum(i["bins"] for i in items.values())
        hit = sum(i["hit"] for i in items.values())
        groups[g.name] = {"doc": g.doc, "sampled": bool(got), "bins": bins, "hit": hit,
                          "items": items}
    return {"format": FORMAT, "bins": n_bins, "hit": n_hit,
            "percent": round(100.0 * n_hit / n_bins, 1) if n_bins else 100.0,
            "groups": groups}


def format_text(rep: Mapping[str, Any], *, holes: int | None = None) -> str:
    """``rep`` (:func:`report`) as text: per group and item, bins hit of bins, and the holes
    (at most ``holes`` per item; all by default)."""
    lines = [f"functional coverage: {rep['hit']} of {rep['bins']} bins hit "
             f"({rep['percent']}%)"]
    for name, g in rep["groups"].items():
        pct = 100.0 * g["hit"] / g["bins"] if g["bins"] else 100.0
        lines.append(f"  {name}: {g['hit']}/{g['bins']} ({pct:.1f}%)"
                     f"{'' if g['sampled'] else ', never sampled'} - {g['doc']}")
        for item, i in g["items"].items():
            lines.append(f"    {i['kind']} {item}: {i['hit']}/{i['bins']}")
            shown = i["holes"] if holes is None else i["holes"][:holes]
            for hole in shown:
                lines.append(f"      hole: {hole}")
            if len(shown) < len(i["holes"]):
                lines.append(f"      ... and {len(i['holes']) - len(shown)} more holes")
    return "\n".join(lines)


_dumped = itertools.count()
#: The process that collects the report (it merges its own counts in memory).
_collector_pid: int | None = None


def collecting_here() -> None:
    """Mark this process as the one that merges the report (it does not dump at exit)."""
    global _collector_pid
    _collector_pid = os.getpid()


def _dump_at_exit() -> None:
    where = os.environ.get("WAFERTILE_COVERAGE_DIR")
    if where and counts() and os.getpid() != _collector_pid:
        path = Path(where) / f"cov-{os.getpid()}-{next(_dumped)}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            dump(path)
        except OSError:  # pragma: no cover - a report is not worth failing a simulation for
            pass


atexit.register(_dump_at_exit)
