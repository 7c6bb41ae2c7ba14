"""A verification library for wafertile's generated RTL (cocotb), reusable in your own tests.

- :mod:`.env`: :class:`~.env.TB` (clock, reset, the case from the environment, the parts
  stepped once per cycle) and :class:`~.env.Part`;
- :mod:`.link`: :class:`~.link.LinkSource`, :class:`~.link.LinkSink`,
  :class:`~.link.LinkMonitor` for the router link, and :func:`~.link.grid_link` to find a
  port of a generated array or mesh;
- :mod:`.stream`: :class:`~.stream.StreamSource`, :class:`~.stream.StreamSink` for the tile
  core's streams;
- :mod:`.pause`: pause and backpressure generators;
- :mod:`.scoreboard`: checkers over the numpy models;
- :mod:`.coverage`: functional coverage (cover groups, points, crosses, the merged report),
  and :mod:`.coverpoints`: wafertile's cover model and the parts that sample it.

``docs/verification.md`` shows a complete test of a generated mesh.
"""

from .coverpoints import CoreCoverage, NocCoverage, cover_program, cover_unit_jobs
from .env import TB, Part, Source, TieOff, env_config, env_float, env_int, env_json, env_seed
from .link import LinkMonitor, LinkSink, LinkSource, grid_inputs, grid_link
from .pause import never, random_pause
from .scoreboard import CoreScoreboard, LayerScoreboard, NocScoreboard, Scoreboard
from .signals import Element, forget_writes
from .stream import StreamSink, StreamSource

__all__ = ["TB", "CoreCoverage", "CoreScoreboard", "Element", "LayerScoreboard", "LinkMonitor",
           "LinkSink", "LinkSource", "NocCoverage", "NocScoreboard", "Part", "Scoreboard",
           "Source", "StreamSink", "StreamSource", "TieOff", "cover_program", "cover_unit_jobs",
           "env_config", "env_float", "env_int", "env_json", "env_seed", "forget_writes",
           "grid_inputs", "grid_link", "never", "random_pause"]
