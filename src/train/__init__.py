"""Training by weight streaming, the part outside the array: the parameter store and the
optimizer (``docs/training.md``).

- :mod:`.config`: :class:`~.config.TrainConfig` (optimizer, schedule, loss scaling) and
  :class:`~.config.TrainError`;
- :mod:`.schedule`: :func:`~.schedule.learning_rate`, the rate of each update;
- :mod:`.optim`: the update rules :class:`~.optim.Sgd`, :class:`~.optim.Momentum`,
  :class:`~.optim.Adam` (AdamW), exact sequences of FP32 operations;
- :mod:`.scaling`: :class:`~.scaling.LossScale`, dynamic loss scaling for FP16;
- :mod:`.store`: :class:`~.store.ParameterStore`, the FP32 master weights, masks, optimizer
  state and the step;
- :mod:`.checkpoint`: :func:`~.checkpoint.save_checkpoint` (atomic) and
  :func:`~.checkpoint.load_checkpoint`;
- :mod:`.export`: the store from a float network and back to a network ``.npz`` file.
"""

from .checkpoint import FORMAT, fingerprint, load_checkpoint, save_checkpoint
from .config import OPTIMIZERS, SCHEDULES, TRAIN_DTYPES, TrainConfig, TrainError, check_dtype
from .export import (
    attention_layers,
    export_network,
    from_network,
    gelu_flags,
    norm_layers,
    residual_sources,
    to_network,
)
from .optim import Adam, Momentum, Optimizer, Sgd, make_optimizer
from .scaling import LossScale
from .schedule import learning_rate
from .store import ParameterStore

__all__ = ["FORMAT", "OPTIMIZERS", "SCHEDULES", "TRAIN_DTYPES", "Adam", "LossScale", "Momentum",
           "Optimizer", "ParameterStore", "Sgd", "TrainConfig", "TrainError", "attention_layers",
           "check_dtype",
           "export_network", "fingerprint", "from_network", "gelu_flags", "learning_rate",
           "load_checkpoint", "make_optimizer", "norm_layers", "residual_sources",
           "save_checkpoint", "to_network"]
