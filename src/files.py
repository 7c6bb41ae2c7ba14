"""The one gate through which every command reads a user's file and writes its outputs.

Inputs (:func:`check_input_file`, :func:`read_text`, :func:`read_npy`, :func:`read_npz`):

- a path must name a *regular* file (or a symbolic link to one): a directory, a FIFO, a
  device or a socket is refused before it is opened, so that nothing can hang on it;
- a text input (a TOML configuration, a sweep spec) is read with a size cap
  (:data:`TEXT_CAP`) and must be UTF-8;
- an array's ``.npy`` header is read and checked before its data: the dtype must be a
  plain number type (bool, integer or float: no object, string, complex, datetime or
  timedelta arrays), the bytes the header claims must be in the file, and the array must
  fit the memory budget (:func:`memory_budget`). Inside a ``.npz`` archive the same holds
  for every member, against the member's size in the archive's directory.

Outputs (:func:`check_output_file`, :func:`check_dir_writable`, :func:`write_bytes`,
:func:`write_text`, :func:`save_npy`, :func:`make_own_dir`, :func:`remove_own_dir`):

- whether a directory can be written is checked by making (and removing) a probe file in it,
  not with ``os.access`` (which root always passes, even on ``/proc``);
- an output file that is a symbolic link is refused: wafertile never writes through a link;
- a file is written to a temporary file in the same directory and renamed over the target,
  so an interrupted or refused write never leaves a truncated file;
- a directory that wafertile makes for its work holds a marker file (:data:`OWN_MARK`), and
  only a directory with that marker is ever deleted.

Every failure is an :class:`~wafertile.errors.InputError` with one line naming the flag or
file, the path and the rule.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from .errors import InputError

__all__ = ["BUDGET_CAP", "OWN_MARK", "TEXT_CAP", "cache_root", "check_dir_writable",
           "check_input_file", "check_output_file", "check_output_names", "check_own_dir",
           "gib_text", "make_own_dir", "memory_budget", "memory_budget_info", "npy_header",
           "one_line",
           "read_npy", "read_npz", "read_text", "remove_own_dir", "save_npy", "toml_reason",
           "write_bytes", "write_text"]

#: The largest text input (TOML configuration or sweep spec) read, in bytes.
TEXT_CAP = 1 << 20

#: The marker file of a work directory that wafertile made (and so may delete).
OWN_MARK = ".wafertile-own"

#: dtype kinds an input array may have: bool, signed and unsigned integers, floats.
_NUMBER_KINDS = "biuf"

_KIND_NAMES = {"c": "complex", "m": "timedelta", "M": "datetime", "O": "object (pickled)",
               "S": "bytes", "U": "string", "V": "structured (void)"}


#: The memory budget's ceiling, whatever the machine (:func:`memory_budget`).
BUDGET_CAP = 64 << 30


def memory_budget_info() -> tuple[int, str]:
    """The memory, in bytes, that one input (an array, an archive's arrays) or a command's
    estimate may take, and what the figure is: ``$WAFERTILE_MEMORY_BUDGET`` (bytes) if set,
    else half of the machine's physical memory, at most :data:`BUDGET_CAP` (8 GiB where the
    system does not tell its memory).

    Raises
    ------
    InputError
        If ``$WAFERTILE_MEMORY_BUDGET`` is not a positive integer.
    """
    env = os.environ.get("WAFERTILE_MEMORY_BUDGET")
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise InputError(f"WAFERTILE_MEMORY_BUDGET must be a positive number of bytes, not "
                             f"{env!r}")
        return value, f"{_size(value)}, set by WAFERTILE_MEMORY_BUDGET"
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30, "8 GiB, as this system does not tell its memory"
    if physical // 2 > BUDGET_CAP:
        return BUDGET_CAP, f"{gib_text(BUDGET_CAP)}, the ceiling of half of the machine's memory"
    return physical // 2, f"{gib_text(physical // 2)}, half of this machine's {gib_text(physical)}"


def memory_budget() -> int:
    """The memory budget in bytes (:func:`memory_budget_info`)."""
    return memory_budget_info()[0]


def gib_text(n: float) -> str:
    """``n`` bytes in GiB: ``"95 GiB"`` (from 10 GiB), ``"2.1 GiB"``."""
    return f"{n / 2**30:.0f} GiB" if n >= 10 * 2**30 else f"{n / 2**30:.1f} GiB"


def _size(n: float) -> str:
    """``n`` bytes in words: 512 bytes, 3.0 KiB, 95.4 GiB."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{int(n)} bytes"


