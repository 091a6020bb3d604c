"""What the bot answers to a command typed in a chat: /status, /alerts, /silence, /maintenance, /silences,
/unsilence, /targets, /add, /del, /help.

Each command turns into Telegram HTML (every value escaped) split into messages that fit Telegram's
limit; alerts and silences come from Alertmanager's API, devices from the central exporter's targets file.
Who may ask, and in which chat, is decided before this module is called (botpoll.py); this module only
answers, and shows a chat only the alerts routed to it (a private chat no route posts to: every alert).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from alertmanager import maintenance
from alertmanager.config import CommandsConfig, ReceiverConfig
from alertmanager.maintenance import MaintenanceProblem
from alertmanager.render import duration_text, isolated, plural
from alertmanager.routing_tree import route_named
from alertmanager.wording import title, word
from alertmanager.silences import AlertmanagerApi, AlertmanagerError, Silence, equal_matcher, exact_matchers
from alertmanager.telegram_html import MESSAGE_LIMIT, html_to_text, message_length
from exporter.config import ConfigError, open_targets
from exporter.targets import TargetsError, TargetsFile

SEVERITY_MARKS = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
DURATION_UNITS = {"m": 60, "min": 60, "мин": 60, "м": 60, "h": 3600, "ч": 3600, "d": 86400, "д": 86400,
                  "w": 604800, "н": 604800}
_DURATION = re.compile(r"(\d+)\s*(min|мин|[mhdwмчдн])", re.IGNORECASE)
SHORT_ID = 8  # characters of a silence id or an alert fingerprint shown and accepted
MIN_PREFIX = 4
NO_ALERTS_HERE = ("В этот чат бот не присылает оповещений, поэтому не показывает их и здесь. Все оповещения можно "
                  "посмотреть в личном чате с ботом, если он отвечает вам там.")
MAINTENANCE_USAGE = ("Пишите: <code>/maintenance площадка [проверка] срок|до когда [комментарий]</code>, например "
                     "<code>/maintenance shop-01 2h Кодекс обновляется</code> или "
                     "<code>/maintenance shop-01 до 07.12 10:00 ремонт</code>.")

HELP = """<b>Команды sitewatch</b>
/status — что горит сейчас в оповещениях этого чата, по площадкам
/today — что сделать сегодня на площадках этого чата: ФН, ОФД, кассы, лицензии
/alerts — все активные оповещения с их номерами (и заглушённые)
/silence <i>площадка|#номер|алерт</i> <i>срок</i> [комментарий] — заглушить, \
например <code>/silence shop-01 4h плановые работы</code>
/maintenance <i>площадка</i> [<i>проверка</i>] <i>срок</i>|до <i>когда</i> [комментарий] — плановые работы, \
например <code>/maintenance shop-01 до пн 10:00 ремонт</code>
/silences — действующие тишины
/unsilence <i>id</i> — снять тишину
/targets — устройства центрального экспортёра
/add <i>адрес</i> <i>имя</i> [tcp:порт|URL …] — добавить устройство (ping)
/del <i>имя|id</i> — удалить устройство
/help — эта справка
Срок: 30m, 4h, 2d, 1w (или 30мин, 4ч, 2д, 1н). Когда: пн…вс, 07.12 или 07.12.2026, можно со временем: до 07.12 10:00."""


class CommandProblem(Exception):
    """The command cannot be done as typed; str() is the answer to show (HTML-safe)."""


@dataclass(frozen=True)
class Asker:
    """Who typed the command, and where."""
    chat_id: int
    user_id: int
    name: str  # "@username", or the first name when there is no username
    private: bool = False  # the asker's private chat with the bot
    thread_id: int | None = None  # the forum topic it was typed in

    @property
    def created_by(self) -> str:
        return f"Telegram {self.name} ({self.user_id})"


def parse_duration(text: str, maximum: float) -> float:
    """Seconds in "4h", "1d12h", "30мин"; CommandProblem when it is not a duration or out of range."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not parts or _DURATION.sub("", compact).strip():
        raise CommandProblem(f"Не понял срок {html.escape(text)!s}: пишите 30m, 4h, 2d или 1w.")
    seconds = sum(int(number) * DURATION_UNITS[unit.lower()] for number, unit in parts)
    if seconds < 60:
        raise CommandProblem("Срок тишины — не меньше минуты.")
    if seconds > maximum:
        raise CommandProblem(f"Срок тишины — не больше {duration_text(maximum)}.")
    return float(seconds)


