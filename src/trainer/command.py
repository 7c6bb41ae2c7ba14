"""``wafertile train``: train a masked chain of fully connected layers on the fabric
(``docs/training.md``, "wafertile train").

Every input is checked before anything is built: the flags, the network, the data, the
array's memory budget, the fabrics against the batch, the output directory, a checkpoint to
resume. Then, step by step: the fabric's step (the RTL on the Verilator harness, checked bit
for bit against the reference; or the reference alone with ``--fidelity model``), the store's
update, a checkpoint every ``--checkpoint-every`` steps; at the end the FP32 baseline, the
trained network, the table of steps, the curve and the report.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import InputError
from ..files import (
    check_dir_writable,
    check_output_names,
    read_npz,
    save_npy,
    write_bytes,
    write_text,
)
from ..flags import add_config_flags, config_from_args
from ..model.predict import DETAILS
from ..train import (
    OPTIMIZERS,
    SCHEDULES,
    ParameterStore,
    TrainConfig,
    TrainError,
    export_network,
    from_network,
    gelu_flags,
    load_checkpoint,
    residual_sources,
    save_checkpoint,
)
from .loop import accuracy, batches, fp32_forward, train_fp32
from .workload import digits_data, random_network

__all__ = ["DEFAULTS", "add_parser", "cmd_train"]

_log = logging.getLogger(__name__)

#: The built-in workload: the digits chain (``--network digits``).
DIGITS_SIZES = (64, 128, 64, 10)
#: The defaults of the flags (``wafertile train --help`` shows them).
DEFAULTS = {"network": "digits", "dtype": "bf16", "epochs": 10, "batch": 32,
            "optimizer": "adam", "lr": 0.003, "seed": 0, "density": 0.2, "fidelity": "rtl",
            "fabrics": 1, "output": Path("wafertile-train")}
#: What a run writes in its output directory.
FILES = ("report.json", "steps.csv", "curve.png", "network.npz", "checkpoint.npz",
         "test_inputs.npy", "test_labels.npy")
#: The columns of ``steps.csv``.
COLUMNS = ("step", "epoch", "loss", "batch_accuracy", "applied", "scale", "rows", "exact",
           "cycles_forward", "cycles_loss", "cycles_gradients", "cycles_backward",
           "cycles_backward_handoff", "cycles_total", "cycles_check", "step_cycles", "flits_in",
           "flits_out", "sim_seconds", "optimizer_seconds", "seconds", "model_methods")

_DESCRIPTION = """\
Train a chain of fully connected layers with ReLU (softmax cross-entropy: a network's own
softmax at its end is the loss's, and the trained network is written without it) by weight
streaming: every step streams the weights in for the forward pass and again for the backward
pass, computes the weight and bias gradients of the fixed mask on the tiles and streams them
out to the parameter store, which holds the FP32 master weights and runs the optimizer
(docs/training.md). On the RTL (the default, --fidelity rtl) every logit and gradient of
every step is checked against the numpy reference bit for bit. Every input is checked before
anything is built; exit status 1 on a mismatch or a tool's failure, 2 on bad input, 130 when
interrupted.
"""

_EPILOG = """\
writes, in --output DIR (default wafertile-train/; existing files are replaced only with
--force or --resume):
  report.json     the report (the --json object)
  steps.csv       one row per step: loss, batch accuracy, loss scale, cycles by part of the
                  step, flits in and out, seconds (pandas.read_csv)
  curve.png       loss per step and test accuracy per epoch, beside the FP32 baseline
  network.npz     the trained network: wafertile run --network DIR/network.npz
                  --inputs DIR/test_inputs.npy --labels DIR/test_labels.npy (the test set)
  checkpoint.npz  the parameter store and the run's progress (--resume continues from it)
  test_inputs.npy, test_labels.npy   the test set the accuracy is measured on

examples:
  wafertile train                                   digits, bf16, on the RTL of a 4 x 4 array
  wafertile train --dtype fp16 --steps 50 --json    50 steps, fp16 with loss scaling
  wafertile train --fidelity model --epochs 20      the numerics only (no simulation)
  wafertile train --fabrics 2                       two simulated fabrics on Dask
  wafertile train --network net.npz --data d.npz    a network file, its data
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``train`` to the sub-parser action ``sub``."""
    p = sub.add_parser("train", help="train a masked MLP on the fabric (weight streaming), "
                                     "checked bit for bit", description=_DESCRIPTION,
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    w = p.add_argument_group("what to train")
    w.add_argument("--network", metavar="NET", default=None,
                   help="'digits' (64-128-64-10 from a random start, the mask of --density), "
                        "a float network .npz file (fp16/bf16: its weights, its nonzeros the "
                        "mask; ReLU, GELU or LayerNorm after each layer but the last: "
                        "docs/training.md) or a float .onnx MLP (default: digits)")
    w.add_argument("--density", type=float, default=None, metavar="D",
                   help="a fresh random start (He init) whose fixed mask keeps this share of "
                        "each layer's weights, in (0, 1]; with a file, of the file's layer "
                        "sizes (default: 0.2 for digits; a file's own weights otherwise)")
    w.add_argument("--data", type=Path, metavar="DATA.npz", default=None,
                   help="training data: keys x (N x inputs), y (N integer labels), and "
                        "optionally x_test, y_test; inputs rounded to the tile format to "
                        "nearest even (default: scikit-learn's digits, 1347 training and 450 "
                        "test images)")
    t = p.add_argument_group("how")
    t.add_argument("--epochs", type=int, default=None, metavar="N",
                   help=f"passes over the training data (default: {DEFAULTS['epochs']}); "
                        "not with --steps")
    t.add_argument("--steps", type=int, default=None, metavar="N",
                   help="updates to run instead of --epochs, >= 1")
    t.add_argument("--batch", type=int, default=None, metavar="B",
                   help=f"inputs per step, >= 1 (default: {DEFAULTS['batch']}); the array "
                        "runs them in groups of --rows")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help=f"update rule (default: {DEFAULTS['optimizer']}; adam with "
                        "--weight-decay is AdamW)")
    t.add_argument("--lr", type=float, default=None,
                   help=f"learning rate, positive (default: {DEFAULTS['lr']})")
    t.add_argument("--weight-decay", type=float, default=None, metavar="X",
                   help="decoupled weight decay, >= 0 (default: 0)")
    t.add_argument("--momentum", type=float, default=None, metavar="X",
                   help="momentum's factor in [0, 1) (default: 0.9)")
    t.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="learning-rate schedule (default: constant; cosine decays to 0 at "
                        "the last step)")
    t.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="linear warm-up steps, >= 0 (default: 0)")
    t.add_argument("--step-size", type=int, default=None, metavar="N",
                   help="--schedule step: updates between two decays, >= 1 (default: 1000)")
    t.add_argument("--gamma", type=float, default=None, metavar="X",
                   help="--schedule step: the factor of each decay, in (0, 1] (default: 0.1)")
    t.add_argument("--seed", type=int, default=None, metavar="N",
                   help=f"seed of the random start and the batch order, >= 0 (default: "
                        f"{DEFAULTS['seed']})")
    r = p.add_argument_group("where")
    r.add_argument("--fidelity", choices=("rtl", "model"), default=None,
                   help="rtl: every step on the RTL (Verilator), checked against the "
                        "reference bit for bit; model: the reference's numerics and the "
                        "performance model's cycles, no simulation and no build (default: "
                        "rtl)")
    r.add_argument("--model-detail", choices=DETAILS, default=None,
                   help="with --fidelity model: auto (exact: the analytic level where it "
                        "is exact, the event-level mesh elsewhere), analytic (fast, "
                        "approximate: hand-offs and streams with hazard bubbles are "
                        "estimated) or mesh (everything event by event) (default: auto)")
    r.add_argument("--fabrics", type=int, default=None, metavar="N",
                   help="simulated fabrics, each a Dask worker with a share of every step's "
                        "batch groups; the result equals one fabric's bit for bit (default: "
                        "one fabric in this process, no Dask; any --fabrics uses Dask); at "
                        "most the groups of a full batch")
    r.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="with --fabrics: the Dask scheduler of the fabrics' workers "
                        "(tcp://HOST:8786); default: a LocalCluster of --fabrics processes")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help=f"directory of the run's files (default: {DEFAULTS['output']})")
    o.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="write DIR/checkpoint.npz every N steps, atomically (default: every "
                        "epoch's end; always after the last step)")
    o.add_argument("--resume", action="store_true",
                   help="continue the run in DIR from its checkpoint: the same network, data, "
                        "configuration, fidelity, seed, batch and steps (checked); the steps "
                        "after it equal an uninterrupted run's bit for bit")
    o.add_argument("--force", action="store_true",
                   help="replace the files of an earlier run in DIR")
    o.add_argument("--json", action="store_true",
                   help="print the report as one JSON object (keys pass, accuracy, "
                        "fp32_accuracy, steps, loss, step_cycles, forward_cycles, flits_in, "
                        "flits_out, nnz, seconds, ...)")
    add_config_flags(p)
    for action in p._actions:  # the tile format's default is train's own
        if action.dest == "dtype":
            action.help = (f"{action.help}; wafertile train: default {DEFAULTS['dtype']} (an "
                           f"integer format is refused)")
    p.set_defaults(func=cmd_train, command_parser=p)
    return p


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


@dataclass
class _Plan:
    """A checked run: everything decided before anything is built."""

    config: Config
    train: TrainConfig
    store: ParameterStore
    initial: ParameterStore
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    steps: int
    per_epoch: int
    batch: int
    output: Path
    every: int
    name: str
    state: dict | None
    identity: dict
    #: per layer, GELU after it instead of ReLU (the network's ``gelu{l}``)
    gelu: tuple[bool, ...] = ()
    #: per layer, None or the earlier layer whose accumulators it adds (``res{l}``)
    res: tuple = ()


def _config(args: argparse.Namespace) -> Config:
    if args.dtype is None and args.data_width is None and args.config is None:
        args.dtype = DEFAULTS["dtype"]
    cfg = config_from_args(args)
    _check(cfg.is_float, f"training needs a float tile format (--dtype fp16 or bf16), not "
                         f"{cfg.dtype}: the integer tiles have no backward operations")
    _check(cfg.handoff, "training hands activations and gradients on between the layers on "
                        "chip: handoff = false leaves the hand-off unit out; use handoff = true")
    return cfg


def _numbers(args: argparse.Namespace) -> None:
    _check(args.epochs is None or args.steps is None,
           "--epochs and --steps both set the run's length: give one")
    for flag, value, low in (("--epochs", args.epochs, 1), ("--steps", args.steps, 1),
                             ("--batch", args.batch, 1), ("--seed", args.seed, 0),
                             ("--fabrics", args.fabrics, 1), ("--warmup", args.warmup, 0),
                             ("--step-size", args.step_size, 1),
                             ("--checkpoint-every", args.checkpoint_every, 1)):
        _check(value is None or value >= low,
               f"{flag} must be an integer >= {low}, not {value}")
    _check(args.density is None or (math.isfinite(args.density) and 0 < args.density <= 1),
           f"--density must be in (0, 1], not {args.density}")
    _check(args.scheduler is None or args.fabrics is not None,
           "--scheduler runs the fabrics of --fabrics N on a cluster: give --fabrics")
    _check(args.model_detail is None or args.fidelity == "model",
           "--model-detail applies to --fidelity model only (the RTL has no detail levels)")
    _check(args.fidelity != "model" or (args.fabrics is None and args.scheduler is None),
           "--fabrics and --scheduler spread simulations over workers; --fidelity model "
           "simulates nothing")


def _train_config(args: argparse.Namespace, cfg: Config, steps: int) -> TrainConfig:
    values: dict[str, Any] = {"dtype": cfg.dtype,
                              "optimizer": args.optimizer or DEFAULTS["optimizer"],
                              "lr": DEFAULTS["lr"] if args.lr is None else args.lr}
    for flag, key in (("weight_decay", "weight_decay"), ("momentum", "momentum"),
                      ("schedule", "schedule"), ("warmup", "warmup_steps"),
                      ("step_size", "step_size"), ("gamma", "gamma")):
        if getattr(args, flag) is not None:
            values[key] = getattr(args, flag)
    if values.get("schedule") == "cosine":
        values["total_steps"] = steps
    try:
        return TrainConfig(**values)
    except TrainError as exc:  # name the flag, not the parameter
        text = str(exc)
        for key, flag in (("lr", "--lr"), ("weight_decay", "--weight-decay"),
                          ("momentum", "--momentum"), ("warmup_steps", "--warmup"),
                          ("gamma", "--gamma"),
                          ("total_steps", "the run's steps")):
            if text.startswith(key + " "):
                text = flag + text[len(key):]
        raise TrainError(text) from None


def _network(args: argparse.Namespace, cfg: Config, tcfg: TrainConfig, seed: int
             ) -> tuple[ParameterStore, str, tuple[bool, ...], tuple]:
    source = args.network or DEFAULTS["network"]
    if source == "digits":
        density = DEFAULTS["density"] if args.density is None else args.density
        w, b, m = random_network(DIGITS_SIZES, density, seed)
        return ParameterStore(w, b, m, tcfg), "digits", (False,) * len(w), (None,) * len(w)
    path = Path(source)
    if path.suffix == ".onnx":
        from ..network.onnx import import_onnx_float
        net = import_onnx_float(path, cfg.dtype)
        net.source = f"ONNX model {str(path)!r}"
    elif path.suffix == ".npz":
        from ..network.model import load_network
        net = load_network(path)
    else:
        raise InputError(f"--network must be 'digits', a network .npz file or an .onnx model, "
                         f"not {source!r}")
    if net.softmax:  # the loss's own softmax: the chain trained is the logits'
        _log.info(f"{net.source or source}: its softmax (softmax = 1, or an ONNX Softmax) is "
                  f"the loss's: training takes the logits, and the trained network is written "
                  f"without it")
    store = from_network(net, tcfg)  # the masters: the file's values
    if args.density is not None:
        sizes = [net.layers[0].weights.shape[1]] + [layer.weights.shape[0]
                                                    for layer in net.layers]
        w, b, m = random_network(sizes, args.density, seed)
        store = ParameterStore(w, b, m, tcfg, store.norms)  # the file's LayerNorms kept
    from .compiler import check_gelu, check_norms, check_residuals

    gelu, res = gelu_flags(net), residual_sources(net)
    try:
        check_gelu(cfg, gelu)
        check_norms(cfg, store.stream_weights(cfg.dtype), store.norms, gelu)
        check_residuals(store.weights, store.norms, res)
    except TrainError as exc:
        raise TrainError(f"{net.source or source}: {exc}") from None
    return store, path.stem, gelu, res


def _data(args: argparse.Namespace, cfg: Config, sizes: list[int]
          ) -> tuple[np.ndarray, ...]:
    from ..hdl.core.fp import float_format

    if args.data is None:
        _check(sizes[0] == 64 and sizes[-1] == 10,
               f"the network has {sizes[0]} inputs and {sizes[-1]} outputs; the default "
               f"data (digits) needs 64 and 10: give --data")
        return digits_data(cfg.dtype)
    label = f"--data {str(args.data)!r}"
    arrays = read_npz(args.data, label)
    for key in ("x", "y"):
        _check(key in arrays, f"{label} has no key {key!r} (keys: x, y, optionally x_test, "
                              f"y_test)")
    _check(("x_test" in arrays) == ("y_test" in arrays),
           f"{label}: x_test and y_test go together")
    fmt = float_format(cfg.dtype)
    out = []
    for xk, yk in (("x", "y"), ("x_test", "y_test")):
        if xk not in arrays:
            out += [out[0], out[1]]  # no test set: accuracy on the training data
            continue
        x, y = np.asarray(arrays[xk]), np.asarray(arrays[yk])
        _check(x.ndim == 2 and x.shape[1] == sizes[0] and len(x) >= 1,
               f"{label}: {xk} must be N x {sizes[0]} (the network's inputs), N >= 1, not "
               f"{' x '.join(map(str, x.shape))}")
        _check(x.dtype.kind in "iuf", f"{label}: {xk} must be numbers, not {x.dtype}")
        bad = ~np.isfinite(x.astype(np.float64))
        if bad.any():
            raise InputError(f"{label}: {xk}{list(map(int, np.argwhere(bad)[0]))} is not "
                             f"finite")
        _check(y.shape == (len(x),) and y.dtype.kind in "iu",
               f"{label}: {yk} must be {len(x)} integer labels, not {y.dtype} of shape "
               f"{y.shape}")
        out_of = (y < 0) | (y >= sizes[-1])
        if out_of.any():
            n = int(np.argmax(out_of))
            raise InputError(f"{label}: {yk}[{n}] = {int(y[n])} is not a class of the network "
                             f"(0 to {sizes[-1] - 1})")
        out += [fmt.values(fmt.bits(x.astype(np.float32))).astype(np.float32),
                y.astype(np.int64)]
    x, xt, y, yt = out[0], out[2], out[1], out[3]
    return x, xt, y, yt


def plan(args: argparse.Namespace) -> _Plan:
    """Check every input of ``wafertile train`` and decide the run (nothing built yet)."""
    _numbers(args)
    cfg = _config(args)
    output = args.output if args.output is not None else DEFAULTS["output"]
    exists = check_dir_writable("--output", output)
    present = check_output_names("--output", output, FILES) if exists else []
    if args.resume:
        _check("checkpoint.npz" in present,
               f"--resume: {str(Path(output) / 'checkpoint.npz')!r} does not exist (no "
               f"earlier run of this directory to continue)")
    else:
        _check(not present or args.force,
               f"--output {str(output)!r} holds an earlier run ({', '.join(present)}): "
               f"--resume to continue it, --force to replace it, or another --output")
    seed = DEFAULTS["seed"] if args.seed is None else args.seed
    batch = DEFAULTS["batch"] if args.batch is None else args.batch
    # the steps (for a cosine schedule's length) need the data's size: read the network once
    # with a provisional configuration, then give its arrays the run's
    probe, name, gelu, res = _network(args, cfg, TrainConfig(dtype=cfg.dtype), seed)
    sizes = [probe.shapes[0][1]] + [s[0] for s in probe.shapes]
    x, x_test, y, y_test = _data(args, cfg, sizes)
    per_epoch = math.ceil(len(x) / batch)
    steps = args.steps if args.steps is not None else per_epoch * (
        DEFAULTS["epochs"] if args.epochs is None else args.epochs)
    tcfg = _train_config(args, cfg, steps)
    store = ParameterStore(probe.weights, probe.biases, probe.masks, tcfg, probe.norms)
    from .compiler import step_layout
    # the activation bank's budget (names the sizes)
    step_layout(cfg, sizes, gelu, [n in probe.norm_layers for n in range(len(gelu))])
    groups = math.ceil(min(batch, len(x)) / cfg.rows)
    fabrics = args.fabrics or 1
    _check(fabrics <= groups,
           f"--fabrics {fabrics} needs at least {fabrics} batch groups of {cfg.rows} inputs "
           f"(--rows); a batch of {min(batch, len(x))} makes {groups}")
    if args.scheduler is not None:
        from ..cluster import check_scheduler
        check_scheduler(args.scheduler)
    initial = copy.deepcopy(store)
    state = None
    if args.resume:
        store, state = load_checkpoint(Path(output) / "checkpoint.npz", expect=store)
        _check(isinstance(state, dict) and state.get("seed") == seed
               and state.get("batch") == batch and state.get("steps") == steps,
               f"--resume: the checkpoint's run had seed, batch and steps "
               f"{_get(state, 'seed')}, {_get(state, 'batch')}, {_get(state, 'steps')}; "
               f"this one {seed}, {batch}, {steps}")
        _check(isinstance(state.get("history"), list), "--resume: the checkpoint has no "
                                                       "history of the run's steps")
        here = _identity(args, cfg, gelu, probe.norm_layers, res, x, y, x_test, y_test)
        # a checkpoint written before the activations (the residuals) were part of a run's
        # identity (2026-12-07) is of a chain with ReLU after every layer but the last (and
        # no residual)
        state.setdefault("activations", _activations((False,) * len(gelu)))
        state.setdefault("residuals", [None] * len(gelu))
        for key, value in here.items():
            _check(state.get(key) == value,
                   f"--resume: the checkpoint's run had another {key} "
                   f"({_short(state.get(key))} there, {_short(value)} here)")
        state["history"] = [_row_in(r) for r in state["history"]]
    every = args.checkpoint_every or per_epoch
    return _Plan(cfg, tcfg, store, initial, x, y, x_test, y_test, steps, per_epoch, batch,
                 Path(output), every, name, state,
                 _identity(args, cfg, gelu, probe.norm_layers, res, x, y, x_test, y_test),
                 gelu, res)


def _identity(args: argparse.Namespace, cfg: Config, gelu: tuple[bool, ...], norms: list[int],
              res: tuple, *data: np.ndarray) -> dict:
    """What a resumed run must share with the checkpoint's beyond the store: the fidelity,
    the array (``rows`` makes the groups), the layers' activations and residuals and the
    data (SHA-256 of its arrays)."""
    import hashlib

    digest = hashlib.sha256()
    for a in data:
        digest.update(np.ascontiguousarray(a).tobytes())
    fidelity = args.fidelity or DEFAULTS["fidelity"]
    if fidelity == "model":  # the cycles of each step depend on the model's level too
        fidelity = f"model ({args.model_detail or 'auto'})"
    return {"fidelity": fidelity, "array": cfg.as_dict(), "data": digest.hexdigest(),
            "activations": _activations(gelu, norms), "residuals": list(res)}


def _activations(gelu: tuple[bool, ...], norms: list[int] = ()) -> list[str | None]:
    """Each layer's activation by name: ``"relu"``, ``"gelu"``, ``"layernorm"`` (the
    layers ``norms``: a LayerNorm with no activation after it), None for the last."""
    return [None if n == len(gelu) - 1 else "layernorm" if n in norms else "gelu" if g else
            "relu" for n, g in enumerate(gelu)]


def _short(value: Any) -> str:
    """A checkpoint's value for a message, cut after 60 characters."""
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


