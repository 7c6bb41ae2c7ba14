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
    assert (fields["op"]["offset"], fields["op"]["width"]) == (0, 3)
    assert (fields["addr"]["offset"], fields["addr"]["width"]) == (3, 8)
    assert (fields["addr_b"]["offset"], fields["addr_b"]["width"]) == (11, 8)
    assert (fields["data"]["offset"], fields["data"]["width"]) == (19, 24)
    assert fields["data"]["signed"] and not fields["addr"]["signed"]
    assert fields["op"]["values"]["MAC"] == Opcode.MAC.value


def test_round_trip_random():
    rng = np.random.default_rng(5)
    for _ in range(200):
        flit = {"op": Opcode(int(rng.integers(8))), "addr": int(rng.integers(256)),
                "addr_b": int(rng.integers(256)),
                "data": int(rng.integers(CFG.acc_min, CFG.acc_max + 1))}
        assert unpack(LAYOUT, pack(LAYOUT, flit)) == flit


def test_pack_bit_positions():
    word = pack(LAYOUT, {"op": "MAC", "addr": 1, "addr_b": 2, "data": -1})
    assert word == 4 | (1 << 3) | (2 << 11) | (((1 << 24) - 1) << 19)


@pytest.mark.parametrize(("flit", "message"), [
    ({"addr": 256}, r"^flit field 'addr' must be from 0 to 255 \(8-bit unsigned\), not 256$"),
    ({"addr_b": -1}, r"^flit field 'addr_b' must be from 0 to 255 \(8-bit unsigned\), not -1$"),
    ({"data": 1 << 23}, r"^flit field 'data' must be from -8388608 to 8388607 \(24-bit signed\), "
                        r"not 8388608$"),
    ({"op": "NOP"}, r"^flit field 'op' must be one of WRITE_ACT, .*, REPLY, not 'NOP'$"),
    ({"data": 1.5}, r"^flit field 'data' must be an integer, not 1\.5$"),
    ({"adr": 1}, r"^flit has no field 'adr' \(fields: addr, addr_b, data, op\)$"),
])
def test_pack_rejects(flit, message):
    with pytest.raises(ValueError, match=message):
        pack(LAYOUT, flit)
