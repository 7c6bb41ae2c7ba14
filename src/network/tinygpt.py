"""The small GPT shipped with wafertile: a character-level model of the Python language
reference.

The text is the one every Python carries for ``help()`` (``pydoc_data.topics``: the language
reference's sections, no download), its topics joined in sorted order, every character outside
printable ASCII and the newline made a space. The last tenth is held out: 2 000 characters of
it are kept with the weights as the held text that ``agreement`` is measured on.

:func:`train` fits the model of :data:`SHAPE` (2 blocks, width 32, 2 heads of 16, MLP 128,
context 16) with autograd (an optional extra: ``pip install wafertile[gpt]``): Adam (lr 3e-3,
then 1e-3 for the last third), cross-entropy of the next character, mini-batches of 32
windows, :data:`STEPS` steps, fixed seed, in float64. The model is written as an ONNX file,
``tinygpt.onnx`` beside this file (float32, about 120 kB, committed; the vocabulary and the
held text in its metadata), which ``wafertile run --network tinygpt`` reads with the GPT
importer: ``python -m wafertile.network.tinygpt`` remakes it and prints the held text's
loss.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np

from .gpt import EPS, GPTShape
from .model import NetworkError

__all__ = ["HELD", "HELD_KEY", "SHAPE", "STEPS", "VOCAB_KEY", "WEIGHTS", "corpus", "decode",
           "encode", "init_params", "load", "save", "train"]

_log = logging.getLogger(__name__)

#: The shipped model's sizes.
SHAPE = GPTShape(vocab=0, context=16, width=32, heads=2, blocks=2, hidden=128)
#: Training steps.
STEPS = 4000
SEED = 0
#: The shipped model: an ONNX file (its vocabulary and held text in its metadata).
WEIGHTS = Path(__file__).with_name("tinygpt.onnx")
#: The metadata keys of the vocabulary and the held text.
VOCAB_KEY, HELD_KEY = "wafertile.vocab", "wafertile.held"
#: Characters of held text kept with the weights.
HELD = 2000


def corpus() -> str:
    """The training text and the held text, joined (see the module text)."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    return "".join(c if c == "\n" or 32 <= ord(c) < 127 else " " for c in text)


def encode(text: str, vocab: str, what: str = "text") -> np.ndarray:
    """``text`` as token ids of ``vocab``; a character outside it is refused, named."""
    index = {c: i for i, c in enumerate(vocab)}
    bad = next((c for c in text if c not in index), None)
    if bad is not None:
        raise NetworkError(f"{what} has the character {bad!r}, which the model's vocabulary "
                           f"of {len(vocab)} characters does not hold (printable ASCII and "
                           f"the newline)")
    return np.array([index[c] for c in text], np.int64)


def decode(ids, vocab: str) -> str:
    return "".join(vocab[int(i)] for i in ids)


def load(path: Path = WEIGHTS) -> tuple[dict[str, np.ndarray], str, str]:
    """``(params, vocab, held)`` of the shipped model (or of the ONNX file ``path``), read
    with the GPT importer (:func:`~.onnx_gpt.import_onnx_gpt`)."""
    from .onnx_gpt import import_onnx_gpt

    if path == WEIGHTS and not path.is_file():
        raise NetworkError(f"the tinygpt model {str(path)!r} is missing: make it with "
                           f"'python -m wafertile.network.tinygpt' (needs wafertile[gpt])")
    params, meta = import_onnx_gpt(path)
    return params, meta.get(VOCAB_KEY, ""), meta.get(HELD_KEY, "")


def save(path: Path, params: dict[str, np.ndarray], vocab: str, held: str) -> None:
    """Write the model as an ONNX file (:func:`~.gpt.gpt_onnx`, the context's length), its
    vocabulary and held text in the metadata."""
    import onnx

    from .gpt import gpt_onnx

    onnx.save(gpt_onnx(params, GPTShape.of(params).context, name="tinygpt",
                       metadata={VOCAB_KEY: vocab, HELD_KEY: held}), str(path))


def _forward(p, ids, shape: GPTShape):
    """Logits ``B x T x V`` of windows ``ids`` (autograd's numpy)."""
    import autograd.numpy as anp

    B, T = ids.shape
    D, H, Dh = shape.width, shape.heads, shape.width // shape.heads

    def ln(x, key):
        mu = anp.mean(x, axis=-1, keepdims=True)
        var = anp.mean((x - mu) ** 2, axis=-1, keepdims=True)
        return (x - mu) / anp.sqrt(var + EPS) * p[f"{key}.g"] + p[f"{key}.b"]

    mask = np.triu(np.ones((T, T), bool), 1)
    x = p["wte"][ids] + p["wpe"][:T]
    for b in range(shape.blocks):
        h = f"h{b}"
        qkv = anp.matmul(ln(x, f"{h}.ln1"), p[f"{h}.qkv.w"].T) + p[f"{h}.qkv.b"]
        q, k, v = (anp.transpose(anp.reshape(qkv[:, :, n * D:(n + 1) * D], (B, T, H, Dh)),
                                 (0, 2, 1, 3)) for n in range(3))
        s = anp.matmul(q, anp.transpose(k, (0, 1, 3, 2))) / math.sqrt(Dh)
        s = anp.where(mask, -1e9, s)
        e = anp.exp(s - anp.max(s, axis=-1, keepdims=True))
        a = anp.matmul(e / anp.sum(e, axis=-1, keepdims=True), v)
        a = anp.reshape(anp.transpose(a, (0, 2, 1, 3)), (B, T, D))
        x = x + anp.matmul(a, p[f"{h}.proj.w"].T) + p[f"{h}.proj.b"]
        f = anp.matmul(ln(x, f"{h}.ln2"), p[f"{h}.fc.w"].T) + p[f"{h}.fc.b"]
        g = 0.5 * f * (1 + anp.tanh(math.sqrt(2 / math.pi) * (f + 0.044715 * f ** 3)))
        x = x + anp.matmul(g, p[f"{h}.fc2.w"].T) + p[f"{h}.fc2.b"]
    return anp.matmul(ln(x, "ln_f"), p["wte"].T)


