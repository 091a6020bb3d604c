"""Every alert of the catalogue, read as the duty engineer reads it in Telegram.

The alerts come from the promtool unit tests (prometheus/tests/*.test.yml): their expected labels and
annotations are what the rules really produce, checked by promtool. Their times are moved to a fixed "now"
(the unit tests start at time 0), each is rendered firing and resolved through the receiver's Russian
templates, and the text is checked for what must never reach a reader: Latin words outside names and
identifiers, decimal points, wrong plural forms, template syntax, metric names, a missing target or reason.
The rendered catalogue is kept in docs/ru/сообщения.md; a change of wording shows there as a diff.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from alertmanager.render import GroupInfo, Renderer, compose, plural
from alertmanager.telegram_html import html_to_text
from alertmanager.webhook import Alert
from alertmanager.wording import FLAGS, REASONS, title

ROOT = Path(__file__).resolve().parent.parent
TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.test.yml"))
# Cases about opening hours show alerts of other files in an unusual light: they speak only for their own.
HOURS_TESTS = ("hours-site.test.yml", "hours-dates.test.yml")
HOURS_ALERTS = {"SiteNotBackAfterOpening"}
CATALOGUE = ROOT / "docs" / "ru" / "сообщения.md"
NOW = datetime(2026, 12, 3, 7, 30, tzinfo=timezone.utc)  # 10:30 in Moscow
MOSCOW = ZoneInfo("Europe/Moscow")
# Values that are moments: the unit tests count them from time 0, so they move with "now" here.
MOMENT_VALUES = {"FnExpiring", "TlsCertificateExpiring", "KktLicenceExpiring", "KodeksLicenceExpiring",
                 "KktDataStale", "FnUnsentDocuments", "SiteNotBackAfterOpening"}
# Labels whose values are names or identifiers a reader knows (sites, checks, serials, addresses).
NAME_LABELS = ("site", "client", "check", "kkt", "fn", "log_fn", "catalog", "name", "instance", "distributor")
# Words a Russian duty engineer writes in Latin letters too.
LATIN_ALLOWED = {"ping", "DNS", "VPN", "Wi", "Fi"}
FORBIDDEN = ("{{", "}}", "{%", "$labels", "$value", "<no value>", "None", "sitewatch_", "push_time", "_seconds",
             "отрицательное число", "reason", "instance")
PLURALS = [("день", "дня", "дней"), ("документ", "документа", "документов"),
           ("перерегистрация", "перерегистрации", "перерегистраций"), ("час", "часа", "часов"),
           ("минута", "минуты", "минут")]


def _seconds(text) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdwy])", str(text)))


def catalogue_alerts() -> list[tuple[str, dict, dict]]:
    """One (case, labels, annotations) per alert name, severity and ФН flag the unit tests expect to fire."""
    seen: dict[tuple, tuple[str, dict, dict]] = {}
    for path in TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                if path.name in HOURS_TESTS and case["alertname"] not in HOURS_ALERTS:
                    continue
                for expected in case.get("exp_alerts") or []:
                    labels = {"alertname": case["alertname"], **{k: str(v) for k, v in expected["exp_labels"].items()}}
                    notes = {k: str(v) for k, v in (expected.get("exp_annotations") or {}).items()}
                    key = (labels["alertname"], labels.get("severity"), labels.get("flag"),
                           bool(notes.get("target")), bool(notes.get("reason")))
                    if labels["alertname"] in MOMENT_VALUES and notes.get("value"):
                        moved = float(notes["value"]) - _seconds(case["eval_time"]) + NOW.timestamp()
                        notes["value"] = f"{moved:.0f}"
                    seen.setdefault(key, (f"{path.name}: {test['name']} at {case['eval_time']}", labels, notes))
    return sorted(seen.values(), key=lambda item: (item[1]["alertname"], item[1].get("severity", ""), item[0]))


def render(labels: dict, notes: dict, status: str) -> str:
    renderer = Renderer(language="ru", timezone=MOSCOW, grafana_url="https://grafana.example.ru",
                        alertmanager_url="https://alertmanager.example.ru", clock=NOW.timestamp)
    alert = Alert(status=status, labels=labels, annotations=notes, starts_at=NOW - timedelta(minutes=47),
                  ends_at=NOW if status == "resolved" else None, generator_url="", fingerprint="0123456789abcdef")
    group = GroupInfo(receiver="telegram-duty", group_key="{}:{}", group_labels={"alertname": labels["alertname"],
                      "site": labels.get("site", "")}, common_labels=labels, common_annotations={}, external_url="")
    text, _ = compose(renderer.header(status, 1, [group]), [renderer.alert_block(alert, group)])
    return html_to_text(text)


def reader_problems(text: str, labels: dict, notes: dict) -> list[str]:
    """What a Russian duty engineer should never have to read in `text`."""
    text = re.sub(r"\(https?://[^)\s]*\)|https?://\S+", " ", text)  # link addresses are not read
    problems = [f"{word!r} in the text" for word in FORBIDDEN if word in text]
    plain = text
    names = [labels.get(name, "") for name in NAME_LABELS] + [notes.get("target", "")]
    for name in sorted(filter(None, names), key=len, reverse=True):  # C:\...\getad before getad
        plain = plain.replace(name, " ")
    plain = re.sub(r"\b\d{2}\.\d{2}\.\d{4}\b", " ", plain)  # dates are 03.12.2026, with points
    for word in re.findall(r"[A-Za-z]{2,}", plain):
        if word not in LATIN_ALLOWED:
            problems.append(f"Latin word {word!r}")
    for unit in re.findall(r"\b\d+\s?[A-Za-z]{1,3}\b", plain):
        problems.append(f"English unit in {unit!r}")
    for number in re.findall(r"\d+\.\d+", plain):
        problems.append(f"decimal point in {number!r}")
    for forms in PLURALS:
        # after "больше", "до", "около"... the numeral is in the genitive ("больше 24 часов" is right)
        pattern = r"(?<!больше )(?<!меньше )(?<!дольше )(?<!более )(?<!около )(?<!до )(?<!от )(?<!\d)(\d+)\s(" \
            + "|".join(forms) + r")\b"
        for count, form in re.findall(pattern, plain):
            if form != plural(int(count), *forms):
                problems.append(f"{count} {form}: should be {count} {plural(int(count), *forms)}")
    return problems


CASES = catalogue_alerts()


def test_the_catalogue_covers_every_alert_and_severity_of_the_rules():
    rules = set()
    for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules |= {(rule["alert"], rule["labels"]["severity"]) for rule in group["rules"] if "alert" in rule}
    assert rules <= {(labels["alertname"], labels.get("severity")) for _, labels, _ in CASES}


@pytest.mark.parametrize("status", ["firing", "resolved"])
@pytest.mark.parametrize("case, labels, notes", CASES, ids=[f"{c[1]['alertname']}-{c[1].get('severity')}-{i}"
                                                             for i, c in enumerate(CASES)])
def test_every_message_reads_as_plain_russian_with_its_target_and_reason(case, labels, notes, status):
    text = render(labels, notes, status)
    assert not reader_problems(text, labels, notes), f"{case}:\n{text}"
    assert title(labels["alertname"]) in text
    if status == "resolved":
        return  # a resolved message keeps the title, place and times; its facts were of the moment it fired
    if notes.get("target"):
        assert notes["target"] in text, f"{case}: the target is missing:\n{text}"
    if notes.get("reason"):
        assert REASONS["ru"][notes["reason"]] in text, f"{case}: the reason is missing:\n{text}"
    if labels.get("flag"):
        read = re.sub(r"\(https?://[^)\s]*\)", "", text)  # the silence link's address is not read
        assert FLAGS["ru"][labels["flag"]] in read and labels["flag"] not in read


@pytest.mark.parametrize("leak", [
    "ФН истекает через 1.4 дн.", "данные получены 12.6 дн. назад", "не отправляла данные 1m 13s",
    "Сторожевое оповещение · none", "ФН сообщает replace_urgent",
    "истекает через -2 дн. (отрицательное число — уже истёк)",
    "Причина — в метке reason метрики sitewatch_check_failure_info", "осталось 5 дня", "ждут 1 документов",
    "{{ $labels.site }}", "instance 127.0.0.1:19815", "Узел проверки pc: <no value>",
])
def test_the_reader_check_catches_each_leak_the_issue_found(leak):
    assert reader_problems(leak, {}, {}), leak


def test_the_rendered_catalogue_in_the_docs_is_current():
    parts = ["# Сообщения sitewatch в Telegram: все оповещения каталога", "",
             "Так дежурный видит каждое оповещение правил sitewatch: срабатывание и восстановление. Значения взяты "
             "из модульных тестов правил (`prometheus/tests/`), время — 3 декабря 2026 года, 10:30 по Москве. "
             "Файл пишет тест `tests/test_alert_messages.py`; не правьте его руками.", ""]
    for case, labels, notes in CASES:
        parts += [f"## {labels['alertname']} · {labels.get('severity', '')}"
                  + (f" · {labels['flag']}" if labels.get("flag") else ""), ""]
        for status in ("firing", "resolved"):
            # link names stay, their long addresses are left out of the page
            parts += ["```", re.sub(r" \(https?://[^)\s]*\)", "", render(labels, notes, status)), "```", ""]
    text = "\n".join(parts)
    current = CATALOGUE.read_text(encoding="utf-8") if CATALOGUE.exists() else ""
    if current != text:
        CATALOGUE.parent.mkdir(parents=True, exist_ok=True)
        CATALOGUE.write_text(text, encoding="utf-8")
        pytest.fail(f"{CATALOGUE.relative_to(ROOT)} was out of date and has been written again: review the "
                    "diff and commit it")
