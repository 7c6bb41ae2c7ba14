"""Which checks ``wafertile formal --block B`` runs: the blocks, their small default
configurations, proof modes and depths (``docs/formal.md`` says why each).

Formal checks run on small configurations: a 3 x 3 array (so that a router can be interior,
where a multicast may use all five outputs), 8-bit data, 16-bit accumulators, 16-word banks,
2 VCs of 2 flits. A ``--config`` file overrides any of these; a router check without
``router_arch`` in the file runs all four micro-architectures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Config
from ..hdl.core.units import Requantizer
from .buffer import BufferCountHarness, BufferFifoHarness
from .core import CoreHarness
from .handoff import HandoffHarness
from .harness import Check
from .mutations import MUTATIONS, mutant
from .phit import PhitHarness
from .route import RouteHarness
from .router import CompactRouterProof, RouterHarness, VoqRouterProof
from .sram import SramHarness

__all__ = ["BLOCKS", "SMALL", "checks_for", "mutation_checks"]

#: The formal default configuration (a ``--config`` file overrides it key by key).
SMALL: dict[str, Any] = {"rows": 3, "cols": 3, "data_width": 8, "acc_width": 16,
                         "act_depth": 16, "acc_depth": 16, "num_vcs": 2, "buffer_depth": 2}

#: Blocks and what their checks cover (``--block``).
BLOCKS = {
    "route": "the routing function against the documented rule (every header, position, "
             "input)",
    "buffer": "the VC buffers: occupancy, overflow, ready, FIFO order and data (proved)",
    "router": "every micro-architecture: link rules, watched flits routed once each, "
              "unchanged, in order, nothing appearing (compact and voq: proved; parallel "
              "and lite: bounded)",
    "core": "the tile cores (integer and float) against a sequential specification of "
            "every operation of the table, arithmetic units cut out (replies, accumulators, "
            "registers, forwarding by transparent reads, the float core's bubble)",
    "sram": "the SRAM bank against a memory specification (transparent reads)",
    "handoff": "the integer hand-off unit alone, its arithmetic included: each FINISH's "
               "activation once, rounded as specified from its limbs' products, the "
               "multiplier only when free (proved)",
    "phit": "serializer then deserializer: identity and order; phit and flit link rules "
            "(proved)",
}

_ARCHS = ({"router_arch": "compact"}, {"router_arch": "parallel"},
          {"router_arch": "lite", "phits": 2}, {"router_arch": "voq"})
#: Added with --run-slow: the lite router with its link slices.
_DEEP_ARCHS = ({"router_arch": "lite", "phits": 2, "link_slice": True},)


def _config(base: Mapping[str, Any], **changes: Any) -> Config:
    return Config.from_mapping({**base, **changes})


def checks_for(block: str, overrides: Mapping[str, Any] | None = None, *,
               depth: int | None = None, deep: bool = False,
               quick: bool = False) -> list[Check]:
    """The checks of ``block``: its default configurations, or ``SMALL`` overridden by
    ``overrides`` (the parameters a ``--config`` file sets). ``depth`` replaces every
    check's depth; ``deep`` gives the checks ``pytest --run-slow`` adds (deeper, bigger or
    other configurations); ``quick`` replaces a proof that takes minutes (the ``compact``
    router's) by its bounded check (the default pytest run's sample).

    Raises
    ------
    ValueError
        For an unknown block.
    ConfigError
        If the overrides make an invalid configuration.
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {block!r}")
    given = dict(overrides or {})
    base = {**SMALL, **given}
    out = _CHECKS[block](base, given, deep)
    if quick and not deep:
        out = [QUICK.get(c.make, lambda c: c)(c) for c in out]
    if depth is not None:
        out = [Check(c.name, c.block, c.config, c.make, c.mode,
                     depth if c.mode == "bmc" else max(depth, 1), c.cover_depth, c.why,
                     c.expect_fail, c.map_memories) for c in out]
    return out


def _route(base, given, deep):
    sizes = [(base["rows"], base["cols"])] if {"rows", "cols"} & set(given) else \
        ([(2, 3), (3, 3), (8, 8), (5, 7)] if deep else [(1, 1), (4, 5)])
    return [Check(f"route_{r}x{c}", "route", _config(base, rows=r, cols=c), RouteHarness,
                  "prove", 1, why="combinational: an induction of length 1 is a proof for "
                  "every header and position") for r, c in sizes]


#: Induction length of the buffer's FIFO proof.
FIFO_K = 2


