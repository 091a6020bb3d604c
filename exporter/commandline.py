"""What the sitewatch commands share on their command lines: the config options and the default command."""

from __future__ import annotations

import argparse


def add_config_options(command: argparse.ArgumentParser, what: str) -> None:
    """``--config``, ``--key-file`` and ``--log.level``, as every sitewatch command that reads a config takes them."""
    command.add_argument("--config", "-c", required=True, help=f"the {what} (YAML)")
    command.add_argument("--key-file", help="key file for enc: values (default: $SITEWATCH_KEY or $SITEWATCH_KEY_FILE)")
    command.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warning", "error"])


def with_default_command(argv: list[str], command: str = "run") -> list[str]:
    """``sitewatch-x --config f`` means ``sitewatch-x run --config f``: options first name no command."""
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        return [command, *argv]
    return argv
