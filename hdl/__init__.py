"""The fabric's hardware, in Amaranth, and the Verilog generator.

Imports go one way, down this list:

- :mod:`.flit`: the flit format (ports, opcodes, layouts, the host codec);
- :mod:`.noc`: the network (links, routing, buffers, arbiters, phit adapters, routers);
- :mod:`.core`: the tile core (MAC core and SRAM bank);
- :mod:`.tile`: a core behind a router;
- :mod:`.grid`: the array and mesh tops, written as Verilog with generate loops;
- :mod:`.uart`: the flit-over-UART host bridge of the board designs;
- :mod:`.generate`: ``wafertile generate``: Verilog, manifest.json, FuseSoC core.

Nothing here imports from :mod:`wafertile.sim` or :mod:`wafertile.synth`.
"""
