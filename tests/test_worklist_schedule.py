"""When the morning worklist goes out: its config, each route's time and days in its own zone, once a day,
late (after midnight too) or missed, and what the config refuses; the scheduler driven by a set clock
against a real Prometheus and the real outbox: `late_by: 0`, the clock going back, a restart just after
the list is queued, a new time the same day, routes sharing a chat, a day missed because Prometheus did not answer."""

from __future__ import annotations

import logging
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


# --- the scheduler's clock: a real Prometheus (holding nothing: every list says «дел нет») and the real outbox ---

class Clock:
    """The wall clock as the scheduler reads it, set by the test."""

    def __init__(self, moment: float):
        self.now = moment

    def __call__(self) -> float:
        return self.now


def scheduler(tmp_path, prometheus_url: str, routes: str, late_by: str = "3h"):
    from alertmanager.morning import Morning
    from alertmanager.outbox import Outbox
    from prometheus_client import CollectorRegistry

    config = load_receiver_config(config_with(tmp_path, routes=routes, worklist=f"""
worklist:
  prometheus_url: {prometheus_url}
  late_by: {late_by}
"""))
    outbox = Outbox(config.outbox_path)
    clock = Clock(0.0)
    return Morning(config, outbox, lambda: True, registry=CollectorRegistry(), clock=clock), outbox, clock


def queued(outbox, chat: int, thread: int | None = None) -> list[str]:
    """The texts waiting in a chat's queue, in order."""
    return [item.alert for item in outbox.peek(f"main|{chat}|{thread or ''}")]


def test_a_list_due_at_23_59_still_goes_out_after_midnight_within_late_by(tmp_path, prometheus):
    route = load_receiver_config(config_with(tmp_path, routes=f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "23:59", days: [пт]}}
""")).routes["duty"]
    # Friday's list, due at 23:59: the receiver was down then and is back at 00:01 on Saturday.
    assert due_day(route, MOSCOW, at("2026-12-05 00:01"), 3 * 3600) == (datetime(2026, 12, 4).date(),
                                                                        at("2026-12-04 23:59"))
    assert due_day(route, MOSCOW, at("2026-12-05 03:00"), 3 * 3600) is None  # later than late_by
    morning, outbox, clock = scheduler(tmp_path, prometheus([]), f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "23:59", days: [пт]}}
""")
    outbox.set_setting("worklist_day:duty", "2026-11-27")  # last Friday's went out
    clock.now = at("2026-12-05 00:01")
    assert morning.tick() == ["duty"]
    assert len(queued(outbox, GROUP_CHAT)) == 1
    assert outbox.setting("worklist_day:duty") == "2026-12-04"


def test_a_route_days_are_its_own_zone_days(tmp_path):
    config = load_receiver_config(config_with(tmp_path, routes=f"""
  east:
    bot: main
    chat_id: {GROUP_CHAT}
    timezone: Asia/Vladivostok
    worklist: {{at: "08:30", days: [пн]}}
"""))
    utc, vladivostok = ZoneInfo("UTC"), ZoneInfo("Asia/Vladivostok")
    # Sunday 22:31 UTC is Monday 08:31 in Vladivostok: the Monday list is due on a server whose day is Sunday.
    day, moment = due_day(config.routes["east"], vladivostok, at("2026-12-06 22:31", utc), 3600)
    assert (day.isoformat(), moment) == ("2026-12-07", at("2026-12-07 08:30", vladivostok))
    # Monday 22:31 UTC is Tuesday there: no Monday list any more.
    assert due_day(config.routes["east"], vladivostok, at("2026-12-07 22:31", utc), 3600) is None


def test_late_by_zero_means_at_its_time_not_never(tmp_path, prometheus):
    url = prometheus([])
    morning, outbox, clock = scheduler(tmp_path, url, f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "08:30", days: daily}}
""", late_by="0s")
    outbox.set_setting("worklist_day:duty", "2026-12-03")
    clock.now = at("2026-12-04 08:29") + 50
    assert morning.tick() == []
    clock.now += 20  # the next tick, ten seconds after the list's time
    assert morning.tick() == ["duty"]
    assert len(queued(outbox, GROUP_CHAT)) == 1
    # Started after the time, a receiver with late_by 0 does not send the day's list late.
    (tmp_path / "late").mkdir()
    later, outbox, clock = scheduler(tmp_path / "late", url, f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "08:30", days: daily}}
""", late_by="0s")
    outbox.set_setting("worklist_day:duty", "2026-12-03")
    clock.now = at("2026-12-04 08:31")
    assert later.tick() == [] and queued(outbox, GROUP_CHAT) == []


def test_the_clock_going_back_or_a_restart_after_queueing_sends_nothing_twice_and_misses_nothing(tmp_path, prometheus,
                                                                                                  caplog):
    routes = f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "08:30", days: daily}}