def _buffer(base, given, deep):
    if "router_arch" in given or "phits" in given:
        variants = [{}]
    else:
        variants = [{"router_arch": "compact"}, {"router_arch": "lite", "phits": 2}]
    if deep and not {"buffer_depth", "num_vcs"} & set(given):
        base = {**base, "buffer_depth": 4, "num_vcs": 3}  # bigger, and VCs not a power of 2
    out = []
    for v in variants:
        cfg = _config(base, **v)
        tag = f"p{cfg.phits}_v{cfg.num_vcs}_d{cfg.buffer_depth}"
        fifo_depth = (2 * cfg.buffer_depth + 3) * cfg.phits
        out += [
            Check(f"buffer_count_{tag}", "buffer", cfg, BufferCountHarness, "prove", 4,
                  cover_depth=(cfg.num_vcs * cfg.buffer_depth + 2) * cfg.phits,
                  why="the counters are their own inductive invariant"),
            Check(f"buffer_fifo_{tag}", "buffer", cfg, BufferFifoHarness, "prove", FIFO_K,
                  cover_depth=fifo_depth,
                  why="the invariants tie the watched flit's words to the buffer's RAM "
                      "behind its VC's head (read through the proof-only peek port); the "
                      "cover fills a VC and reads the watched flit out behind "
                      "buffer_depth - 1 others"),
        ]
    return out


#: Induction length of the compact and voq routers' proofs (their invariants are inductive
#: at 1).
ROUTER_K = 1

#: BMC depth of the router checks, in slots (default run, --run-slow): each step costs more
#: than the one before, the parallel router's most (docs/formal.md). The compact and voq
#: routers are proved; their depth here is that of their bounded sample.
ROUTER_DEPTH = {False: {"compact": 3, "parallel": 3, "lite": 3, "voq": 3},
                True: {"parallel": 4, "lite": 4}}


#: The router micro-architectures proved by k-induction (with whole flits): their harness and
#: what its invariants tie together (the check's ``why``).
_ROUTER_PROOFS = {
    "compact": (CompactRouterProof, "tie the watched flits, the sent registers and the flits "
                                    "owed to each output to the five buffers' contents"),
    "voq": (VoqRouterProof, "follow each watched flit to its slot and tie it, the age "
                            "matrices and the flits owed to each output to the slots' words "
                            "and remaining branches"),
}


def _router(base, given, deep):
    archs = [{}] if "router_arch" in given else list(_ARCHS) + list(_DEEP_ARCHS if deep else ())
    out = []
    for a in archs:
        cfg = _config(base, **a)
        proof = _ROUTER_PROOFS.get(cfg.router_arch) if cfg.phits == 1 else None
        if proof is not None:
            harness, what = proof
            out.append(Check(
                f"router_{cfg.router_arch}_p1", "router", cfg, harness, "prove", ROUTER_K,
                cover_depth=2 * cfg.buffer_depth + 4,
                why=f"the invariants {what} (the RAMs' proof-only read ports); the cover "
                    f"fills a VC and sends a second flit behind a blocked first one"))
            continue
        depth = ROUTER_DEPTH[deep][cfg.router_arch] * cfg.phits
        out.append(Check(
            f"router_{cfg.router_arch}_p{cfg.phits}{'_slice' if cfg.link_slice else ''}",
            "router", cfg,
            lambda c: RouterHarness(c, drain=0), "bmc", depth,
            cover_depth=(2 * cfg.buffer_depth + 4) * cfg.phits,
            why="flits enter in slots 0 and 1 and a VC buffer is full in slot 2; a second "
                "flit can try to overtake a blocked first one"))
    return out


def _core(base, given, deep):
    """The integer core (wrap; saturate with --run-slow: depth 7 does not finish) and the
    float core (fp16 to depth 8; bf16 to depth 9 with --run-slow), the fp16 core with the
    nonlinear unit (depth 8), or the one configuration a --config file sets."""
    if "dtype" in given or "overflow" in given:  # the one core the file describes (a float
        variants = [{}]                           # core has no overflow mode)
    else:
        variants = [{"overflow": "saturate" if deep else "wrap"},
                    {"dtype": "bf16" if deep else "fp16"},
                    {"dtype": "fp16", "nonlinear": True}]
    out = []
    for v in variants:
        params = {**base, **v}
        if params.get("dtype") in ("fp16", "bf16"):  # the format sets the widths
            params = {k: x for k, x in params.items() if k not in ("data_width", "acc_width")
                      or k in given}
        cfg = Config.from_mapping(params)
        if cfg.nonlinear:
            out.append(Check(f"core_{cfg.dtype}_nonlinear", "core", cfg, CoreHarness, "bmc",
                             8, cover_depth=10,
                             why="the float core with the nonlinear unit (cut: done 2 to 5 "
                                 "cycles after its start): every sequence of 8 steps, a "
                                 "NONLINEAR's hold and the outputs around it; a NONLINEAR of "
                                 "the watched accumulator and the reply of its read at step "
                                 "9 (the cover, depth 10)"))
        elif cfg.is_float:
            # the default run to depth 8 (about 20 s), --run-slow to 9 (about 8 minutes)
            out.append(Check(f"core_{cfg.dtype}", "core", cfg, CoreHarness, "bmc",
                             9 if deep else 8, cover_depth=10,
                             why="every sequence of 8 steps, an output leaving 4 cycles "
                                 "after its request (GRAD, FINISH_BACK, READ and FINISH "
                                 "outputs of the first steps); a MAC, a read of its "
                                 "accumulator right behind it (the bubble) and the reply need "
                                 "9 (the BMC with --run-slow); WRITE_ACT, two back-to-back "
                                 "MACs (one bubble) and the read of their sum reply at step 9 "
                                 "(the cover, depth 10)"))
        else:
            out.append(Check(f"core_{cfg.overflow}", "core", cfg, CoreHarness, "bmc", 6,
                             cover_depth=7,
                             why="WRITE_ACT, two back-to-back MACs into one accumulator and "
                                 "its read fit in 4 accepted flits, the reply 2 cycles later; "
                                 "with 16-bit accumulators (one limb) a FINISH's activation "
                                 "leaves the hand-off unit 5 cycles after the FINISH is taken "
                                 "(step 5 for the first); a FINISH after a SET at step 6 (the "
                                 "cover, depth 7). Depth 7 had not finished after 10 minutes"))
    return out


