"""Fuzz (hypothesis): what a user types — hours in a config, the end of a /maintenance in the chat —
either gives a value or a clear error of its own kind, never another exception."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from alertmanager.maintenance import MaintenanceProblem, until
from exporter import schema as s
from exporter.config import hours as h

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2027, 12, 3, 12, 0, tzinfo=MOSCOW)
PIECES = st.sampled_from(["до", "пн", "вс", "понедельника", "7.12", "29.02", "31.02", "07.12.2026", "10:00",
                          "10.00", "25:61", "24:00", "0.0", "1.1.1", "ремонт", "", "-", ".", ":"])
WORD = st.one_of(PIECES, st.text(max_size=12))


@settings(max_examples=400, deadline=None)
@given(st.lists(WORD, min_size=0, max_size=4))
def test_any_end_typed_in_the_chat_is_a_moment_ahead_or_a_clear_problem(words):
    try:
        end, rest = until(words, NOW, MOSCOW)
    except MaintenanceProblem as problem:
        assert str(problem) and "Traceback" not in str(problem)
        return
    assert end.tzinfo is not None and len(rest) < max(1, len(words))


HOURS_VALUE = st.one_of(st.text(max_size=20), st.sampled_from(["10:00-23:00", "22:00-02:00", "00:00-24:00",
                                                               "closed", "выходной", "9:5-10:00"]),
                        st.integers(), st.none(), st.lists(st.text(max_size=12), max_size=3))
DAY_KEY = st.one_of(st.text(max_size=10), st.sampled_from(["mon", "mon-fri", "fri-mon", "daily", "пн-пт", "sun"]))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(DAY_KEY, HOURS_VALUE, max_size=4),
       st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["2027-01-01"])), max_size=3)))
def test_any_hours_written_in_a_config_load_or_name_their_path(week, holidays):
    raw = {"open": week} if holidays is None else {"open": week, "holidays": holidays}
    try:
        hours = h.hours(raw, "sites[0].hours", "inline")
    except s.Invalid as err:
        assert err.describe().startswith("sites[0].hours")
        return
    assert hours.week is None or len(hours.week) == 7
