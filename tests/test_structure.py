"""The package's shape: imports go one way (no cycle), the hardware does not depend on the
verification or FPGA code, the reference models run without a simulator, no module imports
another's private names, and nothing lazily imports what it could import at the top."""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _modules() -> dict[str, Path]:
    """Module name -> file, from pyproject's package-dir mapping."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    out = {}
    for package in setup["packages"]:
        top = next(p for p in sorted(setup["package-dir"], key=len, reverse=True)
                   if package == p or package.startswith(p + "."))
        folder = ROOT / setup["package-dir"][top] / Path(*package[len(top):].split(".")[1:])
        for file in sorted(folder.glob("*.py")):
            name = package if file.stem == "__init__" else f"{package}.{file.stem}"
            out[name] = file
    return out


MODULES = _modules()


def _imports(name: str, file: Path) -> list[tuple[str, list[str], bool]]:
    """(module imported, names imported from it, at module level) for every import."""
    tree = ast.parse(file.read_text())
    package = name if file.stem == "__init__" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], id(node) in top_level))
    return out


def _resolve(target: str, names: list[str]) -> list[str]:
    """The package modules an import statement loads (a package's __init__ included)."""
    found = []
    candidates = [f"{target}.{n}" for n in names] + [target]
    for c in candidates:
        while c and c not in MODULES:
            c = c.rpartition(".")[0]
        if c:
            found.append(c)
    return found


def _graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for name, file in MODULES.items():
        for target, names, _ in _imports(name, file):
            for dep in _resolve(target, names):
                # an import of a parent package counts (``from . import fp`` loads the
                # package's __init__, which may import this module: a cycle)
                if dep != name:
                    graph[name].add(dep)
    return graph


def test_the_modules_were_found():
    assert {"wafertile.config", "wafertile.hdl.noc.router", "wafertile.sim.vip.link",
            "wafertile.synth.flow"} <= set(MODULES)


def test_no_import_cycle():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for node in sorted(MODULES):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_hdl_imports_nothing_from_sim_or_synth():
    graph = _graph()
    bad = [(m, d) for m, deps in graph.items() for d in deps
           if m.startswith("wafertile.hdl") and d.startswith(("wafertile.sim",
                                                                "wafertile.synth"))]
    assert not bad, bad


def test_the_parameter_store_is_a_box_apart():
    """The parameter store (wafertile.train, MemoryX's role) knows nothing of the fabric's
    simulation, its streams or the training driver: it shares only the number formats
    (hdl.core.fp) and the network file (network.model); nothing but the driver, the
    testbenches, the command line (``wafertile train``) and the tests imports the driver
    (wafertile.trainer)."""
    graph = _graph()
    allowed = ("wafertile.train", "wafertile.errors", "wafertile.files",
               "wafertile.hdl.core.fp", "wafertile.network.model")
    bad = [(m, d) for m, deps in graph.items() for d in deps
           if m.startswith("wafertile.train.") or m == "wafertile.train"
           if d.startswith("wafertile") and not d.startswith(allowed)]
    bad += [(m, d) for m, deps in graph.items() for d in deps
            if d.startswith("wafertile.trainer")
            and not m.startswith(("wafertile.trainer", "wafertile.sim.tb"))
            and m != "wafertile.cli"]
    assert not bad, bad


def test_models_run_without_a_simulator():
    for name, file in MODULES.items():
        if name.startswith(("wafertile.sim.models", "wafertile.sim.stimulus")):
            for target, _, _ in _imports(name, file):
                assert not target.startswith("cocotb"), (name, target)


def test_no_private_names_across_modules():
    bad = []
    for name, file in MODULES.items():
        for target, names, _ in _imports(name, file):
            if target.startswith("wafertile"):
                bad += [(name, target, n) for n in names
                        if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_no_lazy_imports_of_package_modules_in_hdl():
    """The hardware modules import their own package at the top (no import inside a function
    to dodge a cycle)."""
    bad = []
    for name, file in MODULES.items():
        if name.startswith("wafertile.hdl"):
            bad += [(name, t) for t, _, top in _imports(name, file)
                    if not top and t.startswith("wafertile")]
    assert not bad, bad
