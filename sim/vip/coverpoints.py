"""wafertile's cover model: what the cocotb regressions of the core, the router, the mesh and
the array must exercise, and the parts that sample it (:mod:`.coverage` collects and
reports).

=============== ===========================================================================
group            sampled
=============== ===========================================================================
``core``         each operation the core takes: opcode x hazard distance (pipeline advances
                 since the last operation on the same accumulator) x whether the pipeline
                 was held by output backpressure in the cycles before x overflow rule; and
                 opcode x hazard distance x number format (the float cores' bubbles)
``router``       each delivery of the router bench: input port x output port x VC
``router_vcs``   the router bench's inputs every cycle: a VC's buffer full (its ``ready``
                 low), and a flit taken on one VC while another VC of the same input is full
``noc``          each flit injected by the router and mesh benches: multicast shape x exit
``mesh``         each delivery of the mesh bench at an edge port (an edge exit) x VC
``array``        each program the array bench plays: its phase kinds, passes, on-fabric
                 reduction, batch groups, layers, router micro-architecture, number format
``nonlinear``    each job of the float core's nonlinear unit (NONLINEAR, MUL, MAX; core
                 bench, from the model's run of the flits the core took) and of the unit
                 bench: function x class of ``x`` (the accumulator), and for MUL and MAX x
                 class of ``d`` (the FP32 word in ``data``)
=============== ===========================================================================

VC bins go up to 4 VCs, the most any regression configures; port names are the letters of
:class:`~wafertile.hdl.flit.Port`.
"""

from __future__ import annotations

from ...config import Config
from ...hdl.core.nonlinear import FUNCTIONS, UNARY
from ...hdl.core.ops import OPS, OpTable
from ...hdl.flit import Port, field_slice, payload_layout
from .coverage import Covergroup
from .env import Part
from .signals import Element

__all__ = ["ARRAY", "CORE", "FP32_CLASSES", "MESH", "NOC", "NONLINEAR", "ROUTER", "ROUTER_VCS",
           "CoreCoverModel", "CoreCoverage", "NocCoverage", "core_covergroup", "cover_program",
           "cover_unit_jobs", "fp32_class"]

PORTS = [p.letter for p in Port]
VCS = ["0", "1", "2", "3"]
#: The ``op`` bin of an opcode the table defines no operation for (REPLY is output only);
#: the other bins are the table's operations, and a hazard matters for those that read or
#: write an accumulator word (:func:`core_covergroup`).
ILLEGAL = "illegal"
HAZARDS = ["1", "2", "3", ">3"]
#: Pipeline advances a core needs before an operation no longer depends on forwarding.
FAR = 4

DTYPES = ["int8", "int16", "fp16", "bf16"]


def _format(dtype: str) -> str:
    """The number format (:data:`~wafertile.hdl.core.ops.FORMATS`) of a ``dtype`` bin."""
    return "float" if dtype in ("fp16", "bf16") else "int"


def core_covergroup(ops: OpTable = OPS, registry: dict[str, Covergroup] | None = None
                    ) -> Covergroup:
    """The cover group of the tile core bench for the operations of ``ops`` (one ``op``
    bin per operation of the table, and ``illegal``), declared in ``registry`` (default
    :data:`~wafertile.sim.vip.coverage.GROUPS`)."""
    acc_ops = {row.name for row in ops.where(lambda r: r.uses_acc)}
    formats = {row.name: row.formats for row in ops.operations()}

    def no_hazard_combination(op, hazard, overflow=None, dtype=None, **_):
        """An operation that touches no accumulator has hazard 'none', and only it; the
        illegal opcode is not crossed; nor is an operation with a number format whose core
        does not define it (a float-only operation with an integer dtype, or with
        ``saturate``, which only integer cores have)."""
        if op == ILLEGAL or (hazard == "none") != (op not in acc_ops):
            return True
        if dtype is not None and _format(dtype) not in formats[op]:
            return True
        return overflow == "saturate" and "int" not in formats[op]

    return Covergroup(
        "core",
        {"op": [*(row.name for row in ops.operations()), ILLEGAL],
         "hazard": [*HAZARDS, "none"], "after_stall": ["no", "yes"],
         "overflow": ["wrap", "saturate"], "dtype": DTYPES},
        crosses={"op x hazard x after_stall x overflow": (
                     ("op", "hazard", "after_stall", "overflow"), no_hazard_combination),
                 # the float cores: a bubble when an operation uses the word the one ahead
                 # writes
                 "op x hazard x dtype": (("op", "hazard", "dtype"), no_hazard_combination)},
        doc="operations the core takes (tile core bench)", registry=registry)


CORE = core_covergroup()

ROUTER = Covergroup(
    "router", {"input": PORTS, "output": PORTS, "vc": VCS},
    crosses={"input x output x vc": (("input", "output", "vc"), None)},
    doc="deliveries of the router bench: every input to every output on every VC (all 25 "
        "port pairs occur: an edge router sends a flit back out of an edge port by its exit)")

