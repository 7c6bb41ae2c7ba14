"""cocotb testbenches of the generated blocks, one module per block (the pytest files in
tests/ build the Verilog and run them): :mod:`.core`, :mod:`.sram`, :mod:`.noc` (router and
mesh), :mod:`.array`, :mod:`.bridge` (the board design through its serial pins)."""
