"""``wafertile run --network``: the command-line side of running a network.

Resolves the network (``digits``, a ``.npz`` network file or a float ``.onnx`` model with
``--calibration``, or with ``--dtype fp16`` / ``bf16`` as a float network), its inputs and
labels, the configuration (``dtype`` defaults to the network's), checks everything before any
build, runs it and prints the report.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..outputs import finish_run
from ..run import load_array
from .compiler import check_network
from .model import Network, load_labels, load_network
from .quantize import quantize_inputs

__all__ = ["PROMPT", "add_network_flags", "run_network_command"]

#: tinygpt's default prompt.
PROMPT = "An object is "


def add_network_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--network`` options of ``wafertile run``."""
    group = parser.add_argument_group(
        "networks", "a whole network on the fabric, activations kept on chip (docs/network.md)")
    group.add_argument("--network", metavar="NET",
                       help="run a network instead of one layer: 'digits' (the shipped pruned "
                            "int8 digit classifier, on its 450 held-out test images), "
                            "'tinygpt' (the shipped character-level GPT: generates text, "
                            "docs/gpt.md), a network .npz file, a float .onnx MLP (with "
                            "--calibration or --dtype), or a GPT's .onnx file (token ids in, "
                            "logits out: generates text as tinygpt)")
    group.add_argument("--prompt", metavar="TEXT", action="append",
                       help="a GPT: the text to continue (characters of its vocabulary; "
                            "default: 'An object is '), or, for a GPT file without a "
                            "vocabulary, its token ids ('3, 1, 4'); given several times, a "
                            "batch: the sequences run side by side on the rows (default "
                            "rows: context x prompts), a token of each per step")
    group.add_argument("--tokens", type=int, metavar="N",
                       help="a GPT: characters to generate per sequence, one run of the "
                            "network per character (default: 8)")
    group.add_argument("--inputs", type=Path, metavar="X.npy",
                       help="the network's inputs (B x inputs: integers, or floats that the "
                            "network's input_scale or the ONNX calibration quantizes; for a "
                            "float network numbers of its format); default: digits' test "
                            "images")
    group.add_argument("--labels", type=Path, metavar="L.npy",
                       help="integer class labels of the inputs (B), for the accuracy")
    group.add_argument("--images", type=int, metavar="N",
                       help="use only the first N inputs, at most as many as there are "
                            "(default: all)")
    group.add_argument("--calibration", type=Path, metavar="C.npy",
                       help="float inputs (N x inputs) that set the quantization of an "
                            ".onnx network (not with --dtype fp16 or bf16: a float network "
                            "is not quantized)")
    group.add_argument("--prune", type=float, metavar="Z",
                       help="prune an .onnx network by weight magnitude to this share of zero "
                            "weights (e.g. 0.9) before quantizing it")


def _check_finite(label: str, values: np.ndarray, rule: str) -> None:
    """Refuse a float array ``values`` (read from the file ``label``) that holds NaN or
    infinity, naming the first one and where it is."""
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = ~np.isfinite(values)
    if bad.any():
        where = np.unravel_index(int(np.argmax(bad)), values.shape)
        raise InputError(f"{label} holds NaN or infinity ({float(values[where])} at "
                         f"{list(map(int, where))}, {int(bad.sum())} such value(s)); {rule}")


