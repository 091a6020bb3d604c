"""The project's alert rules and Alertmanager routing with their waits shortened, for demos and tests.

Production waits are minutes (`for: 10m`, `group_wait: 30s`, a site is silent after 180 s); shown on a
screen or in a test they would take a quarter of an hour. Every wait is scaled by the same factor, so the
order the rules were written for still holds (PcUnreachable fires before the Кодекс alerts it inhibits;
SiteNotReporting fires before the freshness gate closes).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

# The silence thresholds of the rules, in seconds of a site's heartbeat (its last successful push):
# a site is silent after 150 s (SiteNotReporting counts from there, and hours.yml holds its moments), and
# the freshness gate every site rule carries closes at 270 s.
SILENT = "sitewatch:site_last_report_timestamp_seconds > 150"
GATE = 'sitewatch_pusher_last_success_timestamp_seconds{job="sitewatch"} > 270'
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    """Seconds in a Prometheus duration made of whole units: "90s", "10m", "1h30m"."""
    if not re.fullmatch(r"(?:\d+[smhd])+", duration):
        raise ValueError(f"unexpected duration {duration!r}")
    return sum(int(number) * _UNITS[unit] for number, unit in re.findall(r"(\d+)([smhd])", duration))


def compress_rules(sources: Path, target: Path, *, divisor: int, silent_after: int,
                   gate_after: int) -> list[Path]:
    """Copies every rule file of `sources` into `target` with `for:` divided by `divisor` (at least 1 s),
    a site silent after `silent_after` seconds instead of 150, and the gate closed after `gate_after`
    instead of 270. The gate must close after SiteNotReporting fires (silent_after plus its `for:`)."""
    if gate_after <= silent_after + max(1, 60 // divisor):
        raise ValueError(f"the gate ({gate_after} s) must close after SiteNotReporting fires")
    written = []
    found = {SILENT: 0, GATE: 0}
    for source in sorted(sources.glob("*.yml")):
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{max(1, seconds(rule['for']) // divisor)}s"
                for text, after, production in ((SILENT, silent_after, "150"), (GATE, gate_after, "270")):
                    found[text] += rule["expr"].count(text)
                    rule["expr"] = rule["expr"].replace(text, text.replace(production, str(after)))
        path = target / source.name
        path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
        written.append(path)
    missing = [text for text, count in found.items() if not count]
    if missing:
        raise ValueError(f"{sources}: the thresholds {missing} are not in the rules any more: update demo/timing.py")
    return written


def compress_routing(document: dict, timings: dict[str, str]) -> dict:
    """Alertmanager's config `document` with every route's group_wait / group_interval / repeat_interval
    set from `timings`, and mute intervals dropped (a demo may well run at night)."""

    def shorten(route: dict) -> None:
        for key, value in timings.items():
            if key in route:
                route[key] = value
        route.pop("mute_time_intervals", None)
        for child in route.get("routes", []):
            shorten(child)

    shorten(document["route"])
    return document


def point_webhooks(document: dict, receiver_url: str, token_file: Path) -> int:
    """Sends every webhook of Alertmanager's config `document` to the receiver at `receiver_url`, with the
    bearer token read from `token_file`; returns how many webhooks there are."""
    count = 0
    for receiver in document["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            path = re.sub(r"^[a-z]+://[^/]+", "", webhook["url"])
            if not path.startswith("/alert/"):
                raise ValueError(f"webhook {webhook['url']!r} does not post to sitewatch-receiver's /alert/")
            webhook["url"] = receiver_url + path
            webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
            count += 1
    return count
