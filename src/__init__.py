"""wafertile: a generator of wafer-scale style compute fabric RTL.

Subpackages: :mod:`wafertile.hdl` (Amaranth modules and the generator), :mod:`wafertile.sim`
(numpy reference models and cocotb testbenches), :mod:`wafertile.synth` (FPGA flows).
"""

from importlib.metadata import PackageNotFoundError, version

from .config import Config, ConfigError, Overflow

__all__ = ["Config", "ConfigError", "Overflow", "__version__"]

try:
    __version__ = version("wafertile")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"
