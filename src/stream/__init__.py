"""The weight-streaming compiler: a sparse layer ``Y = X @ W.T`` as flits for the array.

Mapping (see docs/streaming.md):

- **Batch on rows, outputs on columns.** Tile (x, y) holds the whole activation row
  ``X[b, :]`` of batch element ``b = y + R * group`` in its activation bank (``act[j]``), and
  the accumulators of the outputs ``i`` assigned to column ``x`` (``acc[slot]``). Every output
  ``Y[b, i]`` is then complete in one tile: no partial sums cross the fabric (unless ``J``
  does not fit a tile: see *Reduction*).
- **Only nonzero weights are sent.** ``W[i, j] != 0`` becomes one MAC flit ``acc[slot(i)] +=
  W[i, j] * act[j]``, multicast to the column of ``i`` (rows ``0 .. R'-1``): one injection
  feeds one MAC in every tile of that column, one per batch element.
- **Balance.** Output rows are assigned to columns longest-first by their nonzero count, so
  every column receives about ``nnz / C`` flits; flits are dealt round-robin to the west-edge
  injection ports (one per row), so each port injects about ``nnz / R``.
- **Passes.** If a column's outputs do not fit the accumulator bank, they are split into
  passes over the same resident activations; batch elements beyond ``R`` are further groups,
  each reloading the activations.
- **Reduction.** If an activation row does not fit a tile (``J > act_depth``), it is split
  into ``K = ceil(J / act_depth)`` chunks and the columns into ``K`` blocks of ``G = C // K``
  columns: column ``k * G + g`` holds chunk ``k`` for output group ``g`` and accumulates the
  chunk's partial sums; a 'reduce' phase then has the tiles of blocks ``k >= 1`` SEND their
  partials as ADD flits to block 0 (tile ``(g, y)``), where the outputs are read. A layer is
  refused only if ``K > C`` (or with ``overflow = "saturate"`` and ``K > 1``: saturating per
  chunk and then adding is not the reference's saturation after every MAC). With a
  floating-point ``dtype`` the order of the additions matters, so there is one fenced reduce
  phase per block ``k = 1 .. K - 1``, in that order: ``((p0 + p1) + p2) + ...``
  (:func:`reduce_phases`).
- **Floating point** (``dtype`` fp16 / bf16): the weights and activations are the user's
  float arrays, exactly numbers of the format (:func:`wafertile.formats.float_words`), sent as
  their bits; the outputs are FP32 words (:func:`reference` gives them as ``float32``).

The result is a :class:`LayerProgram`: phases of (port, flit) injections and the expected
replies, which a driver (simulator or board) plays in order.

The modules, by job (each imports only those above it):

- :mod:`.program`: the containers (:class:`Phase`, :class:`PhaseBuilder`,
  :class:`LayerProgram`), their ``.npz`` format (:func:`save_program`, :func:`load_program`)
  and :class:`LayerError`;
- :mod:`.plan`: the plan of a layer (:func:`plan_layer`, :class:`LayerPlan`: groups, slots,
  passes and each pass's MAC flits) and the reply routes (:func:`reply_route`);
- :mod:`.numpy_reference`: the numpy :func:`reference` and the input checks (:func:`check_layer`,
  :func:`layer_words`);
- :mod:`.reduction`: the on-fabric reduction (:func:`reduce_phases`, :func:`reduce_phase`);
- :mod:`.rows`: operations along a row of the array (:func:`~.rows.softmax_phases`: the
  softmax of a layer's outputs, docs/nonlinear.md);
- :mod:`.compiler`: the phases of a layer (:func:`add_activations`, :func:`add_zero`,
  :func:`stream_phase`, :func:`read_phase`) and :func:`compile_layer`.
"""

from .compiler import add_activations, add_zero, compile_layer, read_phase, stream_phase
from .numpy_reference import check_layer, layer_words, reference
from .plan import LayerPlan, handoff_window, plan_layer, reply_route
from .program import LayerError, LayerProgram, Phase, PhaseBuilder, load_program, save_program
from .reduction import reduce_phase, reduce_phases

__all__ = ["LayerError", "LayerPlan", "LayerProgram", "Phase", "PhaseBuilder", "add_activations",
           "add_zero", "check_layer", "compile_layer", "handoff_window", "layer_words",
           "load_program", "plan_layer", "read_phase", "reduce_phase", "reduce_phases",
           "reference", "reply_route", "save_program", "stream_phase"]
