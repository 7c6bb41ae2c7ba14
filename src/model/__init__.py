"""The performance model: the cycles of every phase of a compiled program without the RTL.

Two levels (``docs/performance.md``, "Performance model"):

- :mod:`.mesh`, the event-level model: a phase played through every router's buffers and
  arbiters and every core's pipeline, one cycle per step, vectorized over the tiles (it
  matches the RTL's cycle counts on the validation set);
- :mod:`.stream` and :mod:`.phases`, the analytic model: per-port, per-column and per-tile
  queues as vectorized max-plus recursions (:mod:`.flow`), whose cost grows with the flits
  and not with the array: wafer-size arrays in seconds.

:func:`predict_program` predicts a compiled layer or network phase by phase;
:func:`predict_layer` and :func:`predict_network` compile and predict (``wafertile run
--fidelity model``); :class:`Timing` holds the measured latencies and rates of a
configuration.
"""

from .predict import DETAILS, KINDS, ModelError, Prediction, predict_phase, predict_program
from .timing import Timing

__all__ = ["DETAILS", "KINDS", "ModelError", "Prediction", "Timing", "predict_phase",
           "predict_program"]
