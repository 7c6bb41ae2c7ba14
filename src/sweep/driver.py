"""The driver of a sweep: points to Dask workers, rows into the table as they come back.

:func:`run_sweep` reads the table (``--resume``: every point whose id is in it is skipped),
starts a Dask client only if something is left to run (a ``LocalCluster`` of ``workers``
single-threaded worker processes on this machine, or the existing cluster of a ``dask
scheduler`` at ``scheduler``), sends each remaining point as one task
(:func:`wafertile.sweep.tasks.run_point`, keyed ``sweep-<measurement>-<id>``, in the running
order of :func:`~wafertile.sweep.points.expand`; the ``run`` points of one design chained,
each depending on the previous, since they share a build directory), and appends each row to
the table the moment its task finishes (``as_completed``). A point that fails is a row with
its error; a worker that dies makes an error row for its point, and Dask reschedules the
rest. The ``derived`` points are computed here, as soon as their ``run`` and ``synth`` rows
exist.

There is no process pool or scheduler of wafertile's own: Dask's scheduler places the tasks,
and the same code runs on a laptop's LocalCluster and on a cluster of machines.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..cluster import dask_client, error_text
from ..files import write_bytes
from .points import Point, expand
from .progress import Progress
from .results import SPEC_COPY, ResultTable
from .spec import Spec
from .tasks import START_TOPIC, derive_point, run_point

__all__ = ["SweepResult", "run_sweep"]

_log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    points : int
        Points of the spec (rows it makes).
    skipped : int
        Points already in the table (``--resume``), not run again.
    submitted : int
        Points sent to the workers (0 when everything was in the table: no cluster started).
    derived : int
        ``derived`` rows computed by the driver.
    ok, failed : int
        New rows with status ``ok`` and ``error``.
    seconds : float
        Wall time.
    table : Path
        The CSV table.
    ids : list of str
        The spec's point ids, in running order.
    cluster : str
        Where the points ran (``""`` when nothing ran).
    """

    points: int
    skipped: int
    submitted: int
    derived: int
    ok: int
    failed: int
    seconds: float
    table: Path
    ids: list[str] = field(default_factory=list)
    cluster: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"points": self.points, "skipped": self.skipped, "submitted": self.submitted,
                "derived": self.derived, "ok": self.ok, "failed": self.failed,
                "seconds": round(self.seconds, 2), "table": str(self.table),
                "cluster": self.cluster}


