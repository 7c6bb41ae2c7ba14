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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import PARAMETERS
from ..errors import InputError
from ..files import (
    check_dir_writable,
    check_input_file,
    check_output_names,
    memory_budget,
    write_bytes,
)
from .measures import MEASUREMENTS
from .workloads import WORKLOAD_COLUMNS

__all__ = ["COLUMNS", "IDENTITY", "MARK", "PARAMETER_COLUMNS", "SPEC_COPY", "TABLE", "ResultTable",
           "check_axes", "check_output_dir", "parquet_available"]

#: The file name of the table in the output directory.
TABLE = "results.csv"
#: The Parquet copy of the table (written when pyarrow is installed).
PARQUET = "results.parquet"
#: The copy of the spec in the output directory.
SPEC_COPY = "spec.toml"
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
    check_output_names(flag, path, (MARK, TABLE, PARQUET, SPEC_COPY), dirs=("plots",))
    ours = (path / MARK).is_file()
    if not ours and not force and any(path.iterdir()):
        raise InputError(f"{flag} {str(path)!r} is a non-empty directory that is not a "
                         f"wafertile sweep's (no {MARK}); --force writes the sweep into it")
    if ours and (path / TABLE).exists() and not resume and not force:
        raise InputError(f"{flag} {str(path)!r} already holds a sweep's {TABLE}; --resume "
                         f"continues it, --force starts it over")
    if ours and (path / TABLE).exists() and resume and not force:
        ResultTable(path).read(flag)  # a table --resume cannot continue stops here


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

    def read(self, flag: str = "-o") -> tuple[tuple[str, ...], list[dict[str, str]], bool]:
        """Read and check the table: ``(header, rows, cut)``, where ``cut`` says the last line
        was half-written (a sweep killed while writing it; that line is left out).

        Raises
        ------
        InputError
            If the table is not a regular file, not UTF-8 text or CSV, has no ``id`` column,
            or has columns this version does not write.
        """
        where = f"{flag} {str(self.directory)!r}: {TABLE}"
        size = check_input_file(self.path, where)
        if size > memory_budget():
            raise InputError(f"{where} is larger than the memory budget")
        data = self.path.read_bytes()
        cut = bool(data) and not data.endswith(b"\n")
        if cut:
            data = data[:data.rfind(b"\n") + 1]
        try:
            reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
            header = tuple(reader.fieldnames or ())
            rows = list(reader)
        except UnicodeDecodeError:
            raise InputError(f"{where} is not a sweep's table (not UTF-8 text); use another "
                             f"-o DIR, or --force to start over") from None
        except csv.Error as exc:
            raise InputError(f"{where} is not a sweep's table ({' '.join(str(exc).split())}); "
                             f"use another -o DIR, or --force to start over") from None
        unknown = [c for c in header if c not in COLUMNS]
        if unknown or "id" not in header:
            shown = "".join(c if c.isprintable() else "?" for c in ", ".join(unknown))[:200]
            what = (f"has columns this wafertile does not write ({shown})" if unknown
                    else "has no id column")
            raise InputError(f"{where} {what}; use another -o DIR, or --force to start over")
        return header, rows, cut

    def _repair(self) -> None:
        header, rows, cut = self.read()
        if header != COLUMNS or cut:
            self._write(rows)

    def _write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the table with the header and ``rows`` (through a temporary file)."""
        buf = io.StringIO(newline="")
        writer = csv.writer(buf)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in COLUMNS])
        write_bytes(self.path, buf.getvalue().encode("utf-8"))

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
        return self.read()[1]

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
