"""The workloads of a sweep: synthetic layers by shape and density, and layer files.

A ``[[workloads]]`` entry of the spec is one kind with its keys; a key given as a list
expands into one workload per value (the product over the keys):

- ``kind = "random"``: ``density`` (required), ``inputs`` (J, default 256), ``outputs`` (I,
  default ``inputs``), ``batch`` (B, default the configuration's ``rows``), ``seed`` (default
  1): random weights and activations within ``data_width``, the weights zeroed to the
  density. The same recipe as ``wafertile run``'s built-in layer (identical for a square
  layer), made on the worker from these numbers;
- ``kind = "layer"``: ``weights`` and ``activations``, ``.npy`` files (paths relative to the
  spec), read once by the driver, checked like ``wafertile run --weights``, and sent to the
  workers; their shape and density fill the same columns;
- ``kind = "network"``: ``network`` (``"digits"``, the shipped classifier on its test
  images, or a network ``.npz`` file), ``activations`` (its inputs, ``.npy``; required but
  for digits), ``labels`` (``.npy``, for the accuracy), ``images`` (the first N inputs): a
  whole network as ``wafertile run --network`` runs it, read by the driver and sent to the
  workers; the columns hold its total density, its inputs and outputs, and the batch;
- ``kind = "gpt"``: ``model`` (a GPT of the model zoo, ``"gpt3-xl"`` ..., or a ``.toml`` file
  of its shape, relative to the spec), ``seq``, ``batch`` (sequences per step), ``sram_kib``,
  ``stream_gbps``, ``clock_mhz`` (each optional, the defaults of ``wafertile run --train``):
  a training step at wafer scale, predicted (measurement ``train``, ``docs/wafer.md``); the
  shape is read by the driver and sent to the workers. The columns hold ``d_model`` as
  ``inputs``, the vocabulary as ``outputs``, density 1.

Every workload fills the same table columns (:data:`WORKLOAD_COLUMNS`), so that a plot of a
metric against ``density`` mixes both kinds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..run import load_array, load_layer

__all__ = ["GPT_FABRIC", "KINDS", "VARYING_COLUMNS", "WORKLOAD_COLUMNS", "Workload",
           "parse_workload", "synthetic_layer"]

#: The table columns of a workload (empty in rows of per-configuration measurements).
WORKLOAD_COLUMNS = ("workload", "workload_kind", "density", "inputs", "outputs", "batch",
                    "seed", "weights", "activations", "network", "labels", "model", "seq",
                    "sram_kib", "stream_gbps", "clock_mhz")

#: The workload columns that tell the rows of a measurement apart (summaries and plots show
#: those that vary).
VARYING_COLUMNS = ("workload", "density", "inputs", "outputs", "batch", "seed", "model", "seq",
                   "sram_kib", "stream_gbps", "clock_mhz")

#: The keys of each kind of ``[[workloads]]`` entry.
KINDS: dict[str, tuple[str, ...]] = {
    "random": ("name", "kind", "density", "inputs", "outputs", "batch", "seed"),
    "layer": ("name", "kind", "weights", "activations"),
    "network": ("name", "kind", "network", "activations", "labels", "images"),
    "gpt": ("name", "kind", "model", "seq", "batch", "sram_kib", "stream_gbps", "clock_mhz"),
}
#: The keys of a ``gpt`` entry that are the fabric's (None: the prediction's default).
GPT_FABRIC = ("sram_kib", "stream_gbps", "clock_mhz")

_INT_KEYS = {"inputs": 1, "outputs": 1, "batch": 1, "seed": 0, "seq": 1}  # key -> least value


@dataclass(frozen=True)
class Workload:
    """One workload of a sweep (see the module's docstring for the kinds).

    ``batch`` None means the configuration's ``rows`` (one activation row per injection
    port); ``digest`` identifies a layer file's content, so that a changed file makes new
    points.
    """

    name: str
    kind: str
    density: float
    inputs: int
    outputs: int
    batch: int | None
    seed: int | None = None
    weights: str | None = None
    activations: str | None = None
    digest: str | None = None
    network: str | None = None
    labels: str | None = None
    model: str | None = None
    seq: int | None = None
    sram_kib: float | None = None
    stream_gbps: float | None = None
    clock_mhz: float | None = None

    def identity(self) -> dict[str, Any]:
        """What makes this workload itself, for point ids."""
        out = asdict(self)
        for key in ("network", "labels", "model", "seq", *GPT_FABRIC):
            if out[key] is None:  # absent before networks and GPTs: the same ids as then
                del out[key]
        if self.kind != "random":  # the files' content, not the numbers read from it
            for key in ("density", "inputs", "outputs", "batch"):
                del out[key]
        return out

    def columns(self, config: Config) -> dict[str, Any]:
        """The table's workload columns for a point of ``config``."""
        return {"workload": self.name, "workload_kind": self.kind,
                "density": self.density, "inputs": self.inputs, "outputs": self.outputs,
                "batch": config.rows if self.batch is None else self.batch,
                "seed": self.seed, "weights": self.weights, "activations": self.activations,
                "network": self.network, "labels": self.labels, "model": self.model,
                "seq": self.seq, "sram_kib": self.sram_kib, "stream_gbps": self.stream_gbps,
                "clock_mhz": self.clock_mhz}

    def label(self) -> str:
        """A short description for listings."""
        batch = "rows" if self.batch is None else self.batch
        if self.kind == "gpt":
            fabric = ", ".join(f"{k} {getattr(self, k):g}" for k in GPT_FABRIC
                               if getattr(self, k) is not None)
            return f"{self.name} (GPT {self.model}{', ' + fabric if fabric else ''})"
        if self.kind == "network":
            return f"{self.name} (network {self.network}, {batch} inputs, density " \
                   f"{self.density:.3g})"
        if self.kind == "layer":
            return f"{self.name} ({self.weights}, {batch}x{self.inputs}@{self.outputs}x" \
                   f"{self.inputs}, density {self.density:.3g})"
        return f"{self.name} ({batch}x{self.inputs}@{self.outputs}x{self.inputs}, density " \
               f"{self.density:g}, seed {self.seed})"

    def layer(self, config: Config, arrays: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """The layer ``(X, W)`` for ``config``: made from the numbers for ``random``,
        ``arrays`` (read by the driver) for ``layer``."""
        if self.kind != "random":
            if arrays is None:
                raise ValueError(f"workload {self.name!r}: the layer files were not sent")
            return arrays
        return synthetic_layer(config, batch=config.rows if self.batch is None else self.batch,
                               inputs=self.inputs, outputs=self.outputs,
                               density=self.density, seed=self.seed)


def synthetic_layer(config: Config, *, batch: int, inputs: int, outputs: int, density: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ``X`` (``batch`` x ``inputs``) and ``W`` (``outputs`` x ``inputs``) within
    ``data_width``, each weight kept with probability ``density``.

    The recipe of :func:`wafertile.run.default_layer`, with any shape: for ``inputs ==
    outputs == size <= act_depth`` both give the same arrays.
    """
    rng = np.random.default_rng(seed)
    x = rng.integers(config.data_min, config.data_max + 1, (batch, inputs))
    w = rng.integers(config.data_min, config.data_max + 1, (outputs, inputs))
    w[rng.random(w.shape) >= density] = 0
    return x, w


def _values(entry: dict[str, Any], key: str, default: Any) -> list[Any]:
    """The values of ``key`` as a list (a scalar is one value)."""
    value = entry.get(key, default)
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{key} must be a value or a non-empty list of values, not []")
        return value
    return [value]


def _check_int(key: str, value: Any) -> int:
    least = _INT_KEYS[key]
    if type(value) is not int or value < least:
        raise ValueError(f"{key} must be an integer >= {least}, not {value!r}")
    return value


def _check_density(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"density must be a number from 0 to 1, not {value!r}")
    return float(value)


def parse_workload(entry: dict[str, Any], base: Path
                   ) -> tuple[list[Workload], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The workloads of one ``[[workloads]]`` entry, and the arrays of its layer files.

    Parameters
    ----------
    entry : dict
        The entry's keys as TOML read them.
    base : Path
        The spec's directory (layer files are relative to it).

    Returns
    -------
    list of Workload, dict
        The workloads (one per combination of listed values), and ``digest -> (X, W)`` for
        layer files.

    Raises
    ------
    ValueError
        With one line naming the key and what is wrong (wrapped by the spec with the entry's
        place); :class:`~wafertile.stream.LayerError` for a bad layer file.
    """
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(repr(k) for k in KINDS)}, "
                         f"not {kind!r}")
    unknown = [k for k in entry if k not in KINDS[kind]]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} for kind {kind!r} "
                         f"(allowed: {', '.join(KINDS[kind])})")
    name = entry.get("name", kind)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, not {name!r}")
    if kind == "layer":
        return _layer_file(entry, name, base)
    if kind == "network":
        return _network(entry, base)
    if kind == "gpt":
        return _gpt(entry, name, base)
    if "density" not in entry:
        raise ValueError("density is required for kind 'random' (a number from 0 to 1, or a "
                         "list of them)")
    densities = [_check_density(v) for v in _values(entry, "density", None)]
    inputs = [_check_int("inputs", v) for v in _values(entry, "inputs", 256)]
    outputs = [_check_int("outputs", v) for v in _values(entry, "outputs", None)
               if v is not None]
    batches = [None if v is None else _check_int("batch", v)
               for v in _values(entry, "batch", None)]
    seeds = [_check_int("seed", v) for v in _values(entry, "seed", 1)]
    out = []
    for j, i, b, s, d in itertools.product(inputs, outputs or [None], batches, seeds,
                                           densities):
        out.append(Workload(name, "random", d, j, j if i is None else i, b, s))
    return out, {}


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()[:16]


