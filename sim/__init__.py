"""Numpy reference models, the simulator toolchain, and cocotb testbenches."""
