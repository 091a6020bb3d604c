"""Numbers, durations and plural forms as a reader of each built-in language writes them.

Russian: a decimal comma ("1,4"), a no-break space between thousands ("9 812"), three plural forms
(1 день, 2 дня, 5 дней), durations in two units ("1 мин 13 с", "2 ч 5 мин"). English: the usual forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Language:
    """What a built-in language needs outside its template: numbers, times and durations."""

    thousands_separator: str
    time_format: str
    duration_units: tuple[str, str, str, str]  # days, hours, minutes, seconds
    unit_spacing: str  # between a number and its unit: "5 мин", "5m"


LANGUAGES = {
    # A no-break space keeps "9 812" on one line of a phone screen.
    "ru": Language("\u00a0", "%d.%m.%Y %H:%M:%S %%Z", ("д", "ч", "мин", "с"), " "),
    "en": Language(",", "%Y-%m-%d %H:%M:%S %%Z", ("d", "h", "m", "s"), ""),
}


def duration_text(seconds: float, language: str = "ru") -> str:
    """The two largest units, the second left out when zero: "1 ч 5 мин", "2 д 3 ч", "45 с"."""
    words = LANGUAGES[language]
    rest = max(0, round(seconds))
    amounts = []
    for size in (86400, 3600, 60, 1):
        amounts.append(rest // size)
        rest %= size
    first = next((i for i, amount in enumerate(amounts) if amount), 3)
    parts = [(amounts[first], words.duration_units[first])]
    if first < 3 and amounts[first + 1]:
        parts.append((amounts[first + 1], words.duration_units[first + 1]))
    return " ".join(f"{amount}{words.unit_spacing}{unit}" for amount, unit in parts)


def plural(count: int, *forms: str) -> str:
    """The word form for `count`: Russian rules with three forms (one, few, many), English with two (one, other)."""
    if len(forms) == 2:
        return forms[0] if count == 1 else forms[1]
    if len(forms) != 3:
        raise TypeError("plural needs two forms (English) or three (Russian: 1, 2, 5)")
    tens, ones = count % 100, count % 10
    if ones == 1 and tens != 11:
        return forms[0]
    if 2 <= ones <= 4 and not 12 <= tens <= 14:
        return forms[1]
    return forms[2]


def decimal_text(value: float, digits: int, language: str = "ru") -> str:
    """`value` with `digits` decimals, in the language's decimal mark: 1,4 in Russian, 1.4 in English."""
    text = f"{value:.{digits}f}"
    return text.replace(".", ",") if language == "ru" else text


def zone_name(moment: datetime, language: str = "ru") -> str:
    """The zone as readers say it: Russian time is told against Moscow's ("МСК", "МСК+2", "МСК−1"); English
    readers get the zone's abbreviation ("MSK")."""
    if language != "ru":
        return moment.tzname() or ""
    offset = moment.utcoffset()
    if offset is None:
        return ""
    minutes = round(offset.total_seconds() / 60) - 180
    if minutes == 0:
        return "МСК"
    sign = "+" if minutes > 0 else "\u2212"
    hours, rest = divmod(abs(minutes), 60)
    return f"МСК{sign}{hours}" + (f":{rest:02d}" if rest else "")
