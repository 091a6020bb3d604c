"""``sitewatch-receiver``: serve the Alertmanager webhook for Telegram, check a config against Telegram, or
put a site into planned maintenance (``maintenance add|list|end``) from a technician's shell."""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import logging
import os
import signal
import socket
import sys
import threading
from datetime import datetime, timedelta, timezone, tzinfo

from alertmanager import maintenance, worklist_cli
from alertmanager.app import Receiver, create_app, receiver_of, renderer_for
from alertmanager.chatcommands import CommandProblem, parse_duration
from alertmanager.config import CommandsConfig, ReceiverConfig, load_receiver_config
from alertmanager.delivery import DeliveryProcess, serve_control
from alertmanager.httpfront import FrontServer, Limits, raise_open_files_limit
from alertmanager.maintenance import MaintenanceProblem
from alertmanager.preflight import check_telegram
from alertmanager.render import TemplateProblem, duration_text
from alertmanager.silences import AlertmanagerApi, AlertmanagerError
from alertmanager.telegram import bot_apis
from alertmanager.telegram_html import html_to_text
from exporter import __version__, logsetup, redaction
from exporter.commandline import add_config_options, with_default_command
from exporter.config import ConfigError
from exporter.httpauth import ACCEPTED, BasicAuth, Verdicts
from exporter.server import parse_listen_address
from exporter.webconfig import WebConfig
from exporter.webguard import MetricNames, WebGuard

DEFAULT_LISTEN = ":9816"
EXIT_PROBLEM = 1
EXIT_BAD_CONFIG = 2
log = logging.getLogger("sitewatch.receiver")
WEB_METRICS = MetricNames(auth_failures="sitewatch_receiver_http_auth_failures",
                          handshake_failures="sitewatch_receiver_tls_handshake_failures",
                          reload_successful="sitewatch_receiver_web_config_last_reload_successful")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitewatch-receiver",
        description="Takes Alertmanager's webhooks and delivers them to Telegram chats through a durable outbox.")
    parser.add_argument("--version", action="version", version=f"sitewatch-receiver {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="serve POST /alert/<route>, /metrics, /-/healthy, /-/ready (default)")
    add_config_options(run, "receiver config", log_file=False)
    run.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                     help=f"where to listen (default {DEFAULT_LISTEN}; e.g. 127.0.0.1:9816)")
    run.add_argument("--threads", type=int, default=4,
                     help="threads for /metrics, the status page and health (default 4; webhooks need none)")
    run.add_argument("--web.max-connections", dest="max_connections", type=int, default=1000,
                     help="open connections held at once (default 1000); at the limit a new connection closes "
                          "the one idle or half-sent the longest")
    run.add_argument("--dry-run", action="store_true",
                     help="print messages on standard output instead of sending them to Telegram (demos)")
    run.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                     help="TLS and basic auth for every path, webhooks included, in the web config format of "
                          "Prometheus exporters (docs/security.md)")
    deliver = commands.add_parser("deliver", help="the delivery process that 'run' starts for itself: composes "
                                                  "messages and sends them to Telegram (not for direct use)")
    add_config_options(deliver, "receiver config", log_file=False)
    deliver.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    deliver.add_argument("--control-fd", type=int, required=True, help=argparse.SUPPRESS)
    check = commands.add_parser("check-config", help="validate the config, then ask Telegram about every bot "
                                                     "and route; exit 0 only if all can be used")
    add_config_options(check, "receiver config", log_file=False)
    check.add_argument("--offline", action="store_true", help="only validate the file and its templates")
    worklist_cli.add_parser(commands, add_config_options)
    _maintenance_parser(commands)
    return parser


def _maintenance_parser(commands: argparse._SubParsersAction) -> None:
    works = commands.add_parser("maintenance", help="planned one-off maintenance of a site, kept as an Alertmanager "
                                                    "silence: add, list, end")
    actions = works.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="silence a site (or one check of it) for planned works")
    add.add_argument("site", help="the site, as its alerts' site label names it")
    add.add_argument("words", nargs="*", metavar="DURATION|COMMENT",
                     help="how long (2h, 1d, 30m; not with --until), then the comment (default: без пояснений)")
    add.add_argument("--until", help='the end instead of a duration: "07.12.2026 10:00", "07.12", "пн 10:00"')
    add.add_argument("--check", help="only this check of the site (its check label)")
    listing = actions.add_parser("list", help="maintenance under way, the soonest to end first")
    end = actions.add_parser("end", help="end maintenance early")
    end.add_argument("id", help="its id from 'maintenance list' (the first 4 characters are enough when unique)")
    for action in (add, listing, end):
        action.add_argument("--config", "-c", help="the receiver config: its commands.alertmanager_url, timezone and "
                                                   "commands.max_silence")
        action.add_argument("--key-file", help="key file for enc: values (default: $SITEWATCH_KEY or "
                                               "$SITEWATCH_KEY_FILE)")
        action.add_argument("--alertmanager.url", dest="alertmanager_url",
                            help="Alertmanager's API, such as http://127.0.0.1:9093 (instead of the config's)")


