"""The board design's flit-over-UART bridge, through its serial pins, against numpy.

The host side is :func:`wafertile.device.drive`, the code ``wafertile run --device`` uses.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from amaranth.hdl import Signal  # noqa: F401  (Amaranth must import before the tests run)

from wafertile import Config
from wafertile.hdl.uart import HostBridge, UartRx, UartTx, flit_bytes, window
from wafertile.sim.runner import run_cocotb
from wafertile.synth.boards import board_config, bridge_verilog

from .conftest import seed_for, sim_cases

CFG = Config(rows=2, cols=2, data_width=8, acc_width=16, act_depth=32, acc_depth=16)
#: the ULX3S builds' router (the FPGA profile: lite, 4-phit links, 2-flit buffers)
CFG_LITE = CFG.replace(router_arch="lite", phits=4, buffer_depth=2)
DIVISOR = 6  # clock cycles per bit: fast in simulation, the same logic as 217 at 25 MHz

LAYERS = {
    "sparse": {"B": 3, "I": 7, "J": 9, "density": 0.4},
    "extremes": {"B": 2, "I": 5, "J": 6, "density": 1.0, "extremes": True},
}


def _build(build_root, sim, cfg=CFG):
    suffix = "" if cfg is CFG else f"-{cfg.router_arch}-{cfg.dtype}-a{cfg.acc_width}"
    build = build_root / f"bridge-{sim}{suffix}"
    build.mkdir(parents=True, exist_ok=True)
    path = build / "wafertile_bridge_top.v"
    text = bridge_verilog(cfg, DIVISOR)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return build, [path]


def _env(cfg=CFG, **extra):
    env = {"WAFERTILE_CONFIG": json.dumps(cfg.as_dict()), "WAFERTILE_DIVISOR": str(DIVISOR)}
    env.update(extra)
    return env


def _icarus_only(sim, *_):
    """The bridge runs on Icarus by default (the array itself is sampled on Verilator)."""
    return sim == "verilator"


@pytest.mark.parametrize(("sim", "layer"), sim_cases(list(LAYERS), slow=_icarus_only))
def test_layer_through_uart(request, sim_env, build_root, layer):
    build, sources = _build(build_root, sim_env)
    run_cocotb(sim=sim_env, sources=sources, top="wafertile_bridge_top",
               test_module="wafertile.sim.tb.bridge", build_dir=build, testcase="layer",
               extra_env=_env(WAFERTILE_SEED=str(seed_for(request)),
                              WAFERTILE_LAYER=json.dumps(LAYERS[layer])))


def _long(sim, *_):
    """Long cases of the bridge (20-35 s each): with --run-slow only; the default run keeps
    the integer layers and the network through the bridge on Icarus."""
    return True


@pytest.mark.parametrize("sim", sim_cases([()], slow=_long, ids=lambda: "lite"))
def test_layer_through_uart_lite_router(request, sim_env, build_root):
    """The bridge in front of an array of lite routers with phit links (the ULX3S default):
    the array's ports and the framing are unchanged."""
    build, sources = _build(build_root, sim_env, CFG_LITE)
    run_cocotb(sim=sim_env, sources=sources, top="wafertile_bridge_top",
               test_module="wafertile.sim.tb.bridge", build_dir=build, testcase="layer",
               extra_env=_env(CFG_LITE, WAFERTILE_SEED=str(seed_for(request)),
                              WAFERTILE_LAYER=json.dumps(LAYERS["sparse"])))


#: a float fabric behind the bridge: the frames carry FP16 / BF16 and FP32 words as bits
CFG_BF16 = Config(rows=2, cols=2, dtype="bf16", act_depth=32, acc_depth=16)


@pytest.mark.parametrize("sim", sim_cases([()], slow=_long, ids=lambda: "bf16"))
def test_float_layer_through_uart(request, sim_env, build_root):
    """A BF16 layer (extreme values, infinities, a reduction over K = 2 tiles) through the
    serial pins and wafertile.device.drive: Y's FP32 words equal the float reference."""
    build, sources = _build(build_root, sim_env, CFG_BF16)
    run_cocotb(sim=sim_env, sources=sources, top="wafertile_bridge_top",
               test_module="wafertile.sim.tb.bridge", build_dir=build, testcase="layer",
               extra_env=_env(CFG_BF16, WAFERTILE_SEED=str(seed_for(request)),
                              WAFERTILE_LAYER=json.dumps({"B": 2, "I": 5, "J": 40,
                                                          "density": 0.6,
                                                          "extremes": True})))