def _loss(p, ids, shape):
    import autograd.numpy as anp

    logits = _forward(p, ids[:, :-1], shape)
    z = logits - anp.max(logits, axis=-1, keepdims=True)
    logp = z - anp.log(anp.sum(anp.exp(z), axis=-1, keepdims=True))
    target = ids[:, 1:]
    B, T = target.shape
    picked = logp[np.arange(B)[:, None], np.arange(T)[None, :], target]
    return -anp.mean(picked)


def init_params(shape: GPTShape, rng) -> dict[str, np.ndarray]:
    """GPT-2's initial parameters (float64): weights normal with standard deviation 0.02
    (the residual branches' last projections 0.02 / sqrt(2 blocks)), biases zero, LayerNorm
    scales one."""
    D, F = shape.width, shape.hidden
    std = 0.02
    p = {"wte": rng.normal(0, std, (shape.vocab, D)), "wpe": rng.normal(0, std,
                                                                      (shape.context, D))}
    for b in range(shape.blocks):
        h = f"h{b}"
        proj = std / math.sqrt(2 * shape.blocks)
        p.update({f"{h}.ln1.g": np.ones(D), f"{h}.ln1.b": np.zeros(D),
                  f"{h}.qkv.w": rng.normal(0, std, (3 * D, D)), f"{h}.qkv.b": np.zeros(3 * D),
                  f"{h}.proj.w": rng.normal(0, proj, (D, D)), f"{h}.proj.b": np.zeros(D),
                  f"{h}.ln2.g": np.ones(D), f"{h}.ln2.b": np.zeros(D),
                  f"{h}.fc.w": rng.normal(0, std, (F, D)), f"{h}.fc.b": np.zeros(F),
                  f"{h}.fc2.w": rng.normal(0, proj, (D, F)), f"{h}.fc2.b": np.zeros(D)})
    p.update({"ln_f.g": np.ones(D), "ln_f.b": np.zeros(D)})
    return p


def train(steps: int = STEPS, *, seed: int = SEED, batch: int = 32,
          log_every: int = 250) -> tuple[dict[str, np.ndarray], str, str, dict[str, float]]:
    """``(params, vocab, held, losses)``: the model of :data:`SHAPE` trained on the corpus
    (see the module text); ``losses``: the mean cross-entropy of the training windows' last
    steps and of the held text (nats per character)."""
    try:
        from autograd import grad
    except ImportError:  # pragma: no cover - the extra is in the test set
        raise NetworkError("training tinygpt needs autograd: pip install 'wafertile[gpt]'") \
            from None
    text = corpus()
    vocab = "".join(sorted(set(text)))
    ids = encode(text, vocab)
    cut = len(ids) - len(ids) // 10
    train_ids, held_ids = ids[:cut], ids[cut:]
    shape = GPTShape(len(vocab), SHAPE.context, SHAPE.width, SHAPE.heads, SHAPE.blocks,
                     SHAPE.hidden)
    rng = np.random.default_rng(seed)
    p = init_params(shape, rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    g = grad(_loss)
    T = shape.context + 1
    recent, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        at = rng.integers(0, len(train_ids) - T, batch)
        window = train_ids[at[:, None] + np.arange(T)]
        grads = g(p, window, shape)
        lr = 3e-3 if step <= 2 * steps // 3 else 1e-3
        for k in p:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v2[k] = 0.999 * v2[k] + 0.001 * grads[k] ** 2
            mh, vh = m[k] / (1 - 0.9 ** step), v2[k] / (1 - 0.999 ** step)
            p[k] = p[k] - lr * mh / (np.sqrt(vh) + 1e-8)
        if step % log_every == 0 or step == steps:
            recent.append(float(_loss(p, window, shape)))
            _log.info(f"step {step}/{steps}: loss {recent[-1]:.3f} "
                      f"({time.perf_counter() - start:.0f} s)")
    windows = held_ids[:len(held_ids) // T * T].reshape(-1, T)[:64]
    losses = {"train": float(np.mean(recent[-4:])), "held": float(_loss(p, windows, shape))}
    params = {k: v.astype(np.float32) for k, v in p.items()}
    params["heads"] = np.array(shape.heads)
    return params, vocab, decode(held_ids[:HELD], vocab), losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wafertile.network.tinygpt",
                                     description="Train the shipped tinygpt and write its "
                                                 "weights (needs wafertile[gpt]).")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params, vocab, held, losses = train(args.steps)
    save(args.out, params, vocab, held)
    print(f"wrote {args.out}: vocabulary {len(vocab)}, training loss {losses['train']:.3f}, "
          f"held loss {losses['held']:.3f} nats per character")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
