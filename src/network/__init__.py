"""Whole networks on the fabric: layers chained on chip, activations never leave the array.

- :mod:`.model`: :class:`~.model.Network`, its layers and the ``.npz`` file format;
- :mod:`.compiler`: :func:`~.compiler.compile_network`, the program with on-chip hand-offs;
- :mod:`.run`: running a network on the RTL (simulators or a board) and the report;
- :mod:`.onnx`: import of a float ONNX MLP, with post-training quantization and pruning;
- :mod:`.digits`: the shipped workload, a pruned int8 classifier of scikit-learn's digits.

The bit-exact integer reference is :func:`wafertile.sim.models.network.network_reference`.
"""

from .compiler import NetworkProgram, compile_network, edge_flits, handoff_window
from .model import FORMAT, Layer, Network, NetworkError, load_network, save_network

__all__ = ["FORMAT", "Layer", "Network", "NetworkError", "NetworkProgram", "compile_network",
           "edge_flits", "handoff_window", "load_network", "save_network"]