def run_sweep(spec: Spec, output: Path, *, workers: int = 2, scheduler: str | None = None,
              resume: bool = False, retry_failed: bool = False, cache: str | Path | None = None,
              stream: TextIO | None = None) -> SweepResult:
    """Run the sweep ``spec`` into the table in ``output``.

    Parameters
    ----------
    spec : Spec
        The validated spec.
    output : Path
        The output directory (checked by the caller:
        :func:`~wafertile.sweep.results.check_output_dir`).
    workers : int
        Worker processes of the LocalCluster (ignored with ``scheduler``).
    scheduler : str, optional
        Address of a running ``dask scheduler`` (``tcp://HOST:8786``) to use instead.
    resume : bool
        Keep the table and skip the points in it.
    retry_failed : bool
        With ``resume``: run the points whose row is an error again (their rows are
        removed first).
    cache : str or Path, optional
        Cache root for the workers (:mod:`wafertile.sweep.cache`); default each worker's.
    stream : file, optional
        Where the progress bar goes on a terminal (default stderr).

    Returns
    -------
    SweepResult

    Raises
    ------
    ToolError
        If the scheduler cannot be reached, has no workers, or its workers cannot run
        wafertile.
    """
    start = time.perf_counter()
    points = expand(spec)
    table = ResultTable.open(output, resume=resume)
    if spec.path.is_file() and spec.path.resolve() != (output / SPEC_COPY).resolve():
        write_bytes(output / SPEC_COPY, spec.path.read_bytes())
    done = {r["id"]: r for r in table.rows()}
    ids = {p.id for p in points}
    if retry_failed:
        again = {i for i, r in done.items() if i in ids and r["status"] != "ok"}
        if again:
            _log.info(f"running {len(again)} failed point(s) again")
            table.drop(again)
            done = {i: r for i, r in done.items() if i not in again}
    skipped = sum(p.id in done for p in points)
    todo = [p for p in points if p.id not in done and not p.inputs]
    derived = [p for p in points if p.id not in done and p.inputs]
    result = SweepResult(len(points), skipped, len(todo), 0, 0, 0, 0.0, table.path,
                         [p.id for p in points])
    _log.info(f"{len(points)} point(s): {skipped} already in {table.path}, {len(todo)} to run"
              + (f", {len(derived)} derived" if derived else ""))

    def append(row: dict[str, Any]) -> None:
        table.append(row)
        done[row["id"]] = row
        if row["status"] == "ok":
            result.ok += 1
        else:
            result.failed += 1

    def derive_ready() -> None:
        """Compute the derived points whose run and synth rows both exist."""
        for d in [d for d in derived if all(i in done for i in d.inputs)]:
            derived.remove(d)
            append(derive_point(d, *(done[i] for i in d.inputs)))
            result.derived += 1

    def record(row: dict[str, Any]) -> None:
        append(row)
        derive_ready()

    derive_ready()  # from rows already in the table
    if todo:
        with dask_client(workers, scheduler) as (client, where):
            result.cluster = where
            _run(client, todo, spec, cache, record, stream)
    result.seconds = time.perf_counter() - start
    return result


def _run(client: Any, todo: list[Point], spec: Spec, cache: str | Path | None, record,
         stream: TextIO | None) -> None:
    """Submit ``todo`` to ``client`` and ``record`` each row as it finishes."""
    from distributed import as_completed

    progress = Progress(len(todo), {p.id: p.label for p in todo}, stream=stream)
    client.subscribe_topic(START_TOPIC, lambda event: progress.started(event[1]["id"]))
    scattered = {}
    for digest, arrays in spec.arrays.items():  # each layer file goes to the cluster once
        if any(p.workload is not None and p.workload.digest == digest for p in todo):
            scattered[digest] = client.scatter([arrays])[0]
    by_key = {}
    futures = []
    last = {}  # design -> the future of its latest point
    try:
        for n, p in enumerate(todo):
            arrays = scattered.get(p.workload.digest) if p.workload is not None else None
            # A design's run points go one after the other (run_layer uses one directory per
            # design): each depends on the previous one, so Dask gives the other workers other
            # designs instead of a lock to wait on, and keeps a design where it was built.
            design = (p.measurement, p.fidelity, p.config) \
                if p.measurement == "run" and p.fidelity == "rtl" else None
            fut = client.submit(run_point, p, arrays, None if cache is None else str(cache),
                                last.get(design), key=f"sweep-{p.measurement}-{p.id}",
                                priority=len(todo) - n)
            if design is not None:
                last[design] = fut
            by_key[fut.key] = p
            futures.append(fut)
        pending = as_completed(futures)
        while not pending.is_empty():
            if not pending.has_ready():
                progress.tick()
                time.sleep(0.25)
                continue
            for fut in pending.next_batch():
                p = by_key[fut.key]
                if fut.status == "finished":
                    row = fut.result()
                else:  # the task itself failed: its worker died, or Dask could not run it
                    row = {**p.columns(), "status": "error",
                           "error": error_text(fut.exception())}
                fut.release()
                record(row)
                progress.finished(p.id, row["status"] == "ok", row.get("seconds"),
                                  row.get("error") or "")
    finally:
        progress.close()
        client.unsubscribe_topic(START_TOPIC)
        if any(not f.done() for f in futures):
            client.cancel([f for f in futures if not f.done()])
