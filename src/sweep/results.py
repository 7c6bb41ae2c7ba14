"""The results table of a sweep and the directory that holds it.

One row per (point, workload, measurement), one column per field (:data:`COLUMNS`: the
point's identity and status, every configuration parameter, the workload, every
measurement's figures, bookkeeping), written to ``DIR/results.csv`` as each point finishes:
a header, then one line per row, flushed at once, so that a sweep stopped at any moment
leaves a readable table (``pandas.read_csv("DIR/results.csv")``) and ``--resume`` knows what
is done. When pyarrow is installed, ``DIR/results.parquet`` is written from it at the end.

The directory is marked as a sweep's own with :data:`MARK`. As for every wafertile command,
an output never replaces a file that wafertile did not write unless ``--force``
(:func:`check_output_dir`).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import PARAMETERS
from ..errors import InputError
from ..outputs import check_dir_writable
from .measures import MEASUREMENTS
from .workloads import WORKLOAD_COLUMNS

__all__ = ["COLUMNS", "IDENTITY", "MARK", "PARAMETER_COLUMNS", "TABLE", "ResultTable",
           "check_axes", "check_output_dir", "parquet_available"]

#: The file name of the table in the output directory.
TABLE = "results.csv"
#: The Parquet copy of the table (written when pyarrow is installed).
PARQUET = "results.parquet"
#: The file that marks a directory as a ``wafertile sweep`` output directory.
MARK = ".wafertile-sweep"

#: Which point a row is, and how it went: ``status`` is ``ok`` or ``error`` (then ``error``
#: holds the exception in one line); ``estimate`` is True for figures scaled from one tile.
IDENTITY = ("id", "status", "error", "measurement", "fidelity", "estimate")
#: Every configuration parameter, a column each.
PARAMETER_COLUMNS = tuple(r.name for r in PARAMETERS)
#: Bookkeeping: whether the build or synthesis result came from the cache, the point's wall
#: time, the worker (host:pid) and when it finished (UTC, ISO 8601).
BOOKKEEPING = ("cached", "seconds", "worker", "finished")

#: The columns of the table, in order.
COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    [*IDENTITY, *PARAMETER_COLUMNS, *WORKLOAD_COLUMNS,
     *(c.name for m in MEASUREMENTS.values() for c in m.columns), *BOOKKEEPING]))


def parquet_available() -> bool:
    """True if pandas can write Parquet here (pyarrow is installed)."""
    return importlib.util.find_spec("pyarrow") is not None


def check_axes(columns: Sequence[str], x: str | None, y: str | None, by: str | None,
               where: Mapping[str, Any]) -> None:
    """Check that the plot's ``x``, ``y``, ``by`` and ``where`` keys name columns.

    Raises
    ------
    ValueError
        With one line naming the first unknown one.
    """
    for key, value in (("x", x), ("y", y), ("by", by), *(("where", k) for k in where)):
        if value is not None and value not in columns:
            raise ValueError(f"{key} must be a column of the table, not {value!r} (columns: "
                             f"{', '.join(columns)})")


def check_output_dir(path: Path, *, resume: bool, force: bool, flag: str = "-o") -> None:
    """Check that a sweep may write its table into directory ``path``.

    Parameters
    ----------
    path : Path
        The output directory (made by the sweep if missing).
    resume : bool
        Continue the table that ``path`` holds.
    force : bool
        Use a non-empty directory that is not a sweep's, or start a sweep's table over.
    flag : str
        The flag named in the messages.

    Raises
    ------
    InputError
        If ``path`` is a file, lies under a file, or is not writable (or cannot be created);
        if it is a non-empty directory without :data:`MARK`, unless ``force``; if it holds a
        sweep's table and neither ``resume`` nor ``force`` says what to do with it.
    """
    if not check_dir_writable(flag, path):
        return
    ours = (path / MARK).is_file()
    if not ours and not force and any(path.iterdir()):
        raise InputError(f"{flag} {str(path)!r} is a non-empty directory that is not a "
                         f"wafertile sweep's (no {MARK}); --force writes the sweep into it")
    if (path / TABLE).is_dir():
        raise InputError(f"{flag} {str(path)!r}: {TABLE} is a directory, so the table cannot "
                         f"be written")
    if ours and (path / TABLE).exists() and not resume and not force:
        raise InputError(f"{flag} {str(path)!r} already holds a sweep's {TABLE}; --resume "
                         f"continues it, --force starts it over")


def _cell(value: Any) -> str:
    """A value as the CSV holds it: empty for None, one line for text."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return " | ".join(str(value).splitlines())


class ResultTable:
    """The CSV table of a sweep in ``directory`` (see the module's docstring).

    Use :meth:`open`; rows are dicts keyed by :data:`COLUMNS` (missing keys are empty).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / TABLE

    @classmethod
    def open(cls, directory: Path, *, resume: bool) -> ResultTable:
        """Make ``directory`` (marked with :data:`MARK`) and the table: a new one with just
        the header, or, with ``resume``, the existing one (a half-written last line, from a
        sweep that was killed, is dropped; a table of an older column set is rewritten with
        the current columns).

        Raises
        ------
        InputError
            With ``resume``, if the existing table has columns this version does not know.
        """
        table = cls(directory)
        table.directory.mkdir(parents=True, exist_ok=True)
        mark = table.directory / MARK
        if not mark.exists():
            mark.write_text("a wafertile sweep output directory: `wafertile sweep -o` "
                            "continues it with --resume\n", encoding="utf-8")
        if resume and table.path.exists():
            table._repair()
        else:
            table._write(())
        return table

    def _repair(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.path.write_bytes(data[:data.rfind(b"\n") + 1])
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = tuple(reader.fieldnames or ())
            rows = list(reader)
        if header == COLUMNS:
            return
        unknown = [c for c in header if c not in COLUMNS]
        if unknown:
            raise InputError(f"-o {str(self.directory)!r}: {TABLE} has columns this wafertile "
                             f"does not write ({', '.join(unknown)}); use another -o DIR, or "
                             f"--force to start over")
        self._write(rows)

    def _write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the table with the header and ``rows`` (through a temporary file)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow([_cell(row.get(c)) for c in COLUMNS])
        os.replace(tmp, self.path)

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row at the end of the table, on disk at once.

        Raises
        ------
        ValueError
            If ``row`` has a key that is not a column (a bug, not an input error).
        """
        unknown = [k for k in row if k not in COLUMNS]
        if unknown:
            raise ValueError(f"row has keys that are not columns: {', '.join(unknown)}")
        buf = io.StringIO()
        csv.writer(buf).writerow([_cell(row.get(c)) for c in COLUMNS])
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            f.write(buf.getvalue())
            f.flush()

    def rows(self) -> list[dict[str, str]]:
        """Every row, as strings (empty cells are ``""``)."""
        if not self.path.exists():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def ids(self) -> set[str]:
        """The ids of the rows in the table."""
        return {r["id"] for r in self.rows()}

    def drop(self, ids: set[str]) -> None:
        """Remove the rows whose id is in ``ids`` (``--retry-failed``)."""
        self._write([r for r in self.rows() if r["id"] not in ids])

    def write_parquet(self) -> Path | None:
        """Write ``results.parquet`` from the table if pyarrow is installed; return its path
        (None without pyarrow)."""
        if not parquet_available():
            return None
        import pandas as pd

        out = self.directory / PARQUET
        pd.read_csv(self.path).to_parquet(out, index=False)
        return out
