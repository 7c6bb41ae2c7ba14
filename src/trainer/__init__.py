"""Training on the fabric (``docs/training.md``): the driver that joins the fabric's training
step to the parameter store (:mod:`wafertile.train`, the box outside the array).

Imports go one way: this package uses the fabric's numerics (:mod:`wafertile.sim.models.
training`) and the store; neither knows it.

- :mod:`.workload`: a chain's random start (:func:`~.workload.random_network`: He
  initialization on a fixed random mask) and the digits data as numbers of a format;
- :mod:`.loop`: :func:`~.loop.train` (steps of the fabric's numerics, the store's updates),
  :func:`~.loop.train_fp32` (the same chain, mask, batches and optimizer in FP32 numpy: the
  baseline) and :func:`~.loop.accuracy`;
- :mod:`.compiler`: a batch group's training step as a program for the array;
- :mod:`.rtl`: :class:`~.rtl.RtlFabric`, steps on the Verilator harness, every logit and
  gradient checked against the reference; :func:`~.rtl.assemble`, the host's sum of the
  groups' partial sums;
- :mod:`.fabrics`: :class:`~.fabrics.DaskFabrics`, a step's groups on several simulated
  fabrics (Dask workers), equal to one fabric's bit for bit;
- :mod:`.command`: ``wafertile train``.
"""

from .loop import StepRecord, TrainRun, accuracy, batches, fp32_forward, train, train_fp32
from .workload import digits_data, random_network

__all__ = ["StepRecord", "TrainRun", "accuracy", "batches", "digits_data", "fp32_forward",
           "random_network", "train", "train_fp32"]
