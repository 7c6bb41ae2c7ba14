"""FPGA flows (Yosys / nextpnr from YoWASP)."""