#: The fields of a step's row that may be infinite or NaN (a loss of infinite logits): kept in
#: the checkpoint (JSON numbers only) as the strings "inf", "-inf", "nan".
_FLOATS = ("loss", "batch_accuracy", "scale")


def _row_out(row: dict) -> dict:
    return {k: (str(v) if k in _FLOATS and not math.isfinite(v) else v)
            for k, v in row.items()}


def _row_in(row: dict) -> dict:
    return {k: (float(v) if k in _FLOATS else v) for k, v in row.items()}


def _get(state: Any, key: str) -> Any:
    return state.get(key) if isinstance(state, dict) else None


def cmd_train(args: argparse.Namespace) -> int:
    """The ``train`` command (after the parser): plan, run, write, report."""
    p = plan(args)
    fidelity = args.fidelity or DEFAULTS["fidelity"]
    p.output.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    epoch_accuracy: list[list[float]] = []
    if p.state is not None:
        history, epoch_accuracy = p.state["history"], p.state.get("epoch_accuracy", [])
    fabric = _fabric(p, fidelity, args)
    start = time.perf_counter()
    try:
        ok = _run(p, fabric, history, epoch_accuracy,
                  seed=DEFAULTS["seed"] if args.seed is None else args.seed)
    finally:
        if fabric is not None and hasattr(fabric, "close"):
            fabric.close()
    seconds = time.perf_counter() - start
    report = _report(p, fidelity, history, epoch_accuracy, ok, seconds, args)
    export_network(p.store, p.output / "network.npz", name=f"{p.name}-trained",
                   gelu=p.gelu, res=p.res)
    save_npy(p.output / "test_inputs.npy", p.x_test)
    save_npy(p.output / "test_labels.npy", p.y_test)
    _write_table(p.output / "steps.csv", history)
    _plot(p.output / "curve.png", history, epoch_accuracy, report)
    write_text(p.output / "report.json", json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        print(_text(report))
    return 0 if ok else 1


def _fabric(p: _Plan, fidelity: str, args: argparse.Namespace):
    if fidelity == "model":
        from .model import ModelFabric
        return ModelFabric(p.config, detail=args.model_detail or "auto")
    if args.fabrics is not None:
        from .fabrics import DaskFabrics
        return DaskFabrics(p.config, args.fabrics, scheduler=args.scheduler)
    from .rtl import RtlFabric
    return RtlFabric(p.config)


def _run(p: _Plan, fabric, history: list[dict], epoch_accuracy: list[list[float]], *,
         seed: int) -> bool:
    """The steps after the checkpoint's (all of them in a new run); False at a mismatch."""
    store, cfg = p.store, p.config
    done = len(history)
    began, last_line = time.perf_counter(), 0.0
    for step, idx in enumerate(batches(len(p.x), p.batch, p.steps, seed), 1):
        if step <= done:
            continue
        t0 = time.perf_counter()
        scale = float(store.scale)
        args = (store.stream_weights(), store.biases, store.masks, p.x[idx], p.y[idx], scale)
        row: dict[str, Any] = {"step": step, "epoch": (step - 1) // p.per_epoch + 1,
                               "rows": len(idx)}
        r = fabric.step(*args, gelu=p.gelu, ln=store.norms, res=p.res)
        result, dw, db, exact = r.reference, r.dw, r.db, r.exact
        row.update({f"cycles_{k}": v for k, v in r.cycles.items()})
        row.update(step_cycles=r.step_cycles, flits_in=r.flits_in, flits_out=r.flits_out,
                   sim_seconds=round(r.seconds, 4))
        if exact is None:  # predicted: how the model found the cycles
            methods = getattr(r, "methods", {})
            row["model_methods"] = " ".join(f"{k}:{v}" for k, v in sorted(methods.items()))
        if exact is False:
            _log.error(f"step {step}: the RTL differs from the reference: "
                       f"{', '.join(r.mismatches)}")
        t1 = time.perf_counter()
        applied = store.apply(dw, db, r.dln) if exact is not False else False
        t2 = time.perf_counter()
        hits = np.argmax(result.logits, axis=1) == p.y[idx]
        row.update(loss=result.loss, batch_accuracy=float(np.mean(hits)), applied=applied,
                   scale=scale, exact=exact, optimizer_seconds=round(t2 - t1, 5),
                   seconds=round(t2 - t0, 4))
        history.append(row)
        if exact is False:
            return False
        end_of_epoch = step % p.per_epoch == 0 or step == p.steps
        if end_of_epoch:
            acc = accuracy(cfg, store.stream_weights(), store.biases, p.x_test, p.y_test,
                           p.gelu, store.norms, p.res)
            epoch_accuracy.append([step, acc])
        now = time.perf_counter()
        rate = (step - done) / (now - began)
        if end_of_epoch or now - last_line >= 10:
            last_line = now
            left = (p.steps - step) / rate
            tail = f", test accuracy {epoch_accuracy[-1][1]:.4f}" if end_of_epoch else ""
            _log.info(f"step {step}/{p.steps} (epoch {row['epoch']}): loss "
                      f"{result.loss:.4f}, batch accuracy {row['batch_accuracy']:.3f}{tail}; "
                      f"{rate:.2f} steps/s, {_duration(left)} left")
        if step % p.every == 0 or step == p.steps:
            save_checkpoint(p.output / "checkpoint.npz", store, rng_state={
                "seed": seed, "batch": p.batch, "steps": p.steps, **p.identity,
                "history": [_row_out(r) for r in history], "epoch_accuracy": epoch_accuracy})
    return True


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _median(history: list[dict], key: str) -> int | None:
    values = [h[key] for h in history if h.get(key) is not None]
    return int(np.median(values)) if values else None


def _report(p: _Plan, fidelity: str, history: list[dict], epoch_accuracy, ok: bool,
            seconds: float, args: argparse.Namespace) -> dict:
    store = p.store
    accuracy_ = accuracy(p.config, store.stream_weights(), store.biases, p.x_test, p.y_test,
                         p.gelu, store.norms, p.res)
    base = TrainConfig.from_dict({**p.train.as_dict(), "loss_scaling": False})
    fp32_store = ParameterStore(p.initial.weights, p.initial.biases, p.initial.masks, base,
                                p.initial.norms)
    fp32 = train_fp32(fp32_store, p.x, p.y, steps=p.steps, batch=p.batch,
                      seed=DEFAULTS["seed"] if args.seed is None else args.seed,
                      gelu=p.gelu, res=p.res).store
    fp32_acc = float(np.mean(np.argmax(fp32_forward(fp32.weights, fp32.biases, p.x_test,
                                                    p.gelu, ln=fp32.norms, res=p.res)[-1],
                                       axis=1)
                             == p.y_test))
    rtl = fidelity == "rtl"
    phases = {k: _median(history, f"cycles_{k}") for k in
              ("forward", "loss", "gradients", "backward", "backward_handoff", "total")}
    methods: dict[str, int] = {}
    for h in history:
        for item in (h.get("model_methods") or "").split():
            k, _, v = item.partition(":")
            methods[k] = methods.get(k, 0) + int(v)
    return {
        "pass": (ok and all(h["exact"] for h in history)) if rtl else None,
        "fidelity": fidelity, "network": p.name,
        "model_detail": None if rtl else (args.model_detail or "auto"),
        "model_methods": None if rtl else methods,
        "sizes": [store.shapes[0][1]] + [s[0] for s in store.shapes],
        "activations": _activations(p.gelu, store.norm_layers), "residuals": list(p.res),
        "dtype": p.config.dtype, "rows": p.config.rows, "cols": p.config.cols,
        "fabrics": args.fabrics or 1, "optimizer": p.train.optimizer, "lr": p.train.lr,
        "batch": p.batch, "steps": len(history), "planned_steps": p.steps,
        "epochs": p.steps / p.per_epoch,
        "nnz": int(sum(int(m.sum()) for m in store.masks)),
        "accuracy": accuracy_, "fp32_accuracy": fp32_acc,
        "epoch_accuracy": [a for _, a in epoch_accuracy],
        "loss": [h["loss"] for h in history],
        "skipped": store.skipped, "final_scale": float(store.scale),
        "step_cycles": _median(history, "step_cycles"),
        "forward_cycles": phases["forward"], "phase_cycles": phases,
        "total_cycles": int(sum(h.get("step_cycles") or 0 for h in history)),
        "flits_in": _median(history, "flits_in"), "flits_out": _median(history, "flits_out"),
        "seconds": round(seconds, 2),
        "output": str(p.output),
    }


def _write_table(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for h in history:
        writer.writerow({k: ("" if h.get(k) is None else h.get(k)) for k in COLUMNS})
    write_text(path, buffer.getvalue())


def _plot(path: Path, history: list[dict], epoch_accuracy, report: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot([h["step"] for h in history], [h["loss"] for h in history], lw=0.8)
    a.set(xlabel="step", ylabel="loss (batch mean)", yscale="log",
          title=f"{report['network']} {report['dtype']}, {report['fidelity']}")
    if epoch_accuracy:
        b.plot([s for s, _ in epoch_accuracy], [v for _, v in epoch_accuracy], "o-",
               label=f"fabric ({report['dtype']})")
    b.axhline(report["fp32_accuracy"], ls="--", color="grey", label="FP32 numpy baseline")
    b.set(xlabel="step", ylabel="test accuracy", title="accuracy after each epoch")
    b.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def _text(r: dict) -> str:
    lines = [f"trained {r['network']} {'-'.join(map(str, r['sizes']))} ({r['nnz']} weights "
             f"in the mask), {r['dtype']}, {r['steps']} steps of {r['batch']} "
             f"({r['optimizer']}, lr {r['lr']:g})",
             f"test accuracy {r['accuracy']:.4f} (FP32 numpy baseline "
             f"{r['fp32_accuracy']:.4f}); last loss {r['loss'][-1]:.4f}; "
             f"{r['skipped']} steps skipped"]
    if r["fidelity"] == "rtl":
        lines.append(f"RTL ({r['rows']} x {r['cols']}, {r['fabrics']} fabric(s)): "
                     + ("every step bit exact" if r["pass"] else "MISMATCH"))
    else:
        how = ", ".join(f"{v} {k}" for k, v in sorted(r["model_methods"].items()))
        lines.append(f"fidelity model ({r['rows']} x {r['cols']}): the reference's numerics, "
                     f"cycles predicted ({r['model_detail']}; phases: {how})")
    ph = r["phase_cycles"]
    lines += [f"cycles per step (median): {r['step_cycles']} = forward {ph['forward']}, "
              f"loss gradient {ph['loss']}, weight gradients {ph['gradients']}, "
              f"backward data {ph['backward']}, backward hand-off {ph['backward_handoff']}",
              f"flits per step: {r['flits_in']} in, {r['flits_out']} out"]
    lines.append(f"{r['seconds']:.1f} s; files in {r['output']}/")
    return "\n".join(lines)
