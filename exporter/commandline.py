"""What the sitewatch commands share on their command lines: the config options and the default command."""

from __future__ import annotations

import argparse
import getpass
import sys

from exporter.logsetup import add_log_options


def add_config_options(command: argparse.ArgumentParser, what: str, log_file: bool = True) -> None:
    """``--config``, ``--key-file`` and the log options, as every sitewatch command that reads a config takes them.

    `log_file=False` leaves out ``--log.file``: for a program whose work is shared by processes that would
    each rotate the same file.
    """
    command.add_argument("--config", "-c", required=True, help=f"the {what} (YAML)")
    command.add_argument("--key-file", help="key file for enc: values (default: $SITEWATCH_KEY or $SITEWATCH_KEY_FILE)")
    if log_file:
        add_log_options(command)
    else:
        command.add_argument("--log.level", dest="log_level", default="info",
                             choices=["debug", "info", "warning", "error"])


def read_secret_twice(prompt: str, whole_input: bool = False) -> str | None:
    """A secret typed twice, unseen, at a terminal; otherwise standard input's first line (or, with
    `whole_input`, all of it). None when the two entries differ (the caller says so). The line end that
    closes it is not part of it."""
    if sys.stdin.isatty():
        secret = getpass.getpass(f"{prompt}: ")
        return secret if getpass.getpass("again: ") == secret else None
    return (sys.stdin.read() if whole_input else sys.stdin.readline()).rstrip("\r\n")


def all_problems_hint(problems: int) -> str:
    """What ends a one-line config error that shows only the first of several problems."""
    return "; 'sitewatch-exporter validate' lists them all" if problems > 1 else ""


def with_default_command(argv: list[str], command: str = "run") -> list[str]:
    """``sitewatch-x --config f`` means ``sitewatch-x run --config f``: options first name no command."""
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        return [command, *argv]
    return argv
