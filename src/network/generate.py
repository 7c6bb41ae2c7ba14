"""Text generation with a GPT on the fabric (``wafertile run --network tinygpt``).

One token per step, greedy: the step's window (the last ``context`` tokens) runs through the
whole network on the RTL (:func:`~wafertile.network.run.run_network`: every logit checked bit
for bit against ``network_reference``), the last position's argmax is the next token. There is
no KV cache: each step computes its window's keys and values again (the attention's
accumulators do not outlive a run; docs/attention.md).

``agreement``: the share of positions where the fabric's argmax equals that of the FP32 model
run by onnxruntime on the ONNX file the parameters came from (or their graph,
:func:`~.gpt.gpt_onnx`) on the same window, teacher-forced: every position of the first
step's window (the prompt), then the last position of every later step (each generated
token), so each position of the text is counted once, with the same prefix in both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from .gpt import GPTShape, gpt_network, gpt_onnx, one_hot
from .model import NetworkError

__all__ = ["PHASES", "GenerationReport", "OnnxReference", "generate", "phase_cycles",
           "phase_of_layers"]

_log = logging.getLogger(__name__)


def phase_of_layers(shape: GPTShape) -> list[str]:
    """What each layer of :func:`~.gpt.gpt_network` is, for the cycles by phase: the
    embedding, per block the projection, the attention's output projection and the MLP's two
    layers, and the output projection."""
    return ["embedding"] + ["projections", "projections", "mlp", "mlp"] * shape.blocks + \
        ["projections"]


#: The phases of a token's cycles (:func:`phase_cycles`).
PHASES = ("embedding", "projections", "attention", "layernorm", "mlp", "handoffs", "residual",
          "other")


def phase_cycles(shape: GPTShape, per_layer: list[dict[str, Any]]) -> dict[str, int]:
    """A run's cycles by phase (:data:`PHASES`), from its report's ``per_layer``
    (:func:`~.run.per_layer_cycles`): each layer's MAC stream by what the layer is
    (:func:`phase_of_layers`), and the attention, LayerNorm, hand-off, residual and other
    cycles of every layer."""
    phases = dict.fromkeys(PHASES, 0)
    for role, layer in zip(phase_of_layers(shape), per_layer, strict=True):
        phases[role] += layer["stream_cycles"]
        phases["attention"] += layer["attention_cycles"]
        phases["layernorm"] += layer["layernorm_cycles"]
        phases["handoffs"] += layer["handoff_cycles"]
        phases["residual"] += layer["residual_cycles"]
        phases["other"] += layer["other_cycles"]
    return phases


class OnnxReference:
    """The FP32 model in onnxruntime: an ONNX file of a GPT (or the graph of ``params``,
    :func:`~.gpt.gpt_onnx`), one session. The graph takes ``T`` ids; a shorter window is
    padded at its end, which changes no earlier position (the attention is causal)."""

    def __init__(self, model: dict[str, np.ndarray] | str | Path):
        import onnxruntime

        if isinstance(model, dict):
            data = gpt_onnx(model, GPTShape.of(model).context).SerializeToString()
        else:
            data = Path(model).read_bytes()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.version = onnxruntime.__version__
        self._session = onnxruntime.InferenceSession(data, options,
                                                     providers=["CPUExecutionProvider"])
        ids = self._session.get_inputs()[0]
        self._input, self._shape = ids.name, list(ids.shape)  # (T) or (1, T)
        self._output = self._session.get_outputs()[0].name
        self._int = np.int32 if ids.type == "tensor(int32)" else np.int64
        self.T = int(self._shape[-1])

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """``len(ids) x V``: the logits of every position."""
        n = len(ids)
        padded = np.zeros(self.T, self._int)
        padded[:n] = ids
        out = self._session.run([self._output], {
            self._input: padded.reshape([1] * (len(self._shape) - 1) + [self.T])})[0]
        return out.reshape(self.T, -1)[:n]


@dataclass
class GenerationReport:
    """What ``wafertile run --network tinygpt`` found (``as_json`` for ``--json``)."""

    passed: bool
    #: logits that differ from network_reference's, over all steps
    mismatches: int
    name: str
    dtype: str
    prompt: str
    #: the generated characters
    text: str
    tokens: int
    #: share of positions where the fabric's argmax equals onnxruntime's (None: not measured)
    agreement: float | None
    agreement_positions: int
    reference: str
    #: every cycle of every step (sparse programs)
    cycles: int
    cycles_per_token: float
    #: per token: embedding, projections and mlp (their MAC streams), attention, layernorm,
    #: handoffs (the hand-offs between layers, GELU's NONLINEARs included), residual (the
    #: residuals' MACs and the hand-offs that keep outputs), other (loads, reductions, reads)
    phase_cycles_per_token: dict[str, float]
    macs: int
    #: ``macs / (tiles x cycles)``
    utilization: float
    host_flits_in: int
    host_flits_out: int
    handoff_flits: int
    sim: str
    wall_seconds: float
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def phase_cycles(self) -> dict[str, int]:
        """Every step's cycles by phase (``phase_cycles_per_token`` times ``tokens``)."""
        return {k: round(v * self.tokens) for k, v in self.phase_cycles_per_token.items()}

    def as_json(self) -> dict[str, Any]:
        """The fields, with ``pass`` (= ``passed``) and ``phase_cycles``."""
        return {"pass": self.passed, **asdict(self), "phase_cycles": self.phase_cycles}

    def text_lines(self, config: Config) -> str:
        phases = ", ".join(f"{k} {v:.0f}" for k, v in self.phase_cycles_per_token.items())
        agreement = ("not measured: " + self.reference if self.agreement is None else
                     f"{self.agreement:.1%} of {self.agreement_positions} positions "
                     f"(onnxruntime {self.reference}, FP32)")
        return "\n".join([
            f"{self.name} on a {config.rows} x {config.cols} {self.dtype} array, "
            f"{self.sim}: {'PASS' if self.passed else 'FAIL'} (every logit of {self.tokens} "
            f"steps against the numpy reference: {self.mismatches} mismatches)",
            f"prompt:    {self.prompt!r}",
            f"generated: {self.text!r}",
            f"agreement: {agreement}",
            f"cycles:    {self.cycles} ({self.cycles_per_token:.0f} per token: {phases})",
            f"MACs:      {self.macs}, utilization {self.utilization:.1%}; flits across the "
            f"edge {self.host_flits_in} in, {self.host_flits_out} out; {self.handoff_flits} "
            f"hand-off flits"])


