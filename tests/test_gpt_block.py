"""A pre-LayerNorm GPT block as a float network (docs/network.md, "Residual connections, and
a GPT block"): one-hot token and position embedding, LayerNorm, the attention's projection
(``attn``), its output projection with the residual (``res``), LayerNorm, the GELU MLP, the
second residual, LayerNorm and the output projection to logits.

The reference (``network_reference``) is checked against the documents' arithmetic written
out number by number; the compiled block against the reference on the functional array model
and on the RTL; the refusals of a residual that cannot run, one line each."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from .conftest import seed_for
from .test_attention import _mac, documented_attention
from .test_float import documented, numbers, same, to_format
from .test_layernorm import documented_layernorm
from .test_nonlinear import doc_gelu

#: the block's sizes: vocabulary, positions, model width, heads
V, T, D, H = 5, 3, 4, 2


def _ln(rng, n):
    return {"ln_gamma": rng.normal(1.0, 0.2, n).astype(np.float32),
            "ln_beta": rng.normal(0.0, 0.2, n).astype(np.float32)}


def gpt_block(rng, dtype, *, vocab=V, positions=T, width=D, heads=H):
    """The block's network: layer 0 the embedding (one-hot tokens, then positions), 1 the
    projection with ``attn1``, 2 the output projection with ``res2 = 0``, 3 the MLP up (GELU),
    4 the MLP down with ``res4 = 2``, 5 the output projection; LayerNorm on 0, 2 and 4."""
    from wafertile.network import Layer, Network

    def w(i, j, zeros=0.2):
        return numbers(rng, (i, j), dtype, zeros=zeros, spread=1)

    def b(i):
        return rng.normal(0.0, 0.2, i).astype(np.float32)

    layers = [Layer(w(width, vocab + positions, 0.0), np.zeros(width, np.float32),
                    **_ln(rng, width)),
              Layer(w(3 * width, width), b(3 * width), attn=heads),
              Layer(w(width, width), b(width), res=0, **_ln(rng, width)),
              Layer(w(2 * width, width), b(2 * width), gelu=True),
              Layer(w(width, 2 * width), b(width), res=2, **_ln(rng, width)),
              Layer(w(vocab, width), b(vocab))]
    return Network(layers, 16, dtype=dtype, name="gpt-block")


def tokens(rng, n=T, vocab=V, positions=T):
    """One sequence of ``n`` random tokens as the embedding's one-hot inputs."""
    x = np.zeros((n, vocab + positions), np.float32)
    x[np.arange(n), rng.integers(0, vocab, n)] = 1.0
    x[np.arange(n), vocab + np.arange(n)] = 1.0
    return x


def documented_block(cfg, net, x, dtype):
    """The network from the documents, number by number: each layer's MACs from its bias
    (test_float's), the residual as one more MAC of weight 1 on the kept outputs (rounded
    before the LayerNorm), LayerNorm (test_layernorm's, over the tiles' parts), the attention
    (test_attention's), GELU (test_nonlinear's), the rounding to the format between layers."""
    from wafertile.stream import plan_layer

    a, kept = np.asarray(x, np.float32), None
    keeps = {layer.res for layer in net.layers if layer.res is not None}
    for n, layer in enumerate(net.layers):
        acc = documented(a, layer.weights, cfg.act_depth, layer.bias)
        if layer.res is not None:
            acc = np.array([[_mac(acc[b, i], np.float32(1.0), kept[b, i])
                             for i in range(acc.shape[1])] for b in range(len(acc))],
                           np.float32)
        if n in keeps:
            kept = to_format(acc, dtype)
        if layer.layernorm:
            parts = plan_layer(cfg, layer.weights, streams=False).parts(0)
            acc = np.array([documented_layernorm(row, parts, dtype, layer.ln_gamma,
                                                 layer.ln_beta, np.float32(layer.ln_eps))
                            for row in acc], np.float32)
        if n == len(net.layers) - 1:
            return acc
        if layer.attn:
            width = layer.outputs // 3
            acc, _ = documented_attention(acc[:, :width], acc[:, width:2 * width],
                                          acc[:, 2 * width:], layer.attn, dtype)
        if layer.gelu:
            acc = np.vectorize(doc_gelu, otypes=[np.float32])(acc)
        a = to_format(acc, dtype)
    raise AssertionError("no layers")


