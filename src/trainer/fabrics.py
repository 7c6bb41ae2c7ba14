"""Data-parallel training on several simulated fabrics, on Dask (the SwarmX role,
``docs/training.md``, "Several fabrics").

Each fabric is a worker process with its own copy of the array (the Verilator harness, built
once and cached on disk); a step sends the same weights to every fabric and gives fabric
``f`` a contiguous share of the step's batch groups (:func:`shares`); each returns its groups'
logits and partial sums; the host adds the partial sums in group order
(:func:`wafertile.trainer.rtl.assemble`), the same additions in the same order as on one
fabric, so a step on ``N`` fabrics equals the step on one, bit for bit, for every ``N``.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ..config import Config
from ..hdl.core.fp import float_format
from ..sim.models.training import forward, loss_gradient, training_step
from .rtl import GroupResult, RtlFabric, RtlStep, assemble, group_starts

__all__ = ["DaskFabrics", "shares"]

_log = logging.getLogger(__name__)

#: A worker process's fabrics, built on first use (the build itself is cached on disk).
_FABRICS: dict[tuple[str, str], RtlFabric] = {}


def shares(groups: int, fabrics: int) -> list[tuple[int, int]]:
    """Fabric ``f``'s groups ``[start, stop)``: contiguous, in order, sizes differing by at
    most one (the first ``groups % fabrics`` fabrics one more).

    Raises
    ------
    ValueError
        If a fabric would have no group.
    """
    if not 1 <= fabrics <= groups:
        raise ValueError(f"{fabrics} fabrics need at least as many batch groups, not {groups}")
    size, extra = divmod(groups, fabrics)
    out, start = [], 0
    for f in range(fabrics):
        stop = start + size + (f < extra)
        out.append((start, stop))
        start = stop
    return out


def loss_gradient_values(config: Config, weights, biases, x, labels, scale: float,
                         gelu=None, ln=None, res=None) -> np.ndarray:
    """The loss gradient the host writes in (numbers of the tiles' format): the reference
    step's ``dys[-1]`` (:func:`~wafertile.sim.models.training.training_step`) from its forward
    pass alone."""
    fmt = float_format(config.dtype)
    logits, _ = forward(config, weights, biases, x, gelu, ln=ln, res=res)
    _, dy = loss_gradient(logits, labels, scale, len(logits), config.dtype)
    return fmt.values(dy).astype(np.float32)


def _fabric(config: Config, build_root: str | None) -> RtlFabric:
    key = (repr(config), str(build_root))
    if key not in _FABRICS:
        _FABRICS[key] = RtlFabric(config, build_root=None if build_root is None
                                  else Path(build_root))
    return _FABRICS[key]


def _warm(config: Config, build_root: str | None) -> str:
    """Make this worker's fabric (run on every worker before the first step)."""
    return str(_fabric(config, build_root).exe)


def _share(config: Config, build_root: str | None, weights, biases, masks, x, dy, gelu=None,
           ln=None, res=None) -> list[GroupResult]:
    """A Dask task: the groups of the share ``x`` on this worker's fabric."""
    return _fabric(config, build_root).groups(weights, biases, masks, x, dy, gelu, ln, res)


class DaskFabrics:
    """``fabrics`` simulated float arrays of ``config`` on Dask workers: a LocalCluster of
    that many processes, or the workers of ``scheduler`` (``tcp://HOST:PORT``). Use as a
    context manager (it closes the cluster)."""

    def __init__(self, config: Config, fabrics: int, *, scheduler: str | None = None,
                 build_root: Path | None = None):
        from ..cluster import dask_client

        self.config, self.fabrics = config, fabrics
        self.build_root = None if build_root is None else str(build_root)
        RtlFabric(config, build_root=build_root)  # build here once; the workers find it
        self._stack = ExitStack()
        try:
            self.client, self.where = self._stack.enter_context(
                dask_client(fabrics, scheduler))
            self.client.run(_warm, config, self.build_root)
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> DaskFabrics:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def step(self, weights, biases, masks, x, labels, scale: float = 1.0, gelu=None, ln=None,
             res=None) -> RtlStep:
        """One step of the batch ``x`` on the fabrics (as :meth:`RtlFabric.step`);
        ``fabric_cycles`` has each fabric's cycles, ``step_cycles`` the longest."""
        cfg = self.config
        R = cfg.rows
        # the groups need only the loss gradient: the fabrics start on it while this process
        # computes the rest of the reference step
        dy = loss_gradient_values(cfg, weights, biases, x, labels, scale, gelu, ln, res)
        starts = group_starts(len(x), R)
        futures = []
        # a short batch (an epoch's last) may have fewer groups than there are fabrics
        for a, b in shares(len(starts), min(self.fabrics, len(starts))):
            rows = slice(a * R, b * R)
            futures.append(self.client.submit(
                _share, cfg, self.build_root, weights, biases, masks, np.asarray(x)[rows],
                dy[rows], gelu, ln, res, pure=False))
        ref = training_step(cfg, weights, biases, masks, x, labels, scale, gelu, ln, res)
        per_fabric = self.client.gather(futures)
        results = [r for share in per_fabric for r in share]
        return assemble(cfg, ref, masks, results,
                        [sum(r.cycles["total"] for r in share) for share in per_fabric])
