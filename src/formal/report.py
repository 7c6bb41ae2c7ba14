"""The result of formal checks: per property, proved, passed to a depth, or failed with a
counterexample; per cover, reached or not. A text table and a JSON object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["STATUSES", "CheckResult", "FormalReport", "PropertyResult"]

#: What a property's status means (``PropertyResult.status``).
STATUSES = {
    "proved": "holds in every reachable state (k-induction)",
    "passed": "no input sequence of up to `depth` cycles breaks it (BMC)",
    "failed": "broken: `trace` is the counterexample (VCD)",
    "reached": "cover: `trace` shows a run that reaches it",
    "unreached": "cover: no run of up to `depth` cycles reaches it",
    "unknown": "not decided (induction failed, the solver stopped, or an earlier failure "
               "ended the run)",
}


@dataclass
class PropertyResult:
    """One assertion or cover of a check.

    Members
    -------
    name : str
        The property's name (Amaranth's own invariants: their cell and source line).
    kind : str
        ``"assert"`` or ``"cover"``.
    status : str
        One of :data:`STATUSES`.
    depth : int or None
        The depth it was checked to (``passed``, ``unreached``), or the step of the
        counterexample or cover trace.
    trace : Path or None
        The counterexample (``failed``) or the cover trace (``reached``), a VCD file.
    text : str
        What it says.
    """

    name: str
    kind: str
    status: str
    depth: int | None = None
    trace: Path | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("proved", "passed", "reached")

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "status": self.status,
                "depth": self.depth, "trace": None if self.trace is None else str(self.trace),
                "text": self.text}


@dataclass
class CheckResult:
    """The properties of one check, and how it ran."""

    name: str
    block: str
    mode: str
    depth: int
    config: dict[str, Any]
    solver: str
    seconds: float
    workdir: Path
    properties: list[PropertyResult] = field(default_factory=list)
    expect_fail: bool = False
    error: str = ""

    @property
    def failed(self) -> list[PropertyResult]:
        return [p for p in self.properties if not p.ok]

    @property
    def ok(self) -> bool:
        """Every property proved, passed or reached (for a mutation: some assertion failed
        with a counterexample that exists)."""
        if self.error:
            return False
        if self.expect_fail:
            return any(p.status == "failed" and p.trace is not None and p.trace.exists()
                       for p in self.properties)
        return bool(self.properties) and not self.failed

    def as_json(self) -> dict[str, Any]:
        return {"check": self.name, "block": self.block, "mode": self.mode,
                "depth": self.depth, "config": self.config, "solver": self.solver,
                "seconds": round(self.seconds, 2), "workdir": str(self.workdir),
                "expect_fail": self.expect_fail, "ok": self.ok, "error": self.error or None,
                "properties": [p.as_json() for p in self.properties]}


@dataclass
class FormalReport:
    """All checks of one ``wafertile formal`` run."""

    checks: list[CheckResult]
    solver: str
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "solver": self.solver, "seconds": round(self.seconds, 2),
                "checks": [c.as_json() for c in self.checks]}

    def text(self) -> str:
        """One line per property, grouped by check, then the verdict."""
        lines = []
        for c in self.checks:
            how = ("k-induction" if c.mode == "prove" else "BMC") + f", depth {c.depth}"
            tag = "  (mutation: must fail)" if c.expect_fail else ""
            lines.append(f"{c.name}  [{c.block}; {how}; {c.seconds:.1f} s]{tag}")
            if c.error:
                lines.append(f"  error: {c.error}")
            width = max((len(p.name) for p in c.properties), default=0)
            for p in c.properties:
                status = p.status
                if p.status == "passed":
                    status = f"passed to depth {p.depth}"
                elif p.status in ("failed", "reached") and p.depth is not None:
                    status = f"{p.status} at step {p.depth}"
                elif p.status == "unreached" and p.depth is not None:
                    status = f"unreached in {p.depth} cycles"
                where = f"  {p.trace}" if p.status == "failed" and p.trace else ""
                lines.append(f"  {p.name:<{width}}  {status}{where}")
            verdict = "ok" if c.ok else "FAILED"
            if c.expect_fail:
                verdict = "ok: fails as it must" if c.ok else \
                    "FAILED: the mutation was not caught"
            lines.append(f"  -> {verdict}")
        n_ok = sum(c.ok for c in self.checks)
        lines.append(f"{n_ok} of {len(self.checks)} checks ok with {self.solver} in "
                     f"{self.seconds:.1f} s")
        return "\n".join(lines)
