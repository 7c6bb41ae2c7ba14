"""FPGA flows with the YoWASP builds of Yosys and nextpnr from PyPI.

:mod:`.targets` (devices, the router profile), :mod:`.tools` (finding and running the tools),
:mod:`.yosys` and :mod:`.nextpnr` (the two steps), :mod:`.report`, :mod:`.flow`
(``wafertile synth``), :mod:`.shell` (the iCE40 I/O shell), :mod:`.boards` (board
bitstreams with the UART bridge).
"""
