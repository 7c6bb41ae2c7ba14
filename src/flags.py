"""The configuration's command-line flags, shared by the commands (``wafertile generate``,
``run``, ``lint``, ``synth``, ``train``): one flag per parameter of
:data:`wafertile.config.PARAMETERS`, and the :class:`~wafertile.config.Config` they make
with ``--config FILE`` (flags override the file, which overrides the defaults)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import PARAMETERS, Config, parameter_help, parse_bool

__all__ = ["add_config_flags", "config_from_args", "flag_values"]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "configuration", "flags override --config FILE, which overrides the defaults")
    group.add_argument("--config", metavar="FILE", type=Path,
                       help="flat TOML file of parameters (same names as the flags, with "
                            "underscores: data_width = 8); unknown keys are an error")
    helps = parameter_help()
    for rule in PARAMETERS:
        flag = "--" + rule.name.replace("_", "-")
        kwargs = {"dest": rule.name, "default": None, "help": helps[rule.name]}
        if rule.kind is int:
            kwargs.update(type=int, metavar="N")
        elif rule.kind is bool:  # true / false, read by flag_values (a ConfigError)
            kwargs.update(metavar="BOOL")
        else:
            kwargs.update(metavar="MODE")
        group.add_argument(flag, **kwargs)


def flag_values(args: argparse.Namespace) -> dict:
    """The configuration parameters given as flags (the others are absent); a bool flag's
    text (``--handoff false``) as a bool.

    Raises
    ------
    ConfigError
        If a bool flag is not ``true`` or ``false``.
    """
    values = {r.name: getattr(args, r.name) for r in PARAMETERS
              if getattr(args, r.name, None) is not None}
    for rule in PARAMETERS:
        if rule.kind is bool and isinstance(values.get(rule.name), str):
            values[rule.name] = parse_bool("--" + rule.name.replace("_", "-"),
                                           values[rule.name])
    return values


def config_from_args(args: argparse.Namespace) -> Config:
    """Build the :class:`Config` from ``--config`` and the parameter flags."""
    overrides = flag_values(args)
    if getattr(args, "config", None) is not None:
        return Config.from_toml(args.config, **overrides)
    return Config.from_mapping(overrides, source="command-line flags")
