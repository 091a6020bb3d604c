"""``sitewatch-receiver``: serve the Alertmanager webhook for Telegram, or check a config against Telegram."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

import waitress

from alertmanager.app import Receiver, create_app, receiver_of, renderer_for
from alertmanager.config import ReceiverConfig, load_receiver_config
from alertmanager.preflight import check_telegram
from alertmanager.render import TemplateProblem
from alertmanager.telegram import bot_apis
from exporter import __version__, logsetup
from exporter.commandline import add_config_options, with_default_command
from exporter.config import ConfigError
from exporter.server import parse_listen_address

DEFAULT_LISTEN = ":9816"
EXIT_PROBLEM = 1
EXIT_BAD_CONFIG = 2
log = logging.getLogger("sitewatch.receiver")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitewatch-receiver",
        description="Takes Alertmanager's webhooks and delivers them to Telegram chats through a durable outbox.")
    parser.add_argument("--version", action="version", version=f"sitewatch-receiver {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="serve POST /alert/<route>, /metrics, /-/healthy, /-/ready (default)")
    add_config_options(run, "receiver config")
    run.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                     help=f"where to listen (default {DEFAULT_LISTEN}; e.g. 127.0.0.1:9816)")
    run.add_argument("--threads", type=int, default=16, help="web server threads (default 16)")
    run.add_argument("--web.max-connections", dest="max_connections", type=int, default=1000,
                     help="open connections served at once (default 1000; Alertmanager keeps one per "
                          "notification in flight, so a flush of many groups opens many)")
    run.add_argument("--dry-run", action="store_true",
                     help="print messages on standard output instead of sending them to Telegram (demos)")
    check = commands.add_parser("check-config", help="validate the config, then ask Telegram about every bot "
                                                     "and route; exit 0 only if all can be used")
    add_config_options(check, "receiver config")
    check.add_argument("--offline", action="store_true", help="only validate the file and its templates")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = with_default_command(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_BAD_CONFIG
    logsetup.configure(args.log_level)
    try:
        config = load_receiver_config(args.config, args.key_file)
        if args.command == "check-config":
            return _check_config(config, args.offline)
        return _serve(config, args)
    except (ConfigError, TemplateProblem) as err:
        sys.stderr.write(f"config error: {err}\n")
        return EXIT_BAD_CONFIG


def _check_config(config: ReceiverConfig, offline: bool) -> int:
    for route in config.routes.values():
        renderer_for(config, route.language, route.template_file, route.timezone)  # loads and checks templates
    print(f"{config.source}: valid, {len(config.bots)} bot(s), {len(config.routes)} route(s)")
    if offline:
        return 0
    findings = check_telegram(config, bot_apis(config))
    for finding in findings:
        print(f"{'ok ' if finding.ok else 'BAD'}  {finding.what}: {finding.detail}")
    return 0 if all(finding.ok for finding in findings) else EXIT_PROBLEM


def _serve(config: ReceiverConfig, args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_BAD_CONFIG
    app = create_app(config, dry_run=args.dry_run)
    receiver = receiver_of(app)
    if not args.dry_run:
        threading.Thread(target=_check_at_start, args=(config, receiver), daemon=True).start()
    try:
        server = waitress.create_server(app, host=host or "0.0.0.0", port=port, threads=args.threads,
                                        connection_limit=args.max_connections, ident="sitewatch-receiver",
                                        clear_untrusted_proxy_headers=True)
    except OSError as err:
        receiver.close()
        sys.stderr.write(f"cannot start: cannot listen on {args.listen}: {err.strerror or err}\n")
        return EXIT_PROBLEM

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # waitress warns on every request that waits for a free thread; in a storm that is thousands of lines
    # saying one thing, which sitewatch_receiver_webhook_duration_seconds already shows.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    log.info("event=listening address=%s:%s outbox=%s routes=%s dry_run=%s", host or "0.0.0.0",
             server.effective_port, config.outbox_path, ",".join(config.routes), args.dry_run)
    print(f"sitewatch receiver: POST http://{host or 'localhost'}:{server.effective_port}/alert/<route>",
          flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        receiver.close()
        log.info("event=stopped")
    return 0


def _check_at_start(config: ReceiverConfig, receiver: Receiver) -> None:
    try:
        findings = check_telegram(config, receiver.sender.apis)
    except Exception:
        log.exception("event=startup_check_failed")
        return
    for finding in findings:
        if finding.what.startswith("route "):
            receiver.metrics.route_usable.labels(finding.what[len("route "):]).set(1 if finding.ok else 0)
        if finding.ok:
            log.info("event=telegram_check what=%r result=ok detail=%r", finding.what, finding.detail)
        else:
            log.error("event=telegram_check what=%r result=problem detail=%r", finding.what, finding.detail)


if __name__ == "__main__":
    sys.exit(main())
