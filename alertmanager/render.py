"""Telegram HTML for the receiver: one block per alert, message headers, and the packing of blocks into messages.

Templates are Jinja macros that get plain, prepared values; this module keeps every line's tags balanced and every
message under Telegram's limit, so a message can always be cut between lines.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, tzinfo
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from jinja2.runtime import Macro

from alertmanager.telegram_html import (CUT_MARK, MESSAGE_LIMIT, fit_lines, html_to_text, http_url, markup_problem,
                                         message_length)
from alertmanager.render_numbers import LANGUAGES, decimal_text, duration_text, plural, zone_name  # noqa: F401 - re-exported
from alertmanager.webhook import Alert, Notification
from alertmanager.wording import LABEL_WORDS, SEVERITY, title, word

log = logging.getLogger("sitewatch.receiver")

BLOCK_LIMIT = 3000  # the most one alert block may take, so header + one block always fit
BLOCK_SEPARATOR = "\n\n"
# A header longer than this could leave no room for a block of BLOCK_LIMIT.
HEADER_LIMIT = MESSAGE_LIMIT - BLOCK_LIMIT - len(BLOCK_SEPARATOR)
DESCRIPTION_LIMIT = 1000
SUMMARY_LIMIT = 500
DIGEST_ALERTNAMES = 5  # alert names a digest header lists before "and N more"
LABEL_LIMIT = 80  # a label value longer than this is cut in a message: it names a thing, it is not the text

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
MACROS = ("alert", "header", "more")
# Labels with a place of their own in the built-in block; the values arrive under these names.
NOTABLE_LABELS = ("alertname", "severity", "site", "client", "check", "kkt", "catalog", "reason", "instance")



@dataclass(frozen=True)
class GroupInfo:
    """What headers and "and N more" blocks know about one alert group; stored as JSON with each batch."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str

    @classmethod
    def from_notification(cls, notification: Notification) -> GroupInfo:
        return cls(receiver=notification.receiver, group_key=notification.group_key,
                   group_labels=dict(notification.group_labels), common_labels=dict(notification.common_labels),
                   common_annotations=dict(notification.common_annotations),
                   external_url=notification.external_url)

    def label(self, name: str) -> str:
        return self.group_labels.get(name) or self.common_labels.get(name, "")

    def to_json(self) -> str:
        # Not dataclasses.asdict: it deep-copies every label, once per webhook of a storm.
        return json.dumps({field.name: getattr(self, field.name) for field in fields(self)}, ensure_ascii=False,
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GroupInfo:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"group info: not JSON: {err}") from None
        # Stored data of any wrong shape is one kind of error for the outbox: ValueError.
        if not isinstance(document, dict):
            raise ValueError("group info: expected a JSON object")  # noqa: TRY004
        values: dict[str, Any] = {}
        for field in fields(cls):
            is_map = field.name in ("group_labels", "common_labels", "common_annotations")
            # A missing field reads as empty, so batches stored before a field was added still load.
            value = document.get(field.name, {} if is_map else "")
            if is_map:
                if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                    raise ValueError(f"group info: {field.name}: expected an object of strings")
                value = dict(value)
            elif not isinstance(value, str):
                raise ValueError(f"group info: {field.name}: expected a string")
            values[field.name] = value
        return cls(**values)