def _network(args: argparse.Namespace, data_width: int | None) -> tuple[Network, np.ndarray,
                                                                         np.ndarray | None]:
    """The network, its inputs (integers, or numbers of a float network's format) and labels
    (checked, before any build)."""
    name = args.network
    if name not in ("digits", "tinygpt") and not name.endswith((".npz", ".onnx")):
        raise InputError(f"--network must be 'digits', 'tinygpt', a .npz network file or an "
                         f".onnx model, not {name!r}")
    for flag in ("prompt", "tokens"):
        if getattr(args, flag, None) is not None:
            raise InputError(f"--{flag} applies to a GPT only (--network tinygpt or a GPT's "
                             f".onnx file); {name!r} maps inputs to outputs")
    onnx = name.endswith(".onnx")
    dtype = getattr(args, "dtype", None)
    as_float = onnx and dtype in ("fp16", "bf16")
    if (args.calibration is not None or args.prune is not None) and not onnx:
        raise InputError("--calibration and --prune apply to an .onnx network only")
    if as_float and args.calibration is not None:
        raise InputError(f"--calibration quantizes an .onnx network to integers; with --dtype "
                         f"{dtype} it runs in floating point and takes none")
    if onnx and args.calibration is None and not as_float:
        raise InputError("an .onnx network needs --calibration C.npy (float inputs that set its "
                         "quantization), or --dtype fp16 / bf16 to run it in floating point")
    if args.images is not None and args.images < 1:
        raise InputError(f"--images must be an integer >= 1, not {args.images}")
    labels = None
    if name == "digits":
        from .digits import digits_network, test_set
        net = digits_network()
        x, labels = test_set(net)
    elif as_float:
        from .onnx import import_onnx_float
        net = import_onnx_float(name, dtype, prune_to=args.prune)
        x = None
    elif onnx:
        from .onnx import import_onnx
        calibration = load_array("calibration", args.calibration)
        label = f"calibration file {str(args.calibration)!r}"
        if calibration.dtype.kind not in "biuf":
            raise InputError(f"{label} holds {calibration.dtype} values; a calibration set "
                             f"must be numbers (the float inputs the model expects)")
        _check_finite(label, calibration, "a calibration set must be finite numbers")
        net, _ = import_onnx(name, calibration, data_width=data_width or 8,
                             prune_to=args.prune)
        net.source = net.source or f"the network quantized from ONNX file {name!r}"
        x = None
    else:
        net = load_network(name)
        # the compiler's checks against the configuration (a bias against acc_width) name it
        net.source = net.source or f"network file {name!r}"
        x = None
    if args.inputs is not None:
        raw = load_array("inputs", args.inputs)
        if np.issubdtype(raw.dtype, np.floating) and not net.is_float:
            label = f"inputs file {str(args.inputs)!r}"
            scale = net.meta.get("input_scale")
            if scale is None:
                raise InputError(f"{label} holds floats but the network has no input_scale to "
                                 f"quantize them: give integers")
            _check_finite(label, raw, "float inputs are quantized with the network's "
                                      "input_scale and must be finite")
            raw = quantize_inputs(raw, scale, net.data_width)
        x = raw
        labels = None
    if x is None:
        raise InputError(f"--network {name} needs --inputs X.npy")
    if args.labels is not None:
        labels = load_labels(args.labels)
    if args.images is not None:
        if args.images > len(x):  # not fewer than asked without a word
            where = (f"inputs file {str(args.inputs)!r}" if args.inputs is not None
                     else "the digits test set")
            raise InputError(f"--images {args.images} asks for more inputs than there are: "
                             f"{where} has {len(x)}")
        x = x[:args.images]
        labels = None if labels is None else labels[:args.images]
    if labels is not None and len(labels) != len(x):
        raise InputError(f"--labels has {len(labels)} values for {len(x)} inputs")
    return net, np.asarray(x), labels


def run_network_command(args: argparse.Namespace, make_config: Callable[..., object]) -> int:
    """``wafertile run --network ...``; ``make_config(dtype=...)`` builds the configuration
    from the flags, with the network's number format as the default."""
    from .run import run_network, run_network_device

    if args.weights is not None or args.activations is not None:
        raise InputError("--network runs a network: it does not take --weights / --activations")
    if args.network == "tinygpt" or (args.network.endswith(".onnx") and
                                      _is_gpt(args.network)):
        return _generate(args, make_config)
    net, x, labels = _network(args, None)
    cfg = make_config(dtype=net.dtype)
    # every refusal before any work (and before a progress line): everything the compiler
    # checks
    model = getattr(args, "fidelity", "rtl") == "model"
    check_network(cfg, net, x)
    from ..model.wafer_command import run_energy_table
    table = run_energy_table(args, cfg)
    if model:
        from ..model.command import run_model_network
        return run_model_network(args, cfg, net, x, labels, table=table)
    # run_network / run_network_device compile (and so check every size and value) before
    # anything is built or a port is opened
    if args.device is not None:
        report, y = run_network_device(cfg, net, x, args.device, labels=labels, baud=args.baud)
    else:
        report, y = run_network(cfg, net, x, labels=labels, sim=args.sim, waves=args.waves,
                                dense=not args.no_dense)
    from ..model.energy import price_report
    price_report(report, cfg, table)
    return finish_run(report, y, cfg, out=args.out, as_json=args.json)


