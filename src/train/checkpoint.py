"""Checkpoints of the parameter store, written atomically (``docs/training.md``,
Checkpoints).

A checkpoint is one ``.npz`` file written through :mod:`wafertile.files` (a temporary file in
the same directory, renamed over the target), so a run killed at any point leaves the previous
checkpoint or the new one. It holds everything an update reads, exactly: the masks, the master
weights and biases, the optimizer state, the counters, the loss-scale state, the caller's RNG
state, and a fingerprint of the network's shape and masks and of the configuration.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..files import check_output_file, read_npz, write_bytes
from .config import TrainConfig, TrainError
from .store import ParameterStore

__all__ = ["FORMAT", "fingerprint", "load_checkpoint", "save_checkpoint"]

#: The value of a checkpoint's ``format`` key.
FORMAT = "wafertile-checkpoint/1"
#: The keys of a checkpoint's ``meta``.
_META = ("fingerprint", "config", "shapes", "step", "skipped", "good", "rng")


def fingerprint(config: TrainConfig, masks: list[np.ndarray], norms: list | None = None
                ) -> str:
    """The SHA-256 (hex) of the configuration, the layer shapes and the masks: the JSON text
    of ``{"config", "format", "shapes"}`` (keys sorted; with LayerNorm layers, ``norms``
    per layer None or ``(gamma, beta, eps)``, also ``"norms"``, their indices, and
    ``"eps"``, their ``eps``) followed by each mask's ``numpy.packbits`` (row-major)."""
    head = {"config": config.as_dict(), "format": FORMAT,
            "shapes": [list(map(int, m.shape)) for m in masks]}
    layers = [n for n, v in enumerate(norms or ()) if v is not None]
    if layers:
        head["norms"] = layers
        head["eps"] = [float(norms[n][2]) for n in layers]
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for m in masks:
        digest.update(np.packbits(np.asarray(m, bool)).tobytes())
    return digest.hexdigest()


def _shapes_text(shapes) -> str:
    return "[" + ", ".join(f"{i}x{j}" for i, j in shapes) + "]"


def save_checkpoint(path: str | Path, store: ParameterStore, *, rng_state: Any = None) -> None:
    """Write ``store`` (and the caller's ``rng_state``) to the ``.npz`` file ``path``,
    atomically: the previous file stays whole until the new one replaces it.

    Parameters
    ----------
    path : path
        The file (``.npz``; its directory must exist). An existing checkpoint is replaced.
    store : ParameterStore
    rng_state : JSON data, optional
        The caller's random state, e.g. ``numpy.random.Generator.bit_generator.state``,
        returned as it was by :func:`load_checkpoint`.

    Raises
    ------
    TrainError
        If ``path`` cannot be written (:func:`wafertile.files.check_output_file`: a symbolic
        link, a directory, a missing directory, not ``.npz``), or ``rng_state`` is not JSON
        data.
    """
    try:
        check_output_file(path, suffix=".npz", force=True, flag="checkpoint")
    except InputError as exc:
        raise TrainError(str(exc)) from None
    try:
        json.dumps(rng_state, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"rng_state must be JSON data (numbers, strings, lists, dicts), not "
                         f"{type(rng_state).__name__} ({exc})") from None
    meta = {"fingerprint": fingerprint(store.config, store.masks, store.norms),
            "config": store.config.as_dict(), "shapes": [list(s) for s in store.shapes],
            **store.counters(), "rng": rng_state}
    buffer = io.BytesIO()
    np.savez(buffer, format=np.array(FORMAT), meta=np.array(json.dumps(meta)),
             **store.arrays())
    write_bytes(path, buffer.getvalue())