def _config(dtype="bf16", **kw):
    from wafertile import Config

    return Config(**{"rows": 3, "cols": 2, "dtype": dtype, "act_depth": 32, "acc_depth": 32,
                     "nonlinear": True, **kw})


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_block_reference_follows_the_document(request, dtype):
    """``network_reference`` of the block equals the documents' arithmetic bit for bit, and
    the residuals matter (without them the logits differ)."""
    from wafertile.sim.models.network import network_reference

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = _config(dtype)
    net = gpt_block(rng, dtype)
    x = tokens(rng)
    want, _ = network_reference(cfg, net, x)
    assert same(want, documented_block(cfg, net, x, dtype)).all(), f"seed {seed}"
    plain = replace(net, layers=[replace(layer, res=None) for layer in net.layers])
    assert not same(network_reference(cfg, plain, x)[0], want).all(), f"seed {seed}"


def test_block_on_the_array_model_and_in_its_file(request, tmp_path):
    """The block through its .npz file (the file keeps ``res``) compiles to phases whose run
    on the functional array model (two interleavings) equals the reference; a program
    without its residual MACs does not (the check can fail)."""
    from wafertile.network import load_network, save_network
    from wafertile.network.compiler import compile_network
    from wafertile.sim.models.array import ArrayModel
    from wafertile.sim.models.network import network_reference

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = _config()
    save_network(gpt_block(rng, "bf16"), tmp_path / "block.npz")
    net = load_network(tmp_path / "block.npz")
    assert [layer.res for layer in net.layers] == [None, None, 0, None, 2, None]
    x = tokens(rng)
    want, _ = network_reference(cfg, net, x)
    program = compile_network(cfg, net, x)
    steps = program.phase_step
    assert [program.phase_layer[k] for k, s in enumerate(steps) if s == "residual"
            and program.phases[k].kind == "stream"] == [2, 4]
    for s in (seed, seed + 1):
        got = ArrayModel(cfg).run(program, seed=s) & 0xFFFFFFFF
        assert same(got.astype(np.uint32).view(np.float32), want).all(), \
            f"seed {seed}, interleaving {s}"
    cut = replace(program, phases=[p for k, p in enumerate(program.phases)
                                   if not (steps[k] == "residual" and p.kind == "stream")])
    got = ArrayModel(cfg).run(cut, seed=seed) & 0xFFFFFFFF
    assert not same(got.astype(np.uint32).view(np.float32), want).all(), f"seed {seed}"


def test_sequences_side_by_side(request, tmp_path):
    """A batch of two sequences (``seq = 3``, kept by the .npz file): each attends to its own
    positions only. The reference equals the documents' arithmetic on each sequence alone;
    the compiled block equals the reference on the array model with both sequences in one
    batch group (6 rows) and in one group each (3 rows); the same inputs taken as one
    sequence of 6 give other outputs (the check can fail)."""
    from wafertile.network import load_network, save_network
    from wafertile.network.compiler import compile_network
    from wafertile.sim.models.array import ArrayModel
    from wafertile.sim.models.network import network_reference

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    save_network(replace(gpt_block(rng, "bf16"), seq=T), tmp_path / "block.npz")
    net = load_network(tmp_path / "block.npz")
    assert net.seq == T
    x = np.concatenate([tokens(rng), tokens(rng)])
    for rows in (2 * T, T):
        cfg = _config(rows=rows)
        want, _ = network_reference(cfg, net, x)
        alone = np.concatenate([documented_block(cfg, net, x[s * T:(s + 1) * T], "bf16")
                                for s in range(2)])
        assert same(want, alone).all(), f"seed {seed}, {rows} rows"
        got = ArrayModel(cfg).run(compile_network(cfg, net, x), seed=seed) & 0xFFFFFFFF
        assert same(got.astype(np.uint32).view(np.float32), want).all(), \
            f"seed {seed}, {rows} rows"
    cfg = _config(rows=2 * T)
    one = ArrayModel(cfg).run(compile_network(cfg, replace(net, seq=None), x), seed=seed)
    assert not same((one & 0xFFFFFFFF).astype(np.uint32).view(np.float32), want).all(), \
        f"seed {seed}"


@pytest.mark.parametrize(("seq", "rows", "batch", "message"), [
    (2, 6, 3 * T, "the 9 inputs are not whole sequences of seq = 2 positions"),
    (T, 2, T, "the attention after layer 1 runs sequences of seq = 3 positions, one per row, "
              "and the array has 2 rows"),
    (T, 4, 2 * T, "the attention after layer 1: a batch group of rows = 4 inputs must hold "
                  "whole sequences of seq = 3 positions (2 sequences, 6 inputs): use a "
                  "multiple of 3 rows, or at most 3 inputs"),
    (None, 4, 2 * T, "takes the batch as one sequence, one position per row: 6 inputs and "
                     "4 rows (several sequences: set seq)"),
    (0, T, T, "seq must be an integer >= 1 (positions per sequence), not 0"),
])
def test_bad_sequences_are_refused(seq, rows, batch, message):
    """One line each: a batch that is not whole sequences, a sequence longer than the rows,
    a batch group that would split a sequence, several groups without ``seq``, a bad
    ``seq``."""
    from wafertile.network import NetworkError
    from wafertile.network.compiler import check_network

    rng = np.random.default_rng(0)
    net = replace(gpt_block(rng, "bf16"), seq=seq)
    x = np.concatenate([tokens(rng)] * 3)[:batch]
    with pytest.raises(NetworkError, match=re.escape(message)):
        check_network(_config(rows=rows), net, x)


