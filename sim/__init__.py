"""Verification: reference models, the verification library, testbenches, simulators.

- :mod:`.models`: numpy reference models (no simulator needed);
- :mod:`.stimulus`: directed and random stimulus;
- :mod:`.vip`: cocotb parts (link and stream sources, sinks, monitors, scoreboards, the TB
  base) to reuse in your own tests (``docs/verification.md``);
- :mod:`.tb`: the project's cocotb testbenches;
- :mod:`.toolchain`, :mod:`.runner`, :mod:`.harness`: the simulators and how they are run.
"""