def _meta(data: dict[str, np.ndarray]) -> dict[str, Any]:
    """The checked ``meta`` of a checkpoint's arrays (TrainError without the file's name)."""
    text = data.pop("meta", None)
    if text is None:
        raise TrainError("key 'meta' is missing")
    if np.ndim(text) or np.asarray(text).dtype.kind != "U":
        raise TrainError("meta must be one string")
    try:
        meta = json.loads(str(text))
    except ValueError:
        raise TrainError("meta is not valid JSON") from None
    if not isinstance(meta, dict) or sorted(meta) != sorted(_META):
        raise TrainError(f"meta must hold exactly the keys {', '.join(_META)}")
    shapes = meta["shapes"]
    if not (isinstance(shapes, list) and shapes and all(
            isinstance(s, list) and len(s) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in s)
            for s in shapes)):
        raise TrainError(f"shapes must be a list of [I, J] pairs of positive integers, not "
                         f"{shapes!r}")
    return meta


def load_checkpoint(path: str | Path, *, expect: ParameterStore | None = None
                    ) -> tuple[ParameterStore, Any]:
    """Read the checkpoint ``path``.

    Parameters
    ----------
    path : path
        The file :func:`save_checkpoint` wrote.
    expect : ParameterStore, optional
        The store a run made from its network and configuration: the checkpoint must be of
        the same layer shapes, masks and configuration.

    Returns
    -------
    (ParameterStore, object)
        The store as it was saved, and the ``rng_state`` saved with it.

    Raises
    ------
    TrainError
        One line naming the file: missing or not a regular file, not a ``.npz`` archive,
        truncated or corrupt, not a checkpoint, a key missing or of the wrong type or shape,
        a fingerprint that does not match the contents; with ``expect``, the first difference
        of shapes, masks or configuration.
    """
    label = f"checkpoint {str(path)!r}"
    try:
        data = read_npz(path, label)
    except TrainError:
        raise
    except InputError as exc:
        raise TrainError(str(exc)) from None
    fmt = data.pop("format", None)
    if fmt is None or np.ndim(fmt) or np.asarray(fmt).dtype.kind != "U" or str(fmt) != FORMAT:
        found = "no format key" if fmt is None else f"format {str(fmt)!r}"
        raise TrainError(f"{label} is not a wafertile checkpoint ({found}; a checkpoint has "
                         f"format {FORMAT!r})")
    try:
        meta = _meta(data)
        config = TrainConfig.from_dict(meta["config"])
        counters = {key: meta[key] for key in ("step", "skipped", "good")}
        store = ParameterStore.restore(config, [tuple(s) for s in meta["shapes"]], data,
                                       counters)
    except TrainError as exc:
        raise TrainError(f"{label} is damaged: {exc}") from None
    if fingerprint(config, store.masks, store.norms) != meta["fingerprint"]:
        raise TrainError(f"{label} is damaged: its fingerprint does not match its contents")
    if expect is not None:
        _compare(label, store, expect)
    return store, meta["rng"]


def _compare(label: str, there: ParameterStore, here: ParameterStore) -> None:
    """Refuse a checkpoint (``there``) of another network or configuration than ``here``."""
    if there.shapes != here.shapes:
        raise TrainError(f"{label} is of another network: layer shapes "
                         f"{_shapes_text(there.shapes)} there, {_shapes_text(here.shapes)} here")
    for n, (a, b) in enumerate(zip(there.masks, here.masks, strict=True)):
        if not np.array_equal(a, b):
            raise TrainError(f"{label} is of another network: mask {n} differs "
                             f"({int(a.sum())} nonzeros there, {int(b.sum())} here)")
    if there.norm_layers != here.norm_layers:
        raise TrainError(f"{label} is of another network: LayerNorm layers "
                         f"{there.norm_layers} there, {here.norm_layers} here")
    for n in there.norm_layers:
        a, b = there.norms[n][2], here.norms[n][2]
        if a != b:
            raise TrainError(f"{label} is of another network: ln_eps{n} = {float(a)!r} there, "
                             f"{float(b)!r} here")
    why = there.config.difference(here.config)
    if why:
        raise TrainError(f"{label} was written with another configuration: {why}")