@pytest.mark.parametrize("sim", sim_cases([()], slow=_icarus_only, ids=lambda: "network"))
def test_network_through_uart(request, sim_env, build_root, tmp_path):
    """A two-layer network (per-output requantization, ReLU) through the serial pins: the
    hand-off between the layers happens on the board; only the outputs come back."""
    from wafertile.network import Layer, Network, save_network

    rng = np.random.default_rng(seed_for(request))
    w0 = rng.integers(-128, 128, (6, 5)) * (rng.random((6, 5)) < 0.5)
    w1 = rng.integers(-128, 128, (4, 6)) * (rng.random((4, 6)) < 0.6)
    net = Network([Layer(w0, rng.integers(-500, 500, 6), rng.integers(1 << 12, 1 << 15, 6),
                         rng.integers(14, 17, 6), True),
                   Layer(w1, rng.integers(-500, 500, 4))], 8, name="two")
    save_network(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", rng.integers(-128, 128, (3, 5)))
    build, sources = _build(build_root, sim_env)
    run_cocotb(sim=sim_env, sources=sources, top="wafertile_bridge_top",
               test_module="wafertile.sim.tb.bridge", build_dir=build, testcase="network",
               extra_env=_env(WAFERTILE_SEED=str(seed_for(request)),
                              WAFERTILE_NETWORK=json.dumps(str(tmp_path / "net.npz")),
                              WAFERTILE_INPUTS=json.dumps(str(tmp_path / "x.npy"))))


#: The ULX3S board build's configuration for the digits classifier's 8-bit data
#: (``wafertile synth --board ulx3s-85f --data-width 8``: its default array, the FPGA router
#: profile, the default tile with its hand-off unit)
CFG_BOARD = board_config("ulx3s-85f", {"data_width": 8})
#: Held-out digits images through the board (each adds its share of the stream's frames)
DIGITS_IMAGES = 3


@pytest.mark.parametrize("sim", [p for p in sim_cases([()], slow=_long, ids=lambda: "digits")
                                 if p.values[0] == "verilator"])
def test_digits_through_uart(request, sim_env, build_root, tmp_path):
    """The digits classifier end to end through the serial pins of the ULX3S board design
    (its build configuration): every layer's weights stream in as frames, the hand-offs
    between layers stay on the board, the logits come back and equal the integer
    reference bit for bit (the images are drawn from the held-out set by the seed).

    About 3 million cycles of serial traffic: 7.8 minutes on Verilator (measured 2026-12-05),
    more than 25 on Icarus, so Verilator only, with --run-slow; the two-layer network above
    runs the same path on both simulators."""
    from wafertile.network import save_network
    from wafertile.network.digits import digits_network, test_set

    net = digits_network()
    x, _labels = test_set(net)
    rng = np.random.default_rng(seed_for(request))
    pick = np.sort(rng.choice(len(x), DIGITS_IMAGES, replace=False))
    save_network(net, tmp_path / "digits.npz")
    np.save(tmp_path / "x.npy", x[pick])
    build, sources = _build(build_root, sim_env, CFG_BOARD)
    run_cocotb(sim=sim_env, sources=sources, top="wafertile_bridge_top",
               test_module="wafertile.sim.tb.bridge", build_dir=build, testcase="network",
               extra_env=_env(CFG_BOARD, WAFERTILE_SEED=str(seed_for(request)),
                              WAFERTILE_NETWORK=json.dumps(str(tmp_path / "digits.npz")),
                              WAFERTILE_INPUTS=json.dumps(str(tmp_path / "x.npy"))))


@pytest.mark.parametrize("sim", sim_cases([()], slow=_icarus_only, ids=lambda: "frames"))
def test_bad_frames(request, sim_env, build_root):
    build, sources = _build(build_root, sim_env)
    run_cocotb(sim=sim_env, sources=sources, top="wafertile_bridge_top",
               test_module="wafertile.sim.tb.bridge", build_dir=build, testcase="bad_frames",
               extra_env=_env())


@pytest.mark.parametrize("cls", [UartRx, UartTx])
@pytest.mark.parametrize("divisor", [0, 3, 8.5, "217"])
def test_bad_divisor(cls, divisor):
    with pytest.raises(ValueError, match="divisor"):
        cls(divisor)


def test_bridge_rejects_bad_config():
    with pytest.raises(TypeError, match="HostBridge config must be a Config"):
        HostBridge({"rows": 2}, 8)


def test_window_never_overruns_the_fifo():
    # window frames of (2 + flit bytes) each fit the 64-byte receive FIFO.
    for cfg in (CFG, Config(rows=8, cols=8, data_width=16, acc_width=32)):
        assert window(cfg) * (flit_bytes(cfg) + 2) <= 64
        assert window(cfg) >= 1
