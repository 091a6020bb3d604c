"""When the morning worklist goes out: its config, each route's time in its own zone, once a day, late or
missed, and what the config refuses."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alertmanager.config import load_receiver_config
from alertmanager.morning import due_day
from exporter.config import ConfigError
from receiver_kit import GROUP_CHAT, OTHER_CHAT, write_receiver_config

MOSCOW = ZoneInfo("Europe/Moscow")
WORKLIST = """
worklist:
  prometheus_url: http://127.0.0.1:9
  alertmanager_url: http://127.0.0.1:9
  at: "08:30"
"""


def config_with(tmp_path, routes: str | None = None, worklist: str = WORKLIST):
    return write_receiver_config(tmp_path, "http://127.0.0.1:9", routes=routes, extra=worklist)


def at(text: str, zone=MOSCOW) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zone).timestamp()


def test_every_route_gets_the_list_at_the_shared_time_on_working_days_unless_it_opts_out(tmp_path):
    config = load_receiver_config(config_with(tmp_path, routes=f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
  kkt:
    bot: main
    chat_id: {GROUP_CHAT}
    thread_id: 7
    worklist: {{at: "09:15", days: [пн, ср]}}
  watchdog:
    bot: main
    chat_id: {OTHER_CHAT}
    worklist: false
"""))
    duty, kkt = config.routes["duty"].worklist, config.routes["kkt"].worklist
    assert (duty.at, sorted(duty.days)) == (8 * 3600 + 30 * 60, [0, 1, 2, 3, 4])
    assert (kkt.at, sorted(kkt.days)) == (9 * 3600 + 15 * 60, [0, 2])
    assert config.routes["watchdog"].worklist is None
    assert config.worklist.fn_days == 30 and config.worklist.down_for == 86400


@pytest.mark.parametrize("extra, routes, message", [
    (WORKLIST.replace('"08:30"', '"8.30"'), None, 'worklist.at: expected a time of day such as "08:30"'),
    (WORKLIST.replace('"08:30"', '"24:10"'), None, 'worklist.at: expected a time of day such as "08:30"'),
    (WORKLIST + "  days: weekdays\n", None, "worklist.days: expected days such as mon, mon-fri"),
    (WORKLIST.replace("http://127.0.0.1:9\n  alertmanager", "127.0.0.1:9090\n  alertmanager"), None,
     "worklist.prometheus_url: expected Prometheus's URL"),
    ("", f"\n  duty:\n    bot: main\n    chat_id: {GROUP_CHAT}\n    worklist: {{at: '09:00'}}\n",
     "routes.duty.worklist: expected no worklist here without the top-level worklist section"),
    (WORKLIST, f"\n  duty:\n    bot: main\n    chat_id: {GROUP_CHAT}\n    worklist: false\n"
               f"    helpdesk: {{url: {{env: HOME}}}}\n",
     "routes.duty.helpdesk: expected a route with a worklist"),
    (WORKLIST, f"\n  duty:\n    bot: main\n    chat_id: {GROUP_CHAT}\n    resolved: edited\n",
     "routes.duty.resolved: expected one of edit, reply, both, separate"),
    (WORKLIST, f"\n  duty:\n    bot: main\n    chat_id: {GROUP_CHAT}\n    worklist: {{at: '09:00', dayz: mon}}\n",
     "routes.duty.worklist.dayz: expected one of the keys"),
])
def test_a_worklist_mistake_names_the_file_the_line_and_what_was_expected(tmp_path, extra, routes, message):
    path = config_with(tmp_path, routes=routes, worklist=extra)
    with pytest.raises(ConfigError) as caught:
        load_receiver_config(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: line ") and message in text, text


def test_the_list_is_due_from_its_local_time_on_its_days_only(tmp_path):
    config = load_receiver_config(config_with(tmp_path, routes=f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
  vladivostok:
    bot: main
    chat_id: {OTHER_CHAT}
    timezone: Asia/Vladivostok
"""))
    duty, east = config.routes["duty"], config.routes["vladivostok"]
    friday = "2026-12-04"
    assert due_day(duty, MOSCOW, at(f"{friday} 08:29"), 3600) is None
    day, moment = due_day(duty, MOSCOW, at(f"{friday} 08:31"), 3600)
    assert (day.isoformat(), moment) == (friday, at(f"{friday} 08:30"))
    assert due_day(duty, MOSCOW, at("2026-12-05 09:00"), 3600) is None  # a Saturday
    vladivostok = ZoneInfo("Asia/Vladivostok")
    # 08:30 in Vladivostok is 01:30 in Moscow: its list is due long before the Moscow one.
    assert due_day(east, vladivostok, at(f"{friday} 01:31"), 3600)[1] == at(f"{friday} 08:30", vladivostok)


def test_on_the_day_clocks_change_the_list_keeps_its_wall_clock_time(tmp_path):
    config = load_receiver_config(config_with(tmp_path, routes=f"""
  berlin:
    bot: main
    chat_id: {GROUP_CHAT}
    timezone: Europe/Berlin
    worklist: {{days: daily}}
"""))
    berlin = ZoneInfo("Europe/Berlin")
    route = config.routes["berlin"]
    for day in ("2026-03-29", "2026-10-25"):  # summer time begins, ends
        assert due_day(route, berlin, at(f"{day} 08:29", berlin), 3600) is None
        assert due_day(route, berlin, at(f"{day} 08:30", berlin), 3600)[1] == at(f"{day} 08:30", berlin)