PORT_VCS = [f"{p}/vc{v}" for p in PORTS for v in VCS]
ROUTER_VCS = Covergroup(
    "router_vcs", {"full": PORT_VCS, "bypass": PORT_VCS},
    doc="router bench inputs (port/VC): a VC full (its ready low); a flit taken on a VC "
        "while another VC of the same input is full")

NOC = Covergroup(
    "noc", {"shape": ["unicast", "row", "column", "rectangle"], "exit": PORTS},
    crosses={"shape x exit": (("shape", "exit"), None)},
    doc="flits injected by the router and mesh benches")

MESH = Covergroup(
    "mesh", {"edge_exit": [p for p in PORTS if p != "l"], "vc": VCS},
    crosses={"edge_exit x vc": (("edge_exit", "vc"), None)},
    doc="deliveries of the mesh bench at an edge port")

ARRAY = Covergroup(
    "array",
    {"phase": ["load", "stream", "reduce", "handoff", "read"],
     "passes": ["1", "2+"], "reduction": ["none", "on fabric"], "groups": ["1", "2+"],
     "layers": ["1", "2", "3+"], "router": ["compact", "parallel", "lite", "voq"],
     "dtype": DTYPES},
    crosses={"passes x reduction x groups": (("passes", "reduction", "groups"), None),
             "layers x reduction": (("layers", "reduction"), None),
             "router x reduction": (("router", "reduction"), None),
             "dtype x reduction": (("dtype", "reduction"), None)},
    doc="programs the array bench plays (layers and networks)")


#: The classes of an FP32 word the ``nonlinear`` group tells apart.
FP32_CLASSES = ["+0", "-0", "subnormal", "+normal", "-normal", "+inf", "-inf", "nan"]

NONLINEAR = Covergroup(
    "nonlinear", {"function": list(FUNCTIONS), "x": FP32_CLASSES, "d": [*FP32_CLASSES, "none"]},
    crosses={"function x x": (("function", "x"), None),
             # the second operand: MUL's and MAX's only
             "function x x x d": (("function", "x", "d"),
                                  lambda function, d, **_: function in UNARY or d == "none")},
    doc="jobs of the nonlinear unit (float core bench, unit bench)")


def fp32_class(word: int) -> str:
    """The class of an FP32 word (:data:`FP32_CLASSES`): a zero of either sign, a
    subnormal, a normal number or an infinity of either sign, or a NaN."""
    sign = "-" if word >> 31 & 1 else "+"
    exponent, fraction = word >> 23 & 0xFF, word & 0x7FFFFF
    if exponent == 0xFF:
        return "nan" if fraction else sign + "inf"
    if exponent == 0:
        return "subnormal" if fraction else sign + "0"
    return sign + "normal"


def cover_unit_jobs(jobs) -> None:
    """Sample :data:`NONLINEAR` for each ``(function, x, d)`` job of the nonlinear unit
    (:attr:`~wafertile.sim.models.core.CoreResult.unit_jobs`, or the unit bench's)."""
    for func, x, d in jobs:
        name = FUNCTIONS[func]
        NONLINEAR.sample(function=name, x=fp32_class(x),
                         d="none" if name in UNARY else fp32_class(d))


def _count(n: int, top: int) -> str:
    return str(n) if n < top else f"{top}+"


