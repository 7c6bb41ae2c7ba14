"""What a training run sets: the optimizer, its learning-rate schedule and the loss scaling
(``docs/training.md``, Configuration).

:class:`TrainConfig` is frozen and checked when it is made; every rejected value is a
:class:`TrainError` with one line naming the parameter, the value and the rule, e.g.
``lr must be a positive finite number, not -0.1``. The float parameters are kept as given
(float64); the update uses their FP32 roundings (:meth:`TrainConfig.fp32`), which must satisfy
the same rules.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["OPTIMIZERS", "SCHEDULES", "TRAIN_DTYPES", "TrainConfig", "TrainError", "check_dtype"]

#: The tile formats a run trains for.
TRAIN_DTYPES = ("fp16", "bf16")
#: The update rules (``docs/training.md``, The optimizers).
OPTIMIZERS = ("sgd", "momentum", "adam")
#: The learning-rate schedules.
SCHEDULES = ("constant", "step", "cosine")
#: The largest loss scale (so that ``1 / S`` is a normal FP32 number).
_MAX_SCALE = 2.0 ** 126


class TrainError(InputError):
    """A training input (a parameter, the network, a gradient, a checkpoint) was rejected. The
    message is one line."""


def _choice(name: str, value: object, choices: tuple[str, ...], note: str = "") -> None:
    if not (isinstance(value, str) and value in choices):
        if len(choices) == 2:
            listed = f"{choices[0]!r} or {choices[1]!r}"
        else:
            listed = "one of " + ", ".join(map(repr, choices))
        raise TrainError(f"{name} must be {listed}{note}, not {value!r}")


def check_dtype(dtype: object) -> str:
    """``dtype`` if it is a tile format training runs on (``"fp16"``, ``"bf16"``).

    Raises
    ------
    TrainError
        Naming the value, for anything else (an integer format included).
    """
    _choice("dtype", dtype, TRAIN_DTYPES, " (training runs on float tiles)")
    return dtype


def _integer(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise TrainError(f"{name} must be an integer of at least {low}, not {value!r}")


def _number(name: str, value: object, rule: str, ok) -> float:
    """``value`` as a float if it is a real number for which ``ok(value)`` and
    ``ok(float32(value))`` hold, else a :class:`TrainError` quoting ``rule``."""
    good = (not isinstance(value, bool) and isinstance(value, int | float | np.integer
                                                       | np.floating))
    if good:
        as_float = float(value)
        with np.errstate(over="ignore"):
            single = float(np.float32(as_float))
        good = ok(as_float) and ok(single)
    if not good:
        raise TrainError(f"{name} must be {rule}, not {value!r}")
    return as_float


def _power_of_two(x: float) -> bool:
    return math.isfinite(x) and x > 0 and math.frexp(x)[0] == 0.5


def _unit(x: float) -> bool:
    return 0.0 <= x < 1.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The parameters of a training run's optimizer, schedule and loss scaling.

    Parameters
    ----------
    dtype : str
        The tiles' format, ``"fp16"`` or ``"bf16"``: what :meth:`ParameterStore.stream_weights
        <wafertile.train.ParameterStore.stream_weights>` rounds to by default, the export's
        format and the default of ``loss_scaling``.
    optimizer : str
        ``"sgd"``, ``"momentum"`` or ``"adam"`` (AdamW when ``weight_decay`` is not 0).
    lr : float
        The base learning rate: positive and finite (its FP32 rounding too).
    momentum : float
        ``"momentum"``'s factor, in [0, 1).
    beta1, beta2 : float
        Adam's decay rates, in [0, 1) (their FP32 roundings too).
    eps : float
        Adam's ``eps``, positive and finite (its FP32 rounding too).
    weight_decay : float
        Decoupled weight decay of the weights (not the biases); 0 leaves it out.
    schedule : str
        ``"constant"``, ``"step"`` or ``"cosine"``, each after ``warmup_steps`` of linear
        warm-up.
    warmup_steps, total_steps : int
        The warm-up's length; the update count at which the cosine reaches 0 (``"cosine"``:
        more than ``warmup_steps``).
    step_size, gamma : int, float
        ``"step"``: the rate is multiplied by ``gamma`` (in (0, 1]) every ``step_size`` updates.
    loss_scaling : bool or None
        Dynamic loss scaling; ``None`` (the default) resolves to on for fp16, off for bf16.
    init_scale, growth_factor, backoff_factor, growth_interval, min_scale, max_scale
        The loss scale's start, its factors (powers of two above and below 1), the good
        updates before it grows, and its bounds (powers of two, 1 <= min <= init <= max <=
        2^126).

    Raises
    ------
    TrainError
        For any value that breaks its rule (one line: the parameter, the value, the rule).
    """

    dtype: str = "bf16"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    total_steps: int = 0
    step_size: int = 1000
    gamma: float = 0.1
    loss_scaling: bool | None = None
    init_scale: float = 65536.0
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    min_scale: float = 1.0
    max_scale: float = 16777216.0

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        floats = {
            "lr": ("a positive finite number", lambda x: math.isfinite(x) and x > 0),
            "momentum": ("a number in [0, 1)", _unit),
            "beta1": ("a number in [0, 1)", _unit),
            "beta2": ("a number in [0, 1)", _unit),
            "eps": ("a positive finite number", lambda x: math.isfinite(x) and x > 0),
            "weight_decay": ("a finite number of at least 0",
                             lambda x: math.isfinite(x) and x >= 0),
            "gamma": ("a number in (0, 1]", lambda x: 0 < x <= 1),
            "init_scale": ("a power of two", _power_of_two),
            "growth_factor": ("a power of two above 1", lambda x: _power_of_two(x) and x > 1),
            "backoff_factor": ("a power of two below 1", lambda x: _power_of_two(x) and x < 1),
            "min_scale": ("a power of two from 1 to 2**126",
                          lambda x: _power_of_two(x) and 1 <= x <= _MAX_SCALE),
            "max_scale": ("a power of two from 1 to 2**126",
                          lambda x: _power_of_two(x) and 1 <= x <= _MAX_SCALE),
        }
        for name, (rule, ok) in floats.items():
            object.__setattr__(self, name, _number(name, getattr(self, name), rule, ok))
        for name, low in (("warmup_steps", 0), ("total_steps", 0), ("step_size", 1),
                          ("growth_interval", 1)):
            _integer(name, getattr(self, name), low)
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.schedule == "cosine" and self.total_steps <= self.warmup_steps:
            raise TrainError(f"total_steps must be more than warmup_steps "
                             f"({self.warmup_steps}) with schedule 'cosine', not "
                             f"{self.total_steps}")
        if self.min_scale > self.max_scale:
            raise TrainError(f"min_scale ({self.min_scale!r}) must not be above max_scale "
                             f"({self.max_scale!r})")
        if not self.min_scale <= self.init_scale <= self.max_scale:
            raise TrainError(f"init_scale must be from min_scale ({self.min_scale!r}) to "
                             f"max_scale ({self.max_scale!r}), not {self.init_scale!r}")
        if self.loss_scaling is None:
            object.__setattr__(self, "loss_scaling", self.dtype == "fp16")
        elif not isinstance(self.loss_scaling, bool):
            raise TrainError(f"loss_scaling must be true, false or None (on for fp16), not "
                             f"{self.loss_scaling!r}")

    def fp32(self, name: str) -> np.float32:
        """The FP32 rounding (to nearest even) of the float parameter ``name``."""
        return np.float32(getattr(self, name))

    def as_dict(self) -> dict[str, Any]:
        """Every parameter by name (``loss_scaling`` resolved): JSON data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The configuration of :meth:`as_dict`'s ``values``.

        Raises
        ------
        TrainError
            For an unknown parameter, or a value that breaks its rule (a missing one takes its
            default).
        """
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(values, dict):
            raise TrainError(f"a training configuration is a table of parameters, not "
                             f"{type(values).__name__}")
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise TrainError(f"unknown training parameter {unknown[0]!r} (known: "
                             f"{', '.join(names)})")
        return cls(**values)

    def difference(self, other: TrainConfig) -> str | None:
        """The first parameter whose value differs, as ``"lr = 0.001 there, 0.002 here"``
        (``self`` there, ``other`` here), or None."""
        for name, value in self.as_dict().items():
            mine = json.dumps(value)
            theirs = json.dumps(getattr(other, name))
            if mine != theirs:
                return f"{name} = {mine} there, {theirs} here"
        return None
