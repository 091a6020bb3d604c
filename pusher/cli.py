"""``sitewatch-pusher``: runs a site's checks and pushes them, with relayed pages, to a Pushgateway or to
a VictoriaMetrics-style import endpoint (VictoriaMetrics, or a vmagent in front of any remote_write store).

``--once`` runs every check once, pushes, prints one line per site and exits (Task Scheduler, cron);
without it the checks keep running on their schedule, so debouncing works, and every ``interval`` (with
jitter) the latest results are pushed. ``--delete`` removes a site's group for good.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from exporter import __version__, logsetup, oneshot, schema
from exporter.commandline import all_problems_hint
from exporter.collector import ExporterStatus
from exporter.config import Config, ConfigError, Site, load_config
from exporter.config.push import PUSH, RELAY
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.scheduler import Scheduler, site_labels
from exporter.secrets import SecretError, SecretValue
from exporter.state import CheckState
from pusher import payload
from pusher.gateway import Gateway
from pusher.importer import ImportEndpoint
from pusher.transport import PushOutcome, Transport
from pusher.relay import RelayResult, read_page

EXIT_PUSH_FAILED = 1
EXIT_USAGE = 2
CLOCK_WARNING = 30.0  # seconds off the server's clock worth a warning
log = logging.getLogger("sitewatch.pusher")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitewatch-pusher",
        description="Runs a site's checks and pushes them, with relayed pages, to a Prometheus Pushgateway "
                    "or a VictoriaMetrics import endpoint.")
    parser.add_argument("--version", action="version", version=f"sitewatch-pusher {__version__}")
    parser.add_argument("--config", "-c", help="the site config (YAML); its `push:` section says where to push")
    parser.add_argument("--site", help="push only this site (with no --config: the site id to push as)")
    parser.add_argument("--from", dest="relay", action="append", default=[], metavar="URL",
                        help="also relay this metrics page (repeatable): a sitewatch exporter, a Кодекс "
                             "server's /sysmon/metrics, windows_exporter")
    parser.add_argument("--gateway", help="the Pushgateway's URL (overrides push.gateway)")
    parser.add_argument("--import-url", dest="import_url",
                        help="push to this VictoriaMetrics-style import endpoint instead, such as "
                             "http://vm:8428/api/v1/import/prometheus (overrides push.import_url)")
    parser.add_argument("--no-checks", dest="no_checks", action="store_true",
                        help="run none of the config's checks: push only the pages of --from and relay:, with the "
                             "config's push settings and site labels (beside an exporter on the same PC that "
                             "runs the checks)")
    parser.add_argument("--job", help="the job in the grouping key (default sitewatch)")
    parser.add_argument("--once", action="store_true", help="run the checks once, push, print a summary, exit")
    parser.add_argument("--delete", action="store_true",
                        help="remove the site's group from the Pushgateway (a Pushgateway only)")
    parser.add_argument("--interval", help="seconds (or 60s, 5m) between pushes in the loop (default 60s)")
    parser.add_argument("--timeout", help="timeout of one push attempt (default 10s)")
    parser.add_argument("--basic-auth-user", help="Pushgateway basic auth user (with --basic-auth-password-file)")
    parser.add_argument("--basic-auth-password-file", help="file holding the basic auth password")
    parser.add_argument("--bearer-token-file", help="file holding a bearer token for the Pushgateway")
    parser.add_argument("--ca-file", help="CA certificates (PEM) to verify the Pushgateway with")
    parser.add_argument("--insecure", action="store_true", help="do not verify the Pushgateway's TLS certificate")
    parser.add_argument("--proxy", help="HTTP(S) proxy URL (HTTP_PROXY/HTTPS_PROXY/NO_PROXY are honoured too)")
    parser.add_argument("--key-file", help="key file for enc: values in the config")
    logsetup.add_log_options(parser)
    return parser


class UsageError(Exception):
    pass


def _file_secret(path: str, what: str) -> SecretValue:
    secret = SecretValue("file", path, what)
    try:
        secret.resolve(Path.cwd(), None)  # type: ignore[arg-type]
    except SecretError as err:
        raise UsageError(f"{what}: {err}") from None
    return secret


def push_settings(args: argparse.Namespace, config: Config | None) -> dict[str, Any]:
    """The config's push section with the command line's overrides, validated like the file."""
    raw: dict[str, Any] = {}
    for key, value in (("gateway", args.gateway), ("import_url", args.import_url), ("job", args.job),
                       ("interval", args.interval), ("timeout", args.timeout), ("proxy", args.proxy)):
        if value is not None:
            raw[key] = value
    if args.gateway and args.import_url:
        raise UsageError("push to one place: --gateway (a Pushgateway) or --import-url, not both")
    if args.ca_file:
        raw["tls"] = {"verify": not args.insecure, "ca_file": args.ca_file}
    base = dict(config.push) if config and config.push else {}
    if raw.get("gateway") or raw.get("import_url"):  # the command line's destination replaces the file's
        base.pop("gateway", None)
        base.pop("import_url", None)
    destination = {key: raw.get(key) or base.get(key) for key in ("gateway", "import_url")}
    destination = {key: value for key, value in destination.items() if value}
    if not destination:
        raise UsageError("nowhere to push: set push.gateway (or push.import_url) in the config, "
                         "or --gateway URL (or --import-url URL)")
    overrides = PUSH({**destination, **{k: v for k, v in raw.items() if k not in destination}}, "command line")
    settings = {**base, **{k: overrides[k] for k in raw}, **{k: overrides[k] for k in destination}}
    for key, default in (("job", "sitewatch"), ("interval", 60.0), ("timeout", 10.0)):
        settings.setdefault(key, default)
    if args.basic_auth_user:
        if not args.basic_auth_password_file:
            raise UsageError("--basic-auth-user needs --basic-auth-password-file")
        settings["basic_auth"] = {"username": args.basic_auth_user,
                                  "password": _file_secret(args.basic_auth_password_file, "--basic-auth-password-file")}
    if args.bearer_token_file:
        settings["bearer_token"] = _file_secret(args.bearer_token_file, "--bearer-token-file")
    tls = dict(settings.get("tls") or {"verify": True, "ca_file": None})
    if args.insecure:
        tls["verify"] = False
    settings["tls"] = tls
    if settings.get("basic_auth") and settings.get("bearer_token"):
        raise UsageError("one kind of credentials: basic auth or a bearer token, not both")
    settings["timeout"] = min(settings["timeout"], settings["interval"] * 0.5)  # a push never outlives its turn
    return settings


def destination(settings: dict[str, Any]) -> Gateway | ImportEndpoint:
    return ImportEndpoint(settings) if settings.get("import_url") else Gateway(settings)


def chosen_sites(args: argparse.Namespace, config: Config | None) -> list[Site]:
    if config is None:
        if not args.site:
            raise UsageError("without --config, say which site the relayed pages belong to: --site ID")
        for index, url in enumerate(args.relay):
            RELAY([url], f"--from[{index}]")
        schema.string(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", "a site id")(args.site, "--site")
        return [Site(id=args.site, labels=(), timezone=None, checks=(), relay=tuple(args.relay))]
    sites = list(config.sites)
    if args.site:
        sites = [site for site in sites if site.id == args.site]
        if not sites:
            known = ", ".join(site.id for site in config.sites)
            raise UsageError(f"{config.source}: no site with id {args.site!r} (the config has: {known})")
    for index, url in enumerate(args.relay):
        RELAY([url], f"--from[{index}]")
    if args.relay:
        if len(sites) != 1:
            raise UsageError("--from needs one site to relay for: add --site ID")
        sites = [Site(sites[0].id, sites[0].labels, sites[0].timezone, sites[0].checks,
                      sites[0].relay + tuple(args.relay))]
    if args.no_checks:
        # An exporter on the same PC runs the checks; running them here too would open a register's port
        # twice and push every series twice.
        sites = [Site(site.id, site.labels, site.timezone, (), site.relay) for site in sites]
        if not all(site.relay for site in sites):
            raise UsageError("--no-checks pushes only relayed pages: give --from URL (the local exporter's "
                             "/metrics, e.g. http://127.0.0.1:9815/metrics) or relay: in the config")
    return sites


class Pusher:
    """Pushes sites with what their checks last found; remembers each site's last success."""

    def __init__(self, gateway: Gateway | ImportEndpoint, settings: dict[str, Any]):
        self.gateway = gateway
        self.settings = settings
        self.status = ExporterStatus()
        self._logged: dict[str, str] = {}
        self._clock_logged = False

    def push_site(self, site: Site, states: list[CheckState], budget: float) -> tuple[PushOutcome, int,
                                                                                         list[RelayResult]]:
        relays = [read_page(url, self.settings["timeout"]) for url in site.relay]
        merged = payload.merge(site, payload.site_families(site, states, self.status), relays)
        series = payload.count_series(merged)
        # The group only changes if this PUT succeeds, so the time of this push is true whenever it is seen.
        # It is the server's time where an earlier answer told it: a site's clock that is minutes off would
        # otherwise make a reporting site look silent, or its samples land outside the queries' look-back.
        pushed_at = self.gateway.now()
        own = payload.pusher_families(pushed_at, series, relays, self.gateway.clock_offset)
        families = merged + own
        if self.gateway.timestamps:
            families = payload.stamp(families, pushed_at)
        outcome = self.gateway.push(site.id, payload.encode(families), budget)
        self._log_change(site.id, outcome, relays)
        self._log_clock()
        return outcome, series, relays

    def _log_clock(self) -> None:
        offset = self.gateway.clock_offset
        off = offset is not None and abs(offset) >= CLOCK_WARNING
        if off != self._clock_logged:
            if off:
                log.warning("event=clock_off offset_seconds=%.0f server=%s note=%r", offset, self.gateway.url,
                            "this machine's clock is off the server's; pushes are stamped with the server's "
                            "time; set the clock right (Windows Time service, NTP)")
            else:
                log.info("event=clock_ok server=%s", self.gateway.url)
            self._clock_logged = off

    def _log_change(self, site_id: str, outcome: PushOutcome, relays: list[RelayResult]) -> None:
        # One line when something starts or stops going wrong, not one per push.
        problems = [] if outcome.ok else [f"{outcome.reason}: {outcome.message}"]
        problems += [f"relay {r.url}: {r.error}" for r in relays if r.error]
        problem = "; ".join(problems)
        if problem != self._logged.get(site_id, ""):
            if problem:
                log.warning("event=push_problem site=%s problem=%r", site_id, problem)
            else:
                log.info("event=push_ok site=%s", site_id)
            self._logged[site_id] = problem


