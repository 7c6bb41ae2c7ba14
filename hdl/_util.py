"""Small helpers shared by the Amaranth components."""

from __future__ import annotations

from ..config import Config

__all__ = ["check_config"]


def check_config(component: object, config: object) -> Config:
    """Return ``config`` if it is a :class:`Config`; else raise TypeError naming the component.

    A component whose constructor fails is never elaborated; Amaranth would warn that it was
    "created but never used", so the warning is silenced for it first.
    """
    if not isinstance(config, Config):
        component._MustUse__silence = True
        raise TypeError(f"{type(component).__name__} config must be a Config, not {config!r}")
    return config
