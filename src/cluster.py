"""Dask clusters for the commands that spread work over processes or machines: ``wafertile
sweep``'s points and ``wafertile train --fabrics``'s simulated fabrics (``docs/sweep.md``,
``docs/training.md``): a :class:`distributed.LocalCluster` of one-thread worker processes, or
the workers of a scheduler started by hand (``dask scheduler``, ``dask worker``), each checked
to run wafertile; and the check of a ``--scheduler`` address before anything is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import __version__
from .errors import InputError, ToolError

__all__ = ["check_scheduler", "dask_client", "error_text", "worker_version"]

_log = logging.getLogger(__name__)

#: A Dask scheduler's address: ``[protocol://]host[:port]`` (port 8786 by default).
_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|ucx)://)?(\[[0-9a-fA-F:]+\]|[\w.-]+)(:\d{1,5})?$")


def error_text(exc: BaseException) -> str:
    """An exception in one line: its type and message."""
    text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def worker_version() -> str:
    """wafertile's version, as a worker sees it (run on every worker before a sweep)."""
    return __version__


@contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[tuple[Any, str]]:
    """A Dask client (with where it runs, for messages): of a new LocalCluster of ``workers``
    processes of one thread, or of the scheduler at ``scheduler``; its workers checked to run
    wafertile. Closed (and the LocalCluster with it) when the block ends."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        _log.info(f"starting a Dask LocalCluster of {workers} worker processes")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        where = "a LocalCluster"
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    else:
        cluster = None
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ToolError(f"cannot reach the Dask scheduler at {scheduler}: {exc}; start "
                            f"it with `dask scheduler` and its workers with `dask worker "
                            f"{scheduler}` (docs/sweep.md)") from None
        where = f"scheduler {scheduler}"
    try:
        if cluster is None:
            try:
                client.wait_for_workers(1, timeout=60)
            except TimeoutError:
                raise ToolError(f"the Dask scheduler at {scheduler} has no worker after 60 s; "
                                f"start them with `dask worker {scheduler}`") from None
        try:
            versions = client.run(worker_version)
        except Exception as exc:
            raise ToolError(f"a Dask worker of {where} cannot run wafertile ({error_text(exc)}); "
                            f"install the same wafertile on every worker") from None
        other = sorted({v for v in versions.values() if v != __version__})
        if other:
            _log.warning(f"workers run wafertile {', '.join(other)}, this is {__version__}")
        where += f" ({len(versions)} worker(s))"
        _log.info(f"running on {where}")
        yield client, where
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def check_scheduler(address: str, *, reach: bool = True, timeout: float = 5.0) -> None:
    """Refuse a ``--scheduler`` that is not a Dask scheduler's address or (``reach``) that
    nothing answers on, before anything is written: :class:`InputError`."""
    import socket

    match = _ADDRESS.match(address)
    if not match:
        raise InputError(f"--scheduler must be a Dask scheduler's address (tcp://HOST:8786), "
                         f"not {address!r}")
    if not reach:
        return
    host = match.group(3).strip("[]")
    port = int(match.group(4)[1:]) if match.group(4) else 8786
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise InputError(f"--scheduler {address!r} cannot be reached ({why}); start one with "
                         f"`dask scheduler`, or leave --scheduler out for a local "
                         f"cluster") from None