def test_seq_without_attention_is_refused(tmp_path):
    """``seq`` in a file of a network without attention: one line naming the file."""
    from wafertile.network import Layer, Network, NetworkError, load_network, save_network

    net = Network([Layer(np.ones((2, 3), np.float32), np.zeros(2, np.float32))], 16,
                  dtype="bf16")
    save_network(net, tmp_path / "plain.npz")
    data = dict(np.load(tmp_path / "plain.npz"))
    np.savez(tmp_path / "seq.npz", **data, seq=4)
    with pytest.raises(NetworkError, match=re.escape(
            "network file '" + str(tmp_path / "seq.npz") + "': seq = 4 has no meaning "
            "without attention (attn{l})")):
        load_network(tmp_path / "seq.npz")


@pytest.mark.parametrize(("sim", "dtype"), [
    ("icarus", "bf16"), pytest.param("verilator", "fp16", marks=pytest.mark.slow)])
def test_block_on_the_rtl(request, tmp_path, sim, dtype):
    """`run_network` of the block: every logit bit equals the reference's; the report keeps
    the residuals', LayerNorms' and attention's cycles apart, and the performance model's
    event level predicts each of them and the total exactly."""
    from wafertile.network.run import run_network
    from wafertile.sim.models.network import network_reference

    from .test_float import _sim

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = _config(dtype)
    net = gpt_block(rng, dtype)
    x = tokens(rng)
    report, y = run_network(cfg, net, x, sim=sim if sim == "verilator" else _sim("3x2"),
                            dense=False, build_root=tmp_path)
    want, _ = network_reference(cfg, net, x)
    assert report.passed and same(np.asarray(y, np.float32), want).all(), f"seed {seed}"
    per = report.per_layer
    assert [n for n, layer in enumerate(per) if layer["residual_cycles"]] == [0, 2, 4]
    assert [n for n, layer in enumerate(per) if layer["layernorm_cycles"]] == [0, 2, 4]
    assert [n for n, layer in enumerate(per) if layer["attention_cycles"]] == [1]
    # the performance model's event level: every step of every layer, and the total
    from wafertile.model.layer import predict_network
    from wafertile.network.compiler import compile_network

    program = compile_network(cfg, net, x)
    predicted = predict_network(cfg, net, x, dense=False, detail="mesh").sparse.phase_cycles
    assert sum(predicted) == report.cycles, f"seed {seed}"
    for step in ("attention", "layernorm", "residual"):
        for n, layer in enumerate(per):
            assert layer[f"{step}_cycles"] == sum(
                c for k, c in enumerate(predicted) if program.phase_layer[k] == n
                and program.phase_step[k] == step), f"seed {seed}: layer {n} {step}"


@pytest.mark.parametrize(("change", "message"), [
    ({2: {"res": 2}}, "res2 = 2: the residual comes from an earlier layer, 0 .. 1"),
    ({2: {"res": -1}}, "res2 = -1: the residual comes from an earlier layer, 0 .. 1"),
    ({4: {"res": 3}}, "res4 = 3: layer 4 has 4 outputs and layer 3 8; a residual adds them "
                      "one to one"),
    ({2: {"res": 1}}, "res2 = 1: layer 1 is an attention projection (attn1)"),
    ({4: {"res": 0}}, "res4 = 0 and res2 = 0 overlap: layer 0's outputs would be kept while "
                      "layer 0's are"),
    ({2: {"res": None}, 4: {"res": 0}, 5: {}}, None),
])
def test_bad_residuals_are_refused(change, message):
    """One line naming the key: a residual from itself or a later layer, of another width,
    from an attention projection, two kept at once; a residual across a block is fine."""
    from wafertile.network import NetworkError

    net = gpt_block(np.random.default_rng(0), "bf16")
    for n, fields in change.items():
        net.layers[n] = replace(net.layers[n], **fields)
    if message is None:
        net.check()
        assert net.keeps == {0: 4}
        return
    with pytest.raises(NetworkError, match=re.escape(message)):
        net.check()


