"""`sitewatch-receiver worklist`: the morning worklist now, printed or sent.

Printed (the default), it shows a dispatcher or an admin what each chat would get, read from
Prometheus at this moment (routes that post to one chat and topic share one list, as at the list's time).
With `--send` the lists go into the outbox, and the running receiver delivers them like any message (the
demo sends one this way at start-up). The scheduled list is not affected: it still goes out at its time.
"""

from __future__ import annotations

import argparse
import sys
import time

from prometheus_client import CollectorRegistry

from alertmanager.config import ReceiverConfig
from alertmanager.morning import Morning, chat_of, compose, per_chat
from alertmanager.outbox import Outbox
from alertmanager.preflight import Finding
from alertmanager.telegram_html import html_to_text
from alertmanager.worklist import RouteFinder, WorklistUnavailable, collect
from exporter.redaction import redact

EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2


def add_parser(commands: argparse._SubParsersAction, add_config_options) -> None:
    worklist = commands.add_parser("worklist", help="the morning worklist now: print each route's, or --send it "
                                                    "to the chats through the outbox")
    add_config_options(worklist, "receiver config", log_file=False)
    worklist.add_argument("--route", action="append", metavar="NAME",
                          help="only this route (repeat for several; default: every route with a worklist)")
    worklist.add_argument("--send", action="store_true",
                          help="queue the lists in the outbox; the running receiver delivers them")


def run(config: ReceiverConfig, args: argparse.Namespace) -> int:
    if config.worklist is None:
        sys.stderr.write(f"{config.source}: no worklist section: add worklist.prometheus_url to have lists\n")
        return EXIT_USAGE
    routes = [name for name, route in config.routes.items() if route.worklist is not None]
    if args.route:
        unknown = [name for name in args.route if name not in config.routes]
        if unknown:
            sys.stderr.write(f"no route named {', '.join(unknown)} in {config.source} "
                             f"(routes: {', '.join(config.routes)})\n")
            return EXIT_USAGE
        routes = list(dict.fromkeys(args.route))
    if not routes:
        sys.stderr.write(f"{config.source}: every route has worklist: false\n")
        return EXIT_USAGE
    now = time.time()
    try:
        lists = compose(config, routes, now)
    except WorklistUnavailable as err:
        sys.stderr.write(f"worklist not made: {err}\n")
        return EXIT_UNAVAILABLE
    shared = per_chat(config, list(lists.values()), now)
    if args.send:
        outbox = Outbox(config.outbox_path)
        try:
            sender = Morning(config, outbox, lambda: True, registry=CollectorRegistry())
            for names, worklist in shared:
                sender.queue(worklist, key=f"worklist:{'+'.join(names)}:now:{now:.3f}",
                             routes=[lists[name] for name in names])
                sys.stdout.write(f"queued for {_routes(names)}: {_count(len(worklist.items), 'item')}, "
                                 f"{_count(len(worklist.texts), 'message')}\n")
        finally:
            outbox.close()
        return 0
    for names, worklist in shared:
        chat = chat_of(config.routes[names[0]])
        where = f"{_routes(names)}: chat {chat.chat_id}" + (f", topic {chat.thread_id}" if chat.thread_id else "")
        for text in worklist.texts:
            sys.stdout.write(f"\n──── Telegram → {where} ────\n{html_to_text(text).strip()}\n")
    return 0


def _routes(names: tuple[str, ...]) -> str:
    """"route duty", or "routes duty, kkt (one chat, one list)" for routes that share a chat."""
    return f"route {names[0]}" if len(names) == 1 else f"routes {', '.join(names)} (one chat, one list)"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def check(config: ReceiverConfig) -> list[Finding]:
    """What `check-config` says of the worklist: whether Prometheus answers its queries, whether
    Alertmanager's routing tree can be read, and which routes no receiver of that tree posts to (their
    lists would hold only the sites that name them in a telegram_route label)."""
    settings = config.worklist
    if settings is None:
        return []
    findings = []
    try:
        items = collect(settings, time.time())
        findings.append(Finding("worklist data", True, f"Prometheus at {redact(settings.prometheus_url)} answers: "
                                                       f"{len(items)} item(s) to do now"))
    except WorklistUnavailable as err:
        findings.append(Finding("worklist data", False, str(err)))
    if settings.alertmanager_url is None:
        findings.append(Finding("worklist routing", True, "no Alertmanager URL: every route's list holds every "
                                                          "site (right for a receiver with one chat)"))
        return findings
    try:
        finder = RouteFinder.fetch(settings.alertmanager_url, set(config.routes), settings.timeout)
    except WorklistUnavailable as err:
        findings.append(Finding("worklist routing", False, str(err)))
        return findings
    fed = set().union(*finder.tree.webhook_routes(finder.routes).values())
    findings.append(Finding("worklist routing", True, f"Alertmanager's routing tree read: its receivers post to "
                                                      f"{', '.join(sorted(fed)) or 'no route of this config'}"))
    for name, route in config.routes.items():
        if route.worklist is not None and name not in fed:
            findings.append(Finding(f"worklist of route {name}", True,
                                    f"no Alertmanager receiver posts to /alert/{name}: its list holds only the sites "
                                    f"whose alerts carry telegram_route={name} (worklist: false turns it off)"))
    return findings
