"""`sitewatch-receiver maintenance add|list|end` as a technician runs it: a subprocess against Debian's
Alertmanager, judged by what it prints, its exit code, and the silences Alertmanager then holds (also read
back with amtool)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests

from conftest import ROOT, free_port
from receiver_kit import wait_for, write_receiver_config

MOSCOW = ZoneInfo("Europe/Moscow")  # the receiver's zone when its config names none, as the test config does
# Alertmanager only keeps the alerts and silences here: nothing is routed anywhere.
QUIET_ALERTMANAGER = "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n"


def maintenance(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alertmanager.cli", "maintenance", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def silences(url: str, state: str = "active") -> list[dict]:
    return [s for s in requests.get(f"{url}/api/v2/silences", timeout=5).json() if s["status"]["state"] == state]


def ends_of(silence: dict) -> datetime:
    return datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))


@pytest.fixture
def am(alertmanager) -> str:
    url = alertmanager(QUIET_ALERTMANAGER)
    starts = (datetime.now(timezone.utc) - timedelta(minutes=3)).isoformat()
    alerts = [{"labels": {"alertname": "KodeksServerDown", "site": "shop-01", "check": "kodeks"}, "startsAt": starts},
              {"labels": {"alertname": "PcUnreachable", "site": "shop-01"}, "startsAt": starts}]
    assert requests.post(f"{url}/api/v2/alerts", json=alerts, timeout=5).status_code == 200
    wait_for(lambda: len(requests.get(f"{url}/api/v2/alerts", timeout=5).json()) == 2, 10, "the alerts")
    return url


def test_a_technician_adds_lists_and_ends_maintenance_from_the_command_line(am, tmp_path):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9", extra=(
        f"commands:\n  alertmanager_url: {am}\n  allowed_users: [555]\n"))
    asked = datetime.now(timezone.utc)
    added = maintenance("add", "shop-01", "2h", "--check", "kodeks", "Кодекс", "обновляется", "-c", str(config))
    assert added.returncode == 0, added.stderr
    lines = added.stdout.splitlines()
    assert re.fullmatch(r"Плановые работы на площадке shop-01 \(только проверка kodeks\) объявлены до "
                        r"\d\d\.\d\d\.\d{4} \d\d:\d\d МСК \(2 ч\): Кодекс обновляется\.", lines[0]), lines[0]
    assert lines[1] == "Сейчас под них попадает 1 оповещение."
    [kodeks] = silences(am)
    assert lines[2] == f"id {kodeks['id']}"
    assert lines[3] == f"Закончить раньше: sitewatch-receiver maintenance end {kodeks['id'][:8]}"
    assert {(m["name"], m["value"], m["isRegex"]) for m in kodeks["matchers"]} == {
        ("site", "shop-01", False), ("check", "kodeks", False)}
    assert kodeks["comment"] == "Плановые работы: Кодекс обновляется"
    assert kodeks["createdBy"].endswith(", командная строка")
    assert abs((ends_of(kodeks) - asked).total_seconds() - 2 * 3600) < 60

    # No config: the address on the command line, the end as a date and time in the receiver's zone.
    day = (datetime.now(MOSCOW) + timedelta(days=2)).date()
    whole = maintenance("add", "shop-01", "--until", f"{day:%d.%m.%Y} 10:00", "--alertmanager.url", am)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.startswith(f"Плановые работы на площадке shop-01 объявлены до {day:%d.%m.%Y} 10:00 МСК (")
    assert "Сейчас под них попадает 2 оповещения." in whole.stdout
    [site] = [s for s in silences(am) if s["id"] != kodeks["id"]]
    assert ends_of(site) == datetime(day.year, day.month, day.day, 10, 0, tzinfo=MOSCOW)
    assert site["comment"] == "Плановые работы: без пояснений"

    # A silence that is not maintenance is not listed, nor ended by `maintenance end`.
    other = {"matchers": [{"name": "site", "value": "shop-02", "isRegex": False}], "startsAt": asked.isoformat(),
             "endsAt": (asked + timedelta(hours=1)).isoformat(), "createdBy": "amtool", "comment": "замена кассы"}
    other_id = requests.post(f"{am}/api/v2/silences", json=other, timeout=5).json()["silenceID"]

    listed = maintenance("list", "--alertmanager.url", am)
    assert listed.returncode == 0, listed.stderr
    first, second = listed.stdout.splitlines()
    assert first.startswith(f"{kodeks['id'][:8]}  до ") and " МСК · площадка shop-01, проверка kodeks · " \
        "Кодекс обновляется · " in first
    assert second.startswith(f"{site['id'][:8]}  до {day:%d.%m.%Y} 10:00 МСК · площадка shop-01 · без пояснений")
    assert "shop-02" not in listed.stdout
    amtool = subprocess.run(["amtool", "silence", "query", f"--alertmanager.url={am}"], capture_output=True,
                            text=True, timeout=30).stdout
    assert "Плановые работы: Кодекс обновляется" in amtool and "Плановые работы: без пояснений" in amtool

    ended = maintenance("end", kodeks["id"][:5], "--alertmanager.url", am)
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout == (f"Плановые работы {kodeks['id'][:8]} (площадка shop-01, проверка kodeks) закончены: "
                            f"оповещения снова приходят.\n")
    assert kodeks["id"] in {s["id"] for s in silences(am, "expired")}
    assert {s["id"] for s in silences(am)} == {site["id"], other_id}
    refused = maintenance("end", other_id[:8], "--alertmanager.url", am)
    assert refused.returncode == 1 and refused.stderr == f"Нет действующих плановых работ с id {other_id[:8]}.\n"
    assert maintenance("list", "--alertmanager.url", am).stdout.splitlines() == [second]


# What a technician types, and the reason printed; how each end and name is read, the chat's tests show.
MISTAKES = [
    (["add", "shop-01", "--until", "01.01.2020 10:00"], "Время 01.01.2020 10:00 МСК уже прошло."),
    (["add", "shop-01", "--until", "пн 10:00 потом"], "Не понял --until «пн 10:00 потом»"),
    (["add", "shop-01", "2h", "--until", "пн"], "Срок 2h и --until вместе не нужны: оставьте что-то одно."),
    (["add", "shop-01"], "Укажите срок (2h, 1d) или конец: --until \"07.12.2026 10:00\"."),
    (["add", "shop-01", "4", "часа"], "Не понял срок 4: пишите 30m, 4h, 2d или 1w."),
    (["add", "шоп-01", "2h"], "«шоп-01» не годится как имя площадки"),
    (["end", "abc"], "Нужно хотя бы 4 первых знака id."),
    (["end", "abcd1234"], "Нет действующих плановых работ с id abcd1234."),
]


def test_a_mistake_is_one_line_on_stderr_exit_1_and_no_silence(am):
    for args, reason in MISTAKES:
        result = maintenance(*args, "--alertmanager.url", am)
        assert result.returncode == 1 and result.stdout == "", (args, result.stdout)
        assert reason in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)
    assert silences(am) == [] and silences(am, "pending") == []


def test_alertmanager_down_or_unknown_is_said_in_a_sentence(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    result = maintenance("add", "shop-01", "2h", "--alertmanager.url", down)
    assert result.returncode == 1
    assert result.stderr == f"Alertmanager недоступен (соединение не установлено), адрес {down}\n"
    nowhere = maintenance("list")
    assert nowhere.returncode == 1 and nowhere.stderr == (
        "Не знаю, где Alertmanager: укажите --alertmanager.url или --config с commands.alertmanager_url.\n")
    broken = write_receiver_config(tmp_path, "http://127.0.0.1:9", extra="commands:\n  allowed_users: [555]\n")
    config = maintenance("list", "-c", str(broken))
    assert config.returncode == 1 and config.stderr.startswith("Настройки получателя не годятся: ")
    assert "commands.alertmanager_url" in config.stderr and "Traceback" not in config.stderr


@pytest.mark.parametrize("words, expected, left", [
    (["7.12", "10.00", "ремонт"], datetime(2027, 12, 7, 10, 0), ["ремонт"]),   # a time with a dot after a date
    (["10:00", "07.12", "ремонт"], datetime(2027, 12, 7, 10, 0), ["ремонт"]),  # the time first
    (["пн", "10.00"], datetime(2027, 12, 6, 10, 0), []),
    (["29.02"], datetime(2028, 2, 29, 0, 0), []),                             # next year's leap day
    (["18:00", "закрыто"], datetime(2027, 12, 3, 18, 0), ["закрыто"]),
])
def test_ends_are_read_as_people_write_them(words, expected, left):
    from alertmanager.maintenance import until
    moscow = ZoneInfo("Europe/Moscow")
    end, rest = until(words, datetime(2027, 12, 3, 12, 0, tzinfo=moscow), moscow)
    assert (end, rest) == (expected.replace(tzinfo=moscow), left)