def generate(config: Config, params: dict[str, np.ndarray], ids: np.ndarray, tokens: int, *,
             decode=None, sim: str = "verilator", name: str = "gpt", reference: bool = True,
             model: str | Path | None = None, build_root=None
             ) -> tuple[GenerationReport, np.ndarray]:
    """Generate ``tokens`` tokens after ``ids`` on the RTL; return the report and all the
    ids (prompt and generated). ``decode``: ids to text, for the report; ``reference``:
    measure the agreement with onnxruntime (if it is installed), on the ONNX file ``model``
    that ``params`` were read from (default: their graph, :func:`~.gpt.gpt_onnx`)."""
    from .run import run_network

    start = time.perf_counter()
    shape = GPTShape.of(params)
    ids = [int(i) for i in ids]
    if not ids:
        raise NetworkError("the prompt must hold at least one token")
    net = gpt_network(params, config.dtype, name=name)
    onnx, note = None, ""
    if reference:
        try:
            onnx = OnnxReference(params if model is None else model)
            note = onnx.version
        except ImportError:
            note = "onnxruntime is not installed (pip install 'wafertile[gpt]')"
    phases = dict.fromkeys(PHASES, 0)
    totals = dict.fromkeys(("cycles", "macs", "mismatches", "host_flits_in",
                            "host_flits_out", "handoff_flits"), 0)
    agree = positions = 0
    passed, prompt_len = True, len(ids)
    seconds: dict[str, float] = {}
    for step in range(tokens):
        window = np.array(ids[-shape.context:], np.int64)
        report, y = run_network(config, net, one_hot(window, shape), sim=sim, dense=False,
                                build_root=build_root)
        for k, v in report.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
        passed &= report.passed
        totals["mismatches"] += report.mismatches
        totals["cycles"] += report.cycles
        totals["macs"] += report.macs
        for k in ("host_flits_in", "host_flits_out", "handoff_flits"):
            totals[k] += getattr(report, k)
        for k, v in phase_cycles(shape, report.per_layer).items():
            phases[k] += v
        mine = np.argmax(np.asarray(y, np.float32), axis=1)
        if onnx is not None:
            theirs = np.argmax(onnx.logits(window), axis=1)
            counted = slice(None) if step == 0 else slice(-1, None)
            agree += int(np.sum(mine[counted] == theirs[counted]))
            positions += len(mine[counted])
        ids.append(int(mine[-1]))
        _log.info(f"step {step + 1}/{tokens}: {report.cycles} cycles, "
                  f"{'pass' if report.passed else 'FAIL'}")
    tiles = config.rows * config.cols
    text = decode(ids[prompt_len:]) if decode else " ".join(map(str, ids[prompt_len:]))
    prompt = decode(ids[:prompt_len]) if decode else " ".join(map(str, ids[:prompt_len]))
    report = GenerationReport(
        passed=passed, mismatches=totals["mismatches"], name=name, dtype=config.dtype,
        prompt=prompt, text=text, tokens=tokens,
        agreement=agree / positions if positions else None, agreement_positions=positions,
        reference=note, cycles=totals["cycles"], cycles_per_token=totals["cycles"] / tokens,
        phase_cycles_per_token={k: v / tokens for k, v in phases.items()},
        macs=totals["macs"],
        utilization=totals["macs"] / (tiles * totals["cycles"]) if totals["cycles"] else 0.0,
        host_flits_in=totals["host_flits_in"], host_flits_out=totals["host_flits_out"],
        handoff_flits=totals["handoff_flits"], sim=sim,
        wall_seconds=time.perf_counter() - start, seconds=seconds)
    return report, np.array(ids, np.int64)