def main(argv: list[str] | None = None) -> int:
    argv = with_default_command(list(sys.argv[1:] if argv is None else argv))
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "action", None) == "add" and not any(w.startswith("--") for w in extra):
        args.words += extra  # argparse gives the comment after "--check kodeks" to no argument
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_CONFIG
    if args.command == "maintenance":
        return _maintenance(args)
    logsetup.configure(args.log_level)
    try:
        config = load_receiver_config(args.config, args.key_file)
        if args.command == "check-config":
            return _check_config(config, args.offline)
        if args.command == "deliver":
            return _deliver(config, args)
        if args.command == "worklist":
            return worklist_cli.run(config, args)
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
    findings = check_telegram(config, bot_apis(config)) + worklist_cli.check(config)
    for finding in findings:
        print(f"{'ok ' if finding.ok else 'BAD'}  {finding.what}: {finding.detail}")
    return 0 if all(finding.ok for finding in findings) else EXIT_PROBLEM


def _serve(config: ReceiverConfig, args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_BAD_CONFIG
    guard = None
    if args.web_config:  # its ConfigError is the caller's exit status 2
        guard = WebGuard(args.web_config, WEB_METRICS, "sitewatch-receiver", fits=lambda web: _fits(config, web))
    app = create_app(config, dry_run=args.dry_run, role="web")
    receiver = receiver_of(app)
    connections = raise_open_files_limit(args.max_connections)
    if connections < args.max_connections:
        log.warning("event=connection_limit_lowered wanted=%d held=%d reason=open_files_limit",
                    args.max_connections, connections)
    limits = Limits(max_connections=connections, max_body=config.max_body)
    if guard is not None:
        guard.register(receiver.metrics.registry)
    front = FrontServer(receiver.desk, app, limits, threads=max(1, args.threads), guard=guard)

    async def serve() -> int:
        try:
            await front.start(host, port)
        except OSError as err:
            sys.stderr.write(f"cannot start: cannot listen on {args.listen}: {err.strerror or err}\n")
            return EXIT_PROBLEM
        receiver.delivery = DeliveryProcess(_delivery_argv(args), receiver.metrics.registry)
        receiver.delivery.start()
        log.info("event=listening address=%s:%s outbox=%s routes=%s dry_run=%s max_connections=%d",
                 host or "0.0.0.0", front.port, config.outbox_path, ",".join(config.routes), args.dry_run,
                 connections)
        scheme = "https" if guard is not None and guard.tls is not None else "http"
        print(f"sitewatch receiver: POST {scheme}://{host or 'localhost'}:{front.port}/alert/<route>", flush=True)
        await front.serve_until_stopped()
        return 0

    try:
        return asyncio.run(serve())
    finally:
        if receiver.delivery is not None:
            receiver.delivery.stop()
        receiver.close()
        log.info("event=stopped")


def _fits(config: ReceiverConfig, web: WebConfig) -> None:
    """Refuses a web config whose users no webhook could satisfy together with the receiver config's own
    webhook auth: a request carries one Authorization header, and both are checked."""
    if not web.users or not config.auth_required:
        return
    if config.bearer_token is not None:
        raise ConfigError(web.source, f"basic_auth_users: expected none while {config.source} has auth.bearer_token: "
                                      "a webhook carries one Authorization header, so it could not pass both. Remove "
                                      "auth from the receiver config (these users then guard the webhooks too)")
    user, password = config.basic_auth
    verdict = BasicAuth(web.users, Verdicts(), web.usual_cost).check(
        "Basic " + base64.b64encode(f"{user}:{password.reveal()}".encode()).decode())
    if verdict != ACCEPTED:
        raise ConfigError(web.source, f"basic_auth_users: expected the user {user!r} of auth.basic_auth in "
                                      f"{config.source}, with the same password: a webhook carries one Authorization "
                                      "header, so it must pass both")


def _delivery_argv(args: argparse.Namespace) -> list[str]:
    """The child's command line: the same config, key and log level; the web server's options are its own."""
    argv = [sys.executable, "-m", "alertmanager.cli", "deliver", "--config", args.config, "--log.level", args.log_level]
    if args.key_file:
        argv += ["--key-file", args.key_file]
    return argv + (["--dry-run"] if args.dry_run else [])


# The delivery process only paces messages to Telegram's limits (seconds); the web process answers
# Alertmanager, whose p99 target is 50 ms. On a busy machine the scheduler should wake the web process first.
DELIVERY_NICENESS = 5


def _yield_to_webhooks() -> None:
    try:
        os.nice(DELIVERY_NICENESS)
    except OSError as err:  # not allowed (a container's policy): the same as before, only less fair
        log.info("event=delivery_nice_refused error=%s", err)


def _deliver(config: ReceiverConfig, args: argparse.Namespace) -> int:
    """The delivery process: sends until the web process closes the control socket or a signal stops it."""
    _yield_to_webhooks()
    receiver = Receiver(config, dry_run=args.dry_run, role="delivery")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopped.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stopped.set())
    receiver.start()
    if not args.dry_run:
        threading.Thread(target=_check_at_start, args=(config, receiver), daemon=True).start()
    threading.Thread(target=serve_control, args=(args.control_fd, receiver.sender.wake, receiver.metrics.registry,
                                                 stopped.set), name="receiver-delivery-control", daemon=True).start()
    stopped.wait()
    receiver.close()
    return 0


