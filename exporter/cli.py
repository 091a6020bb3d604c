"""``sitewatch-exporter``: run the exporter, run every check once, validate a config, encrypt a secret,
manage the devices of a targets file, hash a password for a web config."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from exporter import __version__, hashpassword, logsetup, oneshot, secrets, targets_cli
from exporter.commandline import add_config_options, all_problems_hint, read_secret_twice, with_default_command
from exporter.config import ConfigError, load_config

DEFAULT_LISTEN = ":9815"
EXIT_CHECKS_FAILED = 1
EXIT_BAD_CONFIG = 2

log = logging.getLogger("sitewatch.exporter")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitewatch-exporter",
        description="Runs a site's checks on a schedule and serves them as Prometheus metrics.")
    parser.add_argument("--version", action="version", version=f"sitewatch-exporter {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="serve /metrics and run the checks on their schedule (default)")
    add_config_options(run, "site config")
    run.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                     help=f"where to serve /metrics (default {DEFAULT_LISTEN}; e.g. 127.0.0.1:9815)")
    run.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                     help="TLS and basic auth for every endpoint, in the web config format of Prometheus "
                          "exporters (docs/security.md)")

    check = commands.add_parser("check", help="run every check once, print a table; exit 0 only if all pass")
    add_config_options(check, "site config")
    check.add_argument("--site", help="only this site's checks")
    check.add_argument("--format", choices=["table", "json"], default="table")
    check.add_argument("--lang", type=oneshot.table_language, default=oneshot.default_language(), metavar="{en,ru}",
                       help="language of the table: en (default) or ru; $SITEWATCH_LANG sets the default "
                            "(JSON is the same in both)")

    validate = commands.add_parser("validate", help="only validate the config")
    add_config_options(validate, "site config")

    targets = commands.add_parser("targets", help="add, remove or list devices in the config's targets_file")
    targets_cli.add_commands(targets)

    encrypt = commands.add_parser("encrypt", help="turn a secret read from standard input into an enc: value")
    encrypt.add_argument("--key-file", help="key file (default: $SITEWATCH_KEY or $SITEWATCH_KEY_FILE)")
    encrypt.add_argument("--new-key", metavar="FILE", help="write a new random key to FILE (mode 0600) and exit")
    hashpassword.add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = with_default_command(list(sys.argv[1:] if argv is None else argv))
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_CONFIG
    if args.command == "encrypt":
        return _encrypt(args)
    if args.command == "hash-password":
        return hashpassword.main(args)
    if args.command == "targets":
        if not logsetup.configure_from(args):
            return EXIT_BAD_CONFIG
        return targets_cli.main(args)
    if not logsetup.configure_from(args):
        return EXIT_BAD_CONFIG
    try:
        config = load_config(args.config, args.key_file)
    except ConfigError as err:
        if args.command == "validate":
            _report_problems(err)
        else:
            logsetup.fatal(f"config error: {err}{all_problems_hint(len(err.problems))}")
        return EXIT_BAD_CONFIG
    if args.command == "validate":
        print(f"{config.source}: valid, {len(config.sites)} site(s), {len(config.checks())} check(s)")
        return 0
    if args.command == "check":
        try:
            return oneshot.main(config, args.site, args.format, args.lang)
        except oneshot.UnknownSite as err:
            sys.stderr.write(f"config error: {err}\n")
            return EXIT_BAD_CONFIG
    return _serve(args)


def _report_problems(err: ConfigError) -> None:
    """Every problem of the config on a line of its own, so that one run shows all there is to fix, and how
    many there are when more than one."""
    for problem in err.problems:
        sys.stderr.write(f"config error: {problem}\n")
    if len(err.problems) > 1:
        sys.stderr.write(f"{len(err.problems)} problems: the config is not valid\n")


def _serve(args: argparse.Namespace) -> int:
    from exporter.app import ExporterApp

    try:
        app = ExporterApp(args.config, args.listen, args.key_file, args.web_config)
    except ConfigError as err:
        logsetup.fatal(f"config error: {err}")
        return EXIT_BAD_CONFIG
    except ValueError as err:
        logsetup.fatal(f"cannot start: {err}")
        return EXIT_BAD_CONFIG
    except OSError as err:
        logsetup.fatal(f"cannot start: cannot listen on {args.listen}: {err.strerror or err}")
        return EXIT_BAD_CONFIG
    app.handle_signals()
    app.start()
    address = f"{app.server.scheme}://{_display_host(args.listen)}:{app.server.port}"
    print(f"sitewatch exporter: serving {address}/metrics", flush=True)
    app.serve_forever()
    return 0


def _display_host(listen: str) -> str:
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def _encrypt(args: argparse.Namespace) -> int:
    if args.new_key:
        path = Path(args.new_key)
        if path.exists():
            sys.stderr.write(f"{path} exists already; not overwriting a key\n")
            return EXIT_BAD_CONFIG
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.new_key() + b"\n")
        print(f"wrote a new key to {path}; keep it next to the config, readable only by the service account")
        return 0
    try:
        key = secrets.KeySource(args.key_file).load()
    except secrets.SecretError as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_BAD_CONFIG
    plain = read_secret_twice("secret", whole_input=True)
    if plain is None:
        sys.stderr.write("the two entries differ\n")
        return EXIT_BAD_CONFIG
    if not plain:
        sys.stderr.write("error: empty secret\n")
        return EXIT_BAD_CONFIG
    print(secrets.encrypt(plain, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