def _network(entry: dict[str, Any], base: Path) -> tuple[list[Workload], dict[str, Any]]:
    """A ``network`` entry: the network, its inputs and labels, read as ``wafertile run
    --network`` reads them (digits or a .npz file; an .onnx model is converted first)."""
    from ..network.model import load_labels, load_network

    spec = entry.get("network")
    if not isinstance(spec, str) or not (spec == "digits" or spec.endswith(".npz")):
        raise ValueError(f"network must be 'digits' or a network .npz file (relative to the "
                         f"spec), not {spec!r}")
    for key in ("activations", "labels"):
        if key in entry and not isinstance(entry[key], str):
            raise ValueError(f"{key} must be the path of a .npy file (relative to the spec), "
                             f"not {entry[key]!r}")
    images = entry.get("images")
    if images is not None and (type(images) is not int or images < 1):
        raise ValueError(f"images must be an integer >= 1, not {images!r}")
    labels = None
    if spec == "digits":
        from ..network.digits import digits_network, test_set
        net = digits_network()
        x, labels = test_set(net)
    else:
        net = load_network(base / spec)
        # the compiler's checks against a point's configuration (a bias) name the file
        net.source = net.source or f"network file {str(base / spec)!r}"
        x = None
    if "activations" in entry:
        x = load_array("activations", base / entry["activations"])
        labels = None
    if x is None:
        raise ValueError(f"network {spec!r} needs activations (a .npy file of its inputs)")
    if "labels" in entry:
        labels = load_labels(base / entry["labels"])  # an InputError is a ValueError
    if images is not None:
        x = x[:images]
        labels = None if labels is None else labels[:images]
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"labels has {len(labels)} values for {len(x)} inputs")
    key = _digest(*(layer.weights for layer in net.layers), x,
                  *(() if labels is None else (labels,)))
    name = entry.get("name", "digits" if spec == "digits" else Path(spec).stem)
    workload = Workload(name, "network", float(net.density), int(net.inputs),
                        int(net.outputs), len(x), None, None, entry.get("activations"),
                        key, spec, entry.get("labels"))
    return [workload], {key: (net, np.asarray(x), labels)}