def summary(site: Site, gateway: Transport, outcome: PushOutcome, series: int, relays: list[RelayResult]) -> str:
    relay_note = "".join(f"; not relayed: {r.error}" for r in relays if r.error)
    if outcome.ok:
        return (f"{site.id}: pushed {series} series to {gateway.url} in {outcome.elapsed * 1000:.0f} ms"
                f"{relay_note}")
    tries = f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""
    return f"{site.id}: NOT pushed{tries}: {outcome.reason}: {outcome.message}{relay_note}"


def _states_from_one_run(config: Config, sites: list[Site]) -> list[CheckState]:
    checks = [check for site in sites for check in site.checks]
    results, _ = oneshot.run_checks(checks)
    states = []
    for check, result in zip(checks, results, strict=True):
        state = CheckState(check, site_labels(config, check))
        state.record(result)
        state.up = result.success  # one run, no history: nothing to debounce with
        states.append(state)
    return states


def run_once(pusher: Pusher, config: Config | None, sites: list[Site]) -> int:
    states = _states_from_one_run(config, sites) if config else []
    failed = 0
    for site in sites:
        outcome, series, relays = pusher.push_site(site, states, budget=pusher.settings["interval"])
        print(summary(site, pusher.gateway, outcome, series, relays), flush=True)
        failed += not outcome.ok
    return EXIT_PUSH_FAILED if failed else 0