# --- inputs ------------------------------------------------------------------------------

def check_input_file(path: str | Path, label: str) -> int:
    """Check that ``path`` names a regular, readable file; return its size in bytes.

    Parameters
    ----------
    path : path
        The file.
    label : str
        What it is, for the messages (``"weights file 'W.npy'"``).

    Raises
    ------
    InputError
        If the path does not exist (or is a link to nothing), is a directory, a FIFO, a
        device or a socket, or cannot be read.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise InputError(f"{label} is a symbolic link to a missing file") from None
        raise InputError(f"{label} does not exist") from None
    except OSError as exc:
        raise InputError(f"{label} cannot be read: {exc.strerror or exc}") from None
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise InputError(f"{label} is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise InputError(f"{label} is {kind}; wafertile reads regular files only")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{label} cannot be read: {exc.strerror or exc}") from None
    return info.st_size


def read_text(path: str | Path, label: str, *, cap: int = TEXT_CAP) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``cap`` bytes.

    Raises
    ------
    InputError
        If the file is not a readable regular file (:func:`check_input_file`), is larger
        than ``cap`` bytes, or is not UTF-8 text.
    """
    size = check_input_file(path, label)
    if size > cap:
        raise InputError(f"{label} is {_size(size)}, more than the {_size(cap)} a text input "
                         f"may have")
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as exc:
        raise InputError(f"{label} cannot be read: {exc.strerror or exc}") from None
    if len(data) > cap:  # grew since stat
        raise InputError(f"{label} is more than the {_size(cap)} a text input may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{label} is not a text (UTF-8) file") from None
    if "\x00" in text:
        raise InputError(f"{label} is not a text file (it holds NUL bytes)")
    return text


def toml_reason(exc: BaseException) -> str:
    """Why ``tomllib.loads`` refused a text, in one line: its TOMLDecodeError, the ValueError
    of an integer of over 4300 digits, or the RecursionError of tables nested a thousand
    deep."""
    if isinstance(exc, RecursionError):
        return "tables or arrays nested too deep"
    return one_line(exc)


