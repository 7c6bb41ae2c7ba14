"""The flit codec: round trips, range errors, layout description."""

from __future__ import annotations

import numpy as np
import pytest

from wafertile import Config
from wafertile.hdl.flit import Opcode, describe, pack, payload_layout, unpack

CFG = Config(data_width=8, acc_width=24, act_depth=64, acc_depth=256)
LAYOUT = payload_layout(CFG)


def test_layout_fields_and_offsets():
    fields = {f["name"]: f for f in describe(LAYOUT)}
    assert [f["name"] for f in describe(LAYOUT)] == ["op", "addr", "addr_b", "data"]
    assert (fields["op"]["offset"], fields["op"]["width"]) == (0, 4)
    assert (fields["addr"]["offset"], fields["addr"]["width"]) == (4, 8)
    assert (fields["addr_b"]["offset"], fields["addr_b"]["width"]) == (12, 8)
    assert (fields["data"]["offset"], fields["data"]["width"]) == (20, 24)
    assert fields["data"]["signed"] and not fields["addr"]["signed"]
    assert fields["op"]["values"]["MAC"] == Opcode.MAC.value


def test_round_trip_random():
    rng = np.random.default_rng(5)
    for _ in range(200):
        flit = {"op": Opcode(int(rng.choice([op.value for op in Opcode]))),
                "addr": int(rng.integers(256)),
                "addr_b": int(rng.integers(256)),
                "data": int(rng.integers(CFG.acc_min, CFG.acc_max + 1))}
        assert unpack(LAYOUT, pack(LAYOUT, flit)) == flit


def test_pack_bit_positions():
    word = pack(LAYOUT, {"op": "MAC", "addr": 1, "addr_b": 2, "data": -1})
    assert word == 4 | (1 << 4) | (2 << 12) | (((1 << 24) - 1) << 20)


@pytest.mark.parametrize(("flit", "message"), [
    ({"addr": 256}, r"^flit field 'addr' must be from 0 to 255 \(8-bit unsigned\), not 256$"),
    ({"addr_b": -1}, r"^flit field 'addr_b' must be from 0 to 255 \(8-bit unsigned\), not -1$"),
    ({"data": 1 << 23}, r"^flit field 'data' must be from -8388608 to 8388607 \(24-bit signed\), "
                        r"not 8388608$"),
    ({"op": "NOP"}, r"^flit field 'op' must be one of WRITE_ACT, .*, NONLINEAR, MUL, MAX, "
                    r"not 'NOP'$"),
    ({"data": 1.5}, r"^flit field 'data' must be an integer, not 1\.5$"),
    ({"adr": 1}, r"^flit has no field 'adr' \(fields: addr, addr_b, data, op\)$"),
])
def test_pack_rejects(flit, message):
    with pytest.raises(ValueError, match=message):
        pack(LAYOUT, flit)


@pytest.mark.parametrize("cfg", [Config(), Config(rows=8, cols=8, acc_width=64),
                                 Config(rows=1, cols=1, data_width=8, acc_width=16,
                                        act_depth=16, acc_depth=16)],
                         ids=["default", "acc64", "narrow"])
def test_pack_columns_equals_pack(request, cfg):
    """Many flits at once: the same words as pack(), and unpack_columns() inverts it."""
    from wafertile.hdl.flit import (
        flit_layout,
        leaf_names,
        pack_columns,
        unpack_columns,
        words_per_flit,
    )

    from .conftest import seed_for
    layout = flit_layout(cfg)
    rng = np.random.default_rng(seed_for(request))
    n = 500
    cols = {}
    for field in describe(layout):
        w, lo = field["width"], -(1 << (field["width"] - 1)) if field["signed"] else 0
        hi = lo + (1 << w) - 1
        cols[field["name"]] = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64) \
            if w < 64 else rng.integers(-(1 << 63), (1 << 63) - 1, n, dtype=np.int64)
    cols["header.exit"] = rng.integers(0, 5, n)
    cols["payload.op"] = rng.integers(0, 8, n)
    cols["header.x0"][:3] = [0, (1 << cfg.x_width) - 1, 1]
    words = pack_columns(layout, cols)
    assert words.shape == (n, words_per_flit(layout)) and words.dtype == np.uint32
    for k in range(n):
        nested: dict = {}
        for name in leaf_names(layout):
            part, leaf = name.split(".")
            nested.setdefault(part, {})[leaf] = int(cols[name][k])
        assert int.from_bytes(words[k].tobytes(), "little") == pack(layout, nested)
    back = unpack_columns(layout, words)
    for name in cols:
        np.testing.assert_array_equal(back[name], cols[name])


def test_pack_columns_rejects():
    from wafertile.hdl.flit import flit_layout, pack_columns
    layout = flit_layout(Config())
    with pytest.raises(ValueError, match=r"^flit field 'header\.x0' must be from 0 to 3 "
                                         r"\(2-bit unsigned\), not 4$"):
        pack_columns(layout, {"header.x0": np.array([1, 4, 9])})
    with pytest.raises(ValueError, match=r"^flit has no field 'header\.x9'"):
        pack_columns(layout, {"header.x9": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match=r"^flit field columns differ in length: \[2, 3\]$"):
        pack_columns(layout, {"header.x0": np.zeros(2, np.int64),
                              "header.x1": np.zeros(3, np.int64)})
    with pytest.raises(ValueError, match=r"^flit field 'payload\.data' must be integers, "
                                         r"not float64$"):
        pack_columns(layout, {"payload.data": np.zeros(2)})
