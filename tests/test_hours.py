"""Opening hours and maintenance windows at the site: the config, the moments it becomes, and the series
a running exporter serves for them (a site without hours serves none, as before hours existed)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT, value_of_metric, wait_until
from exporter.config import ConfigError, load_config
from exporter.hours import CLOSURES_AHEAD, closures, is_open, occurrences, quiet_spans
from exporter.hours_metrics import hours_families

MOSCOW = ZoneInfo("Europe/Moscow")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


RESTAURANT = """\
hours:
  restaurant:
    open:
      mon-thu: "10:00-23:00"
      fri-sat: "10:00-02:00"
      sun: ["11:00-15:00", "16:00-23:00"]
    holidays:
      2026-12-31: "10:00-18:00"
      2027-01-01: closed
    opening_grace: 30m
    maintenance:
      - {name: "Кодекс: ночной перезапуск", time: "03:00-03:30", checks: [kodeks]}
sites:
  - id: cafe-1
    timezone: Europe/Moscow
    labels: {client: romashka}
    hours: restaurant
    maintenance:
      - {name: "Резервная копия", time: "04:00-04:20", days: sun}
    checks:
      - {name: pc, ping: {host: 127.0.0.1}}
      - {name: kodeks, tcp: {host: 127.0.0.1, port: 8080}}
  - id: cafe-2
    timezone: Asia/Novosibirsk
    hours: restaurant
    checks:
      - {name: pc, ping: {host: 127.0.0.1}}
  - id: office
    checks:
      - {name: pc, ping: {host: 127.0.0.1}}
