"""The configuration layer: one test per rejected value, exact messages, derived widths."""

from __future__ import annotations

import re

import pytest

from wafertile import Config, ConfigError, Overflow
from wafertile.config import PARAMETERS


@pytest.mark.parametrize(("name", "value", "message"), [
    ("rows", 0, "rows must be an integer from 1 to 4096, not 0"),
    ("rows", 4097, "rows must be an integer from 1 to 4096, not 4097"),
    ("cols", -3, "cols must be an integer from 1 to 4096, not -3"),
    ("dtype", "fp32", "dtype must be one of 'int8', 'int16', 'fp16', 'bf16', not 'fp32'"),
    ("dtype", "half", "dtype must be one of 'int8', 'int16', 'fp16', 'bf16', not 'half'"),
    ("data_width", 12, "data_width must be one of 8, 16, not 12"),
    ("acc_width", 65, "acc_width must be an integer from 16 to 64, not 65"),
    ("acc_width", 24, "acc_width must be at least 2 * data_width = 32 (room for one full "
                      "product), not 24"),
    ("overflow", "clamp", "overflow must be one of 'wrap', 'saturate', not 'clamp'"),
    ("act_depth", 100, "act_depth must be a power of two from 16 to 65536, not 100"),
    ("act_depth", 8, "act_depth must be a power of two from 16 to 65536, not 8"),
    ("acc_depth", 131072, "acc_depth must be a power of two from 16 to 65536, not 131072"),
    ("num_vcs", 1, "num_vcs must be an integer from 2 to 8, not 1"),
    ("buffer_depth", 3, "buffer_depth must be a power of two from 2 to 64, not 3"),
    ("buffer_depth", 128, "buffer_depth must be a power of two from 2 to 64, not 128"),
    ("router_arch", "fast",
     "router_arch must be one of 'compact', 'parallel', 'lite', 'voq', not 'fast'"),
    ("phits", 0, "phits must be an integer from 1 to 8, not 0"),
    ("phits", 9, "phits must be an integer from 1 to 8, not 9"),
    ("handoff", 1, "handoff must be true or false, not 1"),
    ("handoff", "false", "handoff must be true or false, not 'false'"),
    ("counters", 1, "counters must be true or false, not 1"),
    ("nonlinear", 0, "nonlinear must be true or false, not 0"),
    ("nonlinear", True, "nonlinear = true needs a floating-point dtype ('fp16' or 'bf16': the "
                        "nonlinear unit computes in FP32), not 'int16'"),
])
def test_rejects_bad_value(name, value, message):
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        Config(**{name: value})


@pytest.mark.parametrize(("values", "message"), [
    ({"dtype": "fp16", "data_width": 8}, "data_width must be 16 with dtype 'fp16' (the number "
     "format sets the width of weights and activations), not 8"),
    ({"dtype": "int8", "data_width": 16}, "data_width must be 8 with dtype 'int8' (the number "
     "format sets the width of weights and activations), not 16"),
    ({"dtype": "bf16", "acc_width": 48}, "acc_width must be 32 with dtype 'bf16' "
     "(floating-point formats accumulate in FP32), not 48"),
    ({"dtype": "fp16", "overflow": "saturate"}, "overflow = 'saturate' has no meaning with "
     "dtype 'fp16' (floating-point sums round to nearest and overflow to infinity): leave "
     "overflow = 'wrap', the default"),
])
def test_rejects_a_number_format_conflict(values, message):
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        Config(**values)


def test_dtype_and_data_width_follow_each_other():
    assert (Config().dtype, Config().data_width) == ("int16", 16)
    assert Config(data_width=8).dtype == "int8"
    assert Config(dtype="int8").data_width == 8
    assert Config(dtype="bf16").data_width == 16
    assert Config(dtype="int8") == Config(data_width=8) == Config(dtype="int8", data_width=8)
    fp = Config(dtype="fp16")
    assert (fp.is_float, fp.acc_format, fp.product_width) == (True, "fp32", 32)
    assert (Config().is_float, Config(data_width=8, acc_width=24).acc_format) == \
        (False, "int24")
    # a change of one of them carries the other along; on a float format data_width alone
    # is a conflict
    assert Config(data_width=8).replace(dtype="fp16") == fp
    assert fp.replace(dtype="int8").data_width == 8
    assert Config().replace(data_width=8).dtype == "int8"
    with pytest.raises(ConfigError, match=r"^data_width must be 16 with dtype 'fp16'"):
        fp.replace(data_width=8)