def cover_program(config: Config, program) -> None:
    """Sample :data:`ARRAY` for a :class:`~wafertile.stream.LayerProgram` (one layer) or a
    :class:`~wafertile.network.compiler.NetworkProgram` (its ``plans``, one per layer). A
    program with no stream phase, or a layer program with no weight (no layer: phases a test
    builds by hand) samples its phase kinds only."""
    kinds = [p.kind for p in program.phases]
    for kind in dict.fromkeys(kinds):
        ARRAY.sample(phase=kind)
    plans = getattr(program, "plans", None)
    if "stream" not in kinds or (not plans and not program.nnz):
        return
    groups = -(-program.shape[0] // config.rows)
    if plans:
        layers, passes = len(plans), max(plan.passes for plan in plans)
    else:  # one layer: its stream phases are passes x batch groups
        layers, passes = 1, kinds.count("stream") // max(groups, 1)
    ARRAY.sample(passes=_count(passes, 2), groups=_count(groups, 2),
                 layers=_count(layers, 3),
                 reduction="on fabric" if "reduce" in kinds else "none",
                 router=config.router_arch, dtype=config.dtype)


class CoreCoverModel:
    """The bookkeeping behind :class:`CoreCoverage`, one call per clock cycle (testable
    without a simulator): the operations of ``ops`` into ``group`` (:func:`core_covergroup`
    of the same table)."""

    def __init__(self, config: Config, ops: OpTable = OPS, group: Covergroup = CORE):
        self.group = group
        self.overflow = str(config.overflow)
        self.dtype = config.dtype
        layout = payload_layout(config)
        self.op_at, op_width = field_slice(layout, "op")
        self.op_mask = (1 << op_width) - 1
        self.addr_at, addr_width = field_slice(layout, "addr")
        self.addr_mask = (1 << addr_width) - 1
        self.names = {row.code: row.name for row in ops.operations()}
        self.acc_ops = {row.name for row in ops.where(lambda r: r.uses_acc)}
        self.reset()

    def reset(self) -> None:
        self.advances = 0             # pipeline advances (i.ready high) so far
        self.last: dict[int, int] = {}  # accumulator address -> advances at its last op
        self.stalled_at = -FAR - 1    # the last cycle the output held the pipeline
        self.cycle = 0

    def step(self, *, i_valid: bool, i_ready: bool, payload: int, o_valid: bool,
             o_ready: bool) -> dict[str, str] | None:
        """One cycle's handshakes; samples its group (:data:`CORE`) and returns the bins when
        the core takes an operation."""
        self.cycle += 1
        if o_valid and not o_ready:
            self.stalled_at = self.cycle
        if not i_ready:
            return None
        self.advances += 1
        if not i_valid:
            return None
        op = self.names.get((payload >> self.op_at) & self.op_mask, ILLEGAL)
        hazard = "none"
        if op in self.acc_ops:
            addr = (payload >> self.addr_at) & self.addr_mask
            distance = self.advances - self.last.get(addr, -FAR)
            hazard = str(distance) if distance < FAR else f">{FAR - 1}"
            self.last[addr] = self.advances
        bins = {"op": op, "hazard": hazard, "overflow": self.overflow, "dtype": self.dtype,
                "after_stall": "yes" if self.cycle - self.stalled_at <= FAR else "no"}
        self.group.sample(**bins)
        return bins


class CoreCoverage(Part):
    """Samples :data:`CORE` at the tile core's ``i`` stream (``i__valid``, ``__ready``,
    ``__payload``) and ``o`` stream, through a :class:`CoreCoverModel`."""

    def __init__(self, dut, config: Config):
        super().__init__(dut, "coverage")
        self.model = CoreCoverModel(config)
        self.i_valid = Element(dut.i__valid, 1)
        self.i_ready = Element(dut.i__ready, 1)
        self.i_payload = Element(dut.i__payload, len(dut.i__payload))
        self.o_valid = Element(dut.o__valid, 1)
        self.o_ready = Element(dut.o__ready, 1)

    def idle(self) -> None:
        self.model.reset()

    def sample(self) -> None:
        i_valid = self.i_valid.get()
        self.model.step(i_valid=i_valid, i_ready=self.i_ready.get(),
                        payload=self.i_payload.get() if i_valid else 0,
                        o_valid=self.o_valid.get(), o_ready=self.o_ready.get())


class NocCoverage:
    """Samples :data:`ROUTER`, :data:`ROUTER_VCS`, :data:`NOC` and :data:`MESH` from a NoC
    bench's ``sent`` / ``received`` callbacks (words must be distinct, as the benches make
    them) and, as a :class:`Part`, the router's input links every cycle."""

    def __init__(self, model, *, router: bool):
        self.model = model
        self.router = router
        self.source_of: dict[int, object] = {}

    def sent(self, source, word: int) -> None:
        self.source_of[word] = source
        h = self.model.header(word)
        wide, tall = h["x1"] > h["x0"], h["y1"] > h["y0"]
        shape = {(False, False): "unicast", (True, False): "row", (False, True): "column",
                 (True, True): "rectangle"}[wide, tall]
        NOC.sample(shape=shape, exit=Port(h["exit"]).letter)

    def received(self, dest, word: int) -> None:
        vc = str(self.model.vc(word))
        if self.router:
            source = self.source_of.get(word)
            if source is not None:
                ROUTER.sample(input=source.port.letter, output=dest.port.letter, vc=vc)
        elif dest.port is not Port.LOCAL:
            MESH.sample(edge_exit=dest.port.letter, vc=vc)

    def link_part(self, dut, sources: dict) -> Part:
        """A part that samples :data:`ROUTER_VCS` on the router bench's input links
        (``sources``: endpoint -> :class:`~.link.LinkSource`)."""
        return _InputVcs(dut, {ep.port.letter: src for ep, src in sources.items()})


class _InputVcs(Part):
    def __init__(self, dut, sources: dict):
        super().__init__(dut, "vc-coverage")
        self.sources = sources

    def sample(self) -> None:
        for port, src in self.sources.items():
            link = src.link
            ready = link.ready.get()
            full = [v for v in range(link.config.num_vcs) if not ready >> v & 1]
            for v in full:
                ROUTER_VCS.sample(full=f"{port}/vc{v}")
            if full and link.valid.get():
                vc = link.vc(link.flit.get())
                if ready >> vc & 1:
                    ROUTER_VCS.sample(bypass=f"{port}/vc{vc}")
