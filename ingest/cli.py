"""``sitewatch-ingest``: take smartstatus.bat uploads and getad-service posts and serve them as metrics
(``run``, the default), or only validate a config (``check-config``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from exporter import __version__, logsetup
from exporter.commandline import add_config_options, with_default_command
from exporter.config import ConfigError
from exporter.webguard import MetricNames, WebGuard
from ingest.config import load_ingest_config
from ingest.store import StoreError

DEFAULT_LISTEN = ":9817"  # after the exporter's 9815 and the receiver's 9816
EXIT_BAD_CONFIG = 2

log = logging.getLogger("sitewatch.ingest")
WEB_METRICS = MetricNames(auth_failures="sitewatch_ingest_http_auth_failures",
                          handshake_failures="sitewatch_ingest_tls_handshake_failures",
                          reload_successful="sitewatch_ingest_web_config_last_reload_successful")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitewatch-ingest",
        description="Takes what smartstatus.bat and getad-service send and serves it as sitewatch metrics.")
    parser.add_argument("--version", action="version", version=f"sitewatch-ingest {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="serve the upload endpoints, /metrics, /-/healthy, /-/ready, /-/reload "
                                          "and the status page (default)")
    add_config_options(run, "ingest config")
    run.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                     help=f"where to listen (default {DEFAULT_LISTEN}; e.g. 127.0.0.1:9817)")
    run.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                     help="TLS and basic auth for every path, uploads included, in the web config format of "
                          "Prometheus exporters (docs/security.md)")
    check = commands.add_parser("check-config", help="only validate the config (secrets included); exit 0 if it "
                                                     "can be used, 2 if not")
    add_config_options(check, "ingest config")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = with_default_command(list(sys.argv[1:] if argv is None else argv))
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_CONFIG
    if not logsetup.configure_from(args):
        return EXIT_BAD_CONFIG
    if args.command == "check-config":
        try:
            config = load_ingest_config(args.config, args.key_file)
        except ConfigError as err:
            sys.stderr.write(f"config error: {err}\n")
            return EXIT_BAD_CONFIG
        print(f"{config.source}: valid, {len(config.distributors)} distributor(s), {len(config.sites)} site(s); "
              f"smartstatus posts to {config.smartstatus.path}, getad to {config.getad.path}")
        return 0
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from ingest.app import IngestApp

    try:
        # Read first: a web config that cannot be used stops start-up before the port is opened.
        guard = WebGuard(args.web_config, WEB_METRICS, "sitewatch-ingest") if args.web_config else None
        app = IngestApp(args.config, args.listen, args.key_file)
    except ConfigError as err:
        logsetup.fatal(f"config error: {err}")
        return EXIT_BAD_CONFIG
    except StoreError as err:
        logsetup.fatal(f"cannot start: storage: {err}")
        return EXIT_BAD_CONFIG
    except ValueError as err:
        logsetup.fatal(f"cannot start: {err}")
        return EXIT_BAD_CONFIG
    except OSError as err:
        logsetup.fatal(f"cannot start: cannot listen on {args.listen}: {err.strerror or err}")
        return EXIT_BAD_CONFIG
    if guard is not None:
        guard.register(app.metrics.process_registry)
        app.server.protect(guard)  # the file is read again when it changes (exporter.webguard)
    app.handle_signals()
    if guard is not None and hasattr(signal, "SIGHUP"):
        _reread_on_sighup(guard)
    app.start()
    print(f"sitewatch ingest: serving {app.server.scheme}://{_display_host(args.listen)}:{app.server.port}/ "
          f"(smartstatus {app.config.smartstatus.path}, getad {app.config.getad.path})", flush=True)
    app.serve_forever()
    return 0


def _reread_on_sighup(guard: WebGuard) -> None:
    """SIGHUP reloads the ingest config, as before, and has the next connection read the web config again."""
    reload_config = signal.getsignal(signal.SIGHUP)

    def reload_both(signum, frame) -> None:
        guard.read_at_next_connection()
        if callable(reload_config):
            reload_config(signum, frame)

    signal.signal(signal.SIGHUP, reload_both)


def _display_host(listen: str) -> str:
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    sys.exit(main())