class TemplateValues(dict):
    """A dict whose keys templates can also read as attributes (`a.site`), without Jinja's failed getattr first."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TemplateProblem(Exception):
    """A template cannot be used: names the file, the line when known, and the cause."""

    def __init__(self, file: str, line: int | None, cause: str):
        self.file = file
        self.line = line
        self.cause = cause
        where = f"{file}, line {line}" if line else file
        super().__init__(f"{where}: {cause}")


class Renderer:
    """Renders alerts, headers and "and N more" blocks with one language's built-in macros or a route's template."""

    def __init__(self, *, language: str = "ru", template_file: Path | None = None, timezone: ZoneInfo | None = None,
                 grafana_url: str | None = None, alertmanager_url: str | None = None,
                 clock: Callable[[], float] = time.time):
        if language not in LANGUAGES:
            raise ValueError(f"language: expected one of {', '.join(sorted(LANGUAGES))}, got {language!r}")
        self.language = language
        self.clock = clock  # "in 9 days" is counted from this moment
        self._words = LANGUAGES[language]
        self.timezone: tzinfo = timezone or dt_timezone.utc
        self.grafana_url = _configured_base_url("grafana_url", grafana_url)
        self.alertmanager_url = _configured_base_url("alertmanager_url", alertmanager_url)
        self.template_file = template_file
        self._reported_failures: set[tuple[str, str]] = set()

        route_source = _read_template(template_file) if template_file is not None else None
        route_name = str(template_file) if template_file is not None else ""
        self._search_path = [TEMPLATES_DIR] + ([template_file.parent] if template_file is not None else [])

        def load_route_template(name: str):
            if name != route_name or route_source is None:
                return None
            return route_source, str(template_file), lambda: True

        # Built-in names come first on the search path, so "ru.html.j2" always means the built-in one, even
        # from a route's folder that has a file of that name.
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([jinja2.FunctionLoader(load_route_template),
                                        jinja2.FileSystemLoader([str(p) for p in self._search_path])]),
            autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.ChainableUndefined)
        self._env.filters["number"] = self.number
        self._env.filters["plural"] = plural

        builtin_name = f"{language}.html.j2"
        self._builtin = self._macros(builtin_name, str(TEMPLATES_DIR / builtin_name))
        missing = [name for name in MACROS if name not in self._builtin]
        if missing:
            raise TemplateProblem(str(TEMPLATES_DIR / builtin_name), None, f"no macro {', '.join(missing)}")
        self._route: dict[str, Any] = {}
        if template_file is not None:
            self._route = self._macros(route_name, str(template_file))
            if not self._route:
                raise TemplateProblem(str(template_file), None,
                                      "defines none of the macros alert(a), header(h), more(m)")

    # --- what the outbox calls

    def alert_block(self, alert: Alert, group: GroupInfo) -> str:
        """HTML for one alert, at most BLOCK_LIMIT long; every line has balanced tags."""
        return fit_lines(self._render("alert", self.alert_values(alert, group)), BLOCK_LIMIT)

    def header(self, status: str, count: int, groups: list[GroupInfo], continued: bool = False) -> str:
        """The line (or two) atop a message of `count` blocks of `status` from `groups`; a digest for several."""
        _check_status(status)
        if not groups:
            raise ValueError("a header needs at least one group")
        distinct = list({group.group_key: group for group in groups}.values())
        alertnames = list(dict.fromkeys(name for name in (g.label("alertname") for g in distinct) if name))

        def common(name: str) -> str:
            values = {group.label(name) for group in distinct}
            return values.pop() if len(values) == 1 else ""

        values = TemplateValues({
            "status": status, "firing": status == "firing", "count": count,
            "groups": [asdict(group) for group in distinct], "digest": len(distinct) > 1,
            "continued": continued, "group_count": len(distinct),
            "alertname": self.title(common("alertname")), "site": common("site"), "client": common("client"),
            # Labels the group is keyed on beyond the three above, e.g. "check" for group_by [site, check],
            # named in words where the language has one, otherwise by their value alone.
            "other_labels": [(LABEL_WORDS.get(self.language, {}).get(k, ""), shorten(v, LABEL_LIMIT))
                             for k, v in sorted(distinct[0].group_labels.items())
                             if k not in ("alertname", "site", "client") and v] if len(distinct) == 1 else [],
            "alertnames": [self.title(name) for name in alertnames[:DIGEST_ALERTNAMES]],
            "more_alertnames": max(0, len(alertnames) - DIGEST_ALERTNAMES),
        })
        return fit_lines(self._render("header", values), HEADER_LIMIT)

    def more(self, status: str, count: int, group: GroupInfo) -> str:
        """The block that stands for `count` alerts left out, with a link to the group in Alertmanager."""
        _check_status(status)
        url = ""
        # Only a configured address: Alertmanager's own external URL may have no web UI behind it (Debian's).
        base = self.alertmanager_url
        # Alertmanager lists only active alerts: for resolved ones its list would show nothing of theirs.
        if base and status == "firing":
            url = base + "/#/alerts"
            if group.group_labels:
                url += "?filter=" + quote(matchers(group.group_labels), safe="")
            url = http_url(url)
        values = TemplateValues(status=status, firing=status == "firing", count=count, url=url)
        return fit_lines(self._render("more", values), BLOCK_LIMIT)

    # --- values the templates get

    def number(self, count: int) -> str:
        return f"{count:,}".replace(",", self._words.thousands_separator)

    def time_text(self, moment: datetime | None) -> str:
        if moment is None:
            return ""
        local = moment.astimezone(self.timezone)
        return local.strftime(self._words.time_format).replace("%Z", zone_name(local, self.language))

    def duration_text(self, seconds: float) -> str:
        return duration_text(seconds, self.language)

    def title(self, alertname: str) -> str:
        """A sitewatch alert's title in the language ("ФН истекает"); another alert's name as it is."""
        return title(alertname, self.language)

    def caption(self, alert: Alert) -> str:
        """One line of plain text naming an alert among others: its title, site and what in the site
        ("ФН истекает · shop-12 · касса 0651234567"), for the lines that later say it resolved."""
        labels = alert.labels
        wording = word(labels, alert.annotations, self.language, self.timezone, self.clock())
        name = (wording.title if wording else "") or labels.get("alertname", "") or _NAMELESS[self.language]
        words = LABEL_WORDS.get(self.language, {})
        parts = [name] + ([shorten(labels["site"], LABEL_LIMIT)] if labels.get("site") else [])
        parts += [f"{words.get(key, key)} {shorten(labels[key], LABEL_LIMIT)}" for key in ("check", "kkt", "catalog")
                  if labels.get(key)]
        return shorten(" · ".join(parts), CAPTION_LIMIT)

    def alert_values(self, alert: Alert, group: GroupInfo) -> TemplateValues:
        """Everything an `alert(a)` macro gets, as plain strings: the template escapes them all."""
        labels, notes = alert.labels, alert.annotations
        values = TemplateValues((name, shorten(labels.get(name, ""), LABEL_LIMIT)) for name in NOTABLE_LABELS)
        wording = word(labels, notes, self.language, self.timezone, self.clock())
        severity = labels.get("severity", "").lower()
        values.update(
            title=wording.title if wording else labels.get("alertname", ""),
            facts=shorten(wording.facts, SUMMARY_LIMIT) if wording else "",
            action=shorten(wording.action, SUMMARY_LIMIT) if wording else "",
            # "none" (the Watchdog's) and unknown severities are left unsaid rather than shown raw
            severity_text=SEVERITY.get(self.language, {}).get(severity)
            or ("" if severity in ("", "none") else labels.get("severity", "")),
            target=shorten(notes.get("target", ""), LABEL_LIMIT),
        )
        duration = ""
        if not alert.firing and alert.starts_at and alert.ends_at and alert.ends_at >= alert.starts_at:
            duration = self.duration_text((alert.ends_at - alert.starts_at).total_seconds())
        alertmanager = self.alertmanager_url  # configured, so it opens; see more()
        silence = ""
        if alertmanager and labels:
            silence = http_url(alertmanager + "/#/silences/new?filter=" + quote(matchers(labels), safe=""))
        values.update(
            status=alert.status, firing=alert.firing, labels=dict(labels), annotations=dict(notes),
            fingerprint=alert.fingerprint,
            summary=shorten(" ".join(notes.get("summary", "").split()), SUMMARY_LIMIT),
            description=shorten(_without_blank_lines(notes.get("description", "")), DESCRIPTION_LIMIT),
            starts_at_text=self.time_text(alert.starts_at),
            ends_at_text=self.time_text(alert.ends_at) if not alert.firing else "",
            duration_text=duration,
            dashboard_url=self._dashboard_url(notes.get("dashboard_url") or notes.get("dashboard") or ""),
            runbook_url=http_url(notes.get("runbook_url") or notes.get("runbook") or ""),
            silence_url=silence,
            source_url=http_url(alert.generator_url),
        )
        return values

    def _dashboard_url(self, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        try:
            parts = urlsplit(value)
        except ValueError:
            return ""
        if not parts.scheme and not parts.netloc:
            # A path like "/d/abc?var-site=x" is on the configured Grafana; without one there is no link.
            return http_url(f"{self.grafana_url}/{value.lstrip('/')}") if self.grafana_url else ""
        return http_url(value)

    # --- templates

    def _macros(self, name: str, file: str) -> dict[str, Any]:
        try:
            module = self._env.get_template(name).module
        except jinja2.TemplateSyntaxError as err:
            raise TemplateProblem(err.filename or err.name or file, err.lineno, err.message or "syntax error") from err
        except jinja2.TemplateNotFound as err:
            where, line = _template_position(err)
            folders = " or ".join(str(folder) for folder in self._search_path)
            cause = f"imports {err.name!r}, which is not in {folders}" if where else "no such file"
            raise TemplateProblem(where or file, line, cause) from err
        except Exception as err:  # the template's top-level code failed (a bad {% set %}, an import's error)
            where, line = _template_position(err)
            raise TemplateProblem(where or file, line, f"{type(err).__name__}: {err}") from err
        found = {}
        for macro in MACROS:
            value = getattr(module, macro, None)
            if isinstance(value, Macro):
                found[macro] = value
        return found

    def _render(self, macro: str, values: dict[str, Any]) -> str:
        route_macro = self._route.get(macro)
        if route_macro is not None:
            try:
                text = self._checked_route_output(macro, str(route_macro(values)))
            # A route's own template must not stop its alerts from being delivered, whatever it raises.
            except Exception as err:  # noqa: BLE001
                where, line = _template_position(err)
                self._report_once(macro, f"{type(err).__name__}: {err}",
                                  "event=template_failed template=%s line=%s macro=%s error=%r fallback=built-in",
                                  where or self.template_file, line or "?", macro, f"{type(err).__name__}: {err}")
            else:
                if text:
                    return text
                # An empty block would show as stray blank lines between the others, and hide the alert.
                self._report_once(macro, "empty", "event=template_empty template=%s macro=%s fallback=built-in",
                                  self.template_file, macro)
        return tidy_lines(str(self._builtin[macro](values)))

    def _checked_route_output(self, macro: str, text: str) -> str:
        # The built-in templates are tested; a route's template may write markup Telegram refuses, which would
        # lose the whole message (in a digest, other groups' alerts too). Such a line is shown as its text.
        lines = tidy_lines(text).split("\n")
        for index, line in enumerate(lines):
            problem = markup_problem(line)
            if problem:
                self._report_once(macro, "markup",
                                  "event=template_bad_markup template=%s macro=%s problem=%r fallback=plain_text",
                                  self.template_file, macro, problem)
                lines[index] = html.escape(html_to_text(line), quote=False)
        return "\n".join(lines)

    def _report_once(self, macro: str, cause: str, message: str, *args: Any) -> None:
        # One ERROR line per distinct cause: a broken template in a group of 10,000 alerts is one problem.
        key = (macro, cause)
        if key in self._reported_failures:
            log.debug(message, *args)
            return
        if len(self._reported_failures) >= 1000:
            self._reported_failures.clear()
        self._reported_failures.add(key)
        log.error(message, *args)


# --- what an edit or a reply adds to a message already sent

CAPTION_LIMIT = 160
_NAMELESS = {"ru": "без имени", "en": "unnamed"}
_FOLLOW_UP = {
    "ru": {"resolved": "Решено", "resolved_in": "решено", "at": "в", "lasted": "длилось", "taken": "Взял(а)",
           "silenced": "заглушено до", "all_resolved": "Всё решено.", "firing": "Срабатывает",
           "resolved_header": "Решено", "date": "%d.%m", "on": ""},
    "en": {"resolved": "Resolved", "resolved_in": "resolved", "at": "at", "lasted": "lasted", "taken": "Taken by",
           "silenced": "silenced until", "all_resolved": "All resolved.", "firing": "Firing",
           "resolved_header": "Resolved", "date": "%m-%d", "on": "on "},
}


def moment_text(at: float, zone: tzinfo, language: str = "ru", since: float | None = None) -> str:
    """A moment as a line says it: "04.12 10:42"; only "10:42" when it is on the day of `since`."""
    words = _FOLLOW_UP[language]
    local = datetime.fromtimestamp(at, zone)
    if since is not None and datetime.fromtimestamp(since, zone).date() == local.date():
        return local.strftime("%H:%M")
    return local.strftime(f"{words['date']} %H:%M")


def resolved_line(language: str, zone: tzinfo, ended_at: float, lasted: float | None, caption: str | None = None,
                  since: float | None = None) -> str:
    """HTML: "✅ Решено в 10:42, длилось 1 ч 20 мин", or for one of several alerts "✅ <caption>: решено в …".
    The day is named when it is not the day of `since` (the firing message's)."""
    words = _FOLLOW_UP[language]
    local = datetime.fromtimestamp(ended_at, zone)
    when = f"{words['at']} {local:%H:%M}"
    if since is None or datetime.fromtimestamp(since, zone).date() != local.date():
        when = f"{words['on']}{local.strftime(words['date'])} {when}"
    how_long = f", {words['lasted']} {duration_text(lasted, language)}" if lasted is not None and lasted >= 0 else ""
    if caption is None:
        return f"✅ {words['resolved']} {when}{how_long}"
    return f"✅ {html.escape(caption, quote=False)}: {words['resolved_in']} {when}{how_long}"


_RIGHT_TO_LEFT = frozenset({"R", "AL", "RLE", "RLO", "LRE", "LRO", "PDF", "RLI", "LRI", "FSI", "PDI"})


def isolated(name: str) -> str:
    """A person's name as the text around it needs it: one written right to left (Arabic, Hebrew) or carrying
    direction marks is set apart (Unicode's first strong isolate), so it cannot pull the date and time after
    it into its direction; any other name as it is."""
    if any(unicodedata.bidirectional(char) in _RIGHT_TO_LEFT for char in name):
        return f"\u2068{name}\u2069"
    return name


def taken_line(language: str, zone: tzinfo, name: str, at: float, silenced_until: float | None = None) -> str:
    """HTML: "✋ Взял(а): @name, 04.12 10:42" and, when the take silenced the alerts, ", заглушено до 14:42"."""
    words = _FOLLOW_UP[language]
    line = f"✋ {words['taken']}{':' if language == 'ru' else ''} {isolated(html.escape(name, quote=False))}, " \
           f"{moment_text(at, zone, language)}"
    if silenced_until is not None:
        line += f", {words['silenced']} {moment_text(silenced_until, zone, language, since=at)}"
    return line


def all_resolved_header(language: str, text: str, plain: bool = False) -> str:
    """The message with its first line saying that all its alerts resolved: the built-in header's "🔥
    Срабатывает" becomes "✅ Решено"; any other first line (a digest, a route's own template) gets "✅ Всё
    решено." in front, in place of its 🔥 (in bold, unless the message is `plain` text)."""
    words = _FOLLOW_UP[language]
    first, newline, rest = text.partition("\n")
    firing = re.match(r"🔥 (<b>)?" + re.escape(words["firing"]) + r"\b", first)
    if firing:
        first = f"✅ {firing.group(1) or ''}{words['resolved_header']}" + first[firing.end():]
    else:
        bold = "{}" if plain else "<b>{}</b>"
        first = "✅ " + bold.format(words["all_resolved"]) + " " + re.sub(r"^🔥\s*", "", first)
    return first + newline + rest


def _check_status(status: str) -> None:
    if status not in ("firing", "resolved"):
        raise ValueError(f'status: expected "firing" or "resolved", got {status!r}')


def matchers(labels: dict[str, str]) -> str:
    """Alertmanager's matcher list for exactly these labels, alertname first as its own UI writes it."""
    names = sorted(labels, key=lambda name: (name != "alertname", name))
    return "{" + ",".join(f'{name}="{_matcher_value(labels[name])}"' for name in names) + "}"


def _matcher_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + CUT_MARK


def _without_blank_lines(text: str) -> str:
    # Blank lines separate blocks in a message: inside a block they would blur where one alert ends.
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())