def split_messages(lines: Sequence[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Lines joined into as few messages as fit `limit`; a message never ends inside a line (so inside a tag)."""
    messages: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        length = message_length(line)
        if length > limit:  # a huge annotation or comment: its visible text, cut, so no tag is left open
            line = html.escape(html_to_text(line)[: limit // 2]) + "…"
            length = message_length(line)
        if current and size + 1 + length > limit:
            messages.append("\n".join(current))
            current, size = [], 0
        size += length + (1 if current else 0)
        current.append(line)
    if current:
        messages.append("\n".join(current))
    return messages


class ChatCommands:
    def __init__(self, config: ReceiverConfig, commands: CommandsConfig, api: AlertmanagerApi,
                 receiver_routes: Callable[[], set[tuple[str, str]]],
                 clock: Callable[[], datetime] | None = None,
                 takers: Callable[[], dict[str, str]] | None = None):
        self.config = config
        self.commands = commands
        self.api = api
        self.receiver_routes = receiver_routes  # (Alertmanager receiver, route) pairs learnt from webhooks
        self.takers = takers  # who took which alert ("✋ Беру"), by fingerprint: shown by /alerts
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.zone = config.timezone or maintenance.DEFAULT_ZONE

    # --- dispatch ---

    def answer(self, command: str, arguments: list[str], asker: Asker) -> list[str]:
        """The messages to send back for `command` (without the slash); CommandProblem for a bad one."""
        handler = {"status": self.status, "today": self.today, "alerts": self.alerts, "silence": self.silence,
                   "maintenance": self.plan_maintenance, "silences": self.list_silences, "unsilence": self.unsilence,
                   "targets": self.list_targets, "add": self.add_target, "del": self.delete_target,
                   "help": self.help, "start": self.help}.get(command)
        if handler is None:
            raise CommandProblem(f"Не знаю команду /{html.escape(command)}. /help — список команд.")
        try:
            return handler(arguments, asker)
        except AlertmanagerError as err:
            raise CommandProblem(f"⚠️ {html.escape(str(err))}") from None
        except MaintenanceProblem as problem:
            raise CommandProblem(html.escape(str(problem))) from None

    def help(self, arguments: list[str], asker: Asker) -> list[str]:
        return [HELP]

    # --- alerts ---

    def routes_of_chat(self, chat_id: int) -> set[str]:
        return {name for name, route in self.config.routes.items() if str(route.chat_id) == str(chat_id)}

    def _routes_of(self, alert: dict[str, Any], learnt: set[tuple[str, str]]) -> set[str]:
        labelled = alert.get("labels", {}).get("telegram_route")
        if labelled in self.config.routes:
            return {labelled}
        routes = set()
        for receiver in alert.get("receivers", []):
            name = receiver.get("name", "")
            known = {route for seen, route in learnt if seen == name}
            if not known:  # not seen in a webhook yet: Alertmanager receivers are usually named after the route
                known = route_named(name, self.config.routes)
            routes |= known
        return routes

    def _alerts_for(self, asker: Asker) -> tuple[list[dict[str, Any]], bool, int]:
        """Active alerts of the chat's routes, whether filtered, and how many alerts no route could be found
        for (they are counted, not shown). A private chat no route posts to gets every alert: whoever may
        command there may silence any. Any other chat no route posts to gets none: not everyone in a group
        is meant to see the alerts of other chats."""
        routes = self.routes_of_chat(asker.chat_id)
        if not routes and not asker.private:
            raise CommandProblem(NO_ALERTS_HERE)
        alerts = self.api.alerts()
        if not routes:
            return alerts, False, 0
        learnt = self.receiver_routes()
        mine, unknown = [], 0
        for alert in alerts:
            found = self._routes_of(alert, learnt)
            if found & routes:
                mine.append(alert)
            elif not found:
                unknown += 1
        return mine, True, unknown

    def status(self, arguments: list[str], asker: Asker) -> list[str]:
        alerts, filtered, unknown = self._alerts_for(asker)
        firing = [a for a in alerts if _state(a) == "active"]
        quiet = len(alerts) - len(firing)
        scope = "в оповещениях этого чата" if filtered else "во всех оповещениях"
        stray = (f"\nЕщё оповещений без известного маршрута: {unknown} (в личном чате с ботом /status "
                 "показывает все).") if unknown else ""
        if not firing:
            tail = f" (заглушено или подавлено: {quiet})" if quiet else ""
            return [f"✅ Всё спокойно {scope}: ничего не горит{tail}.{stray}"]
        by_site: dict[str, list[dict[str, Any]]] = {}
        for alert in firing:
            by_site.setdefault(alert["labels"].get("site", "без площадки"), []).append(alert)
        sites = len(by_site)
        lines = [f"<b>🔥 Горят оповещения: {len(firing)} ({sites} "
                 f"{plural(sites, 'площадка', 'площадки', 'площадок')})</b>, {scope}"]
        for site in sorted(by_site, key=lambda s: (-_worst(by_site[s]), s)):
            group = by_site[site]
            client = group[0]["labels"].get("client")
            lines.append("")
            lines.append(f"<b>{html.escape(site)}</b>" + (f" · клиент {html.escape(client)}" if client else ""))
            for alert in sorted(group, key=lambda a: (-_rank(a), a["labels"].get("alertname", ""))):
                lines.append(f"{_mark(alert)} {html.escape(self._summary(alert))} · с {self._when(alert['startsAt'])}")
        if quiet:
            lines += ["", f"Заглушено или подавлено: {quiet} (/alerts — все)."]
        if stray:
            lines.append(stray.strip())
        return split_messages(lines)

    def alerts(self, arguments: list[str], asker: Asker) -> list[str]:
        alerts, filtered, _ = self._alerts_for(asker)
        if not alerts:
            return ["✅ Активных оповещений нет" + (" в оповещениях этого чата." if filtered else ".")]
        lines = [f"<b>Активные оповещения: {len(alerts)}</b>"]
        taken = self.takers() if self.takers else {}
        for alert in sorted(alerts, key=lambda a: (a["labels"].get("site", ""), a["labels"].get("alertname", ""))):
            state = {"active": _mark(alert), "suppressed": "🔕"}.get(_state(alert), "⏳")
            labels = alert["labels"]
            where = " · ".join(html.escape(labels[k]) for k in ("site", "check", "kkt") if labels.get(k))
            taker = taken.get(alert["fingerprint"])
            lines.append(f"<code>{alert['fingerprint'][:SHORT_ID]}</code> {state} "
                         f"{html.escape(self._title(labels))}" + (f" · {where}" if where else "")
                         + f" · с {self._when(alert['startsAt'])}"
                         + (f" · ✋ {isolated(html.escape(taker))}" if taker else ""))
        lines.append("")
        lines.append("Заглушить одно: <code>/silence #номер 4h</code>; площадку: <code>/silence площадка 4h</code>.")
        return split_messages(lines)

    def today(self, arguments: list[str], asker: Asker) -> list[str]:
        """The morning worklist on demand, for the sites of the chat's routes (a private chat no route posts
        to: every route's), made within morning.ON_DEMAND_BUDGET: the other commands and the buttons wait
        for it."""
        # Imported here: the worklist's text borrows split_messages from this module.
        from alertmanager.morning import on_demand, shared_zone
        from alertmanager.worklist import WorklistUnavailable

        routes = self.routes_of_chat(asker.chat_id)
        # In a forum topic a route posts to, that topic's routes: the POS team's topic gets its registers.
        in_topic = {name for name in routes if self.config.routes[name].thread_id == asker.thread_id}
        if asker.thread_id is not None and in_topic:
            routes = in_topic
        if not routes and not asker.private:
            raise CommandProblem("В этот чат бот не присылает ни оповещений, ни списков дел, поэтому не "
                                 "показывает список и здесь. Список по площадкам всех чатов можно посмотреть в "
                                 "личном чате с ботом, если он отвечает вам там.")
        names = sorted(routes or self.config.routes)
        try:
            return on_demand(self.config, names, self.clock().timestamp(), shared_zone(self.config, names))
        except WorklistUnavailable as err:  # its Russian is a whole answer, marked already
            raise CommandProblem(html.escape(err.russian)) from None

    # --- silences ---

    def silence(self, arguments: list[str], asker: Asker) -> list[str]:
        if len(arguments) < 2:
            raise CommandProblem("Пишите: <code>/silence площадка|#номер|алерт срок [комментарий]</code>, "
                                 "например <code>/silence shop-01 4h плановые работы</code>.")
        target, duration_text, comment = arguments[0], arguments[1], " ".join(arguments[2:])
        seconds = parse_duration(duration_text, self.commands.max_silence)
        alerts = self.api.alerts()
        matchers, what = self._matchers_for(target, alerts)
        return self._create(matchers, what, seconds, comment or "из Telegram", asker, alerts)

    def silence_alert(self, fingerprint: str, seconds: float, asker: Asker) -> list[str]:
        """A button's silence for exactly one alert: the messages for the chat."""
        alerts = self.api.alerts()
        alert = next((a for a in alerts if a.get("fingerprint") == fingerprint), None)
        if alert is None:
            raise CommandProblem("Этого оповещения уже нет в Alertmanager: оно закончилось.")
        return self._create(exact_matchers(alert["labels"]), self._summary(alert), seconds, "кнопка в Telegram", asker,
                            alerts)

    def _matchers_for(self, target: str, alerts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        """A "#number" is an alert; else an alert name or a site with alerts now; else a number that fits
        one alert; else a site (planned works silence a quiet site). Sites named like "cafe" or "0042" are
        therefore taken as sites whenever they have alerts, never as someone else's alert."""
        numbered = target.startswith("#")
        token = target.strip().lstrip("#").lower()
        if not numbered:
            if any(a["labels"].get("alertname") == target for a in alerts):
                return [equal_matcher("alertname", target)], f"все {target}"
            if any(a["labels"].get("site") == target for a in alerts):
                return [equal_matcher("site", target)], f"площадка {target}"
        if re.fullmatch(r"[0-9a-f]{%d,}" % MIN_PREFIX, token):
            found = [a for a in alerts if a.get("fingerprint", "").startswith(token)]
            if len(found) == 1:
                return exact_matchers(found[0]["labels"]), self._summary(found[0])
            if len(found) > 1:
                raise CommandProblem(f"Номер {html.escape(token)} подходит к {len(found)} оповещениям: "
                                     f"добавьте цифр (/alerts).")
            if numbered:
                raise CommandProblem(f"Нет активного оповещения с номером {html.escape(token)} (/alerts).")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", target):
            raise CommandProblem(f"{html.escape(target)} — не площадка, не номер оповещения и не имя алерта.")
        return [equal_matcher("site", target)], f"площадка {target}"

    def _create(self, matchers: list[dict[str, Any]], what: str, seconds: float, comment: str, asker: Asker,
                alerts: list[dict[str, Any]]) -> list[str]:
        ends = self.clock() + timedelta(seconds=seconds)
        silence_id = self.api.create_silence(matchers, ends, asker.created_by, comment)
        covered = sum(1 for a in alerts if _matches(a["labels"], matchers))
        short = silence_id[:SHORT_ID]
        note = f"Под неё сейчас попадает оповещений: {covered}." if covered else \
            "Сейчас под неё не попадает ни одно оповещение: она заглушит будущие."
        return split_messages([f"🔕 {html.escape(asker.name)} заглушил(а) {html.escape(what)} на "
                               f"{duration_text(seconds)}, до {self._when(ends)}.", note,
                               f"id <code>{short}</code> · снять: <code>/unsilence {short}</code>"])

    def plan_maintenance(self, arguments: list[str], asker: Asker) -> list[str]:
        """/maintenance площадка [проверка] срок|до когда [комментарий]: a silence on the site (or that check
        of it) whose comment marks it as planned maintenance."""
        if len(arguments) < 2:
            raise CommandProblem(MAINTENANCE_USAGE)
        site, rest = arguments[0], arguments[1:]
        check = None
        if not _is_end(rest[0]) and len(rest) > 1 and _is_end(rest[1]):
            check, rest = rest[0], rest[1:]
        if not _is_end(rest[0]):
            raise CommandProblem(f"Не понял срок «{html.escape(rest[0])}». {MAINTENANCE_USAGE}")
        now = self.clock()
        if rest[0].lower() == "до":
            ends, rest = maintenance.until(rest[1:], now, self.zone)
        else:
            ends, rest = now + timedelta(seconds=parse_duration(rest[0], self.commands.max_silence)), rest[1:]
        planned = maintenance.plan(site, check, ends, " ".join(rest), now, self.zone, self.commands.max_silence)
        silence_id, covered = maintenance.start(self.api, planned, asker.created_by)
        short = silence_id[:SHORT_ID]
        lines = [f"🛠 {html.escape(asker.name)} объявил(а) плановые работы "
                 f"{html.escape(maintenance.where_text(planned.site, planned.check))} до "
                 f"{maintenance.moment_text(ends, self.zone)} ({duration_text((ends - now).total_seconds())})."]
        if planned.reason != maintenance.DEFAULT_REASON:
            lines.append(f"Комментарий: {html.escape(maintenance.sentence(planned.reason))}")
        lines.append(maintenance.covered_text(covered))
        lines.append(f"id <code>{short}</code> · закончить раньше: <code>/unsilence {short}</code>")
        return split_messages(lines)

    def list_silences(self, arguments: list[str], asker: Asker) -> list[str]:
        silences = self.api.silences()
        if not silences:
            return ["Действующих тишин нет."]
        lines = [f"<b>Тишины: {len(silences)}</b>"]
        for silence in silences:
            pending = " (ещё не началась)" if silence.state == "pending" else ""
            lines.append(f"<code>{silence.id[:SHORT_ID]}</code> до {self._when(silence.ends_at)}{pending} · "
                         f"{html.escape(maintenance.describe(silence))} · {html.escape(silence.created_by)}: "
                         f"{_comment(silence)}")
        lines += ["", "Снять: <code>/unsilence id</code>."]
        return split_messages(lines)

    def unsilence(self, arguments: list[str], asker: Asker) -> list[str]:
        if len(arguments) != 1 or len(arguments[0]) < MIN_PREFIX:
            raise CommandProblem("Пишите: <code>/unsilence id</code> (id из /silences, хватит первых 4 знаков).")
        prefix = arguments[0].lower()
        found = [s for s in self.api.silences() if s.id.lower().startswith(prefix)]
        if not found:
            raise CommandProblem(f"Нет действующей тишины с id {html.escape(prefix)} (/silences — список).")
        if len(found) > 1:
            raise CommandProblem(f"id {html.escape(prefix)} подходит к {len(found)} тишинам: добавьте знаков.")
        silence = found[0]
        self.api.expire_silence(silence.id)
        if maintenance.is_maintenance(silence):
            return [f"🔔 Плановые работы <code>{silence.id[:SHORT_ID]}</code> "
                    f"({html.escape(maintenance.describe(silence))}) закончены раньше срока "
                    f"({html.escape(asker.name)}): оповещения снова приходят."]
        return [f"🔔 Тишина <code>{silence.id[:SHORT_ID]}</code> ({html.escape(silence.matchers_text())}) снята "
                f"({html.escape(asker.name)})."]

    # --- devices ---

    def _targets(self) -> TargetsFile:
        """The central exporter's targets file, opened through its config so that a change the exporter
        would refuse on reload is refused here, before it is written."""
        if self.commands.exporter_config is None:
            raise CommandProblem("Устройства не подключены: задайте commands.exporter_config (конфигурация "
                                 "центрального экспортёра с targets_file) в настройках получателя.")
        try:
            return open_targets(self.commands.exporter_config)
        except ConfigError as err:
            raise CommandProblem(f"⚠️ Конфигурация экспортёра не годится: {html.escape(str(err))}") from None

    def list_targets(self, arguments: list[str], asker: Asker) -> list[str]:
        try:
            targets = self._targets().load()
        except TargetsError as err:
            raise CommandProblem(f"⚠️ Список устройств не читается: {html.escape(str(err))}") from None
        if not targets:
            return ["Устройств нет. Добавить: <code>/add 10.0.0.5 kassa-3</code>."]
        lines = [f"<b>Устройства: {len(targets)}</b>"]
        for target in targets:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(target.labels.items()))
            lines.append(f"<code>{html.escape(target.id)}</code> {html.escape(target.name)} · "
                         f"{html.escape(target.address)} · {html.escape(' '.join(target.checks))}"
                         + (f" · {html.escape(labels)}" if labels else ""))
        return split_messages(lines)

    def add_target(self, arguments: list[str], asker: Asker) -> list[str]:
        if len(arguments) < 2:
            raise CommandProblem("Пишите: <code>/add адрес имя [tcp:порт|URL …]</code>, например "
                                 "<code>/add 10.0.0.5 kassa-3 tcp:3389</code>.")
        address, name, extra = arguments[0], arguments[1], arguments[2:]
        labels = {}
        routes = self.routes_of_chat(asker.chat_id)
        if len(routes) == 1:  # its alerts come back to the chat it was added from
            labels["telegram_route"] = next(iter(routes))
        try:
            target = self._targets().add(address, name, checks=("ping", *extra), labels=labels)
        except TargetsError as err:
            raise CommandProblem(f"⚠️ Не добавлено: {html.escape(str(err))}") from None
        route = f", оповещения — в маршрут {html.escape(labels['telegram_route'])}" if labels else ""
        return [f"➕ Добавлено устройство {html.escape(target.name)} (id <code>{html.escape(target.id)}</code>): "
                f"{html.escape(' '.join(target.checks))} → {html.escape(target.address)}{route}. Экспортёр "
                f"подхватит его сам за несколько секунд."]

    def delete_target(self, arguments: list[str], asker: Asker) -> list[str]:
        if len(arguments) != 1:
            raise CommandProblem("Пишите: <code>/del имя</code> или <code>/del id</code> (/targets — список).")
        try:
            target = self._targets().remove(arguments[0])
        except TargetsError as err:
            raise CommandProblem(f"⚠️ Не удалено: {html.escape(str(err))}") from None
        return [f"➖ Удалено устройство {html.escape(target.name)} (id <code>{html.escape(target.id)}</code>, "
                f"{html.escape(target.address)})."]

    def _title(self, labels: dict[str, str]) -> str:
        return title(labels.get("alertname", "?"))

    def _summary(self, alert: dict[str, Any]) -> str:
        """One line for an alert: its facts in words (a sitewatch alert), or its own name and summary."""
        labels, notes = alert["labels"], alert.get("annotations", {})
        wording = word(labels, notes, "ru", self.zone, self.clock().timestamp())
        if wording:
            return f"{wording.title}: {wording.facts}"
        summary = notes.get("summary")
        name = labels.get("alertname", "?")
        return f"{name}: {summary}" if summary else " · ".join(v for v in (name, labels.get("site")) if v)

    def _when(self, moment: datetime | str) -> str:
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        return moment.astimezone(self.zone).strftime("%d.%m %H:%M")


def _state(alert: dict[str, Any]) -> str:
    return alert.get("status", {}).get("state", "active")


def _rank(alert: dict[str, Any]) -> int:
    return {"critical": 3, "warning": 2, "info": 1}.get(alert["labels"].get("severity", ""), 0)


def _worst(alerts: list[dict[str, Any]]) -> int:
    return max(_rank(a) for a in alerts)


def _mark(alert: dict[str, Any]) -> str:
    return SEVERITY_MARKS.get(alert["labels"].get("severity", ""), "⚪")


def _is_end(word: str) -> bool:
    """Whether a /maintenance word starts its end: "до", or a duration such as 2h (a check's name is neither)."""
    compact = word.strip().lower()
    return compact == "до" or bool(_DURATION.findall(compact) and not _DURATION.sub("", compact).strip())


def _comment(silence: Silence) -> str:
    """The comment as HTML; maintenance is marked so that it stands out in a list of silences."""
    if not maintenance.is_maintenance(silence):
        return html.escape(silence.comment)
    reason = maintenance.reason_of(silence)
    return "🛠 плановые работы" + ("" if reason == maintenance.DEFAULT_REASON else f" — {html.escape(reason)}")


def _matches(labels: dict[str, str], matchers: list[dict[str, Any]]) -> bool:
    return all(labels.get(m["name"], "") == m["value"] for m in matchers)

