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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..hdl.counters import events_line
from .gpt import GPTShape, gpt_network, gpt_onnx, one_hot
from .model import NetworkError

__all__ = ["PHASES", "GenerationReport", "OnnxReference", "generate", "phase_cycles",
           "phase_of_layers", "window_inputs", "window_length"]

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

    #: every logit of every step equals the reference's (None: not checked, --fidelity model)
    passed: bool | None
    #: logits that differ from network_reference's, over all steps (None: --fidelity model)
    mismatches: int | None
    name: str
    dtype: str
    #: the prompt, or with several sequences the list of their prompts
    prompt: str | list[str]
    #: the generated characters (a list with several sequences)
    text: str | list[str]
    #: tokens generated per sequence (= steps)
    tokens: int
    #: sequences in the batch, side by side on the rows (one step makes a token of each)
    sequences: int
    #: share of positions where the fabric's argmax equals onnxruntime's (None: not measured)
    agreement: float | None
    agreement_positions: int
    reference: str
    #: every cycle of every step (sparse programs)
    cycles: int
    #: ``cycles / (tokens x sequences)``
    cycles_per_token: float
    #: ``cycles / tokens``: a step makes one token of each sequence
    cycles_per_step: float
    #: per token: embedding, projections and mlp (their MAC streams), attention, layernorm,
    #: handoffs (the hand-offs between layers, GELU's NONLINEARs included), residual (the
    #: residuals' MACs and the hand-offs that keep outputs), other (loads, reductions, reads)
    phase_cycles_per_token: dict[str, float]
    #: MACs that updated an accumulator (the RTL's count; the model's, docs/gpt.md)
    macs: int
    #: ``macs / (tiles x cycles)``
    utilization: float
    host_flits_in: int
    host_flits_out: int
    handoff_flits: int
    sim: str
    wall_seconds: float
    #: "rtl", or "model": the reference's tokens and the performance model's cycles
    fidelity: str = "rtl"
    #: how the model predicted the phases (--fidelity model)
    model_methods: list[str] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: with ``counters = true``: the events of every step (the tiles' counters, or the
    #: model's count), per event a list per tile (docs/counters.md); and their energy
    events: dict[str, list[int]] | None = None
    energy: dict[str, Any] | None = None

    @property
    def phase_cycles(self) -> dict[str, int]:
        """Every step's cycles by phase (``phase_cycles_per_token`` times the tokens made)."""
        made = self.tokens * self.sequences
        return {k: round(v * made) for k, v in self.phase_cycles_per_token.items()}

    def as_json(self) -> dict[str, Any]:
        """The fields, with ``pass`` (= ``passed``) and ``phase_cycles`` (and the energy's
        keys at the top; no ``events`` without counters)."""
        out = asdict(self)
        out.update(out.pop("energy") or {})
        if self.events is None:
            del out["events"]
        return {"pass": self.passed, **out, "phase_cycles": self.phase_cycles}

    def text_lines(self, config: Config) -> str:
        phases = ", ".join(f"{k} {v:.0f}" for k, v in self.phase_cycles_per_token.items())
        agreement = ("not measured: " + self.reference if self.agreement is None else
                     f"{self.agreement:.1%} of {self.agreement_positions} positions "
                     f"(onnxruntime {self.reference}, FP32)")
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        texts = [self.text] if isinstance(self.text, str) else self.text
        if self.fidelity == "model":
            head = (f"{self.name} on a {config.rows} x {config.cols} {self.dtype} array, "
                    f"fidelity model ({', '.join(self.model_methods or [])}): the reference's "
                    f"tokens, the model's cycles (not checked against the RTL)")
        else:
            head = (f"{self.name} on a {config.rows} x {config.cols} {self.dtype} array, "
                    f"{self.sim}: {'PASS' if self.passed else 'FAIL'} (every logit of "
                    f"{self.tokens} steps against the numpy reference: {self.mismatches} "
                    f"mismatches)")
        many = len(prompts) > 1
        lines, w = [head], 14 if many else 11
        for n, (p, t) in enumerate(zip(prompts, texts, strict=True)):
            tag = f" {n}" if many else ""
            lines += [f"{'prompt' + tag + ':':<{w}}{p!r}", f"{'generated' + tag + ':':<{w}}{t!r}"]
        per = f"{self.cycles_per_token:.0f} per token"
        if many:
            per += f", {self.cycles_per_step:.0f} per step of {self.sequences} tokens"
        lines += [
            f"agreement: {agreement}",
            f"cycles:    {self.cycles} ({per}: {phases})",
            f"MACs:      {self.macs}, utilization {self.utilization:.1%}; flits across the "
            f"edge {self.host_flits_in} in, {self.host_flits_out} out; {self.handoff_flits} "
            f"hand-off flits"]
        if self.events is not None:
            lines.append(events_line(self.events, "the model's count" if self.fidelity ==
                                     "model" else "the tiles' counters", self.energy))
        return "\n".join(lines)


def _sequences(ids) -> tuple[list[list[int]], bool]:
    """``ids``: one sequence of token ids, or a list of them (a batch: True)."""
    batch = len(ids) > 0 and all(np.ndim(seq) == 1 for seq in ids)
    out = [[int(i) for i in seq] for seq in ids] if batch else [[int(i) for i in ids]]
    if any(not seq for seq in out):
        raise NetworkError("the prompt must hold at least one token")
    return out, batch


def window_length(T: int, sequences: int, rows: int, context: int) -> int:
    """The positions of each window of a batch whose longest window holds ``T`` tokens:
    ``T`` when the ``sequences`` windows fit the ``rows`` side by side (one batch group);
    otherwise the smallest length from ``T`` to ``context`` that divides ``rows`` (batch
    groups of whole sequences; the windows padded), or ``T`` if there is none (the compiler
    then refuses the batch, naming the sizes)."""
    if sequences * T <= rows:
        return T
    return next((t for t in range(T, context + 1) if rows % t == 0), T)


def window_inputs(shape: GPTShape, windows: list[list[int]], T: int | None = None
                  ) -> np.ndarray:
    """The inputs of a batch of windows (each at most ``context`` tokens), side by side:
    each padded at its end with token 0 to ``T`` positions (default: the longest's), which
    changes no earlier position (the attention is causal); the windows'
    :func:`~.gpt.one_hot` rows one after the other."""
    T = max(len(w) for w in windows) if T is None else T
    return np.concatenate([one_hot(np.array(w + [0] * (T - len(w)), np.int64), shape)
                           for w in windows])


def generate(config: Config, params: dict[str, np.ndarray], ids, tokens: int, *,
             decode=None, sim: str = "verilator", name: str = "gpt", reference: bool = True,
             model: str | Path | None = None, build_root=None, predict=None
             ) -> tuple[GenerationReport, np.ndarray | list[np.ndarray]]:
    """Generate ``tokens`` tokens after each prompt of ``ids`` (one sequence of token ids,
    or a list of them: a batch, side by side on the rows, :func:`window_length`) on the RTL;
    return the report and all the ids of each sequence (prompt and generated). ``decode``:
    ids to text, for the report; ``reference``: measure the agreement with onnxruntime (if
    it is installed), on the ONNX file ``model`` that ``params`` were read from (default:
    their graph, :func:`~.gpt.gpt_onnx`). ``predict``: instead of the RTL, a function of
    ``(config, net, x)`` that returns a step's figures and outputs
    (:func:`wafertile.model.generation.predict_step`: ``--fidelity model``, no simulation,
    the tokens of the bit-exact reference and the cycles of the performance model)."""
    from .run import run_network

    start = time.perf_counter()
    fidelity = "rtl" if predict is None else "model"
    shape = GPTShape.of(params)
    seqs, batch = _sequences(ids)
    S = len(seqs)
    base = gpt_network(params, config.dtype, name=name)
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
    events: dict[str, np.ndarray] | None = None
    passed: bool | None = True
    prompt_lens = [len(seq) for seq in seqs]
    seconds: dict[str, float] = {}
    methods: set[str] = set()
    for step in range(tokens):
        windows = [seq[-shape.context:] for seq in seqs]
        T = window_length(max(len(w) for w in windows), S, config.rows, shape.context)
        x = window_inputs(shape, windows, T)
        net = replace(base, seq=T)
        if predict is not None:
            got, y = predict(config, net, x)
            methods.update(got.pop("methods"))
            passed = None
        else:
            report, y = run_network(config, net, x, sim=sim, dense=False,
                                    build_root=build_root)
            got = {k: getattr(report, k) for k in (
                "passed", "mismatches", "cycles", "macs", "host_flits_in", "host_flits_out",
                "handoff_flits", "per_layer", "seconds", "events")}
            passed &= got["passed"]
            totals["mismatches"] += got["mismatches"]
        for k, v in got["seconds"].items():
            seconds[k] = seconds.get(k, 0.0) + v
        for k in ("cycles", "macs", "host_flits_in", "host_flits_out", "handoff_flits"):
            totals[k] += got[k]
        if got.get("events") is not None:  # every step's, added tile by tile
            step_events = {k: np.asarray(v, np.int64) for k, v in got["events"].items()}
            events = step_events if events is None else {
                k: events[k] + v for k, v in step_events.items()}
        for k, v in phase_cycles(shape, got["per_layer"]).items():
            phases[k] += v
        mine = np.argmax(np.asarray(y, np.float32), axis=1).reshape(S, T)
        for s, window in enumerate(windows):
            n = len(window)
            if onnx is not None:
                theirs = np.argmax(onnx.logits(np.array(window, np.int64)), axis=1)
                counted = slice(0, n) if step == 0 else slice(n - 1, n)
                agree += int(np.sum(mine[s, counted] == theirs[counted]))
                positions += len(theirs[counted])
            seqs[s].append(int(mine[s, n - 1]))
        _log.info(f"step {step + 1}/{tokens}: {got['cycles']} cycles"
                  + ("" if fidelity == "model" else
                     f", {'pass' if got['passed'] else 'FAIL'}"))
    tiles = config.rows * config.cols

    def show(i):
        return decode(i) if decode else " ".join(map(str, i))

    texts = [show(seq[n:]) for seq, n in zip(seqs, prompt_lens, strict=True)]
    prompts = [show(seq[:n]) for seq, n in zip(seqs, prompt_lens, strict=True)]
    made = tokens * S
    report = GenerationReport(
        passed=passed, mismatches=None if fidelity == "model" else totals["mismatches"],
        name=name, dtype=config.dtype, prompt=prompts[0] if S == 1 else prompts,
        text=texts[0] if S == 1 else texts, tokens=tokens, sequences=S,
        agreement=agree / positions if positions else None, agreement_positions=positions,
        reference=note, cycles=totals["cycles"], cycles_per_token=totals["cycles"] / made,
        cycles_per_step=totals["cycles"] / tokens,
        phase_cycles_per_token={k: v / made for k, v in phases.items()},
        macs=totals["macs"],
        utilization=totals["macs"] / (tiles * totals["cycles"]) if totals["cycles"] else 0.0,
        host_flits_in=totals["host_flits_in"], host_flits_out=totals["host_flits_out"],
        handoff_flits=totals["handoff_flits"], sim="model" if fidelity == "model" else sim,
        fidelity=fidelity, model_methods=sorted(methods) if fidelity == "model" else None,
        wall_seconds=time.perf_counter() - start, seconds=seconds,
        events=None if events is None else {k: v.tolist() for k, v in events.items()})
    out = [np.array(seq, np.int64) for seq in seqs]
    return report, out if batch else out[0]