def tidy_lines(text: str) -> str:
    """Template output with each line stripped and empty lines dropped, so templates need not mind whitespace."""
    return "\n".join(stripped for stripped in (line.strip() for line in text.split("\n")) if stripped)




def _base_url(value: str | None) -> str:
    return http_url(value or "").rstrip("/")


def _configured_base_url(name: str, value: str | None) -> str:
    if not value:
        return ""
    base = _base_url(value)
    if not base:
        raise ValueError(f"{name}: expected an http:// or https:// URL, got {value!r}")
    return base


def _read_template(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise TemplateProblem(str(path), None, f"cannot read the template: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise TemplateProblem(str(path), None, f"not UTF-8 text: {err}") from None


def _template_position(err: BaseException) -> tuple[str, int | None]:
    """The template file and line where `err` was raised: the innermost template frame of its traceback."""
    where, line = "", None
    trace = err.__traceback__
    while trace is not None:
        template = trace.tb_frame.f_globals.get("__jinja_template__")
        if template is not None:
            where = template.filename or template.name or ""
            line = template.get_corresponding_lineno(trace.tb_lineno)
        trace = trace.tb_next
    return where, line


# --- composing messages

def compose(header: str, blocks: Sequence[str], limit: int = MESSAGE_LIMIT) -> tuple[str, int]:
    """One message: the header, then as many blocks as fit in order; returns the text and the blocks used (>= 1).

    The first block is always used: if it does not fit beside the header (BLOCK_LIMIT rules that out), it is cut
    between lines.
    """
    if not blocks:
        raise ValueError("a message needs at least one block")
    header = _bounded_header(header, limit)
    used = message_length(header)
    parts = [header]
    for block in blocks:
        size = len(BLOCK_SEPARATOR) + message_length(block)
        if used + size > limit:
            break
        parts.append(block)
        used += size
    if len(parts) == 1:
        parts.append(fit_lines(blocks[0], limit - used - len(BLOCK_SEPARATOR)))
    return BLOCK_SEPARATOR.join(parts), len(parts) - 1


def _bounded_header(header: str, limit: int) -> str:
    # Headers from Renderer fit in HEADER_LIMIT; one from elsewhere must still leave the first block room.
    return fit_lines(header, limit // 2)
