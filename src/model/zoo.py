"""The model zoo: GPT shapes by name, and any GPT given by its shape in a TOML file (issue 20:
the workloads of the wafer-scale prediction; ``docs/zoo.md``).

A shape is what the prediction needs of a model: its layers, widths, heads, context and
vocabulary, and the few choices that change its parameter count (learned or rotary
positions, tied or separate output embeddings, biases, one or two LayerNorms per block).
:meth:`GptShape.parameters` counts the parameters part by part; for every model of
:data:`ZOO` the count is checked against the published one (``tests/test_zoo.py``).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import read_text

__all__ = ["ZOO", "GptShape", "ZooError", "load_shape", "shape"]


class ZooError(InputError):
    """A GPT shape that is unknown or wrong (one line, exit status 2)."""


@dataclass(frozen=True)
class GptShape:
    """A decoder-only transformer's shape.

    Attributes
    ----------
    name : str
    layers, d_model, heads, d_ff, context, vocab : int
        Blocks; the model width; attention heads (``d_model / heads`` each); the MLP's hidden
        width; the longest sequence; the embedding rows (a padded vocabulary counts padded).
    positions : str
        ``"learned"`` (a ``context x d_model`` table, GPT-2/3) or ``"rotary"`` (no
        parameters: GPT-J, GPT-NeoX).
    tied : bool
        The output projection is the token embedding (no parameters of its own).
    attention_bias, output_bias : bool
        Biases on the four attention projections; on the output projection (GPT-J).
    norms : int
        LayerNorms per block (2; GPT-J's parallel block has 1), each a scale and a shift.
    published : int
        The parameter count its source gives (0: none).
    tolerance : float
        How far :meth:`parameters` may be from ``published``, relative: half a unit of the
        source's last digit ("13B": 0.5B), or a difference ``docs/zoo.md`` explains.
    source : str
        Where the shape is from (``docs/zoo.md`` cites each).
    """

    name: str
    layers: int
    d_model: int
    heads: int
    d_ff: int
    context: int
    vocab: int
    positions: str = "learned"
    tied: bool = True
    attention_bias: bool = True
    output_bias: bool = False
    norms: int = 2
    published: int = 0
    tolerance: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("layers", "d_model", "heads", "d_ff", "context", "vocab"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ZooError(f"GPT shape {self.name!r}: {name} must be an integer >= 1, "
                               f"not {value!r}")
        if self.d_model % self.heads:
            raise ZooError(f"GPT shape {self.name!r}: d_model = {self.d_model} is not a "
                           f"multiple of heads = {self.heads}")
        if self.positions not in ("learned", "rotary"):
            raise ZooError(f"GPT shape {self.name!r}: positions must be 'learned' or "
                           f"'rotary', not {self.positions!r}")
        if type(self.norms) is not int or self.norms not in (1, 2):
            raise ZooError(f"GPT shape {self.name!r}: norms must be 1 or 2, not "
                           f"{self.norms!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.heads

    def parameters(self) -> dict[str, int]:
        """The parameters part by part (``"total"`` their sum): ``embedding``, ``positions``,
        per block ``attention`` (Q, K, V and output projections), ``mlp`` (two layers with
        biases) and ``norms``, times ``layers`` in ``blocks``; ``final_norm``; ``output``."""
        d, f = self.d_model, self.d_ff
        attention = 4 * d * d + (4 * d if self.attention_bias else 0)
        mlp = 2 * d * f + f + d
        norms = self.norms * 2 * d
        out = {"embedding": self.vocab * d,
               "positions": self.context * d if self.positions == "learned" else 0,
               "attention": attention, "mlp": mlp, "norms": norms,
               "blocks": self.layers * (attention + mlp + norms),
               "final_norm": 2 * d,
               "output": 0 if self.tied else self.vocab * d + (self.vocab
                                                               if self.output_bias else 0)}
        out["total"] = (out["embedding"] + out["positions"] + out["blocks"] + out["final_norm"]
                        + out["output"])
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The models of the wafer's claim by name (``docs/zoo.md`` cites each source).
ZOO: dict[str, GptShape] = {s.name: s for s in (
    GptShape("gpt3-xl", layers=24, d_model=2048, heads=16, d_ff=8192, context=2048,
             vocab=50257, published=1_316_000_000, tolerance=0.5e6 / 1.316e9,
             source="Brown et al. 2020, GPT-3 XL (Table 2.1); 16 heads of 128 and 1,316M "
                    "parameters as Cerebras-GPT 1.3B (Dey et al. 2023), which trained it"),
    GptShape("gpt-j-6b", layers=28, d_model=4096, heads=16, d_ff=16384, context=2048,
             vocab=50400, positions="rotary", tied=False, attention_bias=False,
             output_bias=True, norms=1, published=6_053_381_344, tolerance=0.001,
             source="Wang and Komatsuzaki 2021, GPT-J-6B (mesh-transformer-jax)"),
    GptShape("gpt3-13b", layers=40, d_model=5120, heads=40, d_ff=20480, context=2048,
             vocab=50257, published=13_000_000_000, tolerance=0.5e9 / 13e9,
             source="Brown et al. 2020, GPT-3 13B (Table 2.1); d_model 5120 (40 heads of "
                    "128) as Cerebras-GPT 13B (Dey et al. 2023)"),
    GptShape("gpt-neox-20b", layers=44, d_model=6144, heads=64, d_ff=24576, context=2048,
             vocab=50432, positions="rotary", tied=False, published=20_554_567_680,
             source="Black et al. 2022, GPT-NeoX-20B"),
)}

_KEYS = {f.name for f in fields(GptShape)}


def shape(name: str) -> GptShape:
    """The zoo's shape of ``name``, or a :class:`ZooError` naming the known ones."""
    if name not in ZOO:
        raise ZooError(f"no GPT named {name!r} in the model zoo (known: {', '.join(ZOO)}; or "
                       f"a TOML file of its shape)")
    return ZOO[name]


def load_shape(path: str | Path) -> GptShape:
    """A GPT's shape from a flat TOML file: ``layers``, ``d_model``, ``heads``, ``context``,
    ``vocab`` (required), ``d_ff`` (default ``4 x d_model``), ``name`` (default the file's
    stem) and the choices of :class:`GptShape`. Raises :class:`ZooError` (one line) for a
    file that cannot be read, is not TOML, misses a key, has an unknown one or a bad value."""
    path = Path(path)
    label = f"GPT shape file {str(path)!r}"
    try:
        values = tomllib.loads(read_text(path, label))
    except InputError as exc:
        raise ZooError(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise ZooError(f"{label} is not valid TOML: {exc}") from None
    unknown = sorted(set(values) - _KEYS)
    if unknown:
        raise ZooError(f"{label}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(_KEYS))})")
    missing = [k for k in ("layers", "d_model", "heads", "context", "vocab") if k not in values]
    if missing:
        raise ZooError(f"{label}: missing key {missing[0]!r}")
    values.setdefault("name", path.stem)
    for key in ("layers", "d_model", "heads", "d_ff", "context", "vocab"):
        value = values.get(key, 1)
        if type(value) is not int or value < 1:
            raise ZooError(f"{label}: {key} must be an integer >= 1, not {value!r}")
    values.setdefault("d_ff", 4 * values["d_model"])
    for key in ("tied", "attention_bias", "output_bias"):
        if key in values and not isinstance(values[key], bool):
            raise ZooError(f"{label}: {key} must be true or false, not {values[key]!r}")
    for key in ("name", "positions", "source"):
        if key in values and not isinstance(values[key], str):
            raise ZooError(f"{label}: {key} must be a string, not {values[key]!r}")
    return GptShape(**values)
