"""``wafertile sweep``: a grid (or a list) of configurations x workloads x measurements, run
as independent points on a Dask cluster, into one tidy table and plots.

Modules, in the order a sweep uses them:

- :mod:`~wafertile.sweep.measures`: the measurements (``run``, ``synth``, ``derived``), their
  options, fidelities and table columns; new measurements and fidelities plug in here;
- :mod:`~wafertile.sweep.workloads`: synthetic layers and layer files;
- :mod:`~wafertile.sweep.spec`: the TOML spec, parsed and validated before anything runs;
- :mod:`~wafertile.sweep.points`: the spec expanded into points with stable ids;
- :mod:`~wafertile.sweep.cache`: the synthesis cache and the per-design locks;
- :mod:`~wafertile.sweep.tasks`: what a Dask worker runs for one point (a table row back);
- :mod:`~wafertile.sweep.results`: the table (CSV, appended as points finish; Parquet too if
  pyarrow is installed) and its output directory;
- :mod:`~wafertile.sweep.progress`: the progress line on stderr;
- :mod:`~wafertile.sweep.driver`: the Dask client (a ``LocalCluster`` or a scheduler's
  address), submission, collection, resume;
- :mod:`~wafertile.sweep.summary` and :mod:`~wafertile.sweep.plots`: the terminal summary and
  the matplotlib figures;
- :mod:`~wafertile.sweep.cli`: the ``wafertile sweep`` command.

Imports go one way: the sweep uses :mod:`wafertile.run`, :mod:`wafertile.synth` and
:mod:`wafertile.config`; only :mod:`wafertile.cli` imports the sweep. The user's guide is
``docs/sweep.md``.
"""

__all__: list[str] = []