def test_toml_dtype(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text(Config(dtype="bf16").to_toml())
    assert 'dtype = "bf16"' in path.read_text()
    assert Config.from_toml(path) == Config(dtype="bf16")
    # an override of one of dtype and data_width replaces the file's pair
    assert Config.from_toml(path, data_width=8).dtype == "int8"
    path.write_text("data_width = 8\nacc_width = 32\n")
    assert Config.from_toml(path, dtype="fp16") == Config(dtype="fp16")


def test_rejects_route_wider_than_acc():
    message = ("acc_width must be at least 23 for a 512 x 1024 array with 2 VCs (a READ/SEND "
               "carries its output's route in its data field: x 10 + y 9 + exit 3 + vc 1 "
               "bits), not 16")
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        Config(rows=512, cols=1024, data_width=8, acc_width=16)


@pytest.mark.parametrize("rule", PARAMETERS, ids=lambda r: r.name)
def test_rejects_wrong_type(rule):
    bad = {int: "8", str: 8, bool: "true"}[rule.kind]
    kind = {int: "an integer", str: "a string", bool: "true or false"}[rule.kind]
    with pytest.raises(ConfigError, match=rf"^{rule.name} must be {kind}, not {bad!r}$"):
        Config(**{rule.name: bad})


def test_phits_need_the_lite_router():
    message = ("phits must be 1 with router_arch 'compact' (flits split into phits need "
               "router_arch 'lite'), not 2")
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        Config(phits=2)
    assert Config(router_arch="lite", phits=2).phits == 2


def test_link_slices_need_lite_with_phits():
    for kw, what in (({}, "'compact' with 1 phit(s)"),
                     ({"router_arch": "lite"}, "'lite' with 1 phit(s)"),
                     ({"router_arch": "voq"}, "'voq' with 1 phit(s)")):
        message = (f"link_slice = true needs router_arch 'lite' with phits >= 2 (the slice's "
                   f"cycle hides in a slot of several phits; with whole flits it would add a "
                   f"cycle per router), not {what}")
        with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
            Config(link_slice=True, **kw)
    assert Config(router_arch="lite", phits=2, link_slice=True).link_slice


def test_phits_keep_the_header_in_the_first_phit():
    # 8 x 8 default: 16-bit header, 70-bit flit: 4 phits of 18 bits, 5 would be 14 < 16
    assert Config(rows=8, cols=8, router_arch="lite", phits=4).phit_width == 18
    message = ("phits must leave the whole 16-bit header in the first phit (at most 4 for a "
               "70-bit flit), not 5")
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        Config(rows=8, cols=8, router_arch="lite", phits=5)


def test_flit_and_phit_widths_match_the_layouts():
    from amaranth.hdl import Shape

    from wafertile.hdl.flit import flit_layout, header_layout, payload_layout, route_layout
    for kw in ({}, {"rows": 8, "cols": 8}, {"rows": 3, "cols": 5, "num_vcs": 3, "data_width": 8,
                                            "acc_width": 24, "act_depth": 16},
               {"rows": 1024, "cols": 1, "acc_depth": 4096}):
        cfg = Config(**kw)
        assert cfg.flit_width == Shape.cast(flit_layout(cfg)).width
        assert cfg.header_width == Shape.cast(header_layout(cfg)).width
        assert cfg.payload_width == Shape.cast(payload_layout(cfg)).width
        assert cfg.route_width == Shape.cast(route_layout(cfg)).width
        # the layouts list the fields of Config's tables, in order
        assert [name for name, _ in header_layout(cfg)] == list(cfg.header_fields)
        assert [name for name, _ in route_layout(cfg)] == list(cfg.route_fields)
    cfg = Config(rows=3, cols=3, router_arch="lite", phits=3)
    assert cfg.phit_width == -(-cfg.flit_width // 3)


def test_rejects_bool_as_int():
    with pytest.raises(ConfigError, match=r"^rows must be an integer, not True$"):
        Config(rows=True)


def test_every_parameter_has_a_rejection_test():
    tested = {"rows", "cols", "dtype", "data_width", "acc_width", "overflow", "act_depth",
              "acc_depth", "num_vcs", "buffer_depth", "router_arch", "phits", "link_slice",
              "handoff", "counters", "nonlinear"}
    assert tested == {r.name for r in PARAMETERS}


def test_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.data_width = 8


def test_derived_widths():
    cfg = Config(rows=3, cols=5, data_width=8, acc_width=24, act_depth=256, acc_depth=1024,
                 num_vcs=3)
    assert cfg.act_addr_width == 8
    assert cfg.acc_addr_width == 10
    assert cfg.addr_width == 10
    assert cfg.product_width == 16
    assert cfg.x_width == 3      # columns 0..4
    assert cfg.y_width == 2      # rows 0..2
    assert cfg.vc_width == 2
    assert cfg.route_width == 3 + 2 + 3 + 2
    assert (cfg.acc_min, cfg.acc_max) == (-(1 << 23), (1 << 23) - 1)
    assert (cfg.data_min, cfg.data_max) == (-128, 127)
    assert cfg.overflow_mode is Overflow.WRAP
    one = Config(rows=1, cols=1)
    assert (one.x_width, one.y_width) == (1, 1)  # a coordinate field is never 0 bits


def test_toml_round_trip(tmp_path):
    cfg = Config(rows=2, cols=7, data_width=8, acc_width=20, overflow="saturate")
    path = tmp_path / "a.toml"
    path.write_text(cfg.to_toml())
    assert Config.from_toml(path) == cfg
    assert Config.from_toml(path, rows=3) == cfg.replace(rows=3)


def test_nonlinear(tmp_path):
    """The nonlinear unit is out by default; ``nonlinear = true`` (a TOML bool) with a float
    dtype puts it in and round-trips through as_dict and TOML."""
    assert Config().nonlinear is False and Config().as_dict()["nonlinear"] is False
    on = Config(dtype="bf16", nonlinear=True)
    assert Config.from_mapping(on.as_dict()) == on
    path = tmp_path / "n.toml"
    path.write_text(on.to_toml())
    assert Config.from_toml(path) == on
    path.write_text('dtype = "int8"\nnonlinear = true\n')
    with pytest.raises(ConfigError, match=r"needs a floating-point dtype .*, not 'int8'$"):
        Config.from_toml(path)


def test_handoff(tmp_path):
    """The hand-off unit is in by default; ``handoff = false`` (a TOML bool) leaves it out and
    round-trips through as_dict and TOML."""
    assert Config().handoff is True and Config().as_dict()["handoff"] is True
    off = Config(handoff=False)
    assert off.as_dict()["handoff"] is False and off != Config()
    assert Config.from_mapping(off.as_dict()) == off
    assert "handoff = false\n" in off.to_toml()
    path = tmp_path / "h.toml"
    path.write_text(off.to_toml())
    assert Config.from_toml(path) == off
    assert Config.from_toml(path, handoff=True) == Config()
    path.write_text("handoff = false\n")
    assert Config.from_toml(path) == off
    path.write_text('handoff = "no"\n')
    with pytest.raises(ConfigError, match=r"^handoff must be true or false, not 'no'$"):
        Config.from_toml(path)


def test_handoff_width_binds_only_with_the_unit():
    """A FINISH carries its hand-off (x0, x1, y, vc) in the data field, so with the unit
    acc_width must hold it; without the unit only the route of READ/SEND must fit."""
    message = ("acc_width must be at least 22 for a 2 x 1024 array with 2 VCs (a FINISH "
               "carries its hand-off in its data field: x0 10 + x1 10 + y 1 + vc 1 bits), "
               "not 16")
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        Config(rows=2, cols=1024, data_width=8, acc_width=16)
    cfg = Config(rows=2, cols=1024, data_width=8, acc_width=16, handoff=False)
    assert cfg.route_width == 15 < cfg.handoff_width == 22


def test_finish_fields_bind_with_the_nonlinear_unit():
    """On a float tile with the nonlinear unit a FINISH also carries its output's pick, rows
    and a MAC's activation address (docs/architecture.md): 32 x 32 fits the data field, 64 x 64
    does not and is refused in one line; without the unit it is as before."""
    cfg = Config(rows=32, cols=32, dtype="bf16", nonlinear=True)
    assert sum(cfg.finish_fields.values()) == 5 + 5 + 5 + 1 + 1 + 5 + 9 == 31
    assert list(cfg.finish_fields)[-3:] == ["pick", "dy", "act"]
    message = ("a 64 x 64 array with 2 VCs is too large for the float tiles' nonlinear unit: a "
               "FINISH carries its hand-off and its output's pick, rows and activation in its "
               "32-bit data field (x0 6 + x1 6 + y 6 + vc 1 + pick 1 + dy 6 + act 9 = 35 "
               "bits); use a smaller array (32 x 32 fits with the default act_depth), a "
               "smaller act_depth or nonlinear = false")
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        Config(rows=64, cols=64, dtype="bf16", nonlinear=True)
    Config(rows=64, cols=64, dtype="bf16", nonlinear=True, act_depth=64)    # 32 bits
    Config(rows=64, cols=64, dtype="bf16")


def test_toml_unknown_key(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("data_wdith = 8\n")
    with pytest.raises(ConfigError, match=r"^unknown parameter 'data_wdith' in configuration "
                                          r"file '.*t\.toml' \(known: rows, cols, .*\)$"):
        Config.from_toml(path)


def test_toml_bad_value_names_parameter(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('data_width = "16"\n')
    with pytest.raises(ConfigError, match=r"^data_width must be an integer, not '16'$"):
        Config.from_toml(path)


def test_toml_syntax_error(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("data_width = \n")
    with pytest.raises(ConfigError, match=r"^configuration file '.*t\.toml' is not valid TOML: "):
        Config.from_toml(path)


def test_toml_table_rejected(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("[tile]\ndata_width = 8\n")
    with pytest.raises(ConfigError, match=r"has a table \[tile\]; parameters are flat keys"):
        Config.from_toml(path)


def test_toml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^configuration file '.*nope\.toml' does not exist$"):
        Config.from_toml(tmp_path / "nope.toml")
