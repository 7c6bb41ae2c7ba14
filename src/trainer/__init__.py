"""Training on the fabric (``docs/training.md``): the driver that joins the fabric's training
step to the parameter store (:mod:`wafertile.train`, the box outside the array).

Imports go one way: this package uses the fabric's numerics (:mod:`wafertile.sim.models.
training`) and the store; neither knows it.

- :mod:`.workload`: a chain's random start (:func:`~.workload.random_network`: He
  initialization on a fixed random mask) and the digits data as numbers of a format;
- :mod:`.loop`: :func:`~.loop.train` (steps of the fabric's numerics, the store's updates),
  :func:`~.loop.train_fp32` (the same chain, mask, batches and optimizer in FP32 numpy: the
  baseline) and :func:`~.loop.accuracy`.

Built so far: the steps run on the numpy reference of the fabric (bit-exact by construction
with what the tiles are specified to compute); the RTL's training operations, the compiler and
``wafertile train`` are not built yet (issue 18).
"""

from .loop import StepRecord, TrainRun, accuracy, batches, fp32_forward, train, train_fp32
from .workload import digits_data, random_network

__all__ = ["StepRecord", "TrainRun", "accuracy", "batches", "digits_data", "fp32_forward",
           "random_network", "train", "train_fp32"]
