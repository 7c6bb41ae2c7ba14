"""Where a command may write: checks made before any work, so that bad paths fail at once.

The rule of every command: an output never overwrites a file that wafertile did not write
itself, unless the user says ``--force``. What counts as wafertile's own:

- ``wafertile generate -o DIR``: the files of an earlier ``wafertile generate`` in ``DIR``,
  recognised by ``DIR/manifest.json`` naming ``"generator": "wafertile"``.
- ``wafertile synth --build-dir DIR``: a directory holding :data:`BUILD_MARK`, the marker the
  command writes into every build directory before it starts.
- ``wafertile run --out Y.npy``: nothing; an existing file is replaced only with ``--force``.

Each check raises :class:`~wafertile.errors.InputError` with one line that names the flag,
the path and what is wrong with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .errors import InputError
from .files import check_dir_writable, check_output_file, check_output_names, save_npy

__all__ = ["BUILD_MARK", "check_build_dir", "check_dir_writable", "check_generate_dir",
           "check_output_file", "finish_run", "mark_build_dir"]

#: The file that marks a directory as a ``wafertile synth`` build directory.
BUILD_MARK = ".wafertile-build"


def _generated_by_wafertile(manifest: Path) -> bool:
    """True if ``manifest`` is the ``manifest.json`` of a ``wafertile generate``."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("generator") == "wafertile"


def check_generate_dir(path: Path, names: Iterable[str], *, force: bool,
                       flag: str = "-o") -> None:
    """Check that ``wafertile generate`` may write the files ``names`` into directory ``path``.

    Parameters
    ----------
    path : Path
        The output directory (made by the command if missing).
    names : iterable of str
        The file names the command writes into it (``<top>.v``, ``<top>.core``,
        ``manifest.json``).
    force : bool
        Overwrite files that an earlier ``wafertile generate`` did not write.
    flag : str
        The flag named in the messages.

    Raises
    ------
    InputError
        If ``path`` is a file, lies under a file, or is not writable (or cannot be created);
        if one of ``names`` is a directory; if one of them exists and ``path`` holds no
        ``manifest.json`` of wafertile, unless ``force``.
    """
    if not check_dir_writable(flag, path):
        return
    present = check_output_names(flag, path, names)
    if present and not force and not _generated_by_wafertile(path / "manifest.json"):
        raise InputError(f"{flag} {str(path)!r} already holds {', '.join(present)}, not written "
                         f"by wafertile generate (no manifest.json of wafertile); --force "
                         f"overwrites")


def check_build_dir(path: Path, *, force: bool, flag: str = "--build-dir") -> None:
    """Check that a build may use directory ``path``.

    Parameters
    ----------
    path : Path
        The build directory (made by the command if missing).
    force : bool
        Use an existing non-empty directory that has no :data:`BUILD_MARK`.
    flag : str
        The flag named in the messages.

    Raises
    ------
    InputError
        If ``path`` is a file, lies under a file, or is not writable (or cannot be created);
        if it is a non-empty directory without :data:`BUILD_MARK`, unless ``force``.
    """
    if not check_dir_writable(flag, path):
        return
    if not force and not (path / BUILD_MARK).is_file() and any(path.iterdir()):
        raise InputError(f"{flag} {str(path)!r} is a non-empty directory that is not a "
                         f"wafertile build directory (no {BUILD_MARK}); --force builds in it")


def mark_build_dir(path: Path) -> None:
    """Make the build directory ``path`` and mark it as wafertile's (:data:`BUILD_MARK`)."""
    path.mkdir(parents=True, exist_ok=True)
    mark = path / BUILD_MARK
    if not mark.exists():
        mark.write_text("a wafertile build directory: `wafertile synth --build-dir` reuses "
                        "it without --force\n", encoding="utf-8")


def finish_run(report, y, config, *, out: Path | None, as_json: bool) -> int:
    """The end of ``wafertile run`` (a layer or a network): save ``y`` to ``out`` (checked
    before the run), print ``report`` (``--json``: one object) and return the exit status
    (0 pass, 1 mismatch)."""
    if out is not None:
        save_npy(out, y)
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        print(report.text(config))
        where = f"; build and logs in {report.build_dir}" if report.build_dir else ""
        print(f"(finished in {report.wall_seconds:.1f} s{where})")
    return 0 if report.passed else 1