def npy_header(f: IO[bytes], label: str):
    """Read a ``.npy`` header from the open binary file ``f``; return ``(shape, fortran,
    dtype)`` with ``f`` at the start of the data.

    Raises
    ------
    InputError
        If ``f`` does not start with a well-formed ``.npy`` header.
    """
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            return npformat.read_array_header_1_0(f, max_header_size=1 << 16)
        if version in ((2, 0), (3, 0)):
            return npformat.read_array_header_2_0(f, max_header_size=1 << 16)
        raise ValueError(f"unknown .npy format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise InputError(f"{label} has a damaged .npy header ({one_line(exc)})") from None


def one_line(exc: BaseException) -> str:
    """An exception's text on one line, at most 200 characters (for a message that quotes
    what a library said)."""
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _check_header(label: str, shape: tuple, dtype, available: int, *, kinds: str) -> int:
    """Check a ``.npy`` header's claim against the bytes ``available`` and the memory
    budget; return the data's size in bytes."""
    if dtype.hasobject or dtype.kind not in kinds:
        what = _KIND_NAMES.get(dtype.kind, str(dtype))
        allowed = "numbers (bool, integer or float)" + (" or text" if "U" in kinds else "")
        article = "an" if what[0] in "aeiou" else "a"
        raise InputError(f"{label} holds {article} {what} array ({dtype}); it must hold "
                         f"{allowed}")
    count = 1
    for n in shape:
        count *= int(n)
    need = count * dtype.itemsize
    if need > available:
        dims = " x ".join(str(n) for n in shape) or "scalar"
        raise InputError(f"{label} is truncated: its header says {dims} {dtype} "
                         f"({_size(need)}), but the file holds {_size(available)} of data")
    budget = memory_budget()
    if need > budget:
        dims = " x ".join(str(n) for n in shape)
        raise InputError(f"{label} holds a {dims} {dtype} array of {_size(need)}, more than "
                         f"the memory budget of {memory_budget_info()[1]}")
    return need


def _looks_like_text(data: bytes) -> bool:
    """True if ``data`` (a file's start) is printable UTF-8 text (a cut last character
    allowed)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 3:
            return False
        text = data[:exc.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\t\r\n" for c in text)


def read_npy(path: str | Path, label: str, *, kinds: str = _NUMBER_KINDS,
             text_hint: str | None = None):
    """Load the array of the ``.npy`` file ``path`` after checking its header.

    Parameters
    ----------
    path : path
        The file.
    label : str
        What it is, for the messages.
    kinds : str
        The numpy dtype kinds accepted (default: bool, integers, floats).
    text_hint : str, optional
        Added to the message when the file is text, not ``.npy`` (how to convert it).

    Raises
    ------
    InputError
        If the file is not a regular readable file, not a ``.npy`` file (an ``.npz``
        archive is named as such), has a damaged header, a dtype not of ``kinds``, fewer
        bytes than its header claims, or more than the memory budget.
    """
    import numpy as np

    size = check_input_file(path, label)
    with open(path, "rb") as f:
        head = f.read(6)
        if not head:
            raise InputError(f"{label} is empty, not a .npy file (numpy's .npy format: "
                             f"np.save)")
        if head.startswith(b"PK\x03\x04"):
            raise InputError(f"{label} is an .npz archive (np.savez), not a .npy file; save "
                             f"the one array with np.save")
        if head != b"\x93NUMPY":
            f.seek(0)
            start = f.read(4096)
            hint = ""
            if text_hint and _looks_like_text(start):
                hint = "; " + text_hint
            raise InputError(f"{label} is not a .npy file (numpy's .npy format: "
                             f"np.save){hint}")
        f.seek(0)
        shape, fortran, dtype = npy_header(f, label)
        _check_header(label, shape, dtype, size - f.tell(), kinds=kinds)
        try:
            count = int(np.prod(shape, dtype=np.int64))
            data = np.fromfile(f, dtype=dtype, count=count) if count else np.empty(0, dtype)
        except (OSError, ValueError) as exc:
            raise InputError(f"{label} is a damaged .npy file ({one_line(exc)})") from None
    if data.size != count:
        raise InputError(f"{label} is truncated: {data.size} of {count} values")
    return data.reshape(shape, order="F" if fortran else "C")


def read_npz(path: str | Path, label: str, *, kinds: str = _NUMBER_KINDS + "U") -> dict:
    """Load every array of the ``.npz`` archive ``path`` after checking each header; return
    ``{key: array}``.

    Members are checked against their size in the archive's directory and all of them
    together against the memory budget; string members (``kinds`` has ``"U"``) are allowed
    for the keys that hold names.

    Raises
    ------
    InputError
        If the file is not a regular readable file or not a ``.npz`` archive, a member is not
        a ``.npy`` array, has a dtype not of ``kinds``, is damaged or truncated, or the
        arrays exceed the memory budget.
    """
    import numpy as np

    check_input_file(path, label)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{label} is not a .npz archive ({one_line(exc)})") from None
    out = {}
    total = 0
    budget = memory_budget()
    with archive:
        for info in archive.infolist():
            name = info.filename
            key = name[:-4] if name.endswith(".npy") else name
            what = f"{label}, key {key!r},"
            if not name.endswith(".npy"):
                raise InputError(f"{label} holds {name!r}, which is not a .npy array (a .npz "
                                 f"archive holds .npy members only)")
            try:
                with archive.open(info) as f:
                    shape, fortran, dtype = npy_header(f, what)
                    header = f.tell() if info.compress_type == zipfile.ZIP_STORED else None
                    available = info.file_size - (header if header is not None else 0)
                    if header is None:  # compressed: the header's length is not known here
                        available = info.file_size
                    total += _check_header(what, shape, dtype, available, kinds=kinds)
                    if total > budget:
                        raise InputError(f"{label} holds more than the memory budget of "
                                         f"{_size(budget)} (WAFERTILE_MEMORY_BUDGET)")
                    count = int(np.prod(shape, dtype=np.int64))
                    raw = f.read(count * dtype.itemsize)
            except InputError:
                raise
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                    RuntimeError) as exc:
                raise InputError(f"{what} is damaged ({one_line(exc)})") from None
            if len(raw) != count * dtype.itemsize:
                raise InputError(f"{what} is truncated: {len(raw)} of "
                                 f"{count * dtype.itemsize} bytes")
            arr = np.frombuffer(raw, dtype=dtype, count=count).copy()
            out[key] = arr.reshape(shape, order="F" if fortran else "C")
    return out


def cache_root() -> Path:
    """wafertile's cache directory: ``$WAFERTILE_CACHE``, else ``$XDG_CACHE_HOME/wafertile``
    or ``~/.cache/wafertile`` (absolute; made when first used).

    Raises
    ------
    InputError
        If the path exists and is not a directory, or lies under a file.
    """
    env = os.environ.get("WAFERTILE_CACHE")
    base = Path(env or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wafertile"))
    flag = "WAFERTILE_CACHE" if env else "the cache directory"
    parent = base
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {str(base)!r} is not a directory ({str(parent)!r} is a "
                         f"file)")
    return base.absolute()


# --- outputs -----------------------------------------------------------------------------

def _probe(directory: Path) -> str | None:
    """Make and remove a file in the existing directory ``directory``; return why it
    failed, or None."""
    try:
        fd, name = tempfile.mkstemp(prefix=".wafertile-probe-", dir=directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def check_dir_writable(flag: str, path: str | Path) -> bool:
    """Check that files can be written into directory ``path``: an existing directory in
    which a probe file can be made, or a missing one whose nearest existing parent is such a
    directory.

    Returns
    -------
    bool
        Whether ``path`` exists (the caller checks what it already holds).

    Raises
    ------
    InputError
        If ``path`` is a file or a link to one, lies under a file, or a file cannot be made
        in it (or in the directory that would hold it).
    """
    path = Path(path)
    if not path.exists():
        missing = path
        while not missing.exists() and missing != missing.parent:
            if missing.is_symlink():
                raise InputError(f"{flag} {str(path)!r} cannot be created: {str(missing)!r} is "
                                 f"a symbolic link to nothing")
            missing = missing.parent
        parent = missing
        if not parent.is_dir():
            raise InputError(f"{flag} {str(path)!r} cannot be created: {str(parent)!r} is a "
                             f"file, not a directory")
        why = _probe(parent)
        if why:
            raise InputError(f"{flag} {str(path)!r} cannot be created: directory "
                             f"{str(parent)!r} is not writable ({why})")
        return False
    if not path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is a file, not a directory")
    why = _probe(path)
    if why:
        raise InputError(f"{flag} directory {str(path)!r} is not writable ({why})")
    return True


def check_output_file(path: str | Path, *, suffix: str, force: bool, flag: str) -> None:
    """Check that a command may write the file ``path`` (made at the end of its work).

    Raises
    ------
    InputError
        If the name does not end in ``suffix``; if ``path`` is a directory or a symbolic
        link; if its directory does not exist, is not a directory or no file can be made in
        it; if the file exists, unless ``force``.
    """
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{flag} {str(path)!r} is a symbolic link; wafertile does not write "
                         f"through links (name the file itself)")
    if path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is a directory; name a {suffix} file (e.g. "
                         f"{str(path / ('Y' + suffix))!r})")
    if path.suffix != suffix:
        raise InputError(f"{flag} {str(path)!r} must name a {suffix} file (the name must end "
                         f"in {suffix})")
    parent = path.parent
    if not parent.exists():
        raise InputError(f"{flag} {str(path)!r}: directory {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise InputError(f"{flag} {str(path)!r}: {str(parent)!r} is a file, not a directory")
    why = _probe(parent)
    if why:
        raise InputError(f"{flag} {str(path)!r}: directory {str(parent)!r} is not writable "
                         f"({why})")
    if path.exists() and not path.is_file():
        raise InputError(f"{flag} {str(path)!r} exists and is not a regular file")
    if path.exists() and not force:
        raise InputError(f"{flag} {str(path)!r} already exists; --force overwrites it")


def check_output_names(flag: str, directory: str | Path, files: Iterable[str] = (),
                       dirs: Iterable[str] = ()) -> list[str]:
    """Check the names a command writes in ``directory``: none is a symbolic link, each of
    ``files`` is a regular file or missing, each of ``dirs`` a directory or missing; return
    the ``files`` that exist.

    Raises
    ------
    InputError
        Naming the flag, the directory and the first name in the way.
    """
    directory = Path(directory)
    present = []
    for name in (*files, *dirs):
        if (directory / name).is_symlink():
            raise InputError(f"{flag} {str(directory)!r}: {name} is a symbolic link; wafertile "
                             f"does not write through links (remove it, or name another "
                             f"directory)")
    for name in files:
        target = directory / name
        if target.exists() and not target.is_file():
            raise InputError(f"{flag} {str(directory)!r}: {name} is "
                             + ("a directory" if target.is_dir() else "not a regular file")
                             + f", so the file {name} cannot be written")
        if target.exists():
            present.append(name)
    for name in dirs:
        if (directory / name).exists() and not (directory / name).is_dir():
            raise InputError(f"{flag} {str(directory)!r}: {name} is a file, so the directory "
                             f"{name} cannot be made")
    return present


def _write(path: Path, fill: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in its directory renamed over it; a link at
    ``path`` is replaced, never followed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file and rename)."""
    _write(Path(path), lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (temporary file and rename)."""
    write_bytes(path, text.encode("utf-8"))


def save_npy(path: str | Path, array) -> None:
    """``numpy.save`` to ``path`` atomically (temporary file and rename)."""
    import numpy as np

    _write(Path(path), lambda f: np.save(f, array, allow_pickle=False))


def make_own_dir(path: str | Path, *, what: str) -> Path:
    """Make the directory ``path`` (and missing parents) and mark it with :data:`OWN_MARK`
    as wafertile's, so that :func:`remove_own_dir` may delete it later; an existing
    directory is marked only if it is empty."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    mark = path / OWN_MARK
    if not mark.exists() and not any(path.iterdir()):
        mark.write_text(f"made by wafertile ({what}); wafertile may delete this directory\n",
                        encoding="utf-8")
    return path


def check_own_dir(path: str | Path, *, flag: str) -> None:
    """Check that :func:`remove_own_dir` may delete ``path`` (it is missing, or a directory
    wafertile made), without deleting anything.

    Raises
    ------
    InputError
        As :func:`remove_own_dir`.
    """
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{flag}: {str(path)!r} is a symbolic link; wafertile deletes only "
                         f"directories it made")
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"{flag}: {str(path)!r} is a file where wafertile would make its "
                         f"directory; move it away")
    if not (path / OWN_MARK).is_file():
        raise InputError(f"{flag}: {str(path)!r} is a directory that wafertile did not make "
                         f"(no {OWN_MARK}); move it away or name another directory")


def remove_own_dir(path: str | Path, *, flag: str) -> None:
    """Delete the directory ``path`` if wafertile made it (it holds :data:`OWN_MARK`);
    nothing if it does not exist.

    Raises
    ------
    InputError
        If ``path`` exists and is a link, a file, or a directory without the marker (which
        wafertile did not make, so will not delete).
    """
    path = Path(path)
    check_own_dir(path, flag=flag)
    if path.exists():
        shutil.rmtree(path)
