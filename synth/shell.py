"""The iCE40 I/O shell: a block with any number of ports placed on a device with few pins.

iCE40 has no out-of-context mode, so the block is wrapped in a small shell: all its input
ports are fed from one shift register loaded from a pin, and all its outputs are XOR-reduced
into one registered pin, so that synthesis cannot remove logic and the design needs only four
pins. The shell costs one flip-flop per input bit and about one LUT per three output bits
(:func:`shell_cost`); the synthesis report gives both figures (``shell_ffs``, ``shell_luts``)
so that they can be subtracted.
"""

from __future__ import annotations

from ..hdl.ports import verilog_ports

__all__ = ["SHELL_TOP", "io_shell", "shell_cost"]

#: Module name of the shell.
SHELL_TOP = "wafertile_io_shell"


def io_shell(text: str, top: str) -> tuple[str, int, int]:
    """Verilog of :data:`SHELL_TOP` around the module ``top`` of the Verilog ``text``.

    The shell's ports are ``clk``, ``rst``, ``sin`` (shift-register input) and ``sout`` (XOR
    of all outputs).

    Returns
    -------
    tuple
        (Verilog of the shell, input bits of ``top``, output bits of ``top``), ``clk`` and
        ``rst`` not counted.
    """
    ports = [p for p in verilog_ports(text, top) if p[1] not in ("clk", "rst")]
    nin = sum(w for d, _, w in ports if d == "input")
    nout = sum(w for d, _, w in ports if d == "output")
    lines = [f"module {SHELL_TOP}(input clk, input rst, input sin, output reg sout);",
             f"  reg [{max(nin, 1) - 1}:0] chain;",
             f"  wire [{max(nout, 1) - 1}:0] outs;"]
    lines.append("  always @(posedge clk) chain <= {chain, sin};" if nin > 1
                 else "  always @(posedge clk) chain <= sin;")
    lines.append("  always @(posedge clk) sout <= ^outs;")
    conns = ["    .clk(clk)", "    .rst(rst)"]
    lo_in = lo_out = 0
    for direction, name, width in ports:
        if direction == "input":
            conns.append(f"    .{name}(chain[{lo_in + width - 1}:{lo_in}])")
            lo_in += width
        else:
            conns.append(f"    .{name}(outs[{lo_out + width - 1}:{lo_out}])")
            lo_out += width
    if nout == 0:
        lines.append("  assign outs = 1'b0;")
    lines.append(f"  {top} dut (\n" + ",\n".join(conns) + "\n  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n", nin, nout


def shell_cost(nin: int, nout: int) -> tuple[int, int]:
    """(flip-flops, LUTs) that the shell of a block with ``nin`` input and ``nout`` output
    bits adds: the shift register and its output register, one LUT per three XORed bits."""
    return nin + 1, -(-nout // 3)