def _maintenance(args: argparse.Namespace) -> int:
    """One maintenance action; its result on stdout, or one line on stderr and EXIT_PROBLEM."""
    url = args.alertmanager_url
    try:
        config = load_receiver_config(args.config, args.key_file) if args.config else None
        commands = config.commands if config else None
        url = url or (commands.alertmanager_url if commands else None)
        if not url:
            raise MaintenanceProblem("Не знаю, где Alertmanager: укажите --alertmanager.url или --config с "
                                     "commands.alertmanager_url.")
        zone = (config.timezone if config else None) or maintenance.DEFAULT_ZONE
        longest = commands.max_silence if commands else CommandsConfig.max_silence
        api = AlertmanagerApi(url)
        try:
            if args.action == "add":
                lines = _add_maintenance(api, args, zone, longest)
            elif args.action == "list":
                lines = _list_maintenance(api, zone)
            else:
                lines = _end_maintenance(api, args.id)
        finally:
            api.close()
    except (ConfigError, TemplateProblem) as err:
        return _problem(f"Настройки получателя не годятся: {err}")
    except AlertmanagerError as err:
        return _problem(f"{err}, адрес {redaction.redact(url or '')}")
    except CommandProblem as problem:
        return _problem(html_to_text(str(problem)))
    except MaintenanceProblem as problem:
        return _problem(str(problem))
    print("\n".join(lines))
    return 0


def _problem(text: str) -> int:
    sys.stderr.write(text + "\n")
    return EXIT_PROBLEM


def _add_maintenance(api: AlertmanagerApi, args: argparse.Namespace, zone: tzinfo, longest: float) -> list[str]:
    now = datetime.now(timezone.utc)
    words = list(args.words)
    if args.until:
        if words and _is_duration(words[0]):
            raise MaintenanceProblem(f"Срок {words[0]} и --until вместе не нужны: оставьте что-то одно.")
        written = args.until.split()
        ends, left = maintenance.until(written[1:] if written[:1] == ["до"] else written, now, zone)
        if left:
            raise MaintenanceProblem(f"Не понял --until «{args.until}»: пишите, например, «07.12.2026 10:00» или "
                                     f"«пн 10:00».")
    elif words:
        ends, words = now + timedelta(seconds=parse_duration(words[0], longest)), words[1:]
    else:
        raise MaintenanceProblem("Укажите срок (2h, 1d) или конец: --until \"07.12.2026 10:00\".")
    planned = maintenance.plan(args.site, args.check, ends, " ".join(words), now, zone, longest)
    silence_id, covered = maintenance.start(api, planned, _technician())
    reason = "." if planned.reason == maintenance.DEFAULT_REASON else ": " + maintenance.sentence(planned.reason)
    return [f"Плановые работы {maintenance.where_text(planned.site, planned.check)} объявлены до "
            f"{maintenance.moment_text(ends, zone)} ({duration_text((ends - now).total_seconds())}){reason}",
            maintenance.covered_text(covered),
            f"id {silence_id}",
            f"Закончить раньше: sitewatch-receiver maintenance end {silence_id[:8]}"]


def _is_duration(word: str) -> bool:
    try:
        parse_duration(word, float("inf"))
    except CommandProblem:
        return False
    return True


def _list_maintenance(api: AlertmanagerApi, zone: tzinfo) -> list[str]:
    found = maintenance.current(api)
    if not found:
        return ["Плановых работ сейчас нет."]
    return [f"{s.id[:8]}  до {maintenance.moment_text(s.ends_at, zone)}"
            + (" (ещё не начались)" if s.state == "pending" else "")
            + f" · {maintenance.describe(s)} · {maintenance.reason_of(s)} · {s.created_by}" for s in found]


def _end_maintenance(api: AlertmanagerApi, prefix: str) -> list[str]:
    silence = maintenance.find(api, prefix)
    api.expire_silence(silence.id)
    return [f"Плановые работы {silence.id[:8]} ({maintenance.describe(silence)}) закончены: оповещения снова приходят."]


def _technician() -> str:
    """createdBy of a silence made here: who and where, as amtool's default names the user."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        user = "?"
    return f"{user}@{socket.gethostname()}, командная строка"


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
