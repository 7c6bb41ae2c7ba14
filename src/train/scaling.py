"""Dynamic loss scaling for FP16 (``docs/training.md``, Dynamic loss scaling).

The loss gradient is multiplied by the scale ``S`` before it is rounded into the tiles, so the
gradients come back ``S`` times too large; a step whose gradients are not all finite is
skipped and ``S`` backs off, and ``S`` grows after ``growth_interval`` applied updates in a
row. ``S`` and the factors are powers of two, so every change of ``S`` is exact. With loss
scaling off, ``S`` is 1 for good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import TrainConfig

__all__ = ["LossScale"]


@dataclass
class LossScale:
    """The loss scale's state and its rule.

    Members
    -------
    scale : float
        ``S``, a power of two in [``min_scale``, ``max_scale``] (1 with loss scaling off).
    good : int
        Updates applied since the last skipped step or the last growth of ``S`` (0 ..
        ``growth_interval - 1``).
    """

    scale: float
    good: int = 0

    @classmethod
    def start(cls, config: TrainConfig) -> LossScale:
        """``S = init_scale`` (1 with loss scaling off), ``good = 0``."""
        return cls(config.init_scale if config.loss_scaling else 1.0)

    def check(self, config: TrainConfig) -> str | None:
        """Why this state breaks the rules of ``config``, or None."""
        if not config.loss_scaling:
            ok = self.scale == 1.0 and self.good == 0
            return None if ok else (f"loss scale {self.scale!r} and count {self.good} with "
                                    f"loss scaling off (1 and 0)")
        power = math.isfinite(self.scale) and math.frexp(self.scale)[0] == 0.5
        if not (power and config.min_scale <= self.scale <= config.max_scale):
            return (f"loss scale {self.scale!r} is not a power of two from min_scale "
                    f"{config.min_scale!r} to max_scale {config.max_scale!r}")
        if not 0 <= self.good < config.growth_interval:
            return (f"loss-scale count {self.good} is not from 0 to growth_interval - 1 "
                    f"({config.growth_interval - 1})")
        return None

    def inverse(self) -> np.float32:
        """``r = fp32(1 / S)``: exact, ``S`` being a power of two from 1 to 2^126."""
        return np.float32(1) / np.float32(self.scale)

    def skipped(self, config: TrainConfig) -> None:
        """A step was skipped: ``S = max(S * backoff_factor, min_scale)``, ``good = 0``."""
        if config.loss_scaling:
            self.scale = max(self.scale * config.backoff_factor, config.min_scale)
            self.good = 0

    def applied(self, config: TrainConfig) -> None:
        """An update was applied: ``good += 1``; at ``growth_interval``,
        ``S = min(S * growth_factor, max_scale)`` and ``good = 0``."""
        if config.loss_scaling:
            self.good += 1
            if self.good == config.growth_interval:
                self.scale = min(self.scale * config.growth_factor, config.max_scale)
                self.good = 0
