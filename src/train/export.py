"""The parameter store and the network ``.npz`` format (``docs/training.md``, Export): a
store from a float network's weights and masks, and the trained network back as a file that
``wafertile run --network`` runs.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import InputError
from ..files import check_output_file, write_bytes
from ..network.model import Layer, Network, save_network
from .config import TrainConfig, TrainError, check_dtype
from .store import ParameterStore

__all__ = ["attention_layers", "export_network", "from_network", "gelu_flags", "norm_layers",
           "residual_sources", "to_network"]


def to_network(store: ParameterStore, dtype: str | None = None, name: str = "",
               gelu=None, res=None) -> Network:
    """The trained network in the format ``dtype`` (default the configuration's): the
    weights as :meth:`~ParameterStore.stream_weights` gives them, the FP32 master biases, ReLU
    after every layer but the last (GELU after those ``gelu`` flags, one per layer; a
    LayerNorm layer's FP32 gamma, beta and eps, with no activation after it; ``res``: per
    layer, None or the earlier layer whose accumulators it adds).

    Raises
    ------
    TrainError
        If ``dtype`` is not ``"fp16"`` or ``"bf16"``.
    """
    dtype = check_dtype(store.config.dtype if dtype is None else dtype)
    weights = store.stream_weights(dtype)
    gelu = gelu or (False,) * store.layers
    norms = store.norms or [None] * store.layers
    res = res or (None,) * store.layers
    last = store.layers - 1
    layers = []
    for n, (w, b, norm) in enumerate(zip(weights, store.biases, norms, strict=True)):
        if norm is not None:
            layers.append(Layer(w, b, ln_gamma=norm[0], ln_beta=norm[1],
                                ln_eps=float(norm[2]), res=res[n]))
            continue
        layers.append(Layer(w, b, relu=n < last and not gelu[n], gelu=n < last and
                            bool(gelu[n]), res=res[n]))
    return Network(layers, 16, name=name, dtype=dtype)


def export_network(store: ParameterStore, path: str | Path, *, dtype: str | None = None,
                   name: str = "", gelu=None, res=None) -> None:
    """Write :func:`to_network`'s network to the ``.npz`` file ``path``
    (:func:`wafertile.network.save_network`'s format, written atomically).

    Raises
    ------
    TrainError
        If ``path`` cannot be written (:func:`wafertile.files.check_output_file`), or
        ``dtype`` is not a float format.
    """
    try:
        check_output_file(path, suffix=".npz", force=True, flag="network export")
    except InputError as exc:
        raise TrainError(str(exc)) from None
    buffer = io.BytesIO()
    save_network(to_network(store, dtype, name, gelu, res), buffer)
    write_bytes(path, buffer.getvalue())


def gelu_flags(net: Network) -> tuple[bool, ...]:
    """Per layer of ``net``, whether GELU follows it (the training step's ``gelu``)."""
    return tuple(bool(layer.gelu) for layer in net.layers)


def residual_sources(net: Network) -> tuple:
    """Per layer of ``net``, the earlier layer whose accumulators it adds (``res{l}``), or
    None (the training step's ``res``)."""
    return tuple(layer.res for layer in net.layers)


def attention_layers(net: Network, positions: int | None = None) -> tuple:
    """Per layer of ``net``, None or ``(heads, T)``: the attention after it (``attn{l}``)
    over sequences of ``T`` positions, the network's ``seq`` or else ``positions`` (the
    training step's ``attn``, docs/training.md, "Attention layers").

    Raises
    ------
    TrainError
        If the network has attention and neither ``seq`` nor ``positions``.
    """
    T = net.seq if net.seq is not None else positions
    if T is None and any(layer.attn for layer in net.layers):
        raise TrainError("the network's attention needs its positions per sequence: the "
                         "network's seq, or give them")
    return tuple((int(layer.attn), int(T)) if layer.attn else None for layer in net.layers)


def norm_layers(net: Network) -> list[int]:
    """The layers of ``net`` with a LayerNorm (``ln_g{l}``)."""
    return [n for n, layer in enumerate(net.layers) if layer.layernorm]


def from_network(net: Network, config: TrainConfig | None = None) -> ParameterStore:
    """A store that starts from a float network: its weights, its FP32 biases, and its
    nonzero weights as the masks.

    Parameters
    ----------
    net : Network
        A float network (fp16 or bf16) with ReLU, GELU or a LayerNorm (and no activation)
        after every layer but the last (:func:`gelu_flags`, :func:`norm_layers` say which).
    config : TrainConfig, optional
        Default: ``TrainConfig(dtype=net.dtype)``.

    Raises
    ------
    TrainError
        For an integer network, a hidden layer without ReLU, GELU or a LayerNorm, a
        LayerNorm on the last layer or with an activation, attention, or weights the store
        refuses (not finite); the message names the network's file when
        it was read from one.
    """
    where = f"{net.source}: " if net.source else ""
    if not net.is_float:
        raise TrainError(f"{where}training starts from a float network (fp16 or bf16), not "
                         f"an {net.dtype} one")
    last = len(net.layers) - 1
    chains = ("chains of fully connected layers with ReLU, GELU or a LayerNorm and residual "
              "connections only")
    for n, layer in enumerate(net.layers):
        if layer.layernorm and (n == last or layer.relu or layer.gelu):
            key = f"{'relu' if layer.relu else 'gelu'}{n}"
            what = ("the last layer's logits go to the loss as they are" if n == last else
                    f"a trained LayerNorm has no activation after it ({key})")
            raise TrainError(f"{where}layer {n} has a LayerNorm (ln_g{n}): {what}")
        if layer.attn:
            raise TrainError(f"{where}layer {n} has attention after it (attn{n}); the store "
                             f"takes {chains} (a training step takes attention layers: "
                             f"docs/training.md, \"Attention layers\")")
    for n, layer in enumerate(net.layers[:-1]):
        if not (layer.relu or layer.gelu or layer.layernorm):
            raise TrainError(f"{where}layer {n} has neither ReLU, GELU nor a LayerNorm; the "
                             f"trained chain has one of them after every layer but the last")
    config = TrainConfig(dtype=net.dtype) if config is None else config
    norms = [(layer.ln_gamma, layer.ln_beta, layer.ln_eps) if layer.layernorm else None
             for layer in net.layers]
    try:
        return ParameterStore([layer.weights for layer in net.layers],
                              [layer.bias for layer in net.layers], None, config,
                              norms if any(v is not None for v in norms) else None)
    except TrainError as exc:
        raise TrainError(f"{where}{exc}") from None