def _is_gpt(name: str) -> bool:
    """The .onnx file ``name`` takes token ids (a GPT); a file that cannot be read is left
    to the MLP's path, which names what is wrong with it."""
    from .onnx_gpt import is_gpt_graph

    try:
        return is_gpt_graph(name)
    except InputError:
        return False


def _token_ids(name: str, prompt: str | None, vocab: int) -> np.ndarray:
    """``--prompt`` as token ids (a GPT whose file has no vocabulary): integers from 0 to
    ``vocab - 1``, separated by commas or spaces."""
    import re

    where = (f"the GPT in {name!r} has no vocabulary (metadata 'wafertile.vocab'), so "
             f"--prompt is its token ids, 0 .. {vocab - 1}, separated by commas or spaces")
    if prompt is None or not prompt.strip():
        raise InputError(f"{where}: give one, e.g. --prompt '1 2 3'")
    words = [w for w in re.split(r"[,\s]+", prompt.strip()) if w]
    bad = next((w for w in words if not re.fullmatch(r"\d+", w) or int(w) >= vocab), None)
    if bad is not None:
        raise InputError(f"{where}; found {bad!r}")
    return np.array([int(w) for w in words], np.int64)


def _generate(args: argparse.Namespace, make_config: Callable[..., object]) -> int:
    """``--network tinygpt`` or a GPT's ONNX file: generate ``--tokens`` characters after
    each ``--prompt`` on the RTL, or with ``--fidelity model`` the reference's tokens and the
    performance model's cycles (docs/gpt.md); exit status 1 if a logit differs from the
    reference."""
    import json

    from . import tinygpt
    from .compiler import check_network
    from .generate import generate, window_inputs, window_length
    from .gpt import GPTShape, gpt_network

    name = args.network
    for flag in ("inputs", "labels", "images", "calibration", "prune", "out"):
        if getattr(args, flag, None) is not None:
            raise InputError(f"--{flag} does not apply to a GPT (--network {name}): it "
                             f"generates from --prompt and prints the text")
    fidelity = getattr(args, "fidelity", "rtl")
    if args.device is not None:
        raise InputError(f"--network {name} runs on a simulator: a board's serial link would "
                         f"take minutes per character (no --device)")
    tokens = 8 if args.tokens is None else args.tokens
    if tokens < 1:
        raise InputError(f"--tokens must be an integer >= 1, not {tokens}")
    path = tinygpt.WEIGHTS if name == "tinygpt" else Path(name)
    params, vocab, _ = tinygpt.load(path)
    shape = GPTShape.of(params)
    prompts = args.prompt or [None]
    if vocab:  # characters
        batch = []
        for prompt in prompts:
            ids = tinygpt.encode(PROMPT if prompt is None else prompt, vocab, "--prompt")
            if not len(ids):
                raise InputError("--prompt must hold at least one character")
            batch.append(ids)

        def decode(i):
            return tinygpt.decode(i, vocab)
    else:  # no vocabulary in the file: the prompt is token ids, and so is the text
        batch = [_token_ids(name, prompt, shape.vocab) for prompt in prompts]
        decode = None
    S = len(batch)
    cfg = make_config(dtype="bf16", rows=shape.context * S, cols=max(4, shape.heads),
                      nonlinear=True)
    label = "tinygpt" if name == "tinygpt" else Path(name).stem
    net = gpt_network(params, cfg.dtype, name=label)
    # every refusal before any work: the longest windows on this configuration
    longest = window_length(min(shape.context, max(len(ids) for ids in batch) + tokens - 1),
                            S, cfg.rows, shape.context)
    check_network(cfg, replace(net, seq=longest), window_inputs(shape, [[0] * longest] * S))
    from ..model.wafer_command import run_energy_table
    table = run_energy_table(args, cfg)
    predict = None
    if fidelity == "model":
        from functools import partial

        from ..model.generation import predict_step
        predict = partial(predict_step, detail=getattr(args, "model_detail", None) or "auto")
    report, _ = generate(cfg, params, batch if S > 1 else batch[0], tokens, decode=decode,
                         sim=args.sim, name=label, model=path, predict=predict)
    from ..model.energy import price_report
    price_report(report, cfg, table)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.text_lines(cfg))
        print(f"(finished in {report.wall_seconds:.1f} s)")
    return 1 if report.passed is False else 0