"""
    url = prometheus([])
    morning, outbox, clock = scheduler(tmp_path, url, routes)
    outbox.set_setting("worklist_day:duty", "2026-12-03")
    clock.now = at("2026-12-04 08:31")
    assert morning.tick() == ["duty"]
    for moment in ("2026-12-04 07:31", "2026-12-04 00:10", "2026-12-04 08:35"):  # NTP sets the clock back
        clock.now = at(moment)
        assert morning.tick() == []
    assert len(queued(outbox, GROUP_CHAT)) == 1
    assert outbox.setting("worklist_day:duty") == "2026-12-04"
    # The day is noted with the texts, in one transaction: nothing is written after them that a crash
    # could lose (a separate write would fail here), so a start after late_by finds the day done and
    # neither queues it again nor calls it missed.
    clock.now = at("2026-12-05 08:31")
    noted = outbox.set_setting
    outbox.set_setting = lambda key, value: (_ for _ in ()).throw(OSError("killed"))
    assert morning.tick() == ["duty"]
    outbox.set_setting = noted
    restarted, _, _ = scheduler(tmp_path, url, routes)
    clock.now = at("2026-12-05 12:00")
    restarted.clock = clock
    assert restarted.outbox.setting("worklist_day:duty") == "2026-12-05"
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        assert restarted.tick() == []
    assert "event=worklist_missed" not in caplog.text
    assert len(queued(outbox, GROUP_CHAT)) == 2
    # A day noted by a clock that ran a year ahead does not hold the lists back for a year.
    outbox.set_setting("worklist_day:duty", "2027-12-06")
    clock.now = at("2026-12-06 08:31")
    assert restarted.tick() == ["duty"]


class PowerCut(BaseException):
    """The process ends here: nothing after it runs."""


class HandOffThatDies:
    """Stands in for the helpdesk hand-off: records the routes offered, or dies while offering."""

    def __init__(self, dies: bool):
        self.dies, self.offered = dies, []

    def offer(self, route, items, now) -> int:
        if self.dies:
            raise PowerCut()
        self.offered.append(route)
        return 0


def test_a_power_cut_while_the_helpdesk_items_are_stored_leaves_the_day_to_the_next_start(tmp_path, prometheus):
    """The helpdesk's items are stored before the list and its day: a process that dies in between has not
    marked the day done, so the next start, within late_by, queues the list and offers the items again."""
    (tmp_path / "helpdesk.url").write_text("http://127.0.0.1:9/tasks\n", encoding="utf-8")
    routes = f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "08:30", days: daily}}
    helpdesk: {{url: {{file: helpdesk.url}}}}
"""
    url = prometheus([])
    morning, outbox, clock = scheduler(tmp_path, url, routes)
    outbox.set_setting("worklist_day:duty", "2026-12-04")
    morning.handoff = HandOffThatDies(dies=True)
    clock.now = at("2026-12-05 08:31")
    with pytest.raises(PowerCut):
        morning.tick()
    assert outbox.setting("worklist_day:duty") == "2026-12-04" and queued(outbox, GROUP_CHAT) == []
    restarted, _, _ = scheduler(tmp_path, url, routes)
    restarted.handoff = HandOffThatDies(dies=False)
    clock.now = at("2026-12-05 08:40")
    restarted.clock = clock
    assert restarted.tick() == ["duty"]
    assert restarted.handoff.offered == ["duty"]
    assert outbox.setting("worklist_day:duty") == "2026-12-05" and len(queued(outbox, GROUP_CHAT)) == 1


def test_a_new_time_the_same_day_sends_no_second_list(tmp_path, prometheus):
    url = prometheus([])
    morning, outbox, clock = scheduler(tmp_path, url, f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "08:30", days: daily}}
""")
    outbox.set_setting("worklist_day:duty", "2026-12-03")
    clock.now = at("2026-12-04 08:31")
    assert morning.tick() == ["duty"]
    # The admin moves the list to 10:00 and restarts at 09:00, then at 10:05: the day's list went out.
    moved, _, clock = scheduler(tmp_path, url, f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "10:00", days: daily}}
""")
    for moment in ("2026-12-04 09:00", "2026-12-04 10:05"):
        clock.now = at(moment)
        assert moved.tick() == []
    clock.now = at("2026-12-05 10:00") + 10
    assert moved.tick() == ["duty"]  # the next day, at the new time


def test_routes_sharing_a_chat_share_one_list_there(tmp_path, prometheus):
    morning, outbox, clock = scheduler(tmp_path, prometheus([]), f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
  critical:
    bot: main
    chat_id: {GROUP_CHAT}
  kkt:
    bot: main
    chat_id: {GROUP_CHAT}
    thread_id: 7
""")
    clock.now = at("2026-12-04 08:31")
    assert sorted(morning.tick()) == ["critical", "duty", "kkt"]
    assert len(queued(outbox, GROUP_CHAT)) == 1  # duty and critical: one list in the chat
    assert len(queued(outbox, GROUP_CHAT, 7)) == 1  # the kkt topic: its own
    assert outbox.setting("worklist_day:critical") == outbox.setting("worklist_day:duty") == "2026-12-04"
    clock.now += 60
    assert morning.tick() == []


def test_a_day_missed_because_prometheus_did_not_answer_says_so(tmp_path, caplog):
    morning, outbox, clock = scheduler(tmp_path, "http://127.0.0.1:9", f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    worklist: {{at: "08:30", days: daily}}
""", late_by="1h")
    outbox.set_setting("worklist_day:duty", "2026-12-03")
    for moment in ("2026-12-04 08:31", "2026-12-04 09:00", "2026-12-04 09:31"):
        clock.now = at(moment)
        assert morning.tick() == []
    assert outbox.setting("worklist_day:duty") == "2026-12-04"
    missed = [record.getMessage() for record in caplog.records if "event=worklist_missed" in record.getMessage()]
    assert len(missed) == 1 and "Prometheus or Alertmanager did not answer" in missed[0], missed
    assert "not running" not in missed[0]
