"""Small helpers shared by the Amaranth components."""

from __future__ import annotations

from amaranth.lib import wiring

from ..config import Config

__all__ = ["ConfiguredComponent", "check_config"]


def check_config(component: object, config: object) -> Config:
    """Return ``config`` if it is a :class:`Config`; else raise TypeError naming the component.

    A component whose constructor fails is never elaborated; Amaranth would warn that it was
    "created but never used", so the warning is silenced for it first.
    """
    if not isinstance(config, Config):
        component._MustUse__silence = True
        raise TypeError(f"{type(component).__name__} config must be a Config, not {config!r}")
    return config


class ConfiguredComponent(wiring.Component):
    """A component made from a :class:`Config`, which it keeps read-only as ``config``.

    Subclasses check the config (:func:`check_config`) before deriving their members from it,
    then call ``super().__init__(config, members)``.
    """

    def __init__(self, config: Config, members: dict[str, wiring.Member]):
        self._config = check_config(self, config)
        super().__init__(members)

    @property
    def config(self) -> Config:
        return self._config