def run_delete(gateway: Gateway, sites: list[Site]) -> int:
    failed = 0
    for site in sites:
        outcome = gateway.delete(site.id, budget=30.0)
        print(f"{site.id}: group deleted from {gateway.url}" if outcome.ok else
              f"{site.id}: NOT deleted: {outcome.reason}: {outcome.message}", flush=True)
        failed += not outcome.ok
    return EXIT_PUSH_FAILED if failed else 0


def run_loop(pusher: Pusher, config: Config | None, sites: list[Site]) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine, http = PingEngine(), HttpClient()
    scheduler = Scheduler(engine, http)
    if config is not None:
        engine.open()
        engine.start()
        scheduler.apply(Config(config.source, tuple(sites), config.push))
        scheduler.start()
    interval = pusher.settings["interval"]
    log.info("event=started gateway=%s sites=%d interval=%gs", pusher.gateway.url, len(sites), interval)
    # The first push waits for the checks' first results (spread over a few seconds at start).
    next_push = time.monotonic() + min(interval, 5.0)
    try:
        while not stop.wait(max(0.0, next_push - time.monotonic())):
            states = scheduler.snapshot()
            for site in sites:  # the round, retries included, fits in one interval
                pusher.push_site(site, states, budget=interval * 0.8 / len(sites))
            next_push += interval * random.uniform(0.9, 1.1)  # jitter: a fleet does not push in step
            next_push = max(next_push, time.monotonic() + 1)
    finally:
        if config is not None:
            scheduler.stop()
            engine.stop()
        http.close()
    log.info("event=stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not logsetup.configure_from(args):
        return EXIT_USAGE
    try:
        config = load_config(args.config, args.key_file) if args.config else None
        if config is None and not args.relay and not args.delete:
            raise UsageError("nothing to push: give --config with the site's checks, or --from URL to relay")
        settings = push_settings(args, config)
        sites = chosen_sites(args, config)
    except ConfigError as err:
        logsetup.fatal(f"config error: {err}{all_problems_hint(len(err.problems))}")
        return EXIT_USAGE
    except (UsageError, schema.Invalid) as err:
        logsetup.fatal(f"error: {err}")
        return EXIT_USAGE
    gateway = destination(settings)
    if args.delete:
        if not isinstance(gateway, Gateway):
            sys.stderr.write("error: --delete removes a Pushgateway group; an import endpoint keeps what it was "
                             "sent until its retention ends (a site that stops pushing drops out of queries "
                             "after five minutes)\n")
            return EXIT_USAGE
        return run_delete(gateway, sites)
    pusher = Pusher(gateway, settings)
    checking = None if args.no_checks else config  # nothing to run: no ICMP socket, no scheduler
    return run_once(pusher, checking, sites) if args.once else run_loop(pusher, checking, sites)


if __name__ == "__main__":
    sys.exit(main())
