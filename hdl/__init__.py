"""Amaranth modules of the fabric and the Verilog generator."""