def _gpt(entry: dict[str, Any], name: str, base: Path
         ) -> tuple[list[Workload], dict[str, Any]]:
    """A ``gpt`` entry: one workload per combination of its listed values; the shapes go to
    the workers (``digest -> GptShape``)."""
    from ..model.zoo import ZOO, load_shape, shape

    shapes = {}
    for spec in _values(entry, "model", None):
        if not isinstance(spec, str) or not (spec in ZOO or spec.endswith(".toml")):
            raise ValueError(f"model must be a GPT of the model zoo ({', '.join(ZOO)}) or a "
                             f".toml file of its shape (relative to the spec), not {spec!r}")
        shapes[spec] = load_shape(base / spec) if spec.endswith(".toml") else shape(spec)
    seqs = [None if v is None else _check_int("seq", v)
            for v in _values(entry, "seq", None)]
    batches = [None if v is None else _check_int("batch", v)
               for v in _values(entry, "batch", None)]
    fabric = {}
    for key in GPT_FABRIC:
        values = _values(entry, key, None)
        for v in values:
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                  or not 0 < v < float("inf")):
                raise ValueError(f"{key} must be a number > 0, not {v!r}")
        fabric[key] = [None if v is None else float(v) for v in values]
    out, sent = [], {}
    for spec, gpt in shapes.items():
        key = hashlib.sha256(json.dumps(gpt.as_dict(), sort_keys=True).encode()).hexdigest()[:16]
        sent[key] = gpt
        for seq, b, sram, gbps, mhz in itertools.product(seqs, batches, *fabric.values()):
            out.append(Workload(name if len(shapes) == 1 else f"{name}-{gpt.name}", "gpt",
                                1.0, gpt.d_model, gpt.vocab, b, None, digest=key, model=spec,
                                seq=seq, sram_kib=sram, stream_gbps=gbps, clock_mhz=mhz))
    return out, sent


def _layer_file(entry: dict[str, Any], name: str, base: Path
                ) -> tuple[list[Workload], dict[str, tuple[np.ndarray, np.ndarray]]]:
    for key in ("weights", "activations"):
        if not isinstance(entry.get(key), str):
            raise ValueError(f"{key} must be the path of a .npy file (relative to the spec), "
                             f"not {entry.get(key)!r}")
    x, w = load_layer(base / entry["weights"], base / entry["activations"])
    key = _digest(x, w)
    workload = Workload(name, "layer", float(np.count_nonzero(w) / w.size), int(w.shape[1]),
                        int(w.shape[0]), int(x.shape[0]), None, entry["weights"],
                        entry["activations"], key)
    return [workload], {key: (x, w)}
