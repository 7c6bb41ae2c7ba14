"""The learning rate of each update (``docs/training.md``, The learning-rate schedule).

A linear warm-up over ``warmup_steps`` updates, times the schedule's decay (``"constant"``,
``"step"``, ``"cosine"``), computed in float64 in the documented order and rounded once to
FP32 (to nearest even).
"""

from __future__ import annotations

import math

import numpy as np

from .config import TrainConfig

__all__ = ["learning_rate"]


def learning_rate(config: TrainConfig, t: int) -> np.float32:
    """The learning rate of update ``t`` (1 for the first update applied).

    Parameters
    ----------
    config : TrainConfig
        ``lr``, ``schedule``, ``warmup_steps``, ``total_steps``, ``step_size``, ``gamma``.
    t : int
        The update's number, counted from 1 (skipped steps do not count).

    Returns
    -------
    numpy.float32
        ``fp32((lr * warm) * decay)``.
    """
    w = config.warmup_steps
    warm = t / w if t <= w else 1.0
    if config.schedule == "step":
        decay = config.gamma ** ((t - 1) // config.step_size)
    elif config.schedule == "cosine":
        p = min(1.0, max(0.0, (t - w - 1) / (config.total_steps - w)))
        decay = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        decay = 1.0
    return np.float32((config.lr * warm) * decay)