def test_residual_refusals_before_anything_is_built(tmp_path):
    """An integer network (in Python, and ``res`` in its file is an unknown key), kept
    outputs that do not fit the activation bank, a layer in two passes, training: one line
    each."""
    from wafertile.network import Layer, Network, NetworkError, load_network
    from wafertile.network.compiler import compile_network
    from wafertile.train.export import TrainError, from_network
    from wafertile.trainer.compiler import check_residuals

    rng = np.random.default_rng(2)
    w = np.ones((2, 2), np.int64)
    ints = Network([Layer(w, np.zeros(2, np.int64), np.ones(2, np.int64),
                          np.zeros(2, np.int64)), Layer(w, np.zeros(2, np.int64), res=0)], 8)
    with pytest.raises(NetworkError, match=re.escape(
            "res1 needs a float dtype ('fp16' or 'bf16': an integer layer's outputs and "
            "accumulators have different scales), not 'int8'")):
        ints.check()
    np.savez(tmp_path / "int.npz", format="wafertile-network/1", data_width=8, layers=2,
             w0=w, mult0=1, shift0=0, relu0=0, w1=w, res1=0)
    with pytest.raises(NetworkError, match=re.escape("unknown key 'res1'")):
        load_network(tmp_path / "int.npz")
    # 12 tokens and 3 positions: layer 0's 15 inputs at activations 0 .. 14, the 2 kept
    # outputs per tile above them: 17 > 16
    wide = gpt_block(rng, "bf16", vocab=12)
    x = tokens(rng, vocab=12)
    compile_network(_config(act_depth=32), wide, x)
    with pytest.raises(NetworkError, match=re.escape(
            "the residual's kept outputs need 2 activations per tile above layer 0's inputs "
            "(15): 15 + 2 > act_depth = 16 (raise act_depth or use more columns)")):
        compile_network(_config(act_depth=16), wide, x)
    # 40 outputs on 2 columns of 16 accumulators: two passes
    chain = Network([Layer(numbers(rng, (40, 8), "bf16"), np.zeros(40, np.float32)),
                     Layer(numbers(rng, (40, 40), "bf16"), np.zeros(40, np.float32), res=0)],
                    16, dtype="bf16")
    with pytest.raises(NetworkError, match=re.escape(
            "res1 = 0: layer 0's 40 outputs need 2 passes over 2 columns of acc_depth = 16 "
            "accumulators; a residual needs its layers in one pass")):
        compile_network(_config(acc_depth=16), chain, tokens(rng))
    # training takes a residual of a LayerNorm layer's accumulators only (docs/training.md,
    # "Residual connections"): this chain's layer 0 has none, and no activation either
    with pytest.raises(TrainError, match=re.escape("layer 0 has neither ReLU, GELU nor a "
                                                   "LayerNorm")):
        from_network(chain)
    with pytest.raises(TrainError, match=re.escape(
            "layer 1 adds layer 0's outputs (res1 = 0), which have no LayerNorm")):
        check_residuals([layer.weights for layer in chain.layers], None, (None, 0))


def test_residual_network_model_is_exact_on_the_rtl(request, tmp_path):
    """The block without its attention (embedding and LayerNorm, a residual layer with
    LayerNorm, the GELU MLP with its residual, the output projection), bf16 on Icarus: every
    output bit equals the reference's, and the event level of the performance model predicts
    every phase's cycles exactly, the residuals' hand-offs and MACs included."""
    from wafertile.model.layer import predict_network
    from wafertile.network.compiler import compile_network
    from wafertile.run import simulate
    from wafertile.sim.models.network import network_reference

    from .test_float import _sim

    seed = seed_for(request)
    rng = np.random.default_rng(seed)
    cfg = _config()
    block = gpt_block(rng, "bf16")
    net = replace(block, layers=[block.layers[0], replace(block.layers[2], res=0),
                                 block.layers[3], replace(block.layers[4], res=1),
                                 block.layers[5]])
    # the layer after the embedding takes its D outputs (not the attention's)
    net.layers[1] = replace(net.layers[1], weights=numbers(rng, (D, D), "bf16", zeros=0.3,
                                                           spread=1))
    x = tokens(rng)
    program = compile_network(cfg, net, x)
    assert "residual" in program.phase_step
    run = simulate(cfg, [program], sim=_sim("3x2"), build_root=tmp_path)
    (y, stats), = run.results
    want, _ = network_reference(cfg, net, x)
    got = np.asarray(y, np.int64).astype(np.uint32).view(np.float32)
    assert run.error_flags == 0 and same(got, want).all(), f"seed {seed}"
    predicted = predict_network(cfg, net, x, dense=False, detail="mesh").sparse.phase_cycles
    assert predicted == [int(c) for c in stats["phase_cycles"]], f"seed {seed}"