def _handoff(base, given, deep):
    """The integer hand-off unit: one limb (16-bit accumulators) by default, two (32 bits)
    with --run-slow, or the configuration a --config file sets."""
    if given.get("dtype") in ("fp16", "bf16"):
        raise ValueError(f"--block handoff checks the integer hand-off unit: the --config "
                         f"file's dtype must be int8 or int16, not {given['dtype']!r}")
    widths = [{}] if "acc_width" in given else [{"acc_width": 32 if deep else 16}]
    out = []
    for v in widths:
        cfg = _config(base, **v)
        out.append(Check(f"handoff_a{cfg.acc_width}", "handoff", cfg, HandoffHarness,
                         "prove", HANDOFF_K, cover_depth=2 * Requantizer.delay(cfg) + 2,
                         why="the invariants tie the unit's step, copies, product register "
                             "and sums to the scoreboard; the cover takes two outputs back "
                             "to back and a multiply put off by a MAC"))
    return out


#: Induction length of the hand-off unit's proof.
HANDOFF_K = 2


def _sram(base, given, deep):
    return [Check("sram", "sram", _config(base), SramHarness, "bmc", 10 if deep else 6,
                  cover_depth=4, why="a write, a read of it, a read during a write and a "
                  "held read fit in 6 cycles")]


def _phit(base, given, deep):
    variants = [{}] if "phits" in given else [{"phits": 3 if deep else 2}]
    out = []
    for v in variants:
        cfg = _config(base, router_arch="lite", **v)
        for per_vc in (False, True):
            cover = 5 * cfg.phits + 2
            out.append(Check(
                f"phit_{'per_vc' if per_vc else 'shared'}_p{cfg.phits}", "phit", cfg,
                lambda c, per_vc=per_vc: PhitHarness(c, per_vc=per_vc), "prove", cfg.phits,
                cover_depth=cover, why="the invariants tie the scoreboard to the adapters' "
                "registers; an induction over a slot; the cover runs several flits back to "
                "back through both, with the deserializer's register refused and held"))
    return out


def _bounded_router(check: Check) -> Check:
    """A router's proof (``compact``, ``voq``) as the bounded check it replaced (the same
    properties to depth 3, without the invariants): the default pytest run's sample."""
    return Check(check.name, check.block, check.config, lambda c: RouterHarness(c, drain=0),
                 "bmc", ROUTER_DEPTH[False][check.config.router_arch], check.cover_depth,
                 "the default pytest run's sample of the proof (minutes): flits enter in "
                 "cycles 0 and 1 and a VC buffer is full in cycle 2")


#: Checks that ``quick`` replaces, by their harness.
QUICK = {CompactRouterProof: _bounded_router, VoqRouterProof: _bounded_router}

_CHECKS = {"route": _route, "buffer": _buffer, "router": _router, "core": _core,
           "sram": _sram, "phit": _phit, "handoff": _handoff}


def mutation_checks(block: str) -> list[Check]:
    """The mutation checks of ``block`` (``buffer``, ``router``, ``core`` or ``phit``): the
    block's harness around a faulty block, which must fail; one per mutation
    (:data:`~.mutations.MUTATIONS`), each on the configuration of the block's first default
    check of its number format (the router's: of its micro-architecture, default compact)."""
    checks = checks_for(block)
    if block == "buffer":
        checks = [c for c in checks if c.name.startswith("buffer_count")]
    out = []
    for name, (_, kind, *deeper) in MUTATIONS[block].items():
        if block == "router":  # kind: the micro-architecture (default compact)
            first = next(c for c in checks if c.config.router_arch == (kind or "compact"))
        else:  # kind: the number format, "int" or "float" (default: the first check's),
            # or "nonlinear" (the float core with the nonlinear unit)
            first = next(c for c in checks if kind is None or
                         ((kind in ("float", "nonlinear")) == c.config.is_float and
                          (kind == "nonlinear") == c.config.nonlinear))
        depth = first.depth if first.mode == "bmc" else 6
        out.append(Check(name, block, first.config,
                         lambda c, block=block, name=name: mutant(block, c, name), "bmc",
                         max([depth, *deeper]), why="a known fault", expect_fail=True))
    return out
