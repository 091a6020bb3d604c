"""The dispatcher's worklist: what needs doing at the sites, read from Prometheus, and which chats get what.

`collect` asks Prometheus's query API one question per kind of work (alertmanager/workitem.py KINDS), and
three lookups (the OFD backlog's oldest document, failed checks' reasons, registers' models), all at the
time given, and turns the answers into WorkItems. The questions are those of the "today" Grafana
board (grafana/dashboards/today.json) without its distributor/client filters, with the limits of the
receiver config's `worklist:` section (fn_days, licence_days, down_for):

- fn_expiry      a ФН expiring within fn_days, or already expired; due = its expiry.
- ofd_backlog    documents the OFD has not confirmed, the oldest older than down_for (or, when the register
                 gives no date, waiting now and down_for ago: a document normally leaves in seconds, so a
                 count of the moment is no work); since = the oldest, due = 30 days after it (the ФН blocks).
- site_silent    a pushing site whose last report is older than down_for (sitewatch:site_last_report_...),
                 or a check another tool uploads for (sitewatch-ingest) with no upload for down_for.
- check_down     a check down now that has not passed for down_for (one that never passed since the exporter
                 started must have been down down_for ago too); since = its last success, with the reason of
                 its latest failed run. A getad/iiko_log check whose log shows a new ФН is
                 FnReplacedNotReread's (not work for the list); a Кодекс check whose page was read fails on
                 a catalog, which catalog_error tells.
- kkt_not_read   a register whose data is older than down_for, from every check that reads it; since = its
                 last read, with the reason its check gives now.
- kodeks_licence / kkt_licence   expiring within licence_days, or expired (ATOL's "unlimited" is not a date).
- catalog_error  a Кодекс catalog whose main page is built with an error or whose bundle control complains.

Opening hours: what stopped with the site's closing is not work. The judgement is the alert rules' own
(prometheus/rules/hours.yml): a check whose failure began in the site's quiet span
(sitewatch:check_quiet_expected), a site whose last push fell in the quiet span it is in now
(sitewatch:site_quiet_push_timestamp_seconds), a register whose data aged past down_for only after the
site closed (as KktDataStale does, against sitewatch:site_closed_since_timestamp_seconds). A site closed
by its hours is not dropped as such: a PC that died on Wednesday at noon is on Thursday's list even when
the list goes out at 08:30, before the shop opens.

A register two checks read (a kkt check and a getad log of the same till) is one register: its ФН,
backlog, licences and reading are listed once (WorkItem.key leaves the check out for them).

One cause, one line: a silent site's checks, registers and catalogs are not listed as well (nothing is
read from a site that sends nothing; a silent uploaded check hides only its own items), nor are a site's
other checks and catalogs while a ping check of it is down (as the PcUnreachable inhibition in
alertmanager/alertmanager.yml does), nor a register check that is down when its registers are listed as
not read. Dates that stay true without fresh data (ФН, licences, the OFD backlog) stay on the list.

`RouteFinder` runs Alertmanager's routing tree (routing_tree.py) on an item's alert labels and maps the
receivers reached to sitewatch-receiver's routes; `for_routes` gives each route its items.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import requests

from alertmanager.config import WorklistConfig
from alertmanager.prometheus_query import PrometheusError, Sample, instant_query
from alertmanager.routing_tree import HIDDEN, RoutingTree, RoutingTreeError, route_of_url
from alertmanager.workitem import DAY, OFD_BLOCKS_AFTER, WorkItem
from exporter.redaction import redact

log = logging.getLogger("sitewatch.receiver")

ROUTE_LABEL = "telegram_route"  # an alert's own route, which the receiver follows whatever the webhook
# The labels every item keeps: its site, whom it belongs to, and the route label the receiver follows.
SITE_LABELS = "site, client, distributor, telegram_route"
LICENCE_NEVER_ENDS = 2147000000  # ATOL's "unlimited" licence is 2038-01-19: never treated as a date
# Kinds a silent site (or silent uploaded check) says nothing new about: their data is as old as the silence.
SILENCED_KINDS = frozenset({"check_down", "kkt_not_read", "catalog_error"})
# What a site's PC being unreachable explains (alertmanager.yml inhibits these alerts under PcUnreachable).
UNREACHABLE_EXPLAINS = frozenset({"tcp", "http", "kodeks", "kkt"})


class WorklistUnavailable(Exception):
    """The worklist cannot be made now. str() says why for the log (English); `russian` says it for the chat."""

    def __init__(self, message: str, russian: str):
        super().__init__(message)
        self.russian = russian


def queries(settings: WorklistConfig) -> dict[str, str]:
    """The PromQL of each question `collect` asks, by name: the kinds, and the lookups."""
    down_seconds = max(60, int(settings.down_for))
    down = f"{down_seconds}s"
    fn_horizon = int(settings.fn_days * DAY)
    licence_horizon = int(settings.licence_days * DAY)
    return {
        "fn_expiry": f"max by ({SITE_LABELS}, check, kkt, fn) "
                     f"(sitewatch_fn_expiry_timestamp_seconds < time() + {fn_horizon} > 0)",
        "ofd_backlog": f"""
            max by ({SITE_LABELS}, check, kkt) (sitewatch_fn_unsent_documents > 0)
            and on(site, check, kkt) (
              (sitewatch_fn_oldest_unsent_document_timestamp_seconds < time() - {down_seconds} > 0)
              or on(site, check, kkt)
              ((sitewatch_fn_unsent_documents offset {down} > 0)
                unless on(site, check, kkt) (sitewatch_fn_oldest_unsent_document_timestamp_seconds > 0))
            )""",
        "ofd_oldest": "max by (site, check, kkt) (sitewatch_fn_oldest_unsent_document_timestamp_seconds > 0)",
        "site_silent": f"""
            (
              (max by ({SITE_LABELS}) (sitewatch:site_last_report_timestamp_seconds) < time() - {down_seconds})
              unless on(site) sitewatch:site_quiet_push_timestamp_seconds
            )
            or
            (max by ({SITE_LABELS}, check, source) (sitewatch_ingest_last_upload_timestamp_seconds)
              < time() - {down_seconds})""",
        # Down for down_for: no passed run since then (a check that never passed since the exporter started
        # was down down_for ago as well), and down now.
        "check_down": f"""
            (
              max by ({SITE_LABELS}, check, type)
                (sitewatch_check_last_success_timestamp_seconds < time() - {down_seconds})
              and on(site, check) (sitewatch_check_up == 0)
              and on(site, check) ((sitewatch_check_last_success_timestamp_seconds > 0)
                                   or on(site, check) (sitewatch_check_up offset {down} == 0))
            )
            unless on(site, check) sitewatch:check_quiet_expected
            unless on(site, check) sitewatch_check_failure_info{{reason="fn_mismatch"}}
            unless on(site, check) (sitewatch_kodeks_maintenance == 0)""",
        "kkt_not_read": f"""
            max by ({SITE_LABELS}, check, kkt) (sitewatch_kkt_data_timestamp_seconds < time() - {down_seconds})
            unless on(site, kkt) (sitewatch_kkt_data_timestamp_seconds >= time() - {down_seconds})
            unless on(site, kkt) ((sitewatch_kkt_data_timestamp_seconds + {down_seconds})
                                  >= on(site) group_left sitewatch:site_closed_since_timestamp_seconds)""",
        "kodeks_licence": f"min by ({SITE_LABELS}, check) "
                          f"(sitewatch_kodeks_licence_expiry_timestamp_seconds < time() + {licence_horizon} > 0)",
        "kkt_licence": f"min by ({SITE_LABELS}, check, kkt, licence, name) "
                       f"(sitewatch_kkt_licence_expiry_timestamp_seconds < time() + {licence_horizon} > 0) "
                       f"< {LICENCE_NEVER_ENDS}",
        "catalog_error": f"""
            label_replace(max by ({SITE_LABELS}, check, catalog) (sitewatch_kodeks_main_page_ok == 0),
                          "reason", "main_page", "", "")
            or
            label_replace(max by ({SITE_LABELS}, check, catalog) (sitewatch_kodeks_product_control_ok == 0),
                          "reason", "product_control", "", "")""",
        # Lookups: the latest failed run's reason of each failing check, and each register's model (the
        # oldest unsent document is looked up above).
        "reasons": "topk by (site, check) (1, timestamp(sitewatch_check_failure_info))",
        "models": "max by (site, kkt, model) (sitewatch_kkt_info)",
    }


def collect(settings: WorklistConfig, now: float) -> list[WorkItem]:
    """Every item of work at `now` (unix time), in no particular order; raises WorklistUnavailable.

    An answer Prometheus gives with warnings (part of its data could not be read: a remote storage down)
    is used, and each warning logged: a list that may lack an item beats no list, and the log says why."""
    answers: dict[str, list[Sample]] = {}
    with requests.Session() as session:
        for name, expr in queries(settings).items():
            try:
                answers[name] = answer = instant_query(settings.prometheus_url, _one_line(expr), at=now,
                                                       timeout=settings.timeout, session=session)
            except PrometheusError as err:
                raise WorklistUnavailable(f"the worklist cannot be made: {err} (question {name})",
                                          _russian_problem(err, settings.timeout)) from None
            for warning in answer.warnings:
                log.warning("event=worklist_partial_data question=%s prometheus=%s warning=%r action=listed_anyway",
                            name, redact(settings.prometheus_url), warning)
    return _unique(one_cause_one_line(_items(answers, now)), now)


def _items(answers: dict[str, list[Sample]], now: float) -> list[WorkItem]:
    reasons = {(s.labels.get("site", ""), s.labels.get("check", "")): s.labels.get("reason", "")
               for s in answers["reasons"]}
    models = {(s.labels.get("site", ""), s.labels.get("kkt", "")): s.labels.get("model", "")
              for s in answers["models"]}
    oldest = {_where(s, "check", "kkt"): s.value for s in answers["ofd_oldest"]}
    items: list[WorkItem] = []

    def add(kind: str, sample: Sample, **facts: Any) -> None:
        labels = {k: v for k, v in sample.labels.items() if k not in ("site", "reason") and v}
        model = models.get((sample.labels.get("site", ""), labels.get("kkt", "")))
        if model and "kkt" in labels:
            labels["model"] = model
        items.append(WorkItem(kind=kind, site=sample.labels.get("site", ""), labels=labels, **facts))

    def moment(value: float) -> float | None:
        return value if math.isfinite(value) and value > 0 else None

    def reason_of(sample: Sample) -> str | None:
        return reasons.get((sample.labels.get("site", ""), sample.labels.get("check", ""))) or None

    for sample in answers["fn_expiry"]:
        add("fn_expiry", sample, due=moment(sample.value))
    for sample in answers["ofd_backlog"]:
        since = moment(oldest.get(_where(sample, "check", "kkt"), 0.0))
        add("ofd_backlog", sample, count=sample.value if math.isfinite(sample.value) else None, since=since,
            due=since + OFD_BLOCKS_AFTER if since is not None else None)
    for sample in answers["site_silent"]:
        add("site_silent", sample, since=moment(sample.value))
    for sample in answers["check_down"]:
        add("check_down", sample, since=moment(sample.value), reason=reason_of(sample))
    for sample in answers["kkt_not_read"]:
        add("kkt_not_read", sample, since=moment(sample.value), reason=reason_of(sample))
    for kind in ("kodeks_licence", "kkt_licence"):
        for sample in answers[kind]:
            add(kind, sample, due=moment(sample.value))
    catalogs: dict[tuple[str, ...], list[Sample]] = {}
    for sample in answers["catalog_error"]:
        catalogs.setdefault(_where(sample, "check", "catalog"), []).append(sample)
    for found in catalogs.values():  # one item per catalog: its main page first, then its bundle
        said = sorted({s.labels.get("reason", "") for s in found}, key=["main_page", "product_control"].index)
        add("catalog_error", found[0], reason=",".join(said))
    return items


def one_cause_one_line(items: list[WorkItem]) -> list[WorkItem]:
    """Items without those another item of the same site already explains (see the module's docstring)."""
    silent_sites = {item.site for item in items if item.kind == "site_silent" and not item.labels.get("check")}
    silent_checks = {(item.site, item.labels["check"]) for item in items
                     if item.kind == "site_silent" and item.labels.get("check")}
    unreachable = {item.site for item in items if item.kind == "check_down" and item.labels.get("type") == "ping"}
    unread_checks = {(item.site, item.labels.get("check", "")) for item in items if item.kind == "kkt_not_read"}
    kept = []
    for item in items:
        check = (item.site, item.labels.get("check", ""))
        if item.kind in SILENCED_KINDS and (item.site in silent_sites or check in silent_checks):
            continue
        if item.site in unreachable and (
                (item.kind == "check_down" and item.labels.get("type") in UNREACHABLE_EXPLAINS)
                or item.kind == "catalog_error"):
            continue
        if item.kind == "check_down" and check in unread_checks:
            continue
        kept.append(item)
    return kept


def _unique(items: list[WorkItem], now: float) -> list[WorkItem]:
    """One item per key: a series seen under two label sets (a site whose route label just changed), or a
    register two checks read, is the same work once. The more urgent of the two is kept; of a register
    that is not read, the latest reading, as no check has read it since."""
    def preference(item: WorkItem) -> tuple[Any, ...]:
        latest_read = -(item.since or 0.0) if item.kind == "kkt_not_read" else 0.0
        return (latest_read, item.urgency(now), sorted(item.labels.items()))

    chosen: dict[str, WorkItem] = {}
    for item in sorted(items, key=preference):
        chosen.setdefault(item.key, item)
    return list(chosen.values())


def _where(sample: Sample, *names: str) -> tuple[str, ...]:
    return (sample.labels.get("site", ""), *(sample.labels.get(name, "") for name in names))


def _one_line(expr: str) -> str:
    return " ".join(expr.split())


def _russian_problem(err: PrometheusError, timeout: float) -> str:
    if err.cause == "unreachable":
        why = "сервер мониторинга недоступен"
    elif err.cause == "unavailable":
        why = "сервер мониторинга временно недоступен"
    elif err.cause == "timeout":
        why = f"сервер мониторинга не ответил за {timeout:g} с"
    else:
        why = "сервер мониторинга не смог ответить на запрос"
    return f"⚠️ Список дел не составлен: {why}. Подробности — в журнале получателя."


# --- which chats get which items ------------------------------------------------------------------------

class RouteFinder:
    """Alertmanager's routing tree, read once, answering which of sitewatch-receiver's routes an alert with
    given labels reaches; an alert's own `telegram_route` label, naming a known route, wins as it does in
    the receiver (for an alert that reaches the receiver through any of its webhooks)."""

    def __init__(self, tree: RoutingTree, routes: Iterable[str]):
        self.tree = tree
        self.routes = frozenset(routes)
        self._receiver_routes = tree.webhook_routes(self.routes)
        # Receivers that post to the receiver at all (to a route it knows or not): an alert reaching one
        # of them is delivered by its telegram_route label.
        self._feeding = {name for name, receiver in tree.receivers.items() if _feeds_receiver(receiver)}
        self._feeding |= set(self._receiver_routes)
        # Alertmanager 0.26 and later show no webhook URL (<secret>): a receiver is then known by its name
        # only, and one named otherwise would take its sites' items off every list without a word.
        unnamed = sorted(tree.hidden_receivers() - set(self._receiver_routes))
        if unnamed:
            log.warning("event=worklist_receivers_unnamed receivers=%s routes=%s hint=%r", ",".join(unnamed),
                        ",".join(sorted(self.routes)), "Alertmanager hides these receivers' webhook URLs, so the "
                        "worklist cannot tell which route they post to; if one posts to sitewatch-receiver, name "
                        "it after its route (telegram-<route>), or its items are on no list")

    @classmethod
    def from_yaml(cls, text: str, routes: Iterable[str], source: str = "the Alertmanager config") -> RouteFinder:
        try:
            return cls(RoutingTree.from_yaml(text, source), routes)
        except RoutingTreeError as err:
            raise WorklistUnavailable(f"the worklist cannot be routed: {err}",
                                      "⚠️ Список дел не разослан: не удалось прочитать дерево маршрутов "
                                      "сервера оповещений. Подробности — в журнале получателя.") from None

    @classmethod
    def fetch(cls, alertmanager_url: str, routes: Iterable[str], timeout: float = 30.0) -> RouteFinder:
        """Reads the running Alertmanager's config (GET /api/v2/status, config.original); raises
        WorklistUnavailable when it cannot be had or read."""
        where = f"Alertmanager at {redact(alertmanager_url)}"
        problem = "⚠️ Список дел не разослан: сервер оповещений {}. Подробности — в журнале получателя."
        try:
            response = requests.get(alertmanager_url.rstrip("/") + "/api/v2/status", timeout=timeout)
        except requests.Timeout:
            raise WorklistUnavailable(f"the worklist cannot be routed: {where} did not answer within {timeout:g} s",
                                      problem.format(f"не ответил за {timeout:g} с")) from None
        except requests.RequestException as err:
            raise WorklistUnavailable(f"the worklist cannot be routed: {where} cannot be reached "
                                      f"({type(err).__name__})", problem.format("недоступен")) from None
        if response.status_code != 200:
            detail = redact(" ".join(response.text.split())[:200])
            raise WorklistUnavailable(f"the worklist cannot be routed: {where} answered HTTP "
                                      f"{response.status_code}: {detail or '(empty)'}",
                                      problem.format("отказал в запросе")) from None
        try:
            original = response.json()["config"]["original"]
            if not isinstance(original, str):
                raise TypeError("config.original is not a string")
        except (ValueError, KeyError, TypeError) as err:
            raise WorklistUnavailable(f"the worklist cannot be routed: {where} answered /api/v2/status without "
                                      f"its config ({err})", problem.format("ответил непонятно")) from None
        return cls.from_yaml(original, routes, f"{where}: config.original")

    def routes_for(self, labels: dict[str, str]) -> set[str]:
        receivers = self.tree.receivers_for(labels)
        labelled = labels.get(ROUTE_LABEL, "")
        if labelled in self.routes and any(name in self._feeding for name in receivers):
            return {labelled}
        found: set[str] = set()
        for name in receivers:
            found |= self._receiver_routes.get(name, set())
        return found


def for_routes(items: Iterable[WorkItem], finder: RouteFinder, now: float | None = None) -> dict[str, list[WorkItem]]:
    """Each route the finder knows -> its items (a route with nothing to do gets an empty list). `now` gives
    each item the severity its alert would have then, which the tree may route on; without it, the
    kind's usual severity."""
    found: dict[str, list[WorkItem]] = {route: [] for route in sorted(finder.routes)}
    for item in items:
        for route in sorted(finder.routes_for(item.alert_labels(now))):
            found[route].append(item)
    return found


def _feeds_receiver(receiver: dict[str, Any]) -> bool:
    for webhook in receiver.get("webhook_configs") or []:
        url = webhook.get("url") if isinstance(webhook, dict) else None
        if isinstance(url, str) and url.strip() != HIDDEN and route_of_url(url) is not None:
            return True
    return False
