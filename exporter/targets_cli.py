"""``sitewatch-exporter targets add|del|list``: the command line over `exporter.targets`.

Exit status: 0 done; 1 refused (a bad address or check, a duplicate, an unknown target); 2 a config problem
(an invalid config or targets file, no ``targets_file:`` in the config) or a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.commandline import add_config_options
from exporter.config import ConfigError
from exporter.config.loader import open_targets
from exporter.targets import Target, TargetsError

EXIT_REFUSED = 1
EXIT_BAD_CONFIG = 2
DEFAULT_EXPORTER = "http://127.0.0.1:9815"
UNREACHABLE = "unreachable exporter"


def add_commands(targets: argparse.ArgumentParser) -> None:
    targets.set_defaults(targets_parser=targets)
    actions = targets.add_subparsers(dest="targets_command", metavar="ACTION")

    add = actions.add_parser("add", help="add a device to the config's targets_file")
    add_config_options(add, "exporter config that names a targets_file")
    add.add_argument("address", metavar="ADDRESS", help="IPv4/IPv6 address or host name")
    add.add_argument("name", metavar="NAME", help="the device's name, unique in the targets file")
    add.add_argument("--check", action="append", dest="checks", metavar="ping|tcp:PORT|URL",
                     help="a check to run (repeatable; default: ping)")
    add.add_argument("--site", help="the site id: one of the config's sites, or a new one (default: NAME)")
    add.add_argument("--label", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                     help="a site label (repeatable)")
    add.add_argument("--client", help="the same as --label client=CLIENT")
    add.add_argument("--telegram-route", help="the same as --label telegram_route=ROUTE")

    remove = actions.add_parser("del", help="remove a device by name or id")
    add_config_options(remove, "exporter config that names a targets_file")
    remove.add_argument("target", metavar="NAME_OR_ID")

    show = actions.add_parser("list", help="list the devices with their state in the running exporter")
    add_config_options(show, "exporter config that names a targets_file")
    show.add_argument("--exporter", default=DEFAULT_EXPORTER,
                      help=f"the running exporter to read states from (default {DEFAULT_EXPORTER})")
    show.add_argument("--format", choices=["table", "json"], default="table")


def main(args: argparse.Namespace) -> int:
    if args.targets_command is None:
        args.targets_parser.print_help(sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        if args.targets_command == "add":
            return _add(args)
        if args.targets_command == "del":
            return _del(args)
        return _list(args)
    except ConfigError as err:
        sys.stderr.write(f"config error: {err}\n")
        return EXIT_BAD_CONFIG


def _add(args: argparse.Namespace) -> int:
    labels: dict[str, str] = {}
    for key, value in [*args.label, ("client", args.client), ("telegram_route", args.telegram_route)]:
        if value is None:
            continue
        if labels.get(key, value) != value:
            sys.stderr.write(f"error: the label {key} is given twice, as {labels[key]!r} and {value!r}\n")
            return EXIT_BAD_CONFIG
        labels[key] = value
    return _change(args, lambda targets: targets.add(args.address, args.name, args.checks or ("ping",), args.site,
                                                     labels), "added {target} -> {file}")


def _del(args: argparse.Namespace) -> int:
    return _change(args, lambda targets: targets.remove(args.target), "removed {target} from {file}")


def _change(args: argparse.Namespace, change, done: str) -> int:
    """Applies `change` to the config's targets file; prints `done`, or the refusal on stderr (exit 1)."""
    targets = open_targets(args.config, args.key_file)
    try:
        target = change(targets)
    except TargetsError as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_REFUSED
    print(done.format(target=target.describe(), file=targets.path))
    return 0


def _list(args: argparse.Namespace) -> int:
    targets_file = open_targets(args.config, args.key_file)
    try:
        targets = targets_file.load()
    except TargetsError as err:
        sys.stderr.write(f"config error: {err}\n")
        return EXIT_BAD_CONFIG
    up = _check_up(args.exporter)
    rows = [_row(target, up) for target in targets]
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    header = ["ID", "NAME", "ADDRESS", "CHECKS", "SITE", "LABELS", "STATE"]
    table = [header] + [[row["id"], row["name"], row["address"], ",".join(row["checks"]), row["site"],
                         ",".join(f"{k}={v}" for k, v in row["labels"].items()) or "-", row["state"]]
                        for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    if not rows:
        print(f"(no targets in {targets_file.path})")
    return 0


def _row(target: Target, up: dict[tuple[str, str], float] | None) -> dict[str, Any]:
    return {"id": target.id, "name": target.name, "address": target.address, "checks": list(target.checks),
            "site": target.site_id, "labels": dict(target.labels), "state": state_of(target, up)}


def state_of(target: Target, up: dict[tuple[str, str], float] | None) -> str:
    """UP when every check of the target is up, DOWN when one is down, pending when one has not run yet."""
    if up is None:
        return UNREACHABLE
    names = target.check_names()
    values = {name: up.get((target.site_id, name)) for name in names}
    down = [name for name, value in values.items() if value == 0]
    if down:
        return "DOWN" if len(names) == 1 else f"DOWN ({', '.join(down)})"
    if any(value is None for value in values.values()):
        return "pending"
    return "UP"


def _check_up(exporter: str) -> dict[tuple[str, str], float] | None:
    """``sitewatch_check_up`` by (site, check) from the exporter's /metrics; None if it cannot be read."""
    url = exporter.rstrip("/") + ("" if exporter.rstrip("/").endswith("/metrics") else "/metrics")
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode("utf-8", errors="replace")
        families = list(text_string_to_metric_families(text))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return {(sample.labels.get("site", ""), sample.labels.get("check", "")): sample.value
            for family in families if family.name == "sitewatch_check_up" for sample in family.samples}


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value
