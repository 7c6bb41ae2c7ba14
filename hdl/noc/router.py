"""Choosing a router micro-architecture: the one place a configuration picks its class."""

from __future__ import annotations

from ...config import Config
from .base import Router
from .compact import CompactRouter
from .lite import LiteRouter
from .parallel import ParallelRouter
from .voq import VoqRouter

__all__ = ["ROUTERS", "make_router"]

#: Router classes by ``Config.router_arch``.
ROUTERS: dict[str, type[Router]] = {cls.arch: cls for cls in
                                    (CompactRouter, ParallelRouter, LiteRouter, VoqRouter)}


def make_router(config: Config) -> Router:
    """The router of ``config.router_arch`` for ``config``.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    """
    if not isinstance(config, Config):
        raise TypeError(f"Router config must be a Config, not {config!r}")
    return ROUTERS[config.router_arch](config)
