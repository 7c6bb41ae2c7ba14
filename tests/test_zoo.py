"""The model zoo (``wafertile.model.zoo``, ``docs/zoo.md``): every model's parameter count
against its source's, the count part by part against an independent sum over the tensors of
a block, shapes from TOML files, and their bad keys and values refused in one line."""

from __future__ import annotations

import pytest

from wafertile.errors import InputError
from wafertile.model.zoo import ZOO, GptShape, ZooError, load_shape, shape


@pytest.mark.parametrize("name", list(ZOO))
def test_the_parameter_count_is_the_sources(name):
    s = ZOO[name]
    total = s.parameters()["total"]
    assert abs(total - s.published) <= s.tolerance * s.published, (name, total, s.published)


def _tensors(s: GptShape) -> list[tuple[int, ...]]:
    """Every tensor of the model as its shape, listed the way a checkpoint lists them."""
    d, f, v = s.d_model, s.d_ff, s.vocab
    out: list[tuple[int, ...]] = [(v, d)]
    if s.positions == "learned":
        out.append((s.context, d))
    for _ in range(s.layers):
        for _ in range(s.norms):
            out += [(d,), (d,)]
        for _ in ("q", "k", "v", "o"):
            out.append((d, d))
            if s.attention_bias:
                out.append((d,))
        out += [(d, f), (f,), (f, d), (d,)]
    out += [(d,), (d,)]
    if not s.tied:
        out.append((d, v))
        if s.output_bias:
            out.append((v,))
    return out


@pytest.mark.parametrize("name", list(ZOO))
def test_the_count_part_by_part_is_the_sum_over_the_tensors(name):
    s = ZOO[name]
    count = 0
    for t in _tensors(s):
        n = 1
        for k in t:
            n *= k
        count += n
    assert s.parameters()["total"] == count
    assert s.d_head * s.heads == s.d_model


def test_a_shape_from_toml(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text('layers = 2\nd_model = 64\nheads = 4\ncontext = 32\nvocab = 96\n'
                    'positions = "rotary"\ntied = false\n')
    s = load_shape(path)
    assert (s.name, s.d_ff, s.d_head, s.positions, s.tied) == ("tiny", 256, 16, "rotary", False)
    assert s.parameters()["total"] == 2 * (4 * 64 * 64 + 4 * 64 + 2 * 64 * 256 + 256 + 64
                                           + 2 * 2 * 64) + 96 * 64 + 2 * 64 + 96 * 64
    assert shape("gpt-neox-20b") is ZOO["gpt-neox-20b"]


@pytest.mark.parametrize(("text", "message"), [
    ("layers = 2\nd_model = 64\nheads = 4\ncontext = 32\n", "missing key 'vocab'"),
    ("layers = 2\nd_model = 64\nheads = 5\ncontext = 32\nvocab = 9\n",
     "d_model = 64 is not a multiple of heads = 5"),
    ("layers = 0\nd_model = 64\nheads = 4\ncontext = 32\nvocab = 9\n",
     "layers must be an integer >= 1, not 0"),
    ("layers = 2\nd_model = 64.0\nheads = 4\ncontext = 32\nvocab = 9\n",
     "d_model must be an integer >= 1, not 64.0"),
    ("layers = 2\nd_model = 64\nheads = 4\ncontext = 32\nvocab = 9\nlayer = 3\n",
     "unknown key 'layer'"),
    ("layers = 2\nd_model = 64\nheads = 4\ncontext = 32\nvocab = 9\npositions = 'alibi'\n",
     "positions must be 'learned' or 'rotary', not 'alibi'"),
    ("layers = 2\nd_model = 64\nheads = 4\ncontext = 32\nvocab = 9\ntied = 1\n",
     "tied must be true or false, not 1"),
    ("layers = [", "is not valid TOML"),
])
def test_bad_shape_files_are_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ZooError, match=message) as info:
        load_shape(path)
    assert isinstance(info.value, InputError) and "\n" not in str(info.value)
    with pytest.raises(ZooError, match="no GPT named 'gpt-5'"):
        shape("gpt-5")
    with pytest.raises(ZooError, match=r"does not exist|cannot be read|no such"):
        load_shape(tmp_path / "missing.toml")