"""


def moscow(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=MOSCOW).timestamp()


def shown(moments: list[tuple[float, float]], zone=MOSCOW) -> list[tuple[str, str]]:
    return [(datetime.fromtimestamp(a, zone).strftime("%a %d.%m %H:%M"),
             datetime.fromtimestamp(b, zone).strftime("%a %d.%m %H:%M")) for a, b in moments]


@pytest.fixture
def config(tmp_path):
    return load_config(write(tmp_path, RESTAURANT))


def test_a_week_of_closures_crosses_midnight_breaks_for_lunch_and_keeps_holidays(config):
    hours = config.site("cafe-1").hours
    # Thursday 03.12.2026, 12:00 in Moscow
    now = moscow("2026-12-03T12:00")
    found = closures(hours, MOSCOW, now)
    ahead = [c for c in found if c[0] > now]
    assert len(ahead) == CLOSURES_AHEAD
    assert shown(ahead) == [("Thu 03.12 23:00", "Fri 04.12 10:00"), ("Sat 05.12 02:00", "Sat 05.12 10:00")]
    saturday = moscow("2026-12-05T12:00")
    weekend = [c for c in closures(hours, MOSCOW, saturday) if c[0] > saturday]
    assert shown(weekend) == [
        ("Sun 06.12 02:00", "Sun 06.12 11:00"),   # Saturday's hours run to 02:00
        ("Sun 06.12 15:00", "Sun 06.12 16:00"),   # the lunch break
    ]
    # the closure the site is out of now ended this morning and is still exported, with the week before
    past = [c for c in found if c[0] <= now]
    assert shown(past[-1:]) == [("Wed 02.12 23:00", "Thu 03.12 10:00")]
    assert now - past[0][1] <= 3 * 86400 and len(past) == 3
    assert is_open(hours, MOSCOW, now) and not is_open(hours, MOSCOW, moscow("2026-12-04T03:00"))

    new_year = closures(hours, MOSCOW, moscow("2026-12-31T12:00"))
    assert ("Thu 31.12 18:00", "Sat 02.01 10:00") in shown(new_year)  # short day, then closed all day


def test_the_same_hours_are_each_sites_own_local_time(config):
    now = moscow("2026-12-03T12:00")
    novosibirsk = ZoneInfo("Asia/Novosibirsk")
    first = [c for c in closures(config.site("cafe-2").hours, novosibirsk, now) if c[0] > now][0]
    assert shown([first], novosibirsk) == [("Thu 03.12 23:00", "Fri 04.12 10:00")]
    assert shown([first]) == [("Thu 03.12 19:00", "Fri 04.12 06:00")]  # four hours ahead of Moscow


def test_hours_follow_a_zone_with_summer_time(tmp_path):
    config = load_config(write(tmp_path, """\
        sites:
          - id: berlin
            timezone: Europe/Berlin
            hours: {open: {daily: "08:00-20:00"}}
            checks: [{name: pc, ping: {host: 127.0.0.1}}]
        """))
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 3, 27, 12, tzinfo=berlin).timestamp()
    nights = [c for c in closures(config.site("berlin").hours, berlin, now) if c[0] > now][:3]
    assert [round((end - start) / 3600) for start, end in nights] == [12, 11]  # clocks go forward 29.03
    assert shown(nights, berlin)[1] == ("Sat 28.03 20:00", "Sun 29.03 08:00")


def test_maintenance_windows_come_from_the_shared_hours_and_the_site(config):
    now = moscow("2026-12-05T12:00")  # a Saturday
    windows = {w.name: w for w in config.site("cafe-1").hours.windows}
    assert set(windows) == {"Кодекс: ночной перезапуск", "Резервная копия"}
    assert shown(occurrences(windows["Резервная копия"], MOSCOW, now)) == [("Sun 06.12 04:00", "Sun 06.12 04:20"),
                                                                          ("Sun 13.12 04:00", "Sun 13.12 04:20")]
    nightly = shown(occurrences(windows["Кодекс: ночной перезапуск"], MOSCOW, now))
    assert nightly == [("Sat 05.12 03:00", "Sat 05.12 03:30"), ("Sun 06.12 03:00", "Sun 06.12 03:30"),
                       ("Mon 07.12 03:00", "Mon 07.12 03:30")]


def test_the_series_say_moments_and_only_for_sites_with_hours(config):
    families = {f.name: f for f in hours_families(config.sites, moscow("2026-12-03T12:00"))}
    info = families["sitewatch_site_hours_info"].samples
    assert {(s.labels["site"], s.labels["hours"]) for s in info} == {("cafe-1", "restaurant"), ("cafe-2", "restaurant")}
    assert all(s.labels.get("client") == "romashka" for s in info if s.labels["site"] == "cafe-1")

    def values(name: str, site: str = "cafe-1") -> list[float]:
        return [s.value for s in families[name].samples if s.labels["site"] == site]

    closings = values("sitewatch_site_closed_start_timestamp_seconds")
    assert moscow("2026-12-03T23:00") in closings
    # the quiet span around it: 15 minutes before closing to 30 minutes (opening_grace) after opening
    index = closings.index(moscow("2026-12-03T23:00"))
    assert values("sitewatch_site_quiet_start_timestamp_seconds")[index] == moscow("2026-12-03T22:45")
    assert values("sitewatch_site_quiet_end_timestamp_seconds")[index] == moscow("2026-12-04T10:30")
    spans = [s.labels["span"] for s in families["sitewatch_site_quiet_start_timestamp_seconds"].samples
             if s.labels["site"] == "cafe-1"]
    assert spans == [str(i) for i in range(len(spans))] and len(spans) <= 3 + 1 + 2 + 3  # lunch breaks add spans
    windows = families["sitewatch_maintenance_start_timestamp_seconds"].samples
    # the shared Кодекс window covers cafe-1's kodeks check; cafe-2 has none, so the window is not its
    assert {(s.labels["site"], s.labels["window"], s.labels.get("check")) for s in windows} == {
        ("cafe-1", "Кодекс: ночной перезапуск", "kodeks"), ("cafe-1", "Резервная копия", None)}
    # the check's own quiet spans join the site's with its window: 03:00-03:30 lies inside the night
    check_spans = [(s.labels["check"], s.value)
                   for s in families["sitewatch_check_quiet_start_timestamp_seconds"].samples]
    assert {check for check, _ in check_spans} == {"kodeks"}
    assert not any(s.labels["site"] == "office" for f in families.values() for s in f.samples)


def test_a_window_that_touches_a_closure_or_another_window_is_one_quiet_span(tmp_path):
    config = load_config(write(tmp_path, """\
        sites:
          - id: cafe-3
            timezone: Europe/Moscow
            hours:
              open: {daily: "10:00-23:00"}
              maintenance:
                - {name: "Перед закрытием", time: "22:30-23:30"}
                - {name: "Обновление", time: "03:00-04:00"}
                - {name: "Резервная копия", time: "03:30-05:00", checks: [kodeks]}
                - {name: "Днём", time: "14:00-14:20", checks: [kodeks]}
            checks: [{name: pc, ping: {host: 127.0.0.1}}, {name: kodeks, tcp: {host: 127.0.0.1, port: 1}}]
        """))
    hours = config.site("cafe-3").hours
    now = moscow("2026-12-03T12:00")
    site = [(span.start, span.end) for span in quiet_spans(hours, MOSCOW, now) if span.start > now]
    # 22:30 less the 15-minute grace, through the night, to 10:15: the window before closing joins it
    assert shown(site[:1]) == [("Thu 03.12 22:15", "Fri 04.12 10:15")]
    kodeks = [(span.start, span.end) for span in quiet_spans(hours, MOSCOW, now, check="kodeks")
              if span.start > now]
    assert shown(kodeks[:2]) == [("Thu 03.12 13:45", "Thu 03.12 14:35"), ("Thu 03.12 22:15", "Fri 04.12 10:15")]
    [span] = [s for s in quiet_spans(hours, MOSCOW, now) if s.start <= moscow("2026-12-04T03:00") < s.end]
    assert (span.closing, span.opening) == (moscow("2026-12-03T23:00"), moscow("2026-12-04T10:00"))


def test_hours_around_the_clock_are_quick_and_have_no_closures(tmp_path):
    config = load_config(write(tmp_path, """\
        sites:
          - id: always
            timezone: Europe/Moscow
            hours: {open: {daily: "00:00-24:00"}, holidays: [2026-12-31]}
            checks: []
        """))
    hours = config.site("always").hours
    started = time.perf_counter()
    for _ in range(100):
        found = closures(hours, MOSCOW, moscow("2027-01-05T12:00"))
    assert (time.perf_counter() - started) / 100 < 0.005
    assert found == []
    assert shown(closures(hours, MOSCOW, moscow("2026-12-30T12:00"))) == [("Thu 31.12 00:00", "Fri 01.01 00:00")]


def test_hours_need_the_sites_time_zone(tmp_path):
    path = write(tmp_path, """\
        sites:
          - id: cafe-4
            hours: {open: {daily: "10:00-23:00"}}
            checks: []
        """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "sites[0].timezone: expected the site's time zone, such as Europe/Moscow (required with hours" \
        in str(caught.value)


def test_a_running_exporter_serves_the_hours(tmp_path, start_exporter):
    exporter = start_exporter(write(tmp_path, RESTAURANT))
    text = exporter.metrics()
    assert value_of_metric(text, "sitewatch_site_hours_info", site="cafe-1", client="romashka", hours="restaurant") == 1
    assert value_of_metric(text, "sitewatch_site_hours_info", site="cafe-2", hours="restaurant") == 1
    assert 'sitewatch_site_quiet_start_timestamp_seconds{site="office"' not in text
    assert 'sitewatch_site_quiet_end_timestamp_seconds{client="romashka",site="cafe-1",span="0"}' in text
    assert "sitewatch_maintenance_end_timestamp_seconds" in text


@pytest.mark.parametrize("fragment, expected", [
    ("hours: {open: {mon-fri: '10:00-25:00'}}", "sites[0].hours.open.mon-fri: expected a time range"),
    ("hours: {open: {mon-fri: '10:00'}}", "sites[0].hours.open.mon-fri: expected a time range such as"),
    ("hours: {open: {mon-fri: '10:00-10:00'}}", "that is not empty"),
    ("hours: {open: {mon-fri: '10:00-20:00', fri: closed}}", "sites[0].hours.open.fri: expected days not given "
                                                             "before (fri is already in sites[0].hours.open.mon-fri)"),
    ("hours: {open: {mon-fry: '10:00-20:00'}}", "sites[0].hours.open.mon-fry: expected days such as mon"),
    ("hours: {open: {sat: closed}}", "sites[0].hours.open: expected hours with at least one open day"),
    ("hours: chain", "sites[0].hours: expected the name of shared hours (none are defined"),
    ("hours: {open: {daily: '08:00-20:00'}, holidays: [2027-02-30]}", "sites[0].hours.holidays[0]: expected a date"),
    ("hours: {opn: {daily: '08:00-20:00'}}", "did you mean 'open'?"),
    ("hours: {open: {daily: '08:00-20:00'}, opening_grace: 2d}", "sites[0].hours.opening_grace: expected a duration"),
    ("maintenance: [{name: x, time: '03:00-03:30', checks: [kodeks]}]",
     "sites[0].maintenance[0].checks: expected names of this site's checks (pc), got the string 'kodeks'"),
    ("maintenance: [{name: x, time: '03:00-03:30'}, {name: x, time: '04:00-04:30'}]", "'x' is used twice"),
    ("maintenance: [{time: '03:00-03:30'}]", "sites[0].maintenance[0].name: expected a value"),
])
def test_mistakes_in_hours_name_the_file_the_path_and_what_was_expected(tmp_path, fragment, expected):
    path = write(tmp_path, f"""\
        sites:
          - id: cafe-9
            timezone: Europe/Moscow
            {fragment}
            checks: [{{name: pc, ping: {{host: 127.0.0.1}}}}]
        """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value), str(caught.value)


def test_a_wrong_shared_name_lists_the_ones_there_are(tmp_path):
    wrong = RESTAURANT.replace("hours: restaurant\n    maintenance", "hours: restaurnt\n    maintenance")
    path = write(tmp_path, wrong)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "sites[0].hours: expected the name of shared hours (restaurant), got the string 'restaurnt'" \
        in str(caught.value)


def test_russian_day_names_and_holidays_as_a_list(tmp_path):
    config = load_config(write(tmp_path, """\
        sites:
          - id: shop
            timezone: Europe/Moscow
            hours:
              open: {пн-пт: "09:00-18:00", сб: "10:00-16:00", вс: выходной}
              holidays: [2027-01-01, 2027-01-02]
            checks: [{name: pc, ping: {host: 127.0.0.1}}]
        """))
    hours = config.site("shop").hours
    assert hours.ranges_on(date(2027, 1, 1)) == ()
    assert [r.start // 3600 for r in hours.ranges_on(date(2026, 12, 5))] == [10]
    assert hours.ranges_on(date(2026, 12, 6)) == ()


def test_check_says_whether_the_site_is_open_by_its_hours(config, tmp_path):
    from exporter.hours import describe
    hours = config.site("cafe-1").hours
    assert describe(hours, MOSCOW, moscow("2026-12-03T12:00")) == "open by its hours until 23:00"
    assert describe(hours, MOSCOW, moscow("2026-12-06T02:30")) == \
        "closed by its hours until 11:00"
    assert describe(hours, MOSCOW, moscow("2026-12-06T04:10")) == \
        "closed by its hours until 11:00; in maintenance now: Резервная копия"
    assert describe(hours, MOSCOW, moscow("2026-12-05T03:10")).endswith(
        "in maintenance now: Кодекс: ночной перезапуск (kodeks)")
    result = subprocess.run([sys.executable, "-m", "exporter.cli", "check", "--config",
                             str(write(tmp_path, RESTAURANT)), "--site", "cafe-1"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert re.search(r"^cafe-1: (open|closed) by its hours until ", result.stdout, re.M), result.stdout


def test_a_chains_hours_file_is_shared_and_its_mistakes_name_it(tmp_path):
    chain = tmp_path / "chain-hours.yml"
    chain.write_text('restaurant: {open: {daily: "10:00-23:00"}, opening_grace: 20m}\n', encoding="utf-8")
    config = write(tmp_path, """\
        hours_file: chain-hours.yml
        sites:
          - id: cafe-7
            timezone: Europe/Moscow
            hours: restaurant
            checks: [{name: pc, ping: {host: 127.0.0.1}}]
        """)
    loaded = load_config(config)
    assert loaded.site("cafe-7").hours.opening_grace == 1200 and loaded.hours_file == chain
    chain.write_text('restaurant: {open: {daily: "10-23"}}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value).startswith(f"{chain}: line 1: restaurant.open.daily: expected a time range")


def test_an_edit_of_the_hours_file_reloads_the_exporter(tmp_path, start_exporter):
    chain = tmp_path / "chain-hours.yml"
    chain.write_text('restaurant: {open: {daily: "10:00-23:00"}, opening_grace: 20m}\n', encoding="utf-8")
    exporter = start_exporter(write(tmp_path, """\
        hours_file: chain-hours.yml
        sites:
          - id: cafe-8
            timezone: Europe/Moscow
            hours: restaurant
            checks: [{name: pc, ping: {host: 127.0.0.1}}]
        """))
    def closing() -> float | None:
        return value_of_metric(exporter.metrics(), "sitewatch_site_closed_start_timestamp_seconds", site="cafe-8",
                               span="0")

    first = closing()
    assert first is not None and datetime.fromtimestamp(first, MOSCOW).strftime("%H:%M") == "23:00"
    chain.write_text('restaurant: {open: {daily: "10:00-22:00"}}\n', encoding="utf-8")
    wait_until(lambda: closing() == first - 3600, 20, what="the exporter to reload the hours file")


def test_a_long_closure_is_closed_all_through(tmp_path):
    config = load_config(write(tmp_path, """\
        sites:
          - id: dacha
            timezone: Europe/Moscow
            hours: {open: {daily: "10:00-23:00"}, holidays: [2027-01-01, 2027-01-02, 2027-01-03, 2027-01-04,
                    2027-01-05, 2027-01-06, 2027-01-07, 2027-01-08, 2027-01-09, 2027-01-10]}
            checks: []
          - id: weekend-market
            timezone: Europe/Moscow
            hours: {open: {sat-sun: "10:00-23:00"}}
            checks: []
        """))
    dacha, market = config.site("dacha").hours, config.site("weekend-market").hours
    assert not any(is_open(dacha, MOSCOW, moscow(f"2027-01-{day:02d}T12:00")) for day in range(1, 11))
    now = moscow("2027-01-09T12:00")
    [(start, end)] = [c for c in closures(dacha, MOSCOW, now) if c[0] <= now][-1:]
    assert shown([(start, end)]) == [("Thu 31.12 23:00", "Mon 11.01 10:00")]
    # Saturday night, six days after the last opening: still closed until 10:00
    assert not is_open(market, MOSCOW, moscow("2026-12-05T00:30"))
    assert is_open(market, MOSCOW, moscow("2026-12-05T12:00"))
